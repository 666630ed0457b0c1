//! SPEC 12 "Trust", end to end: `verify` prints the same safety number on both sides, and a
//! known name that comes back with another key warns and holds sends to it until `trust`.

use std::path::PathBuf;

use crate::harness::{Client, Server, TABLE, WAIT, WELCOME, acked_by, chat, start_clients};

const WARNING: &str =
    ">>> [Warning: bob's key has changed. Type verify bob to compare safety numbers, then trust bob.]";
const HELD: &str =
    ">>> [Message not sent: bob's key has changed. Type verify bob to compare safety numbers, then trust bob.]";

/// The safety number a client prints for `verify <with>` (the 12 groups of 5 digits).
fn safety_number(client: &mut Client, with: &str) -> String {
    client.send_line(&format!("verify {with}"));
    let head = format!(">>> [Safety number with {with}: ");
    let line = client.expect_contains(&head, WAIT);
    let number: String = line.trim_start_matches(&head).chars().take(71).collect();
    let groups: Vec<&str> = number.split(' ').collect();
    let fine = groups.len() == 12 && groups.iter().all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()));
    if !fine {
        client.fail(&format!("not 12 groups of 5 digits: {line:?}"));
    }
    number
}

/// The client's key book: the one file in its data directory named `*.keys`.
fn key_book(client: &Client) -> PathBuf {
    let entries = std::fs::read_dir(client.dir.path()).expect("read the data directory");
    let mut books = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "keys"));
    books.next().unwrap_or_else(|| client.fail("kept no key book"))
}

#[test]
fn verify_prints_the_same_safety_number_on_both_sides() {
    let server = Server::start();
    let [mut alice, mut bob, mut carol] = start_clients(&server, ["alice", "bob", "carol"]);
    let ab = safety_number(&mut alice, "bob");
    assert_eq!(ab, safety_number(&mut bob, "alice"), "alice and bob see one number");
    assert_ne!(ab, safety_number(&mut carol, "bob"), "carol and bob have another");
    alice.send_line("verify dave");
    alice.expect_line(">>> [No client named dave. Type list to see the table.]", WAIT);
}

#[test]
fn a_key_change_warns_and_holds_sends_until_trust() {
    let first = Server::start();
    let [mut alice, bob] = start_clients(&first, ["alice", "bob"]);
    // alice's key book remembers bob's first key, privately.
    let book = key_book(&alice);
    let kept = std::fs::read_to_string(&book).expect("read the key book");
    assert!(kept.lines().any(|l| l.starts_with("bob ")), "bob's key kept: {kept:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&book).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key book is private");
    }
    alice.kill();
    drop(bob);
    // A new server that never knew bob; "bob" now belongs to a new key (a new data directory).
    let second = Server::start();
    let mut new_bob = Client::start("bob", &second);
    let mut alice = alice.respawn(&second);
    alice.expect_lines_unordered(&[WELCOME, TABLE, WARNING], WAIT);

    alice.send_line("send bob are you really bob?");
    alice.expect_line(HELD, WAIT);
    let number = safety_number(&mut new_bob, "alice");
    alice.send_line("verify bob");
    let line = alice.expect_contains(">>> [Safety number with bob: ", WAIT);
    assert!(line.contains(&number), "the new key's number, as bob's side shows it: {line}");
    assert!(line.contains("not trusted yet"), "{line}");
    new_bob.assert_count(&chat("alice", "are you really bob?"), 0);

    alice.send_line("trust bob");
    alice.expect_line(">>> [Trusted bob's new key: messages to bob are sent again.]", WAIT);
    alice.send_line("send bob it is you");
    alice.expect_line(&acked_by("bob"), WAIT);
    new_bob.expect_line(&chat("alice", "it is you"), WAIT);
    alice.assert_count(WARNING, 1);

    // Trusted for good: the key book keeps the new key across a restart, and no warning comes.
    alice.kill();
    let mut alice = alice.respawn(&second);
    alice.expect_lines_unordered(&[WELCOME, TABLE], WAIT);
    alice.send_line("send bob still you");
    alice.expect_line(&acked_by("bob"), WAIT);
    alice.assert_count(WARNING, 0);
}

#[test]
fn a_damaged_key_book_is_an_error_that_names_it() {
    let server = Server::start();
    let [mut alice] = start_clients(&server, ["alice"]);
    let [_bob] = start_clients(&server, ["bob"]);
    alice.expect_line(TABLE, WAIT);
    let book = key_book(&alice);
    alice.kill();
    std::fs::write(&book, "bob not-a-key\n").expect("damage the key book");
    let alice = alice.respawn(&server);
    let status = alice.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1));
    let err = alice.expect_contains("is damaged", WAIT);
    assert!(err.contains(&book.display().to_string()) && err.contains("line 1"), "{err}");
}
