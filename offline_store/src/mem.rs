//! [`MemStore`]: the [`Store`] semantics, limits included, without files, for unit tests.
//!
//! This module must not touch the file system.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use chat_proto::{MsgId, Name, StoredMessage};

use crate::{
    Appended, CheckpointJob, Checkpointed, Limits, MailboxScan, OpenJob, ReadJob, RemoveJob, Removed, Store,
    StoreError, SyncJob, Usage, file_name, record,
};

/// Mailboxes held in memory; a sync has nothing to wait for (but after appends its job is still
/// handed out, so that callers go through the same steps as with files). Usage bytes are those the records
/// would take in a [`crate::FileStore`].
#[derive(Debug, Default)]
pub struct MemStore {
    limits: Limits,
    /// Each mailbox's messages with the length of their record line.
    boxes: HashMap<Name, VecDeque<(StoredMessage, u64)>>,
    /// Appended to since the last sync started.
    appended: bool,
}

impl MemStore {
    /// An empty store with these limits.
    pub fn new(limits: Limits) -> Self {
        Self { limits, boxes: HashMap::new(), appended: false }
    }

    fn usage_of(&self, to: &Name) -> Usage {
        self.boxes
            .get(to)
            .map_or_else(Usage::default, |b| Usage { count: b.len(), bytes: b.iter().map(|(_, len)| len).sum() })
    }
}

impl Store for MemStore {
    fn append_once(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError> {
        if self.boxes.get(to).is_some_and(|b| b.iter().any(|(m, _)| m.id == msg.id)) {
            return Ok(Appended::Duplicate);
        }
        let len = record::encode(msg)
            .map_err(|e| StoreError::io("encode", PathBuf::from(file_name(to)))(e.into()))?
            .len() as u64;
        self.limits.check(to, self.usage_of(to), len)?;
        self.boxes.entry(to.clone()).or_default().push_back((msg.clone(), len));
        self.appended = true;
        Ok(Appended::Stored)
    }

    fn start_sync(&mut self) -> Result<Option<SyncJob>, StoreError> {
        Ok(std::mem::take(&mut self.appended).then(SyncJob::done))
    }

    fn load(&mut self, to: &Name) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(self.boxes.get(to).map(|b| b.iter().map(|(m, _)| m.clone()).collect()).unwrap_or_default())
    }

    fn open_job(&mut self, _to: &Name) -> OpenJob {
        OpenJob { path: None, stamp: 0 }
    }

    fn install(&mut self, _to: &Name, _scan: MailboxScan) {}

    fn known_usage(&self, to: &Name) -> Option<Usage> {
        Some(self.usage_of(to))
    }

    fn id_at(&self, to: &Name, index: usize) -> Option<MsgId> {
        self.boxes.get(to)?.get(index).map(|(m, _)| m.id)
    }

    fn read_job(&mut self, to: &Name, index: usize) -> Result<Option<ReadJob>, StoreError> {
        Ok(self.boxes.get(to).and_then(|b| b.get(index)).map(|(m, _)| ReadJob::ready(m.clone())))
    }

    fn remove_first_job(&mut self, to: &Name, n: usize) -> Result<RemoveJob, StoreError> {
        // Only what is there now: appends made while the job is out stay.
        Ok(RemoveJob { n: n.min(self.usage_of(to).count), plan: None })
    }

    fn finish_remove(&mut self, to: &Name, result: Result<Removed, StoreError>) -> Result<(), StoreError> {
        let n = result?.n;
        if let Some(b) = self.boxes.get_mut(to) {
            b.drain(..n.min(b.len()));
            if b.is_empty() {
                self.boxes.remove(to);
            }
        }
        Ok(())
    }

    fn evict(&mut self, _to: &Name) {}

    fn checkpoint_job(&mut self) -> Result<CheckpointJob, StoreError> {
        Ok(CheckpointJob { plan: None })
    }

    fn finish_checkpoint(&mut self, result: Result<Checkpointed, StoreError>) -> Result<(), StoreError> {
        result.map(|_| ())
    }
}
