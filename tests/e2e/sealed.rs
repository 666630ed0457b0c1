//! SPEC 12, end to end: a chat is shown under a name only if that name's key made it, and the
//! server stores direct messages it cannot read. A plain UDP socket plays the attacker.

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use crate::harness::{
    Client, HAVE_MESSAGES, OFFLINE_BYE, SAVED, Server, TABLE, WAIT, WELCOME, acked_by, chat, free_port, new_dir,
    start_clients,
};

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the data directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Chats forged in carol's name for bob: the chat of the issue, as the protocol was before
/// sealing, and one in the sealed form with a seal that no key made.
pub(crate) fn forged_chats() -> [String; 2] {
    [
        r#"{"type":"chat","id":901,"from":"carol","to":"bob","text":"I am not really carol"}"#.to_owned(),
        format!(r#"{{"type":"chat","id":902,"from":"carol","to":"bob","sealed":"{}"}}"#, "A".repeat(80)),
    ]
}

/// After the forgeries: carol's real chat is shown and ACKed, none of the forged ones. Datagrams
/// are handled in order, so once bob shows the real one he has handled the forgeries.
pub(crate) fn assert_only_the_real_chat_shows(carol: &mut Client, bob: &Client) {
    carol.send_line("send bob the real carol");
    carol.expect_line(&acked_by("bob"), WAIT);
    bob.expect_line(&chat("carol", "the real carol"), WAIT);
    bob.assert_count(&chat("carol", "I am not really carol"), 0);
    bob.assert_count(&chat("carol", &"A".repeat(80)), 0);
}

#[test]
fn a_chat_forged_in_anothers_name_is_neither_shown_nor_acked() {
    let server = Server::start();
    let [mut carol, bob] = start_clients(&server, ["carol", "bob"]);
    let attacker = UdpSocket::bind("127.0.0.1:0").expect("bind the attacker's socket");
    attacker.set_read_timeout(Some(Duration::from_millis(700))).expect("timeout");
    for forged in &forged_chats() {
        for _ in 0..20 {
            attacker.send_to(forged.as_bytes(), ("127.0.0.1", bob.port)).expect("send");
        }
    }
    let mut buf = [0u8; 2048];
    if let Ok((n, _)) = attacker.recv_from(&mut buf) {
        bob.fail(&format!("answered a forged chat: {}", String::from_utf8_lossy(&buf[..n])));
    }
    assert_only_the_real_chat_shows(&mut carol, &bob);
}

#[test]
fn the_server_keeps_a_direct_message_it_cannot_read() {
    const TEXT: &str = "meet me at the old mill";
    let server = Server::start();
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(TABLE, WAIT);
    alice.send_line(&format!("send bob {TEXT}"));
    alice.expect_line(SAVED, WAIT);
    let files = files_under(server.data_dir());
    assert!(!files.is_empty(), "the server keeps its mailboxes in its data directory");
    for (path, bytes) in &files {
        assert!(!contains(bytes, TEXT), "{path} holds the text of a direct message in clear");
    }
    bob.send_line("reg bob");
    bob.expect_line(WELCOME, WAIT);
    bob.expect_line(HAVE_MESSAGES, WAIT);
    bob.expect_stored("alice", TEXT);
}

#[test]
fn a_copied_secret_without_the_key_does_not_take_the_name() {
    let server = Server::start();
    let [mut bob] = start_clients(&server, ["bob"]);
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    // Bob's secret, but not his key: the client makes a key of its own.
    let dir = new_dir();
    std::fs::copy(bob.dir.path().join("bob.secret"), dir.path().join("bob.secret")).expect("copy the secret");
    let thief = Client::spawn("bob", server.port, free_port(), dir, &[]);
    thief.expect_line(
        ">>> [Name bob belongs to another client: its key and secret are not in this data directory.]",
        WAIT,
    );
    assert_eq!(thief.wait_exit(WAIT).code(), Some(1));
    bob.send_line("reg bob");
    bob.expect_line(WELCOME, WAIT);
}
