//! SPEC 11, presence: online clients keep alive at the server's interval, and a client killed
//! without a word is seen offline by everyone within three intervals, with nobody sending to it.

use std::time::{Duration, Instant};

use crate::harness::{Server, TABLE, WAIT, WELCOME, start_clients};

/// The interval the tests run the server with: short, so three of them pass quickly.
const KEEPALIVE_MS: u64 = 400;

#[test]
fn a_killed_client_is_seen_offline_within_three_keepalive_intervals_and_online_again_when_back() {
    let server = Server::start_with(&["--keepalive-ms", &KEEPALIVE_MS.to_string()]);
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    // Both keep alive: several intervals pass and nobody is marked offline.
    alice.assert_never(TABLE, Duration::from_millis(5 * KEEPALIVE_MS));
    let bob_port = bob.port;
    alice.assert_row(2, "bob", bob_port, true);

    let from = alice.stdout_len();
    bob.kill();
    let killed = Instant::now();
    alice.expect_line(TABLE, WAIT);
    let noticed = killed.elapsed();
    // Three intervals of silence, noticed at the next sweep (every half interval), and a
    // margin for a loaded machine.
    let bound = Duration::from_millis(3 * KEEPALIVE_MS + KEEPALIVE_MS / 2) + Duration::from_secs(2);
    if noticed > bound {
        alice.fail(&format!("bob was noticed offline {noticed:?} after the kill, more than {bound:?}"));
    }
    alice.assert_row(2, "bob", bob_port, false);
    assert!(alice.stdout_since(from).iter().all(|l| !l.contains("bob:")), "nobody sent bob anything");

    // Bob comes back (same data directory, same port): online again for everyone.
    let back = bob.respawn(&server);
    back.expect_line(WELCOME, WAIT);
    alice.expect_line(TABLE, WAIT);
    alice.assert_row(2, "bob", bob_port, true);
    // And stays online while alive.
    alice.assert_never(TABLE, Duration::from_millis(5 * KEEPALIVE_MS));
}
