//! Registration: Welcome and table updates, `list`, no server at all, name conflicts, and a
//! restart at the same address.

use std::time::{Duration, Instant};

use crate::harness::{
    Client, EXITING, NOT_RESPONDING, Server, TABLE, WAIT, WELCOME, acked_by, chat, free_port, new_dir, start_clients,
};

#[test]
fn two_clients_register_and_list_each_other() {
    let server = Server::start();
    let mut alice = Client::start("alice", &server);
    let mut bob = Client::start("bob", &server);
    alice.expect_line(TABLE, WAIT);
    let (alice_port, bob_port) = (alice.port, bob.port);
    for client in [&mut alice, &mut bob] {
        client.assert_row(2, "alice", alice_port, true);
        client.assert_row(2, "bob", bob_port, true);
    }
}

#[test]
fn no_server_gives_up_and_exits_1() {
    let started = Instant::now();
    let client = Client::spawn("alice", free_port(), free_port(), new_dir(), &[]);
    client.expect_line(NOT_RESPONDING, WAIT);
    client.expect_line(EXITING, WAIT);
    let code = client.wait_exit(WAIT).code();
    if code != Some(1) {
        client.fail(&format!("should exit with code 1, got {code:?}"));
    }
    let took = started.elapsed();
    if took < Duration::from_secs(2) {
        client.fail(&format!("gave up after {took:?}: 500 ms x 5 retries should take about 3 s"));
    }
}

#[test]
fn timeout_options_shorten_the_give_up() {
    let started = Instant::now();
    let client =
        Client::spawn("alice", free_port(), free_port(), new_dir(), &["--ack-timeout-ms", "100", "--retries", "2"]);
    client.expect_line(NOT_RESPONDING, WAIT);
    client.expect_line(EXITING, WAIT);
    let code = client.wait_exit(WAIT).code();
    let took = started.elapsed();
    if code != Some(1) || took > Duration::from_millis(2000) {
        client.fail(&format!("with 100 ms x 2 retries: expected exit 1 well under 2 s, got {code:?} after {took:?}"));
    }
}

#[test]
fn name_in_use_is_refused_until_its_owner_crashes() {
    let server = Server::start();
    let mut alice = Client::start("alice", &server);
    let quiet_from = alice.stdout_len();

    let usurper = Client::spawn("alice", server.port, free_port(), new_dir(), &[]);
    usurper.expect_contains("is in use", WAIT);
    usurper.expect_line(EXITING, WAIT);
    let code = usurper.wait_exit(WAIT).code();
    if code != Some(1) {
        usurper.fail(&format!("a refused registration should exit 1, got {code:?}"));
    }
    alice.assert_alive();
    let seen = alice.stdout_since(quiet_from);
    if !seen.is_empty() {
        alice.fail(&format!("the owner should print nothing for a refused usurper, printed {seen:?}"));
    }

    alice.kill();
    // The same user starts again on another port (same data directory): the old address no
    // longer answers the server's probe, so the name moves.
    let moved = Client::spawn("alice", server.port, free_port(), alice.dir.clone(), &[]);
    moved.expect_line(WELCOME, WAIT);
    moved.assert_never(">>> [Exiting]", Duration::from_millis(200));
}

#[test]
fn restart_at_the_same_address_while_still_online() {
    let server = Server::start();
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    bob.kill();
    let bob = bob.respawn(&server);
    bob.expect_line(WELCOME, WAIT);
    alice.send_line("send bob are you back");
    bob.expect_line(&chat("alice", "are you back"), WAIT);
    alice.expect_line(&acked_by("bob"), WAIT);
}
