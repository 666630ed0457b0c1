//! SPEC 13: several server nodes over one PostgreSQL database, each test on a fresh database
//! (or a PostgreSQL server of its own, where it restarts it). The nodes are the real binary
//! with `--store <url>`; PostgreSQL is never skipped (see `chat_pg::testing`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chat_pg::testing::{TestDb, database, dedicated};

use crate::harness::{
    CHANNEL_ACKED, Client, HAVE_MESSAGES, OFFLINE_BYE, SAVED, Server, TABLE, WAIT, WELCOME, acked_by, channel, chat,
    free_port, new_dir,
};

/// The keepalive the nodes run with: short, so an idle client notices a dead node quickly.
const KEEPALIVE_MS: &str = "500";

/// A node on `db`'s database.
fn node(db: &TestDb) -> Server {
    Server::start_with(&["--store", db.url(), "--keepalive-ms", KEEPALIVE_MS])
}

/// Starts `name` at `node` and waits until `others` see it online.
fn join(name: &str, node: &Server, others: &[&Client]) -> Client {
    let c = Client::start(name, node);
    for o in others {
        o.expect_line(TABLE, WAIT);
    }
    c
}

/// The line a client prints when it moves from node `from` to node `to`.
fn moving(from: &Server, to: &Server) -> String {
    format!(">>> [Server 127.0.0.1:{} not responding: moving to 127.0.0.1:{}.]", from.port, to.port)
}

/// Two nodes on `db`: alice online at the first, bob registered at the second and gone
/// offline (`dereg`), and alice's table showing it, so that her sends go to the server at once,
/// in order.
fn alice_at_a_bob_away_at_b(db: &TestDb) -> (Server, Server, Client, Client) {
    let (a, b) = (node(db), node(db));
    let mut alice = Client::start("alice", &a);
    let mut bob = join("bob", &b, &[&alice]);
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    wait_offline(&mut alice, "bob");
    (a, b, alice, bob)
}

/// Waits until `client`'s table shows `name` offline.
fn wait_offline(client: &mut Client, name: &str) {
    let deadline = Instant::now() + WAIT;
    while client.list_all().iter().any(|r| r.name == name && r.online) {
        if Instant::now() > deadline {
            client.fail(&format!("{name} never listed offline"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (30 s at most) until `client` has said `n` saves were kept, and checks it said no more.
fn wait_saved(client: &Client, n: usize) {
    let saved = || client.stdout_lines().iter().filter(|l| *l == SAVED).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while saved() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(saved(), n, "every save answered once: {:?}", client.stdout_lines());
}

/// Checks that `client` showed `<text> 0` to `<text> n-1` once each, and no second
/// `[You have messages]` comes.
fn assert_each_once(client: &Client, text: &str, n: usize) {
    client.assert_never(HAVE_MESSAGES, Duration::from_secs(1));
    for i in 0..n {
        let line = format!(" {text} {i}");
        assert_eq!(client.stdout_lines().iter().filter(|l| l.ends_with(&line)).count(), 1, "{line} shown once");
    }
}

#[test]
fn clients_of_two_nodes_see_one_table_and_chat_directly() {
    let db = database();
    let (a, b) = (node(&db), node(&db));
    let mut alice = Client::start("alice", &a);
    let mut bob = join("bob", &b, &[&alice]);
    let (alice_port, bob_port) = (alice.port, bob.port);
    for c in [&mut alice, &mut bob] {
        let rows = c.list_all();
        let seen: HashMap<String, (u16, bool)> = rows.into_iter().map(|r| (r.name, (r.port, r.online))).collect();
        assert_eq!(seen.get("alice"), Some(&(alice_port, true)), "{seen:?}");
        assert_eq!(seen.get("bob"), Some(&(bob_port, true)), "{seen:?}");
    }
    alice.send_line("send bob across nodes");
    alice.expect_line(&acked_by("bob"), WAIT);
    bob.expect_line(&chat("alice", "across nodes"), WAIT);
    bob.send_line("send alice and back");
    bob.expect_line(&acked_by("alice"), WAIT);
    alice.expect_line(&chat("bob", "and back"), WAIT);
}

#[test]
fn a_name_live_at_one_node_is_refused_at_the_other() {
    let db = database();
    let (a, b) = (node(&db), node(&db));
    let alice = Client::start("alice", &a);
    let impostor = Client::spawn("alice", b.port, free_port(), new_dir(), &[]);
    impostor.expect_line(">>> [Name alice is in use by another client.]", WAIT);
    assert_eq!(impostor.wait_exit(WAIT).code(), Some(1));
    alice.assert_alive();
}

#[test]
fn a_message_saved_at_one_node_is_fetched_once_at_the_other() {
    let db = database();
    let (a, b) = (node(&db), node(&db));
    let mut alice = Client::start("alice", &a);
    let mut bob = join("bob", &b, &[&alice]);
    alice.send_line("dereg alice");
    alice.expect_line(OFFLINE_BYE, WAIT);
    wait_offline(&mut bob, "alice");
    bob.send_line("send alice kept by node b");
    bob.expect_line(SAVED, WAIT);
    alice.kill();
    // alice comes back at the other node.
    let alice = Client::spawn("alice", b.port, alice.port, std::sync::Arc::clone(&alice.dir), &[]);
    alice.expect_line(WELCOME, WAIT);
    alice.expect_line(HAVE_MESSAGES, WAIT);
    alice.expect_stored("bob", "kept by node b");
    alice.assert_never(HAVE_MESSAGES, Duration::from_secs(1));
    assert_eq!(alice.stdout_lines().iter().filter(|l| l.ends_with(" kept by node b")).count(), 1);
}

#[test]
fn the_channel_reaches_members_of_both_nodes_and_a_silent_ones_copy_is_stored_by_its_node() {
    let db = database();
    let (a, b) = (node(&db), node(&db));
    let mut alice = Client::start("alice", &a);
    let bob = join("bob", &b, &[&alice]);
    let mut carol = join("carol", &b, &[&alice, &bob]);
    carol.kill();
    alice.send_line("send_all to both nodes");
    alice.expect_line(CHANNEL_ACKED, WAIT);
    bob.expect_line(&channel("alice", "to both nodes"), WAIT);
    // carol takes nothing: node b probes her, stores her copy and marks her offline.
    alice.expect_line(TABLE, WAIT);
    let carol_row = alice.list_all().into_iter().find(|r| r.name == "carol").expect("carol's row");
    assert!(!carol_row.online, "carol is offline for alice: {carol_row:?}");
    // Back (at the other node), carol fetches her copy.
    let carol = Client::spawn("carol", a.port, carol.port, std::sync::Arc::clone(&carol.dir), &[]);
    carol.expect_line(WELCOME, WAIT);
    carol.expect_line(HAVE_MESSAGES, WAIT);
    carol.expect_stored("Channel_Message alice", "to both nodes");
}

#[test]
fn a_killed_node_s_clients_move_to_the_other_and_what_it_acknowledged_is_delivered_once() {
    let db = database();
    let (mut a, b, mut alice, mut bob) = alice_at_a_bob_away_at_b(&db);
    for i in 0..5 {
        alice.send_line(&format!("send bob saved by node a {i}"));
    }
    for _ in 0..5 {
        alice.expect_line(SAVED, WAIT);
    }

    a.kill();
    let killed = Instant::now();
    alice.expect_line(&moving(&a, &b), WAIT);
    let moved = killed.elapsed();
    assert!(moved < Duration::from_secs(8), "alice moved {moved:?} after the kill");

    bob.send_line("reg bob");
    bob.expect_line(HAVE_MESSAGES, WAIT);
    for i in 0..5 {
        bob.expect_stored("alice", &format!("saved by node a {i}"));
    }
    alice.send_line("send bob after the move");
    alice.expect_line(&acked_by("bob"), WAIT);
    bob.expect_line(&chat("alice", "after the move"), WAIT);
    assert_each_once(&bob, "saved by node a", 5);
}

/// A storm of saves, with node a killed in the middle of it: every save alice's client was
/// told was kept is delivered, once, and the rest are sent again by the client at node b.
#[test]
fn a_node_killed_in_a_save_storm_loses_nothing_acknowledged() {
    let db = database();
    let (mut a, b, mut alice, mut bob) = alice_at_a_bob_away_at_b(&db);
    const N: usize = 40;
    for i in 0..N {
        alice.send_line(&format!("send bob storm {i}"));
        if i == N / 2 {
            a.kill();
        }
    }
    alice.expect_line(&moving(&a, &b), WAIT);
    wait_saved(&alice, N);

    bob.send_line("reg bob");
    bob.expect_line(HAVE_MESSAGES, WAIT);
    for i in 0..N {
        bob.expect_stored("alice", &format!("storm {i}"));
    }
    assert_each_once(&bob, "storm", N);
}

/// PostgreSQL itself restarts (`pg_ctl restart -m fast`) in the middle of a storm of saves:
/// the nodes reconnect on their own, and every save is kept once.
#[test]
fn postgres_restarted_in_a_save_storm_loses_nothing_and_the_nodes_reconnect() {
    let db = dedicated();
    let (a, _b, mut alice, mut bob) = alice_at_a_bob_away_at_b(&db);
    const N: usize = 30;
    for i in 0..N {
        alice.send_line(&format!("send bob through a restart {i}"));
        if i == N / 3 {
            db.restart().expect("restart PostgreSQL");
        }
    }
    wait_saved(&alice, N);
    bob.send_line("reg bob");
    bob.expect_line(HAVE_MESSAGES, WAIT);
    // The saves whose transaction failed in the restart were stored when their retransmissions
    // came, after later ones: each is shown once, not in the order they were sent.
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && bob.stdout_lines().iter().filter(|l| l.starts_with(">>> alice: ")).count() < N {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_each_once(&bob, "through a restart", N);
    // The table still flows between the nodes after the restart.
    let carol = join("carol", &a, &[&alice, &bob]);
    carol.assert_alive();
}

#[test]
fn a_node_without_its_database_says_so_in_one_line_and_exits_1() {
    let port = free_port().to_string();
    let dir = new_dir();
    let dir_arg = dir.path().to_str().expect("utf-8").to_owned();
    let dead = format!("postgres://chat@127.0.0.1:{}/chat", free_port());
    let node = crate::harness::Proc::spawn("node without db", &["-s", &port, "--data-dir", &dir_arg, "--store", &dead]);
    assert_eq!(node.wait_exit(Duration::from_secs(15)).code(), Some(1));
    let errors: Vec<String> = node.stderr_lines().into_iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with(&format!("error: cannot reach PostgreSQL at {dead}")), "{errors:?}");
}

/// The same user (key and secret copied) starts a second process at the other node while the
/// first is live: that node asks the first one's node to probe it, and, answered, refuses the
/// name; the first process goes on.
#[test]
fn a_name_live_at_one_node_is_probed_by_that_node_when_claimed_at_the_other() {
    let db = database();
    let (a, b) = (node(&db), node(&db));
    let mut alice = Client::start("alice", &a);
    let bob = join("bob", &b, &[&alice]);
    let copy = new_dir();
    for file in ["alice.key", "alice.secret", "known_servers"] {
        std::fs::copy(alice.dir.path().join(file), copy.path().join(file)).expect("copy alice's files");
    }
    let second = Client::spawn("alice", b.port, free_port(), copy, &[]);
    second.expect_line(">>> [Name alice is in use by another client.]", WAIT);
    assert_eq!(second.wait_exit(WAIT).code(), Some(1));
    assert!(
        a.stderr_lines().iter().any(|l| l.contains("probing") && l.contains("name=alice")),
        "node a probed alice for node b"
    );
    alice.send_line("send bob still mine");
    alice.expect_line(&acked_by("bob"), WAIT);
    bob.expect_line(&chat("alice", "still mine"), WAIT);
}

/// PostgreSQL restarts (fast, then immediate: a crash and its recovery) while two nodes run: the
/// nodes follow each other again, so channel messages sent at one node after each restart reach
/// the other node's member, and a client joining one node shows in the other's table. (The
/// follower used to stop for good when its connection closed, silently.)
#[test]
fn after_postgres_restarts_the_nodes_follow_each_other_again() {
    let db = dedicated();
    let (a, b) = (node(&db), node(&db));
    let mut alice = Client::start("alice", &a);
    let mut bob = join("bob", &b, &[&alice]);
    for (round, mode) in ["fast", "immediate"].into_iter().enumerate() {
        match mode {
            "fast" => db.restart(),
            _ => db.restart_immediate(),
        }
        .expect("PostgreSQL restarts");
        wait_ready(&db);
        // PostgreSQL may take seconds to recover (immediate) on a loaded machine: the sends
        // wait for it, and so do the deadlines.
        let long = Duration::from_secs(30);
        for i in 0..3 {
            let text = format!("after a {mode} restart {i}");
            alice.send_line(&format!("send_all {text}"));
            alice.expect_line(CHANNEL_ACKED, long);
            bob.expect_line(&channel("alice", &text), long);
        }
        let name = format!("dave{round}");
        let _dave = Client::start(&name, &a);
        let deadline = Instant::now() + long;
        while !bob.list_all().iter().any(|r| r.name == name && r.online) {
            if Instant::now() > deadline {
                bob.fail(&format!("{name}, registered at the other node after a {mode} restart, never listed"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits (60 s at most) until `db` answers a query (after a restart, recovery can take seconds).
fn wait_ready(db: &TestDb) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = || {
        let conn = chat_pg::Db::connect(db.url(), WAIT).ok()?;
        conn.run(|pool| async move { pool.get().await.ok()?.simple_query("SELECT 1").await.ok() }).ok()?
    };
    while ready().is_none() {
        assert!(Instant::now() < deadline, "PostgreSQL never answered after its restart");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `sql` on `db`'s database (the test's own hand on it).
fn sql(db: &TestDb, sql: &'static str) {
    let conn = chat_pg::Db::connect(db.url(), WAIT).expect("connects");
    conn.run(move |pool| async move {
        let client = pool.get().await.expect("a connection");
        client.batch_execute(sql).await.expect("the statement runs");
    })
    .expect("runs");
}

/// While the messages between nodes cannot be written (a trigger refuses them here; a restart
/// or an outage of PostgreSQL does the same), a channel copy for another node's member exists
/// only in the sending node's memory: the sender's ACK waits until it is written (it used to
/// leave at once). Once written, the member shows the message once.
#[test]
fn a_channel_ack_waits_until_the_copy_for_the_other_node_is_written() {
    let db = database();
    let (a, b) = (node(&db), node(&db));
    let mut alice = Client::start("alice", &a);
    let bob = join("bob", &b, &[&alice]);
    sql(
        &db,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON peer_messages FOR EACH STATEMENT EXECUTE FUNCTION refuse();",
    );
    let mark = alice.stdout_len();
    alice.send_line("send_all while the copies cannot be written");
    alice.assert_never(CHANNEL_ACKED, Duration::from_secs(1));
    sql(&db, "DROP TRIGGER refuse ON peer_messages");
    let line = channel("alice", "while the copies cannot be written");
    // Written within the sender's retries (its ACK) or just after them (`[Server not
    // responding.]`): either way, an ACK comes only with the copy written.
    let deadline = Instant::now() + WAIT;
    let outcome = loop {
        let since = alice.stdout_since(mark);
        if let Some(l) = since.iter().find(|l| *l == CHANNEL_ACKED || *l == ">>> [Server not responding.]") {
            break l.clone();
        }
        if Instant::now() > deadline {
            alice.fail("no outcome for the send_all");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if outcome == CHANNEL_ACKED {
        bob.expect_line(&line, WAIT);
        bob.assert_never(&line, Duration::from_secs(2));
    }
}

/// Issue 17, 2: node a learnt bob's mailbox when alice saved there for him; bob then fetched
/// those messages at node b, which deleted them. Node b killed, bob moves to node a, which must
/// not offer him again what it remembered: he is welcomed with nothing to fetch (or skips what
/// is gone), and goes on, each message shown once, in order.
#[test]
fn a_client_moving_to_a_node_that_cached_its_mailbox_is_not_offered_what_another_node_delivered() {
    let db = database();
    let (a, mut b, mut alice, mut bob) = alice_at_a_bob_away_at_b(&db);
    for i in 0..3 {
        alice.send_line(&format!("send bob kept by node a {i}"));
        alice.expect_line(SAVED, WAIT);
    }
    bob.send_line("reg bob");
    bob.expect_line(HAVE_MESSAGES, WAIT);
    for i in 0..3 {
        bob.expect_stored("alice", &format!("kept by node a {i}"));
    }
    // Node b has deleted what bob fetched.
    let deleted = b.expect_contains("stored messages delivered and deleted", WAIT);
    assert!(deleted.contains("name=bob") && deleted.contains("delivered=3"), "{deleted}");

    b.kill();
    bob.expect_line(&moving(&b, &a), WAIT);
    bob.send_line("send alice still here");
    bob.expect_line(&acked_by("alice"), WAIT);
    alice.expect_line(&chat("bob", "still here"), WAIT);
    assert_each_once(&bob, "kept by node a", 3);
    bob.assert_alive();
}

/// Issue 17, 2: node b knows bob's mailbox (dave saved there for him) when alice saves for him
/// at node a: bob's next fetch at node b has all three, in the order the server took them.
#[test]
fn a_message_stored_by_another_node_is_fetched_in_order_from_a_node_that_knew_the_mailbox() {
    let db = database();
    let (_a, b, mut alice, mut bob) = alice_at_a_bob_away_at_b(&db);
    let mut dave = join("dave", &b, &[&alice]);
    wait_offline(&mut dave, "bob");
    dave.send_line("send bob in order 0");
    dave.expect_line(SAVED, WAIT);
    alice.send_line("send bob in order 1");
    alice.expect_line(SAVED, WAIT);
    dave.send_line("send bob in order 2");
    dave.expect_line(SAVED, WAIT);

    bob.send_line("reg bob");
    bob.expect_line(HAVE_MESSAGES, WAIT);
    bob.expect_stored("dave", "in order 0");
    bob.expect_stored("alice", "in order 1");
    bob.expect_stored("dave", "in order 2");
    assert_each_once(&bob, "in order", 3);
    // Nothing is left for the next registration.
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    bob.send_line("reg bob");
    bob.expect_line(WELCOME, WAIT);
    bob.assert_never(HAVE_MESSAGES, Duration::from_secs(1));
}

/// Issue 17, part 4 across nodes: a send_all ACKed while bob's copy is still on its way from his
/// node (his link cut), then that node killed. The node that removes it takes over what it
/// owed and stores bob's copy (he is offline then), or delivers it if bob is already back with
/// it: bob shows the message exactly once.
#[test]
fn an_acked_send_all_owed_by_a_killed_node_reaches_its_member_once_through_the_other_node() {
    let db = database();
    // A 2 s ACK window: bob's copy is still on its way (not yet probed and stored for him) when
    // the kill comes, however loaded the machine.
    let mut a = Server::start_with(&["--store", db.url(), "--keepalive-ms", KEEPALIVE_MS, "--ack-timeout-ms", "2000"]);
    let b = node(&db);
    // Node a lists node b to its clients, for bob to move to.
    a.expect_contains("the other live nodes changed", WAIT);
    let mut alice = Client::start("alice", &a);
    let (bob, relay) = crate::channel::acked_while_bob_is_cut_off(&mut alice, a.port, "owed by node a");
    a.kill();
    // Node b removes node a (and, in that transaction, takes over what a still owed).
    b.expect_contains("nodes stopped beating: removed", Duration::from_secs(40));
    relay.cut(false);
    let line = channel("alice", "owed by node a");
    bob.expect_line(&line, Duration::from_secs(40));
    bob.assert_never(&line, Duration::from_secs(3));
    bob.assert_count(&line, 1);
    bob.assert_alive();
}
