//! The store under the core, as the tests see it: [`TestStore`] is a [`MemStore`] whose disk
//! can be made full, and the core's answers when it is (defect 4: a full disk got silence).

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use offline_store::{
    Appended, CheckpointJob, Checkpointed, MailboxScan, OpenJob, ReadJob, RemoveJob, Removed, SyncJob, Usage,
};

use super::*;

/// A [`MemStore`] whose syncs fail with `ENOSPC` while its [`Disk`] is full.
#[derive(Debug)]
pub(super) struct TestStore {
    inner: MemStore,
    disk: Disk,
}

/// The knobs of a [`TestStore`], shared with the test.
#[derive(Debug, Clone, Default)]
pub(super) struct Disk {
    full: Rc<Cell<bool>>,
}

impl Disk {
    /// The disk is full (`true`) or has room again.
    pub(super) fn set_full(&self, full: bool) {
        self.full.set(full);
    }
}

impl TestStore {
    pub(super) fn new(limits: Limits) -> (Self, Disk) {
        let disk = Disk::default();
        (Self { inner: MemStore::new(limits), disk: disk.clone() }, disk)
    }
}

/// The error of a write to a full disk.
pub(super) fn no_space() -> StoreError {
    StoreError::Io { op: "write", path: "bob".into(), source: io::Error::from_raw_os_error(28) }
}

impl Store for TestStore {
    fn append_once(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError> {
        self.inner.append_once(to, msg)
    }

    fn start_sync(&mut self) -> Result<Option<SyncJob>, StoreError> {
        // As a file store's: the appends stay, for the next sync.
        if self.disk.full.get() { Err(no_space()) } else { self.inner.start_sync() }
    }

    fn checkpoint_job(&mut self) -> Result<CheckpointJob, StoreError> {
        self.inner.checkpoint_job()
    }

    fn finish_checkpoint(&mut self, result: Result<Checkpointed, StoreError>) -> Result<(), StoreError> {
        self.inner.finish_checkpoint(result)
    }

    fn load(&mut self, to: &Name) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner.load(to)
    }

    fn open_job(&mut self, to: &Name) -> OpenJob {
        self.inner.open_job(to)
    }

    fn install(&mut self, to: &Name, scan: MailboxScan) {
        self.inner.install(to, scan);
    }

    fn known_usage(&self, to: &Name) -> Option<Usage> {
        self.inner.known_usage(to)
    }

    fn id_at(&self, to: &Name, index: usize) -> Option<MsgId> {
        self.inner.id_at(to, index)
    }

    fn read_job(&mut self, to: &Name, index: usize) -> Result<Option<ReadJob>, StoreError> {
        self.inner.read_job(to, index)
    }

    fn remove_first_job(&mut self, to: &Name, n: usize) -> Result<RemoveJob, StoreError> {
        self.inner.remove_first_job(to, n)
    }

    fn finish_remove(&mut self, to: &Name, result: Result<Removed, StoreError>) -> Result<(), StoreError> {
        self.inner.finish_remove(to, result)
    }

    fn evict(&mut self, to: &Name) {
        self.inner.evict(to);
    }
}

/// Runs `f` and returns what it logged (at every level), with its result.
fn logged<T>(f: impl FnOnce() -> T) -> (String, T) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buf);
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || Sink(Arc::clone(&sink)))
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.lock().unwrap_or_else(PoisonError::into_inner).clone();
    (String::from_utf8_lossy(&bytes).into_owned(), out)
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
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
    let job = f.server.commit(f.now).expect("a sync starts");
    drop(job);
    f.server.handle_synced(Err(no_space()));
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
    assert!(out.contains(&(ALICE, Datagram::ChannelPartial { id, full: vec![name("carol")] })), "{out:?}");
    assert!(out.iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::Channel { .. })), "bob still gets it");
}
