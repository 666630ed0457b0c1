//! Sending the client table: to each online client what changed since the version it last
//! ACKed (a delta), or the whole table (in pages when it does not fit one datagram) to a
//! client that has none or is too far behind; retransmitted until ACKed.
//!
//! Each client has at most one push in flight. Changes made meanwhile wait for its ACK (or its
//! retransmission), and then go out together as one delta from the version it holds: so a
//! storm of registrations costs each client a delta per round trip, not one per change.
//! Each distinct delta, and the whole table, is encoded once per table version and shared by
//! every client that needs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use chat_proto::{Datagram, encode};
use offline_store::Store;

use crate::Server;
use crate::core::Transmit;

/// Rows per page of a table that does not fit one datagram (a row is at most ~220 bytes).
const PAGE_ROWS: usize = 256;

/// Retransmissions of a push back off up to this many ACK timeouts.
const MAX_BACKOFF: u32 = 16;

/// A table (or delta) sent to one client and not yet ACKed.
#[derive(Debug)]
pub(crate) struct Push {
    pub(crate) version: u64,
    /// The version the delta starts from; `None` for the whole table.
    base: Option<u64>,
    /// For the whole table: its version, and how many of the datagrams are its pages (a delta
    /// from it may follow them).
    whole: Option<(u64, usize)>,
    pub(crate) datagrams: Vec<Arc<[u8]>>,
    pub(crate) next_at: Instant,
    left: u32,
    /// How many ACK timeouts until the next retransmission: doubles each time, so that a
    /// crowd of clients that are slow to ACK is not buried under copies of the table.
    backoff: u32,
    /// The table changed since this was sent: what goes next is what changed since the
    /// version the client holds.
    stale: bool,
}

/// What a new push sends (see [`Push`]).
struct Sent {
    version: u64,
    base: Option<u64>,
    whole: Option<(u64, usize)>,
    datagrams: Vec<Arc<[u8]>>,
}

/// The encodings of the current table version's whole table and deltas, shared between
/// clients.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    version: u64,
    whole: Option<Vec<Arc<[u8]>>>,
    deltas: HashMap<u64, Vec<Arc<[u8]>>>,
}

impl<S: Store> Server<S> {
    pub(crate) fn broadcast(&mut self, now: Instant) {
        self.table_dirty = false;
        let version = self.clients.version();
        let targets: Vec<SocketAddr> = self.clients.online().map(|(_, a)| a).collect();
        let (mut sent, mut waiting) = (0, 0);
        for to in targets {
            match self.pushes.get_mut(&to) {
                Some(push) => {
                    push.stale = true;
                    waiting += 1;
                }
                None => {
                    self.push_table(now, to);
                    sent += 1;
                }
            }
        }
        // Clients just marked offline hear it at once, whatever is on its way to them: one
        // that is in fact alive registers again.
        for to in std::mem::take(&mut self.also_tell) {
            self.pushes.remove(&to);
            self.push_table(now, to);
            sent += 1;
        }
        tracing::debug!(version, sent, waiting, "table broadcast");
    }

    /// Sends `to` the current table: a delta from the version it last ACKed if the change log
    /// reaches back to it, else the whole table; retransmitted until ACKed, backing off.
    fn push_table(&mut self, now: Instant, to: SocketAddr) {
        let version = self.clients.version();
        let base = self.acked.get(&to).copied();
        if base.is_some_and(|b| b >= version) {
            self.pushes.remove(&to);
            return;
        }
        let mut encoded = self.encodings(version);
        let delta = base.and_then(|b| Some((b, self.delta(b, version, &mut encoded)?)));
        let (base, whole, datagrams) = match delta {
            Some((b, d)) => (Some(b), None, d),
            None => {
                let pages = encoded.whole.get_or_insert_with(|| self.whole_table()).clone();
                (None, Some((version, pages.len())), pages)
            }
        };
        self.encoded = encoded;
        self.start_push(now, to, Sent { version, base, whole, datagrams });
    }

    /// Sends `to`, whose whole table (at `whole_version`, in `pages`) is still on its way, the
    /// same pages again with what changed since: pages of two versions would not make a table.
    fn push_after_whole(&mut self, now: Instant, to: SocketAddr, whole_version: u64, mut pages: Vec<Arc<[u8]>>) {
        let version = self.clients.version();
        let mut encoded = self.encodings(version);
        let delta = self.delta(whole_version, version, &mut encoded);
        self.encoded = encoded;
        let Some(delta) = delta else {
            self.push_table(now, to); // the change log no longer reaches back: a new table
            return;
        };
        let whole = Some((whole_version, pages.len()));
        pages.extend(delta);
        self.start_push(now, to, Sent { version, base: None, whole, datagrams: pages });
    }

    fn start_push(&mut self, now: Instant, to: SocketAddr, sent: Sent) {
        let Sent { version, base, whole, datagrams } = sent;
        for bytes in &datagrams {
            self.push_out(Transmit { to, bytes: bytes.clone() });
        }
        let (next_at, left) = (now + self.cfg.ack_timeout, self.cfg.retries);
        self.pushes.insert(to, Push { version, base, whole, datagrams, next_at, left, backoff: 1, stale: false });
    }

    /// The shared encodings of table `version`.
    fn encodings(&mut self, version: u64) -> Encoded {
        let encoded = std::mem::take(&mut self.encoded);
        if encoded.version == version { encoded } else { Encoded { version, ..Encoded::default() } }
    }

    /// Retransmits the pushes that are due, backing off, and gives up on those retried enough.
    /// A push the table has moved past since is replaced by the current one, keeping its
    /// retries and backoff.
    pub(crate) fn push_timeouts(&mut self, now: Instant) {
        let due: Vec<SocketAddr> = self.pushes.iter().filter(|(_, p)| p.next_at <= now).map(|(to, _)| *to).collect();
        for to in due {
            let Some(push) = self.pushes.get_mut(&to) else { continue };
            let (left, backoff) = (push.left.saturating_sub(1), push.backoff.saturating_mul(2).min(MAX_BACKOFF));
            if push.stale {
                // Sent even after the last retry, since it says something new; a client that
                // is gone costs one push per longest backoff for as long as the table changes.
                match push.whole {
                    Some((whole_version, pages)) => {
                        let pages = push.datagrams[..pages].to_vec();
                        self.push_after_whole(now, to, whole_version, pages);
                    }
                    None => self.push_table(now, to),
                }
                if let Some(push) = self.pushes.get_mut(&to) {
                    (push.left, push.backoff) = (left, backoff);
                    push.next_at = now + self.cfg.ack_timeout * backoff;
                }
                continue;
            }
            if push.left == 0 {
                tracing::debug!(%to, version = push.version, "table never ACKed, given up");
                self.pushes.remove(&to);
                continue;
            }
            (push.left, push.backoff) = (left, backoff);
            push.next_at = now + self.cfg.ack_timeout * backoff;
            let copies: Vec<Transmit> =
                push.datagrams.iter().map(|bytes| Transmit { to, bytes: bytes.clone() }).collect();
            for t in copies {
                self.push_out(t);
            }
        }
    }

    fn delta(&self, base: u64, version: u64, encoded: &mut Encoded) -> Option<Vec<Arc<[u8]>>> {
        if let Some(d) = encoded.deltas.get(&base) {
            return Some(d.clone());
        }
        let rows = self.clients.rows_since(base)?;
        let bytes: Arc<[u8]> = encode(&Datagram::TableDelta { base, version, rows }).ok()?.into();
        encoded.deltas.insert(base, vec![bytes.clone()]);
        Some(vec![bytes])
    }

    /// The whole table: one `table` datagram if it fits, else `table_page`s.
    fn whole_table(&self) -> Vec<Arc<[u8]>> {
        let table = self.clients.snapshot();
        if let Ok(bytes) = encode(&Datagram::Table(table.clone())) {
            return vec![bytes.into()];
        }
        let chunks: Vec<_> = table.clients.chunks(PAGE_ROWS).collect();
        let pages = u16::try_from(chunks.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(chunks.len());
        for (page, rows) in (0..pages).zip(chunks) {
            let d = Datagram::TablePage { version: table.version, page, pages, clients: rows.to_vec() };
            match encode(&d) {
                Ok(bytes) => out.push(bytes.into()),
                Err(e) => tracing::error!(page, "a table page does not fit one datagram: {e}"),
            }
        }
        out
    }

    /// `from` holds the table at `version`. A client whose push this ACKs gets what changed
    /// since, if anything did; one that could not apply what it was sent (it is behind the
    /// delta's base), or that asks while nothing is on its way to it (its push gave up, or it
    /// has no table), gets a new push from where it is.
    pub(crate) fn on_table_ack(&mut self, now: Instant, from: SocketAddr, version: u64) {
        if self.clients.online_at(from).is_none() && !self.pushes.contains_key(&from) {
            return; // only clients the server talks to are remembered
        }
        self.acked.insert(from, version);
        let behind = version < self.clients.version();
        match self.pushes.get(&from) {
            Some(push) if push.version <= version => {
                self.pushes.remove(&from);
                if behind {
                    self.push_table(now, from);
                }
            }
            Some(push) if push.base.is_some_and(|b| version < b) => self.push_table(now, from),
            None if behind => self.push_table(now, from),
            _ => {}
        }
    }
}
