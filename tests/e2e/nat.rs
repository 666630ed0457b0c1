//! SPEC 11 across real NATs: the server on a public segment, alice and bob each behind a Linux
//! NAT box (MASQUERADE, inbound only for replies), all in network namespaces (see
//! `harness::netns`; these tests need root, iproute2 and iptables, and fail without them).
//!
//! Hole punching makes two clients behind port-preserving NATs chat directly, keepalives keep
//! their mappings to the server open however long they sit idle, and a client killed behind a
//! NAT is seen offline without anyone sending to it. Where no direct path opens (NATs that keep
//! state for the packets they drop, or that pick a new port per flow), the relay carries each
//! message and its ACK; two clients behind one NAT talk over their LAN addresses.

use std::time::{Duration, Instant};

use crate::harness::{
    Client, NAT1_PUBLIC, NAT2_PUBLIC, NatOptions, Network, Row, Site, TABLE, WAIT, WELCOME, acked_by, chat,
};

/// SPEC 11: behind port-preserving NATs the first message is ACKed within 3 s.
const FIRST_WITHIN: Duration = Duration::from_secs(3);
/// The next ones within a round trip: well under the first ACK timeout (500 ms), after which a
/// retried, punched or relayed path would answer.
const NEXT_WITHIN: Duration = Duration::from_millis(300);

/// Sends `send <to> <text>` from `from`; waits for `[Message received by <to>.]` and returns how
/// long it took, then checks `to` shows the message live.
fn timed_send(from: &mut Client, to: &Client, text: &str) -> Duration {
    let sent = Instant::now();
    from.send_line(&format!("send {} {text}", to.name));
    from.expect_line(&acked_by(&to.name), WAIT);
    let took = sent.elapsed();
    to.expect_line(&chat(&from.name, text), WAIT);
    eprintln!("{} -> {} {text:?}: ACKed after {took:?}", from.name, to.name);
    took
}

/// Like [`timed_send`], and fails unless the ACK came within `bound`.
fn send_within(from: &mut Client, to: &Client, text: &str, bound: Duration) {
    let took = timed_send(from, to, text);
    if took > bound {
        from.fail(&format!("{text:?} to {} was ACKed after {took:?}, more than {bound:?}", to.name));
    }
}

/// Fails unless `client` registered once and never printed a fallback or a name clash.
fn assert_never_fell_back(client: &Client) {
    client.assert_count(WELCOME, 1);
    let bad = ["[No ACK from", "exists!!]", "[Messages received by the server and saved]", "[You have messages]"];
    if let Some(line) = client.stdout_lines().iter().find(|l| bad.iter().any(|b| l.contains(b))) {
        client.fail(&format!("printed {line:?}: a message did not go directly, or a registration was forced"));
    }
}

/// Starts alice at site A and bob at site B, and checks each is known by its NAT's public
/// address on its own port.
fn start_alice_and_bob(net: &Network, server: &crate::harness::Server) -> (Client, Client) {
    let mut alice = net.start_client(Site::A, "alice", server);
    let bob = net.start_client(Site::B, "bob", server);
    alice.expect_line(TABLE, WAIT);
    let rows = alice.list(2);
    for (name, ip, port) in [("alice", NAT1_PUBLIC, alice.port), ("bob", NAT2_PUBLIC, bob.port)] {
        let want = Row { name: name.to_owned(), ip: ip.to_owned(), port, online: true };
        if !rows.contains(&want) {
            alice.fail(&format!("`list` should show {want:?} (behind a port-preserving NAT), showed {rows:?}"));
        }
    }
    (alice, bob)
}

#[test]
fn two_clients_behind_port_preserving_nats_chat_directly_both_ways() {
    let net = Network::build(NatOptions { drop_new_inbound: true, ..NatOptions::default() });
    let server = net.start_server(&[]);
    let (mut alice, mut bob) = start_alice_and_bob(&net, &server);
    chat_both_ways(&mut alice, &mut bob, FIRST_WITHIN);
}

/// Two messages each way between alice and bob: the first ACKed within `first_within`, the
/// second within a round trip (the path is open, or remembered); each shown once, live; no
/// fallback line and no second registration, also a second later.
fn chat_both_ways(alice: &mut Client, bob: &mut Client, first_within: Duration) {
    send_within(alice, bob, "hello bob", first_within);
    send_within(bob, alice, "hello alice", first_within);
    send_within(alice, bob, "how are you", NEXT_WITHIN);
    send_within(bob, alice, "fine thanks", NEXT_WITHIN);
    bob.assert_never(&chat("alice", "hello bob"), Duration::from_secs(1));
    for (client, peer, texts) in
        [(&*alice, "bob", ["hello alice", "fine thanks"]), (&*bob, "alice", ["hello bob", "how are you"])]
    {
        assert_never_fell_back(client);
        for text in texts {
            client.assert_count(&chat(peer, text), 1);
        }
    }
}

#[test]
fn clients_idle_three_nat_timeouts_stay_online_and_get_messages_live() {
    const NAT_TIMEOUT_SECS: u32 = 2;
    let net = Network::build(NatOptions {
        drop_new_inbound: true,
        udp_timeout_secs: Some(NAT_TIMEOUT_SECS),
        udp_timeout_stream_secs: Some(NAT_TIMEOUT_SECS),
        ..NatOptions::default()
    });
    let server = net.start_server(&["--keepalive-ms", "500"]);
    let (mut alice, mut bob) = start_alice_and_bob(&net, &server);
    send_within(&mut alice, &bob, "before the break", FIRST_WITHIN);

    // Every NAT mapping without keepalives expires, the direct one between alice and bob too;
    // nobody is marked offline meanwhile (a table update would say so).
    let idle = Duration::from_secs(3 * u64::from(NAT_TIMEOUT_SECS)) + Duration::from_millis(500);
    alice.assert_never(TABLE, idle);
    bob.assert_never(TABLE, Duration::ZERO);

    send_within(&mut alice, &bob, "after the break", FIRST_WITHIN);
    send_within(&mut bob, &alice, "welcome back", FIRST_WITHIN);
    for client in [&alice, &bob] {
        assert_never_fell_back(client);
    }
    alice.assert_never(TABLE, Duration::ZERO);
    bob.assert_never(TABLE, Duration::ZERO);
}

#[test]
fn a_client_killed_behind_a_nat_is_seen_offline_within_three_keepalive_intervals() {
    const KEEPALIVE_MS: u64 = 500;
    let net = Network::build(NatOptions::default());
    let server = net.start_server(&["--keepalive-ms", &KEEPALIVE_MS.to_string()]);
    let (mut alice, mut bob) = start_alice_and_bob(&net, &server);
    // Both keep alive through their NATs: several intervals pass and nobody is marked offline.
    alice.assert_never(TABLE, Duration::from_millis(5 * KEEPALIVE_MS));

    let from = alice.stdout_len();
    bob.kill();
    let killed = Instant::now();
    alice.expect_line(TABLE, WAIT);
    let noticed = killed.elapsed();
    eprintln!("bob killed behind nat2: alice's table showed it after {noticed:?}");
    // Three silent intervals, noticed at the next sweep (every half interval), and a margin for
    // a loaded machine.
    let bound = Duration::from_millis(3 * KEEPALIVE_MS + KEEPALIVE_MS / 2) + Duration::from_secs(2);
    if noticed > bound {
        alice.fail(&format!("bob was noticed offline {noticed:?} after the kill, more than {bound:?}"));
    }
    let offline = Row { name: "bob".to_owned(), ip: NAT2_PUBLIC.to_owned(), port: bob.port, online: false };
    let rows = alice.list(2);
    if !rows.contains(&offline) {
        alice.fail(&format!("`list` should show {offline:?}, showed {rows:?}"));
    }
    assert!(alice.stdout_since(from).iter().all(|l| !l.contains("bob:")), "nobody sent bob anything");

    // Bob comes back behind the same NAT (same port and data directory): online again.
    let back = bob.respawn(&server);
    back.expect_line(WELCOME, WAIT);
    alice.expect_line(TABLE, WAIT);
    let online = Row { online: true, ..offline };
    let rows = alice.list(2);
    if !rows.contains(&online) {
        alice.fail(&format!("`list` should show {online:?} again, showed {rows:?}"));
    }
}

/// SPEC 11: through the relay the first message is ACKed within 5 s.
const RELAYED_FIRST_WITHIN: Duration = Duration::from_secs(5);

/// Both ways, twice, between alice at site A and bob at site B when no direct path opens: each
/// message is ACKed through the relay within 5 s and shown once, live; the second each way at
/// once (the path is remembered); no fallback line and no second registration.
fn relayed_both_ways(options: NatOptions) {
    let net = Network::build(options);
    let server = net.start_server(&[]);
    let mut alice = net.start_client(Site::A, "alice", &server);
    let mut bob = net.start_client(Site::B, "bob", &server);
    alice.expect_line(TABLE, WAIT);
    chat_both_ways(&mut alice, &mut bob, RELAYED_FIRST_WITHIN);
}

/// Without the rule that drops unsolicited packets before conntrack, the sender's first packet
/// leaves state in the recipient's NAT that moves the recipient's mapping when it punches: the
/// punch fails, and the relay carries the messages.
#[test]
fn behind_nats_that_keep_state_for_dropped_packets_the_relay_delivers_both_ways() {
    relayed_both_ways(NatOptions::default());
}

/// NATs that pick a new port for every flow: no punch can work, the relay carries the messages.
#[test]
fn behind_nats_that_pick_a_new_port_per_flow_the_relay_delivers_both_ways() {
    relayed_both_ways(NatOptions { hard: true, drop_new_inbound: true, ..NatOptions::default() });
}

/// Two clients behind one NAT (which, like most, does not hairpin) talk over their LAN
/// addresses: even the first message is ACKed within a round trip, before any punch or relay.
#[test]
fn two_clients_behind_one_nat_talk_over_their_lan() {
    let net = Network::build(NatOptions { drop_new_inbound: true, ..NatOptions::default() });
    let server = net.start_server(&[]);
    let mut alice = net.start_client(Site::A, "alice", &server);
    let mut carol = net.start_client(Site::A2, "carol", &server);
    alice.expect_line(TABLE, WAIT);
    let rows = alice.list(2);
    assert!(rows.iter().all(|r| r.ip == NAT1_PUBLIC), "both behind nat1: {rows:?}");

    send_within(&mut alice, &carol, "next door", NEXT_WITHIN);
    send_within(&mut carol, &alice, "hi neighbour", NEXT_WITHIN);
    for client in [&alice, &carol] {
        assert_never_fell_back(client);
    }
}
