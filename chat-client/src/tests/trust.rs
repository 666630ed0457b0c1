//! Trust on first use: the key book, a changed key's warning and held sends, `verify` and
//! `trust`.

use super::*;
use crate::KeyBook;

/// bob's row, online at his port, with `who`'s key.
fn bob_with(who: &str) -> ClientRow {
    ClientRow { lan: None, name: name("bob"), addr: addr(BOB), online: true, key: Some(key(who)) }
}

const WARNING: &str =
    ">>> [Warning: bob's key has changed. Type verify bob to compare safety numbers, then trust bob.]";
const HELD: &str =
    ">>> [Message not sent: bob's key has changed. Type verify bob to compare safety numbers, then trust bob.]";

#[test]
fn the_first_key_seen_for_each_name_is_handed_out_to_keep_once() {
    let mut f = Fixture::online(true);
    assert_eq!(f.client.poll_keys(), [(name("bob"), key("bob"))], "bob's first key, never alice's own");
    f.recv(SERVER, Datagram::TableDelta { base: 10, version: 11, rows: vec![bob_with("bob")] });
    assert!(f.client.poll_keys().is_empty(), "the same key again: nothing new to keep");
}

#[test]
fn a_changed_key_warns_once_and_holds_sends_until_trust() {
    let mut f = Fixture::online(true);
    f.client.poll_keys();
    f.sent();
    f.recv(SERVER, Datagram::TableDelta { base: 10, version: 11, rows: vec![bob_with("mallory")] });
    assert_eq!(f.events(), [">>> [Client table updated.]", WARNING]);
    f.recv(SERVER, Datagram::TableDelta { base: 11, version: 12, rows: vec![bob_with("mallory")] });
    assert_eq!(f.events(), [">>> [Client table updated.]"], "warned once");
    f.sent();

    f.cmd("send bob hi");
    assert_eq!(f.events(), [HELD], "one outcome line");
    assert!(f.sent().is_empty(), "nothing sealed for the new key");
    f.until(5000);
    assert!(f.events().is_empty() && f.sent().is_empty(), "not queued: nothing goes out later");

    f.cmd("verify bob");
    let [line] = &f.events()[..] else { panic!("one line") };
    assert!(line.ends_with("(its new key, not trusted yet: type trust bob if it matches)]"), "{line}");
    f.cmd("trust bob");
    assert_eq!(f.events(), [">>> [Trusted bob's new key: messages to bob are sent again.]"]);
    assert_eq!(f.client.poll_keys(), [(name("bob"), key("mallory"))], "kept in the key book");
    f.cmd("send bob hi");
    assert!(matches!(f.sent()[..], [(BOB, Datagram::Chat { .. })]));
    f.cmd("trust bob");
    assert_eq!(f.events(), [">>> [bob's key has not changed: nothing to trust.]"]);
}

#[test]
fn a_key_book_from_an_earlier_run_warns_at_the_first_table() {
    let book = KeyBook::parse(&KeyBook::line(&name("bob"), &key("mallory"))).expect("book");
    let f = Fixture::as_client(Config::default(), "alice", book);
    let mut f = Fixture::registered_expecting(
        f,
        true,
        &[">>> [Welcome, You are registered.]", ">>> [Client table updated.]", WARNING],
    );
    f.cmd("send bob hi");
    assert_eq!(f.events(), [HELD]);
}

#[test]
fn the_row_that_comes_with_exists_is_checked_too() {
    let mut f = Fixture::online(false);
    f.cmd("send bob hi");
    let [(SERVER, Datagram::Save { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Exists { id, row: bob_with("mallory") });
    let events = f.events();
    assert!(events.iter().any(|e| e == WARNING), "{events:?}");
    f.cmd("send bob again");
    assert!(f.events().iter().any(|e| e == HELD));
}

#[test]
fn verify_prints_the_same_number_on_both_sides() {
    let mut alice = Fixture::online(true);
    let mut bob = Fixture::registered_as(Fixture::as_client(Config::default(), "bob", KeyBook::default()), true);
    alice.cmd("verify bob");
    bob.cmd("verify alice");
    let (a, b) = (alice.events(), bob.events());
    let number = crate::keybook::safety_number(&key("alice"), &key("bob"));
    assert_eq!(a, [format!(">>> [Safety number with bob: {number}]")]);
    assert_eq!(b, [format!(">>> [Safety number with alice: {number}]")]);
    let mut carol = Fixture::as_client(Config::default(), "carol", KeyBook::default());
    carol = Fixture::registered_as(carol, true);
    carol.cmd("verify bob");
    assert_ne!(carol.events(), [format!(">>> [Safety number with bob: {number}]")], "another pair, another number");
}

#[test]
fn verify_and_trust_explain_an_unknown_name_a_missing_key_and_yourself() {
    let mut f = Fixture::online(true);
    f.cmd("verify dave");
    f.cmd("trust dave");
    f.cmd("verify alice");
    let nokey = ClientRow { lan: None, name: name("erin"), addr: addr(5009), online: true, key: None };
    f.recv(SERVER, Datagram::TableDelta { base: 10, version: 11, rows: vec![nokey] });
    f.cmd("verify erin");
    assert_eq!(
        f.events(),
        [
            ">>> [No client named dave. Type list to see the table.]",
            ">>> [No client named dave. Type list to see the table.]",
            ">>> [That is you: type verify or trust with another client's name.]",
            ">>> [Client table updated.]",
            ">>> [The table has no key for erin.]",
        ]
    );
}
