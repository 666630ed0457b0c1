//! The local client table: whole tables, tables in pages, deltas, the row that comes with
//! `exists`, and what a table says about this client itself.

use std::time::Instant;

use chat_proto::{ClientRow, Datagram, Table};

use crate::core::{Client, Kind, Status};
use crate::event::Event;

/// A table arriving in several datagrams.
#[derive(Debug)]
pub(crate) struct Pages {
    version: u64,
    pages: Vec<Option<Vec<ClientRow>>>,
}

impl Client {
    fn ack_table(&mut self, version: u64) {
        self.send_once(self.server, &Datagram::TableAck { version });
    }

    /// Asks for the table (a `table_ack` of the version held) when none as new as this client's
    /// registration has come in time: the server's pushes give up after a while, and a client
    /// that was slow to answer them would otherwise wait for the next change.
    pub(crate) fn pull_table(&mut self, now: Instant) {
        let Some((at, wait)) = self.table_pull else { return };
        let current = self.local_version().is_some_and(|v| v >= self.registered_version);
        if current || self.status != Status::Online {
            self.table_pull = None;
            return;
        }
        if now >= at {
            let held = self.local_version().unwrap_or(0);
            self.ack_table(held);
            let wait = wait * 2;
            // Four asks (after 2, 6, 14 and 30 s by default), then it waits for the next change.
            self.table_pull = (wait <= self.cfg.ack_timeout * 32).then_some((now + wait, wait));
        }
    }

    /// Starts waiting for the table that shows this client registered.
    pub(crate) fn expect_table(&mut self, now: Instant) {
        let wait = self.cfg.ack_timeout * 4;
        self.table_pull = Some((now + wait, wait));
    }

    fn local_version(&self) -> Option<u64> {
        self.table.as_ref().map(|t| t.version)
    }

    pub(crate) fn on_table(&mut self, now: Instant, table: Table) {
        if self.status == Status::Offline {
            return;
        }
        self.ack_table(table.version);
        self.apply_table(now, table);
    }

    pub(crate) fn on_table_page(&mut self, now: Instant, version: u64, page: u16, pages: u16, rows: Vec<ClientRow>) {
        if self.status == Status::Offline || page >= pages {
            return;
        }
        if self.local_version().is_some_and(|v| v >= version) {
            self.ack_table(version);
            return;
        }
        let fresh = || Pages { version, pages: vec![None; usize::from(pages)] };
        let p = self.pages.get_or_insert_with(fresh);
        if p.version != version || p.pages.len() != usize::from(pages) {
            *p = fresh();
        }
        p.pages[usize::from(page)] = Some(rows);
        if p.pages.iter().any(Option::is_none) {
            return; // the rest are on their way (or are retransmitted until the ACK)
        }
        let clients = self.pages.take().into_iter().flat_map(|p| p.pages).flatten().flatten().collect();
        self.ack_table(version);
        self.apply_table(now, Table { version, clients });
    }

    /// A delta applies on top of a table at `base` or newer; a client without one says where it
    /// is, and the server sends what it needs from there.
    pub(crate) fn on_table_delta(&mut self, now: Instant, base: u64, version: u64, rows: Vec<ClientRow>) {
        if self.status == Status::Offline {
            return;
        }
        let Some(table) = self.table.as_mut().filter(|t| t.version >= base) else {
            let local = self.local_version().unwrap_or(0);
            self.ack_table(local);
            return;
        };
        if table.version >= version {
            self.ack_table(version);
            return;
        }
        for row in rows {
            upsert(table, row);
        }
        table.version = version;
        self.ack_table(version);
        self.table_changed(now);
    }

    /// Replaces the local table with a newer one.
    pub(crate) fn apply_table(&mut self, now: Instant, table: Table) {
        if self.local_version().is_some_and(|v| table.version <= v) {
            return;
        }
        self.table = Some(table);
        self.table_changed(now);
    }

    /// The row of a recipient that answered the server's probe (with `exists`).
    pub(crate) fn apply_row(&mut self, row: ClientRow) {
        let table = self.table.get_or_insert_with(|| Table { version: 0, clients: Vec::new() });
        upsert(table, row);
        self.emit(Event::TableUpdated);
    }

    /// Shows the update. A table newer than this client's registration that lists it offline
    /// means the server lost track of it (its probe answers were lost), and so does one without
    /// its row once a table has shown it online (a new name's row comes only with the
    /// registration's `confirm`): it registers again.
    fn table_changed(&mut self, now: Instant) {
        let Some(table) = &self.table else { return };
        let row = table.clients.iter().find(|r| r.name == self.me);
        self.seen_online |= row.is_some_and(|r| r.online);
        let lost = row.map_or(self.seen_online, |r| !r.online);
        let newer = table.version > self.registered_version;
        // While the registration is not done (its confirm or fetch in flight), or a new one is
        // on its way, the server may rightly list this client offline still.
        let busy = self.fetch.is_some()
            || self
                .requests
                .values()
                .any(|r| matches!(r.kind, Kind::Dereg { .. } | Kind::Register | Kind::Confirm { .. }));
        if self.status == Status::Online && newer && lost && !busy {
            tracing::info!("the server lists this client offline: registering again");
            self.register(now);
        }
        if self.holding() && self.fetch.is_none() {
            self.held.push(Event::TableUpdated);
        } else {
            self.emit(Event::TableUpdated);
        }
    }
}

/// Puts `row` in `table`, kept sorted by name.
fn upsert(table: &mut Table, row: ClientRow) {
    match table.clients.binary_search_by(|r| r.name.cmp(&row.name)) {
        Ok(i) => table.clients[i] = row,
        Err(i) => table.clients.insert(i, row),
    }
}
