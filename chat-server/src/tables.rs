//! Table pushes: sending the client table to each online client — what changed since the
//! version it last ACKed (a delta), or the whole table (in pages when it does not fit one
//! datagram) to a client that has none or is too far behind; retransmitted until ACKed. Owns
//! the pushes in flight, their deadlines, the versions each client ACKed and the shared
//! encodings; it reads the [`Clients`] table but never changes it.
//!
//! Each client has at most one push in flight. Changes made meanwhile wait for its ACK (or its
//! retransmission), and then go out together as one delta from the version it holds: so a
//! storm of registrations costs each client a delta per round trip, not one per change.
//! Each distinct delta, and the whole table, is encoded once per table version and shared by
//! every client that needs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{Deadlines, Transmit};
use chat_proto::{Datagram, encode};

use crate::clients::Clients;
use crate::outbox::Outbox;

/// Rows per page of a table that does not fit one datagram: a row is at most 364 bytes (a name
/// of 32 four-byte characters, a public and a LAN address each IPv6 with a scope id, a key), so
/// 160 fill at most 58,240 of the 65,478 bytes a datagram under the channel can carry.
const PAGE_ROWS: usize = 160;

/// Retransmissions of a push back off up to this many ACK timeouts.
const MAX_BACKOFF: u32 = 16;

/// A table (or delta) sent to one client and not yet ACKed.
#[derive(Debug)]
struct Push {
    version: u64,
    /// The version the delta starts from; `None` for the whole table.
    base: Option<u64>,
    /// For the whole table: its version, and how many of the datagrams are its pages (a delta
    /// from it may follow them).
    whole: Option<(u64, usize)>,
    datagrams: Vec<Arc<[u8]>>,
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
struct Encoded {
    version: u64,
    whole: Option<Vec<Arc<[u8]>>>,
    deltas: HashMap<u64, Vec<Arc<[u8]>>>,
}

/// Whether the table changed since it was last broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broadcast {
    UpToDate,
    Due,
}

/// The pushes of the client table.
#[derive(Debug)]
pub(crate) struct Tables {
    ack_timeout: Duration,
    retries: u32,
    pushes: HashMap<SocketAddr, Push>,
    due: Deadlines<SocketAddr>,
    /// The table version each client last ACKed: the base of its next delta.
    acked: HashMap<SocketAddr, u64>,
    encoded: Encoded,
    broadcast: Broadcast,
    /// Clients just marked offline by a failed probe: they get the table too, so that one that
    /// is in fact alive (its answers were lost) sees it and registers again.
    also_tell: Vec<SocketAddr>,
}

impl Tables {
    /// Pushes retransmitted every `ack_timeout` (backing off), `retries` times.
    pub fn new(ack_timeout: Duration, retries: u32) -> Self {
        Self {
            ack_timeout,
            retries,
            pushes: HashMap::new(),
            due: Deadlines::default(),
            acked: HashMap::new(),
            encoded: Encoded::default(),
            broadcast: Broadcast::UpToDate,
            also_tell: Vec::new(),
        }
    }

    /// The table changed: it goes out at the end of the batch.
    pub fn changed(&mut self) {
        self.broadcast = Broadcast::Due;
    }

    /// `addr` was just marked offline: it is told at the end of the batch, whatever is on its
    /// way to it.
    pub fn tell_offline(&mut self, addr: SocketAddr) {
        self.broadcast = Broadcast::Due;
        self.also_tell.push(addr);
    }

    /// A new process (or none) is at `addr`: it holds no table and waits for nothing.
    pub fn forget(&mut self, addr: SocketAddr) {
        self.acked.remove(&addr);
        self.stop(addr);
    }

    /// The datagrams on their way to `addr`, held back while it was unproven.
    pub fn held(&self, addr: SocketAddr) -> Vec<Arc<[u8]>> {
        self.pushes.get(&addr).map_or_else(Vec::new, |push| push.datagrams.clone())
    }

    /// Ends a batch: sends the table if it changed.
    pub fn commit(&mut self, now: Instant, clients: &Clients, out: &mut Outbox) {
        if self.broadcast == Broadcast::Due {
            self.send_all(now, clients, out);
        }
    }

    fn send_all(&mut self, now: Instant, clients: &Clients, out: &mut Outbox) {
        self.broadcast = Broadcast::UpToDate;
        let targets: Vec<SocketAddr> = clients.online().map(|(_, a)| a).collect();
        let (mut sent, mut waiting) = (0, 0);
        for to in targets {
            match self.pushes.get_mut(&to) {
                Some(push) => {
                    push.stale = true;
                    waiting += 1;
                }
                None => {
                    self.push_table(now, to, clients, out);
                    sent += 1;
                }
            }
        }
        // Clients just marked offline hear it at once, whatever is on its way to them: one
        // that is in fact alive registers again.
        for to in std::mem::take(&mut self.also_tell) {
            self.stop(to);
            self.push_table(now, to, clients, out);
            sent += 1;
        }
        tracing::debug!(version = clients.version(), sent, waiting, "table broadcast");
    }

    fn stop(&mut self, to: SocketAddr) {
        self.pushes.remove(&to);
        self.due.cancel(&to);
    }

    /// Sends `to` the current table: a delta from the version it last ACKed if the change log
    /// reaches back to it, else the whole table; retransmitted until ACKed, backing off.
    fn push_table(&mut self, now: Instant, to: SocketAddr, clients: &Clients, out: &mut Outbox) {
        let version = clients.version();
        let base = self.acked.get(&to).copied();
        if base.is_some_and(|b| b >= version) {
            self.stop(to);
            return;
        }
        self.fresh_encodings(version);
        let delta = base.and_then(|b| Some((b, self.delta(b, version, clients)?)));
        let (base, whole, datagrams) = match delta {
            Some((b, d)) => (Some(b), None, d),
            None => {
                let pages = self.encoded.whole.get_or_insert_with(|| whole_table(clients)).clone();
                (None, Some((version, pages.len())), pages)
            }
        };
        self.start_push(now, to, Sent { version, base, whole, datagrams }, out);
    }

    /// Sends `to`, whose whole table (at `whole_version`, in `pages`) is still on its way, the
    /// same pages again with what changed since: pages of two versions would not make a table.
    fn push_after_whole(
        &mut self,
        now: Instant,
        to: SocketAddr,
        whole: (u64, Vec<Arc<[u8]>>),
        c: &Clients,
        out: &mut Outbox,
    ) {
        let (whole_version, mut pages) = whole;
        let version = c.version();
        self.fresh_encodings(version);
        let Some(delta) = self.delta(whole_version, version, c) else {
            self.push_table(now, to, c, out); // the change log no longer reaches back: a new table
            return;
        };
        let whole = Some((whole_version, pages.len()));
        pages.extend(delta);
        self.start_push(now, to, Sent { version, base: None, whole, datagrams: pages }, out);
    }

    fn start_push(&mut self, now: Instant, to: SocketAddr, sent: Sent, out: &mut Outbox) {
        let Sent { version, base, whole, datagrams } = sent;
        for bytes in &datagrams {
            out.push(Transmit { to, bytes: bytes.clone() });
        }
        let left = self.retries;
        self.pushes.insert(to, Push { version, base, whole, datagrams, left, backoff: 1, stale: false });
        self.due.set(to, now + self.ack_timeout);
    }

    /// Drops the shared encodings of an older table version.
    fn fresh_encodings(&mut self, version: u64) {
        if self.encoded.version != version {
            self.encoded = Encoded { version, ..Encoded::default() };
        }
    }

    /// Retransmits the pushes that are due, backing off, and gives up on those retried enough.
    /// A push the table has moved past since is replaced by the current one, keeping its
    /// retries and backoff.
    pub fn handle_timeout(&mut self, now: Instant, clients: &Clients, out: &mut Outbox) {
        // Taken first: a push set due again at `now` (a zero ACK timeout) waits for the next
        // call, as each call retransmits a push at most once.
        let due: Vec<SocketAddr> = std::iter::from_fn(|| self.due.pop_due(now)).collect();
        for to in due {
            let Some(push) = self.pushes.get_mut(&to) else { continue };
            let (left, backoff) = (push.left.saturating_sub(1), push.backoff.saturating_mul(2).min(MAX_BACKOFF));
            if push.stale {
                // Sent even after the last retry, since it says something new; a client that
                // is gone costs one push per longest backoff for as long as the table changes.
                match push.whole {
                    Some((whole_version, pages)) => {
                        let pages = push.datagrams[..pages].to_vec();
                        self.push_after_whole(now, to, (whole_version, pages), clients, out);
                    }
                    None => self.push_table(now, to, clients, out),
                }
                self.backed_off(now, to, left, backoff);
                continue;
            }
            if push.left == 0 {
                tracing::debug!(%to, version = push.version, "table never ACKed, given up");
                self.pushes.remove(&to);
                continue;
            }
            for bytes in &push.datagrams {
                out.push(Transmit { to, bytes: bytes.clone() });
            }
            self.backed_off(now, to, left, backoff);
        }
    }

    fn backed_off(&mut self, now: Instant, to: SocketAddr, left: u32, backoff: u32) {
        if let Some(push) = self.pushes.get_mut(&to) {
            (push.left, push.backoff) = (left, backoff);
            self.due.set(to, now + self.ack_timeout * backoff);
        }
    }

    /// When a push is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due.next()
    }

    fn delta(&mut self, base: u64, version: u64, clients: &Clients) -> Option<Vec<Arc<[u8]>>> {
        if let Some(d) = self.encoded.deltas.get(&base) {
            return Some(d.clone());
        }
        let rows = clients.rows_since(base)?;
        let bytes: Arc<[u8]> = encode(&Datagram::TableDelta { base, version, rows }).ok()?.into();
        self.encoded.deltas.insert(base, vec![bytes.clone()]);
        Some(vec![bytes])
    }

    /// `from` holds the table at `version`. A client whose push this ACKs gets what changed
    /// since, if anything did; one that could not apply what it was sent (it is behind the
    /// delta's base), or that asks while nothing is on its way to it (its push gave up, or it
    /// has no table), gets a new push from where it is.
    pub fn handle_ack(&mut self, now: Instant, from: SocketAddr, version: u64, clients: &Clients, out: &mut Outbox) {
        if clients.online_at(from).is_none() && !self.pushes.contains_key(&from) {
            return; // only clients the server talks to are remembered
        }
        self.acked.insert(from, version);
        let behind = version < clients.version();
        match self.pushes.get(&from) {
            Some(push) if push.version <= version => {
                self.stop(from);
                if behind {
                    self.push_table(now, from, clients, out);
                }
            }
            Some(push) if push.base.is_some_and(|b| version < b) => self.push_table(now, from, clients, out),
            None if behind => self.push_table(now, from, clients, out),
            _ => {}
        }
    }
}

/// The whole table: one `table` datagram if it fits, else `table_page`s.
fn whole_table(clients: &Clients) -> Vec<Arc<[u8]>> {
    let table = clients.snapshot();
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

    use chat_proto::{ClientRow, Datagram, MAX_NAME_CHARS, MAX_PAYLOAD, Name, PublicKey, encode};

    use super::PAGE_ROWS;

    #[test]
    fn a_page_of_the_largest_rows_fits_one_datagram_under_the_channel() {
        // The longest name in bytes (four-byte characters), the longest address (IPv6 with a
        // scope id) twice, public and LAN, a key: the largest row a table can hold.
        let name = Name::new("\u{1F600}".repeat(MAX_NAME_CHARS)).expect("a valid name");
        let ip = Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff);
        let addr = SocketAddr::V6(SocketAddrV6::new(ip, 65_535, u32::MAX, u32::MAX));
        let key = Some(PublicKey::from([0xff; 32]));
        let row = ClientRow { lan: Some(addr), name, addr, online: false, key };
        let page =
            Datagram::TablePage { version: u64::MAX, page: u16::MAX, pages: u16::MAX, clients: vec![row; PAGE_ROWS] };
        let bytes = encode(&page).expect("a page of the largest rows encodes");
        assert!(bytes.len() <= MAX_PAYLOAD);
    }
}
