//! Findings of the review of SPEC 11 (presence, punching, relay), each fixed and kept as a test
//! that fails without its fix.

use super::*;

/// A server with a 10 s keepalive interval and alice and bob online.
fn with_keepalive() -> Fixture {
    let cfg = Config { keepalive: Duration::from_secs(10), ..Config::default() };
    let mut f = Fixture::with(cfg, Limits::default());
    f.register("alice", ALICE);
    f.register("bob", BOB);
    f
}

/// Finding 1. Alice's network drops out for longer than three keepalive intervals (a Wi-Fi
/// outage, a laptop lid closed): the server marks her offline and pushes the table that says
/// so to her address, backing off for about 15 s, while nothing reaches her. When her network
/// comes back she keeps alive from the same address as before, but the server answers a
/// keepalive from an address whose client it marked offline with nothing at all: alice never
/// learns she is offline, never registers again, and every message for her is stored unseen
/// while her own screen says she is online.
#[test]
fn a_client_marked_offline_during_an_outage_is_told_when_its_keepalives_come_back() {
    let mut f = with_keepalive();
    // Bob keeps alive every 10 s; alice's datagrams are lost from 0 s to 60 s, and so is all
    // the server sends her.
    let mut marked_offline = false;
    for s in 1..=60u64 {
        if s % 10 == 0 {
            f.server.handle_datagram(f.t0 + Duration::from_secs(s), addr(BOB), Datagram::Keepalive);
        }
        let out = f.at(s * 1000);
        marked_offline |= out.iter().any(|(p, d)| *p == BOB && online_in(d, "alice") == Some(false));
        let to_bob: Vec<_> = out.into_iter().filter(|(p, _)| *p == BOB).collect();
        f.ack_tables(&to_bob);
    }
    assert!(marked_offline, "silent for three intervals, alice was marked offline");
    // Alice's network is back: she keeps alive as before, from the same address.
    let mut told = false;
    for s in 61..=120u64 {
        if s % 10 == 0 {
            for port in [ALICE, BOB] {
                f.server.handle_datagram(f.t0 + Duration::from_secs(s), addr(port), Datagram::Keepalive);
            }
        }
        let out = f.at(s * 1000);
        told |= out.iter().any(|(p, d)| *p == ALICE && online_in(d, "alice") == Some(false));
        f.ack_tables(&out);
    }
    assert!(
        told,
        "alice kept alive for a minute after the outage and was never told she is offline: she \
         will not register again"
    );
}

/// Finding 2. After a restart the server restores clients online, but its presence timer is
/// off: with the table at the version it restored and nobody swept yet, `poll_timeout` says
/// there is nothing to wait for. A driver that wakes only at `poll_timeout` (and on input)
/// never sweeps, so a client that died while the server was down stays online in everyone's
/// table until some other input wakes the server.
#[test]
fn a_restarted_server_sweeps_the_clients_it_restored_online() {
    let before = with_keepalive();
    let saved = before.server.saved_table();
    // The server restarts a minute later (its versions start from the wall clock).
    let cfg = Config { keepalive: Duration::from_secs(10), ..Config::default() };
    let t0 = Instant::now();
    let wall = Utc.with_ymd_and_hms(2026, 11, 23, 14, 6, 9).single().expect("time");
    let (store, _disk) = TestStore::new(Limits::default());
    let mut server = Server::new(cfg, store, t0, wall, Entropy::from_seed([8; 32]));
    server.restore_table(saved);
    assert!(server.table().clients.iter().all(|r| r.online), "both restored online");
    // Nobody comes back; the driver wakes whenever the core asks it to.
    let mut now = t0;
    while let Some(at) = server.poll_timeout() {
        if at > t0 + Duration::from_secs(120) {
            break;
        }
        now = at.max(now);
        server.handle_timeout(now);
        while server.poll_job(now).map(|j| server.handle_job_done(now, j.run())).is_some() {}
        while server.poll_transmit().is_some() {}
    }
    let online: Vec<String> = server.table().clients.iter().filter(|r| r.online).map(|r| r.name.to_string()).collect();
    assert!(
        online.is_empty(),
        "silent for 12 keepalive intervals after the restart, {online:?} still online (poll_timeout said nothing \
         was due)"
    );
}

/// Finding 3 (server side). Chats and ACKs share one relay budget per client, and every
/// retransmission of a chat still unanswered is relayed again. Alice and bob, both behind NATs
/// that pick a new port per flow, each relay 50 chats in one second: every ACK either then
/// sends for the other's chats is dropped, in this second and (as both retransmit all 50) the
/// next ones, until both give up and fall back to the server.
#[test]
fn relayed_acks_get_through_while_both_sides_relay_a_burst() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let relay = |from: &str, to: &str, id: u64| Datagram::RelayChat {
        id: MsgId(id),
        from: name(from),
        to: name(to),
        sealed: sealed(from, to, MsgId(id), "burst"),
    };
    let ack = |from: &str, to: &str, id: u64| Datagram::RelayAck {
        id: MsgId(id),
        from: name(from),
        to: name(to),
        proof: sealed(from, to, MsgId(id), ""),
    };
    let mut acks_passed = 0;
    // Two seconds: at the start of each, both relay their 50 unanswered chats again, then each
    // ACKs the other's 50.
    for second in 0..2u64 {
        f.at(1000 + second * 1000);
        for id in 0..50 {
            f.recv(ALICE, relay("alice", "bob", 100 + id));
            f.recv(BOB, relay("bob", "alice", 200 + id));
        }
        for id in 0..50 {
            acks_passed += f.recv(BOB, ack("bob", "alice", 100 + id)).len();
            acks_passed += f.recv(ALICE, ack("alice", "bob", 200 + id)).len();
        }
    }
    assert!(acks_passed > 0, "no ACK of 200 was relayed: each side's own retransmissions used up its budget");
}
