//! The storage port's lane and held replies, over a store in memory.

use super::*;
use offline_store::{Limits, MemStore};

const TO: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

fn message(msg: u64) -> (Name, StoredMessage) {
    let bob = Name::new("bob").expect("name");
    let text = chat_proto::Text::new("hi").expect("text");
    let msg = StoredMessage {
        id: MsgId(msg),
        from: bob.clone(),
        origin: chat_proto::Origin::Direct,
        at: chrono::DateTime::UNIX_EPOCH,
        body: text.into(),
    };
    (bob, msg)
}

/// Appends a message with id `msg` (a store keeps one record per id).
fn append<W>(s: &mut Storage<MemStore, W>, msg: u64) {
    let (bob, msg) = message(msg);
    s.append(&bob, &msg).expect("append");
}

/// Appends a copy with id `msg` that no reply waits on.
fn append_copy<W>(s: &mut Storage<MemStore, W>, msg: u64) {
    let (bob, msg) = message(msg);
    s.append_copy(&bob, &msg).expect("append");
}

fn failed() -> StoreError {
    StoreError::Io { op: "sync", path: "journal".into(), source: std::io::Error::other("gone") }
}

/// A sync that failed for lack of space.
fn no_space() -> StoreError {
    StoreError::Io { op: "sync", path: "journal".into(), source: std::io::Error::from_raw_os_error(28) }
}

/// Holds the answer to save request `id`: an `ack`, or `storage_unavailable` if the disk is full.
fn hold_save<S: Store, W>(s: &mut Storage<S, W>, id: u64) {
    let refused = Datagram::Refused { id: MsgId(id), reason: chat_proto::Refusal::StorageUnavailable };
    s.hold(TO, MsgId(id), Datagram::Ack { id: MsgId(id) }, refused);
}

/// The ids in `to`'s mailbox.
fn ids<S: Store, W>(s: &mut Storage<S, W>, to: &Name) -> Vec<MsgId> {
    s.store_mut().load(to).expect("load").iter().map(|m| m.id).collect()
}

/// Runs the job from `poll_job`, which must be a sync, and hands it back.
fn sync_job(s: &mut Storage<MemStore, ()>) -> Option<Job> {
    let job = s.poll_job(Instant::now())?;
    assert_eq!(job.kind(), crate::JobKind::Sync);
    Some(job)
}

#[test]
fn a_held_reply_leaves_after_its_sync_and_is_lost_if_the_sync_fails() {
    let mut s = Storage::new(MemStore::new(Limits::default()));
    let now = Instant::now();
    assert!(sync_job(&mut s).is_none(), "nothing held, nothing to sync");
    append(&mut s, 7);
    s.hold(TO, MsgId(1), Datagram::Ack { id: MsgId(1) }, Datagram::Ack { id: MsgId(1) });
    let job = sync_job(&mut s).expect("a sync");
    append(&mut s, 8);
    s.hold(TO, MsgId(2), Datagram::Ack { id: MsgId(2) }, Datagram::Ack { id: MsgId(2) });
    assert!(s.poll_job(now).is_none(), "one sync at a time");
    assert!(s.poll_outcome().is_none());
    s.handle_job_done(now, job.run().done);
    assert!(matches!(s.poll_outcome(), Some(Outcome::Durable(Held { id: MsgId(1), .. }))));
    assert!(s.poll_outcome().is_none(), "the second waits for the next sync");
    let job = sync_job(&mut s).expect("the next sync");
    s.handle_job_done(now, job.fail(failed()).done);
    assert!(matches!(s.poll_outcome(), Some(Outcome::Lost(Held { id: MsgId(2), .. }))));
}

#[test]
fn a_removal_waits_for_the_sync_in_the_lane_and_a_failed_sync_of_copies_waits_for_a_later_batch() {
    let mut s: Storage<MemStore, u8> = Storage::new(MemStore::new(Limits::default()));
    let (t0, later) = (Instant::now(), Instant::now() + std::time::Duration::from_millis(1));
    append(&mut s, 7);
    s.hold(TO, MsgId(1), Datagram::Ack { id: MsgId(1) }, Datagram::Ack { id: MsgId(1) });
    let sync = s.poll_job(t0).expect("a sync");
    s.remove_first(Name::new("bob").expect("name"), 1, MsgId(7), 9);
    assert!(s.poll_job(t0).is_none(), "the removal waits for the lane");
    s.handle_job_done(t0, sync.run().done);
    let remove = s.poll_job(t0).expect("the removal");
    assert_eq!(remove.kind(), crate::JobKind::Remove);
    s.handle_job_done(t0, remove.run().done);
    let outcomes: Vec<_> = std::iter::from_fn(|| s.poll_outcome()).collect();
    assert!(
        matches!(
            outcomes[..],
            [Outcome::Durable(_), Outcome::Removed { waiter: 9, result: Ok(Delivered::Deleted(1)) }]
        ),
        "{outcomes:?}"
    );
    append_copy(&mut s, 8);
    let sync = s.poll_job(t0).expect("a sync for the copy");
    s.handle_job_done(t0, sync.fail(failed()).done);
    assert!(s.poll_job(t0).is_none() && s.unsynced, "not again in the same batch");
    let _nothing_to_wait_for_in_memory = s.poll_job(later);
    assert!(!s.unsynced, "again in a later one");
}

#[test]
fn a_batch_that_fails_for_lack_of_space_is_dropped_but_its_copies_for_members_found_gone_are_kept() {
    let mut s = Storage::new(MemStore::new(Limits::default()));
    let now = Instant::now();
    let (bob, gone) = message(5);
    s.append_kept_copy(&bob, &gone).expect("append");
    append(&mut s, 6);
    hold_save(&mut s, 1);
    append_copy(&mut s, 7);
    let job = sync_job(&mut s).expect("a sync");
    s.handle_job_done(now, job.fail(no_space()).done);
    assert!(matches!(s.poll_outcome(), Some(Outcome::NoSpace(Held { id: MsgId(1), .. }))));
    assert_eq!(ids(&mut s, &bob), [MsgId(5)], "the batch is dropped but the copy whose sender was ACKed long ago");
    let later = now + std::time::Duration::from_millis(1);
    let job = s.poll_job(later).expect("the copy is synced with a later batch");
    s.handle_job_done(later, job.run().done);
    assert!(s.store_mut().holds_durable(&bob, &gone));
    assert_eq!(ids(&mut s, &bob), [MsgId(5)]);
}

#[test]
fn a_kept_copy_survives_a_discard_when_its_member_left_during_the_sync() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = offline_store::FileStore::open(tmp.path(), Limits::default()).expect("open");
    let mut s: Storage<offline_store::FileStore, ()> = Storage::new(store);
    let now = Instant::now();
    let (bob, gone) = message(5);
    s.append_kept_copy(&bob, &gone).expect("append");
    let job = s.poll_job(now).expect("a sync");
    s.evict(&bob); // bob deregisters while the sync runs
    s.handle_job_done(now, job.fail(no_space()).done);
    let later = now + std::time::Duration::from_millis(1);
    if let Some(job) = s.poll_job(later) {
        s.handle_job_done(later, job.run().done);
    }
    assert_eq!(ids(&mut s, &bob), [MsgId(5)], "the copy whose sender was ACKed long ago is kept");
}

#[test]
fn a_kept_copy_of_a_failed_sync_is_stored_once_after_a_later_batch_is_discarded() {
    let mut s = Storage::new(MemStore::new(Limits::default()));
    let now = Instant::now();
    let (bob, gone) = message(5);
    s.append_kept_copy(&bob, &gone).expect("append");
    let job = sync_job(&mut s).expect("a sync");
    s.handle_job_done(now, job.fail(failed()).done); // EIO: the copy stays, kept for later
    let later = now + std::time::Duration::from_millis(1);
    append(&mut s, 6);
    hold_save(&mut s, 1);
    let job = s.poll_job(later).expect("a sync");
    s.handle_job_done(later, job.fail(no_space()).done);
    assert!(matches!(s.poll_outcome(), Some(Outcome::NoSpace(Held { id: MsgId(1), .. }))));
    assert_eq!(ids(&mut s, &bob), [MsgId(5)], "both batches dropped, the copy appended again once");
    let last = later + std::time::Duration::from_millis(1);
    let job = s.poll_job(last).expect("the copy is synced with a later batch");
    s.handle_job_done(last, job.run().done);
    assert!(s.store_mut().holds_durable(&bob, &gone));
    assert_eq!(ids(&mut s, &bob), [MsgId(5)]);
}
