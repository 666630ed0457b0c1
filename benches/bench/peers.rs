//! Two real clients (the library's driver loop, as the binary runs it, with commands and
//! events on channels instead of a terminal) and a real server, each on its own thread.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use chat_client::{Client, Config, Entropy, Event, Identity, Input, Sink};
use chat_proto::{Datagram, MsgId, encode};
use nix::unistd::Pid;
use offline_store::{FileStore, Limits};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cpu::Placement;
use crate::sim::{key_of, name};
use crate::{Line, Scale, ms, percentile, raw};

/// A fresh identity for a benchmark client.
/// A client core named `me` with a new key, and its encrypted channel to `server`.
fn client(me: chat_proto::Name, server: SocketAddr) -> (Client, chat_secure::ClientChannel) {
    let key = chat_proto::KeyPair::generate().expect("OS randomness");
    let channel = chat_secure::ClientChannel::new(key.clone(), None, Entropy::from_os().expect("OS randomness"));
    let core = Client::new(
        Config::default(),
        me,
        server,
        Identity::new(key, None),
        Entropy::from_os().expect("OS randomness"),
    );
    (core, channel)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// A server on its own thread, stopped (and waited for) and its data removed when dropped.
pub(crate) struct ServerHandle {
    pub(crate) addr: SocketAddr,
    /// The key it shows, which simulated clients may pin.
    pub(crate) key: chat_proto::PublicKey,
    stop: CancellationToken,
    thread: Option<thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl ServerHandle {
    /// A server with its file store and table files in a fresh directory.
    pub(crate) fn start() -> Self {
        Self::spawn(|path| {
            let limits = Limits { max_messages: 1_000_000, max_bytes: 1 << 32 };
            let store = FileStore::open(path.join("mailboxes"), limits).expect("store");
            let table = chat_server::Tables::Files(chat_server::TableFile::new(path));
            let key = chat_proto::KeyPair::generate().expect("OS randomness");
            let public = key.public();
            let serve: ServeFn = Box::new(move |socket, token| {
                Box::pin(async move {
                    let _ = chat_server::run(socket, key, store, table, chat_server::Config::default(), token).await;
                })
            });
            (public, serve)
        })
    }

    /// A node over the PostgreSQL database at `url`, as `chatapp -s <port> --store <url>` runs
    /// one: its mailboxes in a `PgStore`, its table shared through a `Cluster`, and the key the
    /// nodes share (the first node's, kept in the database).
    pub(crate) fn start_pg(url: &str) -> Self {
        let url = url.to_owned();
        Self::spawn(move |_| {
            let db = chat_pg::Db::connect(&url, std::time::Duration::from_secs(10)).expect("connect to PostgreSQL");
            let own = chat_proto::KeyPair::generate().expect("OS randomness");
            let key = chat_pg::shared_identity(&db, &own).expect("the shared identity");
            let limits = Limits { max_messages: 1_000_000, max_bytes: 1 << 32 };
            let store = chat_pg::PgStore::new(db.clone(), limits);
            let public = key.public();
            let serve = if crate::timed::enabled() {
                serve_pg(db, key, crate::timed::Timed::new(store, "PgStore".into()))
            } else {
                serve_pg(db, key, store)
            };
            (public, serve)
        })
    }

    /// Runs, on a thread of its own, the server that `make` sets up in the data directory; the
    /// server reports its address and key once its socket is bound.
    fn spawn(make: impl FnOnce(&std::path::Path) -> (chat_proto::PublicKey, ServeFn) + Send + 'static) -> Self {
        let dir = TempDir::new().expect("server dir");
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = CancellationToken::new();
        let (path, token) = (dir.path().to_owned(), stop.clone());
        let thread = thread::spawn(move || {
            runtime().block_on(async move {
                let (key, serve) = make(&path);
                let socket = crate::sim::bind().await;
                tx.send((socket.local_addr().expect("addr"), key)).expect("report the address");
                serve(socket, token).await;
            });
        });
        let (addr, key) = rx.recv().expect("the server's address and key");
        ServerHandle { addr, key, stop, thread: Some(thread), _dir: dir }
    }
}

/// A node over `db` with `store`: it joins the cluster with its socket's address, then serves.
fn serve_pg<S: offline_store::Store + 'static>(db: chat_pg::Db, key: chat_proto::KeyPair, store: S) -> ServeFn {
    Box::new(move |socket, token| {
        Box::pin(async move {
            let addr = socket.local_addr().expect("addr");
            let cluster = chat_pg::Cluster::join(db, addr, chat_pg::ClusterConfig::default()).expect("join");
            let table = chat_server::Tables::Shared(Box::new(cluster));
            let _ = chat_server::run(socket, key, store, table, chat_server::Config::default(), token).await;
        })
    })
}

/// What serves a bound socket until the token is cancelled.
type ServeFn = Box<
    dyn FnOnce(tokio::net::UdpSocket, CancellationToken) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
>;

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
/// A real client on its own thread.
pub(crate) struct Peer {
    pub(crate) input: mpsc::UnboundedSender<Input>,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    printing: Arc<AtomicBool>,
    stop: CancellationToken,
    tid: Pid,
}

/// Where a peer's events go: to the benchmark, until it no longer watches them; then each is
/// written as a line to `/dev/null`, as the binary writes it to its standard output (handing it
/// to another thread would cost a wake-up per message that the binary does not pay).
struct PeerSink {
    events: mpsc::UnboundedSender<Event>,
    printing: Arc<AtomicBool>,
    /// Line-buffered, as standard output is: one `write` per line.
    null: io::LineWriter<std::fs::File>,
}

impl Sink for PeerSink {
    fn show(&mut self, event: Event) -> io::Result<()> {
        if self.printing.load(Ordering::Relaxed) {
            let line = event.to_string();
            writeln!(self.null, "{line}")?;
            self.null.flush()
        } else {
            self.events.send(event).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
        }
    }
}

impl Peer {
    /// Starts it and waits until it is registered.
    pub(crate) fn start(who: &str, server: SocketAddr) -> Self {
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let printing = Arc::new(AtomicBool::new(false));
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null").expect("/dev/null");
        let mut sink = PeerSink { events: ev_tx, printing: printing.clone(), null: io::LineWriter::new(null) };
        let (me, token) = (name(who), stop.clone());
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            tid_tx.send(nix::unistd::gettid()).expect("report the thread");
            runtime().block_on(async move {
                let socket = crate::sim::bind().await;
                let (core, channel) = client(me, server);
                chat_client::drive(core, channel, &socket, in_rx, &mut sink, None, token).await
            })
        });
        let tid = tid_rx.recv().expect("the client's thread");
        let mut peer = Peer { input: in_tx, events: ev_rx, printing, stop, tid };
        peer.wait(|e| matches!(e, Event::TableUpdated(_)));
        peer
    }

    pub(crate) fn wait(&mut self, pred: impl Fn(&Event) -> bool) -> Event {
        loop {
            let e = self.events.blocking_recv().expect("the client runs");
            if pred(&e) {
                return e;
            }
        }
    }

    /// Leaves it running on its own, printing what it shows to `/dev/null`.
    pub(crate) fn drain(self) -> Drained {
        self.printing.store(true, Ordering::Relaxed);
        Drained { _input: self.input, _events: self.events, stop: self.stop, tid: self.tid }
    }
}

/// A peer left running on its own. Its input stays open, since a closed one would make it
/// leave, and so do its events, for those it sent before it began printing them.
pub(crate) struct Drained {
    _input: mpsc::UnboundedSender<Input>,
    _events: mpsc::UnboundedReceiver<Event>,
    stop: CancellationToken,
    tid: Pid,
}

impl Drained {
    /// Keeps it on core `cpu`.
    pub(crate) fn pin(&self, cpu: usize) {
        crate::cpu::pin_thread(self.tid, Some(cpu));
    }

    pub(crate) fn cancel(self) {
        self.stop.cancel();
    }
}

pub(crate) const PAYLOAD: &str = "hello, this is a 40-byte chat message!!!";

fn wire_sizes() -> (Vec<u8>, Vec<u8>) {
    let (alice, bob, id) = (name("alice"), name("bob"), MsgId(u64::MAX / 3));
    let pair = key_of(&alice).pairwise(&key_of(&bob).public());
    let sealed = pair.seal_text([0; chat_proto::NONCE_BYTES], &alice, &bob, id, PAYLOAD);
    let chat = Datagram::Chat { id, from: alice.clone(), to: bob.clone(), sealed };
    let ack = Datagram::ChatAck { id, proof: pair.seal_ack([0; chat_proto::NONCE_BYTES], &alice, &bob, id) };
    (encode(&chat).expect("encode"), encode(&ack).expect("encode"))
}

/// Runs `f` against a real client named `who` driven on this thread's runtime, so that
/// handing it a command and seeing its event cost no thread switch (as typing into a terminal
/// and reading it do not count as network time); the peer and the server run on their own
/// threads like separate processes.
pub(crate) fn with_alice<T>(
    server: SocketAddr,
    who: &str,
    f: impl AsyncFnOnce(&mpsc::UnboundedSender<Input>, &mut mpsc::UnboundedReceiver<Event>) -> T,
) -> T {
    let me = name(who);
    let rt = runtime();
    tokio::task::LocalSet::new().block_on(&rt, async move {
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (mut ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::task::spawn_local(async move {
            let socket = crate::sim::bind().await;
            let (core, channel) = client(me, server);
            chat_client::drive(core, channel, &socket, in_rx, &mut ev_tx, None, token).await
        });
        loop {
            match ev_rx.recv().await {
                Some(Event::TableUpdated(_)) => break,
                Some(_) => {}
                None => panic!("the benchmark's client stopped before it was registered"),
            }
        }
        let out = f(&in_tx, &mut ev_rx).await;
        stop.cancel();
        out
    })
}

pub(crate) async fn delivered(events: &mut mpsc::UnboundedReceiver<Event>) {
    while !matches!(events.recv().await.expect("alice runs"), Event::Delivered { .. }) {}
}

pub(crate) fn send(input: &mpsc::UnboundedSender<Input>) {
    input.send(Input::Line(format!("send bob {PAYLOAD}"))).expect("alice runs");
}

pub(crate) fn round_trip(scale: &Scale) -> Vec<Line> {
    let server = ServerHandle::start();
    let bob = Peer::start("bob", server.addr).drain();
    let mut lines = Vec::new();
    for (i, place) in Placement::available().into_iter().enumerate() {
        crate::cpu::pin(Some(place.near()));
        bob.pin(place.far());
        lines.extend(round_trip_on(scale, server.addr, place, i * 5));
        crate::cpu::pin(None);
    }
    bob.cancel();
    lines
}

/// The round trips with alice (the end that measures, on this thread) and bob placed as
/// `place` says.
/// Each round's alice is a new client (`alice<first + round>`), as a name cannot move.
fn round_trip_on(scale: &Scale, server: SocketAddr, place: Placement, first: usize) -> Vec<Line> {
    // Five rounds, each of ChatApp then both baselines, so that the machine's drift (a VM's
    // clock and frequency wander) falls on all three alike.
    let (req, rep) = wire_sizes();
    let n = scale.pings / 5;
    let (mut samples, mut raw, mut tokio_raw) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..5 {
        samples.extend(with_alice(server, &format!("alice{}", first + round), async |input, events| {
            let mut samples = Vec::with_capacity(n + 20);
            for _ in 0..n + 20 {
                let t = Instant::now();
                send(input);
                delivered(events).await;
                samples.push(t.elapsed());
            }
            samples.split_off(20)
        }));
        raw.extend(raw::ping_pong(&req, &rep, n, place.far()));
        tokio_raw.extend(raw::tokio_ping_pong(&req, &rep, n, place.far()));
    }
    let mut lines = Vec::new();
    for p in [50.0, 99.0] {
        let ours = percentile(&mut samples, p);
        for (base, what) in [(percentile(&mut raw, p), "raw UDP"), (percentile(&mut tokio_raw, p), "raw tokio UDP")] {
            lines.push(Line {
                what: format!("1. direct round trip p{p}, {}", place.label()),
                ours: ms(ours),
                baseline: format!("{} {what}", ms(base)),
                ratio: format!("{:.2}×", ours.as_secs_f64() / base.as_secs_f64()),
                target: if p == 50.0 && what == "raw UDP" { "p50 ≤ 1.5× raw" } else { "" },
            });
        }
    }
    lines
}

pub(crate) fn throughput(scale: &Scale) -> Vec<Line> {
    let server = ServerHandle::start();
    let bob = Peer::start("bob", server.addr).drain();
    let (n, window) = (scale.flood, scale.window);
    let ours = with_alice(server.addr, "alice", async |input, events| {
        let t = Instant::now();
        for _ in 0..window.min(n) {
            send(input);
        }
        for done in 1..=n {
            delivered(events).await;
            if done + window <= n {
                send(input);
            }
        }
        n as f64 / t.elapsed().as_secs_f64()
    });
    bob.cancel();
    let (req, rep) = wire_sizes();
    let base = raw::pairs_per_second(&req, &rep, n, window);
    vec![Line {
        what: format!("2. direct throughput, {window} in flight"),
        ours: format!("{ours:.0} msg/s"),
        baseline: format!("{base:.0} pairs/s raw"),
        ratio: format!("{:.2}×", ours / base),
        target: "",
    }]
}
