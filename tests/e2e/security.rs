//! Guarantees 5 and 6 of SPEC: only the owner acts for a name, and the server is no amplifier.
//! A plain UDP socket plays the attacker, with datagrams in the format of `docs/PROTOCOL.md`.

use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Client, HAVE_MESSAGES, OFFLINE_BYE, SAVED, Server, TABLE, WAIT, WELCOME, channel, free_port, new_dir, start_clients,
};

/// A socket on another port of this host: same IP as the clients, never registered.
fn attacker() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind the attacker's socket")
}

/// Sends `datagram` to the server `times` times (as retransmissions would); returns bytes sent.
fn send(sock: &UdpSocket, server: &Server, datagram: &str, times: usize) -> usize {
    (0..times).map(|_| sock.send_to(datagram.as_bytes(), ("127.0.0.1", server.port)).expect("send a datagram")).sum()
}

#[test]
fn another_client_cannot_take_an_offline_name_and_its_messages() {
    let server = Server::start();
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(TABLE, WAIT);
    alice.send_line("send bob for bob only");
    alice.expect_line(SAVED, WAIT);

    // Another data directory: no secret for "bob".
    let impostor = Client::spawn("bob", server.port, free_port(), new_dir(), &[]);
    let deadline = Instant::now() + WAIT;
    let code = loop {
        if impostor.stdout_lines().iter().any(|l| l.contains("for bob only")) {
            impostor.fail("a client without bob's secret was shown bob's stored message");
        }
        if impostor.exit_status().is_some() {
            break impostor.wait_exit(WAIT).code();
        }
        if Instant::now() >= deadline {
            impostor.fail("should be refused and exit 1; still running");
        }
        thread::sleep(Duration::from_millis(20));
    };
    if code != Some(1) || impostor.stdout_lines().iter().any(|l| l.contains("for bob only")) {
        impostor.fail(&format!("should be refused (exit 1) without seeing bob's messages; exit {code:?}"));
    }

    bob.send_line("reg bob");
    bob.expect_line(WELCOME, WAIT);
    bob.expect_line(HAVE_MESSAGES, WAIT);
    bob.expect_stored("alice", "for bob only");
}

#[test]
fn a_dereg_from_another_address_is_refused() {
    let server = Server::start();
    let [mut alice, bob] = start_clients(&server, ["alice", "bob"]);
    // With a secret, which the attacker would have to guess: refused anyway, for the address.
    send(
        &attacker(),
        &server,
        r#"{"type":"dereg","id":7,"name":"bob","secret":"0123456789abcdef0123456789abcdef"}"#,
        3,
    );
    alice.assert_never(TABLE, Duration::from_millis(700));
    let bob_port = bob.port;
    alice.assert_row(2, "bob", bob_port, true);
    bob.assert_never(TABLE, Duration::ZERO);
}

#[test]
fn a_channel_send_from_another_address_is_not_relayed() {
    let server = Server::start();
    let [alice, bob] = start_clients(&server, ["alice", "bob"]);
    let forged =
        r#"{"type":"channel_send","id":8,"from":"alice","secret":"0123456789abcdef0123456789abcdef","text":"forged"}"#;
    send(&attacker(), &server, forged, 3);
    bob.assert_never(&channel("alice", "forged"), Duration::from_millis(700));
    alice.assert_alive();
}

#[test]
fn an_unproven_address_gets_at_most_three_times_its_bytes() {
    let server = Server::start();
    let names = ["a".repeat(32), "b".repeat(32), "c".repeat(32)];
    let _clients = start_clients(&server, [names[0].as_str(), names[1].as_str(), names[2].as_str()]);

    let sock = attacker();
    let sent = send(
        &sock,
        &server,
        r#"{"type":"register","id":9,"name":"m","key":"a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209"}"#,
        1,
    );
    let deadline = Instant::now() + Duration::from_millis(3200);
    let mut received = 0;
    let mut buf = vec![0; 65_536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        sock.set_read_timeout(Some(left)).expect("set a read timeout");
        let Ok((n, _)) = sock.recv_from(&mut buf) else { break };
        received += n;
        if received > 3 * sent {
            let last = String::from_utf8_lossy(&buf[..n.min(300)]).into_owned();
            server.fail(&format!(
                "sent {received} bytes to an address that sent {sent} and never proved it receives \
                 (more than 3x); last datagram began {last:?}"
            ));
        }
    }
}

#[test]
fn a_registration_never_confirmed_adds_no_row() {
    let server = Server::start();
    let [mut alice] = start_clients(&server, ["alice"]);
    // As a spoofed registration would: padded, so it is answered, but never confirmed (the
    // cookie in the answer would go to the spoofed address).
    let ghost = attacker();
    let register = format!(
        r#"{{"type":"register","id":1,"name":"ghost","key":"a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209","pad":"{}"}}"#,
        " ".repeat(300)
    );
    send(&ghost, &server, &register, 1);
    ghost.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut buf = [0u8; 2048];
    let (len, _) = ghost.recv_from(&mut buf).expect("an answer");
    assert!(String::from_utf8_lossy(&buf[..len]).contains(r#""type":"registered""#));
    alice.assert_never(TABLE, Duration::from_millis(1500));
    let port = alice.port;
    alice.assert_row(1, "alice", port, true);
}
