//! The fetch of stored messages: order, duplicates, indices, and give-ups.

use super::*;

#[test]
fn offline_after_dereg_then_reg_fetches_stored_messages_in_order() {
    let mut f = Fixture::online(true);
    f.cmd("dereg bob");
    assert!(f.events()[0].contains("only dereg yourself"));
    f.cmd("dereg alice");
    let [(SERVER, Datagram::Dereg { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [You are Offline. Bye.]"]);
    assert_eq!(f.client.poll_exit(), None, "still running");

    f.cmd("send bob hi");
    assert!(f.events()[0].contains("You are offline"));
    f.recv(BOB, chat(1, "bob", "alice", "x"));
    f.recv(SERVER, Datagram::Probe { id: MsgId(2) });
    assert!(f.sent().is_empty() && f.events().is_empty(), "offline: no answer to anything");

    f.cmd("reg alice");
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 20, 2);
    assert_eq!(f.events(), [">>> [Welcome, You are registered.]"]);
    let fetches: Vec<(MsgId, u32)> = f
        .sent()
        .into_iter()
        .filter_map(|(_, d)| if let Datagram::Fetch { id, index } = d { Some((id, index)) } else { None })
        .collect();
    assert_eq!(fetches.iter().map(|f| f.1).collect::<Vec<_>>(), [0, 1]);
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
    let msg = |from: &str, origin, t: &str| match origin {
        Origin::Direct => stored_direct(50 + t.len() as u64, from, t, at),
        Origin::Channel => {
            StoredMessage { id: MsgId(50 + t.len() as u64), from: name(from), origin, at, body: text(t).into() }
        }
    };
    let second = msg("carol", Origin::Direct, "Hello!!");
    f.recv(SERVER, Datagram::Stored { id: fetches[1].0, index: 1, message: second });
    assert!(f.events().is_empty(), "shown in order, so the second waits for the first");
    let first = msg("bob", Origin::Channel, "Welcome");
    f.recv(SERVER, Datagram::Stored { id: fetches[0].0, index: 0, message: first });
    let shown = f.events();
    assert_eq!(shown[0], ">>> [You have messages]");
    assert!(shown[1].starts_with(">>> Channel_Message bob: 2026-11-2") && shown[1].ends_with(" Welcome"), "{shown:?}");
    assert!(shown[2].starts_with(">>> carol: ") && shown[2].ends_with(" Hello!!"), "{shown:?}");
    let [(SERVER, Datagram::FetchDone { id, count: 2, last })] = f.sent()[..] else { panic!() };
    assert_eq!(last, MsgId(50 + "Hello!!".len() as u64), "names the last stored message");
    f.cmd("send bob later");
    f.recv(SERVER, Datagram::Ack { id });
    f.recv(SERVER, Datagram::Table(table(21, true, true)));
    assert!(f.sent().iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::Chat { .. })));
}

#[test]
fn a_stored_copy_of_a_message_already_shown_live_is_not_shown_again() {
    let mut f = Fixture::online(true);
    // bob's message arrives live, but the ACK is lost: bob's client saves it on the server.
    f.recv(BOB, chat(77, "bob", "alice", "once"));
    f.recv(SERVER, Datagram::Channel { id: MsgId(88), from: name("bob"), text: text("all") });
    f.events();
    f.cmd("dereg alice");
    let [.., (SERVER, Datagram::Dereg { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [You are Offline. Bye.]"]);
    f.cmd("reg alice");
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 30, 3);
    let fetches: Vec<MsgId> = f
        .sent()
        .into_iter()
        .filter_map(|(_, d)| if let Datagram::Fetch { id, .. } = d { Some(id) } else { None })
        .collect();
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
    let stored = [
        stored_direct(77, "bob", "once", at),
        StoredMessage { id: MsgId(88), from: name("bob"), origin: Origin::Channel, at, body: text("all").into() },
        stored_direct(99, "bob", "new", at),
    ];
    for (index, (id, message)) in fetches.into_iter().zip(stored).enumerate() {
        f.recv(SERVER, Datagram::Stored { id, index: index as u32, message });
    }
    let shown = f.events();
    assert_eq!(shown.len(), 3, "welcome, the announcement and only the new message: {shown:?}");
    assert_eq!(shown[1], ">>> [You have messages]");
    assert!(shown[2].ends_with(" new"));
    assert!(f.sent().iter().any(|(_, d)| matches!(d, Datagram::FetchDone { count: 3, .. })), "all three are confirmed");
}

#[test]
fn live_messages_during_a_fetch_come_after_the_stored_ones() {
    let mut f = Fixture::online(true);
    let id = f.dereg_and_reg();
    f.registered(id, 40, 1);
    f.events();
    let [(SERVER, Datagram::Fetch { id: fetch, .. })] = f.sent()[..] else { panic!() };
    f.recv(BOB, chat(5, "bob", "alice", "live"));
    assert!(f.events().is_empty(), "held back");
    // Its ACK waits with it (issue 17): a client killed before it shows the message loses
    // nothing, its sender still has it. A retransmission meanwhile is not answered either.
    assert!(f.sent().is_empty(), "not ACKed before it is shown");
    f.recv(BOB, chat(5, "bob", "alice", "live"));
    assert!(f.events().is_empty() && f.sent().is_empty(), "a copy of a held message: nothing");
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
    let message = stored_direct(6, "bob", "stored", at);
    f.recv(SERVER, Datagram::Stored { id: fetch, index: 0, message });
    let [(SERVER, Datagram::FetchDone { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Ack { id });
    let shown = f.events();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[1].ends_with(" stored") && shown[2] == ">>> bob: live", "{shown:?}");
    let sent = f.sent();
    assert!(matches!(sent[..], [(BOB, Datagram::ChatAck { id: MsgId(5), .. })]), "ACKed once shown, once: {sent:?}");
    f.recv(BOB, chat(5, "bob", "alice", "live"));
    assert!(f.events().is_empty(), "shown once");
    assert!(matches!(f.sent()[..], [(BOB, Datagram::ChatAck { id: MsgId(5), .. })]), "a copy now: ACKed again");
}

/// Live messages that come during a fetch wait unanswered, 1,024 at most: past that one is
/// dropped without an ACK (its sender retransmits or leaves it with the server), so peers
/// cannot grow a fetching client's memory without end.
#[test]
fn at_most_1024_live_messages_wait_during_a_fetch_and_the_others_go_unanswered() {
    let mut f = Fixture::online(true);
    let id = f.dereg_and_reg();
    f.registered(id, 40, 1);
    f.events();
    let [(SERVER, Datagram::Fetch { id: fetch, .. })] = f.sent()[..] else { panic!() };
    for i in 0..1_034u64 {
        f.recv(BOB, chat(100 + i, "bob", "alice", &format!("live {i}")));
    }
    assert!(f.events().is_empty() && f.sent().is_empty(), "held, unanswered");
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
    f.recv(SERVER, Datagram::Stored { id: fetch, index: 0, message: stored_direct(6, "bob", "stored", at) });
    let [(SERVER, Datagram::FetchDone { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Ack { id });
    let live = f.events().into_iter().filter(|l| l.starts_with(">>> bob: live ")).count();
    assert_eq!(live, 1_024, "the first 1,024 shown");
    let acks = f.sent().iter().filter(|(_, d)| matches!(d, Datagram::ChatAck { .. })).count();
    assert_eq!(acks, 1_024, "and only those ACKed");
    // The ten dropped come again (the sender's retransmission): shown and ACKed now.
    f.recv(BOB, chat(100 + 1_030, "bob", "alice", "live 1030"));
    assert_eq!(f.events(), [">>> bob: live 1030"]);
}

#[test]
fn a_stored_message_with_the_largest_index_is_dropped_without_overflow() {
    let (mut f, fetches) = fetching(1);
    let [(id, 0)] = fetches[..] else { panic!("{fetches:?}") };
    f.recv(SERVER, Datagram::Stored { id, index: u32::MAX, message: stored_text("x") });
    assert!(f.events().is_empty() && f.sent().is_empty(), "not the index asked for: dropped");
    f.at(500);
    assert_eq!(f.sent(), [(SERVER, Datagram::Fetch { id, index: 0 })], "the fetch is still in flight");
    f.recv(SERVER, Datagram::Stored { id, index: 0, message: stored_text("right") });
    let shown = f.events();
    assert!(shown.len() == 2 && shown[1].ends_with(" right"), "{shown:?}");
}

#[test]
fn a_stored_message_answering_with_another_index_is_dropped() {
    let (mut f, fetches) = fetching(2);
    let [(first, 0), (second, 1)] = fetches[..] else { panic!("{fetches:?}") };
    f.recv(SERVER, Datagram::Stored { id: first, index: 1, message: stored_text("B") });
    f.recv(SERVER, Datagram::Stored { id: second, index: 0, message: stored_text("A") });
    assert!(f.events().is_empty(), "both answer the wrong index");
    assert!(f.sent().is_empty(), "no fetch_done");
    f.at(500);
    assert_eq!(f.sent().len(), 2, "both fetches are retransmitted");
    f.recv(SERVER, Datagram::Stored { id: second, index: 1, message: stored_text("B") });
    f.recv(SERVER, Datagram::Stored { id: first, index: 0, message: stored_text("A") });
    let shown = f.events();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[0] == ">>> [You have messages]" && shown[1].ends_with(" A") && shown[2].ends_with(" B"), "{shown:?}");
    assert!(matches!(f.sent()[..], [(SERVER, Datagram::FetchDone { count: 2, .. })]));
}

#[test]
fn several_requests_giving_up_at_once_show_one_give_up_and_nothing_after() {
    let (mut f, fetches) = fetching(3);
    assert_eq!(fetches.len(), 3);
    f.until(3000);
    assert_eq!(f.events(), [">>> [Server not responding]\n>>> [Exiting]"]);
    assert_eq!(f.client.poll_exit(), Some(1));
    f.until(10_000);
    assert!(f.events().is_empty());
}

#[test]
fn a_stored_message_another_node_delivered_is_skipped_and_counted() {
    let (mut f, fetches) = fetching(3);
    let [(first, 0), (second, 1), (third, 2)] = fetches[..] else { panic!("{fetches:?}") };
    f.recv(SERVER, Datagram::Stored { id: first, index: 0, message: stored_text("A") });
    f.recv(SERVER, Datagram::Gone { id: second, index: 1, msg: MsgId(41) });
    f.recv(SERVER, Datagram::Gone { id: third, index: 2, msg: MsgId(42) });
    let shown = f.events();
    assert!(shown.len() == 2 && shown[1].ends_with(" A"), "only the message still stored: {shown:?}");
    let [(SERVER, Datagram::FetchDone { count: 3, last: MsgId(42), .. })] = f.sent()[..] else {
        panic!("the fetch is done, with the gone ones counted: {:?}", f.sent())
    };
}

#[test]
fn a_gone_answer_for_another_index_is_dropped() {
    let (mut f, fetches) = fetching(1);
    let [(id, 0)] = fetches[..] else { panic!("{fetches:?}") };
    f.recv(SERVER, Datagram::Gone { id, index: 1, msg: MsgId(41) });
    assert!(f.sent().is_empty(), "not the index asked for: no fetch_done");
    f.at(500);
    assert_eq!(f.sent(), [(SERVER, Datagram::Fetch { id, index: 0 })], "the fetch is still in flight");
}
