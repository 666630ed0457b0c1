//! Direct chat between online clients: exact text, sending to yourself, the 32 KiB limit, and
//! bad command lines that leave the client running.

use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Client, Server, TABLE, WAIT, WELCOME, acked_by, chat, start_clients};
use crate::relay::{Faults, start_behind_relay};

/// A 32 KiB limit as SPEC states it, in bytes of UTF-8.
const MAX_TEXT: usize = 32 * 1024;

/// Sends `text` from `from` to `to` and waits for both sides' lines.
fn send_and_expect(from: &mut Client, to: &Client, text: &str) {
    from.send_line(&format!("send {} {text}", to.name));
    to.expect_line(&chat(&from.name, text), WAIT);
    from.expect_line(&acked_by(&to.name), WAIT);
}

/// A retransmitted message is displayed once. bob's relay loses his first ACK, so alice must
/// retransmit (after her 500 ms ACK timeout); bob answers the copy with a second ACK, which
/// alice reports once.
///
/// No fixed wait: the test waits until the relay has seen bob send that second ACK, which
/// proves the retransmission reached bob and was handled, then has bob answer a `list`. bob
/// prints in the order he handles input, so a second display of the message would come before
/// the `list` rows; after them, the count is final.
#[test]
fn message_arrives_with_its_spaces_and_once() {
    let server = Server::start();
    let [mut alice] = start_clients(&server, ["alice"]);
    let lose_first_ack = Faults { lose_first_sent: 1, ..Faults::default() };
    let (mut bob, relay) = start_behind_relay("bob", server.port, Faults::default(), lose_first_ack, 1, &[]);
    bob.expect_lines_unordered(&[WELCOME, TABLE], WAIT);
    alice.expect_line(TABLE, WAIT);

    send_and_expect(&mut alice, &bob, "hello there  world");
    let deadline = Instant::now() + WAIT;
    while relay.sent_by_client(false) < 2 {
        if Instant::now() > deadline {
            bob.fail(&format!("bob never answered a retransmission: {}", relay.report()));
        }
        thread::sleep(Duration::from_millis(10));
    }
    bob.list(2);
    bob.assert_count(&chat("alice", "hello there  world"), 1);
    alice.assert_count(&acked_by("bob"), 1);
}

#[test]
fn sending_to_yourself_shows_both_lines() {
    let server = Server::start();
    let [mut alice] = start_clients(&server, ["alice"]);
    alice.send_line("send alice note to self");
    alice.expect_lines_unordered(&[&chat("alice", "note to self"), &acked_by("alice")], WAIT);
}

#[test]
fn a_32_kib_message_arrives_whole() {
    let server = Server::start();
    let [mut alice, bob] = start_clients(&server, ["alice", "bob"]);
    let ascii: String = (0..MAX_TEXT).map(|i| char::from(b'a' + u8::try_from(i % 26).expect("below 26"))).collect();
    send_and_expect(&mut alice, &bob, &ascii);
    let two_byte_chars = "é".repeat(MAX_TEXT / 2);
    assert_eq!(two_byte_chars.len(), MAX_TEXT);
    send_and_expect(&mut alice, &bob, &two_byte_chars);
}

#[test]
fn a_message_over_32_kib_is_refused_and_the_client_goes_on() {
    let server = Server::start();
    let [mut alice, bob] = start_clients(&server, ["alice", "bob"]);
    let bob_from = bob.stdout_len();
    alice.send_line(&format!("send bob {}", "x".repeat(MAX_TEXT + 1)));
    alice.expect_contains("Message too long", WAIT);
    send_and_expect(&mut alice, &bob, "still here");
    let seen = bob.stdout_since(bob_from);
    if seen != [chat("alice", "still here")] {
        bob.fail(&format!("bob should show only the short message, showed {seen:?}"));
    }
}

#[test]
fn bad_command_lines_get_a_line_and_the_client_goes_on() {
    let server = Server::start();
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    for (line, answer) in [
        ("frobnicate", "Unknown command"),
        ("send nobody hi", "No client named"),
        ("send", "Usage:"),
        ("send bob", "Usage:"),
        ("dereg", "Usage:"),
        ("dereg bob", "only dereg yourself"),
    ] {
        alice.send_line(line);
        alice.expect_contains(answer, WAIT);
    }
    alice.assert_alive();
    send_and_expect(&mut alice, &bob, "all good");
    let bob_port = bob.port;
    bob.assert_row(2, "bob", bob_port, true);
}

#[test]
fn unicode_names_and_text_work() {
    let server = Server::start();
    let [mut zoe, jose] = start_clients(&server, ["zoë", "José"]);
    send_and_expect(&mut zoe, &jose, "¡hola! 你好 🙂");
}
