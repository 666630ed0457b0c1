//! The server's offline mailboxes: messages kept for clients that are not there to take them.
//!
//! This crate owns the [`Store`] trait (what every backend promises), the on-disk layout (one
//! file per recipient, named by [`file_name`]), the record format (one checksummed JSON line per
//! message), durable appends with group commit, durable clearing, and the per-mailbox limits. Its
//! own stores are plain `std::fs` (or memory): it must not know about sockets, tokio, databases,
//! the protocol's requests, or who is online; the server decides when to store, when to sync
//! ([`Store::start_sync`], then the [`SyncJob`]) before ACKing, and when to delete. A store kept
//! elsewhere (the `chat-pg` crate's PostgreSQL store) implements the same trait and makes the
//! same jobs from closures (`deferred`).
//!
//! Disk work can leave the caller's thread as jobs: [`SyncJob`] (from [`Store::start_sync`]),
//! [`OpenJob`] (learn a mailbox), [`ReadJob`] (one message by index), [`CheckpointJob`] and
//! [`RemoveJob`] (delete delivered messages). Each runs anywhere and hands its result back to a
//! cheap step on the store (`sync_done`, `install`, `finish_checkpoint`, `finish_remove`). Run
//! the sync, checkpoint and removal jobs in one lane, one at a time: while a checkpoint or removal
//! is out the store refuses other disk work ([`StoreError::Busy`]), so each such job must be
//! finished with its result, even a failed one. The blocking methods (`sync`, `usage`, `load`,
//! `remove_first`, `checkpoint`) run the same jobs at once.
//!
//! A server that keeps the disk off its event loop: [`Store::open_job`] when a name registers
//! (then [`Store::install`], and [`Store::known_usage`] for the count), [`Store::read_job`] per
//! fetched index, [`Store::id_at`] to check a fetch's last id, [`Store::remove_first_job`] when
//! the fetch is done, [`Store::sync_done`] after each sync and [`Store::checkpoint_job`] when
//! [`Store::checkpoint_due`], and [`Store::evict`] for a mailbox no longer in use. Saves go
//! through [`Store::append_once`], which stores each message (sender and id) once per mailbox,
//! unless the copy stored is not known durable: then it stores another rather than let an ACK
//! rest on nothing. After a sync that failed for lack of space, [`Store::discard_failed_batch`]
//! drops its batch (from memory and from the files), so that what its requests were refused for
//! is never delivered later.
//!
//! [`FileStore`] is the store on disk; [`MemStore`] has the same semantics in memory, for other
//! crates' unit tests.

use std::io;
use std::path::PathBuf;

use chat_proto::{MsgId, Name, StoredMessage};

mod durable;
mod file;
mod jobs;
mod journal;
mod mailbox;
mod mem;
mod name;
mod owed;
mod record;
#[cfg(test)]
mod tests;

pub use file::FileStore;
pub use jobs::{CheckpointJob, Checkpointed, Fetched, Listed, MailboxScan, OpenJob, ReadJob, RemoveJob, Removed};
pub use mem::MemStore;
pub use name::file_name;
pub use owed::OwedChannel;

/// `ENOSPC` on Linux and the BSDs, for an error built from a raw OS code.
const ENOSPC: i32 = 28;

/// How much one mailbox holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Usage {
    /// Number of stored messages (readable records).
    pub count: usize,
    /// Bytes of their lines in the mailbox file, newlines included.
    pub bytes: u64,
}

/// The most one mailbox may hold; an append that would pass either limit is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most messages in one mailbox.
    pub max_messages: usize,
    /// Most bytes (of record lines) in one mailbox.
    pub max_bytes: u64,
}

impl Default for Limits {
    /// 10 000 messages, 16 MiB.
    fn default() -> Self {
        Self { max_messages: 10_000, max_bytes: 16 * 1024 * 1024 }
    }
}

impl Limits {
    /// Checks that a record of `line_len` bytes fits in a mailbox at `usage`.
    ///
    /// # Errors
    /// [`StoreError::MailboxFull`] when it does not fit.
    pub fn check(&self, name: &Name, usage: Usage, line_len: u64) -> Result<(), StoreError> {
        let full = |limit: String| StoreError::MailboxFull { name: name.clone(), limit };
        if usage.count.saturating_add(1) > self.max_messages {
            return Err(full(format!("{} messages", self.max_messages)));
        }
        if usage.bytes.saturating_add(line_len) > self.max_bytes {
            return Err(full(format!("{} bytes", self.max_bytes)));
        }
        Ok(())
    }
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The message would pass the recipient's [`Limits`]; nothing was stored.
    #[error("mailbox of {name} is full ({limit})")]
    MailboxFull {
        /// The recipient.
        name: Name,
        /// The limit it would pass, e.g. `10000 messages` or `16777216 bytes`.
        limit: String,
    },
    /// A file system operation failed. Its message names the operation and the file only; the
    /// cause is the [`std::error::Error::source`], so a printer of the cause chain shows it once.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`open`, `write`, `sync`, `rename`, ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A [`ReadJob`] found another line than the record indexed at `offset`: the file was
    /// replaced (by a removal) or damaged since. Nothing was read; ask again.
    #[error("{path} holds no record indexed at byte {offset}: the mailbox changed")]
    Changed {
        /// The mailbox file.
        path: PathBuf,
        /// Where the record was.
        offset: u64,
    },
    /// A database operation failed. Its message names the operation only; the cause (the
    /// database's error) is the [`std::error::Error::source`].
    #[error("database: {op}")]
    Database {
        /// What was being done (`commit the stored messages`, `read a message`, ...).
        op: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A [`RemoveJob`] is out: nothing else may write the mailboxes or the journal until it is
    /// finished ([`Store::finish_remove`]). Nothing was done.
    #[error("a removal of stored messages is still running")]
    Busy,
}

impl StoreError {
    /// Builds the closure that turns an [`io::Error`] into [`StoreError::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }

    /// Whether the failure is a database's that may be gone in a moment (a restart, a lost
    /// connection): the request is better left unanswered, for its retransmission to try again,
    /// than refused.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Database { .. })
    }

    /// Whether the disk is full (`ENOSPC`): the server refuses a save it cannot take with
    /// `Refusal::StorageUnavailable` rather than leaving it unanswered.
    pub fn is_no_space(&self) -> bool {
        match self {
            Self::Io { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull || (cfg!(unix) && source.raw_os_error() == Some(ENOSPC))
            }
            _ => false,
        }
    }
}

/// The bytes `msg` takes in a mailbox (its record line, newline included): what it counts
/// against [`Limits::max_bytes`] in every store.
///
/// # Errors
/// The serializer's error; it does not happen for a valid [`StoredMessage`].
pub fn record_len(msg: &StoredMessage) -> Result<u64, serde_json::Error> {
    record::encode(msg).map(|line| line.len() as u64)
}

/// What [`Store::append_once`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The message was stored.
    Stored,
    /// The mailbox already holds this message (same sender, same id), durable or covered by
    /// the next sync: nothing was stored.
    Duplicate,
}

/// What [`Store::discard_failed_batch`] dropped.
#[derive(Debug, Default)]
#[must_use = "a file that could not be cut back is reported here"]
pub struct Discarded {
    /// The mailboxes that lost records, with how many each: a count of their messages given
    /// out before may now be too high.
    pub mailboxes: Vec<(Name, usize)>,
    /// The first file that could not be cut back, if any: the records are dropped from the
    /// store's index all the same, but a scan after a restart may find them.
    pub error: Option<StoreError>,
}

/// The disk wait of a sync begun by [`Store::start_sync`]: it can run on any thread.
#[derive(Debug)]
#[must_use = "the appends are durable only once the job has run"]
pub struct SyncJob {
    wait: Wait,
}

/// What a [`SyncJob`] waits for.
#[derive(Debug)]
enum Wait {
    /// Nothing (a store in memory).
    Nothing,
    /// The file to `fdatasync`.
    File(std::fs::File, PathBuf),
    /// The work of a store outside this crate (a database's commit).
    Deferred(jobs::Deferred<()>),
}

impl SyncJob {
    /// A job with nothing to wait for.
    pub fn done() -> Self {
        Self { wait: Wait::Nothing }
    }

    pub(crate) fn sync_data(file: std::fs::File, path: PathBuf) -> Self {
        Self { wait: Wait::File(file, path) }
    }

    /// A job that runs `work`, which makes the appends it covers durable (a store outside this
    /// crate: e.g. one database transaction for the whole batch).
    pub fn deferred(work: impl FnOnce() -> Result<(), StoreError> + Send + 'static) -> Self {
        Self { wait: Wait::Deferred(jobs::Deferred::new(work)) }
    }

    /// Waits until the appends it covers are on disk.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the sync fails: those appends may be lost; a job made by
    /// [`SyncJob::deferred`] gives its work's error.
    pub fn run(self) -> Result<(), StoreError> {
        match self.wait {
            Wait::File(file, path) => file.sync_data().map_err(StoreError::io("sync", path)),
            Wait::Deferred(work) => work.run(),
            Wait::Nothing => Ok(()),
        }
    }
}

/// Per-recipient offline mailboxes.
///
/// Appends are readable at once but durable only after a sync, so a caller can append many
/// messages and pay for one sync (group commit) before acknowledging them.
pub trait Store {
    /// Appends one message to `to`'s mailbox, unless the same message (sender and id) is there:
    /// [`Store::append_once`], for callers that need not know which.
    ///
    /// # Errors
    /// As [`Store::append_once`].
    fn append(&mut self, to: &Name, msg: &StoredMessage) -> Result<(), StoreError> {
        self.append_once(to, msg).map(|_| ())
    }

    /// Appends one message to `to`'s mailbox, once per message: ids are unique per sender only,
    /// so a message is its sender and its id (another sender's message with the same id is
    /// another message, stored). A message the mailbox already holds stores nothing, does not
    /// count against the limits, and returns [`Appended::Duplicate`], if the copy held is known
    /// durable or is not yet handed to a sync (the next sync covers it). So a save
    /// retransmitted after a restart (when the server's request dedup is empty) is stored once,
    /// and a duplicate is durable once the next sync has run, like the first copy.
    ///
    /// A copy handed to a sync not known to have succeeded (still running, or one that failed:
    /// [`Store::start_sync`] again without [`Store::sync_done`] in between) is no ground for an
    /// ACK: the message is stored again (a second copy; a client shows a message once per id).
    /// A later sync of the journal does not make such a copy durable (after a failed
    /// `fdatasync` the next may succeed without it); a checkpoint that syncs its mailbox does.
    /// Records found in a mailbox file by a scan ([`OpenJob`], or a first use) are durable: the
    /// scan syncs the file before counting them.
    ///
    /// The record is readable at once, and durable only after [`Store::sync`] (a file store
    /// writes a batch's records out when the sync starts, one `write` per mailbox).
    ///
    /// # Errors
    /// [`StoreError::MailboxFull`], with nothing stored, when the message would pass the
    /// limits; [`StoreError::Io`] when the mailbox cannot be read to learn its size (failures
    /// to write it come from the sync).
    fn append_once(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError>;

    /// Makes every append so far durable: [`Store::start_sync`], [`SyncJob::run`], then
    /// [`Store::finish_sync`], all on this thread. This is the group commit: callers append
    /// many, then sync once.
    ///
    /// # Errors
    /// [`StoreError::Io`] when a sync fails, or the housekeeping after it: the appends since
    /// the last successful sync must then not be acknowledged.
    fn sync(&mut self) -> Result<(), StoreError> {
        if let Some(job) = self.start_sync()? {
            job.run()?;
            self.finish_sync()?;
        }
        Ok(())
    }

    /// Begins making every append so far durable, and returns the wait for the disk, which
    /// may run on another thread while this store takes more appends (those are not covered
    /// by it). `None` when there is nothing to wait for. Callers start the next sync only
    /// after this one's job has run.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the appends cannot be written out; they must not be
    /// acknowledged.
    fn start_sync(&mut self) -> Result<Option<SyncJob>, StoreError>;

    /// Housekeeping after a job from [`Store::start_sync`] has run successfully:
    /// [`Store::sync_done`], then, if one is due, a checkpoint on this thread
    /// ([`Store::checkpoint`]). A caller that keeps the disk off its thread calls
    /// [`Store::sync_done`] instead, then runs a [`Store::checkpoint_job`] when
    /// [`Store::checkpoint_due`]. The appends it covered are durable whatever this returns.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the housekeeping fails; it is tried again later.
    fn finish_sync(&mut self) -> Result<(), StoreError> {
        self.sync_done();
        if self.checkpoint_due() { self.checkpoint() } else { Ok(()) }
    }

    /// Notes that the job from [`Store::start_sync`] has run successfully (memory only): the
    /// records it covered are durable, and a duplicate of one is [`Appended::Duplicate`]. A
    /// job that failed is simply not reported: the next [`Store::start_sync`] takes it as
    /// failed.
    fn sync_done(&mut self) {}

    /// Drops the batch of a sync that failed for lack of space ([`StoreError::is_no_space`]),
    /// so that what its requests are refused for is never delivered later. Call it at once
    /// after the failure: after a [`SyncJob`] that failed (instead of reporting it), or after
    /// [`Store::start_sync`] returned the error. The batch is what that sync covered (what it
    /// handed out, or, when it failed as it started, every append not handed to a sync), and
    /// what the syncs that failed since the last one that succeeded covered (their requests
    /// were never acknowledged, and a retransmission refused now must not be delivered from an
    /// older copy); appends made while its job ran belong to the next batch and stay. Records
    /// known durable are never dropped. A file store cuts each mailbox file written in the batch, and the
    /// journal, back to their length before it (`set_len`, which needs no free space), so that
    /// a restart does not replay it either; a checkpoint is then due, which makes the cuts
    /// durable. The indices of the records after the dropped ones change (a count given out
    /// before may now be too high). Returns which mailboxes lost how many records, and the
    /// first file that could not be cut back, if any.
    fn discard_failed_batch(&mut self) -> Discarded;

    /// Whether `to`'s mailbox (known to the store) holds a known durable copy of `msg` (same
    /// sender, same id): an append of it is [`Appended::Duplicate`] and no discard drops it.
    fn holds_durable(&self, to: &Name, msg: &StoredMessage) -> bool;

    /// Whether a checkpoint is due (a file store's journal has grown past 8 MiB, or a discarded
    /// batch cut mailbox files back).
    fn checkpoint_due(&self) -> bool {
        false
    }

    /// The checkpoint as a job, to run on any thread, then [`Store::finish_checkpoint`]: it
    /// syncs every mailbox written out since the last one and empties the journal (appends not
    /// written out yet stay for the next sync). While it is out, the store takes appends but
    /// refuses other disk work ([`StoreError::Busy`]): run it in the same lane as the
    /// [`SyncJob`]s, after the last one has run.
    ///
    /// # Errors
    /// [`StoreError::Busy`] when a checkpoint or removal is out; [`StoreError::Io`] when the
    /// journal cannot be handed to the job.
    fn checkpoint_job(&mut self) -> Result<CheckpointJob, StoreError>;

    /// Takes the result of the [`CheckpointJob`]: on failure nothing is lost, and the next
    /// checkpoint does it all again.
    ///
    /// # Errors
    /// The job's error, given back.
    fn finish_checkpoint(&mut self, result: Result<Checkpointed, StoreError>) -> Result<(), StoreError>;

    /// Every stored message for `to`, oldest first; empty if `to` has no mailbox.
    ///
    /// A torn last record (crash mid-write) or a corrupt record is skipped with a warning that
    /// names the file and line, without losing the records around it.
    ///
    /// It reads the whole file on this thread and returns it at once: a server reads by index
    /// ([`Store::read_job`]) instead.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the mailbox exists but cannot be read; [`StoreError::Busy`]
    /// while a removal from this mailbox is out.
    fn load(&mut self, to: &Name) -> Result<Vec<StoredMessage>, StoreError>;

    /// Deletes the first `n` messages of `to`'s mailbox, durably: [`Store::remove_first_job`],
    /// [`RemoveJob::run`] and [`Store::finish_remove`], all on this thread.
    ///
    /// `n` larger than the count removes them all (and the file). Unreadable records are
    /// dropped by the rewrite, as they could never be delivered.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the mailbox cannot be read, rewritten or removed; the mailbox is
    /// then either as it was or as asked.
    fn remove_first(&mut self, to: &Name, n: usize) -> Result<(), StoreError> {
        let job = self.remove_first_job(to, n)?;
        let done = job.run();
        self.finish_remove(to, done)
    }

    /// The scan that teaches the store `to`'s mailbox (usage, ids, where each record is), to
    /// run on any thread; [`Store::install`] takes its result. The scan syncs the file, so the
    /// records it finds count as durable. Once installed, `usage`,
    /// `append_once` and `read_job` for `to` are answered from memory. A job for a mailbox the
    /// store knows already does nothing.
    fn open_job(&mut self, to: &Name) -> OpenJob;

    /// Takes what an [`OpenJob`] for `to` learnt. Ignored if the store learnt the mailbox
    /// meanwhile (its own knowledge is newer), or if a file store evicted a mailbox since the
    /// job was made (the scan may be stale; the next use of `to` learns it again).
    fn install(&mut self, to: &Name, scan: MailboxScan);

    /// Count and bytes of `to`'s mailbox if the store knows it (without touching the disk);
    /// `None` if it must be learnt first ([`Store::open_job`]).
    fn known_usage(&self, to: &Name) -> Option<Usage>;

    /// The id of the message at `index` (0 is the oldest) of `to`'s mailbox, from memory;
    /// `None` past the end or if the store does not know the mailbox.
    fn id_at(&self, to: &Name, index: usize) -> Option<MsgId>;

    /// The read of the message at `index` (0 is the oldest) of `to`'s mailbox, to run on any
    /// thread; `None` past the end. A record not yet written out is served from memory. If the
    /// store does not know the mailbox it scans it first, here (run an [`OpenJob`] before to
    /// keep the disk off this thread). A store that several servers share may find the message
    /// [`Fetched::Gone`] (another delivered it): the index still counts.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the mailbox had to be scanned and could not be read;
    /// [`StoreError::Busy`] for a record written out while a removal from this mailbox is out
    /// (its place in the new file is known once the removal is finished).
    fn read_job(&mut self, to: &Name, index: usize) -> Result<Option<ReadJob>, StoreError>;

    /// Begins deleting the first `n` messages of `to`'s mailbox: returns the job that makes
    /// it so on disk (a checkpoint, then the rewrite or removal of the file, with the syncs),
    /// to run on any thread; then [`Store::finish_remove`]. Until it is finished the store
    /// shows the mailbox as it was and takes appends, but refuses other disk work (see
    /// [`StoreError::Busy`]): run it in the same lane as the [`SyncJob`]s. Records appended
    /// before this call are written out here (to the page cache, as [`Store::start_sync`]
    /// does). If the store does not know the mailbox it scans it first, here.
    ///
    /// # Errors
    /// [`StoreError::Busy`] when another removal is out; [`StoreError::Io`] when the mailbox
    /// cannot be read or the appends so far cannot be written out.
    fn remove_first_job(&mut self, to: &Name, n: usize) -> Result<RemoveJob, StoreError>;

    /// Takes the result of the [`RemoveJob`] for `to`: on success the first `n` messages are
    /// gone (appends made meanwhile are kept after the rest). On failure the mailbox is either
    /// as it was or as asked, and the store learns it again (here: an error path only).
    ///
    /// # Errors
    /// The job's error, given back.
    fn finish_remove(&mut self, to: &Name, result: Result<Removed, StoreError>) -> Result<(), StoreError>;

    /// Notes that channel message `owed.msg` is on its way to the online `owed.members`: durable
    /// with the next sync (the one that holds its sender's ACK), and handed back by
    /// [`Store::owed`] after a restart until [`Store::owed_done`]. One record per message,
    /// whatever the number of members.
    ///
    /// # Errors
    /// [`StoreError::Io`] when it cannot be encoded; [`StoreError::Database`] when a store elsewhere
    /// cannot take it.
    fn note_owed(&mut self, owed: &OwedChannel) -> Result<(), StoreError>;

    /// Notes that channel message `id` of `from` is owed to no one any more (each member's copy
    /// was ACKed or stored): durable with a later sync, after whatever was stored before it.
    /// Until then a restart hands it back again (a member shows a channel id once).
    fn owed_done(&mut self, from: &Name, id: MsgId);

    /// The channel messages noted and not done: after opening, those a previous run left.
    fn owed(&self) -> Vec<OwedChannel>;

    /// Forgets what memory holds about `to`'s mailbox (its index: 24 bytes a message), unless
    /// it has appends not yet written out or a removal out; the next use learns it again.
    /// For a server to bound the store's memory to the mailboxes in use, and to learn afresh a
    /// mailbox that other servers sharing the store may have changed (a store in a database
    /// then keeps only its appends not yet durable, and learns the rest again).
    fn evict(&mut self, to: &Name);

    /// Count and bytes of `to`'s mailbox: from memory, or learnt here first ([`Store::open_job`],
    /// [`OpenJob::run`], [`Store::install`], on this thread).
    ///
    /// # Errors
    /// [`StoreError::Io`] when the mailbox exists but cannot be read.
    fn usage(&mut self, to: &Name) -> Result<Usage, StoreError> {
        if let Some(usage) = self.known_usage(to) {
            return Ok(usage);
        }
        let scan = self.open_job(to).run()?;
        self.install(to, scan);
        Ok(self.known_usage(to).unwrap_or_default())
    }

    /// Makes everything durable in its final place (for a file store: syncs every mailbox
    /// written and empties the journal), as at a clean shutdown: [`Store::sync`] without its
    /// housekeeping, then a [`Store::checkpoint_job`] run at once.
    ///
    /// # Errors
    /// A sync failed; nothing acknowledged is lost, the next checkpoint tries again.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        if let Some(job) = self.start_sync()? {
            job.run()?;
            self.sync_done();
        }
        let job = self.checkpoint_job()?;
        let done = job.run();
        self.finish_checkpoint(done)
    }
}
