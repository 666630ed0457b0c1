//! [`PgStore`]: the offline mailboxes in PostgreSQL, behind [`offline_store::Store`], for several
//! server nodes that share one database.
//!
//! This module owns what one node knows of each mailbox (the ordered keys, sizes, which
//! messages are durable, the bodies not yet committed) and turns the trait's steps into jobs that
//! run [`crate::queries`] through the [`Db`] thread; it must not hold a durable message's body
//! in memory, nor run a statement outside a job (the blocking trait methods run the same jobs
//! at once).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chat_proto::{MsgId, Name, StoredMessage};
use offline_store::{
    Appended, CheckpointJob, Checkpointed, Discarded, Fetched, Limits, MailboxScan, OpenJob, OwedChannel, ReadJob,
    RemoveJob, Removed, Store, StoreError, SyncJob, Usage,
};

use crate::Db;
use crate::queries::{self, Batch, QueryError};

/// A message's key: its sender and its id (ids are unique per sender).
type Key = (Name, MsgId);

/// Offline mailboxes in PostgreSQL (table `offline_messages`, see [`crate::schema`]).
///
/// Semantics are [`Store`]'s, with these differences, all from the database:
///
/// - A sync is one transaction (synchronous commit) that inserts the batch with `ON CONFLICT
///   (recipient, sender, id) DO NOTHING`: a message is stored once per (sender, id), whichever
///   node takes it, and a batch whose commit failed, or whose outcome is unknown, is inserted
///   again by the next sync, harmlessly. So an append of a copy handed to a sync not known to
///   have succeeded returns [`Appended::Stored`] (no ACK rests on it: it waits for the next
///   sync) but adds no second copy.
/// - What a node knows of a mailbox is what it learnt ([`Store::open_job`]: one query for the
///   ordered keys and sizes, in the order the database took the messages, its `seq`) and
///   appended since: a view other nodes can make stale. Messages another node appends
///   meanwhile are not in this node's count or index, and messages another node delivers
///   (removes) meanwhile still are. [`Store::evict`] forgets the view always (only this
///   node's appends not known durable are kept, and go after the database's listing at the
///   next open), so a server that evicts a mailbox before it counts it for a fetch (at each
///   registration) fetches what every node stored, in `seq` order. [`Limits`] are checked
///   against what this node knows, so concurrent appends on two nodes can pass them slightly
///   (and a stale view can refuse one the mailbox would take).
/// - A read is by key (recipient, sender, id), never by position: a message another node
///   removed since the view was learnt is [`Fetched::Gone`], not an error, and its index still
///   counts. A removal deletes the first `n` known messages by their keys: running it twice
///   removes nothing more, and messages other nodes appended meanwhile stay.
/// - Checkpoints have nothing to do; removals do not make other disk work
///   [`StoreError::Busy`] (only a second removal is refused while one is out).
/// - With a node ([`PgStore::owed_by`]), the channel messages owed ([`Store::note_owed`]) are
///   rows of `owed_channels` under that node, written by the sync that follows the note (the
///   one that holds the sender's ACK) and deleted by the one that follows the done. Node ids
///   are new at each start, so [`Store::owed`] is what this run noted: a previous run's rows
///   are taken over by the node that removes its dead node (see [`crate::Cluster`]). Without a
///   node they are kept in memory only.
/// - A failed statement is [`StoreError::Database`]; [`StoreError::is_no_space`] is false
///   for it, so [`Store::discard_failed_batch`] (which drops a failed batch from memory: a
///   failed transaction stored nothing) is not called by the server.
#[derive(Debug)]
pub struct PgStore {
    db: Db,
    limits: Limits,
    boxes: HashMap<Name, PgBox>,
    /// The mailboxes that hold messages not known durable.
    dirty: HashSet<Name>,
    /// A sync was handed out and not reported done ([`Store::sync_done`]).
    out: bool,
    /// Appended to since the last sync started.
    appended: bool,
    /// The removal out, if any: its mailbox and the keys it deletes.
    removing: Option<(Name, Vec<Key>)>,
    /// Counts evictions and finished removals: a scan made before one is stale.
    stamp: u64,
    /// The channel messages this run noted as owed to online members and not done.
    owed: Vec<OwedChannel>,
    /// The node whose rows of `owed_channels` the owed messages are (none: memory only).
    node: Option<i64>,
    /// Changes to those rows not handed to a sync yet: a record to write, or `None` to delete.
    owed_pending: HashMap<Key, Option<String>>,
    /// Those handed to a sync not known to have succeeded (written again by the next).
    owed_out: HashMap<Key, Option<String>>,
}

/// What this node knows of one mailbox.
#[derive(Debug, Default)]
struct PgBox {
    /// The mailbox was learnt from the database ([`Store::install`]); without, it holds only
    /// this node's appends that were not known durable when it was evicted, and is learnt
    /// again before any use but a sync.
    listed: bool,
    /// Each message's key, oldest first.
    order: VecDeque<Key>,
    entries: HashMap<Key, Entry>,
    /// The keys of the entries that may not be durable, oldest first (a key whose entry became
    /// durable or went is dropped at the next [`PgBox::prune`]), so that a sync and its end
    /// touch the batch, not the whole mailbox.
    unsettled: Vec<Key>,
    /// The sum of the entries' bytes.
    bytes: u64,
}

#[derive(Debug)]
struct Entry {
    /// What it counts against [`Limits::max_bytes`].
    bytes: u64,
    state: State,
}

/// Where a message stands; the body is held until it is known durable.
#[derive(Debug)]
enum State {
    /// Committed (or found in the database).
    Durable,
    /// Not handed to a sync yet.
    Pending(StoredMessage),
    /// Handed to a sync not known to have succeeded (the one out, or one that failed).
    Out(StoredMessage),
    /// As `Out`, and appended again since: the append waits for the next sync.
    OutAgain(StoredMessage),
}

impl State {
    fn body(&self) -> Option<&StoredMessage> {
        match self {
            Self::Durable => None,
            Self::Pending(msg) | Self::Out(msg) | Self::OutAgain(msg) => Some(msg),
        }
    }
}

impl PgBox {
    fn usage(&self) -> Usage {
        Usage { count: self.order.len(), bytes: self.bytes }
    }

    fn settled(&self) -> bool {
        self.unsettled.iter().all(|key| self.entries.get(key).is_none_or(|e| matches!(e.state, State::Durable)))
    }

    /// Forgets the keys of [`PgBox::unsettled`] whose entries are durable or gone.
    fn prune(&mut self) {
        let entries = &self.entries;
        self.unsettled.retain(|key| entries.get(key).is_some_and(|e| !matches!(e.state, State::Durable)));
    }

    /// Drops the entries not known durable that `drop` says to, and returns how many went.
    fn drop_where(&mut self, mut drop: impl FnMut(&Key, &mut State) -> bool) -> usize {
        let mut gone = HashSet::new();
        for key in &self.unsettled {
            let Some(entry) = self.entries.get_mut(key) else { continue };
            if drop(key, &mut entry.state) {
                gone.insert(key.clone());
            }
        }
        let n = self.forget(&gone);
        self.prune();
        n
    }

    /// Puts `entry` last.
    fn push(&mut self, key: Key, entry: Entry) {
        self.bytes += entry.bytes;
        self.order.push_back(key.clone());
        self.entries.insert(key, entry);
    }

    /// Forgets what the database holds (the entries known durable): only this node's appends
    /// not known durable stay, to be learnt again with the database's listing.
    fn forget_durable(&mut self) {
        let entries = &mut self.entries;
        entries.retain(|_, e| !matches!(e.state, State::Durable));
        self.order.retain(|key| entries.contains_key(key));
        self.bytes = entries.values().map(|e| e.bytes).sum();
        self.listed = false;
        self.prune();
    }

    fn forget(&mut self, keys: &HashSet<Key>) -> usize {
        let mut n = 0;
        for key in keys {
            if let Some(entry) = self.entries.remove(key) {
                self.bytes = self.bytes.saturating_sub(entry.bytes);
                n += 1;
            }
        }
        if n > 0 {
            self.order.retain(|key| !keys.contains(key));
            self.prune();
        }
        n
    }
}

/// The closure that turns a failed statement into [`StoreError::Database`].
fn failed(op: &'static str) -> impl FnOnce(QueryError) -> StoreError {
    move |e| StoreError::Database { op, source: Box::new(e) }
}

/// Runs `work` on the database thread, for a job: a stopped thread is a failed `op` too.
fn run<T, F, Fut>(db: &Db, op: &'static str, work: F) -> Result<T, StoreError>
where
    F: FnOnce(deadpool_postgres::Pool) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, QueryError>> + Send + 'static,
    T: Send + 'static,
{
    db.run(work).map_err(|e| StoreError::Database { op, source: Box::new(e) })?.map_err(failed(op))
}

impl PgStore {
    /// A store on `db` with these limits; it learns each mailbox at its first use.
    pub fn new(db: Db, limits: Limits) -> Self {
        Self {
            db,
            limits,
            boxes: HashMap::new(),
            dirty: HashSet::new(),
            out: false,
            appended: false,
            removing: None,
            stamp: 0,
            owed: Vec::new(),
            node: None,
            owed_pending: HashMap::new(),
            owed_out: HashMap::new(),
        }
    }

    /// The store of node `node` of a cluster: the channel messages it owes are durable rows of
    /// its own, which the node that removes it when it dies takes over.
    #[must_use]
    pub fn owed_by(mut self, node: chat_server::cluster::NodeId) -> Self {
        self.node = Some(i64::try_from(node).unwrap_or(i64::MAX));
        self
    }

    /// Notes a change to this node's owed rows for the next sync (`None`: delete the row).
    fn owed_change(&mut self, key: Key, record: Option<String>) {
        if self.node.is_some() {
            self.owed_pending.insert(key, record);
            self.appended = true;
        }
    }

    /// `to`'s mailbox if it was learnt from the database and not evicted since.
    fn known(&self, to: &Name) -> Option<&PgBox> {
        self.boxes.get(to).filter(|b| b.listed)
    }

    /// Learns `to`'s mailbox on this thread if the store does not know it.
    fn learn(&mut self, to: &Name) -> Result<&mut PgBox, StoreError> {
        if self.known(to).is_none() {
            let scan = self.open_job(to).run()?;
            self.install(to, scan);
        }
        Ok(self.boxes.entry(to.clone()).or_default())
    }

    /// Notes that `to`'s mailbox may now hold only durable messages.
    fn settle(&mut self, to: &Name) {
        if self.boxes.get(to).is_none_or(PgBox::settled) {
            self.dirty.remove(to);
        }
    }
}

impl Store for PgStore {
    fn append_once(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError> {
        let limits = self.limits;
        let b = self.learn(to)?;
        let key = (msg.from.clone(), msg.id);
        if let Some(entry) = b.entries.get_mut(&key) {
            match std::mem::replace(&mut entry.state, State::Durable) {
                State::Out(held) => entry.state = State::OutAgain(held),
                state => {
                    entry.state = state;
                    return Ok(Appended::Duplicate);
                }
            }
        } else {
            let bytes = offline_store::record_len(msg)
                .map_err(|e| StoreError::Database { op: "encode a message", source: Box::new(e) })?;
            limits.check(to, b.usage(), bytes)?;
            b.order.push_back(key.clone());
            b.unsettled.push(key.clone());
            b.entries.insert(key, Entry { bytes, state: State::Pending(msg.clone()) });
            b.bytes += bytes;
            self.dirty.insert(to.clone());
        }
        self.appended = true;
        Ok(Appended::Stored)
    }

    fn start_sync(&mut self) -> Result<Option<SyncJob>, StoreError> {
        if !std::mem::take(&mut self.appended) {
            return Ok(None);
        }
        // Everything not known durable goes, a failed sync's messages again (they may or may
        // not have been committed: the insert is idempotent), but not what a removal deletes.
        let removing: HashSet<&Key> = self.removing.iter().flat_map(|(_, keys)| keys).collect();
        let mut batch = Batch::default();
        for name in &self.dirty {
            let Some(b) = self.boxes.get_mut(name) else { continue };
            let is_removing = self.removing.as_ref().is_some_and(|(r, _)| r == name);
            for key in &b.unsettled {
                if is_removing && removing.contains(key) {
                    continue;
                }
                let Some(entry) = b.entries.get_mut(key) else { continue };
                let msg = match std::mem::replace(&mut entry.state, State::Durable) {
                    State::Durable => continue,
                    State::Pending(msg) | State::Out(msg) | State::OutAgain(msg) => msg,
                };
                let json = serde_json::to_string(&msg)
                    .map_err(|e| StoreError::Database { op: "encode a message", source: Box::new(e) });
                entry.state = State::Out(msg);
                batch.push(name, &key.0, key.1, json?);
            }
        }
        if let Some(node) = self.node {
            // The changes of a sync that failed go again, overwritten by any made since.
            self.owed_out.extend(self.owed_pending.drain());
            batch.owed.node = node;
            for ((from, id), record) in &self.owed_out {
                match record {
                    Some(json) => batch.owed.note(from, *id, json.clone()),
                    None => batch.owed.done(from, *id),
                }
            }
        }
        self.out = true;
        if batch.is_empty() {
            return Ok(Some(SyncJob::done()));
        }
        let (db, batch) = (self.db.clone(), Arc::new(batch));
        Ok(Some(SyncJob::deferred(move || {
            run(&db, "commit the stored messages", move |pool| async move { queries::insert(&pool, &batch).await })
        })))
    }

    fn sync_done(&mut self) {
        if !std::mem::take(&mut self.out) {
            return;
        }
        self.owed_out.clear();
        let names: Vec<Name> = self.dirty.iter().cloned().collect();
        for name in names {
            if let Some(b) = self.boxes.get_mut(&name) {
                for key in &b.unsettled {
                    if let Some(entry) = b.entries.get_mut(key)
                        && matches!(entry.state, State::Out(_) | State::OutAgain(_))
                    {
                        entry.state = State::Durable;
                    }
                }
                b.prune();
            }
            self.settle(&name);
        }
    }

    fn discard_failed_batch(&mut self) -> Discarded {
        // With a sync out, its batch (which holds the earlier failed ones'); without, every
        // append not known durable. Appends made while the sync ran stay.
        let out = std::mem::take(&mut self.out);
        if !out {
            self.appended = false;
        }
        let mut discarded = Discarded::default();
        let names: Vec<Name> = self.dirty.iter().cloned().collect();
        for name in names {
            let Some(b) = self.boxes.get_mut(&name) else { continue };
            let n = b.drop_where(|_, state| match std::mem::replace(state, State::Durable) {
                State::Durable => false,
                State::Out(_) => true,
                State::OutAgain(msg) | State::Pending(msg) if out => {
                    *state = State::Pending(msg);
                    false
                }
                State::OutAgain(_) | State::Pending(_) => true,
            });
            if n > 0 {
                discarded.mailboxes.push((name.clone(), n));
            }
            self.settle(&name);
        }
        discarded
    }

    fn holds_durable(&self, to: &Name, msg: &StoredMessage) -> bool {
        let key = (msg.from.clone(), msg.id);
        self.boxes.get(to).and_then(|b| b.entries.get(&key)).is_some_and(|e| matches!(e.state, State::Durable))
    }

    fn checkpoint_job(&mut self) -> Result<CheckpointJob, StoreError> {
        Ok(CheckpointJob::none())
    }

    fn finish_checkpoint(&mut self, result: Result<Checkpointed, StoreError>) -> Result<(), StoreError> {
        result.map(|_| ())
    }

    /// Every message this node knows in `to`'s mailbox, oldest first: the durable ones from the
    /// database in one query (one another node removed meanwhile is left out), the others from
    /// memory.
    fn load(&mut self, to: &Name) -> Result<Vec<StoredMessage>, StoreError> {
        self.learn(to)?;
        let recipient = to.clone();
        let stored =
            run(&self.db, "read a mailbox", move |pool| async move { queries::read_all(&pool, &recipient).await })?;
        let mut stored: HashMap<Key, StoredMessage> =
            stored.into_iter().map(|msg| ((msg.from.clone(), msg.id), msg)).collect();
        let Some(b) = self.boxes.get(to) else { return Ok(Vec::new()) };
        let message = |key: &Key| match b.entries.get(key).map(|e| e.state.body()) {
            Some(Some(msg)) => Some(msg.clone()),
            Some(None) => stored.remove(key),
            None => None,
        };
        Ok(b.order.iter().filter_map(message).collect())
    }

    fn open_job(&mut self, to: &Name) -> OpenJob {
        let stamp = self.stamp;
        if self.known(to).is_some() {
            return OpenJob::deferred(move || Ok(MailboxScan::listed(Vec::new(), stamp)));
        }
        let (db, to) = (self.db.clone(), to.clone());
        OpenJob::deferred(move || {
            let listed = run(&db, "learn a mailbox", move |pool| async move { queries::list(&pool, &to).await })?;
            Ok(MailboxScan::listed(listed, stamp))
        })
    }

    /// Takes the database's listing, in the order it received the messages (`seq`), then this
    /// node's appends it does not hold yet (kept through an eviction), in their order. One of
    /// those the listing holds keeps its state (a sync may still be out for it); one that became
    /// durable and is not listed (committed after the listing, or already delivered by another
    /// node) stays too, at the end: a read finds it or finds it [`Fetched::Gone`].
    fn install(&mut self, to: &Name, scan: MailboxScan) {
        if self.known(to).is_some() || scan.stamp() != self.stamp {
            return;
        }
        let PgBox { order: kept, mut entries, unsettled, .. } = self.boxes.remove(to).unwrap_or_default();
        let mut b = PgBox { listed: true, unsettled, ..PgBox::default() };
        for listed in scan.into_listed() {
            let key = (listed.from, listed.id);
            let entry = entries.remove(&key).unwrap_or(Entry { bytes: listed.bytes, state: State::Durable });
            b.push(key, entry);
        }
        for key in kept {
            if let Some(entry) = entries.remove(&key) {
                b.push(key, entry);
            }
        }
        b.prune();
        self.boxes.insert(to.clone(), b);
    }

    fn known_usage(&self, to: &Name) -> Option<Usage> {
        self.known(to).map(PgBox::usage)
    }

    fn id_at(&self, to: &Name, index: usize) -> Option<MsgId> {
        self.known(to)?.order.get(index).map(|(_, id)| *id)
    }

    fn read_job(&mut self, to: &Name, index: usize) -> Result<Option<ReadJob>, StoreError> {
        let db = self.db.clone();
        let b = self.learn(to)?;
        let Some(key) = b.order.get(index) else { return Ok(None) };
        if let Some(msg) = b.entries.get(key).and_then(|e| e.state.body()) {
            return Ok(Some(ReadJob::ready(msg.clone())));
        }
        let (to, (from, id)) = (to.clone(), key.clone());
        Ok(Some(ReadJob::deferred(move || {
            run(&db, "read a message", move |pool| async move {
                match queries::read(&pool, &to, &from, id).await {
                    Ok(msg) => Ok(Fetched::Message(msg)),
                    // Delivered by another node since this one learnt the mailbox.
                    Err(QueryError::Gone) => Ok(Fetched::Gone(id)),
                    Err(e) => Err(e),
                }
            })
        })))
    }

    fn remove_first_job(&mut self, to: &Name, n: usize) -> Result<RemoveJob, StoreError> {
        if self.removing.is_some() {
            return Err(StoreError::Busy);
        }
        let b = self.learn(to)?;
        let keys: Vec<Key> = b.order.iter().take(n).cloned().collect();
        self.removing = Some((to.clone(), keys.clone()));
        let (db, to) = (self.db.clone(), to.clone());
        Ok(RemoveJob::deferred(move || {
            let n = keys.len();
            if n > 0 {
                run(
                    &db,
                    "remove delivered messages",
                    move |pool| async move { queries::delete(&pool, &to, &keys).await },
                )?;
            }
            Ok(Removed::count(n))
        }))
    }

    fn finish_remove(&mut self, to: &Name, result: Result<Removed, StoreError>) -> Result<(), StoreError> {
        let keys = match self.removing.take() {
            Some((name, keys)) if name == *to => keys,
            other => {
                self.removing = other;
                return result.map(drop);
            }
        };
        self.stamp += 1;
        match result {
            Ok(_) => {
                if let Some(b) = self.boxes.get_mut(to) {
                    b.forget(&keys.into_iter().collect());
                }
                self.settle(to);
                Ok(())
            }
            Err(e) => {
                // Either as it was or as asked: learn it again, unless it holds appends.
                if self.boxes.get(to).is_some_and(PgBox::settled) {
                    self.boxes.remove(to);
                } else {
                    self.appended = true; // what the removal held back from a sync
                }
                Err(e)
            }
        }
    }

    fn note_owed(&mut self, owed: &OwedChannel) -> Result<(), StoreError> {
        let json = serde_json::to_string(owed)
            .map_err(|e| StoreError::Database { op: "encode an owed channel message", source: Box::new(e) })?;
        self.owed.retain(|o| o.msg.from != owed.msg.from || o.msg.id != owed.msg.id);
        self.owed.push(owed.clone());
        self.owed_change((owed.msg.from.clone(), owed.msg.id), Some(json));
        Ok(())
    }

    /// Also deletes a row this node took over, or wrote as it read a message of another node
    /// (see [`crate::Cluster`]), though this run did not note it.
    fn owed_done(&mut self, from: &Name, id: MsgId) {
        self.owed.retain(|o| &o.msg.from != from || o.msg.id != id);
        self.owed_change((from.clone(), id), None);
    }

    fn owed(&self) -> Vec<OwedChannel> {
        self.owed.clone()
    }

    /// Forgets what the database holds of `to`'s mailbox (another node may change it): the
    /// next use learns it again. This node's appends not known durable are kept, to go after
    /// the database's listing then. Nothing is forgotten while a removal from it is out.
    fn evict(&mut self, to: &Name) {
        if self.removing.as_ref().is_some_and(|(name, _)| name == to) {
            return;
        }
        let dirty = self.dirty.contains(to);
        let Some(b) = self.boxes.get_mut(to) else { return };
        if dirty {
            b.forget_durable();
        } else {
            self.boxes.remove(to);
        }
        self.stamp += 1;
    }
}

/// Keeps [`queries::RECORD_OVERHEAD`] honest: a message's bytes are the same in every store.
#[cfg(test)]
mod tests {
    use chat_proto::{MsgId, Name, Origin, StoredMessage, Text};

    use crate::queries::RECORD_OVERHEAD;

    #[test]
    fn bytes_count_as_in_a_file_store() {
        let msg = StoredMessage {
            id: MsgId(7),
            from: Name::new("alice").expect("valid name"),
            origin: Origin::Direct,
            at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid time"),
            body: Text::new("λ \"hi\"").expect("valid text").into(),
        };
        let json = serde_json::to_string(&msg).expect("encodes");
        assert_eq!(offline_store::record_len(&msg).expect("encodes"), json.len() as u64 + RECORD_OVERHEAD);
    }
}
