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
