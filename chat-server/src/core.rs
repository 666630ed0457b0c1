//! The server's sans-IO core: it routes each input to the components that own the state, with
//! no socket and no clock.
//!
//! Inputs are [`Server::handle_bytes`] (or [`Server::handle_datagram`]), [`Server::handle_timeout`]
//! and [`Server::handle_job_done`], each given `now`; outputs are [`Server::poll_transmit`],
//! [`Server::poll_timeout`] and the disk work that [`Server::poll_job`] hands out as [`Job`]s. No
//! handler touches the disk: what needs it (a mailbox's count at registration, a fetched message,
//! the removal of fetched messages, a save to a mailbox not yet known) waits on a job. The async
//! driver in `driver.rs` feeds it; unit tests feed it a fake clock and drop transmits to play
//! loss. The handler of each kind of request lives in a submodule (`core/*.rs`); the
//! state lives in the components (`clients`, `tables`, `probe`, `deliveries`, `owed`, `dedup`,
//! `joining`, `outbox`, `ids`, `storage`), none of which knows this module.

mod channel;
mod cluster;
mod confirm;
mod fetch;
mod nodes;
mod probe;
mod punch;
mod register;
mod save;
mod waiting;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use chat_core::Transmit;
use chat_core::{BoundedMap, Entropy};
use chat_proto::{Datagram, MsgId, Name, PublicKey, REGISTER_PAD_TO, Refusal, Secret, Table, decode, encode};
use chrono::{DateTime, Utc};
use offline_store::Store;

use crate::clients::{Clients, SavedTable};
use crate::cluster::Peers;
use crate::dedup::{Check, Dedup};
use crate::deliveries::Deliveries;
use crate::ids::Ids;
use crate::jobs::{Job, JobDone};
use crate::joining::Joining;
use crate::outbox::Outbox;
use crate::owed::Owed;
use crate::presence::Presence;
use crate::probe::Probes;
use crate::storage::{Held, Outcome, Storage};
use crate::tables::Tables;
use waiting::Resume;

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
    /// How often online clients keep alive (told to each at registration); silent three times
    /// as long, a client is marked offline.
    pub keepalive: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_millis(500),
            retries: 5,
            dedup_capacity: 65_536,
            keepalive: Duration::from_secs(25),
        }
    }
}

/// The registration server: its components, and the clocks.
#[derive(Debug)]
pub struct Server<S> {
    storage: Storage<S, Resume>,
    clients: Clients,
    tables: Tables,
    probes: Probes,
    deliveries: Deliveries,
    /// The members each channel message on its way is still owed to.
    owed: Owed,
    dedup: Dedup,
    /// New names registering from addresses not yet proven: their rows wait for `confirm`.
    joining: Joining,
    presence: Presence,
    /// The other nodes sharing the table, and what is to be said to them.
    peers: Peers,
    /// The other live nodes, told to clients.
    nodes: nodes::Nodes,
    /// Punch requests passed on per client address, in the current one-second window.
    punches: BoundedMap<SocketAddr, (Instant, u32)>,
    /// Chats relayed per client address, in the current one-second window.
    relays: BoundedMap<SocketAddr, (Instant, u32)>,
    /// ACKs relayed per client address, in the current one-second window.
    relay_acks: BoundedMap<SocketAddr, (Instant, u32)>,
    /// The LAN address each registering address told, for its row once it is online.
    lans: BoundedMap<SocketAddr, SocketAddr>,
    out: Outbox,
    ids: Ids,
    /// Datagrams dropped because they did not decode.
    dropped: u64,
    /// The key of the session the datagram being handled came under (see
    /// [`Server::handle_from`]).
    session_key: Option<PublicKey>,
    start: Instant,
    start_wall: DateTime<Utc>,
    /// The time of the latest input: when replies released by a sync were sent.
    now: Instant,
}

/// How long an answer is kept at least: a client with the default timings (500 ms, 5 retries)
/// retransmits for 2.5 s, plus one ACK timeout and the network's delay.
const MIN_KEEP: Duration = Duration::from_millis(3500);

/// How long a cookie period lasts: a `registered`'s cookie is taken for one to two of them.
const COOKIE_PERIOD: Duration = Duration::from_secs(60);

impl<S: Store> Server<S> {
    /// A server with an empty table. `start` and `start_wall` are the same moment on the
    /// monotonic and the wall clock. Cookie keys, ids and secrets come from `entropy`.
    pub fn new(cfg: Config, store: S, start: Instant, start_wall: DateTime<Utc>, entropy: Entropy) -> Self {
        // Versions start from the wall clock, so a restarted server's tables are newer than the
        // ones its clients hold.
        let version_base = u64::try_from(start_wall.timestamp_micros()).unwrap_or(0);
        // A retransmission can come up to `retries` ACK timeouts after the request; one more
        // covers the network's delay. Clients keep their own timings, so never less than what
        // a client with the default ones needs.
        let keep = cfg.ack_timeout.saturating_mul(cfg.retries.saturating_add(2)).max(MIN_KEEP);
        Self {
            storage: Storage::new(store),
            clients: Clients::new(version_base),
            tables: Tables::new(cfg.ack_timeout, cfg.retries),
            probes: Probes::new(cfg.ack_timeout),
            deliveries: Deliveries::new(cfg.ack_timeout, cfg.retries),
            owed: Owed::default(),
            dedup: Dedup::new(cfg.dedup_capacity, keep),
            joining: Joining::new(cfg.dedup_capacity),
            presence: Presence::new(cfg.keepalive, start, version_base),
            peers: Peers::default(),
            nodes: nodes::Nodes::default(),
            punches: BoundedMap::new(cfg.dedup_capacity),
            relays: BoundedMap::new(cfg.dedup_capacity),
            relay_acks: BoundedMap::new(cfg.dedup_capacity),
            lans: BoundedMap::new(cfg.dedup_capacity),
            out: Outbox::new(cfg.dedup_capacity),
            ids: Ids::new(entropy),
            dropped: 0,
            session_key: None,
            start,
            start_wall,
            now: start,
        }
    }

    /// Handles the bytes of one datagram from `from`; anything that does not decode is counted
    /// and dropped.
    pub fn handle_bytes(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        self.presence.heard(from, now);
        self.out.handle_received(from, bytes.len());
        match decode(bytes) {
            Ok(d) => self.dispatch(now, from, bytes.len(), d),
            Err(e) => {
                self.dropped += 1;
                tracing::debug!(%from, dropped = self.dropped, "dropped a bad datagram: {e}");
            }
        }
    }

    /// Handles `bytes` that came from `from` under the encrypted session of the client whose
    /// key is `key`: a registration is taken only for that key, so the name's key in the table
    /// is the one that holds the session, not one the datagram merely claims.
    pub fn handle_from(&mut self, now: Instant, from: SocketAddr, key: PublicKey, bytes: &[u8]) {
        self.session_key = Some(key);
        self.out.answering(Some((from, key)));
        self.handle_bytes(now, from, bytes);
        self.out.answering(None);
        self.session_key = None;
    }

    /// Handles one decoded datagram from `from`, as if it came as its encoding.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: Datagram) {
        self.now = now;
        self.presence.heard(from, now);
        let len = encode(&d).map_or(0, |b| b.len());
        self.out.handle_received(from, len);
        self.dispatch(now, from, len, d);
    }

    fn dispatch(&mut self, now: Instant, from: SocketAddr, len: usize, d: Datagram) {
        // Under a session of another key than the client online at this address (an attacker
        // on its path can make one): nothing but a registration, which has its own checks.
        let foreign = self.session_key.is_some_and(|k| self.key_at(from).is_some_and(|online| online != k));
        if foreign && !matches!(d, Datagram::Register { .. } | Datagram::Confirm { .. }) {
            self.dropped += 1;
            tracing::debug!(%from, "dropped a datagram under another key's session than the client's there");
            return;
        }
        match d {
            Datagram::Register { .. } if len < REGISTER_PAD_TO && !self.out.is_proven(from) => {
                tracing::debug!(%from, len, "dropped an unpadded register from an unproven address");
            }
            Datagram::Register { id, name, secret, key, lan, .. } => {
                self.on_register(now, from, register::Registration { id, name, secret, key, lan })
            }
            Datagram::Confirm { id, cookie } => self.on_confirm(from, id, cookie),
            Datagram::Dereg { id, name, secret } => self.on_dereg(from, id, &name, &secret),
            Datagram::Save { id, msg, from: sender, secret, to, sealed, force } => {
                self.on_save(now, from, save::SaveRequest { id, msg, sender, secret, to, sealed, force });
            }
            Datagram::ChannelSend { id, from: sender, secret, text } => {
                self.on_channel_send(now, from, id, (&sender, &secret), text);
            }
            Datagram::Fetch { id, index } => self.on_fetch(from, id, index),
            Datagram::FetchDone { id, count, last } => self.on_fetch_done(from, id, count, last),
            // Heard, and answered `alive`, unless the server had marked the client gone (its
            // network was out longer than three intervals): told, it registers again.
            Datagram::Keepalive => {
                if self.clients.online_at(from).is_none() {
                    self.tables.tell_offline(from);
                } else {
                    self.answer_alive(from);
                }
            }
            Datagram::PunchRequest { to } => self.on_punch_request(now, from, &to),
            Datagram::RelayChat { from: ref sender, ref to, .. }
            | Datagram::RelayAck { from: ref sender, ref to, .. } => {
                let (sender, to) = (sender.clone(), to.clone());
                self.on_relay(now, from, &sender, &to, &d);
            }
            Datagram::TableAck { version } => self.tables.handle_ack(now, from, version, &self.clients, &mut self.out),
            Datagram::ProbeAck { id, name } => self.on_probe_ack(now, from, id, &name),
            Datagram::ChannelAck { id } => {
                if let Some(d) = self.deliveries.handle_ack(from, id) {
                    self.served(&d.to, &d.msg);
                }
            }
            other => tracing::debug!(%from, "dropped a datagram a server does not take: {other:?}"),
        }
    }

    /// Retransmits, gives up and forgets whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.dedup.handle_timeout(now);
        self.probe_timeouts(now);
        self.delivery_timeouts(now);
        self.tables.handle_timeout(now, &self.clients, &mut self.out);
        self.presence_timeouts(now);
    }

    /// Clients silent for three keepalive intervals are marked offline, and everyone is told.
    fn presence_timeouts(&mut self, now: Instant) {
        let gone: Vec<(Name, SocketAddr)> = self
            .presence
            .sweep(now, self.clients.version(), self.clients.online())
            .into_iter()
            .map(|(n, a)| (n.clone(), a))
            .collect();
        for (name, addr) in gone {
            tracing::info!(%name, %addr, "silent for three keepalive intervals: offline");
            self.mark_gone(&name, addr);
        }
    }

    /// The next disk work to run, at the end of a batch of input (and after each job done):
    /// first sends the table if it changed. Jobs run on any thread, in any order, and each is
    /// handed back with [`Server::handle_job_done`]; the syncs, removals and checkpoints come one
    /// at a time (the next once the one before is back). While one sync is out, replies wait
    /// for the next: so each disk sync serves every request that came in meanwhile. `None`
    /// when nothing is to run now (the driver calls again after its next input).
    #[must_use = "what waits on a job goes on only once it is run and handed back"]
    pub fn poll_job(&mut self, now: Instant) -> Option<Job> {
        self.now = now;
        loop {
            self.tables.commit(now, &self.clients, &mut self.out);
            let job = self.storage.poll_job(now);
            // Deciding what a job left may hold replies (or free the lane) for another.
            if self.take_outcomes(now) == 0 || job.is_some() {
                return job;
            }
        }
    }

    /// A job from [`Server::poll_job`] has run (or failed): what waited on it goes on. Held
    /// replies whose sync succeeded leave; see [`Server::take_outcomes`] for those whose sync
    /// failed.
    pub fn handle_job_done(&mut self, now: Instant, done: JobDone) {
        self.now = now;
        self.storage.handle_job_done(now, done.done);
        self.take_outcomes(now);
    }

    /// Takes every decision the storage port has made; returns how many.
    ///
    /// Of held replies whose sync failed nothing is known to be on disk. When the disk is full,
    /// each gets its clear answer (a save is refused with `storage_unavailable`, a channel send
    /// names the members whose copies were not kept); after another failure none is answered,
    /// and the requests are forgotten, so that the senders' retransmissions do them again (the
    /// store keeps a message once per id).
    fn take_outcomes(&mut self, now: Instant) -> usize {
        let mut taken = 0;
        while let Some(outcome) = self.storage.poll_outcome() {
            taken += 1;
            match outcome {
                Outcome::Durable(Held { to, id, reply, .. }) => self.answer(to, id, reply),
                Outcome::NoSpace(Held { to, id, no_space, .. }) => self.answer(to, id, no_space),
                Outcome::Lost(Held { to, id, .. }) => self.dedup.forget(to, id),
                Outcome::Resume { waiter, failed, transient } if transient && !failed.is_empty() => {
                    self.retry_later(waiter);
                }
                Outcome::Resume { waiter, failed, .. } => self.resume(now, waiter, &failed),
                Outcome::Read { read, result } => self.on_read(read, result),
                Outcome::Removed { waiter, result } => self.on_removed(waiter, result),
            }
        }
        taken
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.poll_transmit().map(|(t, _)| t)
    }

    /// The next datagram to send, with the key of the session it must go under when it answers
    /// a datagram that came under one (see [`Server::handle_from`]); otherwise the driver sends
    /// it under the session of [`Server::key_at`] its address.
    pub fn poll_transmit_keyed(&mut self) -> Option<(Transmit, Option<PublicKey>)> {
        self.out.poll_transmit()
    }

    /// The key of the client online at `addr`: what the server sends there goes under that
    /// client's session, never another that an attacker on the path opened from its address.
    pub fn key_at(&self, addr: SocketAddr) -> Option<PublicKey> {
        self.clients.online_at(addr).and_then(|name| self.clients.key(name)).copied()
    }

    /// When [`Server::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = [
            self.probes.poll_timeout(),
            self.deliveries.poll_timeout(),
            self.tables.poll_timeout(),
            self.dedup.poll_timeout(),
            self.presence.next_timeout(self.clients.version()),
        ];
        timers.into_iter().flatten().min()
    }

    /// Takes over the table a previous run saved (see [`crate::TableFile`]). The addresses of
    /// clients that were online count as proven: they were before the restart.
    pub fn restore_table(&mut self, saved: SavedTable) {
        self.clients = Clients::restore(self.clients.version(), saved);
        let online: Vec<SocketAddr> = self.clients.online().map(|(_, a)| a).collect();
        for addr in online {
            self.out.prove(addr);
        }
        // Clients restored online are swept like any: one that died while the server was down
        // is noticed three intervals on.
        self.presence.arm();
    }

    /// The table with the hashes of its secrets (never a secret), to be saved.
    pub fn saved_table(&self) -> SavedTable {
        self.clients.saved()
    }

    /// What changed after version `base`, with the hashes of secrets, to be appended to the saved table;
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

    /// The store, taken back from a server that stops, as a crash leaves it (for tests).
    #[cfg(test)]
    pub(crate) fn into_store(self) -> S {
        self.storage.into_store()
    }

    /// The cookie the server hands `addr` now (for tests).
    #[cfg(test)]
    pub(crate) fn cookie(&self, addr: SocketAddr) -> u64 {
        self.ids.cookie(addr, self.cookie_period())
    }

    /// The cookie period now: cookies are made for it and taken in it and the next, so one
    /// lives one to two periods.
    fn cookie_period(&self) -> u64 {
        self.now.saturating_duration_since(self.start).as_secs() / COOKIE_PERIOD.as_secs()
    }

    /// Whether `cookie` is one `make` made for this period or the one before.
    fn cookie_ok(&self, cookie: u64, make: impl Fn(u64) -> u64) -> bool {
        let period = self.cookie_period();
        [Some(period), period.checked_sub(1)].into_iter().flatten().any(|p| make(p) == cookie)
    }

    /// A fresh id, as a probe would take (for tests).
    #[cfg(test)]
    pub(crate) fn fresh_id(&mut self) -> MsgId {
        self.ids.fresh_id()
    }

    /// Wall-clock time at `now`, for message timestamps.
    fn wall(&self, now: Instant) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(now.saturating_duration_since(self.start)).unwrap_or_default();
        self.start_wall + elapsed
    }

    /// Sends the reply to request `id` and remembers it for retransmissions.
    fn answer(&mut self, to: SocketAddr, id: MsgId, reply: Datagram) {
        if let Some(bytes) = self.out.send(to, &reply) {
            self.dedup.answered(self.now, to, id, &reply, &bytes);
        }
    }

    /// Whether `sender` is online at `from` and `secret` is its secret: only a name's owner
    /// sends for it. If not, the refusal is the answer.
    fn owner_sends(&mut self, from: SocketAddr, id: MsgId, sender: &Name, secret: &Secret) -> bool {
        let reason = if self.clients.online_at(from) != Some(sender) {
            Refusal::NotRegistered
        } else if !self.clients.secret_matches(sender, secret) {
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
    fn replay(&mut self, from: SocketAddr, id: MsgId) -> bool {
        match self.dedup.check(from, id) {
            Check::New => false,
            Check::Pending => true,
            Check::Replay(bytes) => {
                self.out.push(Transmit { to: from, bytes });
                true
            }
        }
    }

    /// `addr` echoed something it could only have received there: what was held back from it
    /// goes out.
    fn prove(&mut self, addr: SocketAddr) {
        if self.out.prove(addr) {
            for bytes in self.tables.held(addr) {
                self.out.push(Transmit { to: addr, bytes });
            }
        }
    }

    /// Marks `name` offline if it is still online at `addr`, and tells it too: a client that is
    /// alive after all (its answers were lost) sees itself offline and registers again.
    fn mark_gone(&mut self, name: &Name, addr: SocketAddr) {
        // A client registered at another node now is that node's to mark.
        if self.clients.get(name).is_some_and(|e| e.addr == addr && e.home.is_none()) && self.clients.set_offline(name)
        {
            self.tables.tell_offline(addr);
        }
    }
}
