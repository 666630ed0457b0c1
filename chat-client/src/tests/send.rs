//! Direct messages, saves, the channel, duplicates, and what comes from the wrong address.

use super::*;

#[test]
fn a_direct_message_acked_is_delivered_once() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hello there");
    let [(BOB, ref d @ Datagram::Chat { id, ref from, ref to, .. })] = f.sent()[..] else { panic!() };
    assert_eq!(to.as_str(), "bob");
    assert_eq!((from.as_str(), text_of(d).as_str()), ("alice", "hello there"));
    f.recv(BOB, ack(id, "bob"));
    f.recv(BOB, ack(id, "bob"));
    assert_eq!(f.events(), [">>> [Message received by bob.]"]);
    f.at(10_000);
    assert!(f.sent().is_empty() && f.events().is_empty());
}

#[test]
fn no_ack_retransmits_the_same_message_then_saves_it() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hi");
    let first = f.sent();
    let mut retransmits = Vec::new();
    let (mut punch_requests, mut relayed) = (Vec::new(), Vec::new());
    for ms in (0..3000).step_by(50) {
        f.at(ms);
        let (to_server, to_bob): (Vec<_>, Vec<_>) = f.sent().into_iter().partition(|(p, _)| *p == SERVER);
        if !to_bob.is_empty() {
            assert_eq!(to_bob, first, "a retransmission is the same datagram");
            retransmits.push(ms);
        }
        for (_, d) in to_server {
            match d {
                Datagram::PunchRequest { to } if to.as_str() == "bob" => punch_requests.push(ms),
                Datagram::RelayChat { .. } => relayed.push(ms),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(retransmits, [500, 1000, 1500, 2000, 2500], "five retransmissions, 500 ms apart");
    assert_eq!(punch_requests, [500], "no ACK at once: the server is asked, once, to have bob punch");
    assert_eq!(relayed, [1000, 1500, 2000, 2500], "then each retransmission goes through the server too");
    assert!(f.events().is_empty());
    f.at(3000);
    assert_eq!(f.events(), [">>> [No ACK from bob, message sent to server.]"]);
    let [(SERVER, ref save @ Datagram::Save { id, ref to, force: false, .. })] = f.sent()[..] else { panic!() };
    assert_eq!((to.as_str(), text_of(save).as_str()), ("bob", "hi"));
    f.recv(SERVER, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [Messages received by the server and saved]"]);
}

#[test]
fn a_recipient_offline_in_the_table_goes_straight_to_the_server() {
    let mut f = Fixture::online(false);
    f.cmd("send bob hi");
    assert!(matches!(f.sent()[..], [(SERVER, Datagram::Save { .. })]));
}

#[test]
fn exists_shows_the_line_takes_the_table_and_retries_with_the_same_id() {
    let mut f = Fixture::online(false);
    f.cmd("send bob hi");
    let [(SERVER, Datagram::Save { id: save, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Exists { id: save, row: table(10, true, true).clients[1].clone() });
    assert_eq!(f.events(), [">>> [Client bob exists!!]", ">>> [Client table updated.]"]);
    let [(BOB, Datagram::Chat { id: chat, .. })] = f.sent()[..] else { panic!() };
    f.until(2999);
    f.sent();
    f.until(3000);
    assert_eq!(f.events(), [">>> [No ACK from bob, message sent to server.]"]);
    let sent = f.sent();
    assert!(matches!(sent[..], [(SERVER, Datagram::Save { force: true, .. })]), "second save must store: {sent:?}");
    assert_ne!(chat, save);
}

#[test]
fn the_retry_after_exists_reuses_the_chat_id_so_the_peer_shows_it_once() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hi");
    let [(BOB, Datagram::Chat { id: first, .. })] = f.sent()[..] else { panic!() };
    f.until(2999);
    f.sent();
    f.until(3000);
    let [(SERVER, Datagram::Save { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Exists { id, row: table(11, true, true).clients[1].clone() });
    let [(BOB, Datagram::Chat { id: again, .. })] = f.sent()[..] else { panic!() };
    assert_eq!(again, first);
}

#[test]
fn a_duplicated_message_is_shown_once_and_acked_each_time() {
    let mut f = Fixture::online(true);
    let d = chat(7, "bob", "alice", "hey");
    f.recv(BOB, d.clone());
    f.recv(BOB, d);
    assert_eq!(f.events(), [">>> bob: hey"]);
    let acks = f.sent();
    assert!(
        matches!(
            acks[..],
            [(BOB, Datagram::ChatAck { id: MsgId(7), .. }), (BOB, Datagram::ChatAck { id: MsgId(7), .. })]
        ),
        "{acks:?}"
    );
    let c = Datagram::Channel { id: MsgId(9), from: name("bob"), text: text("all") };
    f.recv(SERVER, c.clone());
    f.recv(SERVER, c);
    assert_eq!(f.events(), [">>> [Channel_Message bob: all]"]);
    assert_eq!(f.sent().len(), 2);
}

#[test]
fn send_all_is_acked_or_fails_without_exiting() {
    let mut f = Fixture::online(true);
    f.cmd("send_all Welcome to Channel");
    let [(SERVER, Datagram::ChannelSend { id, ref text, .. })] = f.sent()[..] else { panic!() };
    assert_eq!(text.as_str(), "Welcome to Channel");
    f.recv(SERVER, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [Message received by Server.]"]);
    f.cmd("send_all again");
    f.until(3000);
    assert_eq!(f.events(), [">>> [Server not responding.]"]);
    assert_eq!(f.client.poll_exit(), None);
}

#[test]
fn requests_in_the_names_carry_its_secret() {
    let mut f = Fixture::online(false);
    f.cmd("send bob for later");
    f.cmd("send_all hi all");
    let sent = f.sent();
    let secrets: Vec<&Secret> = sent
        .iter()
        .filter_map(|(_, d)| match d {
            Datagram::Save { secret, .. } | Datagram::ChannelSend { secret, .. } => Some(secret),
            _ => None,
        })
        .collect();
    assert_eq!(secrets, [&secret(), &secret()], "{sent:?}");
    f.cmd("dereg alice");
    for (_, d) in sent {
        match d {
            Datagram::Save { id, .. } | Datagram::ChannelSend { id, .. } => f.recv(SERVER, Datagram::Ack { id }),
            _ => {}
        }
    }
    let dereg = f.sent();
    assert!(matches!(dereg[..], [(SERVER, Datagram::Dereg { secret: ref s, .. })] if *s == secret()), "{dereg:?}");
}

#[test]
fn sending_to_yourself_goes_through_your_own_address() {
    let mut f = Fixture::online(true);
    f.cmd("send alice note to self");
    let [(ME, ref d @ Datagram::Chat { .. })] = f.sent()[..] else { panic!() };
    f.recv(ME, d.clone());
    let [(ME, ref ack @ Datagram::ChatAck { .. })] = f.sent()[..] else { panic!() };
    f.recv(ME, ack.clone());
    assert_eq!(f.events(), [">>> alice: note to self", ">>> [Message received by alice.]"]);
}

#[test]
fn answers_from_the_wrong_address_are_ignored() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hi");
    let [(BOB, Datagram::Chat { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(6666, ack(id, "bob"));
    f.recv(6666, Datagram::Table(table(99, true, false)));
    assert!(f.events().is_empty());
    f.recv(SERVER, Datagram::Probe { id: MsgId(3) });
    assert_eq!(f.sent(), [(SERVER, Datagram::ProbeAck { id: MsgId(3), name: name("alice") })]);
}

#[test]
fn a_chat_for_someone_else_at_this_address_is_not_shown_or_acked() {
    let mut f = Fixture::online(true);
    f.recv(BOB, chat(9, "bob", "carol", "for carol"));
    assert!(f.events().is_empty() && f.sent().is_empty());
}

#[test]
fn a_save_refused_by_a_server_that_forgot_this_client_is_done_again_after_registering() {
    let mut f = Fixture::online(false);
    f.cmd("send bob hi");
    let [(SERVER, Datagram::Save { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Refused { id, reason: chat_proto::Refusal::NotRegistered });
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("registers again") };
    f.registered(id, 50, 0);
    let sent = f.sent();
    let Some((SERVER, ref save @ Datagram::Save { id, .. })) = sent.last().cloned() else { panic!("{sent:?}") };
    assert_eq!(text_of(save), "hi");
    f.recv(SERVER, Datagram::Ack { id });
    let shown = f.events();
    assert_eq!(shown.iter().filter(|l| l.contains("saved")).count(), 1, "{shown:?}");
    assert!(shown.iter().all(|l| !l.contains("not saved")), "{shown:?}");
}

#[test]
fn send_all_with_full_mailboxes_is_received_and_says_whose() {
    let mut f = Fixture::online(true);
    f.cmd("send_all hi");
    let [(SERVER, Datagram::ChannelSend { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::ChannelPartial { id, full: vec![name("bob")], unstored: vec![] });
    assert_eq!(f.events(), [">>> [Message received by Server.]", ">>> [Not kept for bob: mailbox full.]"]);
    f.recv(SERVER, Datagram::ChannelPartial { id, full: vec![name("bob")], unstored: vec![] });
    assert!(f.events().is_empty(), "a duplicate answer shows nothing");
}

#[test]
fn bytes_that_do_not_decode_are_counted_and_dropped() {
    let mut f = Fixture::online(true);
    f.client.handle_bytes(f.now, addr(SERVER), b"{not json");
    f.client.handle_bytes(f.now, addr(BOB), &[0xff; 3]);
    assert_eq!(f.client.dropped_datagrams(), 2);
    assert!(f.sent().is_empty() && f.events().is_empty());
    let ack = chat_proto::encode(&Datagram::Probe { id: MsgId(3) }).expect("encode");
    f.client.handle_bytes(f.now, addr(SERVER), &ack);
    assert_eq!(f.sent(), [(SERVER, Datagram::ProbeAck { id: MsgId(3), name: name("alice") })], "good bytes are taken");
    assert_eq!(f.client.dropped_datagrams(), 2);
}

#[test]
fn send_all_whose_copies_the_server_disk_could_not_take_says_whose_and_why() {
    let mut f = Fixture::online(true);
    f.cmd("send_all hi");
    let [(SERVER, Datagram::ChannelSend { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::ChannelPartial { id, full: vec![name("bob")], unstored: vec![name("carol")] });
    assert_eq!(
        f.events(),
        [
            ">>> [Message received by Server.]",
            ">>> [Not kept for bob: mailbox full.]",
            ">>> [Not kept for carol: the server cannot store messages now.]"
        ]
    );
}

#[test]
fn in_a_script_answers_come_in_the_order_of_the_commands() {
    let cfg = Config { answers_in_order: true, ..Config::default() };
    let mut f = Fixture::online_with(cfg, true);
    for line in ["send bob hi", "send_all hello", "list", "bogus"] {
        f.client.handle_line(f.now, line);
    }
    let sent = f.sent();
    let [(BOB, Datagram::Chat { id: chat, .. }), (SERVER, Datagram::ChannelSend { id: all, .. })] = sent[..] else {
        panic!("both go out at once: {sent:?}")
    };
    f.recv(SERVER, Datagram::Ack { id: all });
    assert!(f.events().is_empty(), "the send_all's answer waits for the send's");
    f.at(600); // bob's ACK comes after a retransmission
    f.recv(BOB, ack(chat, "bob"));
    let events = f.events();
    assert_eq!(events[..2], [">>> [Message received by bob.]", ">>> [Message received by Server.]"]);
    assert!(events[2].contains("bob") || events[2].contains("alice"), "then the list: {events:?}");
    assert_eq!(events.last().map(String::as_str), Some(">>> [Unknown command 'bogus'. Type help for the commands.]"));
}

#[test]
fn at_a_terminal_answers_show_as_they_come() {
    let mut f = Fixture::online(true);
    for line in ["send bob hi", "send_all hello"] {
        f.client.handle_line(f.now, line);
    }
    let sent = f.sent();
    let [(BOB, Datagram::Chat { .. }), (SERVER, Datagram::ChannelSend { id, .. })] = sent[..] else {
        panic!("{sent:?}")
    };
    f.recv(SERVER, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [Message received by Server.]"]);
}

#[test]
fn in_a_script_a_send_that_finds_no_server_ends_before_later_answers() {
    let cfg = Config { answers_in_order: true, ..Config::default() };
    let mut f = Fixture::online_with(cfg, true);
    for line in ["send bob hi", "bogus"] {
        f.client.handle_line(f.now, line);
    }
    f.until(7000); // bob never ACKs, and the server never answers the save
    assert_eq!(
        f.events(),
        [
            ">>> [No ACK from bob, message sent to server.]",
            ">>> [Server not responding]\n>>> [Exiting]",
            ">>> [Unknown command 'bogus'. Type help for the commands.]"
        ]
    );
    assert_eq!(f.client.poll_exit(), Some(1));
}

/// Issue 17, part 5: the save that gives up is not the oldest command still waiting. Each
/// command ends in its own line, in its own turn: the older send's save (still waiting for the
/// silent server) ends too, so the failing command's `[Server not responding]`, `[Exiting]`
/// and the later command's `[Messages received by the server and saved]` are where their
/// commands are.
#[test]
fn in_a_script_every_command_waiting_when_the_server_is_gone_ends_in_its_own_line() {
    let cfg = Config { answers_in_order: true, ..Config::default() };
    let mut f = Fixture::online_with(cfg, true);
    let mut t = table(11, true, true);
    t.clients.push(ClientRow {
        lan: None,
        name: name("carol"),
        addr: addr(7000),
        online: false,
        key: Some(key("carol")),
    });
    f.recv(SERVER, Datagram::Table(t));
    f.events();
    f.sent();
    f.client.handle_line(f.now, "send bob one");
    f.at(100);
    for line in ["send carol two", "send carol three", "list"] {
        f.client.handle_line(f.now, line);
    }
    let sent = f.sent();
    let [(BOB, Datagram::Chat { .. }), (SERVER, Datagram::Save { .. }), (SERVER, Datagram::Save { id: three, .. })] =
        sent[..]
    else {
        panic!("the chat, then both saves at once: {sent:?}")
    };
    f.recv(SERVER, Datagram::Ack { id: three });
    assert!(f.events().is_empty(), "held behind the send to bob");
    // bob never ACKs (his send goes to the server at 3 s); the server answers nothing more.
    f.until(3_200);
    let events = f.events();
    assert_eq!(
        events[..4],
        [
            ">>> [No ACK from bob, message sent to server.]",
            ">>> [Server not responding]",
            ">>> [Server not responding]\n>>> [Exiting]",
            ">>> [Messages received by the server and saved]",
        ],
        "send bob one, its save cut short; send carol two, which gave up; send carol three"
    );
    assert!(events[4].contains("carol") && events.len() == 5, "then the list: {events:?}");
    assert_eq!(f.client.poll_exit(), Some(1));
}

#[test]
fn at_a_terminal_a_send_waiting_when_the_server_is_gone_ends_in_its_own_line_too() {
    let mut f = Fixture::online(true);
    f.cmd("send bob one");
    f.at(100);
    f.cmd("send_all two");
    f.until(3_000);
    assert_eq!(f.events(), [">>> [No ACK from bob, message sent to server.]"]);
    f.cmd("send bob three");
    f.until(6_000);
    assert_eq!(
        f.events(),
        [
            ">>> [Server not responding.]",
            ">>> [No ACK from bob yet, message not sent to server: exiting.]",
            ">>> [Server not responding]\n>>> [Exiting]",
        ],
        "send_all two gave up at 3.1 s; at 6 s send bob one's save gives up while send bob three \
         waits for bob: it ends, then the client exits"
    );
}

#[test]
fn a_chat_not_made_with_its_senders_key_is_neither_shown_nor_acked() {
    let mut f = Fixture::online(true);
    // Mallory seals in bob's name with her own key; then replays a chat of bob's under
    // another id, and one bob wrote to carol.
    let forged = pair("mallory").pairwise(&key("alice")).seal_text(
        [1; NONCE_BYTES],
        &name("bob"),
        &name("alice"),
        MsgId(7),
        "I am bob",
    );
    f.recv(6666, Datagram::Chat { id: MsgId(7), from: name("bob"), to: name("alice"), sealed: forged });
    let Datagram::Chat { sealed, .. } = chat(8, "bob", "alice", "moved") else { panic!() };
    f.recv(6666, Datagram::Chat { id: MsgId(9), from: name("bob"), to: name("alice"), sealed });
    let Datagram::Chat { sealed, .. } = chat(10, "bob", "carol", "for carol") else { panic!() };
    f.recv(6666, Datagram::Chat { id: MsgId(10), from: name("bob"), to: name("alice"), sealed });
    assert!(f.events().is_empty() && f.sent().is_empty());
    // The real one still shows: nothing of the forgeries was remembered as seen.
    f.recv(BOB, chat(7, "bob", "alice", "hi"));
    assert_eq!(f.events(), [">>> bob: hi"]);
}

#[test]
fn an_ack_the_recipient_did_not_make_delivers_nothing() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hi");
    let [(BOB, Datagram::Chat { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(BOB, ack(id, "mallory"));
    f.recv(BOB, ack(MsgId(id.0 + 1), "bob"));
    assert!(f.events().is_empty(), "neither a forged proof nor bob's proof for another message");
    f.recv(BOB, ack(id, "bob"));
    assert_eq!(f.events(), [">>> [Message received by bob.]"]);
}

#[test]
fn a_stored_direct_message_the_server_could_have_written_is_not_shown() {
    let (mut f, fetches) = fetching(3);
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
    let in_clear =
        StoredMessage { id: MsgId(1), from: name("bob"), origin: Origin::Direct, at, body: text("forged").into() };
    let by_mallory = StoredMessage {
        body: Body::Sealed { sealed: sealed("mallory", "alice", MsgId(2), "forged too"), key: key("bob") },
        ..stored_direct(2, "bob", "x", at)
    };
    let real = stored_direct(3, "bob", "real", at);
    for ((id, index), message) in fetches.into_iter().zip([in_clear, by_mallory, real]) {
        f.recv(SERVER, Datagram::Stored { id, index, message });
    }
    let shown = f.events();
    assert!(shown.iter().any(|l| l.ends_with(" real")), "{shown:?}");
    assert!(!shown.iter().any(|l| l.contains("forged")), "{shown:?}");
    assert!(f.sent().iter().any(|(_, d)| matches!(d, Datagram::FetchDone { count: 3, .. })), "all three are fetched");
}

#[test]
fn a_punch_asked_by_the_server_opens_the_way_and_a_punch_received_resends_at_once_but_not_more() {
    let mut f = Fixture::online(true);
    // The server asks: alice punches towards the asker.
    let carol: SocketAddr = "198.51.100.7:6001".parse().expect("addr");
    f.recv(SERVER, Datagram::PunchAsk { from: name("carol"), addr: carol });
    assert_eq!(f.client.poll_transmit().map(|t| t.to), Some(carol));
    // A punch from a peer sends what waits for it again now, once an ACK timeout at most.
    f.cmd("send bob hi");
    let first = f.sent();
    f.at(100);
    f.recv(BOB, Datagram::Punch { from: name("bob") });
    assert_eq!(f.sent(), first, "sent again at once");
    for _ in 0..10 {
        f.recv(BOB, Datagram::Punch { from: name("bob") });
    }
    assert_eq!(f.sent(), vec![], "a flood of punches sends nothing more");
    f.recv(ME + 100, Datagram::Punch { from: name("bob") });
    assert_eq!(f.sent(), vec![], "nothing waits for that address");
    // A punch ask from anyone but the server is not followed.
    f.recv(BOB, Datagram::PunchAsk { from: name("carol"), addr: carol });
    assert_eq!(f.sent(), vec![]);
}

/// `by`'s ACK of alice's message `id`, as the server relays it.
fn relayed_ack(id: MsgId, by: &str) -> Datagram {
    let Datagram::ChatAck { id, proof } = ack(id, by) else { panic!("an ACK") };
    Datagram::RelayAck { id, from: name(by), to: name("alice"), proof }
}

#[test]
fn a_chat_still_unacked_goes_through_the_server_too_and_its_relayed_ack_delivers_it() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hi");
    let [(BOB, Datagram::Chat { id, ref sealed, .. })] = f.sent()[..] else { panic!("direct first") };
    let sealed = sealed.clone();
    let mut relayed = Vec::new();
    for ms in (50..=1500).step_by(50) {
        f.at(ms);
        for (port, d) in f.sent() {
            if port == SERVER && matches!(d, Datagram::RelayChat { .. }) {
                assert_eq!(d, Datagram::RelayChat { id, from: name("alice"), to: name("bob"), sealed: sealed.clone() });
                relayed.push(ms);
            }
        }
    }
    assert_eq!(relayed, [1000, 1500], "from the second retransmission on, a copy through the server");
    // A relayed ACK bob did not make delivers nothing; bob's does.
    let Datagram::ChatAck { proof, .. } = ack(id, "mallory") else { panic!() };
    f.recv(SERVER, Datagram::RelayAck { id, from: name("bob"), to: name("alice"), proof });
    assert!(f.events().is_empty());
    f.recv(SERVER, relayed_ack(id, "bob"));
    assert_eq!(f.events(), [">>> [Message received by bob.]"]);
    // Bob was reached through the server: the next message goes that way at once as well.
    f.cmd("send bob again");
    let sent = f.sent();
    assert!(matches!(sent[..], [(BOB, Datagram::Chat { .. }), (SERVER, Datagram::RelayChat { .. })]), "{sent:?}");
    // And a direct ACK makes the direct path the one remembered.
    let Datagram::Chat { id, .. } = sent[0].1 else { panic!() };
    f.recv(BOB, ack(id, "bob"));
    f.events();
    f.cmd("send bob third");
    assert!(matches!(f.sent()[..], [(BOB, Datagram::Chat { .. })]));
}

#[test]
fn a_relayed_chat_is_shown_once_and_acked_back_through_the_server() {
    let mut f = Fixture::online(true);
    let Datagram::Chat { id, from, to, sealed } = chat(7, "bob", "alice", "via the server") else { panic!() };
    f.recv(SERVER, Datagram::RelayChat { id, from: from.clone(), to: to.clone(), sealed: sealed.clone() });
    assert_eq!(f.events(), [">>> bob: via the server"]);
    let [(SERVER, Datagram::RelayAck { id: acked, from: ref acker, to: ref sender, .. })] = f.sent()[..] else {
        panic!("the ACK goes back through the server")
    };
    assert_eq!((acked, acker.as_str(), sender.as_str()), (id, "alice", "bob"));
    // The same chat directly: ACKed directly, not shown again.
    f.recv(BOB, Datagram::Chat { id, from, to, sealed });
    assert!(f.events().is_empty());
    assert!(matches!(f.sent()[..], [(BOB, Datagram::ChatAck { .. })]));
    // A relayed chat for another name is not ours.
    let Datagram::Chat { id, from, sealed, .. } = chat(8, "bob", "carol", "not for alice") else { panic!() };
    f.recv(SERVER, Datagram::RelayChat { id, from, to: name("carol"), sealed });
    assert!(f.events().is_empty() && f.sent().is_empty());
}

#[test]
fn a_peer_behind_the_same_public_address_is_sent_to_at_its_lan_address() {
    let mut f = Fixture::online(true);
    let public = |port: u16| SocketAddr::from(([198, 51, 100, 11], port));
    let lan: SocketAddr = "10.0.1.3:6002".parse().expect("addr");
    // Both behind 198.51.100.11: bob's LAN address.
    let same = vec![online_row("alice", public(6001), None), online_row("bob", public(6002), Some(lan))];
    f.recv(SERVER, Datagram::Table(Table { version: 20, clients: same }));
    f.events();
    f.sent();
    f.cmd("send bob next door");
    let sent: Vec<SocketAddr> = std::iter::from_fn(|| f.client.poll_transmit()).map(|t| t.to).collect();
    assert_eq!(sent, [lan]);
    // Bob behind another public address: his public one, whatever LAN address he has.
    let apart = vec![
        online_row("alice", public(6001), None),
        online_row("bob", SocketAddr::from(([203, 0, 113, 5], 6002)), Some(lan)),
    ];
    f.recv(SERVER, Datagram::Table(Table { version: 21, clients: apart }));
    f.events();
    f.sent();
    f.cmd("send bob far away");
    let sent: Vec<SocketAddr> = std::iter::from_fn(|| f.client.poll_transmit()).map(|t| t.to).collect();
    assert_eq!(sent, [SocketAddr::from(([203, 0, 113, 5], 6002))]);
}
