//! Tests of the sans-IO core with a fake clock: time is `t0 + offset`, and loss is a transmit
//! the test never delivers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use chat_core::Entropy;
use chat_proto::{
    Body, Datagram, KeyPair, MsgId, NONCE_BYTES, Name, Origin, PublicKey, REGISTER_PAD_TO, Refusal, Secret,
    StoredMessage, Text, decode,
};
use chrono::{TimeZone, Utc};
use offline_store::{Limits, MemStore, Store, StoreError};

use crate::{Config, Job, JobKind, Server};
use disk::{Disk, TestStore};

fn name(s: &str) -> Name {
    Name::new(s).expect("name")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `who`'s key pair, the same every time.
fn pair(who: &str) -> KeyPair {
    let mut bytes = [0x77; 32];
    for (i, b) in who.bytes().enumerate() {
        bytes[i % 32] ^= b;
    }
    KeyPair::from_secret(bytes)
}

fn key(who: &str) -> PublicKey {
    pair(who).public()
}

/// `text`, message `id` from `from` to `to`, sealed as `from`'s client seals it.
fn sealed(from: &str, to: &str, id: MsgId, text: &str) -> chat_proto::Sealed {
    pair(from).pairwise(&key(to)).seal_text([1; NONCE_BYTES], &name(from), &name(to), id, text)
}

const ALICE: u16 = 5001;
const BOB: u16 = 5002;
const CAROL: u16 = 5003;

struct Fixture {
    server: Server<TestStore>,
    /// The store's disk, to make it full or forget mailboxes.
    disk: Disk,
    /// The next job of this kind fails.
    fail: Option<JobKind>,
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
        Self::with(Config::default(), limits)
    }

    fn with(cfg: Config, limits: Limits) -> Self {
        let t0 = Instant::now();
        let wall = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
        let (store, disk) = TestStore::new(limits);
        let server = Server::new(cfg, store, t0, wall, Entropy::from_seed([7; 32]));
        Self { server, disk, fail: None, t0, now: t0, next_id: 0, secrets: HashMap::new() }
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

    /// Ends a batch as the driver does: runs the disk jobs until none is left, each well but
    /// the first of the kind the test said should fail.
    fn commit(&mut self) {
        while let Some(job) = self.server.poll_job(self.now) {
            let done = match self.fail.take_if(|kind| *kind == job.kind()) {
                Some(_) => {
                    job.fail(StoreError::Io { op: "read", path: "bob".into(), source: std::io::Error::other("EIO") })
                }
                None => job.run(),
            };
            self.server.handle_job_done(self.now, done);
        }
    }

    /// Runs the jobs that do not wait for the lane (mailbox scans, reads) and returns the next
    /// one that does (a sync, a removal, a checkpoint), for the test to end when it likes.
    fn lane_job(&mut self) -> Option<Job> {
        while let Some(job) = self.server.poll_job(self.now) {
            if job.kind().in_lane() {
                return Some(job);
            }
            self.server.handle_job_done(self.now, job.run());
        }
        None
    }

    fn drain(&mut self) -> Vec<(u16, Datagram)> {
        std::iter::from_fn(|| self.server.poll_transmit())
            .map(|t| (t.to.port(), decode(&t.bytes).expect("server sends valid datagrams")))
            .collect()
    }

    /// A padded `register` for `who`, with its secret if it has one.
    fn reg(&self, id: MsgId, who: &str) -> Datagram {
        let secret = self.secrets.get(who).cloned();
        Datagram::Register { lan: None, id, name: name(who), secret, key: key(who), pad: " ".repeat(REGISTER_PAD_TO) }
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

    /// A save request of `from` for `to`, sealed as `from`'s client seals it (a retransmission
    /// is the same datagram).
    fn save_request(&self, id: MsgId, from: &str, to: &str, text: &str) -> Datagram {
        let msg = MsgId(id.0 + 1000);
        let sealed = sealed(from, to, msg, text);
        let secret = self.secret_of(from);
        Datagram::Save { id, msg, from: name(from), secret, to: name(to), sealed, force: false }
    }

    fn channel_send(&self, id: MsgId, from: &str, text: &str) -> Datagram {
        let (text, secret) = (Text::new(text).expect("text"), self.secret_of(from));
        Datagram::ChannelSend { id, from: name(from), secret, text }
    }

    /// `who`'s stored messages as its client reads them: a direct one opened with its key
    /// (and so only if its sender's key sealed it for `who`).
    fn stored(&mut self, who: &str) -> Vec<(String, Origin, String)> {
        let msgs = self.server.store_mut().messages(&name(who));
        msgs.into_iter().map(|m| (m.from.to_string(), m.origin, read(who, &m))).collect()
    }
}

/// The text of stored message `m` as `who` reads it.
fn read(who: &str, m: &StoredMessage) -> String {
    match &m.body {
        Body::Text(t) => t.to_string(),
        Body::Sealed { sealed, key } => {
            let opened = pair(who).pairwise(key).open_text(sealed, &m.from, &name(who), m.id);
            opened.expect("sealed by its sender for its recipient")
        }
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

mod amplification;
mod at_rest;
mod channel;
mod cluster;
mod disk;
mod jobs;
mod nodes;
mod register;
mod review;
mod save;
mod tables;

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
    assert!(
        out.contains(&(ALICE, Datagram::ChannelPartial { id, full: vec![name("carol")], unstored: vec![] })),
        "{out:?}"
    );
    assert!(out.iter().any(|(p, d)| *p == BOB && matches!(d, Datagram::Channel { .. })), "bob still gets it");
}
