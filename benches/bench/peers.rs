//! Two real clients (the library's driver loop, as the binary runs it, with commands and
//! events on channels instead of a terminal) and a real server, each on its own thread.

use std::net::SocketAddr;
use std::thread;
use std::time::Instant;

use chat_client::{Client, Config, Event, Input};
use chat_proto::{Datagram, MsgId, encode};
use offline_store::{FileStore, Limits};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sim::{name, rand_seed, text};
use crate::{Line, Scale, ms, percentile, raw};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// A server on its own thread, stopped and its data removed when dropped.
pub(crate) struct ServerHandle {
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
    _dir: TempDir,
}

impl ServerHandle {
    pub(crate) fn start() -> Self {
        let dir = TempDir::new().expect("server dir");
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = CancellationToken::new();
        let (path, token) = (dir.path().to_owned(), stop.clone());
        thread::spawn(move || {
            runtime().block_on(async move {
                let socket = crate::sim::bind().await;
                tx.send(socket.local_addr().expect("addr")).expect("report the address");
                let limits = Limits { max_messages: 1_000_000, max_bytes: 1 << 32 };
                let store = FileStore::open(path.join("mailboxes"), limits).expect("store");
                let table = chat_server::TableFile::new(&path);
                let _ = chat_server::run(socket, store, table, chat_server::Config::default(), token).await;
            });
        });
        ServerHandle { addr: rx.recv().expect("server address"), stop, _dir: dir }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A real client on its own thread.
pub(crate) struct Peer {
    pub(crate) input: mpsc::UnboundedSender<Input>,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    stop: CancellationToken,
}

impl Peer {
    pub(crate) fn start(who: &str, server: SocketAddr) -> Self {
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (mut ev_tx, ev_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let (me, token) = (name(who), stop.clone());
        thread::spawn(move || {
            runtime().block_on(async move {
                let socket = crate::sim::bind().await;
                let core = Client::new(Config::default(), me, server, None, rand_seed());
                chat_client::drive(core, &socket, in_rx, &mut ev_tx, None, token).await
            })
        });
        let mut peer = Peer { input: in_tx, events: ev_rx, stop };
        peer.wait(|e| matches!(e, Event::TableUpdated));
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

    /// Throws away whatever it shows from now on, on a thread of its own.
    pub(crate) fn drain(self) -> CancellationToken {
        let Peer { input, mut events, stop } = self;
        thread::spawn(move || {
            let _keep = input;
            while events.blocking_recv().is_some() {}
        });
        stop
    }
}

const PAYLOAD: &str = "hello, this is a 40-byte chat message!!!";

fn wire_sizes() -> (Vec<u8>, Vec<u8>) {
    let chat = Datagram::Chat { id: MsgId(u64::MAX / 3), from: name("alice"), to: name("bob"), text: text(PAYLOAD) };
    let ack = Datagram::ChatAck { id: MsgId(u64::MAX / 3) };
    (encode(&chat).expect("encode"), encode(&ack).expect("encode"))
}

/// Runs `f` against a real client named `who` driven on this thread's runtime, so that
/// handing it a command and seeing its event cost no thread switch (as typing into a terminal
/// and reading it do not count as network time); the peer and the server run on their own
/// threads like separate processes.
fn with_alice<T>(
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
            let core = Client::new(Config::default(), me, server, None, rand_seed());
            chat_client::drive(core, &socket, in_rx, &mut ev_tx, None, token).await
        });
        loop {
            match ev_rx.recv().await {
                Some(Event::TableUpdated) => break,
                Some(_) => {}
                None => panic!("the benchmark's client stopped before it was registered"),
            }
        }
        let out = f(&in_tx, &mut ev_rx).await;
        stop.cancel();
        out
    })
}

async fn delivered(events: &mut mpsc::UnboundedReceiver<Event>) {
    while !matches!(events.recv().await.expect("alice runs"), Event::Delivered { .. }) {}
}

fn send(input: &mpsc::UnboundedSender<Input>) {
    input.send(Input::Line(format!("send bob {PAYLOAD}"))).expect("alice runs");
}

pub(crate) fn round_trip(scale: &Scale) -> Vec<Line> {
    let server = ServerHandle::start();
    let bob = Peer::start("bob", server.addr).drain();
    // Five rounds, each of ChatApp then both baselines, so that the machine's drift (a VM's
    // clock and frequency wander) falls on all three alike.
    let (req, rep) = wire_sizes();
    let n = scale.pings / 5;
    let (mut samples, mut raw, mut tokio_raw) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..5 {
        samples.extend(with_alice(server.addr, &format!("alice{round}"), async |input, events| {
            let mut samples = Vec::with_capacity(n + 20);
            for _ in 0..n + 20 {
                let t = Instant::now();
                send(input);
                delivered(events).await;
                samples.push(t.elapsed());
            }
            samples.split_off(20)
        }));
        raw.extend(raw::ping_pong(&req, &rep, n));
        tokio_raw.extend(raw::tokio_ping_pong(&req, &rep, n));
    }
    bob.cancel();
    let mut lines = Vec::new();
    for p in [50.0, 99.0] {
        let ours = percentile(&mut samples, p);
        for (base, what) in [(percentile(&mut raw, p), "raw UDP"), (percentile(&mut tokio_raw, p), "raw tokio UDP")] {
            lines.push(Line {
                what: format!("1. direct round trip p{p}"),
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
