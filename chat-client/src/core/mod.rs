//! The client's sans-IO core: it routes inputs to the components that own the state and turns
//! what they decide into datagrams and lines. No socket, no clock, no randomness of its own.
//!
//! Inputs are [`Client::handle_bytes`] (or [`Client::handle_datagram`]), [`Client::handle_line`],
//! [`Client::handle_command`], [`Client::handle_timeout`] and [`Client::handle_end_of_input`],
//! each given `now`; outputs are [`Client::poll_transmit`], [`Client::poll_event`],
//! [`Client::poll_timeout`], [`Client::poll_secret`] and [`Client::poll_exit`]. The components:
//! [`Session`] (the standing with the server), [`Requests`] (what is in flight), [`LocalTable`],
//! [`Inbox`] (duplicates), [`Identity`] (the name's secret) and [`Outgoing`] (a direct message's
//! attempts).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::{BoundedMap, Entropy, Transmit};
use chat_proto::{Datagram, KeyPair, MsgId, Name, PublicKey, Sealed, Secret, Text};

use crate::answers::Answers;
use crate::command::{Command, parse};
use crate::event::Event;
use crate::identity::Identity;
use crate::inbox::{Inbox, Shown};
use crate::keybook::KeyBook;
use crate::nodes::Nodes;
use crate::requests::{Due, Requests};
use crate::send::Outgoing;
use crate::session::{Session, Stage};
use crate::table::LocalTable;

mod failover;
mod messages;
mod server;
mod trust;

/// How the client times its retries.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long to wait for each ACK.
    pub ack_timeout: Duration,
    /// Retransmissions after the first send before giving up.
    pub retries: u32,
    /// Show the lines each command causes in the order of the commands, holding a later
    /// command's lines while an earlier `send` still waits for its answer: what a script
    /// reading the output line by line needs. At a terminal lines show as they come. Sends
    /// overlap either way.
    pub answers_in_order: bool,
    /// Where this client listens on its own network (its interface's address), told to the
    /// server so that peers behind the same NAT reach it there.
    pub lan: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self { ack_timeout: Duration::from_millis(500), retries: 5, answers_in_order: false, lan: None }
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
    /// A `send_all`, with the command's turn.
    Channel(Text, Option<u64>),
    /// The stored message at `index`.
    Fetch {
        index: u32,
    },
    FetchDone,
}

impl Kind {
    fn is_send(&self) -> bool {
        matches!(self, Self::Direct(_) | Self::Save(_) | Self::Channel(..))
    }

    /// The command whose answer this request is.
    fn turn(&self) -> Option<u64> {
        match self {
            Self::Direct(o) | Self::Save(o) => o.turn(),
            Self::Channel(_, turn) => *turn,
            _ => None,
        }
    }

    /// Part of a registration: dropped when a new one starts.
    fn is_joining(&self) -> bool {
        matches!(self, Self::Confirm | Self::Fetch { .. } | Self::FetchDone)
    }

    /// What the server answers with `ack`.
    fn is_acked(&self) -> bool {
        matches!(self, Self::Dereg { .. } | Self::Confirm | Self::Save(_) | Self::Channel(..) | Self::FetchDone)
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
    identity: Identity,
    /// The key first seen for each name, and the names whose key changed since.
    keys: KeyBook,
    session: Session,
    table: LocalTable,
    requests: Requests<Kind>,
    inbox: Inbox,
    /// Lines wait here while the client registers, fetches, or waits for its first table.
    queue: VecDeque<Line>,
    /// What each command has shown, in the order of the commands.
    answers: Answers,
    /// The command whose lines are being emitted, if any.
    turn: Option<u64>,
    /// Input has ended: exit once nothing is left to do.
    closing: bool,
    exit: Option<i32>,
    out: VecDeque<Transmit>,
    /// What to show, each with the turn of the command it answers (none: not an answer, or
    /// held for the order of the commands first) and the message it shows, if it shows one
    /// (for the driver to record right after its line).
    events: VecDeque<(Event, Option<u64>, Option<Shown>)>,
    next_id: u64,
    /// Nonces for sealing.
    entropy: Entropy,
    /// Datagrams that did not decode.
    dropped: u64,
    /// Chats that came before the table had their senders' keys (a restarted client hears
    /// from peers before the server's table): opened when a table comes, unanswered until
    /// then. Bounded: the oldest go first.
    unverified: VecDeque<(SocketAddr, MsgId, Name, Sealed)>,
    /// Chats, ACKs and stored messages dropped because they did not open with their sender's
    /// key (forged, altered, or from a name the table has no key for).
    unauthentic: u64,
    /// While online: how often to keep alive (the server's choice) and when next.
    keepalive: Keepalive,
    /// When each peer's punch last made us send again.
    punched: BoundedMap<SocketAddr, Instant>,
    /// The path that last carried an ACK from each peer: tried first next time.
    paths: BoundedMap<Name, Path>,
    /// This client's address on its own network.
    lan: Option<SocketAddr>,
    /// The server's other nodes, to move to when the current one stops answering.
    nodes: Nodes,
}

/// How a peer was last reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Straight to its address.
    Direct,
    /// Through the server.
    Relay,
}

/// The keepalive the server asked for: one datagram every `every` while online (none if zero).
#[derive(Debug, Default)]
struct Keepalive {
    every: Duration,
    next: Option<Instant>,
}

impl Client {
    /// A client named `me` that will register with `server` as `identity`; `entropy` makes its
    /// ids differ across restarts, and its seals' nonces.
    pub fn new(cfg: Config, me: Name, server: SocketAddr, identity: Identity, mut entropy: Entropy) -> Self {
        Self {
            me,
            server,
            identity,
            keys: KeyBook::default(),
            session: Session::default(),
            table: LocalTable::new(cfg.ack_timeout, cfg.retries),
            requests: Requests::new(cfg.ack_timeout, cfg.retries),
            inbox: Inbox::default(),
            queue: VecDeque::new(),
            answers: Answers::new(cfg.answers_in_order),
            turn: None,
            closing: false,
            exit: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_id: entropy.u64(),
            entropy,
            dropped: 0,
            unverified: VecDeque::new(),
            unauthentic: 0,
            keepalive: Keepalive::default(),
            punched: BoundedMap::new(256),
            paths: BoundedMap::new(4096),
            lan: cfg.lan,
            nodes: Nodes::default(),
        }
    }

    /// The key book an earlier run kept: the keys first seen for each name.
    #[must_use]
    pub fn with_key_book(mut self, keys: KeyBook) -> Self {
        self.keys = keys;
        self
    }

    /// The record of what an earlier run showed (kept by the driver, see [`crate::record`]):
    /// those messages are not shown again.
    pub(crate) fn handle_record(&mut self, inbox: Inbox) {
        self.inbox = inbox;
    }

    /// The whole record of what was shown, to compact its file.
    pub(crate) fn record(&self) -> &Inbox {
        &self.inbox
    }

    /// The server's address: the node the client talks to now (it changes when the client
    /// moves to another node).
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The client's long-term key pair, for a channel to a new node.
    pub fn key_pair(&self) -> &KeyPair {
        self.identity.key()
    }

    /// A fresh seed from the core's randomness, for a channel to a new node.
    pub fn channel_seed(&mut self) -> [u8; 32] {
        self.entropy.bytes()
    }

    /// The server showed `shown` in the handshake, not the key pinned for it: the client says
    /// so and exits 1, having sent it nothing.
    pub fn refuse_server_key(&mut self, shown: PublicKey, pinned: PublicKey) {
        self.exit_with(1, Some(Event::ServerKeyRefused { server: self.server, shown, pinned }));
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
            self.nodes.heard(now);
            self.route_server(now, d);
        } else {
            self.route_peer(now, from, d);
        }
        self.settle(now);
    }

    fn route_peer(&mut self, now: Instant, from: SocketAddr, d: Datagram) {
        match d {
            Datagram::Chat { id, from: sender, to, sealed } if to == self.me => self.on_chat(from, id, sender, &sealed),
            Datagram::ChatAck { id, proof } => self.on_chat_ack(from, id, &proof),
            Datagram::Punch { .. } => self.on_punch(now, from),
            other => tracing::debug!(%from, "dropped an unexpected datagram: {other:?}"),
        }
    }

    fn route_server(&mut self, now: Instant, d: Datagram) {
        let server = self.server;
        match d {
            Datagram::Registered { id, version, stored, secret, cookie, keepalive_ms, nodes } => {
                self.keepalive.every = Duration::from_millis(keepalive_ms);
                self.on_registered(now, id, (version, stored), secret, cookie, nodes);
            }
            // The other nodes changed; `alive` only says the node is there (heard above).
            Datagram::Nodes { nodes } => self.nodes.handle_list(nodes),
            Datagram::Alive => {}
            Datagram::Refused { id, reason } => self.on_refused(now, id, reason),
            Datagram::Ack { id } => self.on_ack(now, id),
            Datagram::ChannelPartial { id, full, unstored } => self.on_channel_partial(now, id, &full, &unstored),
            Datagram::Exists { id, row } => self.on_exists(now, id, row),
            Datagram::TableDelta { base, version, rows } => {
                let keyed = trust::keyed(&rows);
                self.on_table(now, |t| t.handle_delta(base, version, rows), Some(keyed));
            }
            Datagram::TablePage { version, page, pages, clients } => {
                self.on_table(now, |t| t.handle_page(version, page, pages, clients), None);
            }
            Datagram::Table(table) => self.on_table(now, |t| t.handle_table(table), None),
            Datagram::Stored { id, index, message } => self.on_stored(now, id, index, message),
            Datagram::Gone { id, index, msg } => self.on_gone(now, id, index, msg),
            Datagram::Probe { id } if self.session.answers_peers() => {
                self.send_once(server, &Datagram::ProbeAck { id, name: self.me.clone() });
            }
            // Through the server: a chat that found no direct path, and the ACK of one we sent.
            Datagram::RelayChat { id, from: sender, to, sealed } if to == self.me => {
                self.on_chat(server, id, sender, &sealed);
            }
            Datagram::RelayAck { id, from: acker, to, proof } if to == self.me => self.on_relay_ack(id, &acker, &proof),
            // A peer cannot reach us: open our NAT towards it.
            Datagram::PunchAsk { from: _, addr } if self.session.answers_peers() => {
                self.send_once(addr, &Datagram::Punch { from: self.me.clone() });
            }
            Datagram::Channel { id, from: sender, text } => self.on_channel(id, sender, text),
            other => self.route_peer(now, server, other),
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
        self.keep_alive(now);
        self.check_silence(now);
        while self.exit.is_none() {
            match self.requests.poll_due(now) {
                Some(Due::Retransmit { transmit, id, first }) => {
                    if transmit.to != self.server {
                        self.reach_further(id, &transmit, first);
                    }
                    self.out.push_back(transmit);
                }
                Some(Due::GaveUp { kind, id, bytes }) => self.on_gave_up(now, id, bytes, kind),
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
        self.poll_answer().map(|(e, _)| e)
    }

    /// The next thing to show the user, with the turn of the command it answers: turns are
    /// numbered from 0 in the order the core takes lines that are not blank (a blank line, one
    /// [`parse`] makes `Ok(None)` of, takes none). None for what answers no command (a message
    /// coming in, a table update), and for lines held for the order of the commands
    /// ([`Config::answers_in_order`]). A program that shows messages' states (a gateway) uses it
    /// to tell which `send` an outcome belongs to.
    pub fn poll_answer(&mut self) -> Option<(Event, Option<u64>)> {
        self.poll_line().map(|(e, turn, _)| (e, turn))
    }

    /// As [`Client::poll_answer`], with the message the line shows, if it shows one: for the
    /// driver to keep in the record right after printing that line, before it prints the next
    /// and before the datagrams queued with it (its ACK, a `fetch_done`) leave.
    pub(crate) fn poll_line(&mut self) -> Option<(Event, Option<u64>, Option<Shown>)> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let keepalive = self.keepalive.next.filter(|_| self.keeps_alive());
        let timers = [self.requests.next_timeout(), self.table.next_timeout(), keepalive, self.silent_at()];
        timers.into_iter().flatten().min()
    }

    /// While online, tells the server it is still here every interval the server asked for: so
    /// the server does not mark it gone, and the NAT in between keeps its mapping open. Offline
    /// (after `dereg`, or before the welcome), nothing.
    fn keep_alive(&mut self, now: Instant) {
        if !self.keeps_alive() || self.keepalive.every.is_zero() {
            self.keepalive.next = None;
            return;
        }
        match self.keepalive.next {
            None => self.keepalive.next = Some(now + self.keepalive.every),
            Some(at) if at <= now => {
                self.send_once(self.server, &Datagram::Keepalive);
                // On the beat, unless a whole interval was missed (a suspended laptop, which heard
                // nothing meanwhile: its node's silence is counted from now).
                let beat = at + self.keepalive.every;
                if beat <= now {
                    self.nodes.heard(now);
                }
                self.keepalive.next = Some(if beat > now { beat } else { now + self.keepalive.every });
            }
            Some(_) => {}
        }
    }

    /// Whether the server counts this client online: from the welcome until a `dereg` is done
    /// (also while it waits for sends to end) or the client exits.
    fn keeps_alive(&self) -> bool {
        let online = self.session.confirmed() || matches!(self.session.stage(), Stage::Leaving { .. });
        online && self.exit.is_none()
    }

    /// Keys first seen (or trusted) that the driver has not kept in the key book yet.
    pub fn poll_keys(&mut self) -> Vec<(Name, PublicKey)> {
        self.keys.poll_unsaved()
    }

    /// A secret the server handed out that the driver has not kept yet.
    pub fn poll_secret(&mut self) -> Option<Secret> {
        self.identity.poll_unsaved()
    }

    /// The exit code, once the client is done.
    pub fn poll_exit(&self) -> Option<i32> {
        self.exit
    }

    /// How many received datagrams did not decode and were dropped.
    pub fn dropped_datagrams(&self) -> u64 {
        self.dropped
    }

    // ---- plumbing ----

    fn emit(&mut self, e: Event) {
        let e = match self.turn {
            Some(turn) => self.answers.say(turn, e),
            None => Some(e),
        };
        self.events.extend(e.map(|e| (e, self.turn, None)));
    }

    /// Emits what `f` emits as lines of command `turn` (none: not caused by a command).
    fn in_turn(&mut self, turn: Option<u64>, f: impl FnOnce(&mut Self)) {
        let outer = std::mem::replace(&mut self.turn, turn);
        f(self);
        self.turn = outer;
    }

    /// Shows every line held for the order of the commands (the client is exiting).
    fn show_held_answers(&mut self) {
        let held = self.answers.drain();
        self.events.extend(held.into_iter().map(|e| (e, None, None)));
    }

    /// Finishes the turns of commands that have nothing more in flight, showing what waited
    /// on them.
    fn finish_turns(&mut self) {
        let live: std::collections::HashSet<u64> = self.requests.kinds().filter_map(Kind::turn).collect();
        for turn in self.answers.open() {
            if !live.contains(&turn) {
                let show = self.answers.finish(turn);
                self.events.extend(show.into_iter().map(|e| (e, None, None)));
            }
        }
    }

    /// Shows what was held back while registering or fetching.
    fn release_held(&mut self) {
        for (e, unacked) in self.session.release() {
            match unacked {
                Some(unacked) => self.deliver(e, unacked),
                None => self.events.push_back((e, None, None)),
            }
        }
    }

    /// Stops the client with `code` after `e` is shown (and whatever was held back: messages
    /// already ACKed to their senders). Once exiting, nothing more is shown: several requests
    /// may give up at the same wake-up.
    fn exit_with(&mut self, code: i32, e: Option<Event>) {
        if self.exit.is_some() {
            return;
        }
        self.release_held();
        // The last line belongs to the command being answered (a send whose save found no
        // server): it takes its place in the order, then every held answer is shown. A line
        // that answers no command (a registration of the client's own that found no server)
        // comes after every command's.
        if self.turn.is_none() {
            self.show_held_answers();
        }
        if let Some(e) = e {
            self.emit(e);
        }
        self.show_held_answers();
        self.exit = Some(code);
    }

    /// The name's secret, which requests in its name carry. A client only makes them once
    /// registered, when the server has handed it out; were it missing, the user is told.
    fn proof(&mut self) -> Option<Secret> {
        let secret = self.identity.secret().cloned();
        if secret.is_none() {
            self.notice("Not sent: this client has no secret for its name yet (register first).");
        }
        secret
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
    /// The peer at `from` opened its NAT towards us: what waits for it goes again now, at
    /// most once an ACK timeout (a forged punch cannot make us send more than the retries do).
    fn on_punch(&mut self, now: Instant, from: SocketAddr) {
        if self.punched.get(&from).is_some_and(|at| now.duration_since(*at) < self.requests.ack_timeout()) {
            return;
        }
        let copies = self.requests.copies_to(from);
        if !copies.is_empty() {
            self.punched.insert(from, now);
            self.out.extend(copies);
        }
    }

    /// The direct message `id`, sent as `t`, got no ACK in time: the first time, the server is
    /// asked to have the peer punch, and a chat sent to a LAN address also goes to the public
    /// one (two networks may share one public IP); from then on, a copy goes through the relay.
    fn reach_further(&mut self, id: MsgId, t: &Transmit, first: bool) {
        if !first {
            self.relay_copy(id, t.to);
            return;
        }
        self.ask_to_punch(id, t.to);
        if let Some(public) = self.table.public_of_lan(t.to) {
            self.out.push_back(Transmit { to: public, bytes: t.bytes.clone() });
        }
    }

    /// Sends a copy of the direct message `id` to `peer` through the server: the direct path
    /// did not open (a NAT that picks a new port for every destination), but the server reaches
    /// the peer.
    pub(super) fn relay_copy(&mut self, id: MsgId, peer: SocketAddr) {
        if let Some(Kind::Direct(o)) = self.requests.get(id, peer) {
            let d = o.relay(&self.me);
            self.send_once(self.server, &d);
        }
    }

    /// The direct message `id` to `peer` got no ACK at once: the peer may sit behind a NAT
    /// that drops what it did not ask for, so the server is asked to have it punch a hole
    /// towards us (SPEC 11), while the retransmissions go on.
    fn ask_to_punch(&mut self, id: MsgId, peer: SocketAddr) {
        if let Some(Kind::Direct(o)) = self.requests.get(id, peer) {
            let d = Datagram::PunchRequest { to: o.to().clone() };
            self.send_once(self.server, &d);
        }
    }

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
        self.keep_alive(now);
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
            let Some(line) = self.queue.pop_front() else { break };
            let turn = self.answers.begin();
            self.in_turn(Some(turn), |c| match line {
                Line::Command(cmd) => c.run_command(now, cmd),
                Line::Invalid(why) => c.notice(why),
            });
        }
        self.finish_turns();
        if self.closing && self.queue.is_empty() && self.requests.is_empty() && self.settled(now) {
            self.exit.get_or_insert(0);
        }
    }
}
