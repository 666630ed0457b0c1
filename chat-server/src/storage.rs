//! The storage port: the one component that owns the [`Store`] and the state of its syncs. Every
//! store call of the core goes through it. It holds the replies that may leave only once what
//! they acknowledge is durable, starts one sync at a time (the replies held meanwhile wait for
//! the next), and hands each held reply back as an [`Outcome`] when its sync ends. It also
//! keeps the mailboxes being fetched after `reg`. It decides nothing about requests and sends
//! nothing itself.

use std::collections::{HashMap, VecDeque};
use std::mem;
use std::net::SocketAddr;

use chat_proto::{Datagram, MsgId, Name, StoredMessage};
use offline_store::{Store, StoreError, SyncJob};

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

/// What became of a held reply.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Its sync succeeded: it may leave.
    Durable(Held),
    /// Its sync failed: nothing it acknowledges is known to be on disk. The request is
    /// forgotten, so that its retransmission tries again.
    Lost(Held),
    /// Its sync failed because the disk is full: it gets its `no_space` answer.
    NoSpace(Held),
}

/// What a `fetch_done` did to the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// The first `n` messages were deleted.
    Deleted(usize),
    /// The messages named are no longer at the front (or there are none): nothing deleted.
    NotAtFront,
}

/// Where the syncs stand.
#[derive(Debug)]
enum Sync {
    Idle,
    /// A sync is running; these replies wait on it.
    InFlight(Vec<Held>),
}

/// The store and its sync state.
#[derive(Debug)]
pub(crate) struct Storage<S> {
    store: S,
    /// Replies waiting for the next sync.
    held: Vec<Held>,
    sync: Sync,
    /// Messages were appended that no held reply waits on (channel copies): sync anyway.
    unsynced: bool,
    outcomes: VecDeque<Outcome>,
    /// Stored messages being fetched by a client that just registered.
    fetches: HashMap<Name, Vec<StoredMessage>>,
}

impl<S: Store> Storage<S> {
    pub fn new(store: S) -> Self {
        Self {
            store,
            held: Vec::new(),
            sync: Sync::Idle,
            unsynced: false,
            outcomes: VecDeque::new(),
            fetches: HashMap::new(),
        }
    }

    /// Appends `msg` to `to`'s mailbox; a reply that acknowledges it is [`Storage::hold`]en.
    ///
    /// # Errors
    /// As [`Store::append`].
    pub fn append(&mut self, to: &Name, msg: &StoredMessage) -> Result<(), StoreError> {
        self.store.append(to, msg)
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

    /// `reply` to request `id` of `to` leaves once the next sync has ended well; `no_space`
    /// instead if that sync fails because the disk is full.
    pub fn hold(&mut self, to: SocketAddr, id: MsgId, reply: Datagram, no_space: Datagram) {
        self.held.push(Held { to, id, reply, no_space });
    }

    /// How many messages `to`'s mailbox holds (0 if it cannot be read).
    pub fn count(&mut self, to: &Name) -> u32 {
        self.store.usage(to).map_or(0, |u| u32::try_from(u.count).unwrap_or(u32::MAX))
    }

    /// `to`'s stored messages (none, logged, if the mailbox cannot be read).
    fn load(&mut self, to: &Name) -> Vec<StoredMessage> {
        self.store.load(to).unwrap_or_else(|e| {
            tracing::error!(%to, "cannot read stored messages: {e}");
            Vec::new()
        })
    }

    /// `to` registered: its mailbox is opened for it to fetch. Returns how many messages it
    /// holds (with none, there is nothing to fetch).
    pub fn open_mailbox(&mut self, to: &Name) -> u32 {
        let stored = self.load(to);
        let count = u32::try_from(stored.len()).unwrap_or(u32::MAX);
        if stored.is_empty() {
            self.fetches.remove(to);
        } else {
            self.fetches.insert(to.clone(), stored);
        }
        count
    }

    /// `to` went offline: its mailbox is no longer being fetched.
    pub fn close_mailbox(&mut self, to: &Name) {
        self.fetches.remove(to);
    }

    /// Stored message `index` of `to`'s mailbox.
    pub fn stored(&mut self, to: &Name, index: u32) -> Option<StoredMessage> {
        if !self.fetches.contains_key(to) {
            // A restart forgot what was being fetched: the mailbox still has it.
            let msgs = self.load(to);
            if !msgs.is_empty() {
                self.fetches.insert(to.clone(), msgs);
            }
        }
        self.fetches.get(to).and_then(|msgs| msgs.get(usize::try_from(index).ok()?)).cloned()
    }

    /// `to` has the first `count` stored messages, the last of them `last`: they are deleted if
    /// they are still at the front, and the fetch is over.
    ///
    /// # Errors
    /// As [`Store::remove_first`]; the fetch then goes on.
    pub fn deliver_first(&mut self, to: &Name, count: u32, last: MsgId) -> Result<Delivered, StoreError> {
        let msgs = match self.fetches.remove(to) {
            Some(msgs) => msgs,
            None => self.load(to), // a restart forgot them
        };
        let n = usize::try_from(count).unwrap_or(usize::MAX).min(msgs.len());
        if n == 0 || msgs[n - 1].id != last {
            return Ok(Delivered::NotAtFront);
        }
        if let Err(e) = self.store.remove_first(to, n) {
            self.fetches.insert(to.clone(), msgs);
            return Err(e);
        }
        Ok(Delivered::Deleted(n))
    }

    /// Starts making the batch's appends durable, unless a sync is in flight or nothing waits.
    /// Returns the disk wait for the driver to run and report with [`Storage::handle_synced`];
    /// when there is none to run, the held replies are decided at once ([`Storage::poll_outcome`]).
    pub fn start_sync(&mut self) -> Option<SyncJob> {
        if matches!(self.sync, Sync::InFlight(_)) || (!self.unsynced && self.held.is_empty()) {
            return None;
        }
        let replies = mem::take(&mut self.held);
        match self.store.start_sync() {
            Ok(Some(job)) => {
                self.unsynced = false;
                self.sync = Sync::InFlight(replies);
                Some(job)
            }
            Ok(None) => {
                self.unsynced = false;
                self.outcomes.extend(replies.into_iter().map(Outcome::Durable));
                None
            }
            Err(e) => {
                self.failed(replies, &e);
                None
            }
        }
    }

    /// The sync from [`Storage::start_sync`] has run with `result`.
    pub fn handle_synced(&mut self, result: Result<(), StoreError>) {
        let replies = match mem::replace(&mut self.sync, Sync::Idle) {
            Sync::InFlight(replies) => replies,
            Sync::Idle => Vec::new(),
        };
        match result {
            Ok(()) => {
                self.outcomes.extend(replies.into_iter().map(Outcome::Durable));
                if let Err(e) = self.store.finish_sync() {
                    tracing::warn!("store housekeeping after a sync failed (tried again later): {e}");
                }
            }
            Err(e) => self.failed(replies, &e),
        }
    }

    /// The next held reply whose sync has ended.
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcomes.pop_front()
    }

    /// The store itself, for the driver's shutdown and for tests.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// A sync failed: the replies it held are decided, and the log says how many requests it
    /// concerned and what they get (the appends stay in the store, for the next sync).
    fn failed(&mut self, replies: Vec<Held>, e: &StoreError) {
        self.unsynced = true;
        let (n, no_space, cause) = (replies.len(), e.is_no_space(), chat_core::report(e));
        if n == 0 {
            tracing::error!("store sync failed, no request waits on it (tried again with the next batch): {cause}");
        } else if no_space {
            tracing::error!("disk full: {n} requests answered that what they sent cannot be stored: {cause}");
        } else {
            tracing::error!(
                "store sync failed: {n} requests not acknowledged (their retransmissions try again): {cause}"
            );
        }
        let outcome = if no_space { Outcome::NoSpace } else { Outcome::Lost };
        self.outcomes.extend(replies.into_iter().map(outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offline_store::{Limits, MemStore};

    const TO: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

    /// Appends a message with id `msg` (a store keeps one record per id).
    fn append(s: &mut Storage<MemStore>, msg: u64) {
        let bob = Name::new("bob").expect("name");
        let text = chat_proto::Text::new("hi").expect("text");
        let msg = StoredMessage {
            id: MsgId(msg),
            from: bob.clone(),
            origin: chat_proto::Origin::Direct,
            at: chrono::DateTime::UNIX_EPOCH,
            text,
        };
        s.append(&bob, &msg).expect("append");
    }

    fn failed() -> StoreError {
        StoreError::Io { op: "sync", path: "journal".into(), source: std::io::Error::other("gone") }
    }

    #[test]
    fn a_held_reply_leaves_after_its_sync_and_is_lost_if_the_sync_fails() {
        let mut s = Storage::new(MemStore::new(Limits::default()));
        assert!(s.start_sync().is_none(), "nothing held, nothing to sync");
        append(&mut s, 7);
        s.hold(TO, MsgId(1), Datagram::Ack { id: MsgId(1) }, Datagram::Ack { id: MsgId(1) });
        let job = s.start_sync().expect("a sync");
        append(&mut s, 8);
        s.hold(TO, MsgId(2), Datagram::Ack { id: MsgId(2) }, Datagram::Ack { id: MsgId(2) });
        assert!(s.start_sync().is_none(), "one sync at a time");
        assert!(s.poll_outcome().is_none());
        s.handle_synced(job.run());
        assert!(matches!(s.poll_outcome(), Some(Outcome::Durable(Held { id: MsgId(1), .. }))));
        assert!(s.poll_outcome().is_none(), "the second waits for the next sync");
        let _job = s.start_sync().expect("the next sync");
        s.handle_synced(Err(failed()));
        assert!(matches!(s.poll_outcome(), Some(Outcome::Lost(Held { id: MsgId(2), .. }))));
    }
}
