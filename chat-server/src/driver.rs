//! The async driver: one loop over the UDP socket, the core's next timeout and shutdown.

use std::io;
use std::time::Instant;

use chat_proto::MAX_DATAGRAM;
use chrono::Utc;
use offline_store::Store;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::{Config, Server, TableFile};

/// The client table is written at most this often (and at shutdown): rewriting it after every
/// change would cost the whole table per registration. Stored messages do not depend on it.
const TABLE_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How many datagrams are handled before the store is synced and replies go out.
const BATCH: usize = 256;

/// Serves on `socket` until `shutdown` is cancelled, then syncs the store. The client table is
/// loaded from `table_file` at start and saved there whenever it changes.
///
/// # Errors
/// The saved table cannot be read, or the store cannot be synced at shutdown; network errors
/// are logged and survived.
pub async fn run<S: Store>(
    socket: UdpSocket,
    store: S,
    table_file: TableFile,
    cfg: Config,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let seed = getrandom::u64().unwrap_or_else(|_| Utc::now().timestamp_nanos_opt().unwrap_or(0).unsigned_abs());
    let mut core = Server::new(cfg, store, Instant::now(), Utc::now(), seed);
    if let Some(saved) = table_file.load()? {
        tracing::info!(clients = saved.clients.len(), "client table restored");
        core.restore_table(saved);
    }
    let mut saved_version = core.table_version();
    let mut save_after = Instant::now();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let timer = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(timer);
    loop {
        let save_due = (core.table_version() != saved_version).then_some(save_after);
        let wake = core.poll_timeout().into_iter().chain(save_due).min().map(tokio::time::Instant::from_std);
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
                        Ok((len, from)) => core.handle_bytes(Instant::now(), from, &buf[..len]),
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
        core.commit(now);
        if core.table_version() != saved_version && now >= save_after {
            saved_version = core.table_version();
            save_after = now + TABLE_SAVE_INTERVAL;
            if let Err(e) = table_file.save(&core.saved_table()) {
                tracing::error!("cannot save the client table: {e}");
            }
        }
        while let Some(t) = core.poll_transmit() {
            if let Err(e) = socket.send_to(&t.bytes, t.to).await {
                tracing::debug!(to = %t.to, "send failed: {e}");
            }
        }
    }
    tracing::info!("server stopping");
    if core.table_version() != saved_version {
        table_file.save(&core.saved_table())?;
    }
    core.store_mut().checkpoint().map_err(io::Error::other)
}
