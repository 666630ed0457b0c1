//! Guarantees 5 and 6 of SPEC: only the owner acts for a name, and the server is no amplifier.
//!
//! The attacker is an [`Attacker`]: a client of the server's encrypted channel with a key of
//! its own, on another port of this host, sending datagrams in the format of
//! `docs/PROTOCOL.md`. So each attack reaches the server's core and is judged there, and its
//! answer is read back through the channel. The same datagrams sent in clear, as before the
//! channel, draw no answer at all.

use std::thread;
use std::time::{Duration, Instant};

use chat_proto::KeyPair;
use serde_json::Value;

use crate::harness::{
    Attacker, Cleartext, Client, HAVE_MESSAGES, OFFLINE_BYE, SAVED, Server, TABLE, WAIT, WELCOME, channel, free_port,
    new_dir, start_clients,
};

/// A secret an attacker would have to guess: of the right form, but not the name's.
const GUESSED: &str = "0123456789abcdef0123456789abcdef";

/// How long an answer to a datagram sent in clear may still be on its way once the server has
/// answered one sent after it.
const GRACE: Duration = Duration::from_millis(300);

/// Whether `answer` answers request `id`.
fn answers(answer: &Value, id: u64) -> bool {
    answer["id"] == id
}

/// Fails `server` unless `answer` is a `refused` with `reason`.
fn assert_refused(server: &Server, answer: &Value, reason: &str) {
    if answer["type"] != "refused" || answer["reason"] != reason {
        server.fail(&format!("should have refused with {reason:?}, answered {answer}"));
    }
}

/// A `register` of the new name `name` showing `key`, padded with spaces to 256 bytes as a
/// client pads it.
fn register(id: u64, name: &str, key: &str) -> String {
    let with_pad =
        |pad: &str| format!(r#"{{"type":"register","id":{id},"name":"{name}","key":"{key}","pad":"{pad}"}}"#);
    let pad = " ".repeat(256usize.saturating_sub(with_pad("").len()));
    with_pad(&pad)
}

/// The names in `client`'s whole `list`.
fn listed(client: &mut Client) -> Vec<String> {
    client.list_all().into_iter().map(|r| r.name).collect()
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
    let forged = format!(r#"{{"type":"dereg","id":7,"name":"bob","secret":"{GUESSED}"}}"#);
    let clear = Cleartext::send(server.port, forged.as_bytes(), 3);
    let mut mallory = Attacker::new(server.port);
    mallory.send(forged.as_bytes(), 3);
    let answer = mallory.expect_answer(&server, "answer to the forged dereg", WAIT, |a| answers(a, 7));
    assert_refused(&server, &answer, "not_registered");
    clear.assert_unanswered(&server, GRACE);

    alice.assert_never(TABLE, Duration::from_millis(700));
    let bob_port = bob.port;
    alice.assert_row(2, "bob", bob_port, true);
    bob.assert_never(TABLE, Duration::ZERO);
}

#[test]
fn a_channel_send_from_another_address_is_not_relayed() {
    let server = Server::start();
    let [alice, bob] = start_clients(&server, ["alice", "bob"]);
    let forged = format!(r#"{{"type":"channel_send","id":8,"from":"alice","secret":"{GUESSED}","text":"forged"}}"#);
    let clear = Cleartext::send(server.port, forged.as_bytes(), 3);
    let mut mallory = Attacker::new(server.port);
    mallory.send(forged.as_bytes(), 3);
    let answer = mallory.expect_answer(&server, "answer to the forged channel_send", WAIT, |a| answers(a, 8));
    assert_refused(&server, &answer, "not_registered");
    clear.assert_unanswered(&server, GRACE);

    // The server decided before it answered: a relay would be on its way by now.
    bob.assert_never(&channel("alice", "forged"), Duration::from_millis(700));
    alice.assert_alive();
}

/// A name of 32 characters of 4 bytes each (emoji), the `i`th of a set of distinct ones.
fn fat_name(i: u32) -> String {
    let first = char::from_u32(0x1F600 + i).expect("an emoji");
    std::iter::once(first).chain(std::iter::repeat_n('\u{1F642}', 31)).collect()
}

#[test]
fn an_unproven_address_gets_at_most_three_times_its_bytes() {
    let server = Server::start();
    // A table of ten rows of fat names: had the server pushed it to the attacker, that alone
    // would break the limit (checked at the end, so that the test proves something).
    let names: [String; 10] = std::array::from_fn(|i| fat_name(i as u32));
    let clients = start_clients(&server, std::array::from_fn::<&str, 10, _>(|i| names[i].as_str()));

    // A registration (padded, as an unproven address must) that it never confirms: the
    // `registered` proves it reached the server's core; then whatever else comes.
    let mut mallory = Attacker::new(server.port);
    let key = mallory.key().to_string();
    mallory.send(register(9, "m", &key).as_bytes(), 1);
    let answer = mallory.expect_answer(&server, "answer to the registration", WAIT, |a| answers(a, 9));
    if answer["type"] != "registered" {
        server.fail(&format!("should have answered the registration with `registered`, answered {answer}"));
    }
    mallory.collect(Duration::from_millis(3200));

    let (sent, received) = (mallory.sent_bytes(), mallory.received_bytes());
    if received > 3 * sent {
        let got: Vec<String> =
            mallory.plaintexts().iter().map(|p| String::from_utf8_lossy(&p[..p.len().min(200)]).into_owned()).collect();
        server.fail(&format!(
            "sent {received} bytes on the wire to an address that sent {sent} and never proved it \
             receives (more than 3x); plaintexts: {got:?}"
        ));
    }
    // Each row holds at least the name, the 64 hex digits of its key and `127.0.0.1:<port>`.
    let table_at_least: usize = clients.iter().map(|c| c.name.len() + 64 + format!("127.0.0.1:{}", c.port).len()).sum();
    assert!(
        received + table_at_least > 3 * sent,
        "the table ({table_at_least} bytes at least) is too small to break the limit of {} bytes: \
         the test proves nothing; add rows",
        3 * sent
    );
}

#[test]
fn a_registration_never_confirmed_adds_no_row() {
    let server = Server::start();
    let [mut alice] = start_clients(&server, ["alice"]);
    // Answered, as a registration from an address that does not receive would be, but never
    // confirmed: the cookie in the answer is never echoed.
    let mut ghost = Attacker::new(server.port);
    let register = register(1, "ghost", &ghost.key().to_string());
    let clear = Cleartext::send(server.port, register.as_bytes(), 1);
    ghost.send(register.as_bytes(), 1);
    let answer = ghost.expect_answer(&server, "answer to the registration", WAIT, |a| answers(a, 1));
    if answer["type"] != "registered" || !answer["cookie"].is_u64() {
        server.fail(&format!("should have answered `registered` with a cookie, answered {answer}"));
    }
    clear.assert_unanswered(&server, GRACE);

    alice.assert_never(TABLE, Duration::from_millis(1500));
    let names = listed(&mut alice);
    if names != ["alice"] {
        alice.fail(&format!("`list` should show alice alone, showed {names:?}"));
    }
}

#[test]
fn a_registration_showing_another_key_than_its_sessions_is_dropped() {
    let server = Server::start();
    let [mut alice] = start_clients(&server, ["alice"]);
    // The name would belong to a key the attacker's channel does not hold.
    let mut mallory = Attacker::new(server.port);
    let foreign = KeyPair::generate().expect("a key from the OS random source").public().to_string();
    mallory.send(register(3, "ghost", &foreign).as_bytes(), 1);
    // Answered once the registration before it was handled (in order, in the same batch or an
    // earlier one).
    mallory.send(br#"{"type":"fetch","id":4,"index":0}"#, 1);
    mallory.expect_answer(&server, "answer to the fetch after the registration", WAIT, |a| answers(a, 4));
    let to_register: Vec<String> = mallory
        .plaintexts()
        .iter()
        .filter(|p| serde_json::from_slice::<Value>(p).is_ok_and(|a| answers(&a, 3)))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if !to_register.is_empty() {
        server.fail(&format!("answered a registration showing another key than its session's: {to_register:?}"));
    }
    // The same registration with the session's own key is taken: it was the key.
    let own = mallory.key().to_string();
    mallory.send(register(5, "ghost", &own).as_bytes(), 1);
    let answer = mallory.expect_answer(&server, "answer to the registration with its own key", WAIT, |a| answers(a, 5));
    if answer["type"] != "registered" {
        server.fail(&format!("should have taken the registration with the session's key, answered {answer}"));
    }

    alice.assert_never(TABLE, Duration::from_millis(700));
    let names = listed(&mut alice);
    if names != ["alice"] {
        alice.fail(&format!("`list` should show alice alone, showed {names:?}"));
    }
}
