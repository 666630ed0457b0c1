//! SPEC 12 against an attacker who forges the source address: a raw socket (root, as the tests
//! run in CI) sends UDP datagrams from the owner's own address and from the server's. Nothing
//! that the forged source does not authenticate changes what a client shows.

use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, sendto, socket};

use crate::harness::{Client, Server, TABLE, WAIT, start_clients};
use crate::sealed::{assert_only_the_real_chat_shows, forged_chats};

/// Sends `payload` to 127.0.0.1:`to` as a UDP datagram that claims to come from
/// 127.0.0.1:`from`: the UDP header is written here (checksum 0: none, allowed over IPv4).
fn forge(from: u16, to: u16, payload: &[u8]) {
    let fd = socket(AddressFamily::Inet, SockType::Raw, SockFlag::empty(), SockProtocol::Udp)
        .expect("a raw socket: the tests run as root, as CI does");
    let len = u16::try_from(8 + payload.len()).expect("a datagram fits");
    let mut packet = Vec::with_capacity(usize::from(len));
    for field in [from, to, len, 0] {
        packet.extend_from_slice(&field.to_be_bytes());
    }
    packet.extend_from_slice(payload);
    let loopback = SockaddrIn::new(127, 0, 0, 1, 0);
    sendto(fd.as_raw_fd(), &packet, &loopback, MsgFlags::empty()).expect("send a forged datagram");
}

/// Checks that a datagram forged from `from` arrives as if it came from there: otherwise the
/// tests below would prove nothing.
fn assert_forging_works(from: u16) {
    let witness = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a witness socket");
    witness.set_read_timeout(Some(WAIT)).expect("timeout");
    let port = witness.local_addr().expect("its address").port();
    forge(from, port, b"forged");
    let mut buf = [0u8; 64];
    let (n, source) = witness.recv_from(&mut buf).expect("the forged datagram arrives");
    assert_eq!((&buf[..n], source.port()), (&b"forged"[..], from), "it claims the forged source");
}

/// The client's table, as `list` shows it: the names and whether each is online.
fn names(client: &mut Client, rows: usize) -> Vec<(String, bool)> {
    client.list(rows).into_iter().map(|r| (r.name, r.online)).collect()
}

#[test]
fn a_chat_forged_from_the_senders_own_address_is_not_shown() {
    let server = Server::start();
    let [mut carol, bob] = start_clients(&server, ["carol", "bob"]);
    assert_forging_works(carol.port);
    for forged in &forged_chats() {
        for _ in 0..20 {
            forge(carol.port, bob.port, forged.as_bytes());
        }
    }
    assert_only_the_real_chat_shows(&mut carol, &bob);
}

#[test]
fn a_table_forged_from_the_servers_address_changes_nothing() {
    let server = Server::start();
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    let before = names(&mut alice, 2);
    assert_forging_works(server.port);
    // The issue's attack, which emptied the table for good: a version newer than any real one.
    let empty = br#"{"type":"table","version":9223372036854775808,"clients":[]}"#;
    // And datagrams shaped like the channel's: data under a made-up index, a response, a
    // cookie, and `no session` (which may cost a handshake, nothing more).
    let mut data = vec![4u8; 60];
    data[13..].fill(0x5a);
    let forgeries: [&[u8]; 5] = [empty, &data, &[2; 105], &[5; 21], &[6]];
    for forged in forgeries {
        for _ in 0..5 {
            forge(server.port, alice.port, forged);
        }
    }
    alice.assert_never(TABLE, Duration::from_millis(700));
    assert_eq!(names(&mut alice, 2), before, "the table is the server's");
    // The real server still reaches alice: a change of the table arrives.
    bob.send_line("dereg bob");
    alice.expect_line(TABLE, WAIT);
    assert!(names(&mut alice, 2).contains(&("bob".to_owned(), false)));
    alice.send_line("send bob still stored");
    alice.expect_line(crate::harness::SAVED, WAIT);
}
