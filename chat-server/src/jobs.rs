//! The disk work the core hands out: one [`Job`] per store job (a sync, the scan of a mailbox,
//! the read of one stored message, a removal of delivered messages, a checkpoint), and its
//! [`JobDone`] to hand back. A job owns what it needs and runs on any thread.
//!
//! This module owns the wrapping only: it must not touch the store or decide anything; the
//! storage port makes the jobs and takes their results.

use std::fmt;

use chat_proto::Name;
use offline_store::{
    CheckpointJob, Checkpointed, Fetched, MailboxScan, OpenJob, ReadJob, RemoveJob, Removed, StoreError, SyncJob,
};

/// What kind of disk work a [`Job`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// Makes the appends so far durable; the replies that wait on it leave when it is done.
    Sync,
    /// Learns a mailbox (its count and where each message is): a registration, a fetch or a
    /// save waits on it.
    Open,
    /// Reads one stored message, for a fetch.
    Read,
    /// Deletes the messages a client has fetched (a checkpoint, then the mailbox rewritten).
    Remove,
    /// Syncs the mailboxes written and empties the store's journal.
    Checkpoint,
}

impl JobKind {
    /// Whether jobs of this kind run in the store's one lane: a sync, a removal or a
    /// checkpoint is handed out only once the one before is done.
    pub fn in_lane(self) -> bool {
        matches!(self, Self::Sync | Self::Remove | Self::Checkpoint)
    }
}

/// Disk work from [`crate::Server::poll_job`]: run it (on any thread) with [`Job::run`] and hand
/// the result back with [`crate::Server::handle_job_done`]. Every job handed out must come back,
/// even failed ([`Job::fail`]): the store's lane waits for it.
#[must_use = "what waits on the job goes on only once it is run and handed back"]
pub struct Job {
    pub(crate) work: Work,
}

pub(crate) enum Work {
    Sync(SyncJob),
    Open(Name, OpenJob),
    Read(Read, ReadJob),
    Remove(Name, RemoveJob),
    Checkpoint(CheckpointJob),
}

/// Who asked for a read: a fetch of message `index` of `name`'s mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    pub name: Name,
    pub index: u32,
    pub to: std::net::SocketAddr,
    pub id: chat_proto::MsgId,
}

impl Job {
    /// What kind of job it is.
    pub fn kind(&self) -> JobKind {
        match self.work {
            Work::Sync(_) => JobKind::Sync,
            Work::Open(..) => JobKind::Open,
            Work::Read(..) => JobKind::Read,
            Work::Remove(..) => JobKind::Remove,
            Work::Checkpoint(_) => JobKind::Checkpoint,
        }
    }

    /// Does the disk work (blocking this thread until it is done).
    pub fn run(self) -> JobDone {
        let done = match self.work {
            Work::Sync(job) => Done::Synced(job.run()),
            Work::Open(name, job) => Done::Opened(name, job.run()),
            Work::Read(read, job) => Done::Read(read, job.run()),
            Work::Remove(name, job) => Done::Removed(name, job.run()),
            Work::Checkpoint(job) => Done::Checkpointed(job.run()),
        };
        JobDone { done }
    }

    /// The job as if its disk work had failed with `error` (for tests, and for a driver that
    /// cannot run it).
    pub fn fail(self, error: StoreError) -> JobDone {
        let done = match self.work {
            Work::Sync(_) => Done::Synced(Err(error)),
            Work::Open(name, _) => Done::Opened(name, Err(error)),
            Work::Read(read, _) => Done::Read(read, Err(error)),
            Work::Remove(name, _) => Done::Removed(name, Err(error)),
            Work::Checkpoint(_) => Done::Checkpointed(Err(error)),
        };
        JobDone { done }
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Job({:?})", self.kind())
    }
}

/// The result of a [`Job`], for [`crate::Server::handle_job_done`].
#[derive(Debug)]
pub struct JobDone {
    pub(crate) done: Done,
}

impl JobDone {
    /// What kind of job it was.
    pub fn kind(&self) -> JobKind {
        match self.done {
            Done::Synced(_) => JobKind::Sync,
            Done::Opened(..) => JobKind::Open,
            Done::Read(..) => JobKind::Read,
            Done::Removed(..) => JobKind::Remove,
            Done::Checkpointed(_) => JobKind::Checkpoint,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Done {
    Synced(Result<(), StoreError>),
    Opened(Name, Result<MailboxScan, StoreError>),
    Read(Read, Result<Fetched, StoreError>),
    Removed(Name, Result<Removed, StoreError>),
    Checkpointed(Result<Checkpointed, StoreError>),
}
