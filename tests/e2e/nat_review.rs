//! Findings of the review of SPEC 11, shown with the real binary in the NAT test network
//! (`harness::netns`, as root), each fixed and kept as a test that fails without its fix.

use std::time::Duration;

use crate::harness::{Client, NAT2_PUBLIC, NatOptions, Network, Row, Site, TABLE, WAIT, acked_by, chat};

/// Finding 1. Bob's network drops out (his NAT forwards nothing) for longer than three
/// keepalive intervals plus the time the server keeps pushing him the table that lists him
/// offline. When it comes back, bob, alive the whole time, keeps alive from the same public
/// address as before; the server ignores keepalives from an address whose client it marked
/// offline, so bob never learns he is offline and never registers again. Everyone sees him
/// offline for good, and messages to him are stored, unseen, while his own `list` says he is
/// online. SPEC 11: "a client that is alive after all, whose keepalives were lost, registers
/// again"; "A live client is never marked offline because its NAT forgot it."
#[test]
fn a_client_cut_off_for_a_while_is_online_again_once_its_network_is_back() {
    let net = Network::build(NatOptions::default());
    // Keepalives every 500 ms; the server's table pushes give up after about 3 s.
    let server = net.start_server(&["--keepalive-ms", "500", "--ack-timeout-ms", "100"]);
    let mut alice = net.start_client(Site::A, "alice", &server);
    let bob = net.start_client(Site::B, "bob", &server);
    alice.expect_line(TABLE, WAIT);
    let offline = Row { name: "bob".to_owned(), ip: NAT2_PUBLIC.to_owned(), port: bob.port, online: false };

    // The outage: nat2 forwards nothing, either way.
    net.exec("nat2", &["iptables", "-w", "-I", "FORWARD", "1", "-j", "DROP"]);
    alice.expect_line(TABLE, WAIT);
    let rows = alice.list(2);
    assert!(rows.contains(&offline), "bob silent for three intervals is offline: {rows:?}");
    // It lasts a few seconds more, past the server's last push to bob.
    alice.assert_never(TABLE, Duration::from_secs(5));
    net.exec("nat2", &["iptables", "-w", "-D", "FORWARD", "1"]);

    // Bob is alive and keeps alive: he should be online again, and reachable.
    alice.expect_line(TABLE, WAIT);
    let rows = alice.list(2);
    let online = Row { online: true, ..offline };
    assert!(rows.contains(&online), "bob back online: {rows:?}");
    alice.send_line("send bob are you back");
    bob.expect_line(&chat("alice", "are you back"), WAIT);
}

/// Finding 3. Behind NATs that pick a new port per flow every message goes through the relay,
/// whose budget (50 a second per client) counts a client's relayed chats, every
/// retransmission of them, and its relayed ACKs together. Alice and bob each send a burst of
/// 60 lines: the chats fill each side's budget, the ACKs for the other side's chats are
/// dropped, and messages fall back to the server (`[No ACK …]`, `[Client … exists!!]`, a
/// forced save that marks a live client offline) although both were reachable all along.
#[test]
fn a_burst_both_ways_through_the_relay_is_delivered_without_falling_back() {
    const BURST: usize = 60;
    let net = Network::build(NatOptions { hard: true, drop_new_inbound: true, ..NatOptions::default() });
    let server = net.start_server(&[]);
    let mut alice = net.start_client(Site::A, "alice", &server);
    let mut bob = net.start_client(Site::B, "bob", &server);
    alice.expect_line(TABLE, WAIT);
    for i in 0..BURST {
        alice.send_line(&format!("send bob a{i}"));
        bob.send_line(&format!("send alice b{i}"));
    }
    let outcomes = |c: &Client| {
        c.stdout_lines().iter().filter(|l| l.starts_with(">>> [Message received by") || l.contains("saved]")).count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while (outcomes(&alice) < BURST || outcomes(&bob) < BURST) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (client, peer) in [(&alice, "bob"), (&bob, "alice")] {
        let lines = client.stdout_lines();
        let acked = lines.iter().filter(|l| **l == acked_by(peer)).count();
        let fell_back: Vec<&String> =
            lines.iter().filter(|l| l.contains("[No ACK from") || l.contains("exists!!]")).collect();
        if acked != BURST || !fell_back.is_empty() {
            client.fail(&format!(
                "{} of {BURST} messages to {peer} ACKed; fell back to the server: {} lines, e.g. {:?}",
                acked,
                fell_back.len(),
                fell_back.first()
            ));
        }
    }
}
