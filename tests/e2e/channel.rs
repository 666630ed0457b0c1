//! The channel: `send_all` reaches every online client but the sender, is stored for offline
//! ones, and the assignment's example runs end to end.

use std::time::Duration;

use crate::harness::Client;
use crate::harness::{
    CHANNEL_ACKED, CHANNEL_NOT_RESPONDING, HAVE_MESSAGES, OFFLINE_BYE, SAVED, Server, TABLE, WAIT, WELCOME, channel,
    no_ack_from, start_clients,
};
use crate::relay::{Faults, Relay, start_behind_relay};

#[test]
fn channel_message_reaches_everyone_but_the_sender() {
    let server = Server::start();
    let [mut alice, bob, carol] = start_clients(&server, ["alice", "bob", "carol"]);
    alice.send_line("send_all Welcome to Channel");
    alice.expect_line(CHANNEL_ACKED, WAIT);
    let line = channel("alice", "Welcome to Channel");
    bob.expect_line(&line, WAIT);
    carol.expect_line(&line, WAIT);
    alice.assert_never(&line, Duration::from_millis(300));
    bob.assert_count(&line, 1);
    carol.assert_count(&line, 1);
}

#[test]
fn send_all_without_server_says_so_and_goes_on() {
    let mut server = Server::start();
    let [mut alice] = start_clients(&server, ["alice"]);
    server.kill();
    alice.send_line("send_all anyone there");
    alice.expect_line(CHANNEL_NOT_RESPONDING, WAIT);
    alice.assert_alive();
    let port = alice.port;
    alice.assert_row(1, "alice", port, true);
}

/// SPEC section 9, line for line.
#[test]
fn the_assignment_example_end_to_end() {
    let server = Server::start();
    let [mut c1, mut c2, mut c3] = start_clients(&server, ["client1", "client2", "client3"]);
    c1.send_line("dereg client1");
    c1.expect_line(OFFLINE_BYE, WAIT);
    c2.expect_line(TABLE, WAIT);
    c3.expect_line(TABLE, WAIT);

    c2.send_line("send_all Welcome to Channel");
    c2.expect_line(CHANNEL_ACKED, WAIT);
    c3.expect_line(&channel("client2", "Welcome to Channel"), WAIT);
    c2.send_line("send client1 Hello");
    c2.expect_line(SAVED, WAIT);
    c3.send_line("send client1 Hello!!");
    c3.expect_line(SAVED, WAIT);
    for sender in [&c2, &c3] {
        sender.assert_count(&no_ack_from("client1"), 0);
    }

    c1.send_line("reg client1");
    c1.expect_line(WELCOME, WAIT);
    c1.expect_line(HAVE_MESSAGES, WAIT);
    c1.expect_stored("Channel_Message client2", "Welcome to Channel");
    c1.expect_stored("client2", "Hello");
    c1.expect_stored("client3", "Hello!!");
}

#[test]
fn channel_message_for_a_crashed_client_is_stored() {
    let server = Server::start();
    let [mut alice, mut bob, carol] = start_clients(&server, ["alice", "bob", "carol"]);
    bob.kill();
    alice.send_line("send_all while you were out");
    alice.expect_line(CHANNEL_ACKED, WAIT);
    carol.expect_line(&channel("alice", "while you were out"), WAIT);
    // bob does not ACK: probed, marked offline, and everyone online gets the table.
    alice.expect_line(TABLE, WAIT);
    carol.expect_line(TABLE, WAIT);

    let bob = bob.respawn(&server);
    bob.expect_line(WELCOME, WAIT);
    bob.expect_line(HAVE_MESSAGES, WAIT);
    bob.expect_stored("Channel_Message alice", "while you were out");
}

/// SPEC 9 with client 1 gone silently (killed) instead of deregistered: the channel copy is
/// stored after the server's probe, and each sender's direct message first runs out of
/// retries (`No ACK`) before the server keeps it.
#[test]
fn the_assignment_example_with_a_silent_leave() {
    let server = Server::start();
    let [mut c1, mut c2, mut c3] = start_clients(&server, ["client1", "client2", "client3"]);
    c1.kill();

    c2.send_line("send_all Welcome to Channel");
    c2.send_line("send client1 Hello");
    c3.send_line("send client1 Hello!!");
    c2.expect_line(CHANNEL_ACKED, WAIT);
    c3.expect_line(&channel("client2", "Welcome to Channel"), WAIT);
    for sender in [&c2, &c3] {
        sender.expect_line(&no_ack_from("client1"), WAIT);
        sender.expect_line(SAVED, WAIT);
        sender.assert_count(&no_ack_from("client1"), 1);
        sender.assert_count(SAVED, 1);
    }

    let c1 = c1.respawn(&server);
    c1.expect_line(WELCOME, WAIT);
    c1.expect_line(HAVE_MESSAGES, WAIT);
    c1.expect_stored("Channel_Message client2", "Welcome to Channel");
    // The two direct messages were sent at the same moment by two clients: the server keeps
    // them in the order they reached it, which either may win.
    let first = c1.expect_match("a stored direct message", WAIT, |l| l.starts_with(">>> client"));
    let second = c1.expect_match("the other stored direct message", WAIT, |l| l.starts_with(">>> client"));
    let mut both = [first, second];
    both.sort();
    let shape =
        |l: &str, who: &str, text: &str| l.starts_with(&format!(">>> {who}: ")) && l.ends_with(&format!(" {text}"));
    assert!(shape(&both[0], "client2", "Hello") && shape(&both[1], "client3", "Hello!!"), "{both:?}");
    c1.assert_count(HAVE_MESSAGES, 1);
}

/// Issue 17, item 4: a `send_all` acknowledged to its sender while a member's copy is still on
/// its way (the member's link is down) survives a SIGKILL of the server right after the ACK:
/// the restarted server delivers it again, and the member, which stayed online throughout,
/// shows it once. Over PostgreSQL a node's record of the copies owed is not kept yet (see
/// docs/ARCHITECTURE.md): the file store only.
#[test]
fn an_acked_send_all_reaches_an_online_member_once_across_a_server_kill() {
    // A 2 s ACK window: the member's copy is still on its way (not yet probed and stored for
    // it) when the kill comes, however loaded the machine.
    // Keepalives each second: over PostgreSQL the restarted server is a new node, which takes
    // over what the old one owed once it has judged it dead (5 s), stores bob's copy (his row
    // was the old node's: he is offline now) and tells him so at his next keepalive.
    let mut server = Server::start_with(&["--ack-timeout-ms", "2000", "--keepalive-ms", "1000"]);
    let [mut alice] = start_clients(&server, ["alice"]);
    let (bob, relay) = acked_while_bob_is_cut_off(&mut alice, server.port, "owed to bob");
    server.restart();
    relay.cut(false);
    // Live (the file store's server resumes the delivery), or stored and fetched (over
    // PostgreSQL the restarted server is a new node, which takes over what the old one owed its
    // members, offline now): either way once.
    let (live, stored) = (channel("alice", "owed to bob"), ">>> Channel_Message alice: ");
    let shown = |bob: &Client| {
        let lines = bob.stdout_lines();
        lines.iter().filter(|l| **l == live || (l.starts_with(stored) && l.ends_with(" owed to bob"))).count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while shown(&bob) == 0 {
        if std::time::Instant::now() > deadline {
            bob.fail("the send_all never shown");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(shown(&bob), 1, "shown once: {:?}", bob.stdout_lines());
    bob.assert_alive();
}

/// bob joins behind a relay at `server_port`, his link is cut, and alice's `send_all <text>`
/// is ACKed: a copy the server owes an online member it cannot reach yet.
pub(crate) fn acked_while_bob_is_cut_off(alice: &mut Client, server_port: u16, text: &str) -> (Client, Relay) {
    let (bob, relay) = start_behind_relay("bob", server_port, Faults::default(), Faults::default(), 1, &[]);
    bob.expect_line(WELCOME, WAIT);
    alice.expect_line(TABLE, WAIT);
    relay.cut(true);
    alice.send_line(&format!("send_all {text}"));
    alice.expect_line(CHANNEL_ACKED, WAIT);
    (bob, relay)
}
