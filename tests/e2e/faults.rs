//! Proven under faults: the real binaries behind fault-injecting relays (`relay.rs`), and a
//! server killed with SIGKILL in the middle of a stream of saves.
//!
//! Each test prints its relay seeds when it fails (`CHATAPP_FAULT_SEED=<n>` replays the same
//! fault draws; the order in which datagrams race through the relays can still differ).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::*;
use crate::relay::{Faults, Relay, start_behind_relay};

const LONG: Duration = Duration::from_secs(60);

/// Keepalives once a second, so that they and the presence sweep are in play during these
/// tests (at the default 25 s none would be sent). Not for the test that loses datagrams on the
/// way to the server: three keepalives in a row lost there would rightly mark a live client
/// offline, and its lines would then include a second welcome.
const KEEPALIVES: [&str; 2] = ["--keepalive-ms", "1000"];

fn seed() -> u64 {
    std::env::var("CHATAPP_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1))
}

/// A client behind its own relay, registered (faults can slow that down a lot).
fn behind_relay(
    name: &str,
    server_port: u16,
    server: Faults,
    peers: Faults,
    seed: u64,
    extra: &[&str],
) -> (Client, Relay) {
    let (client, relay) = start_behind_relay(name, server_port, server, peers, seed, extra);
    client.expect_line(WELCOME, LONG);
    (client, relay)
}

/// The rows of a `list` sent now (not of an earlier one), once `n` of them are printed.
fn list_now(c: &mut Client, n: usize) -> Vec<Row> {
    let mark = c.stdout_len();
    c.send_line("list");
    let deadline = Instant::now() + WAIT;
    loop {
        let rows: Vec<Row> = c
            .stdout_since(mark)
            .iter()
            .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                [">>>", name, ip, port, status @ ("online" | "offline")] => Some(Row {
                    name: name.to_owned(),
                    ip: ip.to_owned(),
                    port: port.parse().ok()?,
                    online: status == "online",
                }),
                _ => None,
            })
            .collect();
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `list` until every one of `names` shows `online` (or not).
fn wait_listed(c: &mut Client, names: &[&str], online: bool) {
    let deadline = Instant::now() + LONG;
    loop {
        let rows = list_now(c, names.len());
        if names.iter().all(|n| rows.iter().any(|r| r.name == *n && r.online == online)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() > deadline {
            c.fail(&format!("{names:?} never listed with online = {online}"));
        }
    }
}

/// Polls until `count` of the client's lines satisfy `pred`, and returns the count then.
fn wait_count(c: &Client, what: &str, n: usize, timeout: Duration, pred: impl Fn(&str) -> bool) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let got = c.stdout_lines().iter().filter(|l| pred(l)).count();
        if got >= n {
            return got;
        }
        if Instant::now() > deadline {
            c.fail(&format!("waited for {n} × {what}, saw {got}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How often each message `<tag><i>` from `from` was shown, live (`>>> from: text`) or stored
/// (`>>> from: <timestamp> text`).
fn shown(c: &Client, from: &str, tag: &str) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    let prefix = format!(">>> {from}: ");
    for line in c.stdout_lines() {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        let text = if rest.len() > 20 && utc_seconds(&rest[..19]).is_some() { &rest[20..] } else { rest };
        if let Some(i) = text.strip_prefix(tag).and_then(|n| n.parse().ok()) {
            *seen.entry(i).or_insert(0) += 1;
        }
    }
    seen
}

fn assert_each_once(c: &Client, seen: &BTreeMap<usize, usize>, n: usize, what: &str) {
    let missing: Vec<usize> = (0..n).filter(|i| !seen.contains_key(i)).collect();
    let doubled: Vec<(&usize, &usize)> = seen.iter().filter(|(_, k)| **k != 1).collect();
    if !missing.is_empty() || !doubled.is_empty() || seen.len() != n {
        c.fail(&format!("{what}: missing {missing:?}, shown more than once {doubled:?}"));
    }
}

/// `dereg` then `reg`: whatever the server stored for the client is shown, and the table that
/// follows the fetch (or the registration) arrives.
fn collect_stored(c: &mut Client) {
    let name = c.name.clone();
    c.send_line(&format!("dereg {name}"));
    c.expect_line(OFFLINE_BYE, LONG);
    c.send_line(&format!("reg {name}"));
    c.expect_line(WELCOME, LONG);
    c.expect_line(TABLE, LONG);
}

/// `n` messages from alice to bob with `loss` on every datagram between them (both ways):
/// exactly one outcome each at alice, and each message shown exactly once by bob, live or
/// after his `reg`. Returns how many sends exhausted their direct retries at least once.
fn lossy_direct_messages(n: usize, loss: f64) -> usize {
    let seed = seed();
    let server = Server::start_with(&KEEPALIVES);
    let (mut alice, ra) = behind_relay("alice", server.port, Faults::default(), Faults::loss(loss), seed, &[]);
    let (mut bob, rb) = behind_relay("bob", server.port, Faults::default(), Faults::loss(loss), seed ^ 1, &[]);
    wait_listed(&mut alice, &["bob"], true);
    let script: String = (0..n).map(|i| format!("send bob m{i}\n")).collect();
    alice.send_line(script.trim_end());

    let delivered = acked_by("bob");
    let outcome = |l: &str| l == delivered || l == SAVED || l.contains("not saved");
    wait_count(&alice, "outcome lines", n, LONG, outcome);
    std::thread::sleep(Duration::from_secs(1));
    let outcomes = alice.stdout_lines().iter().filter(|l| outcome(l)).count();
    assert_eq!(outcomes, n, "exactly one outcome per send");

    collect_stored(&mut bob);
    let seen = shown(&bob, "alice", "m");
    assert_each_once(&bob, &seen, n, "alice's messages at bob");
    let acked = alice.stdout_lines().iter().filter(|l| **l == delivered).count();
    let live = bob.stdout_lines().iter().filter(|l| l.starts_with(">>> alice: m")).count();
    assert!(live >= acked, "every message bob ACKed was shown live ({live} shown, {acked} acked)");
    eprintln!("{n} messages at {loss} loss: {acked} acked directly, {} through the server", n - acked);
    eprintln!("{}\n{}", ra.report(), rb.report());
    alice.stdout_lines().iter().filter(|l| **l == no_ack_from("bob")).count()
}

#[test]
fn twenty_percent_loss_between_two_clients_loses_and_doubles_nothing() {
    lossy_direct_messages(300, 0.2);
}

/// At 50 % loss each way a direct round trip succeeds one time in four, so about one send in
/// six exhausts its direct retries; from the second retransmission on, a copy also goes through
/// the server's relay, whose path here loses nothing, so every send is ACKed, directly or
/// relayed, and none falls back to a save (the fallback when neither path answers is proven in
/// `offline.rs`, with a stopped recipient).
#[test]
fn half_the_datagrams_lost_still_loses_and_doubles_nothing() {
    let fell_back = lossy_direct_messages(100, 0.5);
    assert_eq!(fell_back, 0, "the relay carries what the lossy direct path lost");
}

#[test]
fn duplicated_and_reordered_datagrams_show_nothing_twice_and_tables_converge() {
    let seed = seed();
    let server = Server::start_with(&KEEPALIVES);
    let chaos = Faults { drop: 0.0, duplicate: 1.0, max_delay: Duration::from_millis(40), ..Faults::default() };
    let (mut alice, ra) = behind_relay("alice", server.port, chaos, chaos, seed, &[]);
    let (mut bob, rb) = behind_relay("bob", server.port, chaos, chaos, seed ^ 1, &[]);
    let (mut carol, rc) = behind_relay("carol", server.port, chaos, chaos, seed ^ 2, &[]);
    for c in [&mut alice, &mut bob] {
        wait_listed(c, &["alice", "bob", "carol"], true);
    }
    let to_bob: String = (0..20).map(|i| format!("send bob a{i}\n")).collect();
    alice.send_line(to_bob.trim_end());
    let to_carol: String = (0..20).map(|i| format!("send carol b{i}\n")).collect();
    bob.send_line(to_carol.trim_end());
    let to_all: String = (0..5).map(|i| format!("send_all c{i}\n")).collect();
    carol.send_line(to_all.trim_end());

    wait_count(&alice, "acks from bob", 20, LONG, |l| l == acked_by("bob"));
    wait_count(&bob, "acks from carol", 20, LONG, |l| l == acked_by("carol"));
    wait_count(&carol, "channel acks", 5, LONG, |l| l == CHANNEL_ACKED);
    for c in [&alice, &bob] {
        wait_count(c, "channel messages", 5, LONG, |l| l.starts_with(">>> [Channel_Message carol: c"));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_each_once(&bob, &shown(&bob, "alice", "a"), 20, "alice → bob");
    assert_each_once(&carol, &shown(&carol, "bob", "b"), 20, "bob → carol");
    for c in [&alice, &bob] {
        for i in 0..5 {
            c.assert_count(&channel("carol", &format!("c{i}")), 1);
        }
    }
    alice.assert_count(&acked_by("bob"), 20);
    carol.assert_count(CHANNEL_ACKED, 5);

    // Tables: whatever order they came in, every client ends on the same newest one.
    let want = {
        let mut rows = vec![("alice", ra.public.port()), ("bob", rb.public.port()), ("carol", rc.public.port())];
        rows.sort();
        rows.into_iter()
            .map(|(n, p)| Row { name: n.into(), ip: "127.0.0.1".into(), port: p, online: true })
            .collect::<Vec<_>>()
    };
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(list_now(c, 3), want, "{}'s table", c.name);
    }
    eprintln!("{}\n{}\n{}", ra.report(), rb.report(), rc.report());
}

#[test]
fn twenty_percent_loss_to_the_server_through_reg_dereg_saves_and_the_channel() {
    const ROUNDS: usize = 3;
    const PER_ROUND: usize = 5;
    let seed = seed();
    let server = Server::start();
    let loss = Faults::loss(0.2);
    // Ten retries instead of five: with 20 % loss each way a request fails all six tries about
    // once in 460, and then the client rightly gives up; the test is about what is not lost.
    let extra = ["--retries", "10"];
    let (mut alice, ra) = behind_relay("alice", server.port, loss, loss, seed, &extra);
    let (mut bob, rb) = behind_relay("bob", server.port, loss, loss, seed ^ 1, &extra);
    let (mut carol, rc) = behind_relay("carol", server.port, loss, loss, seed ^ 2, &extra);
    for c in [&mut alice, &mut bob] {
        wait_listed(c, &["alice", "bob", "carol"], true);
    }
    let mut sent = 0;
    for round in 0..ROUNDS {
        carol.send_line("dereg carol");
        carol.expect_line(OFFLINE_BYE, LONG);
        for c in [&mut alice, &mut bob] {
            wait_listed(c, &["carol"], false);
        }
        for i in 0..PER_ROUND {
            let n = round * PER_ROUND + i;
            alice.send_line(&format!("send carol a{n}"));
            bob.send_line(&format!("send carol b{n}"));
            alice.send_line(&format!("send_all x{n}"));
        }
        sent += PER_ROUND;
        wait_count(&alice, "saves", sent, LONG, |l| l == SAVED);
        wait_count(&bob, "saves", sent, LONG, |l| l == SAVED);
        wait_count(&alice, "channel acks", sent, LONG, |l| l == CHANNEL_ACKED);
        carol.send_line("reg carol");
        carol.expect_line(WELCOME, LONG);
        carol.expect_line(TABLE, LONG);
    }
    let total = ROUNDS * PER_ROUND;
    std::thread::sleep(Duration::from_secs(2));
    assert_each_once(&carol, &shown(&carol, "alice", "a"), total, "alice → carol");
    assert_each_once(&carol, &shown(&carol, "bob", "b"), total, "bob → carol");
    alice.assert_count(SAVED, total);
    bob.assert_count(SAVED, total);
    let channel_at = |c: &Client| {
        let mut seen = BTreeMap::new();
        for l in c.stdout_lines() {
            let text = l.strip_prefix(">>> [Channel_Message alice: x").and_then(|r| r.strip_suffix(']'));
            let stored = l.strip_prefix(">>> Channel_Message alice: ").filter(|r| r.len() > 20).map(|r| &r[21..]);
            if let Some(i) = text.or(stored).and_then(|n| n.parse::<usize>().ok()) {
                *seen.entry(i).or_insert(0) += 1;
            }
        }
        seen
    };
    assert_each_once(&bob, &channel_at(&bob), total, "channel at bob");
    assert_each_once(&carol, &channel_at(&carol), total, "channel at carol (stored while offline)");
    eprintln!("{}\n{}\n{}", ra.report(), rb.report(), rc.report());
}

#[test]
fn a_server_killed_mid_stream_loses_no_acknowledged_save_and_shows_none_twice() {
    const N: usize = 150;
    let mut server = Server::start_with(&KEEPALIVES);
    let port = server.port;
    let spawn = |name: &str| {
        let c = Client::spawn(name, port, free_port(), new_dir(), &[]);
        c.expect_line(WELCOME, LONG);
        c
    };
    let mut bob = spawn("bob");
    let mut alice = spawn("alice");
    let mut carol = spawn("carol");
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, LONG);
    for c in [&mut alice, &mut carol] {
        wait_listed(c, &["bob"], false);
    }
    // Three waves each: one before the crash, one written just before it (in flight when the
    // server dies), one while it is down (retransmitted until it is back).
    let wave = |tag: &str, w: usize| (w * N..(w + 1) * N).map(|i| format!("send bob {tag}{i}\n")).collect::<String>();
    alice.send_line(wave("a", 0).trim_end());
    carol.send_line(wave("c", 0).trim_end());
    wait_count(&alice, "a few saves", 10, LONG, |l| l == SAVED);
    alice.send_line(wave("a", 1).trim_end());
    carol.send_line(wave("c", 1).trim_end());
    server.kill();
    let done = |c: &Client| c.stdout_lines().iter().filter(|l| *l == SAVED).count();
    let (a, c) = (done(&alice), done(&carol));
    eprintln!("killed with {a} and {c} of {} saves acknowledged", 3 * N);
    assert!(a < 2 * N && c < 2 * N, "the crash came mid-stream");
    alice.send_line(wave("a", 2).trim_end());
    carol.send_line(wave("c", 2).trim_end());
    // A crash in the middle of a write leaves half a record at the end of the file (over
    // PostgreSQL a transaction is all or nothing: there is no file to tear).
    if !crate::harness::over_postgres() {
        let mailbox = server.data_dir().join("mailboxes").join("bob.mbox");
        let mut file = std::fs::OpenOptions::new().append(true).open(&mailbox).expect("bob's mailbox exists");
        file.write_all(br#"0badf00d {"id":1,"from":"ali"#).expect("write a torn record");
        drop(file);
    }
    server.restart();

    for c in [&alice, &carol] {
        wait_count(c, "saves", 3 * N, LONG, |l| l == SAVED);
    }
    bob.send_line("reg bob");
    bob.expect_line(WELCOME, LONG);
    bob.expect_line(TABLE, LONG);
    assert_each_once(&bob, &shown(&bob, "alice", "a"), 3 * N, "alice's saves");
    assert_each_once(&bob, &shown(&bob, "carol", "c"), 3 * N, "carol's saves");
}
