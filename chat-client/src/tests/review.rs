//! Findings of the review of SPEC 11 on the client side, each fixed and kept as a test that
//! fails without its fix.

use super::*;

/// Finding 4. The LAN rule takes "the same public IP as mine" to mean "behind my NAT". Behind
/// a carrier-grade NAT (or a campus NAT in front of several subnets) two homes share one
/// public IP while their LANs are separate networks, often with the same private range. Bob's
/// row has his LAN address in his own home (192.168.1.20 here); alice sends there, where
/// nothing of bob's is, on the first attempt and on every retransmission, and never tries his
/// public address, which a CGN reaches by hairpinning (RFC 6888 REQ-9 asks CGNs to hairpin).
/// Only the relay can then deliver, a second later, and the path remembered is the relay.
#[test]
fn a_peer_behind_the_same_public_ip_but_silent_at_its_lan_address_is_tried_at_its_public_one() {
    let mut f = Fixture::online(true);
    let cgn = |port: u16| SocketAddr::from(([100, 64, 0, 1], port));
    let bob_lan: SocketAddr = "192.168.1.20:6002".parse().expect("addr");
    let rows = vec![
        online_row("alice", cgn(6001), Some("192.168.1.10:6001".parse().expect("addr"))),
        online_row("bob", cgn(6002), Some(bob_lan)),
    ];
    f.recv(SERVER, Datagram::Table(Table { version: 20, clients: rows }));
    f.events();
    f.sent();
    f.cmd("send bob across the street");
    let mut chats_to = Vec::new();
    for ms in (0..3000).step_by(50) {
        f.at(ms);
        while let Some(t) = f.client.poll_transmit() {
            if let Ok(Datagram::Chat { .. }) = decode(&t.bytes) {
                chats_to.push(t.to);
            }
        }
    }
    assert!(
        chats_to.contains(&cgn(6002)),
        "every attempt went to bob's LAN address in another network, none to his public one: {chats_to:?}"
    );
}

/// Finding 5 (minor). Keepalives stop as soon as the user types `dereg` or `quit` while a
/// send is still in flight, although the client stays online (and answers peers) until those
/// sends end and the `dereg` is ACKed: a send that falls back (retries, `save`, `exists`, the
/// retry, the forced `save`) takes several seconds, so with a short `--keepalive-ms` the server
/// marks the client offline meanwhile, and its `save` is refused `not_registered`.
#[test]
fn an_online_client_keeps_alive_while_its_sends_end_before_the_dereg() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("register first") };
    f.recv(
        SERVER,
        Datagram::Registered {
            id,
            version: 10,
            stored: 0,
            secret: secret(),
            cookie: 42,
            keepalive_ms: 1_000,
            nodes: vec![],
        },
    );
    let Some((SERVER, Datagram::Confirm { id, .. })) = f.sent().pop() else { panic!("confirm") };
    f.recv(SERVER, Datagram::Ack { id });
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    f.sent();
    f.events();
    f.cmd("send bob still there?");
    f.cmd("dereg alice");
    let (mut keepalives, mut dereg_sent) = (Vec::new(), false);
    for ms in (0..=2_950).step_by(50) {
        f.at(ms);
        for (port, d) in f.sent() {
            if port == SERVER && d == Datagram::Keepalive {
                keepalives.push(ms);
            }
            dereg_sent |= matches!(d, Datagram::Dereg { .. });
        }
    }
    assert!(!dereg_sent, "the send is still in flight: no dereg yet");
    assert_eq!(keepalives, [1_000, 2_000], "still online for 3 s, one keepalive a second");
}
