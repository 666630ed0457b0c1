//! Tests of the sans-IO core with a fake clock: time is `t0 + offset`, and loss is a transmit
//! the test never delivers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use chat_core::Entropy;
use chat_proto::{Datagram, MsgId, Name, Origin, REGISTER_PAD_TO, Refusal, Secret, StoredMessage, Text, decode};
use chrono::{TimeZone, Utc};
use offline_store::{Limits, MemStore, Store, StoreError};

use crate::{Config, Server};

fn name(s: &str) -> Name {
    Name::new(s).expect("name")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const ALICE: u16 = 5001;
const BOB: u16 = 5002;
const CAROL: u16 = 5003;

struct Fixture {
    server: Server<MemStore>,
    t0: Instant,
    now: Instant,
    next_id: u64,
    secrets: HashMap<String, Secret>,
}

impl Fixture {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A server with each of `clients` registered at its port.
    fn online(clients: &[(&str, u16)]) -> Self {
        let mut f = Self::new();
        for (who, port) in clients {
            f.register(who, *port);
        }
        f
    }

    fn with_limits(limits: Limits) -> Self {
        let t0 = Instant::now();
        let wall = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
        let server = Server::new(Config::default(), MemStore::new(limits), t0, wall, Entropy::from_seed([7; 32]));
        Self { server, t0, now: t0, next_id: 0, secrets: HashMap::new() }
    }

    fn id(&mut self) -> MsgId {
        self.next_id += 1;
        MsgId(self.next_id)
    }

    /// Delivers `d` from `port`, commits, and returns everything the server sent.
    fn recv(&mut self, port: u16, d: Datagram) -> Vec<(u16, Datagram)> {
        self.server.handle_datagram(self.now, addr(port), d);
        self.commit();
        self.drain()
    }

    /// Moves the clock to `t0 + ms`, fires timers, commits, returns what was sent.
    fn at(&mut self, ms: u64) -> Vec<(u16, Datagram)> {
        self.now = self.t0 + Duration::from_millis(ms);
        self.server.handle_timeout(self.now);
        self.commit();
        self.drain()
    }

    /// Ends a batch as the driver does, with a disk sync that succeeds.
    fn commit(&mut self) {
        if let Some(job) = self.server.commit(self.now) {
            self.server.handle_synced(job.run());
        }
    }

    fn drain(&mut self) -> Vec<(u16, Datagram)> {
        std::iter::from_fn(|| self.server.poll_transmit())
            .map(|t| (t.to.port(), decode(&t.bytes).expect("server sends valid datagrams")))
            .collect()
    }

    /// A padded `register` for `who`, with its secret if it has one.
    fn reg(&self, id: MsgId, who: &str) -> Datagram {
        let secret = self.secrets.get(who).cloned();
        Datagram::Register { id, name: name(who), secret, pad: " ".repeat(REGISTER_PAD_TO) }
    }

    /// Registers `who` at `port`, confirms the address, and ACKs the tables it is sent.
    fn register(&mut self, who: &str, port: u16) {
        let out = self.join(who, port);
        self.ack_tables(&out);
    }

    /// `who` registers at `port` and confirms the address; returns all the server sent, its
    /// tables not ACKed.
    fn join(&mut self, who: &str, port: u16) -> Vec<(u16, Datagram)> {
        let id = self.id();
        let mut out = self.recv(port, self.reg(id, who));
        let Some((p, Datagram::Registered { stored: 0, ref secret, cookie, .. })) = out.first().cloned() else {
            panic!("{out:?}")
        };
        assert_eq!(p, port);
        self.secrets.insert(who.to_owned(), secret.clone());
        let id = self.id();
        out.extend(self.recv(port, Datagram::Confirm { id, cookie }));
        out
    }

    /// `who` at `port` goes offline (`dereg`).
    fn dereg(&mut self, who: &str, port: u16) -> Vec<(u16, Datagram)> {
        let id = self.id();
        self.recv(port, Datagram::Dereg { id, name: name(who), secret: self.secret_of(who) })
    }

    /// Registers every `(who, port)` as [`Fixture::register`] does, but in three batches (all
    /// the registers, all the confirms, all the table ACKs), so the table goes out once.
    fn register_many(&mut self, clients: &[(String, u16)]) {
        for (who, port) in clients {
            let id = self.id();
            self.server.handle_datagram(self.now, addr(*port), self.reg(id, who));
        }
        self.commit();
        let mut cookies = HashMap::new();
        for (port, d) in self.drain() {
            let Datagram::Registered { stored: 0, secret, cookie, .. } = d else { panic!("{d:?}") };
            cookies.insert(port, (secret, cookie));
        }
        for (who, port) in clients {
            let Some((secret, cookie)) = cookies.remove(port) else { panic!("no answer to {who}") };
            self.secrets.insert(who.clone(), secret);
            let id = self.id();
            self.server.handle_datagram(self.now, addr(*port), Datagram::Confirm { id, cookie });
        }
        self.commit();
        // Every push went out at the current version: ACK it without decoding 600 tables.
        let (version, mut to) = (self.server.table_version(), Vec::new());
        while let Some(t) = self.server.poll_transmit() {
            to.push(t.to);
        }
        for at in to {
            self.server.handle_datagram(self.now, at, Datagram::TableAck { version });
        }
        self.commit();
        self.drain();
    }

    fn ack_tables(&mut self, out: &[(u16, Datagram)]) {
        for (port, d) in out {
            if let Some(version) = table_version(d) {
                self.server.handle_datagram(self.now, addr(*port), Datagram::TableAck { version });
            }
        }
    }

    fn save(&mut self, from: (&str, u16), to: &str, text: &str) -> (MsgId, Vec<(u16, Datagram)>) {
        let id = self.id();
        (id, self.recv(from.1, self.save_request(id, from.0, to, text)))
    }

    /// `who`'s secret as the server handed it out (one it never did for a name it did not).
    fn secret_of(&self, who: &str) -> Secret {
        self.secrets.get(who).cloned().unwrap_or_else(|| Secret::new("0000000000000000").expect("secret"))
    }

    /// A save request of `from` for `to` (a retransmission is the same datagram).
    fn save_request(&self, id: MsgId, from: &str, to: &str, text: &str) -> Datagram {
        let (text, secret) = (Text::new(text).expect("text"), self.secret_of(from));
        Datagram::Save { id, msg: MsgId(id.0 + 1000), from: name(from), secret, to: name(to), text, force: false }
    }

    fn channel_send(&self, id: MsgId, from: &str, text: &str) -> Datagram {
        let (text, secret) = (Text::new(text).expect("text"), self.secret_of(from));
        Datagram::ChannelSend { id, from: name(from), secret, text }
    }

    fn stored(&mut self, who: &str) -> Vec<(String, Origin, String)> {
        let msgs = self.server.store_mut().load(&name(who)).expect("load");
        msgs.into_iter().map(|m| (m.from.to_string(), m.origin, m.text.to_string())).collect()
    }
}

/// Whether `d` shows `who` online (a whole table, a page or a delta that has its row).
fn online_in(d: &Datagram, who: &str) -> Option<bool> {
    let rows = match d {
        Datagram::Table(t) => &t.clients,
        Datagram::TablePage { clients, .. } => clients,
        Datagram::TableDelta { rows, .. } => rows,
        _ => return None,
    };
    rows.iter().find(|r| r.name.as_str() == who).map(|r| r.online)
}

/// The table version `d` carries, if it is a table, a page or a delta.
fn table_version(d: &Datagram) -> Option<u64> {
    match d {
        Datagram::Table(t) => Some(t.version),
        Datagram::TablePage { version, .. } | Datagram::TableDelta { version, .. } => Some(*version),
        _ => None,
    }
}

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
    let spoofed =
        Datagram::Register { id: MsgId(109), name: name("mallory"), secret: Some(stolen), pad: " ".repeat(300) };
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
        text: Text::new("kept").expect("t"),
    };
    f.server.store_mut().append(&name("bob"), &msg).expect("append");
    let out = f.recv(BOB, f.reg(MsgId(1), "bob"));
    let [(BOB, Datagram::Registered { stored: 1, cookie, .. })] = out[..] else { panic!("{out:?}") };
    f.recv(BOB, Datagram::Confirm { id: MsgId(2), cookie });
    let out = f.recv(BOB, Datagram::Fetch { id: MsgId(3), index: 0 });
    assert!(
        matches!(&out[..], [(BOB, Datagram::Stored { message, .. })] if message.text.as_str() == "kept"),
        "{out:?}"
    );
}

#[test]
fn a_name_the_server_lost_takes_the_secret_its_client_shows() {
    let mut f = Fixture::new();
    let shown = Secret::new("00112233445566778899aabbccddeeff").expect("secret");
    let register =
        Datagram::Register { id: MsgId(1), name: name("bob"), secret: Some(shown.clone()), pad: " ".repeat(300) };
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
    let first = f.server.commit(f.now).expect("a sync starts");
    assert_eq!(ack_to(f.drain(), ALICE), 0, "not acked before its sync ends");
    for (id, text) in [(501, "two"), (502, "three")] {
        let request = f.save_request(MsgId(id), "carol", "bob", text);
        f.server.handle_datagram(f.now, addr(CAROL), request);
        assert!(f.server.commit(f.now).is_none(), "one sync at a time");
    }
    assert_eq!(ack_to(f.drain(), CAROL), 0);
    f.server.handle_synced(first.run());
    assert_eq!(f.drain(), vec![(ALICE, Datagram::Ack { id: MsgId(500) })], "only what the first sync covered");
    let second = f.server.commit(f.now).expect("the next sync serves both waiting saves");
    f.server.handle_synced(second.run());
    assert_eq!(ack_to(f.drain(), CAROL), 2);
    assert_eq!(f.stored("bob").len(), 3);
}

#[test]
fn a_failed_sync_acks_nothing_and_the_retransmission_is_done_again() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    let request = f.save_request(MsgId(500), "alice", "bob", "hi");
    f.server.handle_datagram(f.now, addr(ALICE), request.clone());
    let job = f.server.commit(f.now).expect("a sync starts");
    drop(job);
    let gone = std::io::Error::other("the disk is gone");
    f.server.handle_synced(Err(StoreError::Io { op: "sync", path: "journal".into(), source: gone }));
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
        texts.push((got, message.from.to_string(), message.text.to_string()));
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
    let Some(last) = f.server.store_mut().load(&name("bob")).expect("load").get(1).map(|m| m.id) else { panic!() };
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
        text: Text::new("forged").expect("t"),
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
fn tables_are_retransmitted_until_acked_backing_off_then_given_up() {
    let mut f = Fixture::new();
    f.join("alice", ALICE);
    let tables = |out: Vec<(u16, Datagram)>| out.iter().filter(|(_, d)| table_version(d).is_some()).count();
    let resent: Vec<u64> = (1..=60).map(|i| i * 500).filter(|ms| tables(f.at(*ms)) > 0).collect();
    assert_eq!(resent, [500, 1500, 3500, 7500, 15500], "five retransmissions, each wait twice the one before");

    let out = f.join("bob", BOB);
    f.ack_tables(&out);
    assert_eq!(tables(f.at(40_000)), 0, "an ACKed table is not sent again");
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

mod channel {
    use super::*;

    fn send_all(f: &mut Fixture, text: &str) -> (MsgId, Vec<(u16, Datagram)>) {
        let id = f.id();
        let d = f.channel_send(id, "alice", text);
        (id, f.recv(ALICE, d))
    }

    fn three_online() -> Fixture {
        Fixture::online(&[("alice", ALICE), ("bob", BOB), ("carol", CAROL)])
    }

    fn channel_ids(out: &[(u16, Datagram)]) -> Vec<(u16, MsgId)> {
        out.iter()
            .filter_map(|(p, d)| if let Datagram::Channel { id, .. } = d { Some((*p, *id)) } else { None })
            .collect()
    }

    #[test]
    fn acks_the_sender_and_reaches_everyone_else_once() {
        let mut f = three_online();
        let (id, out) = send_all(&mut f, "hello all");
        assert!(out.contains(&(ALICE, Datagram::Ack { id })));
        let sent = channel_ids(&out);
        assert_eq!(sent.iter().map(|(p, _)| *p).collect::<Vec<_>>().len(), 2);
        assert!(sent.iter().all(|(p, _)| *p != ALICE), "not to the sender");
        for (p, cid) in sent {
            f.recv(p, Datagram::ChannelAck { id: cid });
        }
        assert!(f.at(2000).is_empty(), "all ACKed: nothing more to send");
        let dup = f.channel_send(id, "alice", "hello all");
        assert_eq!(f.recv(ALICE, dup), vec![(ALICE, Datagram::Ack { id })], "a retransmission is not relayed again");
    }

    #[test]
    fn stores_at_once_for_offline_clients() {
        let mut f = three_online();
        f.dereg("carol", CAROL);
        let (_, out) = send_all(&mut f, "hi");
        assert_eq!(channel_ids(&out).len(), 1);
        assert_eq!(f.stored("carol"), vec![("alice".into(), Origin::Channel, "hi".into())]);
    }

    #[test]
    fn a_late_ack_inside_the_window_needs_no_probe() {
        let mut f = three_online();
        let (_, out) = send_all(&mut f, "hi");
        for (p, cid) in channel_ids(&out) {
            f.at(300);
            f.recv(p, Datagram::ChannelAck { id: cid });
        }
        let later: Vec<_> = (5..=12).flat_map(|i| f.at(i * 100)).collect();
        assert!(later.iter().all(|(_, d)| !matches!(d, Datagram::Probe { .. })), "{later:?}");
        assert!(f.stored("bob").is_empty() && f.stored("carol").is_empty());
    }

    #[test]
    fn a_recipient_that_never_acks_is_retried_probed_then_stored() {
        let mut f = three_online();
        let (_, out) = send_all(&mut f, "hi");
        let ids = channel_ids(&out);
        let (_, carol_id) = ids.iter().find(|(p, _)| *p == CAROL).copied().expect("carol");
        let (_, bob_id) = ids.iter().find(|(p, _)| *p == BOB).copied().expect("bob");
        f.recv(CAROL, Datagram::ChannelAck { id: carol_id });
        f.recv(CAROL, Datagram::ChannelAck { id: carol_id }); // a duplicate ACK changes nothing
        let resends: usize = (1..=4).map(|i| channel_ids(&f.at(i * 100)).len()).sum();
        assert_eq!(resends, 4, "bob's copy retransmitted inside the window");
        let out = f.at(500);
        assert!(out.iter().any(|d| matches!(d, (BOB, Datagram::Probe { .. }))), "{out:?}");
        let out: Vec<_> = (6..=10).flat_map(|i| f.at(i * 100)).collect();
        assert!(out.iter().any(|(p, d)| *p == ALICE && online_in(d, "bob") == Some(false)), "{out:?}");
        assert_eq!(f.stored("bob"), vec![("alice".into(), Origin::Channel, "hi".into())]);
        assert!(f.stored("carol").is_empty());
        assert!(
            !f.recv(BOB, Datagram::ChannelAck { id: bob_id })
                .iter()
                .any(|(_, d)| matches!(d, Datagram::Channel { .. }))
        );
    }

    #[test]
    fn a_recipient_that_answers_the_probe_gets_the_message_again() {
        let mut f = three_online();
        let (_, out) = send_all(&mut f, "hi");
        for (p, cid) in channel_ids(&out) {
            if p == CAROL {
                f.recv(p, Datagram::ChannelAck { id: cid });
            }
        }
        let out = f.at(500);
        let Some(&(_, Datagram::Probe { id: probe })) =
            out.iter().find(|(p, d)| *p == BOB && matches!(d, Datagram::Probe { .. }))
        else {
            panic!("{out:?}")
        };
        let out = f.recv(BOB, Datagram::ProbeAck { id: probe, name: name("bob") });
        let again = channel_ids(&out);
        assert_eq!(again.len(), 1, "sent again after the probe: {out:?}");
        f.recv(BOB, Datagram::ChannelAck { id: again[0].1 });
        assert!(f.at(3000).is_empty());
        assert!(f.stored("bob").is_empty());
    }
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
fn a_registered_name_needs_its_secret() {
    let mut f = Fixture::new();
    f.register("bob", BOB);
    f.dereg("bob", BOB);
    let stolen = Datagram::Register { id: MsgId(900), name: name("bob"), secret: None, pad: " ".repeat(300) };
    assert_eq!(f.recv(CAROL, stolen), vec![(CAROL, Datagram::Refused { id: MsgId(900), reason: Refusal::NotOwner })]);
    let wrong = Secret::new("ffffffffffffffffffffffffffffffff").expect("secret");
    let guessed = Datagram::Register { id: MsgId(901), name: name("bob"), secret: Some(wrong), pad: " ".repeat(300) };
    assert!(matches!(f.recv(CAROL, guessed)[..], [(CAROL, Datagram::Refused { reason: Refusal::NotOwner, .. })]));
    let out = f.recv(CAROL, f.reg(MsgId(902), "bob"));
    assert!(matches!(out[0], (CAROL, Datagram::Registered { .. })), "the owner may move: {out:?}");
}

mod amplification {
    use super::*;

    fn sent_to(out: &[(u16, Datagram)], port: u16) -> usize {
        out.iter().filter(|(p, _)| *p == port).map(|(_, d)| chat_proto::encode(d).expect("encode").len()).sum()
    }

    #[test]
    fn an_unpadded_register_from_an_unknown_address_gets_nothing() {
        let mut f = Fixture::new();
        let d = Datagram::Register { id: MsgId(1), name: name("m"), secret: None, pad: String::new() };
        assert!(f.recv(CAROL, d).is_empty());
        assert!(f.server.table().clients.is_empty(), "and registers nothing");
    }

    #[test]
    fn an_unconfirmed_address_gets_at_most_three_times_its_bytes() {
        let mut f = Fixture::new();
        for (i, who) in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"].into_iter().enumerate() {
            f.register(&format!("{who}{}", "x".repeat(30)), 6000 + i as u16);
        }
        let reg = f.reg(MsgId(77), "spoofed");
        let received = chat_proto::encode(&reg).expect("encode").len();
        let mut out = f.recv(CAROL, reg);
        for ms in (500..=4000).step_by(500) {
            out.extend(f.at(ms));
        }
        assert!(matches!(out.iter().find(|(p, _)| *p == CAROL), Some((_, Datagram::Registered { .. }))));
        assert!(!out.iter().any(|(p, d)| *p == CAROL && table_version(d).is_some()), "the table is held back");
        assert!(sent_to(&out, CAROL) <= 3 * received, "{} > 3 × {received}", sent_to(&out, CAROL));
    }

    #[test]
    fn the_cookie_proves_the_address_and_releases_the_table() {
        let mut f = Fixture::new();
        for (i, who) in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"].into_iter().enumerate() {
            f.register(&format!("{who}{}", "x".repeat(30)), 6000 + i as u16);
        }
        let out = f.recv(CAROL, f.reg(MsgId(77), "carol"));
        let Some((_, Datagram::Registered { cookie, .. })) = out.iter().find(|(p, _)| *p == CAROL).cloned() else {
            panic!("{out:?}")
        };
        let wrong = f.recv(CAROL, Datagram::Confirm { id: MsgId(78), cookie: cookie ^ 1 });
        let refused = Datagram::Refused { id: MsgId(78), reason: Refusal::NotRegistered };
        assert_eq!(wrong, vec![(CAROL, refused)], "a wrong cookie proves nothing: the client registers again");
        let out = f.recv(CAROL, Datagram::Confirm { id: MsgId(79), cookie });
        assert!(
            out.iter().any(|(p, d)| *p == CAROL && matches!(d, Datagram::Table(t) if t.clients.len() == 13)),
            "{out:?}"
        );
        assert!(out.contains(&(CAROL, Datagram::Ack { id: MsgId(79) })));
    }
}

#[test]
fn without_the_secret_an_online_name_is_in_use() {
    let mut f = Fixture::new();
    f.register("bob", BOB);
    let d = Datagram::Register { id: MsgId(900), name: name("bob"), secret: None, pad: " ".repeat(300) };
    assert_eq!(f.recv(CAROL, d), vec![(CAROL, Datagram::Refused { id: MsgId(900), reason: Refusal::NameTaken })]);
}

mod tables {
    use super::*;

    #[test]
    fn a_client_that_acked_gets_only_what_changed() {
        let mut f = Fixture::new();
        f.register("alice", ALICE);
        let out = f.join("bob", BOB);
        let to_alice: Vec<_> = out.iter().filter(|(p, _)| *p == ALICE).collect();
        let [(_, Datagram::TableDelta { rows, .. })] = to_alice[..] else { panic!("a delta: {out:?}") };
        assert_eq!(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["bob"], "only bob's row");
    }

    fn rows_to(out: &[(u16, Datagram)], port: u16) -> Vec<Vec<String>> {
        out.iter()
            .filter(|(p, _)| *p == port)
            .filter_map(|(_, d)| match d {
                Datagram::TableDelta { rows, .. } => Some(rows.iter().map(|r| r.name.to_string()).collect()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn changes_while_a_push_is_in_flight_go_out_together_once_it_is_acked() {
        let mut f = Fixture::online(&[("alice", ALICE)]);
        let first = f.join("bob", BOB);
        assert_eq!(rows_to(&first, ALICE), [["bob"]]);
        for (who, port) in [("carol", CAROL), ("dave", 5004)] {
            let out = f.join(who, port);
            assert_eq!(rows_to(&out, ALICE), Vec::<Vec<String>>::new(), "alice has not ACKed the last one");
        }
        let Some(version) = first.iter().find(|(p, _)| *p == ALICE).and_then(|(_, d)| table_version(d)) else {
            panic!()
        };
        let out = f.recv(ALICE, Datagram::TableAck { version });
        assert_eq!(rows_to(&out, ALICE), [["carol", "dave"]], "both changes in one delta");
    }

    #[test]
    fn a_push_the_table_moved_past_is_retransmitted_as_the_current_one() {
        let mut f = Fixture::online(&[("alice", ALICE)]);
        f.join("bob", BOB);
        f.join("carol", CAROL);
        let out = f.at(500);
        assert_eq!(rows_to(&out, ALICE), [["bob", "carol"]], "not the stale delta with bob alone");
    }

    /// The rows of every table, page and delta `out` sends to `port`.
    fn names_to(out: &[(u16, Datagram)], port: u16) -> Vec<String> {
        out.iter()
            .filter(|(p, _)| *p == port)
            .flat_map(|(_, d)| match d {
                Datagram::TableDelta { rows, .. } | Datagram::TablePage { clients: rows, .. } => rows.clone(),
                Datagram::Table(t) => t.clients.clone(),
                _ => Vec::new(),
            })
            .map(|r| r.name.to_string())
            .collect()
    }

    #[test]
    fn a_change_while_the_last_retransmission_is_pending_still_goes_out() {
        let mut f = Fixture::online(&[("alice", ALICE)]);
        f.join("bob", BOB); // alice never ACKs from now on
        for ms in [500, 1500, 3500, 7500, 15_500, 16_000] {
            f.at(ms); // the last retransmission at 15.5 s; given up at 23.5 s unless ACKed
        }
        f.join("carol", CAROL);
        let later: Vec<_> = (33..=48).flat_map(|i| f.at(i * 500)).collect();
        assert!(names_to(&later, ALICE).contains(&"carol".to_owned()), "{later:?}");
    }

    #[test]
    fn a_client_that_never_acks_costs_one_push_per_longest_backoff_while_the_table_changes() {
        let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
        let mut to_alice = Vec::new();
        for ms in (100..=60_000).step_by(100) {
            if ms % 2000 == 0 {
                // bob goes offline and comes back every 2 s; he ACKs, alice never does
                let out = if ms % 4000 == 0 { f.dereg("bob", BOB) } else { f.join("bob", BOB) };
                f.ack_tables(&out.iter().filter(|(p, _)| *p == BOB).cloned().collect::<Vec<_>>());
                to_alice.extend(out.into_iter().filter(|(p, _)| *p == ALICE).map(|_| ms));
            }
            to_alice.extend(f.at(ms).into_iter().filter(|(p, _)| *p == ALICE).map(|_| ms));
        }
        let late = to_alice.iter().filter(|ms| **ms > 30_000).count();
        assert!((1..=5).contains(&late), "pushes to alice in the last 30 s: {late} (at {to_alice:?})");
    }

    #[test]
    fn a_client_restarting_at_the_same_address_gets_the_table_at_once() {
        let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
        f.join("carol", CAROL); // on its way to bob, who crashed and never ACKs
        f.at(500);
        let out = f.join("bob", BOB);
        assert!(names_to(&out, BOB).contains(&"carol".to_owned()), "{out:?}");
    }

    #[test]
    fn a_client_marked_offline_is_told_at_once_whatever_is_on_its_way() {
        let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
        f.join("carol", CAROL); // bob's link is down: no ACKs, no probe answers
        f.at(500);
        f.at(1500);
        f.save(("alice", ALICE), "bob", "hi");
        let out: Vec<_> = (1..=6).flat_map(|i| f.at(1500 + i * 100)).collect();
        assert!(out.iter().any(|(p, d)| *p == BOB && online_in(d, "bob") == Some(false)), "{out:?}");
    }

    #[test]
    fn a_whole_table_in_pages_is_resent_at_its_version_with_what_changed_after_it() {
        let mut f = Fixture::new();
        f.register_many(&(0..600u16).map(|i| (format!("{}{i:04}", "é".repeat(28)), 10_000 + i)).collect::<Vec<_>>());
        let out = f.join("dave", 5004); // never ACKed
        let versions = |out: &[(u16, Datagram)]| -> Vec<u64> {
            out.iter()
                .filter_map(|(p, d)| match d {
                    Datagram::TablePage { version, .. } if *p == 5004 => Some(*version),
                    _ => None,
                })
                .collect()
        };
        let first = versions(&out);
        assert!(first.len() > 1 && first.iter().all(|v| *v == first[0]), "{first:?}");
        f.join("erin", 5005);
        let again = f.at(500);
        assert_eq!(versions(&again), first, "the same pages again");
        let delta = again.iter().find_map(|(p, d)| match d {
            Datagram::TableDelta { base, rows, .. } if *p == 5004 => Some((*base, rows.clone())),
            _ => None,
        });
        let Some((base, rows)) = delta else { panic!("and a delta after them: {again:?}") };
        assert_eq!(base, first[0]);
        assert!(rows.iter().any(|r| r.name.as_str() == "erin"));
    }

    #[test]
    fn a_client_behind_the_delta_gets_the_whole_table_again() {
        let mut f = Fixture::new();
        f.register("alice", ALICE);
        let out = f.join("bob", BOB);
        assert!(out.iter().any(|(p, d)| *p == ALICE && matches!(d, Datagram::TableDelta { .. })));
        // alice lost her table (or could not apply the delta): she says where she is.
        let out = f.recv(ALICE, Datagram::TableAck { version: 0 });
        let [(ALICE, Datagram::Table(ref t))] = out[..] else { panic!("the whole table: {out:?}") };
        assert_eq!(t.clients.len(), 2);
    }

    #[test]
    fn a_table_too_big_for_one_datagram_goes_in_pages() {
        let mut f = Fixture::new();
        f.register_many(&(0..600u16).map(|i| (format!("{}{i:04}", "é".repeat(28)), 10_000 + i)).collect::<Vec<_>>());
        let id = f.id();
        let mut out = f.recv(CAROL, f.reg(id, "carol"));
        let Some((_, Datagram::Registered { cookie, .. })) = out.first().cloned() else { panic!() };
        out.extend(f.recv(CAROL, Datagram::Confirm { id: MsgId(5), cookie }));
        let pages: Vec<(u16, u16, usize)> = out
            .iter()
            .filter_map(|(p, d)| match d {
                Datagram::TablePage { page, pages, clients, .. } if *p == CAROL => Some((*page, *pages, clients.len())),
                _ => None,
            })
            .collect();
        assert!(pages.len() >= 2, "{pages:?}");
        assert_eq!(pages.iter().map(|p| p.2).sum::<usize>(), 601, "every row once");
        assert!(pages.iter().all(|p| p.1 as usize == pages.len()));
    }
}

#[test]
fn a_client_behind_with_nothing_on_its_way_gets_the_table_when_it_asks() {
    let mut f = Fixture::new();
    f.register("alice", ALICE);
    f.join("bob", BOB);
    f.at(60_000); // every push to alice has long given up
    let out = f.recv(ALICE, Datagram::TableAck { version: 0 });
    let [(ALICE, Datagram::Table(ref t))] = out[..] else { panic!("the whole table: {out:?}") };
    assert_eq!(t.clients.len(), 2);
}

#[test]
fn a_channel_copy_that_a_full_mailbox_refuses_is_reported_to_the_sender() {
    let mut f = Fixture::with_limits(Limits { max_messages: 1, max_bytes: 1 << 20 });
    f.register("alice", ALICE);
    f.register("bob", BOB);
    f.register("carol", CAROL);
    f.dereg("carol", CAROL);
    f.save(("alice", ALICE), "carol", "fills the mailbox");
    let id = f.id();
    let out = f.recv(ALICE, f.channel_send(id, "alice", "all"));
    assert!(out.contains(&(ALICE, Datagram::ChannelPartial { id, full: vec![name("carol")] })), "{out:?}");
    assert!(out.iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::Channel { .. })), "bob still gets it");
}

#[test]
fn secrets_cookies_and_ids_come_from_the_entropy_handed_in() {
    let answer = |seed| {
        let wall = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
        let store = MemStore::new(Limits::default());
        let mut server = Server::new(Config::default(), store, Instant::now(), wall, Entropy::from_seed(seed));
        let reg = Datagram::Register { id: MsgId(1), name: name("bob"), secret: None, pad: " ".repeat(300) };
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
