//! The server's sans-IO core: every decision the server makes, with no socket and no clock.
//!
//! Inputs are [`Server::handle_datagram`], [`Server::handle_timeout`] and [`Server::commit`], each
//! given `now`, and [`Server::handle_synced`]; outputs are [`Server::poll_transmit`],
//! [`Server::poll_timeout`] and the disk syncs that `commit` hands out. The async
//! driver in `driver.rs` feeds it; unit tests feed it a fake clock and drop transmits to play
//! loss. The handlers for each kind of request live in their own modules beside this one.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use chat_core::Transmit;
use chat_core::{Entropy, Key};
use chat_proto::{Datagram, MsgId, Name, REGISTER_PAD_TO, Refusal, Secret, Table, decode, encode};
use chrono::{DateTime, Utc};
use offline_store::{Store, StoreError, SyncJob};

use crate::budget::Budgets;
use crate::channel::Delivery;
use crate::clients::{Clients, SavedTable};
use crate::dedup::{Check, Dedup};
use crate::joining::Joining;
use crate::probe::Probe;
use crate::save::SaveRequest;
use crate::storage::{Held, Outcome, Storage};
use crate::tables::{Encoded, Push};

/// How the server times its retries.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long to wait for an ACK: the window of a probe or of a channel delivery, and the
    /// interval between table retransmissions.
    pub ack_timeout: Duration,
    /// How many times a table is retransmitted to a client that does not ACK it.
    pub retries: u32,
    /// How many recent requests are remembered to answer retransmissions.
    pub dedup_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { ack_timeout: Duration::from_millis(500), retries: 5, dedup_capacity: 65_536 }
    }
}

/// The registration server's state.
#[derive(Debug)]
pub struct Server<S> {
    pub(crate) cfg: Config,
    pub(crate) storage: Storage<S>,
    pub(crate) clients: Clients,
    pub(crate) dedup: Dedup,
    pub(crate) probes: Vec<Probe>,
    /// Stored messages being fetched by a client that just registered.
    pub(crate) fetches: HashMap<Name, Vec<chat_proto::StoredMessage>>,
    pub(crate) deliveries: HashMap<(SocketAddr, MsgId), Delivery>,
    pub(crate) pushes: HashMap<SocketAddr, Push>,
    /// The current table version's encodings, shared by the pushes that need them.
    pub(crate) encoded: Encoded,
    /// The table version each client last ACKed: the base of its next delta.
    pub(crate) acked: HashMap<SocketAddr, u64>,
    pub(crate) table_dirty: bool,
    /// Clients just marked offline by a failed probe: they get the table too, so that one that
    /// is in fact alive (its answers were lost) sees it and registers again.
    pub(crate) also_tell: Vec<SocketAddr>,
    /// New names registering from addresses not yet proven: their rows wait for `confirm`.
    pub(crate) joining: Joining,
    out: VecDeque<Transmit>,
    pub(crate) budgets: Budgets,
    /// Keys the cookies of `registered` (a keyed hash of the client's address) and fresh ids.
    cookie_key: Key,
    /// Where fresh secrets come from.
    entropy: Entropy,
    /// Datagrams dropped because they did not decode.
    dropped: u64,
    next_id: u64,
    start: Instant,
    start_wall: DateTime<Utc>,
    /// The time of the latest input: when replies released by a sync were sent.
    now: Instant,
}

impl<S: Store> Server<S> {
    /// A server with an empty table. `start` and `start_wall` are the same moment on the
    /// monotonic and the wall clock. Cookie keys, ids and secrets come from `entropy`.
    pub fn new(cfg: Config, store: S, start: Instant, start_wall: DateTime<Utc>, mut entropy: Entropy) -> Self {
        // Versions start from the wall clock, so a restarted server's tables are newer than the
        // ones its clients hold.
        let version_base = u64::try_from(start_wall.timestamp_micros()).unwrap_or(0);
        Self {
            cfg,
            storage: Storage::new(store),
            clients: Clients::new(version_base),
            // A retransmission can come up to `retries` ACK timeouts after the request; one
            // more covers the network's delay.
            dedup: Dedup::new(cfg.dedup_capacity, cfg.ack_timeout * (cfg.retries + 2)),
            probes: Vec::new(),
            fetches: HashMap::new(),
            deliveries: HashMap::new(),
            pushes: HashMap::new(),
            encoded: Encoded::default(),
            acked: HashMap::new(),
            table_dirty: false,
            also_tell: Vec::new(),
            joining: Joining::new(cfg.dedup_capacity),
            out: VecDeque::new(),
            budgets: Budgets::new(cfg.dedup_capacity),
            cookie_key: entropy.key(),
            entropy,
            dropped: 0,
            next_id: 0,
            start,
            start_wall,
            now: start,
        }
    }

    /// Handles the bytes of one datagram from `from`; anything that does not decode is counted
    /// and dropped.
    pub fn handle_bytes(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        self.budgets.received(from, bytes.len());
        match decode(bytes) {
            Ok(d) => self.dispatch(now, from, bytes.len(), d),
            Err(e) => {
                self.dropped += 1;
                tracing::debug!(%from, dropped = self.dropped, "dropped a bad datagram: {e}");
            }
        }
    }

    /// Handles one decoded datagram from `from`, as if it came as its encoding.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: Datagram) {
        self.now = now;
        let len = encode(&d).map_or(0, |b| b.len());
        self.budgets.received(from, len);
        self.dispatch(now, from, len, d);
    }

    fn dispatch(&mut self, now: Instant, from: SocketAddr, len: usize, d: Datagram) {
        match d {
            Datagram::Register { .. } if len < REGISTER_PAD_TO && !self.budgets.is_proven(from) => {
                tracing::debug!(%from, len, "dropped an unpadded register from an unproven address");
            }
            Datagram::Register { id, name, secret, .. } => self.on_register(now, from, id, name, secret),
            Datagram::Confirm { id, cookie } => self.on_confirm(from, id, cookie),
            Datagram::Dereg { id, name, secret } => self.on_dereg(from, id, &name, &secret),
            Datagram::Save { id, msg, from: sender, secret, to, text, force } => {
                self.on_save(now, from, SaveRequest { id, msg, sender, secret, to, text, force });
            }
            Datagram::ChannelSend { id, from: sender, secret, text } => {
                self.on_channel_send(now, from, id, (&sender, &secret), text);
            }
            Datagram::Fetch { id, index } => self.on_fetch(from, id, index),
            Datagram::FetchDone { id, count, last } => self.on_fetch_done(from, id, count, last),
            Datagram::TableAck { version } => self.on_table_ack(now, from, version),
            Datagram::ProbeAck { id, name } => self.on_probe_ack(now, from, id, &name),
            Datagram::ChannelAck { id } => self.on_channel_ack(from, id),
            other => tracing::debug!(%from, "dropped a datagram a server does not take: {other:?}"),
        }
    }

    /// Retransmits and gives up on whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.dedup.handle_timeout(now);
        self.probe_timeouts(now);
        self.delivery_timeouts(now);
        self.push_timeouts(now);
    }

    /// Ends a batch of input: sends the table if it changed, and starts making the batch's
    /// appends durable. Returns the disk wait, for the driver to run (at once, or on another
    /// thread while input goes on) and report with [`Server::handle_synced`]; the replies that
    /// depend on it leave then. While one sync is in flight, replies wait for the next, which
    /// the next call here starts once it is done (a driver that runs syncs elsewhere calls it
    /// right after `handle_synced`): so each disk sync serves every request that came in
    /// meanwhile.
    #[must_use = "the replies wait until the returned sync is run and reported"]
    pub fn commit(&mut self, now: Instant) -> Option<SyncJob> {
        self.now = now;
        if self.table_dirty {
            self.broadcast(now);
        }
        let job = self.storage.start_sync();
        self.take_outcomes();
        job
    }

    /// The job from [`Server::commit`] has run: its replies leave, or, if it failed, are
    /// forgotten.
    pub fn handle_synced(&mut self, result: Result<(), StoreError>) {
        self.storage.handle_synced(result);
        self.take_outcomes();
    }

    /// Sends the held replies whose sync succeeded. Of those whose sync failed nothing is known
    /// to be on disk: none is answered, and the requests are forgotten, so that the senders'
    /// retransmissions do them again (a message stored twice keeps its id, and is shown once).
    fn take_outcomes(&mut self) {
        while let Some(outcome) = self.storage.poll_outcome() {
            match outcome {
                Outcome::Durable(Held { to, id, reply }) => self.answer(to, id, reply),
                Outcome::Lost(Held { to, id, .. }) => self.dedup.forget(to, id),
            }
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`Server::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probes = self.probes.iter().map(Probe::due);
        let deliveries = self.deliveries.values().map(Delivery::due);
        let pushes = self.pushes.values().map(|p| p.next_at);
        probes.chain(deliveries).chain(pushes).chain(self.dedup.poll_timeout()).min()
    }

    /// Takes over the table a previous run saved (see [`crate::TableFile`]). The addresses of
    /// clients that were online count as proven: they were before the restart.
    pub fn restore_table(&mut self, saved: SavedTable) {
        self.clients = Clients::restore(self.clients.version(), saved);
        let online: Vec<SocketAddr> = self.clients.online().map(|(_, a)| a).collect();
        for addr in online {
            self.budgets.prove(addr);
        }
    }

    /// The table with its secrets, to be saved.
    pub fn saved_table(&self) -> SavedTable {
        self.clients.saved()
    }

    /// What changed after version `base`, with secrets, to be appended to the saved table;
    /// `None` when the whole table must be saved instead.
    pub fn saved_changes(&self, base: u64) -> Option<SavedTable> {
        self.clients.saved_since(base)
    }

    /// How many clients the table has, online or not.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The current table's version.
    pub fn table_version(&self) -> u64 {
        self.clients.version()
    }

    /// The current client table.
    pub fn table(&self) -> Table {
        self.clients.snapshot()
    }

    /// The store, for the driver's shutdown and for tests.
    pub fn store_mut(&mut self) -> &mut S {
        self.storage.store_mut()
    }

    /// A fresh id for a datagram the server starts (probe, channel message): a keyed hash of a
    /// counter, so that seeing one id tells nothing of the next (a probe's answer proves an
    /// address, so its id must not be guessable).
    pub(crate) fn fresh_id(&mut self) -> MsgId {
        self.next_id = self.next_id.wrapping_add(1);
        MsgId(self.cookie_key.hash64(&[b"id", &self.next_id.to_le_bytes()]))
    }

    /// A new name's secret: 128 random bits.
    pub(crate) fn fresh_secret(&mut self) -> Secret {
        let hex: String = self.entropy.bytes::<16>().iter().map(|b| format!("{b:02x}")).collect();
        Secret::new(hex).unwrap_or_else(|_| unreachable!("32 hex digits are a valid secret"))
    }

    /// Wall-clock time at `now`, for message timestamps.
    pub(crate) fn wall(&self, now: Instant) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(now.saturating_duration_since(self.start)).unwrap_or_default();
        self.start_wall + elapsed
    }

    /// Queues an encoded datagram, unless `to` is unproven and past its budget.
    pub(crate) fn push_out(&mut self, t: Transmit) {
        if self.budgets.allow(t.to, t.bytes.len()) {
            self.out.push_back(t);
        } else {
            tracing::debug!(to = %t.to, len = t.bytes.len(), "held back: the address has not proven it receives");
        }
    }

    /// Sends `d` to `to` now.
    pub(crate) fn send(&mut self, to: SocketAddr, d: &Datagram) {
        match encode(d) {
            Ok(bytes) => self.push_out(Transmit { to, bytes: bytes.into() }),
            Err(e) => tracing::error!(%to, "cannot encode a reply: {e}"),
        }
    }

    /// Sends the reply to request `id` and remembers it for retransmissions.
    pub(crate) fn answer(&mut self, to: SocketAddr, id: MsgId, reply: Datagram) {
        match encode(&reply) {
            Ok(bytes) => {
                let bytes: Arc<[u8]> = bytes.into();
                self.dedup.answered(self.now, to, id, &reply, &bytes);
                self.push_out(Transmit { to, bytes });
            }
            Err(e) => tracing::error!(%to, "cannot encode a reply: {e}"),
        }
    }

    /// Whether `sender` is online at `from` and `secret` is its secret: only a name's owner
    /// sends for it. If not, the refusal is the answer.
    pub(crate) fn owner_sends(&mut self, from: SocketAddr, id: MsgId, sender: &Name, secret: &Secret) -> bool {
        let reason = if self.clients.online_at(from) != Some(sender) {
            Refusal::NotRegistered
        } else if self.clients.secret(sender) != Some(secret) {
            Refusal::NotOwner
        } else {
            return true;
        };
        tracing::debug!(%from, %sender, ?reason, "request refused");
        self.answer(from, id, Datagram::Refused { id, reason });
        false
    }

    /// Deals with a request already seen: re-sends its reply, or ignores it while it is being
    /// worked on. Returns true if the request was seen before.
    pub(crate) fn replay(&mut self, from: SocketAddr, id: MsgId) -> bool {
        match self.dedup.check(from, id) {
            Check::New => false,
            Check::Pending => true,
            Check::Replay(bytes) => {
                self.push_out(Transmit { to: from, bytes });
                true
            }
        }
    }

    /// The cookie for `addr`: only a client that receives at `addr` learns it.
    pub(crate) fn cookie(&self, addr: SocketAddr) -> u64 {
        self.cookie_key.hash64(&[b"cookie", addr.to_string().as_bytes()])
    }

    /// The cookie for `name` joining from `addr`: it proves the address for that name only, so
    /// a `register` spoofed from the same address cannot change what the `confirm` creates.
    pub(crate) fn joining_cookie(&self, addr: SocketAddr, name: &Name) -> u64 {
        self.cookie_key.hash64(&[b"joining", addr.to_string().as_bytes(), name.as_str().as_bytes()])
    }

    /// `addr` echoed something it could only have received there.
    pub(crate) fn prove(&mut self, addr: SocketAddr) {
        if self.budgets.is_proven(addr) {
            return;
        }
        self.budgets.prove(addr);
        let held: Vec<Transmit> = self.pushes.get(&addr).map_or_else(Vec::new, |push| {
            push.datagrams.iter().map(|bytes| Transmit { to: addr, bytes: bytes.clone() }).collect()
        });
        for t in held {
            self.push_out(t);
        }
    }

    fn on_confirm(&mut self, from: SocketAddr, id: MsgId, cookie: u64) {
        let expected = match self.joining.name_at(from) {
            Some(name) => self.joining_cookie(from, name),
            None => self.cookie(from),
        };
        if cookie != expected {
            // A restarted server has a new key, or what joins at this address changed: the
            // client registers again.
            tracing::debug!(%from, "confirm with a wrong cookie");
            self.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
            return;
        }
        self.prove(from);
        match self.joining.take(from) {
            // Another client registered the name meanwhile: this one learns it when it
            // registers again.
            Some((name, _)) if self.clients.get(&name).is_some() => {
                self.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
                return;
            }
            Some((name, secret)) => {
                tracing::info!(%name, %from, "registered (address confirmed)");
                self.clients.set_online(&name, from);
                self.clients.set_secret(&name, secret);
                self.acked.remove(&from);
                self.pushes.remove(&from);
                self.start_fetch(&name);
            }
            // Nothing registers at this address (a joining name forgotten past capacity): the
            // client registers again.
            None if self.clients.online_at(from).is_none() => {
                self.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
                return;
            }
            None => {}
        }
        self.answer(from, id, Datagram::Ack { id });
    }
}
