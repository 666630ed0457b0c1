//! The storage port: the one component that owns the [`Store`], the state of its jobs, and what
//! waits on them. Every store call of the core goes through it, and none of them touches the
//! disk: the disk work goes out as [`Job`]s ([`Storage::poll_job`]) and comes back
//! ([`Storage::handle_job_done`]).
//!
//! It holds the replies that may leave only once what they acknowledge is durable, and starts
//! one sync at a time (the replies held meanwhile wait for the next). It learns mailboxes with
//! open jobs, parking what waits on them (a waiter of the core's type `W`, given back as it
//! was); reads stored messages by index, one read job each; and runs the removals of fetched
//! messages and the checkpoints in the same lane as the syncs, one at a time, as the store
//! requires. When a sync fails for lack of space it has the store drop that sync's batch
//! ([`Store::discard_failed_batch`]) before the refusals go out, so that a refused message is
//! never delivered later. It hands back each decision as an [`Outcome`]. It decides nothing
//! about requests and sends nothing itself.

use std::collections::{HashSet, VecDeque};
use std::mem;
use std::net::SocketAddr;
use std::time::Instant;

use chat_proto::{Datagram, MsgId, Name, StoredMessage};
use offline_store::{Appended, Discarded, Fetched, OwedChannel, Store, StoreError};

use crate::jobs::{Done, Job, Read, Work};
use crate::parked::Parked;

/// A reply held until the appends it acknowledges are durable.
#[derive(Debug)]
pub(crate) struct Held {
    pub to: SocketAddr,
    pub id: MsgId,
    pub reply: Datagram,
    /// The answer instead when the disk is full: what the request gets when what it stored
    /// cannot be made durable (a save is refused with `storage_unavailable`).
    pub no_space: Datagram,
}

/// What became of a held reply, a parked waiter, a read or a removal.
#[derive(Debug)]
pub(crate) enum Outcome<W> {
    /// Its sync succeeded: it may leave.
    Durable(Held),
    /// Its sync failed: nothing it acknowledges is known to be on disk. The request is
    /// forgotten, so that its retransmission tries again.
    Lost(Held),
    /// Its sync failed because the disk is full: it gets its `no_space` answer.
    NoSpace(Held),
    /// The mailboxes `waiter` waited for are known now, but those in `failed`, which could not
    /// be read; `transient`: the last failure was a database's that may pass (see
    /// [`StoreError::is_transient`]).
    Resume { waiter: W, failed: Vec<Name>, transient: bool },
    /// A stored message was read for a fetch (or could not be).
    Read { read: Read, result: Result<Fetched, StoreError> },
    /// A removal of fetched messages ended.
    Removed { waiter: W, result: Result<Delivered, StoreError> },
}

/// What a removal did to the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// The first `n` messages were deleted.
    Deleted(usize),
    /// The messages named are no longer at the front (or there are none): nothing deleted.
    NotAtFront,
}

/// The store's lane: one sync, removal or checkpoint at a time.
#[derive(Debug)]
enum Lane<W> {
    Idle,
    /// A sync is running; these replies wait on it, and these copies of members found gone
    /// are in its batch.
    Syncing(Vec<Held>, Vec<(Name, StoredMessage)>),
    /// A removal of the first `n` messages is running; `waiter` waits on it.
    Removing {
        n: usize,
        waiter: W,
    },
    Checkpointing,
}

/// An open or a read waiting to be handed out.
#[derive(Debug)]
enum Ready {
    /// The mailbox to learn; its job is made when it is handed out.
    Open(Name),
    Read(Job),
}

/// Fetched messages to delete once the lane is free: the first `n` of `name`'s mailbox, if the
/// last of them is still `last`.
#[derive(Debug)]
struct Removal<W> {
    name: Name,
    n: usize,
    last: MsgId,
    waiter: W,
}

/// The store and the state of its jobs.
#[derive(Debug)]
pub(crate) struct Storage<S, W> {
    store: S,
    /// Replies waiting for the next sync.
    held: Vec<Held>,
    lane: Lane<W>,
    /// Messages were appended that no held reply waits on (channel copies): sync anyway.
    unsynced: bool,
    /// Channel copies for members found gone (their senders were answered long ago) appended
    /// since the last sync started: if that sync's batch is discarded for lack of space, they
    /// are appended again, for a later batch.
    kept: Vec<(Name, StoredMessage)>,
    /// Mailboxes that lost records to a discarded batch, so that a count of their messages
    /// given out before may be too high: a fetch past their end is refused (the client
    /// registers again). A name leaves when such a fetch is refused or the name is answered a
    /// registration (its count is true again); at most one per mailbox.
    shrunk: HashSet<Name>,
    /// When the last sync failed: copies no reply waits on are tried again at a later batch.
    failed_at: Option<Instant>,
    /// The store asked for a checkpoint after a sync.
    checkpoint: bool,
    /// Opens and reads to hand out: they do not wait for the lane. An open's job is made only
    /// when it is handed out, so that evictions while it waits in this queue cannot make it
    /// stale.
    ready: VecDeque<Ready>,
    /// What waits for mailboxes being learnt.
    parked: Parked<W>,
    /// Removals waiting for the lane, oldest first.
    removals: VecDeque<Removal<W>>,
    outcomes: VecDeque<Outcome<W>>,
}

impl<S: Store, W> Storage<S, W> {
    pub fn new(store: S) -> Self {
        Self {
            store,
            held: Vec::new(),
            lane: Lane::Idle,
            unsynced: false,
            kept: Vec::new(),
            shrunk: HashSet::new(),
            failed_at: None,
            checkpoint: false,
            ready: VecDeque::new(),
            parked: Parked::new(),
            removals: VecDeque::new(),
            outcomes: VecDeque::new(),
        }
    }

    /// How many messages `to`'s mailbox holds, if it is known ([`Storage::when_known`] if not).
    pub fn known_count(&self, to: &Name) -> Option<u32> {
        self.store.known_usage(to).map(|u| u32::try_from(u.count).unwrap_or(u32::MAX))
    }

    /// Of `names`, those whose mailbox must be learnt first.
    pub fn unknown(&self, names: impl IntoIterator<Item = Name>) -> Vec<Name> {
        names.into_iter().filter(|n| self.store.known_usage(n).is_none()).collect()
    }

    /// Parks `waiter` until the mailboxes of `names` are known (open jobs learn them); it comes
    /// back as [`Outcome::Resume`]. With no names it comes back at once.
    pub fn when_known(&mut self, names: Vec<Name>, waiter: W) {
        if names.is_empty() {
            self.outcomes.push_back(Outcome::Resume { waiter, failed: Vec::new(), transient: false });
            return;
        }
        for name in self.parked.park(names, waiter) {
            self.open(name);
        }
    }

    /// Queues the open job that learns `name`'s mailbox.
    fn open(&mut self, name: Name) {
        self.ready.push_back(Ready::Open(name));
    }

    /// The next open or read to hand out.
    fn next_ready(&mut self) -> Option<Job> {
        Some(match self.ready.pop_front()? {
            Ready::Open(name) => {
                let job = self.store.open_job(&name);
                Job { work: Work::Open(name, job) }
            }
            Ready::Read(job) => job,
        })
    }

    /// Starts the read of message `index` of `name`'s mailbox (which must be known) for `to`'s
    /// fetch `id`; it comes back as [`Outcome::Read`]. Returns false past the end.
    ///
    /// # Errors
    /// As [`Store::read_job`] (e.g. [`StoreError::Busy`] while the mailbox is rewritten).
    pub fn read(&mut self, read: Read) -> Result<bool, StoreError> {
        let index = usize::try_from(read.index).unwrap_or(usize::MAX);
        match self.store.read_job(&read.name, index)? {
            Some(job) => {
                self.ready.push_back(Ready::Read(Job { work: Work::Read(read, job) }));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Whether `name`'s mailbox lost records to a discarded batch since the last call that
    /// said so: a fetch past its end then comes from a count that is no longer true.
    pub fn take_shrunk(&mut self, name: &Name) -> bool {
        self.shrunk.remove(name)
    }

    /// The id of message `index` of `name`'s mailbox, if it is known and that long.
    pub fn id_at(&self, name: &Name, index: usize) -> Option<MsgId> {
        self.store.id_at(name, index)
    }

    /// Deletes the first `n` messages of `name`'s mailbox once the lane is free, if the last of
    /// them is then still `last`; `waiter` comes back as [`Outcome::Removed`].
    pub fn remove_first(&mut self, name: Name, n: usize, last: MsgId, waiter: W) {
        self.removals.push_back(Removal { name, n, last, waiter });
    }

    /// `name`'s mailbox is no longer in use: the store may forget its index.
    pub fn evict(&mut self, name: &Name) {
        if !self.parked.is_learning(name) && !self.removals.iter().any(|r| &r.name == name) {
            self.store.evict(name);
        }
    }

    /// Appends `msg` to `to`'s mailbox (which should be known: the store learns it here
    /// otherwise); a reply that acknowledges it is [`Storage::hold`]en.
    ///
    /// # Errors
    /// As [`Store::append`].
    pub fn append(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError> {
        self.store.append_once(to, msg)
    }

    /// Whether `to`'s mailbox holds a known durable copy of `msg`: a reply that acknowledges it
    /// needs no sync to succeed.
    pub fn holds_durable(&self, to: &Name, msg: &StoredMessage) -> bool {
        self.store.holds_durable(to, msg)
    }

    /// Appends a copy no reply waits on (a channel message for an offline member): it is synced
    /// with the next batch all the same.
    ///
    /// # Errors
    /// As [`Store::append`].
    pub fn append_copy(&mut self, to: &Name, msg: &StoredMessage) -> Result<(), StoreError> {
        self.store.append(to, msg)?;
        self.unsynced = true;
        Ok(())
    }

    /// Appends a copy whose sender was answered long ago (a channel message for a member found
    /// gone): as [`Storage::append_copy`], and if its batch is discarded for lack of space it
    /// is appended again for a later one, so that it is never lost.
    ///
    /// # Errors
    /// As [`Store::append`].
    pub fn append_kept_copy(&mut self, to: &Name, msg: &StoredMessage) -> Result<(), StoreError> {
        self.append_copy(to, msg)?;
        self.kept.push((to.clone(), msg.clone()));
        Ok(())
    }

    /// Notes the channel message `owed.msg` as owed to its online `owed.members`: durable with
    /// the next sync, which the sender's reply waits on.
    ///
    /// # Errors
    /// As [`Store::note_owed`].
    pub fn note_owed(&mut self, owed: &OwedChannel) -> Result<(), StoreError> {
        self.store.note_owed(owed)
    }

    /// Channel message `id` of `from` is owed to no one any more: noted for a later sync (no
    /// sync is started for it; until one runs, a restart delivers it again).
    pub fn owed_done(&mut self, from: &Name, id: MsgId) {
        self.store.owed_done(from, id);
    }

    /// The channel messages owed to someone, as the store was opened with them.
    pub fn owed(&self) -> Vec<OwedChannel> {
        self.store.owed()
    }

    /// `reply` to request `id` of `to` leaves once the next sync has ended well; `no_space`
    /// instead if that sync fails because the disk is full.
    pub fn hold(&mut self, to: SocketAddr, id: MsgId, reply: Datagram, no_space: Datagram) {
        self.held.push(Held { to, id, reply, no_space });
    }

    /// The next job to run: an open or a read, else, when the lane is free, a sync if anything
    /// waits for one, a checkpoint if the store asked for one, or a removal.
    pub fn poll_job(&mut self, now: Instant) -> Option<Job> {
        if let Some(job) = self.next_ready() {
            return Some(job);
        }
        if !matches!(self.lane, Lane::Idle) {
            return None;
        }
        if let Some(job) = self.start_sync(now) {
            return Some(job);
        }
        if mem::take(&mut self.checkpoint) {
            match self.store.checkpoint_job() {
                Ok(job) => {
                    self.lane = Lane::Checkpointing;
                    return Some(Job { work: Work::Checkpoint(job) });
                }
                Err(e) => tracing::warn!("store checkpoint not started (tried again later): {}", chat_core::report(&e)),
            }
        }
        self.start_removal()
    }

    /// Starts making the batch's appends durable, unless nothing waits (copies whose last
    /// sync failed wait for a later batch). When there is nothing to run, or it cannot start,
    /// the held replies are decided at once.
    fn start_sync(&mut self, now: Instant) -> Option<Job> {
        let retry = self.unsynced && self.failed_at.is_none_or(|at| now > at);
        if !retry && self.held.is_empty() {
            return None;
        }
        let replies = mem::take(&mut self.held);
        let kept = mem::take(&mut self.kept);
        match self.store.start_sync() {
            Ok(Some(job)) => {
                self.unsynced = false;
                self.lane = Lane::Syncing(replies, kept);
                Some(Job { work: Work::Sync(job) })
            }
            Ok(None) => {
                self.unsynced = false;
                self.outcomes.extend(replies.into_iter().map(Outcome::Durable));
                None
            }
            Err(e) => {
                self.failed(now, (replies, kept), &e);
                None
            }
        }
    }

    /// The oldest removal whose mailbox is known; those of mailboxes not known are learnt
    /// first. One whose last message is no longer the one named removes nothing.
    fn start_removal(&mut self) -> Option<Job> {
        let at = self.removals.iter().position(|r| self.store.known_usage(&r.name).is_some());
        let unknown: Vec<Name> =
            self.removals.iter().take(at.unwrap_or(self.removals.len())).map(|r| r.name.clone()).collect();
        for name in unknown {
            if self.parked.learn(&name) {
                self.open(name);
            }
        }
        let Removal { name, n, last, waiter } = self.removals.remove(at?)?;
        let count = self.store.known_usage(&name).map_or(0, |u| u.count);
        let n = n.min(count);
        if n == 0 || self.store.id_at(&name, n - 1) != Some(last) {
            self.outcomes.push_back(Outcome::Removed { waiter, result: Ok(Delivered::NotAtFront) });
            return self.next_ready();
        }
        match self.store.remove_first_job(&name, n) {
            Ok(job) => {
                self.lane = Lane::Removing { n, waiter };
                Some(Job { work: Work::Remove(name, job) })
            }
            Err(e) => {
                self.outcomes.push_back(Outcome::Removed { waiter, result: Err(e) });
                self.next_ready()
            }
        }
    }

    /// A job from [`Storage::poll_job`] has run.
    pub fn handle_job_done(&mut self, now: Instant, done: Done) {
        match done {
            Done::Synced(result) => self.synced(now, result),
            Done::Opened(name, result) => self.opened(name, result),
            Done::Read(read, result) => self.outcomes.push_back(Outcome::Read { read, result }),
            Done::Removed(name, result) => {
                let Lane::Removing { n, waiter } = mem::replace(&mut self.lane, Lane::Idle) else {
                    tracing::error!(%name, "a removal ended that was not running");
                    return;
                };
                let result = self.store.finish_remove(&name, result).map(|()| Delivered::Deleted(n));
                self.outcomes.push_back(Outcome::Removed { waiter, result });
            }
            Done::Checkpointed(result) => {
                if matches!(self.lane, Lane::Checkpointing) {
                    self.lane = Lane::Idle;
                }
                if let Err(e) = self.store.finish_checkpoint(result) {
                    tracing::warn!("store checkpoint failed (tried again later): {}", chat_core::report(&e));
                }
            }
        }
    }

    fn synced(&mut self, now: Instant, result: Result<(), StoreError>) {
        let (replies, kept) = match mem::replace(&mut self.lane, Lane::Idle) {
            Lane::Syncing(replies, kept) => (replies, kept),
            other => {
                self.lane = other;
                (Vec::new(), Vec::new())
            }
        };
        match result {
            Ok(()) => {
                self.failed_at = None;
                self.outcomes.extend(replies.into_iter().map(Outcome::Durable));
                self.store.sync_done();
                self.checkpoint |= self.store.checkpoint_due();
            }
            Err(e) => self.failed(now, (replies, kept), &e),
        }
    }

    /// An open job ended: what waited on the mailbox goes on (a scan made stale by an
    /// eviction is done again).
    fn opened(&mut self, name: Name, result: Result<offline_store::MailboxScan, StoreError>) {
        let transient = matches!(&result, Err(e) if e.is_transient());
        let failed = match result {
            Ok(scan) => {
                self.store.install(&name, scan);
                if self.store.known_usage(&name).is_none() {
                    self.open(name);
                    return;
                }
                false
            }
            Err(e) => {
                tracing::error!(%name, "cannot read the mailbox: {}", chat_core::report(&e));
                true
            }
        };
        for (waiter, failed) in self.parked.learnt(&name, failed) {
            self.outcomes.push_back(Outcome::Resume { waiter, failed, transient });
        }
    }

    /// The next decision: a held reply whose sync ended, a waiter to resume, a read or a
    /// removal that ended.
    pub fn poll_outcome(&mut self) -> Option<Outcome<W>> {
        self.outcomes.pop_front()
    }

    /// The store, taken back (for tests).
    #[cfg(test)]
    pub fn into_store(self) -> S {
        self.store
    }

    /// The store itself, for the driver's shutdown and for tests.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// A sync failed: the replies it held are decided, and the log says how many requests it
    /// concerned and what they get. For lack of space the batch is discarded first (what its
    /// requests are refused for is never delivered later), and its copies for members found
    /// gone are appended again for a later batch; after another failure the appends stay in
    /// the store, for the next sync, and its copies for members found gone join the next
    /// batch's: if that one is discarded for lack of space, the store drops this one's records
    /// with it, and they are appended again once.
    fn failed(&mut self, now: Instant, (replies, kept): (Vec<Held>, Vec<(Name, StoredMessage)>), e: &StoreError) {
        self.unsynced = true;
        self.failed_at = Some(now);
        let (n, no_space, cause) = (replies.len(), e.is_no_space(), chat_core::report(e));
        if n == 0 {
            tracing::error!("store sync failed, no request waits on it (tried again with a later batch): {cause}");
        } else if no_space {
            tracing::error!("disk full: {n} requests answered that what they sent cannot be stored: {cause}");
        } else {
            tracing::error!(
                "store sync failed: {n} requests not acknowledged (their retransmissions try again): {cause}"
            );
        }
        if no_space {
            self.discard(kept);
        } else {
            self.kept.extend(kept);
        }
        let outcome = if no_space { Outcome::NoSpace } else { Outcome::Lost };
        self.outcomes.extend(replies.into_iter().map(outcome));
    }

    /// Drops the batch of a sync that failed for lack of space, then appends again its `kept`
    /// copies (of members found gone, whose senders were ACKed long ago) for a later batch.
    fn discard(&mut self, kept: Vec<(Name, StoredMessage)>) {
        let Discarded { mailboxes, error } = self.store.discard_failed_batch();
        let n: usize = mailboxes.iter().map(|(_, n)| n).sum();
        tracing::error!("disk full: the batch's {n} stored messages are dropped, never to be delivered");
        if let Some(e) = error {
            tracing::error!(
                "the dropped batch is not wholly cut from the disk (a restart may deliver part of it): {}",
                chat_core::report(&e)
            );
        }
        self.shrunk.extend(mailboxes.into_iter().map(|(name, _)| name));
        for (to, msg) in kept {
            if self.store.known_usage(&to).is_none() {
                tracing::error!(%to, from = %msg.from, "channel copy of a member found gone lost with the discarded batch");
                continue;
            }
            match self.append_kept_copy(&to, &msg) {
                Ok(()) => tracing::info!(%to, from = %msg.from, "channel copy of the discarded batch appended again"),
                Err(e) => tracing::error!(%to, from = %msg.from, "channel copy lost with the discarded batch: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
