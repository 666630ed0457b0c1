//! The channel between the two ends, with a fake clock and datagrams carried by hand: lost,
//! repeated, replayed, forged.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::Entropy;
use chat_proto::KeyPair;

use crate::client::{GIVE_UP, RESEND, RESTART_GAP};
use crate::server::COOKIE_PERIOD;
use crate::*;

const ALICE: &str = "127.0.0.1:4001";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

struct Net {
    now: Instant,
    client: ClientChannel,
    server: ServerChannel,
    server_key: KeyPair,
    client_key: KeyPair,
    /// What the client got from the server, in order.
    got_by_client: Vec<Vec<u8>>,
    /// What the server got, in order.
    got_by_server: Vec<Vec<u8>>,
    /// Every datagram the client sent and the server sent, in order.
    to_server: Vec<Vec<u8>>,
    to_client: Vec<Vec<u8>>,
}

impl Net {
    fn new(cfg: ServerConfig) -> Self {
        let now = Instant::now();
        let server_key = KeyPair::from_secret([1; 32]);
        let client_key = KeyPair::from_secret([2; 32]);
        Self {
            now,
            client: ClientChannel::new(client_key.clone(), None, Entropy::from_seed([3; 32])),
            server: ServerChannel::new(server_key.clone(), cfg, now, Entropy::from_seed([4; 32])),
            server_key,
            client_key,
            got_by_client: Vec::new(),
            got_by_server: Vec::new(),
            to_server: Vec::new(),
            to_client: Vec::new(),
        }
    }

    /// Carries every queued datagram both ways until none is left; `lose` drops the ones it
    /// returns true for (by direction and bytes).
    fn run(&mut self, mut lose: impl FnMut(bool, &[u8]) -> bool) {
        let mut buf = vec![0u8; 70_000];
        loop {
            let mut moved = false;
            while let Some(d) = self.client.poll_transmit() {
                moved = true;
                self.to_server.push(d.clone());
                if lose(true, &d) {
                    continue;
                }
                if let Some((key, plain)) = self.server.receive(self.now, addr(ALICE), &d, &mut buf) {
                    assert_eq!(key, self.client_key.public(), "the server knows who sent it");
                    self.got_by_server.push(plain.to_vec());
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                assert_eq!(t.to, addr(ALICE));
                self.to_client.push(t.bytes.to_vec());
                if lose(false, &t.bytes) {
                    continue;
                }
                if let Some(plain) = self.client.receive(self.now, &t.bytes, &mut buf) {
                    self.got_by_client.push(plain.to_vec());
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn deliver(&mut self) {
        self.run(|_, _| false);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
    }
}

#[test]
fn a_handshake_pins_the_server_key_and_carries_both_ways_what_waited_for_it() {
    let mut net = Net::new(ServerConfig::default());
    net.client.send(net.now, b"register");
    net.client.send(net.now, b"second");
    net.deliver();
    assert_eq!(net.client.poll_event(), Some(ClientEvent::KeyLearned(net.server_key.public())));
    assert_eq!(net.client.pinned(), Some(net.server_key.public()));
    assert!(net.client.is_established());
    assert_eq!(net.got_by_server, [b"register".to_vec(), b"second".to_vec()]);
    net.server.send(net.now, addr(ALICE), None, b"welcome");
    net.deliver();
    assert_eq!(net.got_by_client, [b"welcome".to_vec()]);
    let sizes: Vec<usize> = net.to_server.iter().chain(&net.to_client).map(Vec::len).collect();
    assert_eq!(&sizes[..2], [INITIATION_LEN, 69], "initiation, final");
    assert_eq!(net.to_client[0].len(), 105, "response");
    assert_eq!(net.to_server[2].len(), b"register".len() + DATA_OVERHEAD);
    assert!(net.to_server.iter().all(|d| !contains(d, b"register")), "no plaintext on the wire");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_server_showing_another_key_than_the_pinned_one_is_refused_and_gets_nothing() {
    let mut net = Net::new(ServerConfig::default());
    let pinned = KeyPair::from_secret([9; 32]).public();
    net.client = ClientChannel::new(net.client_key.clone(), Some(pinned), Entropy::from_seed([3; 32]));
    net.client.send(net.now, b"secret request");
    // The server answers every initiation with its own key: after the handshake's give-up
    // time, that key is refused.
    let start = net.now;
    let refused = loop {
        net.deliver();
        if let Some(event) = net.client.poll_event() {
            break event;
        }
        assert!(net.now <= start + crate::client::REFUSE_AFTER + RESEND, "refused in time");
        net.advance(RESEND);
    };
    assert_eq!(refused, ClientEvent::KeyRefused { shown: net.server_key.public(), pinned });
    assert_eq!(net.client.poll_event(), None);
    assert!(net.got_by_server.is_empty());
    assert!(net.to_server.iter().all(|d| d[0] == 1), "only initiations went out, nothing under a session");
    net.client.send(net.now, b"more");
    net.advance(RESEND * 4);
    assert!(net.client.poll_transmit().is_none(), "a refused channel sends nothing more");
}

#[test]
fn a_replayed_or_altered_datagram_is_dropped_and_a_replayed_handshake_draws_no_new_state() {
    let mut net = Net::new(ServerConfig::default());
    net.client.send(net.now, b"save 1");
    net.deliver();
    let mut buf = vec![0u8; 70_000];
    let data = net.to_server.last().expect("the save").clone();
    let before = net.server.dropped();
    assert!(net.server.receive(net.now, addr(ALICE), &data, &mut buf).is_none(), "a replay");
    let mut altered = data.clone();
    *altered.last_mut().expect("bytes") ^= 1;
    assert!(net.server.receive(net.now, addr(ALICE), &altered, &mut buf).is_none(), "altered");
    assert!(net.server.receive(net.now, addr("127.0.0.1:4002"), &data, &mut buf).is_none(), "from elsewhere");
    assert_eq!(net.server.dropped(), before + 3);
    // The handshake's datagrams again: the initiation gets the same response or nothing new,
    // the final only a confirmation; no new session either way.
    let (initiation, last) = (net.to_server[0].clone(), net.to_server[1].clone());
    let sessions = net.server.sessions();
    assert!(net.server.receive(net.now, addr(ALICE), &initiation, &mut buf).is_none());
    assert!(net.server.receive(net.now, addr(ALICE), &last, &mut buf).is_none());
    assert_eq!(net.server.sessions(), sessions);
    while let Some(t) = net.server.poll_transmit() {
        assert!(t.bytes.len() <= initiation.len());
        assert!(net.client.receive(net.now, &t.bytes, &mut buf).is_none(), "nothing the client takes as data");
    }
    assert_eq!(net.got_by_server, [b"save 1".to_vec()], "taken once");
    // And the server's datagrams replayed to the client.
    net.server.send(net.now, addr(ALICE), None, b"table");
    let table = net.server.poll_transmit().expect("sealed").bytes;
    assert_eq!(net.client.receive(net.now, &table, &mut buf), Some(b"table".as_slice()));
    assert_eq!(net.client.receive(net.now, &table, &mut buf), None, "a replay");
}

#[test]
fn a_lost_response_or_confirmation_is_sent_again_and_the_handshake_completes() {
    let mut net = Net::new(ServerConfig::default());
    net.client.send(net.now, b"register");
    // The server's first response and first confirmation are lost.
    let (mut response_lost, mut confirmation_lost) = (false, false);
    for _ in 0..2 {
        net.run(|to_server, d| {
            let lose = |lost: &mut bool| !std::mem::replace(lost, true);
            match (to_server, d[0]) {
                (false, 2) => lose(&mut response_lost),
                (false, 4) => lose(&mut confirmation_lost),
                _ => false,
            }
        });
        assert!(!net.client.is_established());
        net.advance(RESEND);
    }
    assert!(response_lost && confirmation_lost);
    net.deliver();
    assert!(net.client.is_established());
    assert_eq!(net.got_by_server, [b"register".to_vec()], "taken once");
    assert_eq!(net.server.sessions(), 1);
}

#[test]
fn a_restarted_server_says_it_has_no_session_and_the_client_starts_another() {
    let mut net = Net::new(ServerConfig::default());
    net.client.send(net.now, b"one");
    net.deliver();
    net.server =
        ServerChannel::new(net.server_key.clone(), ServerConfig::default(), net.now, Entropy::from_seed([5; 32]));
    net.advance(RESTART_GAP);
    net.client.send(net.now, b"two, lost");
    net.deliver();
    net.client.send(net.now, b"three");
    net.deliver();
    assert_eq!(net.got_by_server, [b"one".to_vec(), b"three".to_vec()], "the cores resend what was lost");
    // A `no session` forged again right away costs no handshake.
    let mut buf = [0u8; 64];
    let sent = net.to_server.len();
    net.client.receive(net.now, &[6], &mut buf);
    net.deliver();
    assert_eq!(net.to_server.len(), sent);
    // The server wanting to send to an address with no session asks it to start one, once a second.
    net.server.send(net.now, addr("127.0.0.1:4009"), None, b"probe");
    net.server.send(net.now, addr("127.0.0.1:4009"), None, b"probe");
    let hints: Vec<_> = std::iter::from_fn(|| net.server.poll_transmit()).collect();
    assert_eq!(hints.len(), 1);
    assert_eq!(&*hints[0].bytes, [6]);
}

#[test]
fn a_busy_server_asks_for_a_cookie_that_proves_the_address_and_expires() {
    let cfg = ServerConfig { busy_at: 0, ..ServerConfig::default() };
    let mut net = Net::new(cfg);
    net.client.send(net.now, b"register");
    let mut buf = vec![0u8; 70_000];
    let initiation = net.client.poll_transmit().expect("initiation");
    assert!(net.server.receive(net.now, addr(ALICE), &initiation, &mut buf).is_none());
    let cookie = net.server.poll_transmit().expect("a cookie").bytes;
    assert_eq!(cookie.len(), 21);
    assert_eq!(net.server.pending(), 0, "no state kept for an address not proven");
    // The cookie is for this address only, and for a period.
    let mut with_cookie = initiation.clone();
    with_cookie[5..21].copy_from_slice(&cookie[5..21]);
    net.server.receive(net.now, addr("127.0.0.1:4002"), &with_cookie, &mut buf);
    assert_eq!(net.server.poll_transmit().expect("another cookie").bytes.len(), 21);
    let late = net.now + COOKIE_PERIOD * 2;
    net.server.receive(late, addr(ALICE), &with_cookie, &mut buf);
    assert_eq!(net.server.poll_transmit().expect("expired: another cookie").bytes.len(), 21);
    assert_eq!(net.server.pending(), 0);
    // The client puts it in its initiation and goes on.
    assert!(net.client.receive(net.now, &cookie, &mut buf).is_none());
    net.deliver();
    assert!(net.client.is_established());
    assert_eq!(net.got_by_server, [b"register".to_vec()]);
}

#[test]
fn garbage_and_truncated_datagrams_draw_nothing_and_change_nothing() {
    let mut net = Net::new(ServerConfig::default());
    net.client.send(net.now, b"x");
    net.deliver();
    let mut buf = vec![0u8; 70_000];
    let samples: Vec<Vec<u8>> = net.to_server.iter().chain(&net.to_client).cloned().collect();
    for d in &samples {
        for cut in 0..d.len() {
            assert!(net.server.receive(net.now, addr(ALICE), &d[..cut], &mut buf).is_none());
            assert!(net.client.receive(net.now, &d[..cut], &mut buf).is_none());
        }
    }
    for garbage in [&b"{\"type\":\"register\"}"[..], &[1; 300], &[4; 40], &[2; 105], &[3; 69], &[5; 21]] {
        assert!(net.server.receive(net.now, addr(ALICE), garbage, &mut buf).is_none());
        assert!(net.client.receive(net.now, garbage, &mut buf).is_none());
    }
    assert!(net.client.poll_transmit().is_none());
    // Only `no session` answers (one byte, once a second): data under unknown indices.
    let answers: Vec<_> = std::iter::from_fn(|| net.server.poll_transmit()).collect();
    assert!(answers.iter().all(|t| *t.bytes == [6]), "{answers:?}");
    assert!(answers.len() <= 1);
    assert_eq!(net.server.sessions(), 1);
    net.client.send(net.now, b"still works");
    net.deliver();
    assert_eq!(net.got_by_server.last().map(Vec::as_slice), Some(b"still works".as_slice()));
}

#[test]
fn a_session_is_renewed_after_ten_minutes_and_the_old_one_forgotten_once_the_new_is_used() {
    let mut net = Net::new(ServerConfig::default());
    net.client.send(net.now, b"a");
    net.deliver();
    net.advance(crate::client::REKEY_AFTER);
    net.client.send(net.now, b"b");
    net.deliver();
    assert_eq!(net.server.sessions(), 2, "the new session, and the old one still in use");
    net.client.send(net.now, b"c");
    net.deliver();
    assert_eq!(net.server.sessions(), 1);
    assert_eq!(net.got_by_server, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// A real exchange's datagrams, both ways: what the mutations start from.
    fn samples() -> (Net, Vec<Vec<u8>>) {
        let mut net = Net::new(ServerConfig::default());
        net.client.send(net.now, b"register");
        net.deliver();
        net.server.send(net.now, addr(ALICE), None, b"table");
        net.deliver();
        let all = net.to_server.iter().chain(&net.to_client).cloned().collect();
        (net, all)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any datagram that is not one the other end sealed, unaltered and for the first
        /// time, opens to nothing at either end and draws at most a datagram no larger than it.
        #[test]
        fn altered_datagrams_never_open_and_never_draw_more_than_they_carry(
            pick in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let (mut net, samples) = samples();
            let mut d = pick.get(&samples).clone();
            for (at, bits) in &flips {
                let i = at.index(d.len());
                d[i] ^= bits;
            }
            if truncate {
                d.truncate(cut.index(d.len() + 1));
            }
            let mut buf = vec![0u8; 70_000];
            let before = net.server.sessions();
            prop_assert!(net.server.receive(net.now, addr(ALICE), &d, &mut buf).is_none());
            while let Some(t) = net.server.poll_transmit() {
                prop_assert!(t.bytes.len() <= d.len().max(1), "{} bytes drew {}", d.len(), t.bytes.len());
            }
            prop_assert!(net.client.receive(net.now, &d, &mut buf).is_none());
            prop_assert_eq!(net.server.sessions(), before);
        }
    }
}

/// A review's attacks on the channel: each test shows a defect and is ignored until it is fixed.
mod review {
    use super::*;

    /// An attacker on alice's path (it reads what the server sends to her address and can send
    /// from that address) runs a handshake of its own, with its own key, from her address.
    #[test]
    fn an_on_path_attacker_cannot_take_over_what_the_server_sends_to_an_address() {
        let mut net = Net::new(ServerConfig::default());
        net.client.send(net.now, b"register");
        net.deliver();
        assert!(net.client.is_established());
        let mut buf = vec![0u8; 70_000];
        let mallory = KeyPair::from_secret([7; 32]);
        let mut attacker = ClientChannel::new(mallory.clone(), None, Entropy::from_seed([8; 32]));
        attacker.send(net.now, b"{\"type\":\"keepalive\"}");
        let mut held = Vec::new();
        loop {
            let mut moved = false;
            while let Some(d) = attacker.poll_transmit() {
                moved = true;
                if d[0] == 4 {
                    held.push(d); // kept for later: the takeover stays quiet
                    continue;
                }
                assert!(net.server.receive(net.now, addr(ALICE), &d, &mut buf).is_none());
            }
            while let Some(t) = net.server.poll_transmit() {
                moved = true;
                // Both see what goes to alice's address.
                let _ = attacker.receive(net.now, &t.bytes, &mut buf);
                let _ = net.client.receive(net.now, &t.bytes, &mut buf);
            }
            if !moved {
                break;
            }
        }
        // The server now answers alice's requests (still taken under her own session) under
        // the attacker's session: `registered` with her secret, tables, channel texts, her
        // stored messages.
        net.client.send(net.now, b"register, again");
        net.deliver();
        assert_eq!(net.got_by_server.last().map(Vec::as_slice), Some(b"register, again".as_slice()));
        // The server sends alice's address what is meant for the client it knows there, under
        // that client's key (the core says whose it is).
        net.server.send(net.now, addr(ALICE), Some(net.client_key.public()), b"registered: secret 8c1f");
        let t = net.server.poll_transmit().expect("a datagram for alice");
        assert_eq!(attacker.receive(net.now, &t.bytes, &mut buf), None, "the attacker reads what is meant for alice");
        assert_eq!(
            net.client.receive(net.now, &t.bytes, &mut buf),
            Some(b"registered: secret 8c1f".as_slice()),
            "alice gets what the server sends her"
        );
        // And what the attacker sends from her address under its session reaches the core with
        // the attacker's key, never hers: the core takes nothing but a registration from a
        // session whose key is not the one of the client at that address.
        let opened: Vec<_> =
            held.iter().filter_map(|d| net.server.receive(net.now, addr(ALICE), d, &mut buf).map(|(k, _)| k)).collect();
        assert!(opened.iter().all(|k| *k == mallory.public()), "the channel tells whose session it came under");
    }

    /// An attacker who sees alice's initiation answers it first, from the server's address,
    /// with a handshake of its own key; the real server's response comes right after.
    #[test]
    fn a_response_forged_with_another_key_does_not_end_a_client_whose_server_answers_too() {
        let mut net = Net::new(ServerConfig::default());
        let pinned = net.server_key.public();
        net.client = ClientChannel::new(net.client_key.clone(), Some(pinned), Entropy::from_seed([3; 32]));
        net.client.send(net.now, b"register");
        let initiation = net.client.poll_transmit().expect("initiation");
        let mut buf = vec![0u8; 70_000];
        let mut fake = ServerChannel::new(
            KeyPair::from_secret([7; 32]),
            ServerConfig::default(),
            net.now,
            Entropy::from_seed([8; 32]),
        );
        assert!(fake.receive(net.now, addr(ALICE), &initiation, &mut buf).is_none());
        let forged = fake.poll_transmit().expect("the forged response").bytes;
        assert_eq!(forged.len(), 105);
        assert!(net.client.receive(net.now, &forged, &mut buf).is_none());
        // The genuine answer to that initiation comes too late for it (the forged one spent
        // it); the client starts again a moment later, and the real server answers that.
        assert!(net.server.receive(net.now, addr(ALICE), &initiation, &mut buf).is_none());
        net.deliver();
        net.advance(RESEND);
        net.deliver();
        let events: Vec<_> = std::iter::from_fn(|| net.client.poll_event()).collect();
        assert!(
            !events.iter().any(|e| matches!(e, ClientEvent::KeyRefused { .. })),
            "one forged datagram ends the client (exit 1, and at every restart): {events:?}"
        );
        assert!(net.client.is_established());
        assert_eq!(net.got_by_server, [b"register".to_vec()]);
    }

    /// After a forged response, the genuine server answers the next initiation with the pinned
    /// key, but its confirmations are lost for longer than the refusal deadline: the client,
    /// having heard the pinned key, is not refused and goes on once a confirmation comes.
    #[test]
    fn a_forged_response_then_the_pinned_key_with_slow_confirmations_is_not_refused() {
        let mut net = Net::new(ServerConfig::default());
        let pinned = net.server_key.public();
        net.client = ClientChannel::new(net.client_key.clone(), Some(pinned), Entropy::from_seed([3; 32]));
        net.client.send(net.now, b"register");
        let initiation = net.client.poll_transmit().expect("initiation");
        let mut buf = vec![0u8; 70_000];
        let mut fake = ServerChannel::new(
            KeyPair::from_secret([7; 32]),
            ServerConfig::default(),
            net.now,
            Entropy::from_seed([8; 32]),
        );
        assert!(fake.receive(net.now, addr(ALICE), &initiation, &mut buf).is_none());
        let forged = fake.poll_transmit().expect("the forged response").bytes;
        assert!(net.client.receive(net.now, &forged, &mut buf).is_none());
        let start = net.now;
        while net.now < start + crate::client::REFUSE_AFTER * 3 {
            net.advance(RESEND);
            net.run(|to_server, d| !to_server && d[0] == 4); // every confirmation lost
        }
        assert_eq!(net.client.poll_event(), None, "not refused");
        net.advance(RESEND);
        net.deliver();
        assert!(net.client.is_established());
        assert_eq!(net.got_by_server, [b"register".to_vec()]);
    }

    /// A forged `no session` makes alice run a handshake; the server takes her final and
    /// makes the new session its current one, but its confirmations are lost for the 5 s alice
    /// tries. She keeps her old session, the server answers under the new one.
    #[test]
    fn after_a_forged_no_session_lost_confirmations_do_not_leave_the_client_deaf() {
        let mut net = Net::new(ServerConfig::default());
        net.client.send(net.now, b"register");
        net.deliver();
        net.advance(RESTART_GAP);
        // Alice has just sent something (lost on the way), so a `no session` is believed.
        net.client.send(net.now, b"keepalive, lost");
        while net.client.poll_transmit().is_some() {}
        let mut buf = vec![0u8; 70_000];
        assert!(net.client.receive(net.now, &[6], &mut buf).is_none(), "forged from the server's address");
        let ticks = GIVE_UP.as_millis() / RESEND.as_millis() + 2;
        for _ in 0..ticks {
            net.run(|to_server, d| !to_server && d[0] == 4);
            net.advance(RESEND);
        }
        assert!(net.client.is_established(), "still on the old session");
        assert_eq!(net.server.sessions(), 2, "the server holds the new one as current");
        // The loss is over. Alice goes on sending (the server takes it), the server answers.
        for n in 0..60 {
            net.advance(Duration::from_secs(5));
            net.client.send(net.now, b"keepalive");
            net.server.send(net.now, addr(ALICE), None, format!("answer {n}").as_bytes());
            net.deliver();
        }
        assert_eq!(net.got_by_server.len(), 61, "the server took everything alice sent");
        assert!(
            !net.got_by_client.is_empty(),
            "for five minutes after the loss ended alice got nothing of the server's {} datagrams",
            60
        );
    }

    /// An off-path attacker knows every client's address (the table gives them to anyone
    /// registered) and forges the server's one-byte `no session` to each, once a second.
    #[test]
    fn a_forged_no_session_every_second_does_not_cost_the_server_a_handshake_every_second() {
        let mut net = Net::new(ServerConfig::default());
        net.client.send(net.now, b"register");
        net.deliver();
        let mut buf = vec![0u8; 70_000];
        let handshakes_before = net.to_server.iter().filter(|d| d[0] == 1).count();
        for _ in 0..60 {
            net.advance(RESTART_GAP);
            assert!(net.client.receive(net.now, &[6], &mut buf).is_none());
            net.deliver();
        }
        let handshakes = net.to_server.iter().filter(|d| d[0] == 1).count() - handshakes_before;
        let bytes_to_server: usize = net.to_server.iter().filter(|d| d[0] == 1 || d[0] == 3).map(Vec::len).sum();
        assert!(
            handshakes <= 5,
            "60 forged bytes made the client run {handshakes} handshakes ({bytes_to_server} bytes and as many \
             X25519 handshakes for the server)"
        );
    }

    /// An attacker that sees alice's initiation (its index is in clear) forges cookie replies
    /// from the server's address: each 21 bytes draws a 256-byte initiation to the server.
    #[test]
    fn forged_cookie_replies_do_not_make_the_client_send_more_than_it_gets() {
        let mut net = Net::new(ServerConfig::default());
        net.client.send(net.now, b"register");
        let initiation = net.client.poll_transmit().expect("initiation");
        let mut buf = vec![0u8; 70_000];
        let mut forged = vec![5u8];
        forged.extend_from_slice(&initiation[1..5]);
        forged.extend_from_slice(&[0xAA; 16]);
        let (mut bytes_in, mut bytes_out) = (0, 0);
        for _ in 0..100 {
            bytes_in += forged.len();
            let _ = net.client.receive(net.now, &forged, &mut buf);
            while let Some(d) = net.client.poll_transmit() {
                bytes_out += d.len();
            }
        }
        assert!(bytes_out <= bytes_in, "{bytes_in} forged bytes drew {bytes_out} bytes to the server at once");
    }

    /// The server restarts between its response and the client's final: the final draws
    /// nothing, the client waits out its 5 s before it starts again, longer than the cores try
    /// a request (5 retries 500 ms apart: 3 s, after which the client exits, "server gone").
    #[test]
    fn a_server_restart_in_the_middle_of_a_handshake_costs_less_than_a_requests_retries() {
        let mut net = Net::new(ServerConfig::default());
        net.client.send(net.now, b"register");
        let initiation = net.client.poll_transmit().expect("initiation");
        let mut buf = vec![0u8; 70_000];
        assert!(net.server.receive(net.now, addr(ALICE), &initiation, &mut buf).is_none());
        let response = net.server.poll_transmit().expect("response").bytes;
        net.server =
            ServerChannel::new(net.server_key.clone(), ServerConfig::default(), net.now, Entropy::from_seed([5; 32]));
        assert!(net.client.receive(net.now, &response, &mut buf).is_none());
        net.deliver();
        // The core sends the register again every 500 ms, five times.
        for _ in 0..5 {
            net.advance(Duration::from_millis(250));
            net.deliver();
            net.advance(Duration::from_millis(250));
            net.client.send(net.now, b"register");
            net.deliver();
        }
        assert!(!net.got_by_server.is_empty(), "3 s after the restart the server has still heard nothing");
    }

    /// Sessions outlive any idle time, two per address: one IP with many ports (a NAT that
    /// rebinds, or a client of the attacker's own) leaves sessions the server keeps forever,
    /// about 0.5 KiB each, up to 2^20 of them, the oldest (a real client's) dropped first.
    #[test]
    fn sessions_an_address_left_a_day_ago_are_not_kept_forever() {
        let mut net = Net::new(ServerConfig::default());
        let mut buf = vec![0u8; 70_000];
        let mallory = KeyPair::from_secret([7; 32]);
        for port in 0..200u16 {
            let from = SocketAddr::from(([127, 0, 0, 9], 20_000 + port));
            let mut attacker = ClientChannel::new(mallory.clone(), None, Entropy::from_seed([port as u8; 32]));
            attacker.send(net.now, b"x");
            for _ in 0..4 {
                while let Some(d) = attacker.poll_transmit() {
                    let _ = net.server.receive(net.now, from, &d, &mut buf);
                }
                while let Some(t) = net.server.poll_transmit() {
                    let _ = attacker.receive(net.now, &t.bytes, &mut buf);
                }
            }
            assert!(attacker.is_established());
        }
        assert_eq!(net.server.sessions(), 200);
        net.advance(Duration::from_secs(24 * 3600));
        assert!(net.server.sessions() < 200, "idle a day, all {} sessions are still kept", net.server.sessions());
    }
}
