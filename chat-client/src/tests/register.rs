//! Registration, the address confirm, the welcome, dereg, quit, the end of input and the order of answers.

use super::*;

#[test]
fn registration_retries_five_times_500ms_apart_then_exits_1() {
    let mut f = Fixture::new();
    assert_eq!(f.sent().len(), 1);
    let mut times = Vec::new();
    for ms in (0..=3000).step_by(50) {
        f.at(ms);
        if !f.sent().is_empty() {
            times.push(ms);
        }
    }
    assert_eq!(times, [500, 1000, 1500, 2000, 2500]);
    assert_eq!(f.events(), [">>> [Server not responding]\n>>> [Exiting]"]);
    assert_eq!(f.client.poll_exit(), Some(1));
}

#[test]
fn a_name_in_use_exits_1() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Refused { id, reason: chat_proto::Refusal::NameTaken });
    assert_eq!(f.events(), [">>> [Name alice is in use by another client.]\n>>> [Exiting]"]);
    assert_eq!(f.client.poll_exit(), Some(1));
}

#[test]
fn commands_wait_for_the_registration_and_the_first_table() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.cmd("send bob hi");
    f.registered(id, 10, 0);
    assert!(f.sent().is_empty(), "no table yet: the send waits");
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    let sent = f.sent();
    assert!(sent.iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::Chat { .. })), "{sent:?}");
    assert!(sent.contains(&(SERVER, Datagram::TableAck { version: 10 })));
}

#[test]
fn a_dereg_refused_for_the_secret_leaves_the_client_online() {
    let mut f = Fixture::online(true);
    f.cmd("dereg alice");
    let [(SERVER, Datagram::Dereg { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Refused { id, reason: chat_proto::Refusal::NotOwner });
    assert_eq!(f.events(), [">>> [Not deregistered: the name belongs to another client.]"]);
    f.cmd("send_all still here");
    assert!(matches!(f.sent()[..], [(SERVER, Datagram::ChannelSend { .. })]), "still online");
}

#[test]
fn dereg_with_no_server_exits_1() {
    let mut f = Fixture::online(true);
    f.cmd("dereg alice");
    f.until(3000);
    assert_eq!(f.events(), [">>> [Server not responding]\n>>> [Exiting]"]);
    assert_eq!(f.client.poll_exit(), Some(1));
}

#[test]
fn end_of_input_waits_for_the_outcome_then_exits_0() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hi");
    let [(BOB, Datagram::Chat { id, .. })] = f.sent()[..] else { panic!() };
    f.client.handle_end_of_input(f.now);
    assert_eq!(f.client.poll_exit(), None, "a send is in flight");
    f.recv(BOB, ack(id, "bob"));
    assert_eq!(f.events(), [">>> [Message received by bob.]"]);
    assert_eq!(f.client.poll_exit(), Some(0));
}

#[test]
fn quit_deregisters_then_exits_0() {
    let mut f = Fixture::online(true);
    f.client.handle_command(f.now, Command::Quit);
    let [(SERVER, Datagram::Dereg { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [You are Offline. Bye.]"]);
    assert_eq!(f.client.poll_exit(), Some(0));
}

#[test]
fn registration_is_padded_keeps_the_secret_and_shows_it_next_time() {
    let mut f = Fixture::new();
    let (SERVER, bytes) = f.client.poll_transmit().map(|t| (t.to.port(), t.bytes)).expect("register") else { panic!() };
    assert!(bytes.len() >= REGISTER_PAD_TO, "padded to {REGISTER_PAD_TO}: {}", bytes.len());
    let Ok(Datagram::Register { id, secret: None, .. }) = decode(&bytes) else { panic!("no secret the first time") };
    f.registered(id, 10, 0);
    assert_eq!(f.client.poll_secret(), Some(secret()), "the driver is asked to keep it");
    assert_eq!(f.client.poll_secret(), None, "once");

    let mut g = Client::new(
        Config::default(),
        name("alice"),
        addr(SERVER),
        identity(Some(secret())),
        Entropy::from_seed([7; 32]),
    );
    g.start(f.now);
    let bytes = g.poll_transmit().expect("register").bytes;
    assert!(matches!(decode(&bytes), Ok(Datagram::Register { secret: Some(s), .. }) if s == secret()));
}

#[test]
fn commands_wait_until_the_address_is_confirmed() {
    let mut f = Fixture::registering();
    f.cmd("send_all hi");
    let sent = f.sent();
    assert!(matches!(sent[..], [(SERVER, Datagram::Confirm { cookie: 5, .. })]), "{sent:?}");
    f.until(3000);
    assert_eq!(
        f.events(),
        [">>> [Server not responding]\n>>> [Exiting]"],
        "no welcome: the registration never finished"
    );
    assert_eq!(f.client.poll_exit(), Some(1));
}

#[test]
fn the_welcome_comes_once_the_address_is_confirmed_and_what_came_meanwhile_after_it() {
    let mut f = Fixture::registering();
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    f.chat_from_bob(7, "early");
    let sent = f.sent();
    let acked = |sent: &[(u16, Datagram)]| {
        sent.iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::ChatAck { id: MsgId(7), .. }))
    };
    assert!(!acked(&sent), "ACKed once shown (issue 17): {sent:?}");
    assert_eq!(f.events(), Vec::<String>::new(), "nothing before the welcome");
    let Some(&(SERVER, Datagram::Confirm { id, .. })) =
        sent.iter().find(|(_, d)| matches!(d, Datagram::Confirm { .. }))
    else {
        panic!("confirm: {sent:?}")
    };
    f.recv(SERVER, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [Welcome, You are registered.]", ">>> [Client table updated.]", ">>> bob: early"]);
    let sent = f.sent();
    assert!(acked(&sent), "{sent:?}");
}

#[test]
fn a_refused_confirm_keeps_what_came_until_the_welcome_of_the_registration_done_again() {
    let mut f = Fixture::registering();
    let Some((SERVER, Datagram::Confirm { id, .. })) = f.sent().pop() else { panic!("confirm") };
    f.recv(SERVER, Datagram::Table(table(10, true, true))); // bob's key
    f.chat_from_bob(7, "first");
    f.recv(SERVER, Datagram::Refused { id, reason: chat_proto::Refusal::NotRegistered });
    let Some((SERVER, Datagram::Register { id, .. })) =
        f.sent().into_iter().find(|(_, d)| matches!(d, Datagram::Register { .. }))
    else {
        panic!("registers again")
    };
    f.chat_from_bob(8, "second");
    assert_eq!(f.events(), Vec::<String>::new(), "nothing before the welcome");
    f.registered(id, 11, 0);
    assert_eq!(
        f.events(),
        [">>> [Welcome, You are registered.]", ">>> [Client table updated.]", ">>> bob: first", ">>> bob: second"]
    );
}

#[test]
fn an_interrupt_shows_what_was_held_then_exits_0() {
    let mut f = Fixture::registering();
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    f.chat_from_bob(7, "acked");
    f.client.handle_interrupt();
    assert_eq!(f.events(), [">>> [Client table updated.]", ">>> bob: acked"]);
    assert_eq!(f.client.poll_exit(), Some(0));
}

#[test]
fn a_message_acked_before_the_server_vanished_is_still_shown() {
    let mut f = Fixture::registering();
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    f.chat_from_bob(7, "early");
    f.until(3000);
    assert_eq!(
        f.events(),
        [">>> [Client table updated.]", ">>> bob: early", ">>> [Server not responding]\n>>> [Exiting]"]
    );
}

#[test]
fn a_chat_no_table_vouches_for_is_neither_shown_nor_acked() {
    // Before any table the client cannot know bob's key: his chat waits, unanswered (so bob's
    // client keeps it and falls back to the server), and with no table ever it is not shown.
    let mut f = Fixture::registering();
    f.chat_from_bob(7, "unverified");
    let sent = f.sent();
    assert!(!sent.iter().any(|(_, d)| matches!(d, Datagram::ChatAck { .. })), "{sent:?}");
    f.until(3000);
    assert_eq!(f.events(), [">>> [Server not responding]\n>>> [Exiting]"]);
}

#[test]
fn a_name_owned_by_another_client_exits_1() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Refused { id, reason: chat_proto::Refusal::NotOwner });
    assert!(f.events()[0].contains("belongs to another client"));
    assert_eq!(f.client.poll_exit(), Some(1));
}

#[test]
fn quit_and_dereg_wait_for_the_sends_in_flight() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hi");
    f.client.handle_command(f.now, Command::Quit);
    let sent = f.sent();
    assert!(sent.iter().all(|(_, d)| !matches!(d, Datagram::Dereg { .. })), "not yet: {sent:?}");
    f.until(3000);
    assert_eq!(f.events(), [">>> [No ACK from bob, message sent to server.]"]);
    let Some((SERVER, Datagram::Save { id, .. })) =
        f.sent().into_iter().find(|(_, d)| matches!(d, Datagram::Save { .. }))
    else {
        panic!("the fallback save")
    };
    f.recv(SERVER, Datagram::Ack { id });
    let [(SERVER, Datagram::Dereg { id, .. })] = f.sent()[..] else { panic!("now the dereg") };
    f.recv(SERVER, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [Messages received by the server and saved]", ">>> [You are Offline. Bye.]"]);
    assert_eq!(f.client.poll_exit(), Some(0));
}

#[test]
fn a_refused_confirm_registers_again() {
    let mut f = Fixture::registering();
    let [(SERVER, Datagram::Confirm { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Refused { id, reason: chat_proto::Refusal::NotRegistered });
    assert!(matches!(f.sent()[..], [(SERVER, Datagram::Register { .. })]));
}

#[test]
fn lines_typed_while_registering_are_answered_in_their_order_after_the_welcome() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    for line in ["list", "bogus", "", "help"] {
        f.client.handle_line(f.now, line);
    }
    f.client.handle_unreadable_line(f.now);
    assert!(f.events().is_empty(), "nothing before the welcome");
    f.registered(id, 10, 0);
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    let shown = f.events();
    let firsts: Vec<&str> = shown.iter().map(|e| e.lines().next().unwrap_or_default()).collect();
    assert_eq!(
        firsts,
        [
            ">>> [Welcome, You are registered.]",
            ">>> [Client table updated.]",
            ">>> alice  127.0.0.1         5001  online",
            ">>> [Unknown command 'bogus'. Type help for the commands.]",
            ">>> send <name> <message>   direct message to a client",
            ">>> [That line is not UTF-8 text.]",
        ],
        "{shown:?}"
    );
}

#[test]
fn a_table_listing_this_client_offline_before_its_confirm_is_answered_is_no_lost_registration() {
    let mut f = Fixture::registering();
    f.sent();
    f.recv(SERVER, Datagram::Table(table(11, false, true)));
    let sent = f.sent();
    assert!(!sent.iter().any(|(_, d)| matches!(d, Datagram::Register { .. })), "{sent:?}");
}

#[test]
fn a_registration_done_again_on_its_own_shows_no_second_welcome() {
    let mut f = Fixture::online(true);
    f.recv(SERVER, Datagram::Table(table(11, false, true)));
    let Some((SERVER, Datagram::Register { id, .. })) =
        f.sent().into_iter().find(|(_, d)| matches!(d, Datagram::Register { .. }))
    else {
        panic!("registers again")
    };
    f.registered(id, 12, 0);
    assert_eq!(f.events(), [">>> [Client table updated.]"], "no second welcome");
}

#[test]
fn ids_come_from_the_entropy_handed_in() {
    let first_id = |seed| {
        let mut c =
            Client::new(Config::default(), name("alice"), addr(SERVER), identity(None), Entropy::from_seed(seed));
        c.start(Instant::now());
        let bytes = c.poll_transmit().expect("register").bytes;
        let Ok(Datagram::Register { id, .. }) = decode(&bytes) else { panic!("register") };
        id
    };
    assert_eq!(first_id([1; 32]), first_id([1; 32]), "pinned by the seed");
    assert_ne!(first_id([1; 32]), first_id([2; 32]));
}

#[test]
fn a_chat_that_comes_before_the_registration_is_answered_is_shown_after_the_welcome() {
    // A restarted client at the same address: bob's table still lists it, so bob's chat can
    // arrive before the server's `registered`.
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("register first") };
    f.chat_from_bob(7, "early");
    f.registered(id, 10, 0);
    // Bob's key comes with the table: then his chat opens, and is ACKed.
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    assert!(f.sent().iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::ChatAck { id: MsgId(7), .. })));
    let events = f.events();
    assert_eq!(events.first().map(String::as_str), Some(">>> [Welcome, You are registered.]"), "{events:?}");
    assert!(events.iter().any(|e| e.contains("early")), "{events:?}");
}

#[test]
fn a_chat_during_a_registration_again_is_shown_after_the_stored_messages() {
    let mut f = Fixture::online(true);
    // A table newer than the registration lists this client offline: it registers again.
    f.recv(SERVER, Datagram::Table(table(11, false, true)));
    let sent = f.sent();
    let Some(&(SERVER, Datagram::Register { id, .. })) =
        sent.iter().find(|(_, d)| matches!(d, Datagram::Register { .. }))
    else {
        panic!("{sent:?}")
    };
    f.events();
    f.chat_from_bob(7, "live, sent after the stored one");
    f.registered(id, 12, 1);
    let fetch = f
        .sent()
        .into_iter()
        .find_map(|(_, d)| if let Datagram::Fetch { id, index } = d { Some((id, index)) } else { None });
    let Some((fid, 0)) = fetch else { panic!("fetch") };
    f.recv(SERVER, Datagram::Stored { id: fid, index: 0, message: stored_text("stored earlier") });
    let done =
        f.sent().into_iter().find_map(|(_, d)| if let Datagram::FetchDone { id, .. } = d { Some(id) } else { None });
    let Some(done) = done else { panic!("fetch_done") };
    f.recv(SERVER, Datagram::Ack { id: done });
    let events = f.events();
    let live = events.iter().position(|e| e.contains("live, sent after"));
    let stored = events.iter().position(|e| e.contains("stored earlier"));
    let (Some(live), Some(stored)) = (live, stored) else { panic!("both shown: {events:?}") };
    assert!(stored < live, "stored messages come before live ones: {events:?}");
}

#[test]
fn an_online_client_keeps_alive_every_interval_the_server_gave_and_stops_after_dereg() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("register first") };
    f.recv(
        SERVER,
        Datagram::Registered {
            id,
            version: 10,
            stored: 0,
            secret: secret(),
            cookie: 42,
            keepalive_ms: 1_000,
            nodes: vec![],
        },
    );
    f.at(5_000);
    let sent = f.sent();
    assert!(sent.iter().all(|(_, d)| !matches!(d, Datagram::Keepalive)), "not before the welcome: {sent:?}");
    let Some(&(SERVER, Datagram::Confirm { id, .. })) =
        sent.iter().rev().find(|(_, d)| matches!(d, Datagram::Confirm { .. }))
    else {
        panic!("confirm: {sent:?}")
    };
    f.recv(SERVER, Datagram::Ack { id });
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    f.sent();
    let keepalives =
        |f: &mut Fixture| f.sent().iter().filter(|(p, d)| *p == SERVER && *d == Datagram::Keepalive).count();
    f.until(5_990);
    assert_eq!(keepalives(&mut f), 0, "one interval after the welcome, not before");
    f.until(9_000);
    assert_eq!(keepalives(&mut f), 4, "at 6, 7, 8 and 9 s");
    assert!(f.client.poll_timeout().is_some_and(|at| at <= f.t0 + Duration::from_millis(10_000)));
    f.cmd("dereg alice");
    let [(SERVER, Datagram::Dereg { id, .. })] = f.sent()[..] else { panic!("dereg") };
    f.recv(SERVER, Datagram::Ack { id });
    f.until(20_000);
    assert_eq!(keepalives(&mut f), 0, "offline: no keepalive");
}
