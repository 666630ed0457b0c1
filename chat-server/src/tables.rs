//! Sending the client table: to each online client what changed since the version it last
//! ACKed (a delta), or the whole table (in pages when it does not fit one datagram) to a
//! client that has none or is too far behind; retransmitted until ACKed.
//!
//! Each distinct delta, and the whole table, is encoded once per broadcast and shared by every
//! client that needs it.

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

/// A table (or delta) sent to one client and not yet ACKed.
#[derive(Debug)]
pub(crate) struct Push {
    pub(crate) version: u64,
    /// The version the delta starts from; `None` for the whole table.
    base: Option<u64>,
    pub(crate) datagrams: Vec<Arc<[u8]>>,
    pub(crate) next_at: Instant,
    pub(crate) left: u32,
    /// How many ACK timeouts until the next retransmission: doubles each time, so that a
    /// crowd of clients that are slow to ACK is not buried under copies of the table.
    pub(crate) backoff: u32,
}

/// Encodings made during one broadcast, shared between clients.
#[derive(Default)]
struct Encoded {
    whole: Option<Vec<Arc<[u8]>>>,
    deltas: HashMap<u64, Vec<Arc<[u8]>>>,
}

impl<S: Store> Server<S> {
    pub(crate) fn broadcast(&mut self, now: Instant) {
        self.table_dirty = false;
        let version = self.clients.version();
        let mut targets: Vec<SocketAddr> = self.clients.online().map(|(_, a)| a).collect();
        targets.append(&mut self.also_tell);
        let mut encoded = Encoded::default();
        for to in &targets {
            let base = self.acked.get(to).copied();
            // A whole table still on its way is a base too: send what changed since it,
            // and keep retransmitting it, rather than the whole table again.
            let in_flight = self.pushes.get(to).filter(|p| p.base.is_none() && base.is_none());
            match in_flight.map(|p| (p.version, p.datagrams.clone())) {
                Some((whole_version, whole)) => self.push_after(now, *to, whole_version, whole, &mut encoded),
                None => self.push_table(now, *to, base, &mut encoded),
            }
        }
        let deltas = encoded.deltas.len();
        tracing::info!(version, clients = targets.len(), deltas, whole = encoded.whole.is_some(), "table broadcast");
    }

    /// Sends `to` the current table: a delta from `base` if the change log reaches back to it,
    /// else the whole table.
    fn push_table(&mut self, now: Instant, to: SocketAddr, base: Option<u64>, encoded: &mut Encoded) {
        let version = self.clients.version();
        if base.is_some_and(|b| b >= version) {
            self.pushes.remove(&to);
            return;
        }
        let delta = base.and_then(|b| Some((b, self.delta(b, version, encoded)?)));
        let (base, datagrams) = match delta {
            Some((b, d)) => (Some(b), d),
            None => (None, encoded.whole.get_or_insert_with(|| self.whole_table()).clone()),
        };
        for bytes in &datagrams {
            self.push_out(Transmit { to, bytes: bytes.clone() });
        }
        let push =
            Push { version, base, datagrams, next_at: now + self.cfg.ack_timeout, left: self.cfg.retries, backoff: 1 };
        self.pushes.insert(to, push);
    }

    /// Sends `to` a delta from `whole_version` after the whole table `whole` that is still on its
    /// way to it; both are retransmitted until the client ACKs.
    fn push_after(
        &mut self,
        now: Instant,
        to: SocketAddr,
        whole_version: u64,
        whole: Vec<Arc<[u8]>>,
        encoded: &mut Encoded,
    ) {
        let version = self.clients.version();
        let Some(delta) = self.delta(whole_version, version, encoded) else {
            self.push_table(now, to, None, encoded);
            return;
        };
        for bytes in &delta {
            self.push_out(Transmit { to, bytes: bytes.clone() });
        }
        let mut datagrams = whole;
        datagrams.retain(|d| !d.is_empty());
        datagrams.extend(delta);
        let push = Push {
            version,
            base: None,
            datagrams,
            next_at: now + self.cfg.ack_timeout,
            left: self.cfg.retries,
            backoff: 1,
        };
        self.pushes.insert(to, push);
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

    /// `from` holds the table at `version`. A client that could not apply what it was sent
    /// (it is behind the delta's base), or that asks while nothing is on its way to it (its
    /// push gave up, or it has no table), gets a new push from where it is.
    pub(crate) fn on_table_ack(&mut self, now: Instant, from: SocketAddr, version: u64) {
        if self.clients.online_at(from).is_none() && !self.pushes.contains_key(&from) {
            return; // only clients the server talks to are remembered
        }
        self.acked.insert(from, version);
        let behind = version < self.clients.version();
        match self.pushes.get(&from) {
            Some(push) if push.version <= version => {
                self.pushes.remove(&from);
            }
            Some(push) if push.base.is_some_and(|b| version < b) => {
                self.push_table(now, from, Some(version), &mut Encoded::default());
            }
            None if behind => self.push_table(now, from, Some(version), &mut Encoded::default()),
            _ => {}
        }
    }
}
