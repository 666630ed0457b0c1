//! The async driver: one loop over the UDP socket, the core's next timeout and shutdown; it runs
//! the core's disk jobs after each batch. Every datagram goes through the encrypted channel
//! (`chat-secure`): the core sees only what came authenticated under a session, and what it
//! sends leaves encrypted for that session.

use std::io;
use std::time::Instant;

use chat_core::Entropy;
use chat_proto::{KeyPair, MAX_DATAGRAM};
use chat_secure::{ServerChannel, ServerConfig};
use chrono::Utc;
use offline_store::Store;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::cluster::{ClusterEvent, NodeId, PeerMsg, SharedTable};
use crate::{Config, Server, ServerError, TableFile};

/// Where the client table is kept.
pub enum Tables {
    /// In files in the data directory, this node's alone.
    Files(TableFile),
    /// In a store several nodes share.
    Shared(Box<dyn SharedTable>),
}

/// How many datagrams are handled before the store is synced and replies go out.
const BATCH: usize = 256;

/// How many replies wait at most for a write to the shared store that failed.
const HELD_MAX: usize = 65_536;

/// The replies waiting for a write to the shared store, in order, at most `cap` of them: past
/// it the oldest are dropped (UDP: their clients retransmit), so a flood while the store is
/// down cannot grow the server's memory.
struct Held<T> {
    queue: std::collections::VecDeque<T>,
    cap: usize,
}

impl<T> Held<T> {
    fn new(cap: usize) -> Self {
        Self { queue: std::collections::VecDeque::new(), cap }
    }

    fn extend(&mut self, items: impl IntoIterator<Item = T>) {
        for item in items {
            if self.queue.len() == self.cap {
                self.queue.pop_front();
            }
            self.queue.push_back(item);
        }
    }

    /// All that waits, in order, if `ready`; nothing otherwise.
    fn release(&mut self, ready: bool) -> std::collections::vec_deque::Drain<'_, T> {
        let end = if ready { self.queue.len() } else { 0 };
        self.queue.drain(..end)
    }
}

/// Serves on `socket` with the static key `key` until `shutdown` is cancelled, then finishes
/// the disk work and checkpoints the store. The client table is loaded from `tables` at start
/// and written there whenever it changes; a shared one also brings the other nodes' changes
/// and messages, and carries this node's.
///
/// # Errors
/// [`ServerError`]: the OS gives no randomness, the saved table cannot be read, or the store
/// cannot be synced at shutdown; network errors are logged and survived.
pub async fn run<S: Store>(
    socket: UdpSocket,
    key: KeyPair,
    store: S,
    mut tables: Tables,
    cfg: Config,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let entropy = Entropy::from_os()?;
    let mut core = Server::new(cfg, store, Instant::now(), Utc::now(), entropy);
    let mut channel = ServerChannel::new(key, ServerConfig::default(), Instant::now(), Entropy::from_os()?);
    match &mut tables {
        Tables::Files(file) => {
            if let Some(saved) = file.load()? {
                tracing::info!(clients = saved.clients.len(), "client table restored");
                core.restore_table(saved);
            }
        }
        Tables::Shared(shared) => {
            let rows = shared.load().map_err(ServerError::Shared)?;
            tracing::info!(clients = rows.len(), "shared client table loaded");
            core.apply_shared(rows);
            // What the store told already (the live nodes), before anyone is answered.
            while let Ok(event) = shared.events().try_recv() {
                handle_event(&mut core, Instant::now(), event);
            }
        }
    }
    // Channel messages the last run acknowledged but had not delivered to every member.
    core.resume_owed(Instant::now());
    let mut saved = Saved { version: core.table_version(), logged_rows: 0, peers: Vec::new(), retry_at: None };
    let mut held = Held::new(HELD_MAX);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut plain = vec![0u8; MAX_DATAGRAM + 1];
    let timer = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(timer);
    loop {
        let wake = core.poll_timeout().into_iter().chain(channel.poll_timeout()).chain(saved.retry_at).min();
        let wake = wake.map(tokio::time::Instant::from_std);
        if let Some(at) = wake.filter(|at| *at != timer.deadline()) {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            first = socket.recv_from(&mut buf) => {
                let mut received = first;
                for taken in 1..=BATCH {
                    match received {
                        Ok((len, from)) => {
                            let now = Instant::now();
                            if let Some((key, bytes)) = channel.receive(now, from, &buf[..len], &mut plain) {
                                core.handle_from(now, from, key, bytes);
                            }
                        }
                        Err(e) => tracing::debug!("receive error: {e}"),
                    }
                    if taken == BATCH {
                        break; // the rest waits in the socket for the next batch
                    }
                    received = match socket.try_recv_from(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        other => other,
                    };
                }
            }
            () = &mut timer, if wake.is_some() => {}
            Some(event) = next_event(&mut tables) => handle_event(&mut core, Instant::now(), event),
        }
        let now = Instant::now();
        core.handle_timeout(now);
        channel.handle_timeout(now);
        // The disk jobs (syncs, mailbox scans, reads, removals, checkpoints) run here, holding
        // up the next batch, rather than on another thread: on this project's machine the two
        // cross-core wake-ups of a hand-off cost more than the overlap gained (see
        // docs/BENCHMARKS.md). The core allows either: no handler touches the disk.
        run_jobs(&mut core, now);
        saved.keep(&mut core, &mut tables);
        // An ACK may rest on a message to another node (a channel copy for its members): while
        // one is not written, the replies wait with it, in order.
        held.extend(std::iter::from_fn(|| core.poll_transmit_keyed()));
        for (t, key) in held.release(!saved.peers_unwritten()) {
            let key = key.or_else(|| core.key_at(t.to));
            channel.send(now, t.to, key, &t.bytes);
        }
        while let Some(t) = channel.poll_transmit() {
            if let Err(e) = socket.send_to(&t.bytes, t.to).await {
                tracing::debug!(to = %t.to, "send failed: {e}");
            }
        }
    }
    tracing::info!("server stopping");
    // Nothing is out (jobs run inline): what is left to start is run, then the checkpoint.
    run_jobs(&mut core, Instant::now());
    saved.keep(&mut core, &mut tables);
    Ok(core.store_mut().checkpoint()?)
}

/// Runs the core's disk jobs, one after another, until it has none to hand out now.
fn run_jobs<S: Store>(core: &mut Server<S>, now: Instant) {
    while let Some(job) = core.poll_job(now) {
        let done = job.run();
        core.handle_job_done(now, done);
    }
}

/// Hands the core what the shared store told.
fn handle_event<S: Store>(core: &mut Server<S>, now: Instant, event: ClusterEvent) {
    match event {
        ClusterEvent::Rows(rows) => core.apply_shared(rows),
        ClusterEvent::Peer(node, msg) => core.handle_peer(now, node, msg),
        ClusterEvent::Nodes(live) => core.set_live_nodes(now, live),
        ClusterEvent::Following(following) => core.set_following(following),
    }
}

/// The next event of a shared table; never, for files.
async fn next_event(tables: &mut Tables) -> Option<ClusterEvent> {
    match tables {
        Tables::Files(_) => std::future::pending().await,
        Tables::Shared(shared) => shared.events().recv().await,
    }
}

/// What of the client table is written.
struct Saved {
    version: u64,
    /// Rows appended to the log since the whole table was last written.
    logged_rows: usize,
    /// Messages for other nodes not written to the shared store yet.
    peers: Vec<(NodeId, PeerMsg)>,
    /// After a failed write to the shared store, when to try again.
    retry_at: Option<Instant>,
}

/// How long to wait before writing to a shared store that failed.
const SHARED_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

impl Saved {
    /// Messages for other nodes wait to be written (after a failed write): the replies that
    /// may rest on them wait too.
    fn peers_unwritten(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Writes what changed since the last call, before the replies that rest on it leave.
    fn keep<S: Store>(&mut self, core: &mut Server<S>, tables: &mut Tables) {
        match tables {
            Tables::Files(file) => self.keep_in_files(core, file),
            Tables::Shared(shared) => self.share(core, shared.as_mut()),
        }
    }

    /// Writes the rows this node changed and its messages to other nodes in one transaction;
    /// after a failure (logged) they are written with the next.
    fn share<S: Store>(&mut self, core: &mut Server<S>, shared: &mut dyn SharedTable) {
        self.peers.extend(std::iter::from_fn(|| core.poll_peer()));
        let version = core.table_version();
        let rows = if version == self.version { Vec::new() } else { core.shared_changes(self.version) };
        if rows.is_empty() && self.peers.is_empty() {
            self.version = version;
            return;
        }
        let now = Instant::now();
        if self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        match shared.write(&rows, &self.peers) {
            Ok(versions) => {
                for ((row, _), v) in rows.iter().zip(versions) {
                    match v {
                        Some(v) => core.shared_as(row.name(), v),
                        // Changed by another node meanwhile: its change stands, and comes from
                        // the follower.
                        None => {
                            tracing::info!(name = %row.name(), "another node changed this row first: its change stands")
                        }
                    }
                }
                self.peers.clear();
                self.version = version;
                self.retry_at = None;
            }
            Err(e) => {
                tracing::error!("cannot write to the shared store: {}", chat_core::report(e.as_ref()));
                self.retry_at = Some(now + SHARED_RETRY);
            }
        }
    }

    /// Appends what changed to the log, or writes the whole table when the log has grown past
    /// it (or no longer reaches back).
    fn keep_in_files<S: Store>(&mut self, core: &Server<S>, file: &TableFile) {
        if core.table_version() == self.version {
            return;
        }
        let whole_rows = core.client_count();
        let changes = core.saved_changes(self.version).filter(|c| self.logged_rows + c.len() <= whole_rows.max(1024));
        let written = match changes {
            Some(changes) => file.append(&changes).map(|()| self.logged_rows += changes.len()),
            None => file.save(&core.saved_table()).map(|()| self.logged_rows = 0),
        };
        match written {
            Ok(()) => self.version = core.table_version(),
            Err(e) => tracing::error!("{}", chat_core::report(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_wait_in_order_until_released_and_past_the_cap_the_oldest_go() {
        // What the driver holds: 65,536 (a flood at the full receive rate for the dead-node
        // window fills it; ten times as many would be ~100 MB of datagrams).
        let mut held = Held::new(HELD_MAX);
        held.extend(0..65_546);
        assert_eq!(held.release(false).count(), 0, "nothing leaves while the write is pending");
        let out: Vec<usize> = held.release(true).collect();
        assert_eq!(out.len(), 65_536, "at most 65,536 wait");
        assert_eq!(out.first(), Some(&10), "the oldest went");
        assert_eq!(out.last(), Some(&65_545), "in order");
        assert_eq!(held.release(true).count(), 0, "released once");
    }
}
