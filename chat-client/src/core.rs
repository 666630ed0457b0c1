//! The client's sans-IO core: registration, the local table, and every send with its ACK,
//! retries and fallback, with no socket and no clock.
//!
//! Inputs are [`Client::handle_datagram`], [`Client::handle_command`], [`Client::handle_timeout`]
//! and [`Client::handle_end_of_input`], each given `now`; outputs are [`Client::poll_transmit`],
//! [`Client::poll_event`], [`Client::poll_timeout`] and [`Client::poll_exit`]. The flows live
//! beside this file: `session.rs` (register, dereg, fetch, table) and `send.rs` (direct, save,
//! channel).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_proto::{Datagram, MsgId, Name, Secret, Table, Text, encode};

use crate::command::Command;
use crate::event::Event;
use crate::recent::Recent;
use crate::send::Outgoing;
use crate::session::Fetch;

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

/// Where the client stands with the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// The first registration has not been answered yet.
    Joining,
    /// Registered: messages, probes and tables are answered.
    Online,
    /// After `dereg`: to everyone else the client is gone.
    Offline,
}

/// What a request in flight is for: decides what its answer or its timeout means.
#[derive(Debug)]
pub(crate) enum Kind {
    Register,
    /// Proving the address after `registered`; `stored` messages wait to be fetched.
    Confirm {
        stored: u32,
    },
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

/// One input line, parsed or not, waiting for its turn.
#[derive(Debug)]
enum Line {
    Command(Command),
    /// What to tell the user about a line that is no command.
    Invalid(String),
}

/// A datagram sent and not yet answered.
#[derive(Debug)]
pub(crate) struct Request {
    pub to: SocketAddr,
    pub kind: Kind,
    bytes: Vec<u8>,
    next_at: Instant,
    left: u32,
}

/// The client's state.
#[derive(Debug)]
pub struct Client {
    pub(crate) cfg: Config,
    pub(crate) me: Name,
    pub(crate) server: SocketAddr,
    /// The name's secret, once known; `secret_changed` until the driver has kept it.
    pub(crate) secret: Option<Secret>,
    pub(crate) secret_changed: bool,
    pub(crate) status: Status,
    pub(crate) table: Option<Table>,
    /// The pages of a table that came in several datagrams, while they arrive.
    pub(crate) pages: Option<crate::table::Pages>,
    /// The table version of this client's last registration (a new name's row comes in a
    /// later one, once the address is confirmed).
    pub(crate) registered_version: u64,
    /// A table has shown this client online since its last registration.
    pub(crate) seen_online: bool,
    /// Command lines wait here while the client registers, fetches, or waits for its first
    /// table; a line that did not parse waits too, so that answers keep the order of the lines.
    queue: VecDeque<Line>,
    /// Until when commands wait for the first table after registering.
    pub(crate) table_wait: Option<Instant>,
    /// When to ask the server for the table if none as new as the registration has come, and
    /// how long to wait after that.
    pub(crate) table_pull: Option<(Instant, Duration)>,
    pub(crate) fetch: Option<Fetch>,
    /// What arrived live while the client was registering or fetching stored messages: shown
    /// after the welcome and the stored messages.
    pub(crate) held: Vec<Event>,
    /// `dereg` or `quit` (`Some(true)`: exit after) waits for the sends in flight.
    pub(crate) leaving: Option<bool>,
    /// Sends the server refused as from an unknown client (it restarted without knowing this
    /// one): done again once registered.
    pub(crate) redo: Vec<Kind>,
    pub(crate) requests: HashMap<MsgId, Request>,
    pub(crate) chats_seen: Recent<(Name, MsgId)>,
    pub(crate) channel_seen: Recent<MsgId>,
    closing: bool,
    /// The welcome for the registration the user asked for (the first, or `reg`) was shown: a
    /// registration the client makes again on its own shows none.
    pub(crate) welcomed: bool,
    exit: Option<i32>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    next_id: u64,
}

/// How many recent message ids are remembered to spot duplicates.
const RECENT_IDS: usize = 16_384;

impl Client {
    /// A client named `me` that will register with `server`, showing `secret` if it has one
    /// from an earlier run. `id_seed` should be random, so that ids differ across restarts.
    pub fn new(cfg: Config, me: Name, server: SocketAddr, secret: Option<Secret>, id_seed: u64) -> Self {
        Self {
            cfg,
            me,
            server,
            secret,
            secret_changed: false,
            status: Status::Joining,
            table: None,
            pages: None,
            registered_version: 0,
            seen_online: false,
            queue: VecDeque::new(),
            table_wait: None,
            table_pull: None,
            fetch: None,
            held: Vec::new(),
            leaving: None,
            redo: Vec::new(),
            requests: HashMap::new(),
            chats_seen: Recent::new(RECENT_IDS),
            channel_seen: Recent::new(RECENT_IDS),
            closing: false,
            welcomed: false,
            exit: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_id: id_seed,
        }
    }

    /// Sends the first registration.
    pub fn start(&mut self, now: Instant) {
        self.register(now);
    }

    /// Handles one decoded datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: Datagram) {
        let from_server = from == self.server;
        match d {
            Datagram::Chat { id, from: sender, to, text } if to == self.me => self.on_chat(from, id, sender, text),
            Datagram::ChatAck { id } => self.on_chat_ack(from, id),
            Datagram::Registered { id, version, stored, secret, cookie } if from_server => {
                self.on_registered(now, id, version, stored, secret, cookie);
            }
            Datagram::Refused { id, reason } if from_server => self.on_refused(now, id, reason),
            Datagram::Ack { id } if from_server => self.on_ack(now, id),
            Datagram::ChannelPartial { id, full } if from_server => self.on_channel_partial(now, id, &full),
            Datagram::Exists { id, row } if from_server => self.on_exists(now, id, row),
            Datagram::TableDelta { base, version, rows } if from_server => {
                self.on_table_delta(now, base, version, rows)
            }
            Datagram::TablePage { version, page, pages, clients } if from_server => {
                self.on_table_page(now, version, page, pages, clients);
            }
            Datagram::Stored { id, index, message } if from_server => self.on_stored(now, id, index, message),
            Datagram::Table(table) if from_server => self.on_table(now, table),
            Datagram::Probe { id } if from_server => self.on_probe(id),
            Datagram::Channel { id, from: sender, text } if from_server => self.on_channel(id, sender, text),
            other => tracing::debug!(%from, "dropped an unexpected datagram: {other:?}"),
        }
        self.settle(now);
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
        match crate::command::parse(line) {
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

    /// Shows `text` to the user (a command that did not parse, for instance).
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
        let due: Vec<MsgId> = self.requests.iter().filter(|(_, r)| r.next_at <= now).map(|(id, _)| *id).collect();
        for id in due {
            let Some(r) = self.requests.get_mut(&id) else {
                continue;
            };
            if r.left > 0 {
                r.left -= 1;
                r.next_at = now + self.cfg.ack_timeout;
                self.out.push_back((r.to, r.bytes.clone()));
            } else if let Some(r) = self.requests.remove(&id) {
                self.on_gave_up(now, r.kind);
            }
        }
        self.settle(now);
    }

    /// The next datagram to send, encoded.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next thing to show the user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pull = self.table_pull.map(|(at, _)| at);
        self.requests.values().map(|r| r.next_at).chain(self.table_wait).chain(pull).min()
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

    pub(crate) fn emit(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// Stops the client with `code` after `e` is shown (and whatever was held back: messages
    /// already ACKed to their senders).
    /// Once exiting, nothing more is shown: several requests may give up at the same wake-up.
    pub(crate) fn exit_with(&mut self, code: i32, e: Option<Event>) {
        if self.exit.is_some() {
            return;
        }
        self.release_held();
        if let Some(e) = e {
            self.emit(e);
        }
        self.exit.get_or_insert(code);
    }

    /// The name's secret, which requests in its name carry. A client only makes them once
    /// registered, when the server has handed it out; were it missing, the user is told.
    pub(crate) fn proof(&mut self) -> Option<Secret> {
        if self.secret.is_none() {
            self.notice("Not sent: this client has no secret for its name yet (register first).");
        }
        self.secret.clone()
    }

    pub(crate) fn fresh_id(&mut self) -> MsgId {
        self.next_id = self.next_id.wrapping_add(1);
        MsgId(self.next_id)
    }

    /// Sends `d` (whose id is `id`) to `to` and retries it until answered or given up.
    /// Returns false, having told the user, if it cannot be encoded.
    pub(crate) fn request(&mut self, now: Instant, to: SocketAddr, id: MsgId, d: &Datagram, kind: Kind) -> bool {
        let bytes = match encode(d) {
            Ok(b) => b,
            Err(e) => {
                self.notice(format!("Message too long to send: {e}."));
                return false;
            }
        };
        self.out.push_back((to, bytes.clone()));
        let next_at = now + self.cfg.ack_timeout;
        self.requests.insert(id, Request { to, kind, bytes, next_at, left: self.cfg.retries });
        true
    }

    /// Sends `d` once, no answer expected (ACKs).
    pub(crate) fn send_once(&mut self, to: SocketAddr, d: &Datagram) {
        match encode(d) {
            Ok(bytes) => self.out.push_back((to, bytes)),
            Err(e) => tracing::error!("cannot encode {d:?}: {e}"),
        }
    }

    /// Takes the request `id` if it is one of ours sent to `from`.
    pub(crate) fn answered(&mut self, id: MsgId, from: SocketAddr) -> Option<Kind> {
        if self.requests.get(&id).is_none_or(|r| r.to != from) {
            tracing::debug!(%from, %id, "answer to no request in flight");
            return None;
        }
        self.requests.remove(&id).map(|r| r.kind)
    }

    /// The kind of the request `id`, if it is in flight to `from`.
    pub(crate) fn in_flight(&self, id: MsgId, from: SocketAddr) -> Option<&Kind> {
        self.requests.get(&id).filter(|r| r.to == from).map(|r| &r.kind)
    }

    /// Whether a `send` or `send_all` is in flight.
    pub(crate) fn sending(&self) -> bool {
        !self.redo.is_empty()
            || self.requests.values().any(|r| matches!(r.kind, Kind::Direct(_) | Kind::Save(_) | Kind::Channel(_)))
    }

    /// Whether what arrives now waits to be shown: the server has registered this client but
    /// not yet confirmed its address (so no welcome yet), stored messages are being fetched,
    /// or earlier lines are still held (a registration was refused and is being done again).
    pub(crate) fn holding(&self) -> bool {
        self.fetch.is_some()
            || !self.held.is_empty()
            || self.requests.values().any(|r| matches!(r.kind, Kind::Confirm { .. }))
    }

    /// Shows what was held back while registering or fetching.
    pub(crate) fn release_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.events.extend(held);
    }

    /// Whether commands can run now, rather than wait in the queue.
    fn settled(&self, now: Instant) -> bool {
        let registering = self
            .requests
            .values()
            .any(|r| matches!(r.kind, Kind::Register | Kind::Confirm { .. } | Kind::Dereg { .. }));
        if !self.redo.is_empty() {
            return false;
        }
        if self.leaving.is_some() {
            return false;
        }
        let awaiting_table = self.table_wait.is_some_and(|t| now < t)
            && self.table.as_ref().is_none_or(|t| t.version < self.registered_version);
        !registering && self.fetch.is_none() && !awaiting_table && self.status != Status::Joining
    }

    /// Runs queued commands once the client is settled, and exits at the end of input once
    /// nothing is left in flight.
    fn settle(&mut self, now: Instant) {
        if self.table_wait.is_some_and(|t| now >= t) {
            self.table_wait = None;
        }
        self.pull_table(now);
        while self.exit.is_none() {
            if let Some(then_exit) = self.leaving.filter(|_| !self.sending()) {
                self.leaving = None;
                self.dereg(now, then_exit);
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
