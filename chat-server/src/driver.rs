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

use crate::{Config, Server, ServerError, TableFile};

/// How many datagrams are handled before the store is synced and replies go out.
const BATCH: usize = 256;

/// Serves on `socket` with the static key `key` until `shutdown` is cancelled, then finishes
/// the disk work and checkpoints the store. The client table is loaded from `table_file` at
/// start and saved there whenever it changes.
///
/// # Errors
/// [`ServerError`]: the OS gives no randomness, the saved table cannot be read, or the store
/// cannot be synced at shutdown; network errors are logged and survived.
pub async fn run<S: Store>(
    socket: UdpSocket,
    key: KeyPair,
    store: S,
    table_file: TableFile,
    cfg: Config,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let entropy = Entropy::from_os()?;
    let mut core = Server::new(cfg, store, Instant::now(), Utc::now(), entropy);
    let mut channel = ServerChannel::new(key, ServerConfig::default(), Instant::now(), Entropy::from_os()?);
    if let Some(saved) = table_file.load()? {
        tracing::info!(clients = saved.clients.len(), "client table restored");
        core.restore_table(saved);
    }
    let mut saved = Saved { version: core.table_version(), logged_rows: 0 };
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut plain = vec![0u8; MAX_DATAGRAM + 1];
    let timer = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(timer);
    loop {
        let wake = core.poll_timeout().into_iter().chain(channel.poll_timeout()).min();
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
        }
        let now = Instant::now();
        core.handle_timeout(now);
        channel.handle_timeout(now);
        // The disk jobs (syncs, mailbox scans, reads, removals, checkpoints) run here, holding
        // up the next batch, rather than on another thread: on this project's machine the two
        // cross-core wake-ups of a hand-off cost more than the overlap gained (see
        // docs/BENCHMARKS.md). The core allows either: no handler touches the disk.
        run_jobs(&mut core, now);
        saved.keep(&core, &table_file);
        while let Some((t, key)) = core.poll_transmit_keyed() {
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
    saved.keep(&core, &table_file);
    Ok(core.store_mut().checkpoint()?)
}

/// Runs the core's disk jobs, one after another, until it has none to hand out now.
fn run_jobs<S: Store>(core: &mut Server<S>, now: Instant) {
    while let Some(job) = core.poll_job(now) {
        let done = job.run();
        core.handle_job_done(now, done);
    }
}

/// What of the client table is on disk.
struct Saved {
    version: u64,
    /// Rows appended to the log since the whole table was last written.
    logged_rows: usize,
}

impl Saved {
    /// Writes what changed since the last call: appended to the log, or the whole table when
    /// the log has grown past it (or no longer reaches back).
    fn keep<S: Store>(&mut self, core: &Server<S>, file: &TableFile) {
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
