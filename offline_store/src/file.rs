//! [`FileStore`]: mailboxes as append-only files in one directory, with group commit through
//! a journal (see `journal.rs`): a sync is one `fdatasync` of the journal, whatever the number
//! of mailboxes written; the mailboxes are synced at checkpoints.
//!
//! This module owns the files: opening, appending, syncing, rewriting and removing them, and
//! the in-memory index of each mailbox (usage, each record's message id, sender-and-id key and
//! offset: 24 bytes a message, and how much of it is known durable, see `durable.rs`). It must
//! not hold whole mailboxes in memory, nor keep more than [`OPEN_HANDLES`] file handles open.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chat_proto::{MsgId, Name, StoredMessage};

use crate::jobs::{CheckpointPlan, RemovePlan};
use crate::journal::Journal;
use crate::mailbox::{self, Mailbox, Record};
use crate::owed::{self, Owed, OwedChannel};
use crate::record;
use crate::{
    Appended, CheckpointJob, Checkpointed, Discarded, Limits, MailboxScan, OpenJob, ReadJob, RemoveJob, Removed, Store,
    StoreError, SyncJob, Usage, file_name,
};

/// At most this many mailbox files stay open between syncs (the busiest ones are reopened less).
pub(crate) const OPEN_HANDLES: usize = 64;

/// Mailboxes stored as one `<file_name>.mbox` file per recipient in a directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    limits: Limits,
    /// The index of each mailbox known: filled by its first scan (or an installed
    /// [`OpenJob`]), kept exact after, dropped by [`Store::evict`].
    boxes: HashMap<Name, Mailbox>,
    /// Open handles of mailboxes appended to lately (at most [`OPEN_HANDLES`]).
    dirty: HashMap<Name, File>,
    /// Records appended since the last sync, per mailbox: written out with one `write` each
    /// when the next sync (or removal job) starts; read from here until then.
    unwritten: HashMap<Name, Vec<u8>>,
    /// Mailboxes written since the last checkpoint: synced at the next one.
    unsynced: HashSet<Name>,
    /// Mailboxes appended to since the journal was last written: their new records are handed
    /// to the next sync.
    unhanded: HashSet<Name>,
    /// What the sync handed out by [`Store::start_sync`] covers, until it is known to have
    /// succeeded ([`Store::sync_done`]): for each mailbox, its first records. A sync started
    /// while one is still here means that one failed.
    sync_out: Option<Covers>,
    /// What the syncs that failed since the last one that succeeded covered (their requests
    /// were not acknowledged, their records are not durable): dropped with the next discarded
    /// batch, so that a retransmission refused then is not delivered from an older copy.
    /// Records made durable since (a checkpoint, a rescan) are not dropped.
    lost: Covers,
    /// A mailbox file was created since the last checkpoint: the directory needs a sync too.
    dir_dirty: bool,
    journal: Journal,
    /// The channel messages still owed to online members.
    owed: Owed,
    /// The checkpoint or removal out, if any: until it is finished nothing writes the files.
    out: Option<Maintenance>,
    /// How many mailboxes [`Store::evict`] has dropped: a scan begun before one may be stale.
    evictions: u64,
    /// A failed batch was discarded: mailbox files were cut back, which a checkpoint makes
    /// durable.
    discarded: bool,
}

/// What a sync covers: for each mailbox, the records it handed.
type Covers = Vec<Handed>;

/// The records of one mailbox handed to a sync: `from..to` (the first `to` are durable once it
/// succeeds), the first of them at byte `at` of the file.
#[derive(Debug)]
struct Handed {
    name: Name,
    from: usize,
    to: usize,
    at: u64,
}

/// A [`CheckpointJob`] or [`RemoveJob`] handed out and not finished yet.
#[derive(Debug)]
struct Maintenance {
    /// The mailbox a removal removes from; `None` for a checkpoint.
    removing: Option<Name>,
    /// The mailboxes its checkpoint syncs: no longer unsynced once it has run, unless appended
    /// to meanwhile.
    synced: Vec<Name>,
}

impl FileStore {
    /// Opens the store in `dir`, creating the directory (and its parents) if missing, and
    /// replaying its journal if the last run did not end with a checkpoint.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory cannot be created or the journal replayed.
    pub fn open(dir: impl Into<PathBuf>, limits: Limits) -> Result<Self, StoreError> {
        let dir = dir.into();
        chat_core::private::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        let mut owed = Owed::load(&dir)?;
        let journal = Journal::open(&dir, &mut owed)?;
        Ok(Self {
            dir,
            limits,
            boxes: HashMap::new(),
            dirty: HashMap::new(),
            unwritten: HashMap::new(),
            unsynced: HashSet::new(),
            unhanded: HashSet::new(),
            sync_out: None,
            lost: Vec::new(),
            dir_dirty: false,
            journal,
            owed,
            out: None,
            evictions: 0,
            discarded: false,
        })
    }

    /// The directory holding the mailboxes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `name`'s mailbox file (which may not exist): always directly in [`Self::dir`].
    pub fn mailbox_path(&self, name: &Name) -> PathBuf {
        self.dir.join(format!("{}.mbox", file_name(name)))
    }

    /// How many of `name`'s first records are known durable (`None` if the mailbox is not known).
    #[cfg(test)]
    pub(crate) fn durable_count(&self, name: &Name) -> Option<usize> {
        self.boxes.get(name).map(|mb| mb.durability.durable())
    }

    /// How many file handles are open (those of files appended to since the last sync).
    #[cfg(test)]
    pub(crate) fn open_handles(&self) -> usize {
        self.dirty.len()
    }

    /// Writes out the records appended to `name`'s mailbox since the last sync. If that fails
    /// they stay in memory for the next try: none of them is acknowledged before a sync that
    /// wrote them out.
    fn write_out(&mut self, name: &Name) -> Result<(), StoreError> {
        let Some(bytes) = self.unwritten.remove(name) else { return Ok(()) };
        let written = self.write_records(name, &bytes);
        if written.is_err() {
            self.unwritten.insert(name.clone(), bytes);
        }
        written
    }

    fn write_records(&mut self, name: &Name, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.mailbox_path(name);
        let mb = mailbox::cached(&mut self.boxes, name, &path)?;
        let file = match self.dirty.entry(name.clone()) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => {
                // Opened once per sync, a torn tail cut off first.
                let file = chat_core::private::file_options()
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(StoreError::io("open", &path))?;
                if let Some(end) = mb.torn_at {
                    file.set_len(end).map_err(StoreError::io("truncate", &path))?;
                    mb.torn_at = None;
                }
                if !mb.exists {
                    self.dir_dirty = true;
                    mb.exists = true;
                }
                slot.insert(file)
            }
        };
        let before = file.metadata().map_err(StoreError::io("stat", &path))?.len();
        let written = file.write_all(bytes).map_err(StoreError::io("write", &path));
        if written.is_err() {
            // The file may now end in part of a record: cut it back before the next write.
            mb.torn_at = Some(before);
            self.dirty.remove(name);
        } else {
            mb.written_at(before, bytes.len() as u64);
        }
        written
    }

    /// Refuses disk writes while a checkpoint or removal is out.
    fn not_busy(&self) -> Result<(), StoreError> {
        match self.out {
            Some(_) => Err(StoreError::Busy),
            None => Ok(()),
        }
    }

    /// Writes out every mailbox's appends and the journal's lines (to the page cache).
    fn write_all_out(&mut self) -> Result<(), StoreError> {
        let names: Vec<Name> = self.unwritten.keys().cloned().collect();
        for name in &names {
            self.write_out(name)?;
        }
        if self.dirty.len() > OPEN_HANDLES {
            self.dirty.clear();
        }
        Ok(())
    }

    /// Writes the journal (after every mailbox's appends), and notes that the records appended so
    /// far are handed to the sync it returns. Returns that sync with what it covers.
    fn write_journal(&mut self) -> Result<(Option<SyncJob>, Covers), StoreError> {
        let job = self.journal.write()?;
        let mut covers = Vec::with_capacity(self.unhanded.len());
        for name in self.unhanded.drain() {
            if let Some(mb) = self.boxes.get_mut(&name) {
                let to = mb.records().len();
                let from = to - mb.durability.unhanded().min(to);
                let at = mb.records().get(from).map_or(mb.written, |r| r.at.min(mb.written));
                mb.durability.handed(to);
                covers.push(Handed { name, from, to, at });
            }
        }
        Ok((job, covers))
    }

    /// `batch` with the ranges of the lost syncs ([`FileStore::lost`]) merged in: one range per
    /// mailbox (a lost sync's records come just before the next one's), its records known
    /// durable left out.
    fn with_lost(&mut self, batch: Covers) -> Covers {
        let mut merged: Covers = Vec::with_capacity(batch.len() + self.lost.len());
        for h in batch.into_iter().chain(self.lost.drain(..)) {
            match merged.iter_mut().find(|m| m.name == h.name) {
                Some(m) => {
                    m.from = m.from.min(h.from);
                    m.to = m.to.max(h.to);
                    m.at = m.at.min(h.at);
                }
                None => merged.push(h),
            }
        }
        for h in &mut merged {
            if let Some(mb) = self.boxes.get(&h.name) {
                let durable = mb.durability.durable();
                if durable > h.from {
                    h.from = durable;
                    h.at = mb.records().get(durable).map_or(mb.written, |r| r.at.min(mb.written));
                }
            }
        }
        merged
    }

    /// The messages of `to` not written out yet, oldest first.
    fn pending(&self, to: &Name) -> Vec<StoredMessage> {
        let bytes = self.unwritten.get(to).map_or(&[][..], Vec::as_slice);
        bytes.split_inclusive(|b| *b == b'\n').filter_map(|line| record::decode(line).ok()).collect()
    }

    /// Puts `kept` (the file as a removal left it, or a fresh scan) in place of `name`'s state,
    /// with the appends not written out yet after it.
    fn replace(&mut self, name: &Name, mut kept: Mailbox) {
        if let Some(old) = self.boxes.get(name) {
            let pending = self.unwritten.get(name).map_or(0, |b| b.len() as u64);
            let tail = old.records().iter().filter(|r| r.at >= old.written);
            let tail: Vec<Record> = tail.map(|r| Record { at: r.at - old.written + kept.written, ..*r }).collect();
            // Appended while the file was rewritten: none of them was handed to a sync yet.
            kept.durability.then_unhanded(tail.len());
            kept.usage.count += tail.len();
            kept.usage.bytes += pending;
            for r in tail {
                kept.note(r);
            }
        }
        self.boxes.insert(name.clone(), kept);
    }

    /// What the store knows once the checkpoint of a finished job has run.
    fn checkpointed(&mut self, synced: Vec<Name>) {
        self.discarded = false;
        for name in synced {
            if let Some(mb) = self.boxes.get_mut(&name) {
                let written = mb.written_count();
                mb.durability.file_synced(written);
            }
            if !self.unwritten.contains_key(&name) {
                self.unsynced.remove(&name);
            }
        }
        self.journal.emptied();
        self.dir_dirty = false;
    }

    /// The checkpoint part of a job: the mailboxes to sync, as names and as paths.
    fn checkpoint_plan(&mut self) -> Result<(Vec<Name>, CheckpointPlan), StoreError> {
        let journal = self.journal.handle()?;
        let synced: Vec<Name> = self.unsynced.iter().cloned().collect();
        let sync = synced.iter().map(|name| self.mailbox_path(name)).collect();
        let owed = self.owed.checkpoint(&self.dir).map(Box::new);
        Ok((synced, CheckpointPlan { sync, dir: self.dir.clone(), journal, owed }))
    }
}

impl Store for FileStore {
    fn append_once(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError> {
        let line = record::encode(msg).map_err(|e| StoreError::io("encode", self.mailbox_path(to))(e.into()))?;
        let path = self.mailbox_path(to);
        let pending = self.unwritten.get(to).map_or(0, |bytes| bytes.len() as u64);
        let mb = mailbox::cached(&mut self.boxes, to, &path)?;
        if mb.holds(msg) {
            return Ok(Appended::Duplicate);
        }
        self.limits.check(to, mb.usage, line.len() as u64)?;
        mb.push(msg, line.len() as u64, pending);
        self.journal.note(&file_name(to), &line);
        self.unhanded.insert(to.clone());
        match self.unwritten.get_mut(to) {
            Some(bytes) => bytes.extend_from_slice(&line),
            None => {
                self.unwritten.insert(to.clone(), line);
                self.unsynced.insert(to.clone());
            }
        }
        Ok(Appended::Stored)
    }

    fn start_sync(&mut self) -> Result<Option<SyncJob>, StoreError> {
        self.not_busy()?;
        self.owed.sync_started(self.sync_out.is_some());
        if let Some(lost) = self.sync_out.take() {
            // Never known to have succeeded: what it covered is durable only once the mailbox
            // file is synced (a later sync of the journal may succeed without it).
            for handed in lost {
                if let Some(mb) = self.boxes.get_mut(&handed.name) {
                    mb.durability.failed();
                }
                self.lost.push(handed);
            }
        }
        // The mailbox writes go to the page cache; the journal makes them durable.
        self.write_all_out()?;
        let (job, covers) = self.write_journal()?;
        if job.is_some() {
            self.sync_out = Some(covers);
        }
        Ok(job)
    }

    fn sync_done(&mut self) {
        self.journal.synced();
        self.owed.synced();
        // Acknowledged records may follow the lost ones now: those stay (and get delivered).
        self.lost.clear();
        for Handed { name, to, .. } in self.sync_out.take().unwrap_or_default() {
            if let Some(mb) = self.boxes.get_mut(&name) {
                mb.durability.covered(to);
            }
        }
    }

    fn discard_failed_batch(&mut self) -> Discarded {
        let (batch, journalled) = match self.sync_out.take() {
            // The sync's job failed: its batch is what it covered; appends since stay.
            Some(handed) => (handed, true),
            // The sync failed as it started: its batch is every append not handed to a sync.
            None => {
                let names: Vec<Name> = self.unhanded.drain().collect();
                let batch = names
                    .into_iter()
                    .filter_map(|name| {
                        let mb = self.boxes.get(&name)?;
                        let to = mb.records().len();
                        let from = to - mb.durability.unhanded().min(to);
                        Some(Handed { name, from, to, at: mb.written })
                    })
                    .collect();
                (batch, false)
            }
        };
        let batch = self.with_lost(batch);
        let mut discarded = Discarded::default();
        for Handed { name, from, to, at } in batch {
            let path = self.mailbox_path(&name);
            let cut = match self.boxes.get_mut(&name) {
                Some(mb) => {
                    let mut bytes = self.unwritten.remove(&name).unwrap_or_default();
                    let before = mb.usage.count;
                    let cut = mb.discard(from, to, &mut bytes);
                    if before > mb.usage.count {
                        discarded.mailboxes.push((name.clone(), before - mb.usage.count));
                    }
                    if !bytes.is_empty() {
                        self.unwritten.insert(name.clone(), bytes);
                    }
                    cut
                }
                // Evicted while its sync ran (nothing was appended since): the next use learns
                // the file as cut, and a scan begun before the cut is not installed.
                None => {
                    self.evictions += 1;
                    if from < to {
                        discarded.mailboxes.push((name.clone(), to - from));
                    }
                    (from < to).then_some(at)
                }
            };
            let Some(cut) = cut else { continue };
            self.discarded = true;
            self.unsynced.insert(name);
            let truncated = OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(cut));
            match truncated {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    discarded.error.get_or_insert(StoreError::io("truncate", &path)(e));
                }
                _ => {}
            }
        }
        // The lines written for the lost syncs go too (a replay would bring their records back).
        let pending = if journalled { Ok(()) } else { self.journal.discard_pending() };
        if let Err(e) = pending.and_then(|()| self.journal.discard_written()) {
            discarded.error.get_or_insert(e);
        }
        discarded
    }

    fn holds_durable(&self, to: &Name, msg: &StoredMessage) -> bool {
        self.boxes.get(to).is_some_and(|mb| mb.holds_durable(msg))
    }

    fn checkpoint_due(&self) -> bool {
        self.discarded || self.journal.checkpoint_due()
    }

    fn checkpoint_job(&mut self) -> Result<CheckpointJob, StoreError> {
        self.not_busy()?;
        let (synced, plan) = self.checkpoint_plan()?;
        self.out = Some(Maintenance { removing: None, synced });
        Ok(CheckpointJob { plan: Some(plan) })
    }

    fn finish_checkpoint(&mut self, result: Result<Checkpointed, StoreError>) -> Result<(), StoreError> {
        let Some(out) = self.out.take_if(|out| out.removing.is_none()) else { return result.map(|_| ()) };
        if result.is_err() {
            self.owed.checkpoint_failed();
        }
        if result?.done {
            self.checkpointed(out.synced);
        }
        Ok(())
    }

    fn load(&mut self, to: &Name) -> Result<Vec<StoredMessage>, StoreError> {
        if self.out.as_ref().is_some_and(|out| out.removing.as_ref() == Some(to)) {
            return Err(StoreError::Busy);
        }
        let path = self.mailbox_path(to);
        let mut out = Vec::new();
        let scanned = mailbox::scan(&path, |msg| out.push(msg))?;
        if let Some(mb) = self.boxes.get(to) {
            // Past `written` the file may end in records whose write failed: they are pending.
            out.truncate(mb.written_count());
            out.extend(self.pending(to));
        } else {
            self.boxes.insert(to.clone(), scanned);
        }
        Ok(out)
    }

    fn open_job(&mut self, to: &Name) -> OpenJob {
        OpenJob {
            path: (!self.boxes.contains_key(to)).then(|| self.mailbox_path(to)),
            stamp: self.evictions,
            deferred: None,
        }
    }

    fn install(&mut self, to: &Name, scan: MailboxScan) {
        // A mailbox not known has not been written since the scan began, unless it was known
        // and evicted meanwhile: then the scan may miss records, and the next use scans again.
        if let Some(mb) = scan.mailbox.filter(|_| scan.stamp == self.evictions) {
            self.boxes.entry(to.clone()).or_insert(mb);
        }
    }

    fn known_usage(&self, to: &Name) -> Option<Usage> {
        self.boxes.get(to).map(|mb| mb.usage)
    }

    fn id_at(&self, to: &Name, index: usize) -> Option<MsgId> {
        self.boxes.get(to)?.records().get(index).map(|r| r.id)
    }

    fn read_job(&mut self, to: &Name, index: usize) -> Result<Option<ReadJob>, StoreError> {
        let path = self.mailbox_path(to);
        let removing = self.out.as_ref().is_some_and(|out| out.removing.as_ref() == Some(to));
        let mb = mailbox::cached(&mut self.boxes, to, &path)?;
        let Some(&Record { id, at: offset, .. }) = mb.records().get(index) else { return Ok(None) };
        if offset < mb.written {
            if removing {
                // The file is being replaced: where the record will be is known once it is.
                return Err(StoreError::Busy);
            }
            return Ok(Some(ReadJob::at(path, offset, id)));
        }
        let at = usize::try_from(offset - mb.written).unwrap_or(usize::MAX);
        let line = self.unwritten.get(to).and_then(|bytes| bytes.get(at..)).unwrap_or_default();
        let line = line.split_inclusive(|b| *b == b'\n').next().unwrap_or_default();
        match record::decode(line) {
            Ok(msg) if msg.id == id => Ok(Some(ReadJob::ready(msg))),
            _ => Err(StoreError::Changed { path, offset }),
        }
    }

    fn remove_first_job(&mut self, to: &Name, n: usize) -> Result<RemoveJob, StoreError> {
        self.not_busy()?;
        let path = self.mailbox_path(to);
        let count = mailbox::cached(&mut self.boxes, to, &path)?.usage.count;
        if n == 0 || count == 0 {
            return Ok(RemoveJob { n, plan: None, deferred: None });
        }
        self.write_all_out()?;
        // Everything journalled so far goes to the file, for the job's checkpoint to empty it.
        // (The records are durable once the job's checkpoint has synced their mailboxes.)
        let _covered_by_the_checkpoint = self.write_journal()?;
        let (synced, checkpoint) = self.checkpoint_plan()?;
        // The file is replaced: later appends open the new one.
        self.dirty.remove(to);
        let tmp = self.dir.join(format!("{}.tmp", file_name(to)));
        let plan = RemovePlan { checkpoint, path, tmp, all: n >= count };
        self.out = Some(Maintenance { removing: Some(to.clone()), synced });
        Ok(RemoveJob { n, plan: Some(plan), deferred: None })
    }

    fn finish_remove(&mut self, to: &Name, result: Result<Removed, StoreError>) -> Result<(), StoreError> {
        let Some(out) = self.out.take_if(|out| out.removing.as_ref() == Some(to)) else {
            return result.map(|_| ());
        };
        // The mailbox's records moved: what a sync out covers of it is no longer counted so
        // (the rewrite, or the scan after a failure, synced the file).
        if let Some(covers) = &mut self.sync_out {
            covers.retain(|h| &h.name != to);
        }
        self.lost.retain(|h| &h.name != to);
        match result {
            Ok(Removed { kept: Some(kept), .. }) => {
                self.checkpointed(out.synced);
                self.replace(to, kept);
                Ok(())
            }
            Ok(Removed { kept: None, .. }) => Ok(()),
            Err(e) => {
                self.owed.checkpoint_failed();
                // Learn the file again: the job may have failed before or after its rename.
                match mailbox::scan(&self.mailbox_path(to), |_| {}) {
                    Ok(scanned) => self.replace(to, scanned),
                    Err(again) => tracing::warn!(%to, "mailbox unreadable after a failed removal: {again}"),
                }
                Err(e)
            }
        }
    }

    fn note_owed(&mut self, owed: &OwedChannel) -> Result<(), StoreError> {
        let line = self.owed.note(owed)?;
        self.journal.note(owed::NOTE_STEM, &line);
        Ok(())
    }

    fn owed_done(&mut self, from: &Name, id: MsgId) {
        if let Some(line) = self.owed.done(from, id) {
            self.journal.note(owed::DONE_STEM, &line);
        }
    }

    fn owed(&self) -> Vec<OwedChannel> {
        self.owed.all()
    }

    fn evict(&mut self, to: &Name) {
        // A mailbox a sync covers stays until that sync is known to have succeeded: a failure
        // for lack of space drops its batch, which needs the index (and a rescan meanwhile
        // would count the batch's records durable).
        let syncing = self.sync_out.iter().flatten().chain(&self.lost).any(|h| &h.name == to);
        let removing = self.out.as_ref().is_some_and(|out| out.removing.as_ref() == Some(to));
        if !self.unwritten.contains_key(to) && !syncing && !removing {
            if self.boxes.remove(to).is_some() {
                self.evictions += 1;
            }
            self.dirty.remove(to);
        }
    }
}
