//! Bad datagrams: random bytes, empty and truncated JSON, an oversized blob and a chat with a
//! terminal escape, sent to the server inside an authenticated channel (so that they reach its
//! core) and in clear, and to a client by a plain socket. Nothing is shown, nothing crashes,
//! the server does not amplify, and the normal flow still works afterwards.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::harness::{Attacker, Client, Server, TABLE, WAIT, acked_by, chat, start_clients};

/// Deterministic pseudo-random bytes (xorshift), so a failure can be replayed.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[0]
        })
        .collect()
}

fn garbage() -> Vec<Vec<u8>> {
    vec![
        noise(1, 1),
        noise(512, 2),
        noise(4000, 3),
        Vec::new(),
        b"{}".to_vec(),
        b"null".to_vec(),
        br#"{"type":"register","id":5,"name":"mallory""#.to_vec(),
        br#"{"type":"chat","id":1,"from":"x","text":"trunc"#.to_vec(),
        br#"{"type":"no_such_type","id":1}"#.to_vec(),
        br#"{"type":"chat","id":1,"from":"x","text":"\u001b[2J"}"#.to_vec(),
        [b"{\"type\":\"chat\",\"id\":2,\"from\":\"x\",\"text\":\"".as_slice(), &[b'A'; 60_000], b"\"}"].concat(),
        noise(60_000, 4),
    ]
}

/// Sends each of `datagrams` to `port` from one socket; returns every datagram that came back
/// within `listen`, and how many bytes were sent.
fn spray(port: u16, datagrams: &[Vec<u8>], listen: Duration) -> (Vec<Vec<u8>>, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the garbage socket");
    let mut sent = 0;
    for datagram in datagrams {
        sent += sock.send_to(datagram, ("127.0.0.1", port)).expect("send a garbage datagram");
    }
    let deadline = Instant::now() + listen;
    let mut back = Vec::new();
    let mut buf = vec![0; 65_536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).expect("set a read timeout");
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => back.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    (back, sent)
}

#[test]
fn garbage_datagrams_are_dropped_and_everything_still_works() {
    let server = Server::start();
    let [mut alice, bob] = start_clients(&server, ["alice", "bob"]);
    let (alice_from, bob_from) = (alice.stdout_len(), bob.stdout_len());

    // Inside an authenticated channel, so that it reaches the server's core; then a request
    // whose answer shows that the core went through all of it (datagrams are handled in order).
    let mut mallory = Attacker::new(server.port);
    for datagram in garbage() {
        mallory.send(&datagram, 1);
    }
    mallory.send(br#"{"type":"fetch","id":11,"index":0}"#, 1);
    let answer = mallory.expect_answer(&server, "answer to a fetch after the garbage", WAIT, |a| a["id"] == 11);
    if answer["type"] != "refused" || answer["reason"] != "not_registered" {
        server.fail(&format!("a fetch from an unregistered client should be refused, was answered {answer}"));
    }
    mallory.collect(Duration::from_millis(300));
    let answers: Vec<String> =
        mallory.plaintexts().iter().map(|p| String::from_utf8_lossy(&p[..p.len().min(200)]).into_owned()).collect();
    if answers.len() != 1 {
        server.fail(&format!("should answer the garbage with nothing, only the fetch after it; answered {answers:?}"));
    }
    let (sent, received) = (mallory.sent_bytes(), mallory.received_bytes());
    if received > 3 * sent {
        server.fail(&format!("answered {received} bytes to {sent} bytes of garbage on the wire: more than 3x"));
    }

    // In clear, as before the channel: JSON draws nothing at all; other bytes at most the
    // channel's one-byte hint that the sender has no session (for what looks like a data
    // datagram), once.
    let (json, binary): (Vec<Vec<u8>>, Vec<Vec<u8>>) = garbage().into_iter().partition(|d| d.starts_with(b"{"));
    let (back, _) = spray(server.port, &json, Duration::from_millis(300));
    if !back.is_empty() {
        server.fail(&format!("answered JSON sent in clear with {} datagram(s)", back.len()));
    }
    let (back, _) = spray(server.port, &binary, Duration::from_millis(300));
    if back.len() > 1 || back.iter().any(|d| d.len() > 1) {
        let lens: Vec<usize> = back.iter().map(Vec::len).collect();
        server.fail(&format!("answered garbage sent in clear with datagrams of {lens:?} bytes"));
    }
    spray(bob.port, &garbage(), Duration::from_millis(100));
    server.assert_alive();
    bob.assert_alive();

    // Datagrams are handled in order: once bob shows this, he has seen all the garbage.
    alice.send_line("send bob after the garbage");
    bob.expect_line(&chat("alice", "after the garbage"), WAIT);
    alice.expect_line(&acked_by("bob"), WAIT);

    let carol = Client::start("carol", &server);
    alice.expect_line(TABLE, WAIT);
    bob.expect_line(TABLE, WAIT);
    carol.assert_alive();

    let bob_seen = bob.stdout_since(bob_from);
    if bob_seen != [chat("alice", "after the garbage"), TABLE.to_owned()] {
        bob.fail(&format!("bob should show no line for garbage, showed {bob_seen:?}"));
    }
    let alice_seen = alice.stdout_since(alice_from);
    if alice_seen != [acked_by("bob"), TABLE.to_owned()] {
        alice.fail(&format!("alice should show no line for garbage, showed {alice_seen:?}"));
    }
}
