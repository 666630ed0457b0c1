//! The local client table: whole tables, tables in pages, deltas, the row that comes with
//! `exists`, what a table says about this client itself, and the timing of waiting for and
//! asking for the table after a registration.
//!
//! It owns the table, the pages still arriving, the version of this client's registration and
//! the wait/pull deadlines. It returns what to do (the version to ACK, whether the table changed
//! and who came or went with it, whether the server lost track of this client); it sends and
//! shows nothing itself.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_proto::{ClientRow, Name, Table};

use crate::event::Presence;

/// A table arriving in several datagrams.
#[derive(Debug)]
struct Pages {
    version: u64,
    pages: Vec<Option<Vec<ClientRow>>>,
}

/// What a table datagram did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The version to ACK (`table_ack`), if any.
    pub ack: Option<u64>,
    /// A newer table replaced the local one, and who came or went with it.
    pub changed: Option<Presence>,
}

/// The local table and its timing.
#[derive(Debug)]
pub(crate) struct LocalTable {
    table: Option<Table>,
    pages: Option<Pages>,
    /// The table version of this client's last registration (a new name's row comes in a
    /// later one, once the address is confirmed).
    registered_version: u64,
    /// A table has shown this client online since its last registration.
    seen_online: bool,
    /// Until when commands wait for the first table after registering.
    wait: Option<Instant>,
    /// When to ask for the table if none as new as the registration has come, and how long to
    /// wait after that.
    pull: Option<(Instant, Duration)>,
    ack_timeout: Duration,
    retries: u32,
}

impl LocalTable {
    /// No table yet; waits are counted in `ack_timeout`s.
    pub fn new(ack_timeout: Duration, retries: u32) -> Self {
        Self {
            table: None,
            pages: None,
            registered_version: 0,
            seen_online: false,
            wait: None,
            pull: None,
            ack_timeout,
            retries,
        }
    }

    /// The table, for `list`.
    pub fn snapshot(&self) -> Option<Table> {
        self.table.clone()
    }

    /// The address of `name` and whether it is online.
    pub fn row(&self, name: &Name) -> Option<(SocketAddr, bool)> {
        let table = self.table.as_ref()?;
        table.clients.iter().find(|r| &r.name == name).map(|r| (r.addr, r.online))
    }

    /// Where to send to `name` directly: its LAN address if it sits behind the same public IP
    /// as `me` (most NATs do not pass a packet from inside back in to their own public
    /// address), else its address; and whether it is online.
    pub fn route(&self, me: &Name, name: &Name) -> Option<(SocketAddr, bool)> {
        let table = self.table.as_ref()?;
        let row = table.clients.iter().find(|r| &r.name == name)?;
        let mine = table.clients.iter().find(|r| &r.name == me).map(|r| r.addr.ip());
        let addr = match row.lan {
            Some(lan) if mine == Some(row.addr.ip()) && me != name => lan,
            _ => row.addr,
        };
        Some((addr, row.online))
    }

    /// The public address of the peer whose LAN address is `lan`, if that is one.
    pub fn public_of_lan(&self, lan: SocketAddr) -> Option<SocketAddr> {
        let table = self.table.as_ref()?;
        table.clients.iter().find(|r| r.lan == Some(lan) && r.addr != lan).map(|r| r.addr)
    }

    /// Whether a table has come.
    pub fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// The key `name` belongs to, by the table.
    pub fn key(&self, name: &Name) -> Option<chat_proto::PublicKey> {
        let table = self.table.as_ref()?;
        table.clients.iter().find(|r| &r.name == name).and_then(|r| r.key)
    }

    /// Every name with a key in the table, and its key.
    pub fn keys(&self) -> Vec<(Name, chat_proto::PublicKey)> {
        let rows = self.table.iter().flat_map(|t| &t.clients);
        rows.filter_map(|r| Some((r.name.clone(), r.key?))).collect()
    }

    fn version(&self) -> Option<u64> {
        self.table.as_ref().map(|t| t.version)
    }

    /// The client moved to another node of the server: that node numbers its versions its
    /// own way (from its start, not the other's), so its next table or page is taken whatever
    /// its version (nothing from the old node is taken any more). The rows are kept to route
    /// by until then; a delta (based on the new node's versions) is answered with an ACK of 0,
    /// which asks for the whole table.
    pub fn moved(&mut self) {
        if let Some(t) = self.table.as_mut() {
            t.version = 0;
        }
        self.pages = None;
    }

    /// The server registered this client at `version`.
    pub fn handle_registered(&mut self, version: u64) {
        self.registered_version = version;
        self.seen_online = false;
    }

    /// Commands wait (a bounded time) for the table that shows this client online, so that a
    /// script's first `send` finds its peers; the table is asked for if it does not come.
    pub fn expect(&mut self, now: Instant) {
        self.wait = Some(now + self.ack_timeout * (self.retries + 1));
        let wait = self.ack_timeout * 4;
        self.pull = Some((now + wait, wait));
    }

    /// Stops waiting for the table (the client went offline).
    pub fn stop_waiting(&mut self) {
        self.wait = None;
    }

    /// Whether commands still wait for the table of the registration at `now`.
    pub fn awaiting(&self, now: Instant) -> bool {
        self.wait.is_some_and(|t| now < t) && self.version().is_none_or(|v| v < self.registered_version)
    }

    /// Ends the wait for the table if it is over, and returns the version to ACK now to ask
    /// for the table, when none as new as this client's registration has come in time: the
    /// server's pushes give up after a while, and a client that was slow to answer them would
    /// otherwise wait for the next change. `online`: the client is registered (an offline one
    /// asks for nothing).
    pub fn handle_timeout(&mut self, now: Instant, online: bool) -> Option<u64> {
        if self.wait.is_some_and(|t| now >= t) {
            self.wait = None;
        }
        let (at, wait) = self.pull?;
        let current = self.version().is_some_and(|v| v >= self.registered_version);
        if current || !online {
            self.pull = None;
            return None;
        }
        if now < at {
            return None;
        }
        let wait = wait * 2;
        // Four asks (after 2, 6, 14 and 30 s by default), then it waits for the next change.
        self.pull = (wait <= self.ack_timeout * 32).then_some((now + wait, wait));
        Some(self.version().unwrap_or(0))
    }

    /// When the wait or the next ask ends.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.wait.into_iter().chain(self.pull.map(|(at, _)| at)).min()
    }

    /// A whole table: ACKed, and applied if newer.
    pub fn handle_table(&mut self, table: Table) -> Applied {
        Applied { ack: Some(table.version), changed: self.apply(table) }
    }

    /// One page of a table: applied once every page has come, in any order.
    pub fn handle_page(&mut self, version: u64, page: u16, pages: u16, rows: Vec<ClientRow>) -> Applied {
        if page >= pages {
            return Applied::default();
        }
        if self.version().is_some_and(|v| v >= version) {
            return Applied { ack: Some(version), changed: None };
        }
        let fresh = || Pages { version, pages: vec![None; usize::from(pages)] };
        let p = self.pages.get_or_insert_with(fresh);
        if p.version != version || p.pages.len() != usize::from(pages) {
            *p = fresh();
        }
        p.pages[usize::from(page)] = Some(rows);
        if p.pages.iter().any(Option::is_none) {
            return Applied::default(); // the rest are on their way (or are retransmitted until the ACK)
        }
        let clients = self.pages.take().into_iter().flat_map(|p| p.pages).flatten().flatten().collect();
        Applied { ack: Some(version), changed: self.apply(Table { version, clients }) }
    }

    /// A delta applies on top of a table at `base` or newer; a client without one ACKs where
    /// it is, and the server sends what it needs from there.
    pub fn handle_delta(&mut self, base: u64, version: u64, rows: Vec<ClientRow>) -> Applied {
        let Some(table) = self.table.as_mut().filter(|t| t.version >= base) else {
            return Applied { ack: Some(self.version().unwrap_or(0)), changed: None };
        };
        if table.version >= version {
            return Applied { ack: Some(version), changed: None };
        }
        let mut presence = Presence::default();
        for row in rows {
            let (name, online) = (row.name.clone(), row.online);
            if upsert(table, row) != Some(online) {
                presence.note(name, online);
            }
        }
        table.version = version;
        Applied { ack: Some(version), changed: Some(presence) }
    }

    /// The row of a recipient that answered the server's probe (with `exists`); who came or
    /// went with it.
    pub fn apply_row(&mut self, row: ClientRow) -> Presence {
        let table = self.table.get_or_insert_with(|| Table { version: 0, clients: Vec::new() });
        let (name, online) = (row.name.clone(), row.online);
        let mut presence = Presence::default();
        if upsert(table, row) != Some(online) {
            presence.note(name, online);
        }
        presence
    }

    /// Replaces the local table with a newer one; who came or went, if it did.
    fn apply(&mut self, table: Table) -> Option<Presence> {
        if self.version().is_some_and(|v| table.version <= v) {
            return None;
        }
        let presence = presence_between(self.table.as_ref(), &table);
        self.table = Some(table);
        Some(presence)
    }

    /// Whether the table (just changed) says the server lost track of `me`: a table newer than
    /// the registration that lists it offline, or one without its row once a table has shown it
    /// online (a new name's row comes only with the registration's `confirm`).
    pub fn lost(&mut self, me: &Name) -> bool {
        let Some(table) = &self.table else { return false };
        let row = table.clients.iter().find(|r| &r.name == me);
        self.seen_online |= row.is_some_and(|r| r.online);
        let lost = row.map_or(self.seen_online, |r| !r.online);
        lost && table.version > self.registered_version
    }
}

/// Puts `row` in `table`, kept sorted by name; whether the row it replaced was online (none if
/// the name is new).
fn upsert(table: &mut Table, row: ClientRow) -> Option<bool> {
    match table.clients.binary_search_by(|r| r.name.cmp(&row.name)) {
        Ok(i) => Some(std::mem::replace(&mut table.clients[i], row).online),
        Err(i) => {
            table.clients.insert(i, row);
            None
        }
    }
}

/// Who is online in `new` and was not in `old`, and who is offline in `new` and was not, or
/// was online and left the table (every row counts when there was no table before).
fn presence_between(old: Option<&Table>, new: &Table) -> Presence {
    let before: HashMap<&Name, bool> = old.iter().flat_map(|t| &t.clients).map(|r| (&r.name, r.online)).collect();
    let mut presence = Presence::default();
    for row in &new.clients {
        if before.get(&row.name) != Some(&row.online) {
            presence.note(row.name.clone(), row.online);
        }
    }
    if !before.is_empty() {
        let now: HashSet<&Name> = new.clients.iter().map(|r| &r.name).collect();
        for row in old.iter().flat_map(|t| &t.clients).filter(|r| r.online && !now.contains(&r.name)) {
            presence.note(row.name.clone(), false);
        }
    }
    presence
}
