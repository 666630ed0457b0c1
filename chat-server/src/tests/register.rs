//! Registration: joining, confirming, secrets, names moving and in use, dereg.

use super::*;

#[test]
fn registration_answers_then_once_confirmed_broadcasts_the_table() {
    let mut f = Fixture::new();
    f.register("alice", ALICE);
    let id = f.id();
    let out = f.recv(BOB, f.reg(id, "bob"));
    let [(BOB, Datagram::Registered { stored: 0, cookie, .. })] = out[..] else { panic!("only the answer: {out:?}") };
    assert!(f.server.table().clients.iter().all(|r| r.name.as_str() != "bob"), "no row before the confirm");
    let id = f.id();
    let out = f.recv(BOB, Datagram::Confirm { id, cookie });
    let tables: Vec<u16> = out.iter().filter(|(_, d)| table_version(d).is_some()).map(|(p, _)| *p).collect();
    assert_eq!(tables.len(), 2, "both online clients get the table: {out:?}");
    assert!(out.iter().all(|(_, d)| online_in(d, "bob") != Some(false)));
}

#[test]
fn registrations_never_confirmed_add_no_rows() {
    let mut f = Fixture::online(&[("alice", ALICE)]);
    for port in 6000..6200u16 {
        // As sent from spoofed addresses: padded, so answered, but never confirmed.
        let out = f.recv(port, f.reg(MsgId(1), &format!("spoof{port}")));
        assert!(matches!(out[..], [(p, Datagram::Registered { .. })] if p == port), "{out:?}");
    }
    assert_eq!(f.server.table().clients.len(), 1, "only alice");
    assert_eq!(f.at(20_000), vec![], "nothing broadcast, nothing to retransmit");
}

#[test]
fn a_confirm_with_nothing_registering_at_its_address_is_refused_so_the_client_registers_again() {
    // As for a joining name forgotten past capacity: the address has its cookie, but nothing
    // registers there.
    let mut f = Fixture::new();
    let cookie = f.server.cookie(addr(BOB));
    let out = f.recv(BOB, Datagram::Confirm { id: MsgId(2), cookie });
    assert_eq!(out, vec![(BOB, Datagram::Refused { id: MsgId(2), reason: Refusal::NotRegistered })]);
}

#[test]
fn a_register_spoofed_from_a_joining_address_cannot_change_what_its_confirm_creates() {
    let mut f = Fixture::new();
    let out = f.recv(BOB, f.reg(MsgId(101), "bob"));
    let [(BOB, Datagram::Registered { cookie, .. })] = out[..] else { panic!("{out:?}") };
    let stolen = Secret::new("0123456789abcdef0123456789abcdef").expect("secret");
    let spoofed = Datagram::Register {
        lan: None,
        id: MsgId(109),
        name: name("mallory"),
        secret: Some(stolen),
        key: key("mallory"),
        pad: " ".repeat(300),
    };
    f.recv(BOB, spoofed);
    let out = f.recv(BOB, Datagram::Confirm { id: MsgId(102), cookie });
    assert_eq!(out, vec![(BOB, Datagram::Refused { id: MsgId(102), reason: Refusal::NotRegistered })]);
    assert!(f.server.table().clients.is_empty(), "no row for mallory");
    f.join("bob", BOB); // bob registers again, and gets his row
    assert!(f.server.table().clients.iter().any(|r| r.name.as_str() == "bob" && r.addr == addr(BOB)));
}

#[test]
fn a_new_name_waits_for_its_confirm_even_from_a_proven_address() {
    let mut f = Fixture::online(&[("alice", ALICE)]);
    let out = f.recv(ALICE, f.reg(MsgId(900), "mallory")); // spoofed from alice's address
    assert!(matches!(out[..], [(ALICE, Datagram::Registered { .. })]), "{out:?}");
    let rows = f.server.table().clients;
    assert!(matches!(&rows[..], [r] if r.name.as_str() == "alice" && r.online), "alice keeps her address: {rows:?}");
}

#[test]
fn a_new_name_with_a_mailbox_from_before_fetches_it_once_confirmed() {
    let mut f = Fixture::new();
    let msg = StoredMessage {
        id: MsgId(5),
        from: name("alice"),
        origin: Origin::Direct,
        at: Utc::now(),
        body: Body::Sealed { sealed: sealed("alice", "bob", MsgId(5), "kept"), key: key("alice") },
    };
    f.server.store_mut().append(&name("bob"), &msg).expect("append");
    let out = f.recv(BOB, f.reg(MsgId(1), "bob"));
    let [(BOB, Datagram::Registered { stored: 1, cookie, .. })] = out[..] else { panic!("{out:?}") };
    f.recv(BOB, Datagram::Confirm { id: MsgId(2), cookie });
    let out = f.recv(BOB, Datagram::Fetch { id: MsgId(3), index: 0 });
    assert!(matches!(&out[..], [(BOB, Datagram::Stored { message, .. })] if read("bob", message) == "kept"), "{out:?}");
}

#[test]
fn a_name_the_server_lost_takes_the_secret_its_client_shows() {
    let mut f = Fixture::new();
    let shown = Secret::new("00112233445566778899aabbccddeeff").expect("secret");
    let register = Datagram::Register {
        lan: None,
        id: MsgId(1),
        name: name("bob"),
        secret: Some(shown.clone()),
        key: key("bob"),
        pad: " ".repeat(300),
    };
    let out = f.recv(BOB, register);
    assert!(matches!(&out[..], [(BOB, Datagram::Registered { secret, .. })] if *secret == shown), "{out:?}");
}

#[test]
fn two_joining_as_the_same_new_name_the_first_to_confirm_gets_it() {
    let mut f = Fixture::new();
    let cookie = |out: &[(u16, Datagram)]| match out {
        [(_, Datagram::Registered { cookie, secret, .. })] => (*cookie, secret.clone()),
        _ => panic!("{out:?}"),
    };
    let (first, _) = cookie(&f.recv(BOB, f.reg(MsgId(1), "bob")));
    let (second, _) = cookie(&f.recv(CAROL, f.reg(MsgId(1), "bob")));
    f.recv(CAROL, Datagram::Confirm { id: MsgId(2), cookie: second });
    let out = f.recv(BOB, Datagram::Confirm { id: MsgId(2), cookie: first });
    assert_eq!(out, vec![(BOB, Datagram::Refused { id: MsgId(2), reason: Refusal::NotRegistered })]);
    let rows = f.server.table().clients;
    assert!(matches!(&rows[..], [r] if r.name.as_str() == "bob" && r.addr == addr(CAROL)), "{rows:?}");
}

#[test]
fn a_retransmitted_registration_gets_the_same_answer() {
    let mut f = Fixture::new();
    let id = f.id();
    let first = f.recv(ALICE, f.reg(id, "alice"));
    let again = f.recv(ALICE, f.reg(id, "alice"));
    assert_eq!(again, vec![first[0].clone()], "replayed reply only, no second broadcast");
}

#[test]
fn a_name_online_elsewhere_is_probed_and_refused_if_alive() {
    let mut f = Fixture::new();
    f.register("alice", ALICE);
    let id = f.id();
    let out = f.recv(BOB, f.reg(id, "alice"));
    let [(ALICE, Datagram::Probe { id: probe })] = out[..] else { panic!("expected a probe: {out:?}") };
    assert!(f.recv(BOB, f.reg(id, "alice")).is_empty(), "retransmission waits");
    let out = f.recv(ALICE, Datagram::ProbeAck { id: probe, name: name("alice") });
    assert_eq!(out, vec![(BOB, Datagram::Refused { id, reason: Refusal::NameTaken })]);
}

#[test]
fn a_name_whose_old_address_is_silent_moves() {
    let mut f = Fixture::new();
    f.register("alice", ALICE);
    let id = f.id();
    f.recv(BOB, f.reg(id, "alice"));
    let probes = (1..=4).flat_map(|i| f.at(i * 100)).filter(|(_, d)| matches!(d, Datagram::Probe { .. })).count();
    assert_eq!(probes, 4, "retransmitted inside the window");
    let out = f.at(500);
    assert!(out.iter().any(|d| matches!(d, (BOB, Datagram::Registered { .. }))), "{out:?}");
    let row = f.server.table().clients.into_iter().find(|r| r.name.as_str() == "alice").expect("row");
    assert_eq!((row.addr, row.online), (addr(BOB), true));
}

#[test]
fn dereg_broadcasts_then_acks_and_requires_the_owner() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let id = f.id();
    let secret = f.secret_of("bob");
    let out = f.recv(ALICE, Datagram::Dereg { id, name: name("bob"), secret: secret.clone() });
    assert_eq!(out, vec![(ALICE, Datagram::Refused { id, reason: Refusal::NotRegistered })], "not from bob's address");
    let id = f.id();
    let wrong = f.secret_of("alice");
    let out = f.recv(BOB, Datagram::Dereg { id, name: name("bob"), secret: wrong });
    assert_eq!(out, vec![(BOB, Datagram::Refused { id, reason: Refusal::NotOwner })], "bob's address, not his secret");
    let id = f.id();
    let out = f.recv(BOB, Datagram::Dereg { id, name: name("bob"), secret });
    assert!(matches!(&out[0], (ALICE, d) if online_in(d, "bob") == Some(false)), "{out:?}");
    assert_eq!(out.last(), Some(&(BOB, Datagram::Ack { id })));
}

#[test]
fn a_registered_name_needs_its_secret() {
    let mut f = Fixture::new();
    f.register("bob", BOB);
    f.dereg("bob", BOB);
    let stolen = Datagram::Register {
        lan: None,
        id: MsgId(900),
        name: name("bob"),
        secret: None,
        key: key("bob"),
        pad: " ".repeat(300),
    };
    assert_eq!(f.recv(CAROL, stolen), vec![(CAROL, Datagram::Refused { id: MsgId(900), reason: Refusal::NotOwner })]);
    let wrong = Secret::new("ffffffffffffffffffffffffffffffff").expect("secret");
    let guessed = Datagram::Register {
        lan: None,
        id: MsgId(901),
        name: name("bob"),
        secret: Some(wrong),
        key: key("bob"),
        pad: " ".repeat(300),
    };
    assert!(matches!(f.recv(CAROL, guessed)[..], [(CAROL, Datagram::Refused { reason: Refusal::NotOwner, .. })]));
    let out = f.recv(CAROL, f.reg(MsgId(902), "bob"));
    assert!(matches!(out[0], (CAROL, Datagram::Registered { .. })), "the owner may move: {out:?}");
}

#[test]
fn a_registered_name_needs_its_key_too() {
    let mut f = Fixture::new();
    f.register("bob", BOB);
    f.dereg("bob", BOB);
    let secret = Some(f.secret_of("bob"));
    let other = Datagram::Register {
        lan: None,
        id: MsgId(900),
        name: name("bob"),
        secret,
        key: key("mallory"),
        pad: " ".repeat(300),
    };
    let out = f.recv(CAROL, other);
    assert_eq!(
        out,
        vec![(CAROL, Datagram::Refused { id: MsgId(900), reason: Refusal::NotOwner })],
        "the secret is not enough"
    );
    assert_eq!(f.server.table().clients[0].key, Some(key("bob")), "the table keeps bob's key");
}

#[test]
fn without_the_secret_an_online_name_is_in_use() {
    let mut f = Fixture::new();
    f.register("bob", BOB);
    let d = Datagram::Register {
        lan: None,
        id: MsgId(900),
        name: name("bob"),
        secret: None,
        key: key("bob"),
        pad: " ".repeat(300),
    };
    assert_eq!(f.recv(CAROL, d), vec![(CAROL, Datagram::Refused { id: MsgId(900), reason: Refusal::NameTaken })]);
}

#[test]
fn secrets_cookies_and_ids_come_from_the_entropy_handed_in() {
    let answer = |seed| {
        let wall = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
        let store = MemStore::new(Limits::default());
        let mut server = Server::new(Config::default(), store, Instant::now(), wall, Entropy::from_seed(seed));
        let reg = Datagram::Register {
            lan: None,
            id: MsgId(1),
            name: name("bob"),
            secret: None,
            key: key("bob"),
            pad: " ".repeat(300),
        };
        server.handle_datagram(Instant::now(), addr(BOB), reg);
        let t = server.poll_transmit().expect("registered");
        (decode(&t.bytes).expect("decode"), server.fresh_id())
    };
    assert_eq!(answer([1; 32]), answer([1; 32]), "the same seed, the same secret, cookie and ids");
    let (Datagram::Registered { secret: a, cookie: ca, .. }, ida) = answer([1; 32]) else { panic!() };
    let (Datagram::Registered { secret: b, cookie: cb, .. }, idb) = answer([2; 32]) else { panic!() };
    assert!(a != b && ca != cb && ida != idb);
    assert_eq!(a.expose().len(), 32, "128 bits, in hex");
}

#[test]
fn a_registration_is_taken_only_for_the_key_of_the_session_it_came_under() {
    let mut f = Fixture::new();
    let bytes = |d: &Datagram| chat_proto::encode(d).expect("encode");
    // Mallory holds a session of her own and claims bob's key in the registration: dropped,
    // unanswered, and the name stays free.
    let claim = bytes(&f.reg(MsgId(1), "bob"));
    f.server.handle_from(f.now, addr(BOB), key("mallory"), &claim);
    f.commit();
    assert_eq!(f.drain(), vec![]);
    assert!(f.server.table().clients.is_empty());
    // Bob under his own session: answered (once his mailbox is learnt).
    f.server.handle_from(f.now, addr(BOB), key("bob"), &claim);
    f.commit();
    let out = f.drain();
    assert!(matches!(out[..], [(BOB, Datagram::Registered { .. })]), "{out:?}");
}

#[test]
fn a_client_silent_for_three_keepalive_intervals_is_marked_offline_and_everyone_is_told() {
    let cfg = Config { keepalive: Duration::from_secs(10), ..Config::default() };
    let mut f = Fixture::with(cfg, Limits::default());
    let id = f.id();
    let out = f.recv(ALICE, f.reg(id, "alice"));
    assert!(
        matches!(out[..], [(ALICE, Datagram::Registered { keepalive_ms: 10_000, .. })]),
        "told at registration: {out:?}"
    );
    let Some((_, Datagram::Registered { secret, cookie, .. })) = out.first().cloned() else { panic!("{out:?}") };
    f.secrets.insert("alice".to_owned(), secret);
    let id = f.id();
    let out = f.recv(ALICE, Datagram::Confirm { id, cookie });
    f.ack_tables(&out);
    f.register("bob", BOB);
    // Bob keeps alive every interval; alice says nothing after registering.
    let mut gone_at = None;
    for s in 1..=60u64 {
        if s % 10 == 0 {
            f.server.handle_datagram(f.t0 + Duration::from_secs(s), addr(BOB), Datagram::Keepalive);
        }
        let out = f.at(s * 1000);
        if out.iter().any(|(p, d)| *p == BOB && online_in(d, "alice") == Some(false)) {
            gone_at.get_or_insert(s);
            f.ack_tables(&out);
        }
        assert!(out.iter().all(|(_, d)| online_in(d, "bob") != Some(false)), "bob kept alive: {out:?}");
    }
    // The sweep that first found alice online was at 5 s: silent 30 s from there, she is gone
    // at the sweep at 35 s, and bob is told.
    assert_eq!(gone_at, Some(35));
    assert!(f.server.table().clients.iter().any(|r| r.name.as_str() == "alice" && !r.online));
    assert!(f.server.table().clients.iter().any(|r| r.name.as_str() == "bob" && r.online));
}

#[test]
fn a_punch_request_is_passed_to_the_online_recipient_with_the_askers_address_at_a_bounded_rate() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let out = f.recv(ALICE, Datagram::PunchRequest { to: name("bob") });
    assert_eq!(out, vec![(BOB, Datagram::PunchAsk { from: name("alice"), addr: addr(ALICE) })]);
    // From an address with no online client, or for a name not online: nothing.
    assert_eq!(f.recv(CAROL, Datagram::PunchRequest { to: name("bob") }), vec![]);
    assert_eq!(f.recv(ALICE, Datagram::PunchRequest { to: name("nobody") }), vec![]);
    // A flood: ten a second pass, the rest are dropped until the next second.
    let passed = (0..50).filter(|_| !f.recv(ALICE, Datagram::PunchRequest { to: name("bob") }).is_empty()).count();
    assert_eq!(passed, 9, "ten in the first second, the first among them");
    f.at(1000);
    assert_eq!(f.recv(ALICE, Datagram::PunchRequest { to: name("bob") }).len(), 1);
}

#[test]
fn a_relayed_chat_and_its_ack_pass_unchanged_only_in_the_senders_own_name_at_a_bounded_rate() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let chat = Datagram::RelayChat {
        id: MsgId(7),
        from: name("alice"),
        to: name("bob"),
        sealed: sealed("alice", "bob", MsgId(7), "hi"),
    };
    assert_eq!(f.recv(ALICE, chat.clone()), vec![(BOB, chat.clone())]);
    let ack = Datagram::RelayAck {
        id: MsgId(7),
        from: name("bob"),
        to: name("alice"),
        proof: sealed("bob", "alice", MsgId(7), ""),
    };
    assert_eq!(f.recv(BOB, ack.clone()), vec![(ALICE, ack.clone())]);
    // In another's name, from an address with no online client, or for a name not online:
    // nothing.
    assert_eq!(f.recv(BOB, chat.clone()), vec![]);
    assert_eq!(f.recv(CAROL, chat.clone()), vec![]);
    f.dereg("bob", BOB);
    f.drain();
    assert_eq!(f.recv(ALICE, chat.clone()), vec![]);
    // Fifty a second from one client, then nothing until the next second.
    f.register("bob", BOB);
    f.at(2000);
    let passed = (0..80).filter(|_| !f.recv(ALICE, chat.clone()).is_empty()).count();
    assert_eq!(passed, 50);
}

#[test]
fn the_lan_address_a_client_tells_is_in_its_row_unless_it_is_its_address() {
    let mut f = Fixture::new();
    let lan: SocketAddr = "10.0.1.2:6001".parse().expect("addr");
    for (port, told, kept) in [(ALICE, Some(lan), Some(lan)), (BOB, Some(addr(BOB)), None), (CAROL, None, None)] {
        let who = match port {
            ALICE => "alice",
            BOB => "bob",
            _ => "carol",
        };
        let id = f.id();
        let Datagram::Register { name, secret, key, pad, .. } = f.reg(id, who) else { panic!() };
        let out = f.recv(port, Datagram::Register { id, name, secret, key, lan: told, pad });
        let Some((_, Datagram::Registered { cookie, .. })) = out.first().cloned() else { panic!("{out:?}") };
        let id = f.id();
        f.recv(port, Datagram::Confirm { id, cookie });
        let row = f.server.table().clients.into_iter().find(|r| r.name.as_str() == who).expect("a row");
        assert_eq!(row.lan, kept, "{who}");
    }
}

#[test]
fn under_another_keys_session_from_a_clients_address_only_a_registration_is_taken() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let bytes = |d: &Datagram| chat_proto::encode(d).expect("encode");
    // Mallory on alice's path, under a session of her own key from alice's address: alice's
    // dereg (with her secret, seen on the path before the channel) and a fetch are dropped.
    let dereg = Datagram::Dereg { id: MsgId(90), name: name("alice"), secret: f.secret_of("alice") };
    f.server.handle_from(f.now, addr(ALICE), key("mallory"), &bytes(&dereg));
    f.server.handle_from(f.now, addr(ALICE), key("mallory"), &bytes(&Datagram::Fetch { id: MsgId(91), index: 0 }));
    assert_eq!(f.drain(), vec![]);
    assert!(f.server.table().clients.iter().any(|r| r.name.as_str() == "alice" && r.online));
    // What the server sends alice's address goes under alice's key, also when it answers.
    assert_eq!(f.server.key_at(addr(ALICE)), Some(key("alice")));
    // Alice's own session: taken.
    f.server.handle_from(f.now, addr(ALICE), key("alice"), &bytes(&dereg));
    f.commit();
    let out: Vec<_> = std::iter::from_fn(|| f.server.poll_transmit_keyed()).collect();
    let acks: Vec<_> = out.iter().filter(|(t, _)| t.to == addr(ALICE)).collect();
    assert!(!acks.is_empty(), "alice's dereg is answered");
    // An answer held until the batch is on disk leaves with no key: the driver sends it under
    // the key of the client online there, else the address's session heard from last (alice's,
    // which just spoke); never one that names mallory.
    assert!(acks.iter().all(|(_, k)| k.is_none_or(|k| k == key("alice"))), "{acks:?}");
}
