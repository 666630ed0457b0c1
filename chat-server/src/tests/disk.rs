//! The store under the core, as the tests see it: [`TestStore`] is a [`MemStore`] whose disk
//! can be made full and whose mailboxes can be unknown (to be learnt by an open job), and which
//! panics if the core calls a blocking method or makes it scan a mailbox inline: so every core
//! test checks that no handler touches the disk. Then the core's answers when the disk is full
//! (defect 4: a full disk got silence).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io;
use std::rc::Rc;
use std::sync::OnceLock;

use offline_store::{
    Appended, CheckpointJob, Checkpointed, Discarded, MailboxScan, OpenJob, ReadJob, RemoveJob, Removed, SyncJob, Usage,
};

use super::*;

/// A [`MemStore`] whose syncs fail with `ENOSPC` while its [`Disk`] is full, and whose
/// mailboxes the test (or an eviction) can make unknown. Its blocking methods panic, and so
/// does any use of an unknown mailbox but an open job: the core must learn it by a job first.
#[derive(Debug)]
pub(super) struct TestStore {
    inner: MemStore,
    disk: Disk,
}

/// The knobs of a [`TestStore`], shared with the test.
#[derive(Debug, Clone, Default)]
pub(super) struct Disk {
    full: Rc<Cell<bool>>,
    unknown: Rc<RefCell<HashSet<Name>>>,
}

impl Disk {
    /// The disk is full (`true`) or has room again.
    pub(super) fn set_full(&self, full: bool) {
        self.full.set(full);
    }

    /// The store forgets `who`'s mailbox, as a file store after a restart or an eviction.
    pub(super) fn forget(&self, who: &str) {
        self.unknown.borrow_mut().insert(name(who));
    }

    /// Whether the store knows `who`'s mailbox.
    pub(super) fn knows(&self, who: &str) -> bool {
        !self.unknown.borrow().contains(&name(who))
    }
}

impl TestStore {
    pub(super) fn new(limits: Limits) -> (Self, Disk) {
        let disk = Disk::default();
        (Self { inner: MemStore::new(limits), disk: disk.clone() }, disk)
    }

    /// `who`'s stored messages, for the test to look at.
    pub(super) fn messages(&mut self, who: &Name) -> Vec<StoredMessage> {
        self.inner.load(who).unwrap_or_default()
    }

    /// Panics if `to`'s mailbox is not known: the store would scan it on the caller's thread.
    fn known(&self, to: &Name, what: &str) {
        assert!(!self.disk.unknown.borrow().contains(to), "{what} of {to}'s mailbox, not known: a scan inline");
    }
}

/// A blocking store call: the core must never make one.
fn blocking(what: &str) -> ! {
    panic!("the core called the blocking {what}: disk work on the event loop")
}

/// The error of a write to a full disk.
pub(super) fn no_space() -> StoreError {
    StoreError::Io { op: "write", path: "bob".into(), source: io::Error::from_raw_os_error(28) }
}

impl Store for TestStore {
    fn append_once(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError> {
        self.known(to, "append");
        self.inner.append_once(to, msg)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        blocking("sync")
    }

    fn finish_sync(&mut self) -> Result<(), StoreError> {
        blocking("finish_sync (with its checkpoint)")
    }

    fn remove_first(&mut self, _: &Name, _: usize) -> Result<(), StoreError> {
        blocking("remove_first")
    }

    fn usage(&mut self, _: &Name) -> Result<Usage, StoreError> {
        blocking("usage")
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        blocking("checkpoint")
    }

    fn start_sync(&mut self) -> Result<Option<SyncJob>, StoreError> {
        // As a file store's whose sync fails for lack of space: its batch is handed out, then
        // the failure comes (the core discards the batch, or the appends stay for the next sync).
        if self.disk.full.get() {
            drop(self.inner.start_sync());
            Err(no_space())
        } else {
            self.inner.start_sync()
        }
    }

    fn sync_done(&mut self) {
        self.inner.sync_done();
    }

    fn discard_failed_batch(&mut self) -> Discarded {
        self.inner.discard_failed_batch()
    }

    fn holds_durable(&self, to: &Name, msg: &StoredMessage) -> bool {
        self.inner.holds_durable(to, msg)
    }

    fn checkpoint_job(&mut self) -> Result<CheckpointJob, StoreError> {
        self.inner.checkpoint_job()
    }

    fn finish_checkpoint(&mut self, result: Result<Checkpointed, StoreError>) -> Result<(), StoreError> {
        self.inner.finish_checkpoint(result)
    }

    fn load(&mut self, _: &Name) -> Result<Vec<StoredMessage>, StoreError> {
        blocking("load")
    }

    fn open_job(&mut self, to: &Name) -> OpenJob {
        self.inner.open_job(to)
    }

    fn install(&mut self, to: &Name, scan: MailboxScan) {
        self.disk.unknown.borrow_mut().remove(to);
        self.inner.install(to, scan);
    }

    fn known_usage(&self, to: &Name) -> Option<Usage> {
        if self.disk.unknown.borrow().contains(to) { None } else { self.inner.known_usage(to) }
    }

    fn id_at(&self, to: &Name, index: usize) -> Option<MsgId> {
        if self.disk.unknown.borrow().contains(to) { None } else { self.inner.id_at(to, index) }
    }

    fn read_job(&mut self, to: &Name, index: usize) -> Result<Option<ReadJob>, StoreError> {
        self.known(to, "read_job");
        self.inner.read_job(to, index)
    }

    fn remove_first_job(&mut self, to: &Name, n: usize) -> Result<RemoveJob, StoreError> {
        self.known(to, "remove_first_job");
        self.inner.remove_first_job(to, n)
    }

    fn finish_remove(&mut self, to: &Name, result: Result<Removed, StoreError>) -> Result<(), StoreError> {
        self.inner.finish_remove(to, result)
    }

    fn note_owed(&mut self, owed: &offline_store::OwedChannel) -> Result<(), StoreError> {
        self.inner.note_owed(owed)
    }

    fn owed_done(&mut self, from: &Name, id: MsgId) {
        self.inner.owed_done(from, id);
    }

    fn owed(&self) -> Vec<offline_store::OwedChannel> {
        self.inner.owed()
    }

    fn evict(&mut self, to: &Name) {
        self.disk.unknown.borrow_mut().insert(to.clone());
        self.inner.evict(to);
    }
}

/// Runs `f` and returns what it logged at `WARN` and above, with its result.
///
/// One subscriber for the whole test binary (a subscriber set per test can miss events whose
/// callsite another thread saw first), writing to a buffer of the thread that logs.
fn logged<T>(f: impl FnOnce() -> T) -> (String, T) {
    static GLOBAL: OnceLock<()> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(|| ThreadSink)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
    LOG.with_borrow_mut(Vec::clear);
    let out = f();
    let bytes = LOG.with_borrow_mut(std::mem::take);
    (String::from_utf8_lossy(&bytes).into_owned(), out)
}

thread_local! {
    static LOG: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct ThreadSink;

impl io::Write for ThreadSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        LOG.with_borrow_mut(|log| log.extend_from_slice(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_save_the_full_disk_cannot_take_is_refused_the_log_says_so_and_after_it_recovers_a_save_is_acked() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    f.disk.set_full(true);
    let (log, (id, out)) = logged(|| f.save(("alice", ALICE), "bob", "lost"));
    assert_eq!(out, vec![(ALICE, Datagram::Refused { id, reason: Refusal::StorageUnavailable })]);
    assert!(log.contains("disk full: 1 requests answered that what they sent cannot be stored"), "{log}");
    assert!(!log.contains(" 0 requests"), "{log}");
    let again = f.save_request(id, "alice", "bob", "lost");
    assert_eq!(f.recv(ALICE, again), out, "the retransmission gets the same answer");

    f.disk.set_full(false);
    let (id, out) = f.save(("alice", ALICE), "bob", "kept");
    assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    let texts: Vec<String> = f.stored("bob").into_iter().map(|(_, _, text)| text).collect();
    assert!(texts.contains(&"kept".to_owned()), "{texts:?}");
}

#[test]
fn a_sync_job_that_fails_for_lack_of_space_refuses_the_saves_it_covered() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    let request = f.save_request(MsgId(500), "alice", "bob", "hi");
    f.server.handle_datagram(f.now, addr(ALICE), request);
    let job = f.lane_job().expect("a sync starts");
    f.server.handle_job_done(f.now, job.fail(no_space()));
    let refused = Datagram::Refused { id: MsgId(500), reason: Refusal::StorageUnavailable };
    assert_eq!(f.drain(), vec![(ALICE, refused)]);
}

#[test]
fn a_channel_message_whose_offline_copies_the_full_disk_cannot_keep_names_those_members() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB), ("carol", CAROL)]);
    f.dereg("carol", CAROL);
    f.disk.set_full(true);
    let id = f.id();
    let out = f.recv(ALICE, f.channel_send(id, "alice", "all"));
    assert!(
        out.contains(&(ALICE, Datagram::ChannelPartial { id, full: vec![], unstored: vec![name("carol")] })),
        "{out:?}"
    );
    assert!(out.iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::Channel { .. })), "bob still gets it");
}

#[test]
fn a_save_refused_for_lack_of_space_is_never_delivered_later() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    f.disk.set_full(true);
    let (id, out) = f.save(("alice", ALICE), "bob", "refused");
    assert_eq!(out, vec![(ALICE, Datagram::Refused { id, reason: Refusal::StorageUnavailable })]);
    // The disk has room again; another save goes through (and syncs whatever the store holds).
    f.disk.set_full(false);
    let (id, out) = f.save(("alice", ALICE), "bob", "kept");
    assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    let texts: Vec<String> = f.stored("bob").into_iter().map(|(_, _, text)| text).collect();
    assert_eq!(texts, ["kept"], "alice was told 'refused' was not saved, yet bob will be shown it");
}

#[test]
fn a_duplicate_of_a_durable_save_in_a_batch_that_fails_for_lack_of_space_is_acked() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    let (id, out) = f.save(("alice", ALICE), "bob", "once");
    assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    f.disk.set_full(true);
    // The same message (sender and id) in another request, as after a server restart.
    let Datagram::Save { from, secret, to, sealed, force, .. } = f.save_request(id, "alice", "bob", "once") else {
        panic!("a save")
    };
    let again = Datagram::Save { id: MsgId(900), msg: MsgId(id.0 + 1000), from, secret, to, sealed, force };
    assert_eq!(f.recv(ALICE, again), vec![(ALICE, Datagram::Ack { id: MsgId(900) })], "it is stored");
    f.disk.set_full(false);
    let texts: Vec<String> = f.stored("bob").into_iter().map(|(_, _, text)| text).collect();
    assert_eq!(texts, ["once"]);
}

#[test]
fn a_fetch_past_the_end_of_a_mailbox_a_discarded_batch_shrank_makes_the_client_register_again() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    let (id, out) = f.save(("alice", ALICE), "bob", "one");
    assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    f.disk.set_full(true);
    // A save appended, and bob registers before its sync runs: the count includes it.
    let id = f.id();
    f.server.handle_datagram(f.now, addr(ALICE), f.save_request(id, "alice", "bob", "two"));
    let reg = f.id();
    f.server.handle_datagram(f.now, addr(BOB), f.reg(reg, "bob"));
    f.commit();
    let out = f.drain();
    assert!(out.iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::Registered { stored: 2, .. })), "{out:?}");
    assert!(out.contains(&(ALICE, Datagram::Refused { id, reason: Refusal::StorageUnavailable })), "{out:?}");
    f.disk.set_full(false);
    let fetch = f.id();
    let out = f.recv(BOB, Datagram::Fetch { id: fetch, index: 1 });
    assert_eq!(out, vec![(BOB, Datagram::Refused { id: fetch, reason: Refusal::NotRegistered })], "not silence");
    let reg = f.id();
    let out = f.recv(BOB, f.reg(reg, "bob"));
    assert!(matches!(out[..], [(BOB, Datagram::Registered { stored: 1, .. })]), "{out:?}");
    let fetch = f.id();
    assert_eq!(f.recv(BOB, Datagram::Fetch { id: fetch, index: 1 }), vec![], "past the end of a true count");
}
