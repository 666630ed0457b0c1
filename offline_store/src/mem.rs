//! [`MemStore`]: the [`Store`] semantics, limits included, without files, for unit tests.
//!
//! This module must not touch the file system.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;

use chat_proto::{MsgId, Name, StoredMessage};

use crate::{
    Appended, CheckpointJob, Checkpointed, Discarded, Limits, MailboxScan, OpenJob, OwedChannel, ReadJob, RemoveJob,
    Removed, Store, StoreError, SyncJob, Usage, durable::Durability, file_name, record,
};

/// Mailboxes held in memory; a sync has nothing to wait for (but after appends its job is still
/// handed out, so that callers go through the same steps as with files). Usage bytes are those the records
/// would take in a [`crate::FileStore`]. Like a file store, it stores a message again rather
/// than call it a duplicate of a copy handed to a sync not known to have succeeded (a sync is
/// known to have succeeded once [`Store::sync_done`] is called).
#[derive(Debug, Default)]
pub struct MemStore {
    limits: Limits,
    /// Each mailbox's messages with the length of their record line.
    boxes: HashMap<Name, MemBox>,
    /// Mailboxes appended to since the last sync started.
    unhanded: HashSet<Name>,
    /// What the sync handed out covers (the records `from..to` of each mailbox; the first `to`
    /// are durable once it succeeds), until it is known to have succeeded.
    sync_out: Option<Vec<(Name, usize, usize)>>,
    /// What the syncs that failed since the last one that succeeded covered, as `sync_out`:
    /// dropped with the next discarded batch (their records known durable excepted).
    lost: Vec<(Name, usize, usize)>,
    /// Appended to since the last sync started.
    appended: bool,
    /// The channel messages owed (kept as if durable at once: a test's "restart" is a new
    /// server over the same store).
    owed: Vec<OwedChannel>,
}

/// One mailbox in memory.
#[derive(Debug, Default)]
struct MemBox {
    msgs: VecDeque<(StoredMessage, u64)>,
    durability: Durability,
}

impl MemBox {
    /// Whether a message from the same sender with the same id is stored where a duplicate may
    /// rest on it.
    fn holds(&self, msg: &StoredMessage) -> bool {
        let len = self.msgs.len();
        let copy = |(index, (m, _)): (usize, &(StoredMessage, u64))| {
            m.id == msg.id && m.from == msg.from && self.durability.settles(index, len)
        };
        self.msgs.iter().enumerate().any(copy)
    }
}

impl MemStore {
    /// An empty store with these limits.
    pub fn new(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    fn usage_of(&self, to: &Name) -> Usage {
        self.boxes.get(to).map_or_else(Usage::default, |b| Usage {
            count: b.msgs.len(),
            bytes: b.msgs.iter().map(|(_, len)| len).sum(),
        })
    }
}

impl Store for MemStore {
    fn append_once(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError> {
        if self.boxes.get(to).is_some_and(|b| b.holds(msg)) {
            return Ok(Appended::Duplicate);
        }
        let len = record::encode(msg)
            .map_err(|e| StoreError::io("encode", PathBuf::from(file_name(to)))(e.into()))?
            .len() as u64;
        self.limits.check(to, self.usage_of(to), len)?;
        let b = self.boxes.entry(to.clone()).or_default();
        b.msgs.push_back((msg.clone(), len));
        b.durability.pushed();
        self.unhanded.insert(to.clone());
        self.appended = true;
        Ok(Appended::Stored)
    }

    fn start_sync(&mut self) -> Result<Option<SyncJob>, StoreError> {
        for (name, from, to) in self.sync_out.take().unwrap_or_default() {
            if let Some(b) = self.boxes.get_mut(&name) {
                b.durability.failed();
            }
            self.lost.push((name, from, to));
        }
        if !std::mem::take(&mut self.appended) {
            return Ok(None);
        }
        let mut covers = Vec::new();
        for name in self.unhanded.drain() {
            if let Some(b) = self.boxes.get_mut(&name) {
                let to = b.msgs.len();
                let from = to - b.durability.unhanded().min(to);
                covers.push((name, from, b.durability.handed(to)));
            }
        }
        self.sync_out = Some(covers);
        Ok(Some(SyncJob::done()))
    }

    fn sync_done(&mut self) {
        // Acknowledged records may follow the lost ones now: those stay.
        self.lost.clear();
        for (name, _, n) in self.sync_out.take().unwrap_or_default() {
            if let Some(b) = self.boxes.get_mut(&name) {
                b.durability.covered(n);
            }
        }
    }

    fn discard_failed_batch(&mut self) -> Discarded {
        let batch = match self.sync_out.take() {
            Some(handed) => handed,
            None => {
                self.appended = false;
                let names: Vec<Name> = self.unhanded.drain().collect();
                names
                    .into_iter()
                    .filter_map(|name| {
                        let to = self.boxes.get(&name)?.msgs.len();
                        let from = to - self.boxes.get(&name)?.durability.unhanded().min(to);
                        Some((name, from, to))
                    })
                    .collect()
            }
        };
        // One range per mailbox: a lost sync's records come just before the next one's.
        let mut merged: Vec<(Name, usize, usize)> = Vec::with_capacity(batch.len() + self.lost.len());
        for (name, from, to) in batch.into_iter().chain(self.lost.drain(..)) {
            match merged.iter_mut().find(|(n, ..)| *n == name) {
                Some((_, f, t)) => (*f, *t) = ((*f).min(from), (*t).max(to)),
                None => merged.push((name, from, to)),
            }
        }
        let mut discarded = Discarded::default();
        for (name, from, to) in merged {
            let Some(b) = self.boxes.get_mut(&name) else { continue };
            let len = b.msgs.len();
            let (from, to) = (from.max(b.durability.durable()), to.min(len));
            if from >= to {
                continue;
            }
            b.msgs.drain(from..to);
            b.durability.discarded(from, to, len);
            if b.msgs.is_empty() {
                self.boxes.remove(&name);
            }
            discarded.mailboxes.push((name, to - from));
        }
        discarded
    }

    fn holds_durable(&self, to: &Name, msg: &StoredMessage) -> bool {
        self.boxes.get(to).is_some_and(|b| {
            b.msgs
                .iter()
                .enumerate()
                .any(|(i, (m, _))| m.id == msg.id && m.from == msg.from && b.durability.is_durable(i))
        })
    }

    fn load(&mut self, to: &Name) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(self.boxes.get(to).map(|b| b.msgs.iter().map(|(m, _)| m.clone()).collect()).unwrap_or_default())
    }

    fn open_job(&mut self, _to: &Name) -> OpenJob {
        OpenJob { path: None, stamp: 0, deferred: None }
    }

    fn install(&mut self, _to: &Name, _scan: MailboxScan) {}

    fn known_usage(&self, to: &Name) -> Option<Usage> {
        Some(self.usage_of(to))
    }

    fn id_at(&self, to: &Name, index: usize) -> Option<MsgId> {
        self.boxes.get(to)?.msgs.get(index).map(|(m, _)| m.id)
    }

    fn read_job(&mut self, to: &Name, index: usize) -> Result<Option<ReadJob>, StoreError> {
        Ok(self.boxes.get(to).and_then(|b| b.msgs.get(index)).map(|(m, _)| ReadJob::ready(m.clone())))
    }

    fn remove_first_job(&mut self, to: &Name, n: usize) -> Result<RemoveJob, StoreError> {
        // Only what is there now: appends made while the job is out stay.
        Ok(RemoveJob { n: n.min(self.usage_of(to).count), plan: None, deferred: None })
    }

    fn finish_remove(&mut self, to: &Name, result: Result<Removed, StoreError>) -> Result<(), StoreError> {
        let n = result?.n;
        if let Some(b) = self.boxes.get_mut(to) {
            let n = n.min(b.msgs.len());
            b.msgs.drain(..n);
            b.durability.removed_front(n);
            let covers = self.sync_out.iter_mut().flatten().chain(&mut self.lost);
            for (_, from, covers) in covers.filter(|(name, ..)| name == to) {
                *from = from.saturating_sub(n);
                *covers = covers.saturating_sub(n);
            }
            if b.msgs.is_empty() {
                self.boxes.remove(to);
            }
        }
        Ok(())
    }

    fn evict(&mut self, _to: &Name) {}

    fn note_owed(&mut self, owed: &OwedChannel) -> Result<(), StoreError> {
        self.owed.retain(|o| o.msg.from != owed.msg.from || o.msg.id != owed.msg.id);
        self.owed.push(owed.clone());
        Ok(())
    }

    fn owed_done(&mut self, from: &Name, id: MsgId) {
        self.owed.retain(|o| &o.msg.from != from || o.msg.id != id);
    }

    fn owed(&self) -> Vec<OwedChannel> {
        self.owed.clone()
    }

    fn checkpoint_job(&mut self) -> Result<CheckpointJob, StoreError> {
        Ok(CheckpointJob { plan: None })
    }

    fn finish_checkpoint(&mut self, result: Result<Checkpointed, StoreError>) -> Result<(), StoreError> {
        result.map(|_| ())
    }
}
