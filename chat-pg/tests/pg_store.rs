//! `PgStore` against a real PostgreSQL (`chat_pg::testing`: never skipped): the `Store`
//! semantics, two nodes sharing one database, idempotent removals, and restarts.

use std::time::{Duration, Instant};

use chat_pg::testing::{self, TestDb};
use chat_pg::{Db, PgStore};
use chat_proto::{MsgId, Name, Origin, StoredMessage, Text};
use chrono::DateTime;
use offline_store::{Appended, Fetched, Limits, Store, Usage};

const TIMEOUT: Duration = Duration::from_secs(5);

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

fn msg(i: u32) -> StoredMessage {
    StoredMessage {
        id: MsgId(u64::from(i)),
        from: name("alice"),
        origin: if i % 2 == 0 { Origin::Direct } else { Origin::Channel },
        at: DateTime::from_timestamp(1_800_000_000 + i64::from(i), 0).expect("valid time"),
        body: Text::new(format!("hello number {i} \"quoted\" λ")).expect("valid text").into(),
    }
}

fn msgs(range: std::ops::Range<u32>) -> Vec<StoredMessage> {
    range.map(msg).collect()
}

/// `msg(i)` saved again at another time: same sender and id, another body.
fn again(i: u32) -> StoredMessage {
    StoredMessage { at: DateTime::from_timestamp(1_900_000_000, 0).expect("valid time"), ..msg(i) }
}

fn line_len(i: u32) -> u64 {
    offline_store::record_len(&msg(i)).expect("encodes")
}

fn node(db: &TestDb) -> PgStore {
    node_with(db, Limits::default())
}

fn node_with(db: &TestDb, limits: Limits) -> PgStore {
    PgStore::new(Db::connect(db.url(), TIMEOUT).expect("connect"), limits)
}

fn append_all(store: &mut impl Store, to: &Name, range: std::ops::Range<u32>) {
    for i in range {
        store.append(to, &msg(i)).expect("append");
    }
}

/// What the database holds for `to`, as a node that has just started sees it.
fn stored(db: &TestDb, to: &Name) -> Vec<StoredMessage> {
    node(db).load(to).expect("load")
}

/// Every message of `to`'s mailbox, read one by one through read jobs.
fn read_all(store: &mut impl Store, to: &Name) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    while let Some(job) = store.read_job(to, out.len()).expect("read job") {
        out.push(job.run().expect("read").message().expect("still stored"));
    }
    out
}

fn sql(db: &TestDb, statement: &'static str) {
    let db = Db::connect(db.url(), TIMEOUT).expect("connect");
    db.run(move |pool| async move {
        let client = pool.get().await.expect("a connection");
        client.batch_execute(statement).await.expect("the statement");
    })
    .expect("the database thread");
}

#[test]
fn appends_are_readable_at_once_and_durable_after_the_sync() {
    let db = testing::database();
    let (mut store, bob) = (node(&db), name("bob"));
    append_all(&mut store, &bob, 0..3);
    assert_eq!(read_all(&mut store, &bob), msgs(0..3), "from memory");
    assert_eq!(store.usage(&bob).expect("usage"), Usage { count: 3, bytes: (0..3).map(line_len).sum() });
    assert_eq!(stored(&db, &bob), vec![], "nothing before the sync");
    store.sync().expect("sync");
    assert_eq!(stored(&db, &bob), msgs(0..3));
    assert!(store.holds_durable(&bob, &msg(2)));
    assert_eq!(read_all(&mut store, &bob), msgs(0..3), "from the database");
    assert_eq!(store.id_at(&bob, 2), Some(MsgId(2)));
    assert!(store.read_job(&bob, 3).expect("read job").is_none(), "past the end");
}

#[test]
fn a_batch_is_committed_in_one_transaction() {
    let db = testing::database();
    let (mut store, bob, carol) = (node(&db), name("bob"), name("carol"));
    drop(node(&db)); // the schema exists
    sql(&db, "ALTER TABLE offline_messages ADD CONSTRAINT no_666 CHECK (id <> 666)");
    append_all(&mut store, &bob, 0..3);
    append_all(&mut store, &carol, 3..5);
    store.append(&carol, &msg(666)).expect("append");
    let job = store.start_sync().expect("start").expect("a job");
    let err = job.run().expect_err("the check refuses one row");
    assert!(err.to_string().starts_with("database: commit"), "{err}");
    assert_eq!((stored(&db, &bob), stored(&db, &carol)), (vec![], vec![]), "nothing of the batch is stored");
    let discarded = store.discard_failed_batch();
    assert_eq!(discarded.mailboxes.len(), 2);
    assert_eq!(store.load(&carol).expect("load"), vec![], "the failed batch is out of memory");
    append_all(&mut store, &carol, 5..6);
    store.sync().expect("sync");
    assert_eq!(stored(&db, &carol), msgs(5..6));
}

#[test]
fn the_same_message_taken_by_two_nodes_is_stored_once() {
    let db = testing::database();
    let (mut a, mut b, bob) = (node(&db), node(&db), name("bob"));
    assert_eq!(a.append_once(&bob, &msg(1)).expect("append"), Appended::Stored);
    assert_eq!(b.append_once(&bob, &again(1)).expect("append"), Appended::Stored, "b does not know a's");
    let from_carol = StoredMessage { from: name("carol"), ..msg(1) };
    b.append(&bob, &from_carol).expect("append");
    let (ja, jb) = (a.start_sync().expect("start").expect("job"), b.start_sync().expect("start").expect("job"));
    let (ra, rb) = std::thread::scope(|s| {
        let ra = s.spawn(|| ja.run());
        let rb = s.spawn(|| jb.run());
        (ra.join().expect("thread"), rb.join().expect("thread"))
    });
    ra.expect("a's sync");
    rb.expect("b's sync");
    a.sync_done();
    b.sync_done();
    let held = stored(&db, &bob);
    assert_eq!(held.len(), 2, "alice's id 1 once, carol's id 1 once: {held:?}");
    assert!(held.contains(&from_carol));
    assert_eq!(a.append_once(&bob, &again(1)).expect("append"), Appended::Duplicate, "durable");
}

#[test]
fn a_duplicate_of_a_pending_or_durable_message_stores_nothing() {
    let db = testing::database();
    let limits = Limits { max_messages: 4, ..Limits::default() };
    let (mut store, bob) = (node_with(&db, limits), name("bob"));
    assert_eq!(store.append_once(&bob, &msg(1)).expect("append"), Appended::Stored);
    assert_eq!(store.append_once(&bob, &again(1)).expect("append"), Appended::Duplicate, "pending");
    store.sync().expect("sync");
    assert_eq!(store.append_once(&bob, &again(1)).expect("append"), Appended::Duplicate, "durable");
    append_all(&mut store, &bob, 2..5);
    let full = store.append(&bob, &msg(5)).expect_err("full at four");
    assert_eq!(full.to_string(), "mailbox of bob is full (4 messages)");
    assert_eq!(store.append_once(&bob, &again(4)).expect("append"), Appended::Duplicate, "no error when full");
    store.sync().expect("sync");
    assert_eq!(stored(&db, &bob), msgs(1..5));
}

#[test]
fn a_copy_in_a_sync_not_known_to_succeed_waits_for_the_next_sync() {
    let db = testing::database();
    let (mut store, bob) = (node(&db), name("bob"));
    store.append(&bob, &msg(0)).expect("append");
    drop(store.start_sync().expect("start").expect("a job")); // failed: never run
    assert_eq!(store.append_once(&bob, &again(0)).expect("append"), Appended::Stored, "no ACK on it");
    assert!(!store.holds_durable(&bob, &msg(0)));
    store.sync().expect("the next sync inserts it");
    assert!(store.holds_durable(&bob, &msg(0)));
    assert_eq!(stored(&db, &bob), msgs(0..1), "one copy");
}

#[test]
fn a_removal_deletes_by_key_and_twice_removes_nothing_more() {
    let db = testing::database();
    let (mut a, mut b, bob) = (node(&db), node(&db), name("bob"));
    append_all(&mut a, &bob, 0..5);
    a.sync().expect("sync");
    assert_eq!(b.usage(&bob).expect("b learns the mailbox").count, 5);
    a.remove_first(&bob, 2).expect("remove");
    assert_eq!(stored(&db, &bob), msgs(2..5));
    assert_eq!(read_all(&mut a, &bob), msgs(2..5));
    // b deletes the same first two (its keys): nothing more goes.
    b.remove_first(&bob, 2).expect("remove again");
    assert_eq!(stored(&db, &bob), msgs(2..5));
}

#[test]
fn a_message_another_node_appends_after_the_open_survives_a_removal() {
    let db = testing::database();
    let (mut a, mut b, bob) = (node(&db), node(&db), name("bob"));
    append_all(&mut a, &bob, 0..3);
    a.sync().expect("sync");
    let scan = b.open_job(&bob).run().expect("open");
    b.install(&bob, scan);
    assert_eq!(b.known_usage(&bob).map(|u| u.count), Some(3));
    append_all(&mut a, &bob, 3..4); // after b's open
    a.sync().expect("sync");
    let job = b.remove_first_job(&bob, 100).expect("remove job");
    let done = std::thread::spawn(move || job.run()).join().expect("thread");
    b.finish_remove(&bob, done).expect("removed");
    assert_eq!(stored(&db, &bob), msgs(3..4), "what b never knew stays");
    assert_eq!(b.known_usage(&bob).map(|u| u.count), Some(0));
}

#[test]
fn jobs_run_on_other_threads_while_appends_go_on() {
    let db = testing::database();
    let (mut store, bob) = (node(&db), name("bob"));
    append_all(&mut store, &bob, 0..5);
    store.sync().expect("sync");
    let job = store.remove_first_job(&bob, 2).expect("remove job");
    append_all(&mut store, &bob, 5..7); // while the job is out
    assert!(store.remove_first_job(&bob, 1).is_err(), "one removal at a time");
    let done = std::thread::spawn(move || job.run()).join().expect("thread");
    store.finish_remove(&bob, done).expect("removed");
    assert_eq!(read_all(&mut store, &bob), msgs(2..7));
    let job = store.start_sync().expect("start").expect("a job");
    std::thread::spawn(move || job.run()).join().expect("thread").expect("sync");
    store.sync_done();
    assert_eq!(stored(&db, &bob), msgs(2..7));
    store.evict(&bob);
    assert_eq!(store.known_usage(&bob), None, "evicted");
    assert_eq!(store.usage(&bob).expect("learnt again"), Usage { count: 5, bytes: (2..7).map(line_len).sum() });
    store.checkpoint().expect("a checkpoint has nothing to do");
}

#[test]
fn an_unreachable_database_fails_fast_with_one_line_and_no_password() {
    let started = Instant::now();
    let err = Db::connect("postgres://chat:s3cret@127.0.0.1:1/chat", TIMEOUT).expect_err("nothing listens on port 1");
    let line = err.to_string();
    assert!(line.starts_with("cannot reach PostgreSQL at postgres://chat@127.0.0.1:1/chat: "), "{line}");
    assert!(!line.contains("s3cret") && !line.contains('\n'), "{line}");
    assert!(started.elapsed() < TIMEOUT, "took {:?}", started.elapsed());
    let err = Db::connect("postgres://chat@/chat?host=/nonexistent/dir", TIMEOUT).expect_err("no such socket");
    assert!(err.to_string().starts_with("cannot reach PostgreSQL at postgres://chat@/chat?host=/nonexistent/dir: "));
}

#[test]
fn the_next_sync_after_a_restart_succeeds_and_a_failed_sync_loses_nothing_acknowledged() {
    let db = testing::dedicated();
    let (mut store, bob) = (node(&db), name("bob"));
    append_all(&mut store, &bob, 0..3);
    store.sync().expect("sync"); // acknowledged
    db.restart().expect("restart");
    append_all(&mut store, &bob, 3..5);
    store.sync().expect("the pool reconnects");
    db.stop().expect("stop");
    append_all(&mut store, &bob, 5..7);
    let err = store.sync().expect_err("no server");
    assert!(err.to_string().starts_with("database: commit"), "{err}");
    assert_eq!(store.append_once(&bob, &msg(5)).expect("append"), Appended::Stored, "not known durable");
    db.start().expect("start");
    assert_eq!(stored(&db, &bob), msgs(0..5), "what was acknowledged is there");
    store.sync().expect("the failed batch goes again");
    assert_eq!(stored(&db, &bob), msgs(0..7));
    assert!(store.holds_durable(&bob, &msg(6)));
}

/// An immediate restart is a crash of the database: what a sync committed is there after it,
/// the pool reconnects, and the next sync succeeds.
#[test]
fn what_was_synced_survives_an_immediate_restart() {
    let db = testing::dedicated();
    let (mut store, bob) = (node(&db), name("bob"));
    append_all(&mut store, &bob, 0..3);
    store.sync().expect("sync");
    db.restart_immediate().expect("restart -m immediate");
    append_all(&mut store, &bob, 3..5);
    store.sync().expect("the pool reconnects");
    assert_eq!(stored(&db, &bob), msgs(0..5));
}

#[test]
fn a_newer_schema_is_refused() {
    let db = testing::database();
    drop(node(&db));
    sql(&db, "UPDATE meta SET schema_version = 99");
    let err = Db::connect(db.url(), TIMEOUT).expect_err("newer schema");
    let known = format!("has schema version 99; this build knows up to {}", chat_pg::schema::SCHEMA_VERSION);
    assert!(err.to_string().contains(&known), "{err}");
}

#[test]
fn jobs_run_inline_inside_a_current_thread_runtime() {
    let db = testing::database();
    let (mut store, bob) = (node(&db), name("bob"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        append_all(&mut store, &bob, 0..2);
        store.sync().expect("a blocking call from inside a runtime does not nest runtimes");
        assert_eq!(read_all(&mut store, &bob), msgs(0..2));
        let db = Db::connect(db.url(), TIMEOUT).expect("connect");
        let rows = db
            .run_async(|pool| async move {
                let client = pool.get().await.expect("a connection");
                client.query_one("SELECT count(*) FROM offline_messages", &[]).await.expect("count").get::<_, i64>(0)
            })
            .await
            .expect("the database thread");
        assert_eq!(rows, 2);
    });
}

/// A save is ACKed on its commit: the store's connections commit synchronously even when the
/// URL (or the server's configuration) asks for asynchronous commits.
#[test]
fn commits_wait_for_the_wal_flush_whatever_the_url_asks() {
    let db = testing::database();
    let sep = if db.url().contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}options=-c%20synchronous_commit%3Doff", db.url());
    let store_db = Db::connect(&url, TIMEOUT).expect("connects");
    let setting = store_db
        .run(|pool| async move {
            let client = pool.get().await.expect("a connection");
            let row = client.query_one("SHOW synchronous_commit", &[]).await.expect("show");
            row.get::<_, String>(0)
        })
        .expect("runs");
    assert_eq!(setting, "on");
}

/// A message from `from` with id `i` (another sender than [`msg`]'s).
fn msg_from(from: &str, i: u32) -> StoredMessage {
    StoredMessage { from: name(from), ..msg(i) }
}

/// Issue 17, 2: b learnt bob's mailbox, then a delivered (removed) part of it. b's reads of
/// those keys find them gone, not an error, and the index still counts; learnt again (an
/// eviction, as at a registration), b's view is the database's.
#[test]
fn a_message_another_node_removed_is_read_as_gone_and_an_eviction_learns_the_mailbox_again() {
    let db = testing::database();
    let (mut a, mut b, bob) = (node(&db), node(&db), name("bob"));
    append_all(&mut b, &bob, 0..3);
    b.sync().expect("sync");
    a.remove_first(&bob, 2).expect("a delivers the first two");

    assert_eq!(b.known_usage(&bob).map(|u| u.count), Some(3), "b's view is stale");
    let mut read = Vec::new();
    for i in 0..3 {
        let job = b.read_job(&bob, i).expect("read job").expect("within b's count");
        read.push(job.run().expect("a gone message is no error"));
    }
    assert_eq!(read, [Fetched::Gone(MsgId(0)), Fetched::Gone(MsgId(1)), Fetched::Message(msg(2))]);

    b.evict(&bob);
    assert_eq!(b.known_usage(&bob), None, "evicted");
    assert_eq!(b.usage(&bob).expect("learnt again"), Usage { count: 1, bytes: line_len(2) });
    assert_eq!(read_all(&mut b, &bob), msgs(2..3));
}

/// Issue 17, 2: what another node appended while this one had the mailbox is seen at the next
/// open after an eviction, in the order the database took them, this node's appends that are
/// not durable yet after them.
#[test]
fn another_node_s_appends_are_seen_at_the_next_open_in_the_order_the_database_took_them() {
    let db = testing::database();
    let (mut a, mut b, bob) = (node(&db), node(&db), name("bob"));
    b.append(&bob, &msg_from("dave", 0)).expect("append");
    b.sync().expect("sync");
    a.append(&bob, &msg_from("carol", 1)).expect("append");
    a.sync().expect("sync");
    b.append(&bob, &msg_from("dave", 2)).expect("append");
    b.sync().expect("sync");
    assert_eq!(b.known_usage(&bob).map(|u| u.count), Some(2), "b knows only its own two");

    // An append of b's still waiting for its sync when the mailbox is evicted stays, last.
    b.append(&bob, &msg_from("dave", 3)).expect("append");
    b.evict(&bob);
    assert_eq!(b.known_usage(&bob), None, "evicted, but for the append not yet durable");
    let scan = b.open_job(&bob).run().expect("open");
    b.install(&bob, scan);
    let want = [msg_from("dave", 0), msg_from("carol", 1), msg_from("dave", 2), msg_from("dave", 3)];
    assert_eq!(read_all(&mut b, &bob), want);
    b.sync().expect("sync");
    assert_eq!(stored(&db, &bob), want, "the kept append was committed by the next sync");
    assert_eq!(b.id_at(&bob, 3), Some(MsgId(3)));
}

/// An append of this node's committed by a sync still out when the mailbox is learnt again
/// is in the listing: it is counted once, at the place the database gave it.
#[test]
fn an_append_whose_sync_is_out_across_an_eviction_is_counted_once() {
    let db = testing::database();
    let (mut b, bob) = (node(&db), name("bob"));
    append_all(&mut b, &bob, 0..2);
    let job = b.start_sync().expect("start").expect("a job");
    b.evict(&bob);
    std::thread::spawn(move || job.run()).join().expect("thread").expect("sync");
    let scan = b.open_job(&bob).run().expect("open");
    b.install(&bob, scan);
    b.sync_done();
    assert_eq!(b.usage(&bob).expect("usage"), Usage { count: 2, bytes: (0..2).map(line_len).sum() });
    assert_eq!(read_all(&mut b, &bob), msgs(0..2));
    assert_eq!(b.append_once(&bob, &msg(1)).expect("append"), Appended::Duplicate, "known durable");
}
