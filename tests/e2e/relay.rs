//! A fault-injecting UDP relay that stands in front of one client, like a lossy NAT.
//!
//! The client is started with the relay's `server_proxy` as its server address. The relay
//! forwards its traffic to the real server from `public`, so the server (and through the table
//! every peer) knows the client by `public`. Whatever reaches `public` from an address X is
//! forwarded to the client from a proxy socket for X, and what the client sends to that proxy
//! goes back to X from `public`. So every datagram to the client crosses the relay, and so does
//! every one it sends to the server or back to whoever reached it through the relay (a chat it
//! starts goes straight to the peer's address in its table: through that peer's relay, if the
//! peer has one). Each direction can drop, duplicate and delay (and so reorder) datagrams,
//! from a seed that replays the run, or lose the first datagrams the client sends on a path,
//! for a test that needs one known loss.
//!
//! It also records every datagram that reaches it, on both paths and in both directions, as
//! it arrived (before any fault): what an eavesdropper on the client's link sees (with the
//! peer's relay, every chat between two relayed clients). A test can
//! send captured datagrams to the server again from `public`, as an attacker on that link
//! would replay them.

use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Client, free_port, new_dir};

/// What the relay does to each datagram on one kind of path.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Probability that a datagram is dropped.
    pub drop: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Each copy is delayed by a uniform time up to this; different delays reorder.
    pub max_delay: Duration,
    /// The first this many datagrams the client sends on the path are dropped, whatever the
    /// draws: a loss a test can count on (the first ACK of a direct message, say).
    pub lose_first_sent: u64,
}

impl Faults {
    pub fn loss(drop: f64) -> Self {
        Self { drop, ..Self::default() }
    }
}

/// One datagram that reached the relay, as it arrived.
#[derive(Clone, Debug)]
pub struct Crossing {
    /// When it arrived.
    pub at: Instant,
    /// On the path between the client and the server (else between the client and a peer).
    pub server_path: bool,
    /// Sent by the client (else sent to it).
    pub from_client: bool,
    pub bytes: Vec<u8>,
}

/// Counts of what the relay did, for the failure message.
#[derive(Debug, Default)]
pub struct Counts {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
}

/// splitmix64: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        p > 0.0 && unit < p
    }
}

struct Delayed {
    at: Instant,
    seq: u64,
    via: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq)) // earliest first
    }
}

struct Shared {
    client: SocketAddr,
    server: SocketAddr,
    public: Arc<UdpSocket>,
    proxies: Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>,
    rng: Mutex<Rng>,
    server_faults: Faults,
    peer_faults: Faults,
    later: Mutex<Sender<Delayed>>,
    seq: AtomicU64,
    stop: AtomicBool,
    /// The link is down: every datagram, either way, on any path, is dropped.
    cut: AtomicBool,
    /// Set by [`Relay::heal`]: every datagram is forwarded at once, once.
    healed: AtomicBool,
    counts: Counts,
    /// Datagrams the client sent, before any fault: [peer path, server path].
    sent: [AtomicU64; 2],
    /// Every datagram that reached the relay, in order.
    captured: Mutex<Vec<Crossing>>,
}

/// One relay; stops its threads when dropped.
pub struct Relay {
    shared: Arc<Shared>,
    /// The address the server and the peers know the client by.
    pub public: SocketAddr,
    /// The address the client is told is the server.
    pub server_proxy: SocketAddr,
    pub seed: u64,
}

const POLL: Duration = Duration::from_millis(50);

impl Relay {
    /// A relay for the client that will listen on `client`, talking to `server`.
    pub fn start(
        client: SocketAddr,
        server: SocketAddr,
        server_faults: Faults,
        peer_faults: Faults,
        seed: u64,
    ) -> Self {
        let public = Arc::new(bind());
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            client,
            server,
            public: public.clone(),
            proxies: Mutex::new(HashMap::new()),
            rng: Mutex::new(Rng(seed)),
            server_faults,
            peer_faults,
            later: Mutex::new(tx),
            seq: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            healed: AtomicBool::new(false),
            counts: Counts::default(),
            sent: [AtomicU64::new(0), AtomicU64::new(0)],
            captured: Mutex::new(Vec::new()),
        });
        let server_proxy = proxy_for(&shared, server).local_addr().expect("proxy address");
        let s = shared.clone();
        thread::spawn(move || run_public(&s));
        let s = shared.clone();
        thread::spawn(move || run_delays(&s, &rx));
        let public = public.local_addr().expect("public address");
        Self { shared, public, server_proxy, seed }
    }

    /// How many datagrams the client has sent to peers (`server_path` false) or to the
    /// server (true), counting those the relay then dropped.
    pub fn sent_by_client(&self, server_path: bool) -> u64 {
        self.shared.sent[usize::from(server_path)].load(Ordering::Relaxed)
    }

    /// Takes the client's link down (`true`: every datagram is dropped, either way) or up.
    pub fn cut(&self, down: bool) {
        self.shared.cut.store(down, Ordering::Relaxed);
    }

    /// Every datagram that reached the relay so far, in the order it arrived.
    pub fn captured(&self) -> Vec<Crossing> {
        self.shared.captured.lock().expect("captured").clone()
    }

    /// Waits until no datagram has reached the relay for `quiet`, counted from now at the
    /// earliest (so that answers to what was just sent are waited for); fails after `timeout`.
    pub fn wait_quiet(&self, quiet: Duration, timeout: Duration) {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            let last = self.shared.captured.lock().expect("captured").last().map(|c| c.at);
            let quiet_since = last.map_or(start, |at| at.max(start)).elapsed();
            if quiet_since >= quiet {
                return;
            }
            if Instant::now() >= deadline {
                panic!("{}: datagrams kept crossing for {timeout:?}, never {quiet:?} of quiet", self.report());
            }
            thread::sleep(quiet - quiet_since);
        }
    }

    /// Sends each of `datagrams` to the server from `public`, the address the server knows the
    /// client by (as an attacker on the client's link would); returns the bytes sent. Not
    /// recorded; the server's answers are, as they reach `public`.
    pub fn send_to_server(&self, datagrams: &[Vec<u8>]) -> usize {
        datagrams
            .iter()
            .map(|d| self.shared.public.send_to(d, self.shared.server).expect("send from the relay's public socket"))
            .sum()
    }

    /// Ends the faults: from now on every datagram is forwarded at once, once (those already
    /// delayed still arrive late).
    pub fn heal(&self) {
        self.shared.healed.store(true, Ordering::Relaxed);
    }

    /// How many datagrams it dropped or duplicated so far.
    pub fn faults(&self) -> u64 {
        let c = &self.shared.counts;
        c.dropped.load(Ordering::Relaxed) + c.duplicated.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> String {
        let c = &self.shared.counts;
        format!(
            "relay seed {}: forwarded {}, dropped {}, duplicated {}",
            self.seed,
            c.forwarded.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
            c.duplicated.load(Ordering::Relaxed)
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

fn bind() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a relay socket");
    s.set_read_timeout(Some(POLL)).expect("read timeout");
    s
}

/// The proxy socket that stands for `remote` towards the client, made on first use.
fn proxy_for(shared: &Arc<Shared>, remote: SocketAddr) -> Arc<UdpSocket> {
    let mut proxies = shared.proxies.lock().expect("proxies");
    if let Some(p) = proxies.get(&remote) {
        return p.clone();
    }
    let proxy = Arc::new(bind());
    proxies.insert(remote, proxy.clone());
    let (s, p) = (shared.clone(), proxy.clone());
    thread::spawn(move || run_proxy(&s, &p, remote));
    proxy
}

/// Datagrams from the world to the client.
fn run_public(shared: &Arc<Shared>) {
    let mut buf = vec![0u8; 70_000];
    while !shared.stop.load(Ordering::Relaxed) {
        if let Ok((len, from)) = shared.public.recv_from(&mut buf) {
            record(shared, from == shared.server, false, &buf[..len]);
            let proxy = proxy_for(shared, from);
            forward(shared, &proxy, shared.client, &buf[..len], from == shared.server);
        }
    }
}

/// Datagrams from the client to `remote`.
fn run_proxy(shared: &Arc<Shared>, proxy: &Arc<UdpSocket>, remote: SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    while !shared.stop.load(Ordering::Relaxed) {
        if let Ok((len, from)) = proxy.recv_from(&mut buf) {
            if from == shared.client {
                let server_path = remote == shared.server;
                record(shared, server_path, true, &buf[..len]);
                let nth = shared.sent[usize::from(server_path)].fetch_add(1, Ordering::Relaxed);
                if nth < if server_path { shared.server_faults } else { shared.peer_faults }.lose_first_sent {
                    shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                forward(shared, &shared.public, remote, &buf[..len], server_path);
            }
        }
    }
}

fn record(shared: &Shared, server_path: bool, from_client: bool, bytes: &[u8]) {
    let crossing = Crossing { at: Instant::now(), server_path, from_client, bytes: bytes.to_vec() };
    shared.captured.lock().expect("captured").push(crossing);
}

fn forward(shared: &Shared, via: &Arc<UdpSocket>, to: SocketAddr, bytes: &[u8], server_path: bool) {
    let faults = match (shared.healed.load(Ordering::Relaxed), server_path) {
        (true, _) => Faults::default(),
        (false, true) => shared.server_faults,
        (false, false) => shared.peer_faults,
    };
    if shared.cut.load(Ordering::Relaxed) {
        shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let (copies, delays) = {
        let mut rng = shared.rng.lock().expect("rng");
        if rng.chance(faults.drop) {
            shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copies = if rng.chance(faults.duplicate) { 2 } else { 1 };
        let max = faults.max_delay.as_micros() as u64;
        let delays: Vec<u64> = (0..copies).map(|_| if max == 0 { 0 } else { rng.next() % max }).collect();
        (copies, delays)
    };
    if copies == 2 {
        shared.counts.duplicated.fetch_add(1, Ordering::Relaxed);
    }
    shared.counts.forwarded.fetch_add(1, Ordering::Relaxed);
    for delay in delays {
        if delay == 0 {
            let _ = via.send_to(bytes, to);
        } else {
            let at = Instant::now() + Duration::from_micros(delay);
            let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
            let d = Delayed { at, seq, via: via.clone(), to, bytes: bytes.to_vec() };
            let _ = shared.later.lock().expect("later").send(d);
        }
    }
}

fn run_delays(shared: &Shared, rx: &Receiver<Delayed>) {
    let mut queue = BinaryHeap::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let wait = queue.peek().map_or(POLL, |d: &Delayed| d.at.saturating_duration_since(Instant::now()).min(POLL));
        match rx.recv_timeout(wait) {
            Ok(d) => queue.push(d),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while queue.peek().is_some_and(|d| d.at <= Instant::now()) {
            if let Some(d) = queue.pop() {
                let _ = d.via.send_to(&d.bytes, d.to);
            }
        }
    }
}

/// Starts a client behind its own relay, which stands between it and the server on
/// `server_port`; the table knows the client by the relay's public port. Waits for nothing.
pub fn start_behind_relay(
    name: &str,
    server_port: u16,
    server: Faults,
    peers: Faults,
    seed: u64,
    extra: &[&str],
) -> (Client, Relay) {
    let port = free_port();
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let relay = Relay::start(loopback(port), loopback(server_port), server, peers, seed);
    let client = Client::spawn(name, relay.server_proxy.port(), port, new_dir(), extra);
    (client, relay)
}
