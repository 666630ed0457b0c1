//! The client's sans-IO core: it routes inputs to the components that own the state and turns
//! what they decide into datagrams and lines. No socket, no clock, no randomness of its own.
//!
//! Inputs are [`Client::handle_bytes`] (or [`Client::handle_datagram`]), [`Client::handle_line`],
//! [`Client::handle_command`], [`Client::handle_timeout`] and [`Client::handle_end_of_input`],
//! each given `now`; outputs are [`Client::poll_transmit`], [`Client::poll_event`],
//! [`Client::poll_timeout`], [`Client::poll_secret`] and [`Client::poll_exit`]. The components:
//! [`Session`] (the standing with the server), [`Requests`] (what is in flight), [`LocalTable`],
//! [`Inbox`] (duplicates) and [`Outgoing`] (a direct message's attempts).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::{Entropy, Transmit};
use chat_proto::{ClientRow, Datagram, MsgId, Name, REGISTER_PAD_TO, Refusal, Secret, StoredMessage, Text};

use crate::command::{Command, parse};
use crate::event::Event;
use crate::inbox::Inbox;
use crate::requests::{Due, Requests};
use crate::send::Outgoing;
use crate::session::{Session, Stage};
use crate::table::{Applied, LocalTable};

/// How the client times its retries.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long to wait for each ACK.
    pub ack_timeout: Duration,
    /// Retransmissions after the first send before giving up.
    pub retries: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self { ack_timeout: Duration::from_millis(500), retries: 5 }
    }
}

/// What a request in flight is for: decides what its answer or its give-up means.
#[derive(Debug)]
enum Kind {
    Register,
    /// Proving the address after `registered`.
    Confirm,
    Dereg {
        then_exit: bool,
    },
    Direct(Outgoing),
    Save(Outgoing),
    Channel(Text),
    /// The stored message at `index`.
    Fetch {
        index: u32,
    },
    FetchDone,
}

impl Kind {
    fn is_send(&self) -> bool {
        matches!(self, Self::Direct(_) | Self::Save(_) | Self::Channel(_))
    }

    /// Part of a registration: dropped when a new one starts.
    fn is_joining(&self) -> bool {
        matches!(self, Self::Confirm | Self::Fetch { .. } | Self::FetchDone)
    }

    /// What the server answers with `ack`.
    fn is_acked(&self) -> bool {
        matches!(self, Self::Dereg { .. } | Self::Confirm | Self::Save(_) | Self::Channel(_) | Self::FetchDone)
    }
}

/// One input line, parsed or not, waiting for its turn.
#[derive(Debug)]
enum Line {
    Command(Command),
    /// What to tell the user about a line that is no command.
    Invalid(String),
}

/// The client's state.
#[derive(Debug)]
pub struct Client {
    me: Name,
    server: SocketAddr,
    /// The name's secret, once known; `secret_changed` until the driver has kept it.
    secret: Option<Secret>,
    secret_changed: bool,
    session: Session,
    table: LocalTable,
    requests: Requests<Kind>,
    inbox: Inbox,
    /// Lines wait here while the client registers, fetches, or waits for its first table.
    queue: VecDeque<Line>,
    /// Input has ended: exit once nothing is left to do.
    closing: bool,
    exit: Option<i32>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_id: u64,
    /// Datagrams that did not decode.
    dropped: u64,
}

impl Client {
    /// A client named `me` that will register with `server`, showing `secret` if it has one
    /// from an earlier run; `entropy` makes its ids differ across restarts.
    pub fn new(cfg: Config, me: Name, server: SocketAddr, secret: Option<Secret>, mut entropy: Entropy) -> Self {
        Self {
            me,
            server,
            secret,
            secret_changed: false,
            session: Session::default(),
            table: LocalTable::new(cfg.ack_timeout, cfg.retries),
            requests: Requests::new(cfg.ack_timeout, cfg.retries),
            inbox: Inbox::default(),
            queue: VecDeque::new(),
            closing: false,
            exit: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_id: entropy.u64(),
            dropped: 0,
        }
    }

    /// Sends the first registration.
    pub fn start(&mut self, now: Instant) {
        self.register(now);
    }

    /// Handles the bytes of one datagram from `from`; one that does not decode is counted and
    /// dropped.
    pub fn handle_bytes(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        match chat_proto::decode(bytes) {
            Ok(d) => self.handle_datagram(now, from, d),
            Err(e) => {
                self.dropped += 1;
                tracing::debug!(%from, dropped = self.dropped, "dropped a bad datagram: {e}");
            }
        }
    }

    /// Handles one decoded datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: Datagram) {
        if from == self.server {
            self.route_server(now, d);
        } else {
            self.route_peer(from, d);
        }
        self.settle(now);
    }

    fn route_peer(&mut self, from: SocketAddr, d: Datagram) {
        match d {
            Datagram::Chat { id, from: sender, to, text } if to == self.me => self.on_chat(from, id, sender, text),
            Datagram::ChatAck { id } => self.on_chat_ack(from, id),
            other => tracing::debug!(%from, "dropped an unexpected datagram: {other:?}"),
        }
    }

    fn route_server(&mut self, now: Instant, d: Datagram) {
        let server = self.server;
        match d {
            Datagram::Registered { id, version, stored, secret, cookie } => {
                self.on_registered(now, id, (version, stored), secret, cookie);
            }
            Datagram::Refused { id, reason } => self.on_refused(now, id, reason),
            Datagram::Ack { id } => self.on_ack(now, id),
            Datagram::ChannelPartial { id, full } => self.on_channel_partial(now, id, &full),
            Datagram::Exists { id, row } => self.on_exists(now, id, row),
            Datagram::TableDelta { base, version, rows } => self.on_table(now, |t| t.handle_delta(base, version, rows)),
            Datagram::TablePage { version, page, pages, clients } => {
                self.on_table(now, |t| t.handle_page(version, page, pages, clients));
            }
            Datagram::Table(table) => self.on_table(now, |t| t.handle_table(table)),
            Datagram::Stored { id, index, message } => self.on_stored(now, id, index, message),
            Datagram::Probe { id } if self.session.answers_peers() => {
                self.send_once(server, &Datagram::ProbeAck { id, name: self.me.clone() });
            }
            Datagram::Channel { id, from: sender, text } => self.on_channel(id, sender, text),
            other => self.route_peer(server, other),
        }
    }

    /// Runs one command now, or queues it while the client is still registering.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        self.queue.push_back(Line::Command(cmd));
        self.settle(now);
    }

    /// Takes one line the user typed: a command runs (or waits its turn, as
    /// [`Client::handle_command`]); a line that is no command is explained in its turn too, so
    /// that answers come in the order of the lines; a blank line does nothing.
    pub fn handle_line(&mut self, now: Instant, line: &str) {
        match parse(line) {
            Ok(Some(cmd)) => self.queue.push_back(Line::Command(cmd)),
            Ok(None) => return,
            Err(e) => self.queue.push_back(Line::Invalid(e.to_string())),
        }
        self.settle(now);
    }

    /// A line that is not UTF-8 text: explained in its turn, as [`Client::handle_line`] does.
    pub fn handle_unreadable_line(&mut self, now: Instant) {
        self.queue.push_back(Line::Invalid("That line is not UTF-8 text.".into()));
        self.settle(now);
    }

    /// Shows `text` to the user now (a problem of the driver's, not an answer to a line).
    pub fn notice(&mut self, text: impl Into<String>) {
        self.emit(Event::Notice(text.into()));
    }

    /// The user interrupted (Ctrl+C) or the process is told to stop: exit 0 at once (a silent
    /// leave), after showing what was held back.
    pub fn handle_interrupt(&mut self) {
        self.exit_with(0, None);
    }

    /// Input has ended: finish what is in flight, then exit 0 (a silent leave).
    pub fn handle_end_of_input(&mut self, now: Instant) {
        self.closing = true;
        self.settle(now);
    }

    /// Retransmits and gives up on whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.exit.is_none() {
            match self.requests.poll_due(now) {
                Some(Due::Retransmit(t)) => self.out.push_back(t),
                Some(Due::GaveUp(kind)) => self.on_gave_up(now, kind),
                None => break,
            }
        }
        self.settle(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next thing to show the user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.requests.next_timeout().into_iter().chain(self.table.next_timeout()).min()
    }

    /// A secret the server handed out that the driver has not kept yet.
    pub fn poll_secret(&mut self) -> Option<Secret> {
        if !std::mem::take(&mut self.secret_changed) {
            return None;
        }
        self.secret.clone()
    }

    /// The exit code, once the client is done.
    pub fn poll_exit(&self) -> Option<i32> {
        self.exit
    }

    /// How many received datagrams did not decode and were dropped.
    pub fn dropped_datagrams(&self) -> u64 {
        self.dropped
    }

    // ---- registration, dereg, fetch ----

    fn register(&mut self, now: Instant) {
        if self.requests.any(|k| matches!(k, Kind::Register)) {
            return;
        }
        self.requests.cancel(Kind::is_joining);
        self.session.handle_join();
        let id = self.fresh_id();
        let mut d = Datagram::Register { id, name: self.me.clone(), secret: self.secret.clone(), pad: String::new() };
        // Padding pays for the server's answer before the server knows we receive here.
        let len = chat_proto::encode(&d).map_or(0, |b| b.len());
        if let Datagram::Register { pad, .. } = &mut d {
            *pad = " ".repeat(REGISTER_PAD_TO.saturating_sub(len));
        }
        self.request(now, self.server, id, &d, Kind::Register);
    }

    fn on_registered(&mut self, now: Instant, id: MsgId, (version, stored): (u64, u32), secret: Secret, cookie: u64) {
        if self.requests.answer(id, self.server, |k| matches!(k, Kind::Register)).is_none() {
            return;
        }
        if self.secret.as_ref() != Some(&secret) {
            self.secret = Some(secret);
            self.secret_changed = true;
        }
        // Online for datagrams now; the welcome waits for the server to confirm the address, so
        // that it means the registration is done (what arrives meanwhile is shown after it).
        self.session.handle_registered(stored);
        self.table.handle_registered(version);
        let id = self.fresh_id();
        self.request(now, self.server, id, &Datagram::Confirm { id, cookie }, Kind::Confirm);
    }

    /// The server knows we receive at our address: welcome, the sends it had refused, then
    /// fetch stored messages, or wait for the table.
    fn on_confirmed(&mut self, now: Instant) {
        let (welcome, stored) = self.session.handle_confirmed();
        if let Some(welcome) = welcome {
            self.emit(welcome);
        }
        for kind in self.requests.unpark() {
            match kind {
                Kind::Save(o) => self.save(now, o),
                Kind::Channel(text) => self.send_all(now, text),
                _ => {}
            }
        }
        if stored == 0 {
            self.registration_done(now);
        } else {
            self.fetch_more(now);
        }
    }

    fn registration_done(&mut self, now: Instant) {
        self.release_held();
        self.table.expect(now);
    }

    fn fetch_more(&mut self, now: Instant) {
        let Some(indices) = self.session.fetch_mut().map(crate::fetch::Fetch::poll_indices) else { return };
        for index in indices {
            let id = self.fresh_id();
            self.request(now, self.server, id, &Datagram::Fetch { id, index }, Kind::Fetch { index });
        }
    }

    fn on_stored(&mut self, now: Instant, id: MsgId, index: u32, message: StoredMessage) {
        // The answer must be for the index asked: another would be shown in the wrong place.
        let asked = |k: &Kind| matches!(k, Kind::Fetch { index: i } if *i == index);
        if self.requests.answer(id, self.server, asked).is_none() {
            tracing::debug!(%id, index, "a stored message that answers no fetch in flight");
            return;
        }
        let Some(fetch) = self.session.fetch_mut() else { return };
        let ready = fetch.handle_stored(index, message);
        let done = if ready.is_empty() { None } else { fetch.done() };
        for m in ready {
            self.show_stored(m);
        }
        match done {
            Some((count, last)) => {
                let id = self.fresh_id();
                self.request(now, self.server, id, &Datagram::FetchDone { id, count, last }, Kind::FetchDone);
            }
            None => self.fetch_more(now),
        }
    }

    /// Shows a stored message unless it was shown live already (its ACK was lost, and so the
    /// sender or the server stored it too).
    fn show_stored(&mut self, m: StoredMessage) {
        if !self.inbox.first_stored(&m) {
            tracing::debug!(from = %m.from, id = %m.id, "stored message already shown");
            return;
        }
        if self.session.fetch_mut().is_some_and(crate::fetch::Fetch::announce) {
            self.emit(Event::HaveMessages);
        }
        self.emit(Event::Stored(m));
    }

    fn dereg(&mut self, now: Instant, then_exit: bool) {
        let Some(secret) = self.proof() else {
            self.session.handle_stay();
            return;
        };
        let id = self.fresh_id();
        let d = Datagram::Dereg { id, name: self.me.clone(), secret };
        self.request(now, self.server, id, &d, Kind::Dereg { then_exit });
    }

    fn went_offline(&mut self, then_exit: bool) {
        self.session.handle_offline();
        self.requests.cancel(Kind::is_joining);
        self.release_held();
        self.table.stop_waiting();
        self.emit(Event::Offline);
        if then_exit {
            self.exit_with(0, None);
        }
    }

    // ---- answers from the server ----

    fn on_ack(&mut self, now: Instant, id: MsgId) {
        match self.requests.answer(id, self.server, Kind::is_acked) {
            Some(Kind::Dereg { then_exit }) => self.went_offline(then_exit),
            Some(Kind::Confirm) => self.on_confirmed(now),
            Some(Kind::Save(_)) => self.emit(Event::Saved),
            Some(Kind::Channel(_)) => self.emit(Event::ChannelAcked),
            Some(Kind::FetchDone) => {
                self.session.handle_fetched();
                self.registration_done(now);
            }
            _ => {}
        }
    }

    /// A `send_all` that reached everyone online, but whose copies for some offline members
    /// could not be kept (their mailboxes are full).
    fn on_channel_partial(&mut self, now: Instant, id: MsgId, full: &[Name]) {
        if !matches!(self.requests.get(id, self.server), Some(Kind::Channel(_))) {
            return;
        }
        self.on_ack(now, id);
        let names: Vec<&str> = full.iter().map(Name::as_str).collect();
        self.notice(format!("Not kept for {}: mailbox full.", names.join(", ")));
    }

    fn on_refused(&mut self, now: Instant, id: MsgId, reason: Refusal) {
        let Some(kind) = self.requests.answer(id, self.server, |k| !matches!(k, Kind::Direct(_))) else { return };
        match kind {
            Kind::Register => self.registration_refused(reason),
            // The server does not take this secret for the name: still online there.
            Kind::Dereg { then_exit } if reason == Refusal::NotOwner => {
                self.notice(format!("Not deregistered: {reason}."));
                self.session.handle_stay();
                if then_exit {
                    self.exit_with(0, None);
                }
            }
            // The server does not know this client at this address: it is offline already.
            Kind::Dereg { then_exit } => self.went_offline(then_exit),
            // The server does not know this client (it restarted): register, then do it again.
            kind @ (Kind::Save(_) | Kind::Channel(_)) if reason == Refusal::NotRegistered => {
                self.requests.park(kind);
                self.register(now);
            }
            Kind::Save(o) => self.emit(Event::NotSaved { to: o.to().clone(), reason }),
            Kind::Channel(_) => self.notice(format!("Message not sent: {reason}.")),
            // The server lost track of this registration (it restarted): register again.
            // What was held back is shown once registered again (or at exit).
            Kind::Confirm | Kind::Fetch { .. } | Kind::FetchDone => self.register(now),
            Kind::Direct(_) => {}
        }
    }

    fn registration_refused(&mut self, reason: Refusal) {
        let name = self.me.clone();
        match reason {
            Refusal::NameTaken => self.exit_with(1, Some(Event::NameTaken(name))),
            Refusal::NotOwner => self.exit_with(1, Some(Event::NotOwner(name))),
            _ => {
                self.notice(format!("Registration refused: {reason}."));
                self.exit_with(1, Some(Event::Notice("Exiting".into())));
            }
        }
    }

    /// The recipient answered the server's probe: show it, take the table, try it directly
    /// once more.
    fn on_exists(&mut self, now: Instant, id: MsgId, row: ClientRow) {
        let Some(Kind::Save(mut o)) = self.requests.answer(id, self.server, |k| matches!(k, Kind::Save(_))) else {
            return;
        };
        self.emit(Event::Exists { to: o.to().clone() });
        self.table.apply_row(row);
        self.emit(Event::TableUpdated);
        o.handle_exists();
        self.direct(now, o);
    }

    /// A request got no answer after every retry.
    fn on_gave_up(&mut self, now: Instant, kind: Kind) {
        match kind {
            Kind::Direct(o) => {
                self.emit(Event::NoAck { to: o.to().clone() });
                self.save(now, o);
            }
            Kind::Channel(_) => self.emit(Event::ChannelFailed),
            _ => self.exit_with(1, Some(Event::ServerGone)),
        }
    }

    // ---- the table ----

    fn on_table(&mut self, now: Instant, apply: impl FnOnce(&mut LocalTable) -> Applied) {
        if !self.session.answers_peers() {
            return;
        }
        let Applied { ack, changed } = apply(&mut self.table);
        if let Some(version) = ack {
            self.send_once(self.server, &Datagram::TableAck { version });
        }
        if changed {
            self.table_changed(now);
        }
    }

    /// Shows the update; a table that says the server lost track of this client (its probe
    /// answers were lost) makes it register again.
    fn table_changed(&mut self, now: Instant) {
        if self.table.lost(&self.me) && self.session.online() {
            tracing::info!("the server lists this client offline: registering again");
            self.register(now);
        }
        // While stored messages are shown, table updates are not held back.
        if matches!(self.session.stage(), Stage::Fetching { .. }) {
            self.emit(Event::TableUpdated);
        } else {
            self.show_live(Event::TableUpdated);
        }
    }

    // ---- messages ----

    fn on_chat(&mut self, from: SocketAddr, id: MsgId, sender: Name, text: Text) {
        if !self.session.answers_peers() {
            return;
        }
        if self.inbox.first_chat(&sender, id) {
            self.show_live(Event::Chat { from: sender, text });
        }
        self.send_once(from, &Datagram::ChatAck { id });
    }

    fn on_channel(&mut self, id: MsgId, sender: Name, text: Text) {
        if !self.session.answers_peers() {
            return;
        }
        if self.inbox.first_channel(id) {
            self.show_live(Event::Channel { from: sender, text });
        }
        self.send_once(self.server, &Datagram::ChannelAck { id });
    }

    fn on_chat_ack(&mut self, from: SocketAddr, id: MsgId) {
        if let Some(Kind::Direct(o)) = self.requests.answer(id, from, |k| matches!(k, Kind::Direct(_))) {
            self.emit(Event::Delivered { to: o.to().clone() });
        }
    }

    /// Shows a live line now, or after the welcome and the stored messages while the client is
    /// still registering or fetching them.
    fn show_live(&mut self, e: Event) {
        if let Some(e) = self.session.hold(e) {
            self.emit(e);
        }
    }

    // ---- commands ----

    fn run_command(&mut self, now: Instant, cmd: Command) {
        let offline = matches!(self.session.stage(), Stage::Offline);
        match cmd {
            Command::List => self.emit(Event::List(self.table.snapshot())),
            Command::Help => self.emit(Event::Help),
            Command::Quit if offline => self.exit_with(0, None),
            // Sends in flight end first: each keeps its one outcome line.
            Command::Quit => self.session.handle_leave(true),
            Command::Reg { name } if name != self.me => {
                self.notice(format!("You can only reg as yourself ({}).", self.me));
            }
            Command::Reg { .. } if !offline => self.notice("You are already registered."),
            Command::Reg { .. } => {
                self.session.handle_reg();
                self.register(now);
            }
            _ if offline => {
                let me = &self.me;
                self.notice(format!(
                    "You are offline: only reg, list, help and quit work. Type reg {me} to come back."
                ));
            }
            Command::Dereg { name } if name != self.me => {
                self.notice(format!("You can only dereg yourself ({}).", self.me));
            }
            Command::Dereg { .. } => self.session.handle_leave(false),
            Command::Send { to, text } => self.send(now, to, text),
            Command::SendAll { text } => self.send_all(now, text),
        }
    }

    fn send(&mut self, now: Instant, to: Name, text: Text) {
        if self.table.row(&to).is_none() {
            self.notice(format!("No client named {to}. Type list to see the table."));
            return;
        }
        let chat_id = self.fresh_id();
        self.direct(now, Outgoing::new(to, text, chat_id));
    }

    /// Sends to the peer if the table shows it online, else straight to the server.
    fn direct(&mut self, now: Instant, o: Outgoing) {
        match self.table.row(o.to()) {
            Some((addr, true)) => {
                let d = o.chat(&self.me);
                self.request(now, addr, o.chat_id(), &d, Kind::Direct(o));
            }
            _ => self.save(now, o),
        }
    }

    fn save(&mut self, now: Instant, o: Outgoing) {
        let Some(secret) = self.proof() else { return };
        let id = self.fresh_id();
        let d = o.save(id, &self.me, secret);
        self.request(now, self.server, id, &d, Kind::Save(o));
    }

    fn send_all(&mut self, now: Instant, text: Text) {
        let Some(secret) = self.proof() else { return };
        let id = self.fresh_id();
        let d = Datagram::ChannelSend { id, from: self.me.clone(), secret, text: text.clone() };
        self.request(now, self.server, id, &d, Kind::Channel(text));
    }

    // ---- plumbing ----

    fn emit(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// Shows what was held back while registering or fetching.
    fn release_held(&mut self) {
        let held = self.session.release();
        self.events.extend(held);
    }

    /// Stops the client with `code` after `e` is shown (and whatever was held back: messages
    /// already ACKed to their senders). Once exiting, nothing more is shown: several requests
    /// may give up at the same wake-up.
    fn exit_with(&mut self, code: i32, e: Option<Event>) {
        if self.exit.is_some() {
            return;
        }
        self.release_held();
        if let Some(e) = e {
            self.emit(e);
        }
        self.exit = Some(code);
    }

    /// The name's secret, which requests in its name carry. A client only makes them once
    /// registered, when the server has handed it out; were it missing, the user is told.
    fn proof(&mut self) -> Option<Secret> {
        if self.secret.is_none() {
            self.notice("Not sent: this client has no secret for its name yet (register first).");
        }
        self.secret.clone()
    }

    fn fresh_id(&mut self) -> MsgId {
        self.next_id = self.next_id.wrapping_add(1);
        MsgId(self.next_id)
    }

    /// Sends `d` (whose id is `id`) to `to` and retries it until answered or given up; if it
    /// cannot be encoded, the user is told.
    fn request(&mut self, now: Instant, to: SocketAddr, id: MsgId, d: &Datagram, kind: Kind) {
        match chat_proto::encode(d) {
            Ok(bytes) => {
                let t = self.requests.start(now, to, id, bytes, kind);
                self.out.push_back(t);
            }
            Err(e) => self.notice(format!("Message too long to send: {e}.")),
        }
    }

    /// Sends `d` once, no answer expected (ACKs).
    fn send_once(&mut self, to: SocketAddr, d: &Datagram) {
        match chat_proto::encode(d) {
            Ok(bytes) => self.out.push_back(Transmit { to, bytes: bytes.into() }),
            Err(e) => tracing::error!("cannot encode {d:?}: {e}"),
        }
    }

    /// Whether a `send` or `send_all` is in flight, or waits for the client to register again.
    fn sending(&self) -> bool {
        self.requests.has_parked() || self.requests.any(Kind::is_send)
    }

    /// Whether lines can run now, rather than wait in the queue.
    fn settled(&self, now: Instant) -> bool {
        self.session.settled() && !self.requests.has_parked() && !self.table.awaiting(now)
    }

    /// Asks for the table if it is late, starts a `dereg` once the sends have ended, runs
    /// queued lines once the client is settled, and exits at the end of input once nothing is
    /// left in flight.
    fn settle(&mut self, now: Instant) {
        if let Some(version) = self.table.handle_timeout(now, self.session.answers_peers()) {
            self.send_once(self.server, &Datagram::TableAck { version });
        }
        while self.exit.is_none() {
            if let Stage::Leaving { then_exit } = *self.session.stage() {
                if !self.sending() && !self.requests.any(|k| matches!(k, Kind::Dereg { .. })) {
                    self.dereg(now, then_exit);
                }
            }
            if !self.settled(now) {
                break;
            }
            match self.queue.pop_front() {
                Some(Line::Command(cmd)) => self.run_command(now, cmd),
                Some(Line::Invalid(why)) => self.notice(why),
                None => break,
            }
        }
        if self.closing && self.queue.is_empty() && self.requests.is_empty() && self.settled(now) {
            self.exit.get_or_insert(0);
        }
    }
}
