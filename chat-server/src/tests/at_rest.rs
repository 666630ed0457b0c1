//! Secrets at rest: the saved table keeps hashes, never a secret; only the owner's secret
//! opens the name again after a restart; a table saved before hashes is read and kept.

use super::*;
use crate::TableFile;

/// Everything the table files in `dir` hold, as text.
fn written(dir: &std::path::Path) -> String {
    ["clients.json", "clients.log"].iter().map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default()).collect()
}

/// A register for `who` from `port` showing `secret`.
fn reg_with(id: MsgId, who: &str, secret: Option<Secret>) -> Datagram {
    Datagram::Register { lan: None, id, name: name(who), secret, key: key(who), pad: " ".repeat(REGISTER_PAD_TO) }
}

/// A server restarted from the table files in `dir`.
fn restarted(dir: &std::path::Path) -> Fixture {
    let mut f = Fixture::new();
    let saved = TableFile::new(dir).load().expect("load").expect("a saved table");
    f.server.restore_table(saved);
    f
}

#[test]
fn the_table_files_hold_no_secret_and_after_a_restart_only_the_owner_gets_the_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = TableFile::new(dir.path());
    let mut f = Fixture::online(&[("alice", ALICE)]);
    file.save(&f.server.saved_table()).expect("save");
    let base = f.server.table_version();
    f.register("bob", BOB);
    f.dereg("bob", BOB);
    file.append(&f.server.saved_changes(base).expect("changes")).expect("append");
    let text = written(dir.path());
    assert!(text.contains("\"bob\"") && text.contains("secret_hash"), "{text}");
    for who in ["alice", "bob"] {
        assert!(!text.contains(f.secret_of(who).expose()), "{who}'s secret is on disk: {text}");
    }

    let mut g = restarted(dir.path());
    let wrong = Secret::new("ffffffffffffffffffffffffffffffff").expect("secret");
    let out = g.recv(CAROL, reg_with(MsgId(1), "bob", Some(wrong)));
    assert_eq!(out, vec![(CAROL, Datagram::Refused { id: MsgId(1), reason: Refusal::NotOwner })], "a wrong secret");
    let out = g.recv(CAROL, reg_with(MsgId(2), "bob", None));
    assert_eq!(out, vec![(CAROL, Datagram::Refused { id: MsgId(2), reason: Refusal::NotOwner })], "no secret");
    let out = g.recv(BOB, reg_with(MsgId(3), "bob", Some(f.secret_of("bob"))));
    let Some((BOB, Datagram::Registered { secret, .. })) = out.first() else { panic!("the owner: {out:?}") };
    assert_eq!(secret, &f.secret_of("bob"), "answered with the secret it showed");
}

#[test]
fn a_table_saved_with_clear_secrets_keeps_its_names_and_is_written_back_hashed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clear = "0123456789abcdef0123456789abcdef";
    let json = format!(
        r#"{{"version":42,"clients":[{{"name":"bob","addr":"127.0.0.1:{BOB}","online":false,"secret":"{clear}"}}]}}"#
    );
    std::fs::write(dir.path().join("clients.json"), json).expect("an old table");
    let mut g = restarted(dir.path());
    let wrong = Secret::new("ffffffffffffffffffffffffffffffff").expect("secret");
    let out = g.recv(CAROL, reg_with(MsgId(1), "bob", Some(wrong)));
    assert_eq!(out, vec![(CAROL, Datagram::Refused { id: MsgId(1), reason: Refusal::NotOwner })]);
    let out = g.recv(BOB, reg_with(MsgId(2), "bob", Some(Secret::new(clear).expect("secret"))));
    assert!(matches!(out.first(), Some((BOB, Datagram::Registered { .. }))), "the owner keeps the name: {out:?}");
    TableFile::new(dir.path()).save(&g.server.saved_table()).expect("save");
    let text = written(dir.path());
    assert!(text.contains("\"bob\"") && !text.contains(clear), "{text}");
}
