//! Benchmarks with many simulated clients (one socket each, all in this process) against a
//! real server: durable saves, channel fan-out, registration storms, memory.

use std::cell::RefCell;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chat_proto::{Datagram, Origin, StoredMessage, encode};
use tempfile::TempDir;

use crate::peers::ServerHandle;
use crate::sim::{Seen, Sim, key_of, name, sealed, text};
use crate::{Line, Scale, ms, percentile, raw};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// Registers `n` simulated clients named `<prefix><i>`, all at once, client `i` at
/// `nodes[i % nodes.len()]` (each pinning the key its node shows).
async fn register_many(prefix: &str, n: usize, nodes: &[&ServerHandle], seen: &Rc<Seen>) -> Vec<Sim> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (prefix, seen) = (prefix.to_owned(), seen.clone());
            let node = nodes[i % nodes.len()];
            let (addr, key) = (node.addr, node.key);
            tokio::task::spawn_local(async move {
                let mut sim = Sim::bind_pinned(&format!("{prefix}{i}"), addr, Some(key)).await;
                sim.register(&seen).await;
                sim
            })
        })
        .collect();
    let mut sims = Vec::with_capacity(n);
    for t in tasks {
        sims.push(t.await.expect("registration task"));
    }
    sims
}

/// What each simulated sender saves.
pub(crate) const TEXT: &str = "a message for someone who is offline, 60 bytes of it, ok!!";

/// A save of [`TEXT`] as a store keeps it.
pub(crate) fn save_record() -> StoredMessage {
    StoredMessage {
        id: chat_proto::MsgId(1),
        from: name("saver1"),
        origin: Origin::Direct,
        at: chrono_now(),
        body: chat_proto::Body::Sealed { sealed: sealed(TEXT), key: key_of(&name("saver1")).public() },
    }
}

pub(crate) fn saves(scale: &Scale) -> Vec<Line> {
    let dir = TempDir::new().expect("dir");
    let line = serde_json::to_vec(&save_record()).expect("record");
    // The baseline before and after, so that the machine's drift falls on both sides.
    let mut raw = raw::append_and_sync(dir.path(), &line, 200);
    let runs: Vec<(usize, f64, Duration)> = scale
        .savers
        .iter()
        .map(|&savers| {
            let server = ServerHandle::start();
            let (mut latencies, elapsed) = save_burst(&[&server], savers, scale.saves_each, TEXT);
            let rate = latencies.len() as f64 / elapsed.as_secs_f64();
            (savers, rate, percentile(&mut latencies, 99.0))
        })
        .collect();
    raw.extend(raw::append_and_sync(dir.path(), &line, 200));
    let raw_rate = raw.len() as f64 / raw.iter().map(Duration::as_secs_f64).sum::<f64>();
    let raw_p99 = percentile(&mut raw, 99.0);
    let mut lines = Vec::new();
    for (savers, rate, p99) in runs {
        let senders = if savers == 1 { "1 sender".to_owned() } else { format!("{savers} senders") };
        lines.push(Line {
            what: format!("3. durable saves, {senders}"),
            ours: format!("{rate:.0} saves/s"),
            baseline: format!("{raw_rate:.0} fsyncs/s raw"),
            ratio: format!("{:.1}×", rate / raw_rate),
            target: if savers > 1 { "≥ 10× raw fsync rate" } else { "" },
        });
        lines.push(Line {
            what: format!("3. durable save p99, {senders}"),
            ours: ms(p99),
            baseline: format!("{} raw fsync p99", ms(raw_p99)),
            ratio: String::new(),
            target: if savers > 1 { "p99 < 5 ms" } else { "" },
        });
    }
    lines
}

/// `savers` simulated clients each save `each` messages, one after another, for 8 offline
/// recipients, against fresh servers (`nodes`: sender `k` at `nodes[k % nodes.len()]`, the
/// recipients registered at the last node and gone offline); returns every save's round trip,
/// and the time they took together.
pub(crate) fn save_burst(
    nodes: &[&ServerHandle],
    savers: usize,
    each: usize,
    text_: &'static str,
) -> (Vec<Duration>, Duration) {
    block_on(async {
        let seen = Rc::new(Seen::default());
        let home = nodes[nodes.len() - 1];
        let mut away = register_many("away", 8, &[home], &seen).await;
        for sim in &mut away {
            sim.dereg(&seen).await;
        }
        let away: Vec<_> = away.iter().map(|sim| sim.name.clone()).collect();
        let mut senders = register_many("saver", savers, nodes, &seen).await;
        // Each sender's node must know the recipients (from the shared table, for another
        // node's): a save for an unknown name is refused.
        for sim in &mut senders {
            let known = sim.until(&seen, Duration::from_secs(10), |sim| away.iter().all(|a| sim.knows(a))).await;
            assert!(known, "{}'s node did not learn the recipients within 10 s", sim.name);
        }
        // The server stores sealed texts without opening them: one seal serves every save.
        let sealed = sealed(text_);
        let t = Instant::now();
        let tasks: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(k, mut sim)| {
                let (seen, sealed) = (seen.clone(), sealed.clone());
                tokio::task::spawn_local(async move {
                    let mut lat = Vec::with_capacity(each);
                    for i in 0..each {
                        let (id, msg) = (sim.id(), sim.id());
                        let to = name(&format!("away{}", (k + i) % 8));
                        let (from, secret, sealed) = (sim.name.clone(), sim.secret(), sealed.clone());
                        let d = Datagram::Save { id, msg, from, secret, to, sealed, force: false };
                        let t = Instant::now();
                        let answer = sim
                            .request(&d, &seen, |d| match d {
                                Datagram::Ack { id: got } if *got == id => Some(Ok(())),
                                Datagram::Refused { id: got, reason } if *got == id => Some(Err(*reason)),
                                _ => None,
                            })
                            .await;
                        if let Err(reason) = answer {
                            panic!("a save was refused: {reason:?}");
                        }
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(savers * each);
        for task in tasks {
            latencies.extend(task.await.expect("saver"));
        }
        (latencies, t.elapsed())
    })
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Answers everything a client answers, counting channel messages and the clients whose table
/// shows all `n` online.
fn listen(mut sim: Sim, n: usize, got: Arc<AtomicUsize>, full: Arc<AtomicUsize>, seen: Rc<Seen>) {
    tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; 65_536];
        let mut counted = false;
        loop {
            if !counted && sim.table.1 >= n {
                counted = true;
                full.fetch_add(1, Ordering::Relaxed);
            }
            let Ok((len, _)) = sim.socket.recv_from(&mut buf).await else { return };
            let Some(d) = sim.open(&buf[..len]).await else { continue };
            seen.datagrams.fetch_add(1, Ordering::Relaxed);
            seen.bytes.fetch_add(len as u64, Ordering::Relaxed);
            if matches!(d, Datagram::Channel { .. }) {
                got.fetch_add(1, Ordering::Relaxed);
            }
            sim.answer(&d).await;
        }
    });
}

async fn wait_for(counter: &AtomicUsize, n: usize, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while counter.load(Ordering::Relaxed) < n {
        if t.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Some(t.elapsed())
}

pub(crate) fn fanout(scale: &Scale) -> Vec<Line> {
    let server = ServerHandle::start();
    let n = scale.fanout;
    let took = fanout_over(&[&server], n);
    let base = raw_fanout(n);
    vec![Line {
        what: format!("4. channel fan-out to {n} clients"),
        ours: took.map_or("did not finish".into(), ms),
        baseline: format!("{} raw send+ack", ms(base)),
        ratio: took.map_or(String::new(), |t| format!("{:.1}×", t.as_secs_f64() / base.as_secs_f64())),
        target: "< 50 ms",
    }]
}

/// One plain socket sending a channel message to `n` sockets, each answering with its ACK.
fn raw_fanout(n: usize) -> Duration {
    let msg = encode(&Datagram::Channel {
        id: chat_proto::MsgId(u64::MAX / 3),
        from: name("sender"),
        text: text("Welcome to Channel"),
    })
    .expect("encode");
    let ack = encode(&Datagram::ChannelAck { id: chat_proto::MsgId(u64::MAX / 3) }).expect("encode");
    raw::fanout(&msg, &ack, n)
}

/// `send_all` from a client of `nodes[0]` to `n` online members (member `i` at
/// `nodes[i % nodes.len()]`): the time from the send until every member got it, measured once
/// every member's table shows everyone online; `None` if that took over 10 s.
pub(crate) fn fanout_over(nodes: &[&ServerHandle], n: usize) -> Option<Duration> {
    block_on(async {
        let seen = Rc::new(Seen::default());
        let (got, full) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut sender = Sim::bind_pinned("sender", nodes[0].addr, Some(nodes[0].key)).await;
        sender.register(&seen).await;
        for sim in register_many("member", n, nodes, &seen).await {
            listen(sim, n + 1, got.clone(), full.clone(), seen.clone());
        }
        // Measure the fan-out alone: once every member holds the final table.
        if wait_for(&full, n, Duration::from_secs(60)).await.is_none() {
            eprintln!(
                "fan-out to {n}: only {} of the members' tables show everyone online",
                full.load(Ordering::Relaxed)
            );
        }
        // With several nodes, the sender's node must know the others live, or it stores their
        // members' copies instead: then those never get it and this reports "did not finish",
        // so a figure printed is always one of a fan-out that reached every node. (The sender's
        // `nodes` list is no sign of it: `Nodes` is sent once, unacknowledged, and may be lost
        // among the table pushes the sender does not read while the members register.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = sender.id();
        let d = Datagram::ChannelSend {
            id,
            from: sender.name.clone(),
            secret: sender.secret(),
            text: text("Welcome to Channel"),
        };
        let t = Instant::now();
        sender.send(&d).await;
        wait_for(&got, n, Duration::from_secs(10)).await.map(|_| t.elapsed())
    })
}

/// `n` clients register at once; the time until every one holds the server's newest table
/// (all `n` online), and what the server sent meanwhile.
pub(crate) fn storm(n: usize) -> Vec<Line> {
    let server = ServerHandle::start();
    let seen = Rc::new(Seen::default());
    let took = block_on({
        let seen = seen.clone();
        async move {
            let state: Rc<RefCell<Vec<(u64, usize)>>> = Rc::new(RefCell::new(vec![(0, 0); n]));
            let t = Instant::now();
            for i in 0..n {
                let (seen, state) = (seen.clone(), state.clone());
                tokio::task::spawn_local(async move {
                    let mut sim = Sim::bind(&format!("c{i:05}"), server.addr).await;
                    sim.register(&seen).await;
                    state.borrow_mut()[i] = sim.table;
                    let mut buf = vec![0u8; 65_536];
                    loop {
                        // As a real client does: no full table for a while, ask for it.
                        let wait = tokio::time::timeout(Duration::from_secs(2), sim.socket.recv_from(&mut buf)).await;
                        let Ok(received) = wait else {
                            if sim.table.1 < n {
                                sim.send(&Datagram::TableAck { version: sim.table.0 }).await;
                            }
                            continue;
                        };
                        let Ok((len, _)) = received else { break };
                        let Some(d) = sim.open(&buf[..len]).await else { continue };
                        seen.datagrams.fetch_add(1, Ordering::Relaxed);
                        seen.bytes.fetch_add(len as u64, Ordering::Relaxed);
                        sim.answer(&d).await;
                        state.borrow_mut()[i] = sim.table;
                    }
                });
            }
            loop {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let st = state.borrow();
                let newest = st.iter().map(|s| s.0).max().unwrap_or(0);
                if st.iter().all(|s| s.0 == newest && s.1 == n) {
                    return Some(t.elapsed());
                }
                if t.elapsed() > Duration::from_secs(if n <= 100 { 10 } else { 60 }) {
                    let mut counts = std::collections::BTreeMap::new();
                    for (v, on) in st.iter() {
                        *counts.entry((*v == newest, *on)).or_insert(0) += 1;
                    }
                    eprintln!("storm of {n}: (has newest, online seen) → clients: {counts:?}");
                    return None;
                }
            }
        }
    });
    let (datagrams, bytes) = (seen.datagrams.load(Ordering::Relaxed), seen.bytes.load(Ordering::Relaxed));
    vec![Line {
        what: format!("5. registration storm, {n} clients"),
        ours: took.map_or("did not converge".into(), ms),
        baseline: format!("{datagrams} dgrams, {:.1} MB sent", bytes as f64 / 1e6),
        ratio: format!("{:.1} KB/client", bytes as f64 / 1e3 / n as f64),
        target: "report growth with N",
    }]
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()).unwrap_or(47_999)
}

/// The real server binary on a free loopback port with its data in `dir`, logging nothing,
/// given 300 ms to start: the process and its address.
pub(crate) fn server_binary(dir: &TempDir) -> (std::process::Child, std::net::SocketAddr) {
    let port = free_port();
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let server = Command::new(env!("CARGO_BIN_EXE_chatapp"))
        .args(["-s", &port.to_string(), "--data-dir", dir_arg, "--log-level", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    std::thread::sleep(Duration::from_millis(300));
    (server, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The real binary's resident memory: a server with `n` registered clients, and an idle client.
pub(crate) fn memory(scale: &Scale) -> Vec<Line> {
    let n = scale.memory_clients;
    let dir = TempDir::new().expect("dir");
    let bin = env!("CARGO_BIN_EXE_chatapp");
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let (mut server, addr) = server_binary(&dir);
    let port = addr.port();
    let empty = rss_kib(server.id());
    block_on(async {
        let seen = Rc::new(Seen::default());
        // Each registers, proves its address and goes offline at once (so the server keeps its
        // row, secret and address, the memory measured here, but pushes it no table).
        for i in 0..n {
            let mut sim = Sim::bind(&format!("m{i}"), addr).await;
            sim.register_and_leave(&seen).await;
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let full = rss_kib(server.id());
    // The server keeps each answer while its client may still retransmit (3.5 s): past that,
    // only the table is left.
    std::thread::sleep(Duration::from_millis(4000));
    let settled = rss_kib(server.id());
    let mut client = Command::new(bin)
        .args(["-c", "idle", "127.0.0.1", &port.to_string(), &free_port().to_string(), "--data-dir", dir_arg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a client");
    let mut out = std::io::BufReader::new(client.stdout.take().expect("stdout"));
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut out, &mut line).map(|n| n > 0).unwrap_or(false) && !line.contains("Welcome")
    {
        line.clear();
    }
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_kib(client.id());
    for child in [&mut client, &mut server] {
        let _ = child.kill();
        let _ = child.wait();
    }
    vec![
        Line {
            what: format!("6. server memory, {n} clients registered, 0.5 s after"),
            ours: format!("{:.1} MiB RSS", full as f64 / 1024.0),
            baseline: format!("{:.1} MiB with none", empty as f64 / 1024.0),
            ratio: format!("{:.2} KiB/client", (full.saturating_sub(empty)) as f64 / n as f64),
            target: "< 20 MiB",
        },
        Line {
            what: format!("6. server memory, {n} clients registered, 4.5 s after"),
            ours: format!("{:.1} MiB RSS", settled as f64 / 1024.0),
            baseline: format!("{:.1} MiB with none", empty as f64 / 1024.0),
            ratio: format!("{:.2} KiB/client", (settled.saturating_sub(empty)) as f64 / n as f64),
            target: "< 20 MiB",
        },
        Line {
            what: "6. idle client memory".into(),
            ours: format!("{:.1} MiB RSS", idle as f64 / 1024.0),
            baseline: String::new(),
            ratio: String::new(),
            target: "",
        },
    ]
}
