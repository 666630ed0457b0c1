//! SPEC 12, "Encrypted everywhere", from outside the processes: a client pins its server's key
//! (given with `--server-key`, kept in `known_servers`, or learnt at first contact) and refuses a
//! server that shows another; nothing in clear crosses the client's link to the server, and no
//! message text crosses its link to a peer; client datagrams replayed to the server change
//! nothing and draw no more bytes than they carried.
//!
//! Clients sit behind relays (`relay.rs`) that record every datagram on their links, as an
//! eavesdropper there would, and replay them to the server from the client's own address.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chat_proto::{KeyPair, PublicKey};
use chat_secure::{DATA_OVERHEAD, INITIATION_LEN};

use crate::harness::{
    CHANNEL_ACKED, Client, EXITING, HAVE_MESSAGES, OFFLINE_BYE, SAVED, Server, TABLE, WAIT, WELCOME, acked_by, channel,
    chat, free_port, logged_server_key, new_dir, start_clients,
};
use crate::relay::{Crossing, Faults, Relay, start_behind_relay};

/// `>>> [The server at <server> shows key <shown>, not its pinned key <pinned>: not
/// connecting.]`, the line before `>>> [Exiting]`.
fn refused_key(server: SocketAddr, shown: PublicKey, pinned: PublicKey) -> String {
    format!(">>> [The server at {server} shows key {shown}, not its pinned key {pinned}: not connecting.]")
}

/// A key no server here holds.
fn another_key() -> PublicKey {
    KeyPair::generate().expect("a key from the OS random source").public()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The names in `client`'s whole `list`.
fn listed(client: &mut Client) -> Vec<String> {
    client.list_all().into_iter().map(|r| r.name).collect()
}

/// Waits for `client` to exit and fails it unless it exited 1 having printed exactly `lines`.
fn assert_refused_and_gone(client: &Client, lines: &[String]) {
    let code = client.wait_exit(WAIT).code();
    let printed = client.stdout_lines();
    if code != Some(1) || printed != lines {
        client.fail(&format!("should print {lines:?} and exit 1; printed {printed:?}, exit {code:?}"));
    }
}

/// The lines of `known_servers` in `dir` (none if there is no such file).
fn pins(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("known_servers")).unwrap_or_default();
    text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
}

#[test]
fn a_client_given_another_server_key_refuses_the_server_and_is_never_listed() {
    let server = Server::start();
    let shown = logged_server_key(&server);
    let [mut alice] = start_clients(&server, ["alice"]);
    let given = another_key();
    let given_arg = given.to_string();
    let (mallory, relay) = start_behind_relay(
        "mallory",
        server.port,
        Faults::default(),
        Faults::default(),
        1,
        &["--server-key", &given_arg],
    );
    // The client knows the server by the relay's address.
    assert_refused_and_gone(&mallory, &[refused_key(relay.server_proxy, shown, given), EXITING.to_owned()]);

    // It sent nothing but the first datagram of a handshake (no name, no registration), so the
    // server never heard of it.
    let sent: Vec<usize> =
        relay.captured().iter().filter(|c| c.server_path && c.from_client).map(|c| c.bytes.len()).collect();
    if sent.is_empty() || sent.iter().any(|len| *len != INITIATION_LEN) {
        mallory.fail(&format!(
            "should send the server only handshake initiations ({INITIATION_LEN} bytes), sent datagrams of {sent:?} bytes"
        ));
    }
    if let Some(line) = server.stderr_lines().iter().find(|l| l.contains("mallory")) {
        server.fail(&format!("the server should never hear of mallory, but logged {line:?}"));
    }
    alice.assert_never(TABLE, Duration::from_millis(300));
    let names = listed(&mut alice);
    if names != ["alice"] {
        alice.fail(&format!("`list` should show alice alone, showed {names:?}"));
    }
}

#[test]
fn a_pinned_key_the_server_does_not_show_is_refused_the_same_way() {
    let server = Server::start();
    let shown = logged_server_key(&server);
    let [mut alice] = start_clients(&server, ["alice"]);
    // The server's real key pinned for another address counts for nothing here.
    let pinned = another_key();
    let dir = new_dir();
    let pin = [format!("127.0.0.1:1 {shown}"), format!("127.0.0.1:{} {pinned}", server.port)];
    std::fs::write(dir.path().join("known_servers"), pin.join("\n") + "\n").expect("write known_servers");

    let carol = Client::spawn("carol", server.port, free_port(), dir.clone(), &[]);
    assert_refused_and_gone(&carol, &[refused_key(loopback(server.port), shown, pinned), EXITING.to_owned()]);
    let kept = pins(dir.path());
    if kept != pin {
        carol.fail(&format!("known_servers should stay {pin:?}, holds {kept:?}"));
    }
    alice.assert_never(TABLE, Duration::from_millis(300));
    let names = listed(&mut alice);
    if names != ["alice"] {
        alice.fail(&format!("`list` should show alice alone, showed {names:?}"));
    }
}

#[test]
fn a_client_pins_the_key_the_server_logs_and_connects_with_it_next_time() {
    let server = Server::start();
    let shown = logged_server_key(&server);
    let mut carol = Client::start("carol", &server);
    let want = [format!("127.0.0.1:{} {shown}", server.port)];
    let kept = pins(carol.dir.path());
    if kept != want {
        carol.fail(&format!("known_servers should hold {want:?} after the first run, holds {kept:?}"));
    }

    carol.kill();
    let carol = carol.respawn(&server);
    carol.expect_lines_unordered(&[WELCOME, TABLE], WAIT);
    // Checked against the pin, not learnt again.
    let kept = pins(carol.dir.path());
    if kept != want {
        carol.fail(&format!("known_servers should still hold {want:?} after the second run, holds {kept:?}"));
    }
}

const TO_BOB: &str = "alice tells bob the orchard gate code";
const TO_ALICE: &str = "bob answers alice under the walnut tree";
const STORED: &str = "alice leaves bob a note about the lantern";
const TO_CHANNEL: &str = "alice tells everyone the meeting moved";

/// Alice and bob, each behind a relay that records its links, after a direct message each
/// way, a message stored for bob (while he was offline) and fetched, and a `send_all`.
struct Scene {
    server: Server,
    alice: Client,
    bob: Client,
    alice_relay: Relay,
    bob_relay: Relay,
}

fn behind_relay(name: &str, server: &Server) -> (Client, Relay) {
    let (client, relay) = start_behind_relay(name, server.port, Faults::default(), Faults::default(), 1, &[]);
    client.expect_lines_unordered(&[WELCOME, TABLE], WAIT);
    (client, relay)
}

fn scene() -> Scene {
    let server = Server::start();
    let (mut alice, alice_relay) = behind_relay("alice", &server);
    let (mut bob, bob_relay) = behind_relay("bob", &server);
    alice.expect_line(TABLE, WAIT);

    alice.send_line(&format!("send bob {TO_BOB}"));
    bob.expect_line(&chat("alice", TO_BOB), WAIT);
    alice.expect_line(&acked_by("bob"), WAIT);
    bob.send_line(&format!("send alice {TO_ALICE}"));
    alice.expect_line(&chat("bob", TO_ALICE), WAIT);
    bob.expect_line(&acked_by("alice"), WAIT);

    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(TABLE, WAIT);
    alice.send_line(&format!("send bob {STORED}"));
    alice.expect_line(SAVED, WAIT);
    bob.send_line("reg bob");
    bob.expect_line(WELCOME, WAIT);
    bob.expect_line(HAVE_MESSAGES, WAIT);
    bob.expect_stored("alice", STORED);
    bob.expect_line(TABLE, WAIT);
    alice.expect_line(TABLE, WAIT);

    alice.send_line(&format!("send_all {TO_CHANNEL}"));
    alice.expect_line(CHANNEL_ACKED, WAIT);
    bob.expect_line(&channel("alice", TO_CHANNEL), WAIT);
    Scene { server, alice, bob, alice_relay, bob_relay }
}

/// The secret the server gave `client`'s name, as kept in its data directory.
fn secret(client: &Client) -> String {
    let path = client.dir.path().join(format!("{}.secret", client.name));
    let secret = std::fs::read_to_string(&path).expect("the client's secret file").trim().to_owned();
    assert!(secret.len() >= 16, "{} holds no secret: {secret:?}", path.display());
    secret
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn describe(c: &Crossing) -> String {
    let path = if c.server_path { "server" } else { "peer" };
    let dir = if c.from_client { "from" } else { "to" };
    let shown = String::from_utf8_lossy(&c.bytes[..c.bytes.len().min(120)]).into_owned();
    format!("{} bytes {dir} the client on the {path} path, beginning {shown:?}", c.bytes.len())
}

#[test]
fn an_eavesdropper_sees_no_text_no_secret_and_no_json_to_or_from_the_server() {
    let s = scene();
    let texts = [TO_BOB, TO_ALICE, STORED, TO_CHANNEL];
    let secrets = [secret(&s.alice), secret(&s.bob)];
    // On the server path neither a text nor a secret; on the peer path no text (chats are sealed).
    let server_needles: Vec<&str> = texts.iter().copied().chain(secrets.iter().map(String::as_str)).collect();
    let mut peer_path = Vec::new();
    for (client, relay) in [(&s.alice, &s.alice_relay), (&s.bob, &s.bob_relay)] {
        let captured = relay.captured();
        for (server_path, from_client) in [(true, true), (true, false), (false, true), (false, false)] {
            if !captured.iter().any(|c| c.server_path == server_path && c.from_client == from_client) {
                client.fail(&format!(
                    "the relay recorded nothing {} the client on the {} path: it records nothing to judge",
                    if from_client { "from" } else { "to" },
                    if server_path { "server" } else { "peer" }
                ));
            }
        }
        for c in &captured {
            if c.server_path && c.bytes.starts_with(b"{") {
                client.fail(&format!("JSON in clear on the server path: {}", describe(c)));
            }
            let needles = if c.server_path { server_needles.as_slice() } else { texts.as_slice() };
            if let Some(found) = needles.iter().find(|n| contains(&c.bytes, n)) {
                client.fail(&format!("{found:?} crossed the network in clear: {}", describe(c)));
            }
        }
        peer_path.extend(captured.into_iter().filter(|c| !c.server_path));
    }
    // A client sends a chat straight to the peer's relay (not through its own), which records
    // it on its way in: so both chats were judged, and their JSON framing, in clear, was found
    // where it is.
    for (from, to) in [(&s.alice, &s.bob), (&s.bob, &s.alice)] {
        let framing = format!(r#""from":"{}","to":"{}""#, from.name, to.name);
        if !peer_path.iter().any(|c| contains(&c.bytes, &framing)) {
            from.fail(&format!("no datagram on the peer paths holds {framing}: its chat was never recorded"));
        }
    }
    s.server.assert_alive();
}

/// The first byte of each kind of channel datagram (chat-secure's wire table).
const RESPONSE: u8 = 2;
const DATA: u8 = 4;
const COOKIE: u8 = 5;
const NO_SESSION: u8 = 6;

/// Whether the server's datagram `bytes` carries nothing from its core: a handshake answer, or
/// data with an empty plaintext (a session's confirmation).
fn carries_nothing(bytes: &[u8]) -> bool {
    match bytes.first().copied() {
        Some(RESPONSE | COOKIE | NO_SESSION) => true,
        Some(DATA) => bytes.len() == DATA_OVERHEAD,
        _ => false,
    }
}

/// Sends every datagram the client sent the server so far to the server again, twice, from the
/// relay's public address (the client's, to the server), and waits until the links are quiet.
/// Fails the server if it answered with more bytes than were replayed, or with anything of
/// its core's.
fn replay(server: &Server, relay: &Relay) {
    let before = relay.captured();
    let sent: Vec<Vec<u8>> =
        before.iter().filter(|c| c.server_path && c.from_client).map(|c| c.bytes.clone()).collect();
    let replayed = relay.send_to_server(&sent) + relay.send_to_server(&sent);
    relay.wait_quiet(Duration::from_secs(1), WAIT);
    let drawn: Vec<Crossing> =
        relay.captured().split_off(before.len()).into_iter().filter(|c| c.server_path && !c.from_client).collect();
    let drawn_bytes: usize = drawn.iter().map(|c| c.bytes.len()).sum();
    if drawn_bytes > replayed {
        server.fail(&format!(
            "{} datagrams replayed ({replayed} bytes) drew {drawn_bytes} bytes in {} datagrams",
            2 * sent.len(),
            drawn.len()
        ));
    }
    if let Some(c) = drawn.iter().find(|c| !carries_nothing(&c.bytes)) {
        let first = c.bytes.first().copied();
        server.fail(&format!(
            "a replayed datagram drew an answer from the server's core: {} bytes of type {first:?}",
            c.bytes.len()
        ));
    }
}

#[test]
fn client_datagrams_replayed_to_the_server_change_nothing_and_draw_no_more_than_they_carried() {
    let Scene { server, mut alice, mut bob, alice_relay, bob_relay } = scene();
    // What was in flight (channel copies, table pushes) is done.
    alice_relay.wait_quiet(Duration::from_millis(700), WAIT);
    bob_relay.wait_quiet(Duration::from_millis(700), WAIT);
    let (alice_from, bob_from) = (alice.stdout_len(), bob.stdout_len());

    replay(&server, &alice_relay);
    replay(&server, &bob_relay);
    server.assert_alive();
    for (client, from) in [(&alice, alice_from), (&bob, bob_from)] {
        let shown = client.stdout_since(from);
        if !shown.is_empty() {
            client.fail(&format!("showed {shown:?} after datagrams were replayed"));
        }
    }

    // The stored message is not stored again: the next registration brings none.
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(TABLE, WAIT);
    let bob_from = bob.stdout_len();
    bob.send_line("reg bob");
    bob.expect_line(WELCOME, WAIT);
    bob.expect_line(TABLE, WAIT);
    alice.expect_line(TABLE, WAIT);
    let shown = bob.stdout_since(bob_from);
    if shown != [WELCOME, TABLE] {
        bob.fail(&format!("should register again with no stored message, showed {shown:?}"));
    }

    // The server and both links still work, and nothing was ever shown twice.
    alice.send_line("send_all fresh news after the replay");
    alice.expect_line(CHANNEL_ACKED, WAIT);
    bob.expect_line(&channel("alice", "fresh news after the replay"), WAIT);
    alice.send_line("send bob a fresh word after the replay");
    bob.expect_line(&chat("alice", "a fresh word after the replay"), WAIT);
    alice.expect_line(&acked_by("bob"), WAIT);
    bob.assert_count(&chat("alice", TO_BOB), 1);
    bob.assert_count(&channel("alice", TO_CHANNEL), 1);
    alice.assert_count(&chat("bob", TO_ALICE), 1);
    let stored = bob.stdout_lines().iter().filter(|l| l.ends_with(&format!(" {STORED}"))).count();
    if stored != 1 {
        bob.fail(&format!("the stored message should be shown once, was shown {stored} times"));
    }
}
