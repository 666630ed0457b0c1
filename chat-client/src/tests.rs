//! Tests of the sans-IO core with a fake clock: time is `t0 + offset`, and loss is a transmit
//! the test never delivers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_proto::{
    ClientRow, Datagram, MsgId, Name, Origin, REGISTER_PAD_TO, Secret, StoredMessage, Table, Text, decode,
};
use chrono::{TimeZone, Utc};

use crate::{Client, Command, Config, Entropy};

const SERVER: u16 = 4000;
const ME: u16 = 5001;
const BOB: u16 = 5002;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn name(s: &str) -> Name {
    Name::new(s).expect("name")
}

fn text(s: &str) -> Text {
    Text::new(s).expect("text")
}

fn secret() -> Secret {
    Secret::new("00112233445566778899aabbccddeeff").expect("secret")
}

fn table(version: u64, me_online: bool, bob_online: bool) -> Table {
    let row = |n: &str, port, online| ClientRow { name: name(n), addr: addr(port), online };
    Table { version, clients: vec![row("alice", ME, me_online), row("bob", BOB, bob_online)] }
}

struct Fixture {
    client: Client,
    t0: Instant,
    now: Instant,
}

impl Fixture {
    fn new() -> Self {
        let t0 = Instant::now();
        let mut client = Client::new(Config::default(), name("alice"), addr(SERVER), None, Entropy::from_seed([1; 32]));
        client.start(t0);
        Self { client, t0, now: t0 }
    }

    /// A client registered at version 10 whose table shows bob as `bob_online`.
    fn online(bob_online: bool) -> Self {
        let mut f = Self::new();
        let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("register first") };
        f.registered(id, 10, 0);
        f.recv(SERVER, Datagram::Table(table(10, true, bob_online)));
        f.sent();
        assert_eq!(f.events(), [">>> [Welcome, You are registered.]", ">>> [Client table updated.]"]);
        f
    }

    /// A client the server has registered (version 10, nothing stored), its `confirm` not yet
    /// answered.
    fn registering() -> Self {
        let mut f = Self::new();
        let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("register first") };
        f.recv(SERVER, Datagram::Registered { id, version: 10, stored: 0, secret: secret(), cookie: 5 });
        f
    }

    fn chat_from_bob(&mut self, id: u64, t: &str) {
        self.recv(BOB, Datagram::Chat { id: MsgId(id), from: name("bob"), to: name("alice"), text: text(t) });
    }

    /// Answers a `register` with `registered`, and its `confirm` with an ACK.
    fn registered(&mut self, id: MsgId, version: u64, stored: u32) {
        self.recv(SERVER, Datagram::Registered { id, version, stored, secret: secret(), cookie: 42 });
        let sent = self.sent();
        let Some(&(SERVER, Datagram::Confirm { id, cookie: 42 })) = sent.last() else { panic!("confirm: {sent:?}") };
        self.recv(SERVER, Datagram::Ack { id });
    }

    fn recv(&mut self, port: u16, d: Datagram) {
        self.client.handle_datagram(self.now, addr(port), d);
    }

    fn cmd(&mut self, line: &str) {
        let cmd = crate::parse(line).expect("valid command").expect("not blank");
        self.client.handle_command(self.now, cmd);
    }

    fn at(&mut self, ms: u64) {
        self.now = self.t0 + Duration::from_millis(ms);
        self.client.handle_timeout(self.now);
    }

    /// Moves the clock to `t0 + ms` in 50 ms steps, as the driver wakes for every timer.
    fn until(&mut self, ms: u64) {
        let from = (self.now - self.t0).as_millis() as u64;
        for t in (from..=ms).step_by(50) {
            self.at(t);
        }
        self.at(ms);
    }

    fn sent(&mut self) -> Vec<(u16, Datagram)> {
        std::iter::from_fn(|| self.client.poll_transmit())
            .map(|t| (t.to.port(), decode(&t.bytes).expect("client sends valid datagrams")))
            .collect()
    }

    fn events(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.client.poll_event()).map(|e| e.to_string()).collect()
    }
}

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
fn a_direct_message_acked_is_delivered_once() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hello there");
    let [(BOB, Datagram::Chat { id, ref from, ref to, ref text })] = f.sent()[..] else { panic!() };
    assert_eq!(to.as_str(), "bob");
    assert_eq!((from.as_str(), text.as_str()), ("alice", "hello there"));
    f.recv(BOB, Datagram::ChatAck { id });
    f.recv(BOB, Datagram::ChatAck { id });
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
    for ms in (0..3000).step_by(50) {
        f.at(ms);
        let sent = f.sent();
        if !sent.is_empty() {
            assert_eq!(sent, first, "a retransmission is the same datagram");
            retransmits.push(ms);
        }
    }
    assert_eq!(retransmits, [500, 1000, 1500, 2000, 2500], "five retransmissions, 500 ms apart");
    assert!(f.events().is_empty());
    f.at(3000);
    assert_eq!(f.events(), [">>> [No ACK from bob, message sent to server.]"]);
    let [(SERVER, Datagram::Save { id, ref to, ref text, force: false, .. })] = f.sent()[..] else { panic!() };
    assert_eq!((to.as_str(), text.as_str()), ("bob", "hi"));
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
    let d = Datagram::Chat { id: MsgId(7), from: name("bob"), to: name("alice"), text: text("hey") };
    f.recv(BOB, d.clone());
    f.recv(BOB, d);
    assert_eq!(f.events(), [">>> bob: hey"]);
    assert_eq!(f.sent(), [(BOB, Datagram::ChatAck { id: MsgId(7) }), (BOB, Datagram::ChatAck { id: MsgId(7) })]);
    let c = Datagram::Channel { id: MsgId(9), from: name("bob"), text: text("all") };
    f.recv(SERVER, c.clone());
    f.recv(SERVER, c);
    assert_eq!(f.events(), [">>> [Channel_Message bob: all]"]);
    assert_eq!(f.sent().len(), 2);
}

#[test]
fn an_older_table_never_replaces_a_newer_one() {
    let mut f = Fixture::online(true);
    f.recv(SERVER, Datagram::Table(table(12, true, false)));
    f.recv(SERVER, Datagram::Table(table(11, true, true)));
    f.recv(SERVER, Datagram::Table(table(12, true, false)));
    assert_eq!(f.events(), [">>> [Client table updated.]"], "only version 12, once");
    let acks: Vec<_> = f.sent().into_iter().map(|(_, d)| d).collect();
    assert_eq!(acks.len(), 3, "every table is ACKed, so the server stops resending");
    f.cmd("list");
    assert!(f.events()[0].contains("bob") && f.events().is_empty());
}

#[test]
fn listed_offline_while_online_registers_again() {
    let mut f = Fixture::online(true);
    f.recv(SERVER, Datagram::Table(table(11, false, true)));
    assert!(f.sent().iter().any(|(p, d)| *p == SERVER && matches!(d, Datagram::Register { .. })));
}

#[test]
fn a_table_without_its_row_means_a_lost_registration_only_once_it_was_shown_online() {
    let bob_only = |version| {
        let mut t = table(version, true, true);
        t.clients.retain(|r| r.name.as_str() == "bob");
        t
    };
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 10, 0);
    f.recv(SERVER, Datagram::Table(bob_only(11)));
    let sent = f.sent();
    assert!(!sent.iter().any(|(_, d)| matches!(d, Datagram::Register { .. })), "its row may be on its way: {sent:?}");
    f.recv(SERVER, Datagram::Table(table(12, true, true)));
    f.recv(SERVER, Datagram::Table(bob_only(13)));
    assert!(f.sent().iter().any(|(p, d)| *p == SERVER && matches!(d, Datagram::Register { .. })), "its row is gone");
}

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
    f.recv(BOB, Datagram::Chat { id: MsgId(1), from: name("bob"), to: name("alice"), text: text("x") });
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
    let msg = |from: &str, origin, t: &str| StoredMessage {
        id: MsgId(50 + t.len() as u64),
        from: name(from),
        origin,
        at,
        text: text(t),
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
    f.recv(BOB, Datagram::ChatAck { id });
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
fn sending_to_yourself_goes_through_your_own_address() {
    let mut f = Fixture::online(true);
    f.cmd("send alice note to self");
    let [(ME, Datagram::Chat { id, ref from, ref to, ref text })] = f.sent()[..] else { panic!() };
    let to = to.clone();
    let (from, text) = (from.clone(), text.clone());
    f.recv(ME, Datagram::Chat { id, from, to, text });
    let [(ME, Datagram::ChatAck { id: ack })] = f.sent()[..] else { panic!() };
    f.recv(ME, Datagram::ChatAck { id: ack });
    assert_eq!(f.events(), [">>> alice: note to self", ">>> [Message received by alice.]"]);
}

#[test]
fn answers_from_the_wrong_address_are_ignored() {
    let mut f = Fixture::online(true);
    f.cmd("send bob hi");
    let [(BOB, Datagram::Chat { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(6666, Datagram::ChatAck { id });
    f.recv(6666, Datagram::Table(table(99, true, false)));
    assert!(f.events().is_empty());
    f.recv(SERVER, Datagram::Probe { id: MsgId(3) });
    assert_eq!(f.sent(), [(SERVER, Datagram::ProbeAck { id: MsgId(3), name: name("alice") })]);
}

#[test]
fn a_stored_copy_of_a_message_already_shown_live_is_not_shown_again() {
    let mut f = Fixture::online(true);
    // bob's message arrives live, but the ACK is lost: bob's client saves it on the server.
    f.recv(BOB, Datagram::Chat { id: MsgId(77), from: name("bob"), to: name("alice"), text: text("once") });
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
        StoredMessage { id: MsgId(77), from: name("bob"), origin: Origin::Direct, at, text: text("once") },
        StoredMessage { id: MsgId(88), from: name("bob"), origin: Origin::Channel, at, text: text("all") },
        StoredMessage { id: MsgId(99), from: name("bob"), origin: Origin::Direct, at, text: text("new") },
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
fn registration_is_padded_keeps_the_secret_and_shows_it_next_time() {
    let mut f = Fixture::new();
    let (SERVER, bytes) = f.client.poll_transmit().map(|t| (t.to.port(), t.bytes)).expect("register") else { panic!() };
    assert!(bytes.len() >= REGISTER_PAD_TO, "padded to {REGISTER_PAD_TO}: {}", bytes.len());
    let Ok(Datagram::Register { id, secret: None, .. }) = decode(&bytes) else { panic!("no secret the first time") };
    f.registered(id, 10, 0);
    assert_eq!(f.client.poll_secret(), Some(secret()), "the driver is asked to keep it");
    assert_eq!(f.client.poll_secret(), None, "once");

    let mut g =
        Client::new(Config::default(), name("alice"), addr(SERVER), Some(secret()), Entropy::from_seed([7; 32]));
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
    assert!(sent.iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::ChatAck { id: MsgId(7) })), "{sent:?}");
    assert_eq!(f.events(), Vec::<String>::new(), "nothing before the welcome");
    let Some(&(SERVER, Datagram::Confirm { id, .. })) =
        sent.iter().find(|(_, d)| matches!(d, Datagram::Confirm { .. }))
    else {
        panic!("confirm: {sent:?}")
    };
    f.recv(SERVER, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [Welcome, You are registered.]", ">>> [Client table updated.]", ">>> bob: early"]);
}

#[test]
fn a_refused_confirm_keeps_what_came_until_the_welcome_of_the_registration_done_again() {
    let mut f = Fixture::registering();
    let Some((SERVER, Datagram::Confirm { id, .. })) = f.sent().pop() else { panic!("confirm") };
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
    assert_eq!(f.events(), [">>> [Welcome, You are registered.]", ">>> bob: first", ">>> bob: second"]);
}

#[test]
fn an_interrupt_shows_what_was_held_then_exits_0() {
    let mut f = Fixture::registering();
    f.chat_from_bob(7, "acked");
    f.client.handle_interrupt();
    assert_eq!(f.events(), [">>> bob: acked"]);
    assert_eq!(f.client.poll_exit(), Some(0));
}

#[test]
fn a_message_acked_before_the_server_vanished_is_still_shown() {
    let mut f = Fixture::registering();
    f.chat_from_bob(7, "early");
    f.until(3000);
    assert_eq!(f.events(), [">>> bob: early", ">>> [Server not responding]\n>>> [Exiting]"]);
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
fn live_messages_during_a_fetch_come_after_the_stored_ones() {
    let mut f = Fixture::online(true);
    f.cmd("dereg alice");
    let [(SERVER, Datagram::Dereg { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Ack { id });
    f.cmd("reg alice");
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 40, 1);
    f.events();
    let [(SERVER, Datagram::Fetch { id: fetch, .. })] = f.sent()[..] else { panic!() };
    f.recv(BOB, Datagram::Chat { id: MsgId(5), from: name("bob"), to: name("alice"), text: text("live") });
    assert!(f.events().is_empty(), "held back");
    assert_eq!(f.sent(), [(BOB, Datagram::ChatAck { id: MsgId(5) })], "but ACKed at once");
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
    let message = StoredMessage { id: MsgId(6), from: name("bob"), origin: Origin::Direct, at, text: text("stored") };
    f.recv(SERVER, Datagram::Stored { id: fetch, index: 0, message });
    let [(SERVER, Datagram::FetchDone { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Ack { id });
    let shown = f.events();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[1].ends_with(" stored") && shown[2] == ">>> bob: live", "{shown:?}");
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
fn a_chat_for_someone_else_at_this_address_is_not_shown_or_acked() {
    let mut f = Fixture::online(true);
    f.recv(BOB, Datagram::Chat { id: MsgId(9), from: name("bob"), to: name("carol"), text: text("for carol") });
    assert!(f.events().is_empty() && f.sent().is_empty());
}

mod tables {
    use super::*;

    fn row(n: &str, port: u16, online: bool) -> ClientRow {
        ClientRow { name: name(n), addr: addr(port), online }
    }

    fn listed(f: &mut Fixture) -> Vec<(String, bool)> {
        f.cmd("list");
        let shown = f.events();
        shown[0]
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .map(|w| (w[1].to_owned(), w[4] == "online"))
            .collect()
    }

    #[test]
    fn a_delta_on_top_of_the_table_applies_and_is_acked() {
        let mut f = Fixture::online(true);
        let delta =
            Datagram::TableDelta { base: 10, version: 12, rows: vec![row("bob", BOB, false), row("carl", 5003, true)] };
        f.recv(SERVER, delta);
        assert_eq!(f.events(), [">>> [Client table updated.]"]);
        assert_eq!(f.sent(), [(SERVER, Datagram::TableAck { version: 12 })]);
        assert_eq!(listed(&mut f), [("alice".into(), true), ("bob".into(), false), ("carl".into(), true)]);
        // An old delta again: nothing changes, but it is ACKed.
        f.recv(SERVER, Datagram::TableDelta { base: 10, version: 11, rows: vec![row("bob", BOB, true)] });
        assert!(f.events().is_empty());
        assert_eq!(f.sent(), [(SERVER, Datagram::TableAck { version: 11 })]);
    }

    #[test]
    fn a_delta_from_a_version_it_does_not_have_asks_from_where_it_is() {
        let mut f = Fixture::online(true);
        f.recv(SERVER, Datagram::TableDelta { base: 11, version: 13, rows: vec![row("bob", BOB, false)] });
        assert!(f.events().is_empty(), "not applied");
        assert_eq!(f.sent(), [(SERVER, Datagram::TableAck { version: 10 })]);
    }

    #[test]
    fn pages_make_a_table_once_all_have_come_in_any_order() {
        let mut f = Fixture::online(true);
        let page = |page, clients| Datagram::TablePage { version: 20, page, pages: 3, clients };
        f.recv(SERVER, page(2, vec![row("zed", 5009, true)]));
        f.recv(SERVER, page(0, vec![row("alice", ME, true), row("bob", BOB, true)]));
        assert!(f.events().is_empty() && f.sent().is_empty(), "not before the last page");
        f.recv(SERVER, page(1, vec![row("carl", 5003, false)]));
        assert_eq!(f.events(), [">>> [Client table updated.]"]);
        assert_eq!(f.sent(), [(SERVER, Datagram::TableAck { version: 20 })]);
        assert_eq!(listed(&mut f).len(), 4);
    }
}

#[test]
fn without_a_table_after_registering_it_asks_for_one_backing_off() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 10, 0);
    let asked: Vec<u64> = (1..=300)
        .map(|i| i * 50)
        .filter(|ms| {
            f.at(*ms);
            f.sent().contains(&(SERVER, Datagram::TableAck { version: 0 }))
        })
        .collect();
    assert_eq!(asked, [2000, 6000, 14_000], "after 2 s, then waits that double");
    f.until(30_000);
    assert!(f.sent().contains(&(SERVER, Datagram::TableAck { version: 0 })), "the fourth ask");
    f.until(120_000);
    assert!(f.sent().is_empty() && f.client.poll_timeout().is_none(), "then no more");
}

#[test]
fn once_the_table_is_there_it_stops_asking() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 10, 0);
    f.until(2000);
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    f.sent();
    f.until(60_000);
    assert!(f.sent().is_empty(), "no more asking");
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
    let Some((SERVER, Datagram::Save { id, ref text, .. })) = sent.last().cloned() else { panic!("{sent:?}") };
    assert_eq!(text.as_str(), "hi");
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
    f.recv(SERVER, Datagram::ChannelPartial { id, full: vec![name("bob")] });
    assert_eq!(f.events(), [">>> [Message received by Server.]", ">>> [Not kept for bob: mailbox full.]"]);
    f.recv(SERVER, Datagram::ChannelPartial { id, full: vec![name("bob")] });
    assert!(f.events().is_empty(), "a duplicate answer shows nothing");
}

/// A client back with `reg` after `dereg`, the server holding `stored` messages for it: the
/// fetches it sent, as (id, index).
fn fetching(stored: u32) -> (Fixture, Vec<(MsgId, u32)>) {
    let mut f = Fixture::online(true);
    f.cmd("dereg alice");
    let [(SERVER, Datagram::Dereg { id, .. })] = f.sent()[..] else { panic!() };
    f.recv(SERVER, Datagram::Ack { id });
    f.cmd("reg alice");
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 40, stored);
    f.events();
    let fetches = f
        .sent()
        .into_iter()
        .filter_map(|(_, d)| if let Datagram::Fetch { id, index } = d { Some((id, index)) } else { None })
        .collect();
    (f, fetches)
}

fn stored_text(t: &str) -> StoredMessage {
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
    StoredMessage {
        id: MsgId(t.bytes().map(u64::from).sum()),
        from: name("bob"),
        origin: Origin::Direct,
        at,
        text: text(t),
    }
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
fn ids_come_from_the_entropy_handed_in() {
    let first_id = |seed| {
        let mut c = Client::new(Config::default(), name("alice"), addr(SERVER), None, Entropy::from_seed(seed));
        c.start(Instant::now());
        let bytes = c.poll_transmit().expect("register").bytes;
        let Ok(Datagram::Register { id, .. }) = decode(&bytes) else { panic!("register") };
        id
    };
    assert_eq!(first_id([1; 32]), first_id([1; 32]), "pinned by the seed");
    assert_ne!(first_id([1; 32]), first_id([2; 32]));
}
