//! Tests of the sans-IO core with a fake clock: time is `t0 + offset`, and loss is a transmit
//! the test never delivers. This file holds the fixture; the tests are grouped beside it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_proto::{
    Body, ClientRow, Datagram, KeyPair, MsgId, NONCE_BYTES, Name, Origin, REGISTER_PAD_TO, Sealed, Secret,
    StoredMessage, Table, Text, decode,
};
use chrono::{TimeZone, Utc};

use crate::{Client, Command, Config, Entropy};

const SERVER: u16 = 4000;
const ME: u16 = 5001;
pub(crate) const BOB: u16 = 5002;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn name(s: &str) -> Name {
    Name::new(s).expect("name")
}

fn text(s: &str) -> Text {
    Text::new(s).expect("text")
}

/// Alice's identity: her key pair, and `secret` if an earlier run kept one.
fn identity(secret: Option<Secret>) -> crate::Identity {
    crate::Identity::new(pair("alice"), secret)
}

/// Each name's key pair, the same every time (alice's is the client's).
fn pair(who: &str) -> KeyPair {
    let mut bytes = [0x11; 32];
    for (i, b) in who.bytes().enumerate() {
        bytes[i % 32] ^= b;
    }
    KeyPair::from_secret(bytes)
}

fn key(who: &str) -> chat_proto::PublicKey {
    pair(who).public()
}

/// `text`, message `id` from `from` to `to`, sealed as `from`'s client seals it.
fn sealed(from: &str, to: &str, id: MsgId, text: &str) -> Sealed {
    pair(from).pairwise(&key(to)).seal_text([8; NONCE_BYTES], &name(from), &name(to), id, text)
}

/// The chat `from`'s client sends to `to`.
fn chat(id: u64, from: &str, to: &str, text: &str) -> Datagram {
    Datagram::Chat { id: MsgId(id), from: name(from), to: name(to), sealed: sealed(from, to, MsgId(id), text) }
}

/// `by`'s ACK of alice's message `id`.
fn ack(id: MsgId, by: &str) -> Datagram {
    let proof = pair(by).pairwise(&key("alice")).seal_ack([9; NONCE_BYTES], &name("alice"), &name(by), id);
    Datagram::ChatAck { id, proof }
}

/// A stored direct message `id` from `from` to alice, sealed by `from`.
fn stored_direct(id: u64, from: &str, text: &str, at: chrono::DateTime<Utc>) -> StoredMessage {
    let body = Body::Sealed { sealed: sealed(from, "alice", MsgId(id), text), key: key(from) };
    StoredMessage { id: MsgId(id), from: name(from), origin: Origin::Direct, at, body }
}

/// What alice's client sent as the text of `d`, a chat or a save: opened as its recipient
/// opens it.
fn text_of(d: &Datagram) -> String {
    let (id, from, to, sealed) = match d {
        Datagram::Chat { id, from, to, sealed } | Datagram::Save { msg: id, from, to, sealed, .. } => {
            (id, from, to, sealed)
        }
        _ => panic!("not a chat or a save: {d:?}"),
    };
    let opened = pair(to.as_str()).pairwise(&key(from.as_str())).open_text(sealed, from, to, *id);
    opened.expect("sealed for its recipient")
}

fn secret() -> Secret {
    Secret::new("00112233445566778899aabbccddeeff").expect("secret")
}

/// `n`'s row, online at `addr` (and at `lan` on its own network), with its key.
fn online_row(n: &str, addr: SocketAddr, lan: Option<SocketAddr>) -> ClientRow {
    ClientRow { name: name(n), addr, online: true, key: Some(key(n)), lan }
}

fn table(version: u64, me_online: bool, bob_online: bool) -> Table {
    let row =
        |n: &str, port, online| ClientRow { lan: None, name: name(n), addr: addr(port), online, key: Some(key(n)) };
    Table { version, clients: vec![row("alice", ME, me_online), row("bob", BOB, bob_online)] }
}

pub(crate) struct Fixture {
    pub(crate) client: Client,
    t0: Instant,
    now: Instant,
}

impl Fixture {
    /// Goes offline (`dereg`, ACKed) and registers again; returns the new register's id.
    fn dereg_and_reg(&mut self) -> MsgId {
        self.cmd("dereg alice");
        let [(SERVER, Datagram::Dereg { id, .. })] = self.sent()[..] else { panic!() };
        self.recv(SERVER, Datagram::Ack { id });
        self.cmd("reg alice");
        let [(SERVER, Datagram::Register { id, .. })] = self.sent()[..] else { panic!() };
        id
    }

    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(cfg: Config) -> Self {
        Self::as_client(cfg, "alice", crate::KeyBook::default())
    }

    /// The client of `who` (with `who`'s key pair), which an earlier run left `keys`.
    fn as_client(cfg: Config, who: &str, keys: crate::KeyBook) -> Self {
        let t0 = Instant::now();
        let identity = crate::Identity::new(pair(who), None);
        let client = Client::new(cfg, name(who), addr(SERVER), identity, Entropy::from_seed([1; 32]));
        let mut client = client.with_key_book(keys);
        client.start(t0);
        Self { client, t0, now: t0 }
    }

    /// A client registered at version 10 whose table shows bob as `bob_online`.
    pub(crate) fn online(bob_online: bool) -> Self {
        Self::online_with(Config::default(), bob_online)
    }

    /// The same, with `cfg`.
    fn online_with(cfg: Config, bob_online: bool) -> Self {
        Self::registered_as(Self::with(cfg), bob_online)
    }

    /// `f`, just started, registered at version 10; its table shows bob as `bob_online`.
    fn registered_as(f: Self, bob_online: bool) -> Self {
        Self::registered_expecting(
            f,
            bob_online,
            &[">>> [Welcome, You are registered.]", ">>> [Client table updated.]"],
        )
    }

    /// `f`, just started, registered at version 10 with bob as `bob_online`, having shown `lines`.
    fn registered_expecting(mut f: Self, bob_online: bool, lines: &[&str]) -> Self {
        let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("register first") };
        f.registered(id, 10, 0);
        f.recv(SERVER, Datagram::Table(table(10, true, bob_online)));
        f.sent();
        assert_eq!(f.events(), lines);
        f
    }

    /// A client the server has registered (version 10, nothing stored), its `confirm` not yet
    /// answered.
    fn registering() -> Self {
        let mut f = Self::new();
        let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("register first") };
        f.recv(
            SERVER,
            Datagram::Registered {
                id,
                version: 10,
                stored: 0,
                secret: secret(),
                cookie: 5,
                keepalive_ms: 0,
                nodes: vec![],
            },
        );
        f
    }

    pub(crate) fn chat_from_bob(&mut self, id: u64, t: &str) {
        self.recv(BOB, chat(id, "bob", "alice", t));
    }

    /// Answers a `register` with `registered`, and its `confirm` with an ACK.
    fn registered(&mut self, id: MsgId, version: u64, stored: u32) {
        self.recv(
            SERVER,
            Datagram::Registered { id, version, stored, secret: secret(), cookie: 42, keepalive_ms: 0, nodes: vec![] },
        );
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

/// A client back with `reg` after `dereg`, the server holding `stored` messages for it: the
/// fetches it sent, as (id, index).
fn fetching(stored: u32) -> (Fixture, Vec<(MsgId, u32)>) {
    let mut f = Fixture::online(true);
    let id = f.dereg_and_reg();
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
    stored_direct(t.bytes().map(u64::from).sum(), "bob", t, at)
}

mod failover;
mod fetch;
mod lossy;
mod register;
mod review;
mod send;
mod tables;
mod trust;
