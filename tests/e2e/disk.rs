//! The server's disk is full (defect 4): a save is refused with a clear line, and the client
//! goes on.
//!
//! The server runs in a private mount namespace (`unshare --mount`) where its data directory is
//! a small tmpfs filled up before the server starts; the mount vanishes with the process. This
//! needs root (as the tests run, in CI too): without it the test fails, saying so.

use std::process::Command;
use std::time::Duration;

use crate::harness::{CHANNEL_ACKED, NOT_RESPONDING, OFFLINE_BYE, SAVED, Server, TABLE, WAIT, start_clients};

/// Mounts a 256 KiB tmpfs on the data directory (the last argument), puts the server's key
/// there (a server whose disk fills up has long had its key: without one it would not start),
/// fills it, then execs the server (the arguments).
const FULL_DISK: &str = r#"for dir; do :; done
mount -t tmpfs -o size=256k tmpfs "$dir" || exit 97
echo 0707070707070707070707070707070707070707070707070707070707070707 > "$dir/server.identity"
dd if=/dev/zero of="$dir/filler" bs=4096 2>/dev/null
exec "$@""#;

/// What the sender of a save prints when the server's disk cannot take it.
const NOT_SAVED: &str = ">>> [Message for bob not saved: the server cannot store messages now.]";

fn assert_root() {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match uid {
        Ok(uid) if uid == "0" => {}
        other => panic!(
            "this test mounts a tmpfs in a private mount namespace and must run as root (as CI does); \
             `id -u` said {other:?}"
        ),
    }
}

#[test]
fn a_save_on_a_full_disk_is_refused_with_a_clear_line_and_the_client_goes_on() {
    assert_root();
    let server = Server::start_wrapped(&["unshare", "--mount", "sh", "-c", FULL_DISK, "sh"]);
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(TABLE, WAIT);

    alice.send_line("send bob hi");
    alice.expect_line(NOT_SAVED, WAIT);
    alice.assert_alive();
    alice.assert_row(2, "bob", bob.port, false);
    alice.assert_never(NOT_RESPONDING, Duration::from_millis(500));
    alice.assert_count(SAVED, 0);
    server.expect_contains("disk full: 1 requests answered", WAIT);

    // The channel reaches everyone online; the copy for bob, offline, cannot be kept.
    alice.send_line("send_all hello");
    alice.expect_line(CHANNEL_ACKED, WAIT);
    alice.expect_line(">>> [Not kept for bob: the server cannot store messages now.]", WAIT);
    alice.assert_alive();
}
