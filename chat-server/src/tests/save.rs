//! Saves, their syncs and probes, stored messages fetched after `reg`, and a restored table.

use super::*;

#[test]
fn a_save_for_an_offline_client_is_stored_once_and_acked_after_sync() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    let (id, out) = f.save(("alice", ALICE), "bob", "hi");
    assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    let again = f.save_request(id, "alice", "bob", "hi");
    assert_eq!(f.recv(ALICE, again), vec![(ALICE, Datagram::Ack { id })]);
    assert_eq!(f.stored("bob"), vec![("alice".into(), Origin::Direct, "hi".into())]);
}

#[test]
fn saves_are_acked_when_their_sync_ends_and_those_that_come_meanwhile_share_the_next() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB), ("carol", CAROL)]);
    f.dereg("bob", BOB);
    let ack_to = |out: Vec<(u16, Datagram)>, port| {
        out.into_iter().filter(|(p, d)| *p == port && matches!(d, Datagram::Ack { .. })).count()
    };
    let request = f.save_request(MsgId(500), "alice", "bob", "one");
    f.server.handle_datagram(f.now, addr(ALICE), request);
    let first = f.lane_job().expect("a sync starts");
    assert_eq!(ack_to(f.drain(), ALICE), 0, "not acked before its sync ends");
    for (id, text) in [(501, "two"), (502, "three")] {
        let request = f.save_request(MsgId(id), "carol", "bob", text);
        f.server.handle_datagram(f.now, addr(CAROL), request);
        assert!(f.lane_job().is_none(), "one sync at a time");
    }
    assert_eq!(ack_to(f.drain(), CAROL), 0);
    f.server.handle_job_done(f.now, first.run());
    assert_eq!(f.drain(), vec![(ALICE, Datagram::Ack { id: MsgId(500) })], "only what the first sync covered");
    let second = f.lane_job().expect("the next sync serves both waiting saves");
    f.server.handle_job_done(f.now, second.run());
    assert_eq!(ack_to(f.drain(), CAROL), 2);
    assert_eq!(f.stored("bob").len(), 3);
}

#[test]
fn a_failed_sync_acks_nothing_and_the_retransmission_is_done_again() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    let request = f.save_request(MsgId(500), "alice", "bob", "hi");
    f.server.handle_datagram(f.now, addr(ALICE), request.clone());
    let job = f.lane_job().expect("a sync starts");
    let gone = std::io::Error::other("the disk is gone");
    f.server.handle_job_done(f.now, job.fail(StoreError::Io { op: "sync", path: "journal".into(), source: gone }));
    assert_eq!(f.drain(), vec![], "nothing acked that may not be on disk");
    assert_eq!(f.recv(ALICE, request), vec![(ALICE, Datagram::Ack { id: MsgId(500) })], "done again, not replayed");
}

#[test]
fn a_save_for_a_client_that_answers_the_probe_is_refused_with_the_table() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let (id, out) = f.save(("alice", ALICE), "bob", "hi");
    let [(BOB, Datagram::Probe { id: probe })] = out[..] else { panic!("{out:?}") };
    let out = f.recv(BOB, Datagram::ProbeAck { id: probe, name: name("bob") });
    let [(ALICE, Datagram::Exists { id: got, ref row })] = out[..] else { panic!("{out:?}") };
    assert_eq!(got, id);
    assert_eq!((row.name.as_str(), row.addr, row.online), ("bob", addr(BOB), true));
    assert!(f.stored("bob").is_empty());
}

#[test]
fn a_silent_recipient_is_marked_offline_told_and_the_message_stored() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let (id, _) = f.save(("alice", ALICE), "bob", "hi");
    for ms in [100, 200, 300, 400] {
        f.at(ms);
    }
    let again = f.save_request(id, "alice", "bob", "hi");
    assert!(f.recv(ALICE, again).is_empty(), "a retransmitted save during the probe is the same request");
    let out = f.at(500);
    let table_to = |port| out.iter().any(|(p, d)| *p == port && online_in(d, "bob") == Some(false));
    assert!(table_to(ALICE) && table_to(BOB), "table to the online and to the one marked offline: {out:?}");
    let ack = out.iter().position(|d| *d == (ALICE, Datagram::Ack { id })).expect("ack");
    let table = out.iter().position(|(p, d)| *p == ALICE && table_version(d).is_some()).expect("table");
    assert!(table < ack, "the table goes out before the ACK");
    assert_eq!(f.stored("bob").len(), 1);
}

#[test]
fn reg_delivers_stored_messages_in_order_and_deletes_them_when_confirmed() {
    let mut f = Fixture::new();
    f.register("alice", ALICE);
    f.register("carol", CAROL);
    f.register("bob", BOB);
    let out = f.dereg("bob", BOB);
    f.ack_tables(&out);
    f.save(("alice", ALICE), "bob", "one");
    f.save(("carol", CAROL), "bob", "two");
    let id = f.id();
    let out = f.recv(BOB, f.reg(id, "bob"));
    assert!(matches!(out[..], [(BOB, Datagram::Registered { stored: 2, .. })]), "no table before the fetch: {out:?}");
    let mut texts = Vec::new();
    for index in [1, 0] {
        let id = f.id();
        let out = f.recv(BOB, Datagram::Fetch { id, index });
        let [(BOB, Datagram::Stored { index: got, ref message, .. })] = out[..] else { panic!("{out:?}") };
        texts.push((got, message.from.to_string(), read("bob", message)));
    }
    texts.sort();
    assert_eq!(texts, [(0, "alice".into(), "one".into()), (1, "carol".into(), "two".into())]);
    // A fetch_done that names another last message (a late one, after a restart) deletes nothing,
    // but the fetch is over: bob is shown online.
    let out = f.recv(BOB, Datagram::FetchDone { id: MsgId(4242), count: 2, last: MsgId(0) });
    assert!(out.iter().any(|(p, d)| *p == ALICE && online_in(d, "bob") == Some(true)), "{out:?}");
    f.ack_tables(&out);
    assert_eq!(f.stored("bob").len(), 2, "nothing deleted: message 1 is not the one named");
    let id = f.id();
    let Some(last) = f.server.store_mut().messages(&name("bob")).get(1).map(|m| m.id) else { panic!() };
    let out = f.recv(BOB, Datagram::FetchDone { id, count: 2, last });
    assert_eq!(out.last(), Some(&(BOB, Datagram::Ack { id })));
    assert!(f.stored("bob").is_empty());
}

#[test]
fn saves_and_channel_sends_need_the_senders_secret_too() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    let stolen = f.secret_of("bob"); // known, but not alice's
    let id = f.id();
    let save = Datagram::Save {
        id,
        msg: id,
        from: name("alice"),
        secret: stolen.clone(),
        to: name("bob"),
        sealed: sealed("alice", "bob", id, "forged"),
        force: true,
    };
    assert_eq!(f.recv(ALICE, save), vec![(ALICE, Datagram::Refused { id, reason: Refusal::NotOwner })]);
    let id = f.id();
    let send_all =
        Datagram::ChannelSend { id, from: name("alice"), secret: stolen, text: Text::new("forged").expect("t") };
    assert_eq!(f.recv(ALICE, send_all), vec![(ALICE, Datagram::Refused { id, reason: Refusal::NotOwner })]);
    assert!(f.stored("bob").is_empty(), "nothing stored for bob");
}

#[test]
fn saves_need_a_registered_sender_and_a_known_recipient() {
    let mut f = Fixture::new();
    f.register("alice", ALICE);
    let (id, out) = f.save(("alice", BOB), "alice", "spoof");
    assert_eq!(out, vec![(BOB, Datagram::Refused { id, reason: Refusal::NotRegistered })]);
    let (id, out) = f.save(("alice", ALICE), "nobody", "x");
    assert_eq!(out, vec![(ALICE, Datagram::Refused { id, reason: Refusal::UnknownRecipient })]);
}

#[test]
fn a_full_mailbox_refuses_and_stores_nothing() {
    let mut f = Fixture::with_limits(Limits { max_messages: 1, max_bytes: 1 << 20 });
    f.register("alice", ALICE);
    f.register("bob", BOB);
    f.dereg("bob", BOB);
    f.save(("alice", ALICE), "bob", "fits");
    let (id, out) = f.save(("alice", ALICE), "bob", "too many");
    assert_eq!(out, vec![(ALICE, Datagram::Refused { id, reason: Refusal::MailboxFull })]);
    assert_eq!(f.stored("bob").len(), 1);
}

#[test]
fn a_restored_table_keeps_senders_and_offline_recipients_known() {
    let mut before = Fixture::new();
    before.register("alice", ALICE);
    before.register("bob", BOB);
    before.dereg("bob", BOB);
    let saved = before.server.table();

    let mut after = Fixture::new();
    after.server.restore_table(before.server.saved_table());
    after.secrets = before.secrets.clone();
    assert_eq!(after.server.table().clients, saved.clients);
    assert!(after.server.table_version() >= saved.version);
    let (id, out) = after.save(("alice", ALICE), "bob", "after the restart");
    assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    let out = after.recv(BOB, after.reg(MsgId(500), "bob"));
    assert!(out.iter().any(|d| matches!(d, (BOB, Datagram::Registered { stored: 1, .. }))), "{out:?}");
    assert!(
        out.iter().all(|(_, d)| !matches!(d, Datagram::Table(t) if t.version <= saved.version)),
        "versions go on growing"
    );
}

#[test]
fn an_answer_is_kept_only_while_a_retransmission_can_come() {
    let mut f = Fixture::new();
    let dereg = Datagram::Dereg { id: MsgId(1), name: name("bob"), secret: f.secret_of("bob") };
    let refused = vec![(BOB, Datagram::Refused { id: MsgId(1), reason: Refusal::NotRegistered })];
    assert_eq!(f.recv(BOB, dereg.clone()), refused);
    // The client retries 5 times, 500 ms apart: its last copy comes by 2.5 s.
    assert_eq!(f.server.poll_timeout(), Some(f.t0 + Duration::from_millis(3500)), "forgotten after 3.5 s");
    f.at(3000);
    assert_eq!(f.recv(BOB, dereg), refused, "replayed");
    assert!(f.at(3500).is_empty());
    assert_eq!(f.server.poll_timeout(), None, "nothing left to remember, no timer");
}

#[test]
fn a_server_with_short_timings_keeps_answers_as_long_as_a_default_client_retransmits() {
    let cfg = Config { ack_timeout: Duration::from_millis(100), retries: 1, ..Config::default() };
    let mut f = Fixture::with(cfg, Limits::default());
    let dereg = Datagram::Dereg { id: MsgId(1), name: name("bob"), secret: f.secret_of("bob") };
    let refused = vec![(BOB, Datagram::Refused { id: MsgId(1), reason: Refusal::NotRegistered })];
    assert_eq!(f.recv(BOB, dereg.clone()), refused);
    // Its own timings would forget the answer after 300 ms; a client with the default ones
    // sends its last copy at 2.5 s.
    assert_eq!(f.server.poll_timeout(), Some(f.t0 + Duration::from_millis(3500)), "kept 3.5 s");
    f.at(3000);
    assert_eq!(f.recv(BOB, dereg), refused);
    // Replayed from what was kept: handled anew, it would be kept until 3.3 s.
    assert_eq!(f.server.poll_timeout(), Some(f.t0 + Duration::from_millis(3500)));
}

#[test]
fn a_fetch_after_a_forced_save_marked_the_client_gone_is_refused_so_it_registers_again() {
    let mut f = Fixture::new();
    f.register("alice", ALICE);
    f.register("bob", BOB);
    let out = f.dereg("bob", BOB);
    f.ack_tables(&out);
    f.save(("alice", ALICE), "bob", "one");
    let id = f.id();
    let out = f.recv(BOB, f.reg(id, "bob"));
    let [(BOB, Datagram::Registered { stored: 1, cookie, .. })] = out[..] else { panic!("{out:?}") };
    let id = f.id();
    assert_eq!(f.recv(BOB, Datagram::Confirm { id, cookie }), vec![(BOB, Datagram::Ack { id })]);
    // Alice's direct tries failed although bob answers probes: her forced save marks him gone.
    let id = f.id();
    let mut save = f.save_request(id, "alice", "bob", "two");
    if let Datagram::Save { force, .. } = &mut save {
        *force = true;
    }
    f.recv(ALICE, save);
    f.commit();
    // Bob's fetch, on its way meanwhile, is refused rather than left unanswered: without an
    // answer he would give up on the server.
    let id = f.id();
    let out = f.recv(BOB, Datagram::Fetch { id, index: 0 });
    assert!(out.contains(&(BOB, Datagram::Refused { id, reason: Refusal::NotRegistered })), "{out:?}");
}
