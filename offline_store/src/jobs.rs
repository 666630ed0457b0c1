//! The store's disk work as jobs that can run on any thread, like [`crate::SyncJob`]: each owns
//! what it needs (paths, file handles, bytes), and its result goes back to the store through a
//! cheap step on the event loop's thread.
//!
//! - [`OpenJob`] scans a mailbox file; [`crate::Store::install`] takes its [`MailboxScan`].
//! - [`ReadJob`] reads one record by its offset (or holds a record not yet written out).
//! - [`CheckpointJob`] syncs the mailboxes written and empties the journal;
//!   [`crate::Store::finish_checkpoint`] takes its [`Checkpointed`].
//! - [`RemoveJob`] checkpoints and rewrites a mailbox without its first records;
//!   [`crate::Store::finish_remove`] takes its [`Removed`].
//!
//! A store that keeps its mailboxes elsewhere (a database) makes the same jobs from a closure:
//! `deferred` ([`crate::SyncJob::deferred`], [`OpenJob::deferred`], [`ReadJob::deferred`],
//! [`RemoveJob::deferred`]), with [`MailboxScan::listed`] and [`Removed::count`] for what they
//! hand back.
//!
//! This module owns the jobs' file work; it must not touch a store's state (only the store's
//! `install`/`finish_*` steps do), nor hold more than one record of a mailbox in memory.

use std::fs::{self, File};
use std::io::{BufReader, ErrorKind, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use chat_proto::{MsgId, Name, StoredMessage};

use crate::StoreError;
use crate::mailbox::{self, Mailbox};
use crate::record::{Line, Lines};

/// Work of a store outside this crate, run by a job: a closure that owns what it needs.
pub(crate) struct Deferred<T>(Box<dyn FnOnce() -> Result<T, StoreError> + Send>);

impl<T> Deferred<T> {
    pub(crate) fn new(work: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Self {
        Self(Box::new(work))
    }

    pub(crate) fn run(self) -> Result<T, StoreError> {
        (self.0)()
    }
}

impl<T> std::fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

/// The scan of one mailbox that the store does not know yet, from [`crate::Store::open_job`].
#[derive(Debug)]
#[must_use = "the scan is learnt only once installed"]
pub struct OpenJob {
    /// The file to scan; `None` when the store knows the mailbox already (or keeps it in memory).
    pub(crate) path: Option<PathBuf>,
    /// The store's count of evictions when the job was made (see [`crate::Store::install`]).
    pub(crate) stamp: u64,
    /// The work of a store outside this crate, instead of a file scan.
    pub(crate) deferred: Option<Deferred<MailboxScan>>,
}

impl OpenJob {
    /// A job that runs `work` (a store outside this crate learning a mailbox its own way).
    pub fn deferred(work: impl FnOnce() -> Result<MailboxScan, StoreError> + Send + 'static) -> Self {
        Self { path: None, stamp: 0, deferred: Some(Deferred::new(work)) }
    }

    /// Reads the whole mailbox file, one line at a time, then syncs it (`fdatasync`: a record
    /// written by a run killed before its sync is made durable before it counts), and returns
    /// what the store keeps of it (usage, each record's id, sender-and-id key and offset, and
    /// which are durable). A missing file is an empty mailbox.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file exists but cannot be read.
    ///
    /// A job made by [`OpenJob::deferred`] runs its work instead, with its errors.
    pub fn run(self) -> Result<MailboxScan, StoreError> {
        if let Some(work) = self.deferred {
            return work.run();
        }
        let mailbox = self.path.map(|path| mailbox::scan(&path, |_| {})).transpose()?;
        Ok(MailboxScan { mailbox, stamp: self.stamp, listed: Vec::new() })
    }
}

/// What an [`OpenJob`] learnt, for [`crate::Store::install`].
#[derive(Debug)]
pub struct MailboxScan {
    pub(crate) mailbox: Option<Mailbox>,
    pub(crate) stamp: u64,
    /// What a store outside this crate learnt ([`MailboxScan::listed`]).
    listed: Vec<Listed>,
}

impl MailboxScan {
    /// What a store outside this crate learnt: the mailbox's messages, oldest first, and a
    /// stamp of its own (e.g. to tell a scan made before a change it must ignore).
    pub fn listed(records: Vec<Listed>, stamp: u64) -> Self {
        Self { mailbox: None, stamp, listed: records }
    }

    /// The stamp given to [`MailboxScan::listed`] (or the file store's own).
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// The messages given to [`MailboxScan::listed`], oldest first (none for a file scan).
    pub fn into_listed(self) -> Vec<Listed> {
        self.listed
    }
}

/// One message of a mailbox as a store outside this crate lists it ([`MailboxScan::listed`]):
/// its key (sender and id) and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Who sent it.
    pub from: Name,
    /// Its id (unique per sender).
    pub id: MsgId,
    /// The bytes it counts against the limits ([`crate::record_len`]).
    pub bytes: u64,
}

/// What a [`ReadJob`] found at its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The message.
    Message(StoredMessage),
    /// The message with this id is no longer stored: in a store that several servers share (a
    /// database), another removed it (it delivered it) after this one learnt the mailbox. Not
    /// a failure: the index holds nothing to show, but it counts (a fetch skips it).
    Gone(MsgId),
}

impl Fetched {
    /// The message, if it was still stored.
    pub fn message(self) -> Option<StoredMessage> {
        match self {
            Self::Message(msg) => Some(msg),
            Self::Gone(_) => None,
        }
    }
}

/// The read of one stored message, from [`crate::Store::read_job`].
#[derive(Debug)]
#[must_use = "the message is read only when the job runs"]
pub struct ReadJob {
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// Not written out yet (or a store in memory): served from memory.
    Ready(StoredMessage),
    /// The line at `offset` of the file at `path`, a record of message `id`.
    At { path: PathBuf, offset: u64, id: MsgId },
    /// The work of a store outside this crate.
    Deferred(Deferred<Fetched>),
}

impl ReadJob {
    /// A job that has the message already (held in memory).
    pub fn ready(msg: StoredMessage) -> Self {
        Self { source: Source::Ready(msg) }
    }

    /// A job that runs `work` (a store outside this crate reading a message its own way, which
    /// may find it [`Fetched::Gone`]).
    pub fn deferred(work: impl FnOnce() -> Result<Fetched, StoreError> + Send + 'static) -> Self {
        Self { source: Source::Deferred(Deferred::new(work)) }
    }

    pub(crate) fn at(path: PathBuf, offset: u64, id: MsgId) -> Self {
        Self { source: Source::At { path, offset, id } }
    }

    /// Reads the message: one `open`, one seek, and one line read. A file store's message is
    /// never [`Fetched::Gone`] (it has one server).
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file cannot be opened or read (e.g. it was removed);
    /// [`StoreError::Changed`] when the line there is not the record indexed (the file was
    /// replaced or damaged since). A job made by [`ReadJob::deferred`] runs its work instead,
    /// with its errors.
    pub fn run(self) -> Result<Fetched, StoreError> {
        let (path, offset, id) = match self.source {
            Source::Ready(msg) => return Ok(Fetched::Message(msg)),
            Source::Deferred(work) => return work.run(),
            Source::At { path, offset, id } => (path, offset, id),
        };
        let mut file = File::open(&path).map_err(StoreError::io("open", &path))?;
        file.seek(SeekFrom::Start(offset)).map_err(StoreError::io("seek", &path))?;
        let mut lines = Lines::new(BufReader::new(file));
        match lines.next_line().map_err(StoreError::io("read", &path))? {
            Some(Line::Record(msg)) if msg.id == id => Ok(Fetched::Message(msg)),
            _ => Err(StoreError::Changed { path, offset }),
        }
    }
}

/// A checkpoint, from [`crate::Store::checkpoint_job`]: every mailbox written since the last one
/// is synced, then the journal is emptied.
#[derive(Debug)]
#[must_use = "nothing is checkpointed until the job has run and is finished"]
pub struct CheckpointJob {
    /// The file work; `None` when there is none (a store in memory).
    pub(crate) plan: Option<CheckpointPlan>,
}

/// The file work of a checkpoint.
#[derive(Debug)]
pub(crate) struct CheckpointPlan {
    /// The mailboxes to sync (a missing one was removed: nothing to sync).
    pub(crate) sync: Vec<PathBuf>,
    /// The store's directory, synced for the files created.
    pub(crate) dir: PathBuf,
    /// The journal, emptied last.
    pub(crate) journal: (File, PathBuf),
    /// The channel messages still owed, written before the journal is emptied.
    pub(crate) owed: Option<Box<crate::owed::OwedPlan>>,
}

impl CheckpointPlan {
    fn run(&self) -> Result<(), StoreError> {
        for path in &self.sync {
            match File::open(path).and_then(|f| f.sync_data()) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(StoreError::io("sync", path)(e)),
                _ => {}
            }
        }
        if let Some(owed) = &self.owed {
            owed.run()?;
        }
        sync_dir(&self.dir)?;
        let (journal, path) = &self.journal;
        journal.set_len(0).map_err(StoreError::io("truncate", path))?;
        journal.sync_data().map_err(StoreError::io("sync", path))
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io("sync directory", dir))
}

impl CheckpointJob {
    /// A checkpoint with nothing to do (a store that keeps no journal).
    pub fn none() -> Self {
        Self { plan: None }
    }

    /// Syncs the mailboxes and the directory, then empties the journal.
    ///
    /// # Errors
    /// [`StoreError::Io`] when a sync fails; nothing acknowledged is lost (the journal is
    /// emptied only after the rest succeeded).
    pub fn run(self) -> Result<Checkpointed, StoreError> {
        if let Some(plan) = &self.plan {
            plan.run()?;
        }
        Ok(Checkpointed { done: self.plan.is_some() })
    }
}

/// What a [`CheckpointJob`] did, for [`crate::Store::finish_checkpoint`].
#[derive(Debug)]
pub struct Checkpointed {
    pub(crate) done: bool,
}

/// The removal of a mailbox's first records, from [`crate::Store::remove_first_job`].
#[derive(Debug)]
#[must_use = "nothing is removed until the job has run and is finished"]
pub struct RemoveJob {
    pub(crate) n: usize,
    /// The file work; `None` when there is none (nothing to remove, or a store in memory).
    pub(crate) plan: Option<RemovePlan>,
    /// The work of a store outside this crate, instead of file work.
    pub(crate) deferred: Option<Deferred<Removed>>,
}

/// The file work of a [`RemoveJob`].
#[derive(Debug)]
pub(crate) struct RemovePlan {
    /// The checkpoint first: no journal line may bring back what is removed.
    pub(crate) checkpoint: CheckpointPlan,
    /// The mailbox, and where its rewrite goes before the rename.
    pub(crate) path: PathBuf,
    pub(crate) tmp: PathBuf,
    /// Whether every record goes (the file is removed, not rewritten).
    pub(crate) all: bool,
}

impl RemoveJob {
    /// A job that runs `work` (a store outside this crate deleting messages its own way).
    pub fn deferred(work: impl FnOnce() -> Result<Removed, StoreError> + Send + 'static) -> Self {
        Self { n: 0, plan: None, deferred: Some(Deferred::new(work)) }
    }

    /// Makes every mailbox written so far durable and empties the journal (a checkpoint), then
    /// rewrites the mailbox without its first records (a synced temporary file renamed over
    /// it) or removes it, and syncs the directory.
    ///
    /// # Errors
    /// [`StoreError::Io`] when a step fails; the mailbox is then either as it was or as asked
    /// (no temporary file is left). A job made by [`RemoveJob::deferred`] runs its work
    /// instead, with its errors.
    pub fn run(self) -> Result<Removed, StoreError> {
        if let Some(work) = self.deferred {
            return work.run();
        }
        let Some(plan) = self.plan else { return Ok(Removed { n: self.n, kept: None }) };
        plan.checkpoint.run()?;
        let mut kept = if plan.all {
            Mailbox::default()
        } else {
            let kept = mailbox::write_rest(&plan.path, self.n, &plan.tmp).and_then(|kept| {
                fs::rename(&plan.tmp, &plan.path).map_err(StoreError::io("rename", &plan.tmp)).map(|()| kept)
            });
            if kept.is_err() {
                let _ = fs::remove_file(&plan.tmp);
            }
            kept?
        };
        if kept.usage.count == 0 {
            match fs::remove_file(&plan.path) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(StoreError::io("remove", &plan.path)(e)),
                _ => {}
            }
        }
        sync_dir(&plan.checkpoint.dir)?;
        kept.exists = kept.usage.count > 0;
        Ok(Removed { n: self.n, kept: Some(kept) })
    }
}

/// What a [`RemoveJob`] did, for [`crate::Store::finish_remove`].
#[derive(Debug)]
pub struct Removed {
    pub(crate) n: usize,
    /// The mailbox file as the job left it; `None` when it had no file work.
    pub(crate) kept: Option<Mailbox>,
}

impl Removed {
    /// What a store outside this crate removed: `n` messages.
    pub fn count(n: usize) -> Self {
        Self { n, kept: None }
    }

    /// How many messages the job removed (or was asked to).
    pub fn n(&self) -> usize {
        self.n
    }
}
