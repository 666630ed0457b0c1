//! `Cluster` against a real PostgreSQL (`chat_pg::testing`): what a node finds in the shared
//! table when it starts, and what two nodes writing one row at once leave there.

use std::net::SocketAddr;
use std::time::Duration;

use chat_pg::testing::{self, TestDb};
use chat_pg::{Cluster, ClusterConfig, Db};
use chat_server::cluster::{SavedRow, SharedTable};

const TIMEOUT: Duration = Duration::from_secs(5);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `name`'s row online at `port` (or offline), belonging to key `key` (a hex digit, repeated).
fn row(name: &str, port: u16, online: bool, key: char) -> SavedRow {
    let json = serde_json::json!({
        "name": name,
        "addr": addr(port).to_string(),
        "online": online,
        "key": key.to_string().repeat(64),
        "lan": null,
        "secret": format!("{key}").repeat(16),
    });
    serde_json::from_value(json).expect("a valid row")
}

fn node(db: &TestDb, port: u16) -> Cluster {
    let db = Db::connect(db.url(), TIMEOUT).expect("connects");
    Cluster::join(db, addr(port), ClusterConfig::default()).expect("joins")
}

/// The shared table as a node that starts now loads it: (name, key, online).
fn table(db: &TestDb) -> Vec<(String, Option<String>, bool)> {
    let mut c = node(db, 7999);
    let rows = c.load().expect("loads");
    let mut rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let v = serde_json::to_value(&r.row).expect("encodes");
            (r.row.name().to_string(), v["key"].as_str().map(str::to_owned), r.row.online())
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_node_that_starts_loads_the_shared_table_before_it_serves() {
    let db = testing::database();
    let mut a = node(&db, 7001);
    a.write(&[(row("zoe", 5001, true, 'a'), 0)], &[]).expect("writes");
    // A node that starts later must know zoe (and her key) before it answers anyone: with an
    // empty table a `register` for "zoe" from another key is taken as a new name, and its row
    // replaces hers in the shared table.
    assert_eq!(table(&db), [("zoe".to_string(), Some("a".repeat(64)), true)]);
}

/// Two nodes that each took "zoe" for a new name (neither had seen the other's row yet): the
/// write is conditional on the version the node's change was made from (0: none), so the
/// second does not replace the first key; its node takes A's row from the follower and tells
/// its client (see chat-server's `a_new_name_taken_at_both_nodes_in_one_instant_...`).
#[test]
fn two_nodes_registering_one_new_name_at_once_leave_it_to_one_key() {
    let db = testing::database();
    let (mut a, mut b) = (node(&db, 7001), node(&db, 7002));
    let first = a.write(&[(row("zoe", 5001, true, 'a'), 0)], &[]).expect("A writes");
    assert!(matches!(first[..], [Some(_)]), "{first:?}");
    // B had not seen A's row: for B, too, "zoe" was new.
    let second = b.write(&[(row("zoe", 5002, true, 'b'), 0)], &[]).expect("B's transaction commits");
    assert_eq!(second, [None], "B's row is not written over A's");
    let keys: Vec<_> = table(&db).into_iter().map(|(_, key, _)| key).collect();
    assert_eq!(keys, [Some("a".repeat(64))], "the name stays with the first key");
}

/// A node behind the store (paused past the dead time, or its follower late) does not write its
/// stale view over a newer row: alice moved from A to B, and A's "offline", made from the
/// version before B's, is not written.
#[test]
fn a_node_behind_does_not_write_its_stale_view_over_a_newer_row() {
    let db = testing::database();
    let (mut a, mut b) = (node(&db, 7001), node(&db, 7002));
    let [Some(v1)] = a.write(&[(row("alice", 5001, true, 'a'), 0)], &[]).expect("A writes")[..] else {
        panic!("A's row written")
    };
    let [Some(_)] = b.write(&[(row("alice", 5001, true, 'a'), v1)], &[]).expect("B writes: she moved there")[..] else {
        panic!("B's row written over the version it saw")
    };
    // A marks her offline from the version it knew, before B's.
    let stale = a.write(&[(row("alice", 5001, false, 'a'), v1)], &[]).expect("A's transaction commits");
    assert_eq!(stale, [None]);
    assert_eq!(table(&db), [("alice".to_string(), Some("a".repeat(64)), true)], "A's stale change won");
}

/// A row whose `online` is not a boolean (damaged, or written by a buggy node) made the
/// dead-node sweep's transaction fail (`(data->>'online')::boolean`), and the follower
/// reconnect: no node was ever swept again, and every client of a dead node stayed online.
#[test]
fn a_damaged_row_does_not_stop_the_sweep_of_dead_nodes() {
    let db = testing::database();
    let raw = Db::connect(db.url(), TIMEOUT).expect("connects");
    raw.run(|pool| async move {
        let c = pool.get().await.expect("a connection");
        c.batch_execute(
            "INSERT INTO nodes (id, addr, heartbeat) VALUES (900, '127.0.0.1:7900', now() - interval '1 hour');
             INSERT INTO clients (name, home, version, data) VALUES ('broken', 900, 1, '{\"online\": \"maybe\"}');
             UPDATE table_version SET version = 1;",
        )
        .await
        .expect("damaged rows in");
    })
    .expect("runs");
    let mut dead = node(&db, 7001);
    dead.write(&[(row("zoe", 5001, true, 'a'), 0)], &[]).expect("writes");
    raw.run(|pool| async move {
        let c = pool.get().await.expect("a connection");
        c.batch_execute("UPDATE clients SET home = 900 WHERE name = 'zoe'").await.expect("zoe is the dead node's");
    })
    .expect("runs");
    let cfg = ClusterConfig { heartbeat: Duration::from_millis(100), dead_after: Duration::from_millis(500) };
    let judge = Cluster::join(Db::connect(db.url(), TIMEOUT).expect("connects"), addr(7002), cfg).expect("joins");
    std::thread::sleep(Duration::from_secs(3));
    drop(judge);
    let zoe: Vec<_> = table(&db).into_iter().filter(|(n, ..)| n == "zoe").map(|(.., online)| online).collect();
    assert_eq!(zoe, [false], "the dead node's client is marked offline");
}

/// A channel copy handed to a node that stops beating before it took it is not lost: the node
/// that sweeps the dead one is handed it, to store for the members (who are offline now).
#[test]
fn a_channel_copy_for_a_node_that_stops_beating_is_handed_to_the_node_that_sweeps_it() {
    use chat_proto::{Body, MsgId, Name, Origin, StoredMessage, Text};
    use chat_server::cluster::{ClusterEvent, PeerMsg};

    let db = testing::database();
    let cfg = ClusterConfig { heartbeat: Duration::from_millis(100), dead_after: Duration::from_millis(600) };
    let b = Cluster::join(Db::connect(db.url(), TIMEOUT).expect("connects"), addr(7002), cfg).expect("B joins");
    let b_node = b.node();
    drop(b); // B's thread and its heartbeat stop here
    let mut a = Cluster::join(Db::connect(db.url(), TIMEOUT).expect("connects"), addr(7001), cfg).expect("A joins");
    let msg = PeerMsg::Channel {
        members: vec![Name::new("bob").expect("name")],
        msg: StoredMessage {
            id: MsgId(7),
            from: Name::new("alice").expect("name"),
            origin: Origin::Channel,
            at: chrono::Utc::now(),
            body: Body::Text(Text::new("all").expect("text")),
        },
    };
    a.write(&[], &[(b_node, msg.clone())]).expect("A hands B the copy");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let handed = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match a.events().recv().await {
                    Some(ClusterEvent::Peer(_, got)) => return got,
                    Some(_) => {}
                    None => panic!("A's follower stopped"),
                }
            }
        })
        .await
    });
    assert_eq!(handed.ok(), Some(msg), "the copy for the dead node came back to A");
}

/// A node knows the live nodes before it serves anyone: until then a client of another node
/// would count as one of a node that is gone, whose name anyone could take.
#[test]
fn a_node_knows_the_live_nodes_as_it_joins() {
    use chat_server::cluster::ClusterEvent;

    let db = testing::database();
    let a = node(&db, 7001);
    let mut b = node(&db, 7002);
    match b.events().try_recv() {
        Ok(ClusterEvent::Nodes(live)) => assert_eq!(live.into_iter().collect::<Vec<_>>(), [(a.node(), addr(7001))]),
        other => panic!("the live nodes first, at once: {other:?}"),
    }
}

/// The next event of `node` that `pick` takes, within `within`.
fn next_event<T>(
    node: &mut Cluster,
    within: Duration,
    mut pick: impl FnMut(chat_server::cluster::ClusterEvent) -> Option<T>,
) -> Option<T> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        tokio::time::timeout(within, async {
            loop {
                match node.events().recv().await {
                    Some(e) => {
                        if let Some(t) = pick(e) {
                            return t;
                        }
                    }
                    None => panic!("the follower stopped"),
                }
            }
        })
        .await
        .ok()
    })
}

/// After PostgreSQL restarts (fast, then immediate: a crash and its recovery), a node's
/// follower connects again and reads on: a row and a message another node wrote afterwards
/// reach it. (It used to stop for good when its connection closed cleanly.)
#[test]
fn a_node_follows_the_others_again_after_postgres_restarts() {
    use chat_server::cluster::{ClusterEvent, PeerMsg};

    let db = testing::dedicated();
    let cfg = ClusterConfig { heartbeat: Duration::from_millis(100), dead_after: Duration::from_millis(800) };
    let join = |port| Cluster::join(Db::connect(db.url(), TIMEOUT).expect("connects"), addr(port), cfg).expect("joins");
    let (mut a, mut b) = (join(7001), join(7002));
    for (round, restart) in [TestDb::restart, TestDb::restart_immediate].into_iter().enumerate() {
        restart(&db).expect("PostgreSQL restarts");
        let name = format!("zoe{round}");
        let token = chat_proto::MsgId(u64::try_from(round).expect("small"));
        // A's writes may fail while its pool reconnects: it retries, as the server's driver does.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while a
            .write(&[(row(&name, 5001, true, 'a'), 0)], &[(b.node(), PeerMsg::Probed { token, alive: true })])
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "A cannot write after the restart");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (mut row_seen, mut msg_seen) = (false, false);
        let got = next_event(&mut b, Duration::from_secs(20), |e| {
            match e {
                ClusterEvent::Rows(rows) => row_seen |= rows.iter().any(|r| r.row.name().as_str() == name),
                ClusterEvent::Peer(_, PeerMsg::Probed { token: t, .. }) => msg_seen |= t == token,
                _ => {}
            }
            (row_seen && msg_seen).then_some(())
        });
        assert_eq!(got, Some(()), "round {round}: B read A's row: {row_seen}, A's message: {msg_seen}");
    }
}

/// A node whose follower cannot reach the store for the dead-node window says it is adrift
/// (its server then answers no keepalive, so that its clients move), and that it follows again
/// once the store is back.
#[test]
fn a_node_cut_from_postgres_for_the_dead_node_window_is_adrift_until_it_follows_again() {
    use chat_server::cluster::ClusterEvent;

    let db = testing::dedicated();
    let cfg = ClusterConfig { heartbeat: Duration::from_millis(100), dead_after: Duration::from_millis(800) };
    let mut a = Cluster::join(Db::connect(db.url(), TIMEOUT).expect("connects"), addr(7001), cfg).expect("joins");
    db.stop().expect("PostgreSQL stops");
    let adrift = next_event(&mut a, Duration::from_secs(20), |e| matches!(e, ClusterEvent::Following(_)).then_some(e));
    assert!(matches!(adrift, Some(ClusterEvent::Following(false))), "{adrift:?}");
    db.start().expect("PostgreSQL starts");
    let back = next_event(&mut a, Duration::from_secs(20), |e| matches!(e, ClusterEvent::Following(_)).then_some(e));
    assert!(matches!(back, Some(ClusterEvent::Following(true))), "{back:?}");
}

/// The nodes whose rows of `owed_channels` hold a message of `sender`.
fn owed_rows(db: &TestDb, sender: &str) -> Vec<u64> {
    let sender = sender.to_owned();
    let db = Db::connect(db.url(), TIMEOUT).expect("connects");
    let rows = db
        .run(move |pool| async move {
            let client = pool.get().await.expect("a connection");
            client
                .query("SELECT node FROM owed_channels WHERE sender = $1 ORDER BY node", &[&sender])
                .await
                .expect("reads the owed channel messages")
        })
        .expect("runs");
    rows.iter().map(|r| r.get::<_, i64>(0).unsigned_abs()).collect()
}

/// A channel message a node noted as owed to its online members (with the sync that holds the
/// sender's ACK) outlives the node: the node that removes it when it stops beating is handed it,
/// to store for the members (offline now), and owes it in its place until its own store's done.
#[test]
fn a_channel_message_a_dead_node_still_owed_is_taken_over_by_the_node_that_sweeps_it() {
    use chat_pg::PgStore;
    use chat_proto::{Body, MsgId, Name, Origin, StoredMessage, Text};
    use chat_server::cluster::{ClusterEvent, PeerMsg};
    use offline_store::{Limits, OwedChannel, Store};

    let db = testing::database();
    let cfg = ClusterConfig { heartbeat: Duration::from_millis(100), dead_after: Duration::from_millis(600) };
    let join = |port| Cluster::join(Db::connect(db.url(), TIMEOUT).expect("connects"), addr(port), cfg).expect("joins");
    let store = |node| PgStore::new(Db::connect(db.url(), TIMEOUT).expect("connects"), Limits::default()).owed_by(node);
    let owed = OwedChannel {
        msg: StoredMessage {
            id: MsgId(u64::MAX - 6), // past i64::MAX: kept as the same 64 bits
            from: Name::new("alice").expect("name"),
            origin: Origin::Channel,
            at: chrono::Utc::now(),
            body: Body::Text(Text::new("all").expect("text")),
        },
        members: vec![Name::new("bob").expect("name"), Name::new("carol").expect("name")],
    };
    let b = join(7002);
    let b_node = b.node();
    let mut b_store = store(b_node);
    b_store.note_owed(&owed).expect("noted");
    b_store.start_sync().expect("starts").expect("a sync for the note").run().expect("commits");
    b_store.sync_done();
    assert_eq!(owed_rows(&db, "alice"), [b_node], "durable with B's sync");
    drop((b, b_store)); // B dies: its heartbeat stops
    let mut a = join(7001);
    let handed = next_event(&mut a, Duration::from_secs(10), |e| match e {
        ClusterEvent::Peer(from, msg) => Some((from, msg)),
        _ => None,
    });
    let expected = PeerMsg::Channel { members: owed.members.clone(), msg: owed.msg.clone() };
    assert_eq!(handed, Some((b_node, expected)), "A, which removed B, is handed what B owed");
    assert_eq!(owed_rows(&db, "alice"), [a.node()], "A owes it now, as it takes it");
    // Once A's members are served, A's store deletes the row with its next sync.
    let mut a_store = store(a.node());
    a_store.owed_done(&owed.msg.from, owed.msg.id);
    a_store.start_sync().expect("starts").expect("a sync for the done").run().expect("commits");
    a_store.sync_done();
    assert_eq!(owed_rows(&db, "alice"), Vec::<u64>::new(), "done");
}

/// A channel copy a node reads from another is recorded as owed by it in the transaction that
/// deletes it: a node that dies before its members have it leaves it to the node that sweeps it.
#[test]
fn a_channel_copy_a_node_reads_is_owed_by_it_as_it_takes_it() {
    use chat_proto::{Body, MsgId, Name, Origin, StoredMessage, Text};
    use chat_server::cluster::{ClusterEvent, PeerMsg};

    let db = testing::database();
    let cfg = ClusterConfig { heartbeat: Duration::from_millis(100), dead_after: Duration::from_millis(600) };
    let join = |port| Cluster::join(Db::connect(db.url(), TIMEOUT).expect("connects"), addr(port), cfg).expect("joins");
    let mut a = join(7001);
    let mut b = join(7002);
    let msg = PeerMsg::Channel {
        members: vec![Name::new("bob").expect("name")],
        msg: StoredMessage {
            id: MsgId(8),
            from: Name::new("dave").expect("name"),
            origin: Origin::Channel,
            at: chrono::Utc::now(),
            body: Body::Text(Text::new("all").expect("text")),
        },
    };
    a.write(&[], &[(b.node(), msg.clone())]).expect("A hands B the copy");
    let read = next_event(&mut b, Duration::from_secs(10), |e| match e {
        ClusterEvent::Peer(_, got) => Some(got),
        _ => None,
    });
    assert_eq!(read, Some(msg.clone()));
    assert_eq!(owed_rows(&db, "dave"), [b.node()], "B owes it as it reads it");
    drop(b);
    let handed = next_event(&mut a, Duration::from_secs(10), |e| match e {
        ClusterEvent::Peer(_, got) => Some(got),
        _ => None,
    });
    assert_eq!(handed, Some(msg), "A, which removed B, is handed the copy B had read");
    assert_eq!(owed_rows(&db, "dave"), [a.node()]);
}

/// A node restarted on its address is a new node: the row of its former self, still beating
/// a moment ago, is not listed among the other live nodes (its clients would be told to move to
/// the node they are at).
#[test]
fn a_node_does_not_list_its_former_self_at_its_own_address() {
    use chat_server::cluster::ClusterEvent;

    let db = testing::database();
    let former = node(&db, 7001);
    let other = node(&db, 7002);
    drop(former); // killed: its row stays, with a fresh heartbeat
    let mut again = node(&db, 7001);
    match again.events().try_recv() {
        Ok(ClusterEvent::Nodes(live)) => {
            assert_eq!(live.into_iter().collect::<Vec<_>>(), [(other.node(), addr(7002))], "only the other node")
        }
        other => panic!("the live nodes first, at once: {other:?}"),
    }
}
