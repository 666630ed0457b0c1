//! The server's client table: who is registered, where, and whether online. No I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

use chat_proto::{ClientRow, Name, PublicKey, Secret, Table};
use serde::{Deserialize, Serialize};

use crate::secret_hash::SecretHash;

/// One registered client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub addr: SocketAddr,
    pub online: bool,
    /// The node the client is registered at when it is not this one (several nodes sharing
    /// one table): its probes, table pushes and channel copies are that node's to send.
    pub home: Option<NodeId>,
}

/// A server node sharing the table, as the shared store numbers them.
pub type NodeId = u64;

/// The table as it is kept on disk: the rows with the hashes of their secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTable {
    pub(crate) version: u64,
    pub(crate) clients: Vec<SavedRow>,
}

/// One row of the table with the hash of its secret, as it is saved, or shared with other
/// nodes through the shared store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RowOnDisk")]
pub struct SavedRow {
    #[serde(flatten)]
    row: ClientRow,
    secret_hash: SecretHash,
}

impl SavedRow {
    /// The client's name.
    pub fn name(&self) -> &Name {
        &self.row.name
    }

    /// Whether the client is online.
    pub fn online(&self) -> bool {
        self.row.online
    }
}

/// A row as read: with the hash of its secret, or, written before hashes, the secret itself,
/// which is hashed as it is read (and so never written again).
#[derive(Deserialize)]
struct RowOnDisk {
    #[serde(flatten)]
    row: ClientRow,
    secret_hash: Option<SecretHash>,
    secret: Option<Secret>,
}

impl TryFrom<RowOnDisk> for SavedRow {
    type Error = &'static str;

    fn try_from(r: RowOnDisk) -> Result<Self, Self::Error> {
        let secret_hash = r.secret_hash.or_else(|| r.secret.as_ref().map(SecretHash::of));
        Ok(Self { row: r.row, secret_hash: secret_hash.ok_or("a row without its secret's hash")? })
    }
}

/// How many recent changes are kept to build deltas; a client further behind gets the table.
const CHANGE_LOG: usize = 16_384;

impl SavedTable {
    /// How many rows it has.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Applies a batch of changes saved after this table: its rows replace or join these.
    pub(crate) fn apply(&mut self, changes: SavedTable) {
        if changes.version <= self.version {
            return;
        }
        for row in changes.clients {
            match self.clients.iter_mut().find(|r| r.row.name == row.row.name) {
                Some(old) => *old = row,
                None => self.clients.push(row),
            }
        }
        self.version = changes.version;
    }
}

/// A row as the server keeps it: where the client is, and its secret's hash (kept beside the
/// row, not in a map of its own, to spare a copy of the name per client).
#[derive(Debug)]
struct Row {
    entry: Entry,
    secret: Option<SecretHash>,
    /// The key the name belongs to (none only in a table kept from before keys).
    key: Option<PublicKey>,
    /// Where the client listens on its own network, if it differs from its address.
    lan: Option<SocketAddr>,
    /// The version the shared store gave the row's latest state known here (0: none, or a
    /// table kept in files): an older change from the store is not applied over it.
    shared: u64,
}

impl Row {
    fn client_row(&self, name: &Name) -> ClientRow {
        let (addr, online, key, lan) = (self.entry.addr, self.entry.online, self.key, self.lan);
        ClientRow { name: name.clone(), addr, online, key, lan }
    }
}

/// The table, with a version that grows on every change, and an index by address.
#[derive(Debug)]
pub(crate) struct Clients {
    rows: BTreeMap<Name, Row>,
    /// The rows changed by each recent version, oldest first.
    changes: VecDeque<(u64, Name)>,
    by_addr: HashMap<SocketAddr, Name>,
    version: u64,
}

impl Clients {
    /// An empty table whose first version is `base + 1`.
    pub fn new(base: u64) -> Self {
        Self { rows: BTreeMap::new(), changes: VecDeque::new(), by_addr: HashMap::new(), version: base }
    }

    /// A table as it was saved: the same rows, and versions that go on from the saved one.
    pub fn restore(base: u64, saved: SavedTable) -> Self {
        let mut c = Self::new(base.max(saved.version));
        for SavedRow { row, secret_hash } in saved.clients {
            // An address names the client online there; an offline row does not claim it.
            if row.online || !c.by_addr.contains_key(&row.addr) {
                c.by_addr.insert(row.addr, row.name.clone());
            }
            let entry = Entry { addr: row.addr, online: row.online, home: None };
            c.rows.insert(row.name, Row { entry, secret: Some(secret_hash), key: row.key, lan: row.lan, shared: 0 });
        }
        c
    }

    /// The table with its secrets, to be saved.
    pub fn saved(&self) -> SavedTable {
        let clients = self
            .snapshot()
            .clients
            .into_iter()
            .filter_map(|row| Some(SavedRow { secret_hash: self.secret_hash(&row.name)?.clone(), row }))
            .collect();
        SavedTable { version: self.version, clients }
    }

    /// The rows changed after version `base`, with their secrets, to be appended to the saved
    /// table; `None` when the change log no longer reaches back to `base`.
    pub fn saved_since(&self, base: u64) -> Option<SavedTable> {
        let clients = self
            .rows_since(base)?
            .into_iter()
            .filter_map(|row| Some(SavedRow { secret_hash: self.secret_hash(&row.name)?.clone(), row }))
            .collect();
        Some(SavedTable { version: self.version, clients })
    }

    /// How many clients the table has.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    fn secret_hash(&self, name: &Name) -> Option<&SecretHash> {
        self.rows.get(name).and_then(|r| r.secret.as_ref())
    }

    /// Whether `name` is registered with a secret.
    pub fn has_secret(&self, name: &Name) -> bool {
        self.secret_hash(name).is_some()
    }

    /// Whether `shown` is the secret of `name` (compared in constant time); false when `name`
    /// has none.
    pub fn secret_matches(&self, name: &Name, shown: &Secret) -> bool {
        self.secret_hash(name).is_some_and(|h| h.matches(shown))
    }

    /// Gives `name`, which has a row, its secret (at its first registration): only its hash
    /// is kept.
    pub fn set_secret(&mut self, name: &Name, secret: &Secret) {
        if let Some(r) = self.rows.get_mut(name) {
            r.secret = Some(SecretHash::of(secret));
        }
    }

    /// The key `name` belongs to, if it is registered with one.
    pub fn key(&self, name: &Name) -> Option<&PublicKey> {
        self.rows.get(name).and_then(|r| r.key.as_ref())
    }

    /// Gives `name`, which has a row, the key it belongs to (at its first registration, or
    /// the first since keys).
    pub fn set_key(&mut self, name: &Name, key: PublicKey) {
        if let Some(r) = self.rows.get_mut(name) {
            r.key = Some(key);
        }
    }

    /// The rows changed after version `base`, as they are now; `None` when the change log no
    /// longer reaches back to `base` (the whole table is needed then).
    pub fn rows_since(&self, base: u64) -> Option<Vec<ClientRow>> {
        if base >= self.version {
            return Some(Vec::new());
        }
        let oldest = self.changes.front()?.0;
        if base + 1 < oldest {
            return None;
        }
        let names: BTreeSet<&Name> = self.changes.iter().rev().take_while(|(v, _)| *v > base).map(|(_, n)| n).collect();
        Some(names.into_iter().filter_map(|n| self.row(n)).collect())
    }

    fn row(&self, name: &Name) -> Option<ClientRow> {
        self.rows.get(name).map(|r| r.client_row(name))
    }

    /// Notes that `name` changed in the current version.
    fn changed(&mut self, name: &Name) {
        self.changes.push_back((self.version, name.clone()));
        if self.changes.len() > CHANGE_LOG {
            self.changes.pop_front();
        }
    }

    pub fn get(&self, name: &Name) -> Option<Entry> {
        self.rows.get(name).map(|r| r.entry)
    }

    /// The name registered and online at `addr`.
    pub fn online_at(&self, addr: SocketAddr) -> Option<&Name> {
        self.by_addr.get(&addr).filter(|n| self.rows.get(*n).is_some_and(|r| r.entry.online))
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Puts `name` online at `addr`. Another name that was registered at `addr` is marked
    /// offline: only one process can listen on one address.
    pub fn set_online(&mut self, name: &Name, addr: SocketAddr) {
        let entry = Entry { addr, online: true, home: None };
        let old = match self.rows.get_mut(name) {
            Some(r) => Some(std::mem::replace(&mut r.entry, entry)),
            None => {
                let row = Row { entry, secret: None, key: None, lan: None, shared: 0 };
                self.rows.insert(name.clone(), row).map(|r| r.entry)
            }
        };
        // The old address may belong to another client by now: only drop our own mapping.
        if let Some(old) = old.filter(|old| old.addr != addr && self.by_addr.get(&old.addr) == Some(name)) {
            self.by_addr.remove(&old.addr);
        }
        let displaced = self.by_addr.insert(addr, name.clone()).filter(|prev| prev != name);
        if let Some(r) = displaced.as_ref().and_then(|prev| self.rows.get_mut(prev)) {
            r.entry.online = false;
            r.entry.home = None;
        }
        self.version += 1;
        self.changed(name);
        if let Some(prev) = displaced {
            self.changed(&prev);
        }
    }

    /// Sets where `name` listens on its own network (as its `register` said), in the version
    /// [`Clients::set_online`] just made: call it right after, in the same change. An address
    /// the same as the row's own says nothing and is not kept.
    pub fn set_lan(&mut self, name: &Name, lan: Option<SocketAddr>) {
        if let Some(r) = self.rows.get_mut(name) {
            r.lan = lan.filter(|l| *l != r.entry.addr);
        }
    }

    /// Marks `name` offline; returns false (and changes nothing) if it was not online.
    pub fn set_offline(&mut self, name: &Name) -> bool {
        match self.rows.get_mut(name) {
            Some(r) if r.entry.online => {
                r.entry.online = false;
                r.entry.home = None;
                self.version += 1;
                self.changed(name);
                true
            }
            _ => false,
        }
    }

    /// Every client online at this node, with its address (not those registered at other
    /// nodes: they are swept, pushed tables and probed by their own).
    pub fn online(&self) -> impl Iterator<Item = (&Name, SocketAddr)> {
        self.rows.iter().filter(|(_, r)| r.entry.online && r.entry.home.is_none()).map(|(n, r)| (n, r.entry.addr))
    }

    /// Takes a row as another node (or this one, earlier) left it in the shared store, at the
    /// store's version `shared`, registered at `home` (`None`: this node). A change no newer
    /// than what is known of the row is ignored. Returns the row's entry before, if it was
    /// applied.
    pub fn apply_shared(&mut self, saved: SavedRow, home: Option<NodeId>, shared: u64) -> Option<Option<Entry>> {
        let SavedRow { row, secret_hash } = saved;
        if self.rows.get(&row.name).is_some_and(|r| r.shared >= shared) {
            return None;
        }
        let entry = Entry { addr: row.addr, online: row.online, home };
        let new = Row { entry, secret: Some(secret_hash), key: row.key, lan: row.lan, shared };
        let old = self.rows.insert(row.name.clone(), new).map(|r| r.entry);
        if let Some(old) = old.filter(|old| self.by_addr.get(&old.addr) == Some(&row.name)) {
            self.by_addr.remove(&old.addr);
        }
        if row.online || !self.by_addr.contains_key(&row.addr) {
            self.by_addr.insert(row.addr, row.name.clone());
        }
        self.version += 1;
        self.changed(&row.name);
        Some(old)
    }

    /// Notes that the shared store holds `name`'s row as this node wrote it, at version
    /// `shared`.
    pub fn shared_as(&mut self, name: &Name, shared: u64) {
        if let Some(r) = self.rows.get_mut(name) {
            r.shared = r.shared.max(shared);
        }
    }

    /// The rows this node changed after version `base`, to be written to the shared store, each
    /// with the store's version of the row it was changed from: the whole table's when the
    /// change log no longer reaches back.
    pub fn shared_since(&self, base: u64) -> Vec<(SavedRow, u64)> {
        let rows = self.rows_since(base).unwrap_or_else(|| self.snapshot().clients);
        rows.into_iter()
            .filter_map(|row| {
                let r = self.rows.get(&row.name).filter(|r| r.entry.home.is_none())?;
                Some((SavedRow { secret_hash: r.secret.clone()?, row }, r.shared))
            })
            .collect()
    }

    /// The current row of `name`.
    pub fn row_of(&self, name: &Name) -> Option<ClientRow> {
        self.row(name)
    }

    pub fn snapshot(&self) -> Table {
        let clients = self.rows.iter().map(|(name, r)| r.client_row(name)).collect();
        Table { version: self.version, clients }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_since_gives_what_changed_or_none_when_too_old() {
        let mut c = Clients::new(100);
        let v0 = c.version();
        c.set_online(&n("a"), a(1));
        c.set_online(&n("b"), a(2));
        let v2 = c.version();
        c.set_offline(&n("a"));
        let names = |rows: Vec<ClientRow>| rows.into_iter().map(|r| (r.name.to_string(), r.online)).collect::<Vec<_>>();
        assert_eq!(c.rows_since(v2).map(names), Some(vec![("a".into(), false)]));
        assert_eq!(c.rows_since(v0).map(names), Some(vec![("a".into(), false), ("b".into(), true)]));
        assert_eq!(c.rows_since(c.version()).map(names), Some(vec![]));
        for i in 0..CHANGE_LOG + 5 {
            c.set_online(&n(&format!("x{}", i % 7)), a(10 + (i % 7) as u16));
        }
        assert_eq!(c.rows_since(v2), None, "too far behind: the whole table");
    }

    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn every_change_bumps_the_version_and_no_op_does_not() {
        let mut c = Clients::new(100);
        c.set_online(&n("a"), a(1));
        assert_eq!(c.version(), 101);
        assert!(c.set_offline(&n("a")));
        assert!(!c.set_offline(&n("a")));
        assert!(!c.set_offline(&n("zed")));
        assert_eq!(c.version(), 102);
    }

    #[test]
    fn a_name_moves_and_an_address_has_one_name() {
        let mut c = Clients::new(0);
        c.set_online(&n("a"), a(1));
        c.set_online(&n("a"), a(2));
        assert_eq!(c.online_at(a(1)), None);
        assert_eq!(c.online_at(a(2)), Some(&n("a")));
        c.set_online(&n("b"), a(2));
        assert_eq!(c.get(&n("a")).map(|e| e.online), Some(false));
        assert_eq!(c.online().map(|(n, _)| n.to_string()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(c.snapshot().clients.len(), 2);
    }
}
