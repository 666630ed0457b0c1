//! A seeded simulation of a lossy network between the client and a small fake server: datagrams
//! are dropped, duplicated and delayed (so reordered) both ways, the clock is fake, and the
//! server may die. Over many seeds, each request ends in at most one outcome line: at most one
//! welcome per registration the user asked for, at most one `[Server not responding]`/`[Exiting]`
//! pair, and nothing after it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::Entropy;
use chat_proto::{ClientRow, Datagram, MsgId, Name, Secret, Table, decode, encode};
use chrono::{TimeZone, Utc};

use crate::{Client, Config, Event};

const SERVER: u16 = 4000;
const ME: u16 = 5001;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn name(s: &str) -> Name {
    Name::new(s).expect("name")
}

/// The server's side, reduced to what the client's registration, fetch, dereg and channel need.
struct FakeServer {
    version: u64,
    online: bool,
    stored: u32,
    /// From then on the server answers nothing.
    dies_at: Option<Instant>,
}

impl FakeServer {
    fn table(&self) -> Datagram {
        let row = |n: &str, port, online| ClientRow {
            lan: None,
            name: name(n),
            addr: addr(port),
            online,
            key: Some(super::key(n)),
        };
        Datagram::Table(Table {
            version: self.version,
            clients: vec![row("alice", ME, self.online), row("bob", 5002, true)],
        })
    }

    fn changed(&mut self) -> Datagram {
        self.version += 1;
        self.table()
    }

    fn stored(&self, id: MsgId, index: u32) -> Datagram {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
        let message = super::stored_direct(1000 + u64::from(index), "bob", &format!("stored {index}"), at);
        Datagram::Stored { id, index, message }
    }

    /// What the server sends back for `d`.
    fn handle(&mut self, d: Datagram) -> Vec<Datagram> {
        let secret = Secret::new("00112233445566778899aabbccddeeff").expect("secret");
        match d {
            Datagram::Register { id, .. } => {
                vec![Datagram::Registered {
                    id,
                    version: self.version,
                    stored: self.stored,
                    secret,
                    cookie: 7,
                    keepalive_ms: 0,
                    nodes: vec![],
                }]
            }
            Datagram::Confirm { id, .. } if self.online => vec![Datagram::Ack { id }],
            Datagram::Confirm { id, .. } => {
                self.online = true;
                vec![Datagram::Ack { id }, self.changed()]
            }
            Datagram::Fetch { id, index } if index < self.stored => vec![self.stored(id, index)],
            Datagram::FetchDone { id, .. } => {
                self.stored = 0;
                vec![Datagram::Ack { id }]
            }
            Datagram::Dereg { id, .. } if !self.online => vec![Datagram::Ack { id }],
            Datagram::Dereg { id, .. } => {
                self.online = false;
                self.stored = 5;
                vec![Datagram::Ack { id }, self.changed()]
            }
            Datagram::ChannelSend { id, .. } | Datagram::Save { id, .. } => vec![Datagram::Ack { id }],
            Datagram::TableAck { version } if version < self.version => vec![self.table()],
            _ => Vec::new(),
        }
    }
}

/// One run: the network, the server, the client and what it showed.
struct Sim {
    rng: Entropy,
    client: Client,
    server: FakeServer,
    t0: Instant,
    now: Instant,
    /// Datagrams on their way: (when, sequence) → (to the server?, bytes).
    wire: BTreeMap<(Instant, u64), (bool, Vec<u8>)>,
    seq: u64,
    loss_pct: u64,
    shown: Vec<Event>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        let mut rng = Entropy::from_seed(s);
        let t0 = Instant::now();
        let dies_at = (rng.u64() % 3 == 0).then(|| t0 + Duration::from_millis(rng.u64() % 40_000));
        let loss_pct = 10 + rng.u64() % 40;
        let server = FakeServer { version: 10, online: false, stored: (rng.u64() % 12) as u32, dies_at };
        // Half the runs as a script (answers held in the order of the commands), half at a terminal.
        let cfg = Config { answers_in_order: seed % 2 == 0, ..Config::default() };
        let client =
            Client::new(cfg, name("alice"), addr(SERVER), super::identity(None), Entropy::from_seed(rng.bytes()));
        Self { rng, client, server, t0, now: t0, wire: BTreeMap::new(), seq: 0, loss_pct, shown: Vec::new() }
    }

    /// Puts `bytes` on the wire: lost, once, or twice, each after a delay of up to 300 ms.
    fn put(&mut self, to_server: bool, bytes: Vec<u8>) {
        let copies = match self.rng.u64() % 100 {
            n if n < self.loss_pct => 0,
            n if n < self.loss_pct + 15 => 2,
            _ => 1,
        };
        for _ in 0..copies {
            let at = self.now + Duration::from_millis(self.rng.u64() % 300);
            self.seq += 1;
            self.wire.insert((at, self.seq), (to_server, bytes.clone()));
        }
    }

    fn drain(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            if t.to.port() == SERVER {
                self.put(true, t.bytes.to_vec());
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.shown.push(e);
        }
    }

    fn deliver(&mut self, to_server: bool, bytes: &[u8]) {
        let Ok(d) = decode(bytes) else { panic!("the client sent what does not decode") };
        if !to_server {
            self.client.handle_datagram(self.now, addr(SERVER), d);
            return;
        }
        if self.server.dies_at.is_some_and(|t| self.now >= t) {
            return;
        }
        for answer in self.server.handle(d) {
            let bytes = encode(&answer).expect("the fake server sends valid datagrams");
            self.put(false, bytes);
        }
    }

    /// Runs until `until` ms after the start, or the client exits.
    fn run_until(&mut self, until: u64) {
        let end = self.t0 + Duration::from_millis(until);
        while self.client.poll_exit().is_none() {
            let wire = self.wire.keys().next().map(|(at, _)| *at);
            let next = [wire, self.client.poll_timeout()].into_iter().flatten().min();
            let Some(next) = next.filter(|at| *at <= end) else { break };
            self.now = self.now.max(next);
            if let Some(key) = self.wire.keys().next().copied().filter(|(at, _)| *at <= self.now) {
                let (to_server, bytes) = self.wire.remove(&key).expect("just seen");
                self.deliver(to_server, &bytes);
            }
            self.client.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(end);
    }

    fn line(&mut self, line: &str) {
        self.client.handle_line(self.now, line);
        self.drain();
    }

    /// A table change the client did not cause (another client came or went).
    fn other_change(&mut self) {
        if self.server.dies_at.is_none_or(|t| self.now < t) {
            let table = self.server.changed();
            let bytes = encode(&table).expect("table");
            self.put(false, bytes);
        }
    }
}

/// Checks one run's lines: a welcome only for a registration the user asked for (the first,
/// then one `reg` after each `[You are Offline. Bye.]`), and at most one give-up, the last line.
fn check(seed: u64, shown: &[Event]) {
    let mut owed = true;
    for (i, e) in shown.iter().enumerate() {
        match e {
            Event::Welcome => {
                assert!(owed, "seed {seed}: a second welcome for one registration at line {i}: {shown:#?}");
                owed = false;
            }
            Event::Offline => owed = true,
            Event::ServerGone => {
                assert_eq!(i + 1, shown.len(), "seed {seed}: lines after [Exiting]: {shown:#?}");
            }
            _ => {}
        }
    }
}

#[test]
fn under_loss_duplication_and_reordering_each_request_ends_in_one_outcome() {
    let (mut gave_up, mut came_back, mut fetched) = (0, 0, 0);
    for seed in 0..400 {
        let mut sim = Sim::new(seed);
        sim.client.start(sim.now);
        sim.drain();
        let script: [(u64, Option<&str>); 8] = [
            (1_500, None),
            (4_000, Some("send_all hi")),
            (6_000, Some("dereg alice")),
            (9_000, None),
            (12_000, Some("reg alice")),
            (12_300, None),
            (20_000, Some("dereg alice")),
            (24_000, Some("reg alice")),
        ];
        for (at, line) in script {
            sim.run_until(at);
            match line {
                Some(line) => sim.line(line),
                None => sim.other_change(),
            }
        }
        sim.run_until(120_000);
        check(seed, &sim.shown);
        let count = |what: &Event| sim.shown.iter().filter(|e| *e == what).count();
        gave_up += usize::from(count(&Event::ServerGone) == 1);
        came_back += usize::from(count(&Event::Welcome) >= 2);
        fetched += usize::from(count(&Event::HaveMessages) >= 1);
    }
    // The runs went where the checks matter: give-ups, `reg` after `dereg`, stored messages.
    assert!(gave_up >= 50 && came_back >= 50 && fetched >= 50, "{gave_up} {came_back} {fetched}");
}
