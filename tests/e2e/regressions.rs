//! Bugs found by review, each proven fixed through the real binary.

use crate::harness::*;

/// `quit` right after a `send` to a peer that is gone: the send still ends in its outcome (the
/// fallback to the server) before the client deregisters and exits.
#[test]
fn quit_finishes_the_sends_in_flight_first() {
    let server = Server::start();
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    bob.kill();
    alice.send_line("send bob are you there");
    alice.send_line("quit");
    alice.expect_line(&no_ack_from("bob"), WAIT);
    alice.expect_line(SAVED, WAIT);
    alice.expect_line(OFFLINE_BYE, WAIT);
    assert!(alice.wait_exit(WAIT).success());
}

/// alice dies at one port, bob takes that port, alice comes back at another: bob is still known
/// at his address (the server did not drop his mapping when alice moved away from it).
#[test]
fn a_client_on_a_dead_clients_old_port_stays_registered_when_that_client_moves() {
    let server = Server::start();
    let [mut alice, carol] = start_clients(&server, ["alice", "carol"]);
    let (port, dir) = (alice.port, alice.dir.clone());
    alice.kill();
    let bob = Client::spawn("bob", server.port, port, new_dir(), &[]);
    bob.expect_line(WELCOME, WAIT);
    let alice2 = Client::spawn("alice", server.port, free_port(), dir, &[]);
    alice2.expect_line(WELCOME, WAIT);
    let mut bob = bob;
    bob.send_line("send_all still here");
    bob.expect_line(CHANNEL_ACKED, WAIT);
    carol.expect_line(&channel("bob", "still here"), WAIT);
    alice2.expect_line(&channel("bob", "still here"), WAIT);
}

/// SPEC 10.7: past a mailbox's limit the sender is told, clearly, and nothing is stored half;
/// a channel message still reaches everyone else, and its sender hears whose copy was not kept.
#[test]
fn a_full_mailbox_refuses_clearly_for_direct_and_channel_messages() {
    let server = Server::start_with(&["--max-messages", "1"]);
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(TABLE, WAIT);
    alice.send_line("send bob one");
    alice.expect_line(SAVED, WAIT);
    alice.send_line("send bob two");
    alice.expect_line(">>> [Message for bob not saved: the recipient's mailbox is full.]", WAIT);
    alice.send_line("send_all three");
    alice.expect_line(CHANNEL_ACKED, WAIT);
    alice.expect_line(">>> [Not kept for bob: mailbox full.]", WAIT);

    bob.send_line("reg bob");
    bob.expect_line(HAVE_MESSAGES, WAIT);
    bob.expect_stored("alice", "one");
    bob.expect_line(TABLE, WAIT);
    bob.assert_never(&chat("alice", "two"), std::time::Duration::from_millis(300));
    assert!(bob.stdout_lines().iter().all(|l| !l.contains("two") && !l.contains("three")));
}

/// A server killed right after registrations and a dereg comes back knowing every client and
/// who is offline (each batch of table changes is appended to its log at once): a save for
/// the offline recipient goes through, with one outcome line.
#[test]
fn a_server_killed_right_after_registrations_still_knows_everyone() {
    let mut server = Server::start();
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(TABLE, WAIT);
    server.restart();
    alice.send_line("send bob after the restart");
    alice.expect_line(SAVED, WAIT);
    alice.assert_count(SAVED, 1);
    assert!(alice.stdout_lines().iter().all(|l| !l.contains("not saved")), "{:?}", alice.stdout_lines());

    bob.send_line("reg bob");
    bob.expect_line(HAVE_MESSAGES, WAIT);
    bob.expect_stored("alice", "after the restart");
}
