//! Across NATs (SPEC 11): what keepalives cost the server, and a round trip through the relay
//! beside a direct one between the same two simulated clients, in the same run.

use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use chat_proto::{Datagram, MsgId, decode, encode};
use tempfile::TempDir;

use crate::peers::ServerHandle;
use crate::sim::{Buf, Seen, Sim, name, sealed};
use crate::{Line, Scale, ms, percentile};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// CPU time a process has used so far (user and system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    // Fields 14 and 15 of the file (utime, stime) are the 12th and 13th after the name.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    let per_second: u64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100);
    Duration::from_micros(ticks * 1_000_000 / per_second.max(1))
}

/// The server binary's CPU share, idle and while `n` clients keep alive at the default
/// interval (25 s, so `n / 25` keepalives a second), each over the same window.
pub(crate) fn keepalive(scale: &Scale) -> Vec<Line> {
    const INTERVAL: Duration = Duration::from_secs(25);
    let n = scale.memory_clients;
    let window = if n >= 1000 { Duration::from_secs(20) } else { Duration::from_secs(3) };
    let dir = TempDir::new().expect("dir");
    let (mut server, addr) = crate::swarm::server_binary(&dir);
    let pid = server.id();
    let (idle, busy, sent, bytes) = block_on(async move {
        let seen = Rc::new(Seen::default());
        // Each holds a session and a row (registered, then gone offline so that the server
        // pushes no tables during the windows): a keepalive costs what it costs any client.
        let mut sims = Vec::with_capacity(n);
        for i in 0..n {
            let mut sim = Sim::bind(&format!("k{i}"), addr).await;
            sim.register_and_leave(&seen).await;
            sims.push(sim);
        }
        tokio::time::sleep(Duration::from_secs(4)).await; // the answers kept for retransmissions go
        let before = cpu_time(pid);
        tokio::time::sleep(window).await;
        let idle = cpu_time(pid).saturating_sub(before);
        let keepalive = encode(&Datagram::Keepalive).expect("encode").len() + chat_proto::CHANNEL_OVERHEAD;
        let mut ticker = tokio::time::interval(INTERVAL / u32::try_from(n).unwrap_or(u32::MAX));
        let (start, before) = (tokio::time::Instant::now(), cpu_time(pid));
        let mut sent = 0usize;
        while start.elapsed() < window {
            ticker.tick().await;
            let sim = &mut sims[sent % n];
            sim.send(&Datagram::Keepalive).await;
            sent += 1;
        }
        let busy = cpu_time(pid).saturating_sub(before);
        (idle, busy, sent, sent * keepalive)
    });
    let _ = server.kill();
    let _ = server.wait();
    let share = |cpu: Duration| 100.0 * cpu.as_secs_f64() / window.as_secs_f64();
    vec![Line {
        what: format!("8. keepalives, {n} clients at 25 s"),
        ours: format!("{:.2} % of a core", share(busy)),
        baseline: format!("{:.2} % idle", share(idle)),
        ratio: format!(
            "{:.0}/s, {:.1} KB/s",
            sent as f64 / window.as_secs_f64(),
            bytes as f64 / 1e3 / window.as_secs_f64()
        ),
        target: "< 2 % of a core (10,000 clients)",
    }]
}

/// The next datagram `sim` gets that `want` takes, answering the server's others as a client
/// would.
async fn until<T>(sim: &mut Sim, buf: &mut [u8], want: impl Fn(&Datagram) -> Option<T>) -> T {
    loop {
        let (len, from) = sim.socket.recv_from(buf).await.expect("receive");
        let d = if from == sim.server { sim.open(&buf[..len]).await } else { decode(&buf[..len]).ok() };
        let Some(d) = d else { continue };
        if let Some(t) = want(&d) {
            return t;
        }
        if from == sim.server {
            sim.answer(&d).await;
        }
    }
}

/// A chat and its ACK between two simulated clients: straight between their sockets, and
/// through the server's relay, paced under the relay's rate limit.
pub(crate) fn relay(scale: &Scale) -> Vec<Line> {
    let server = ServerHandle::start();
    let pings = (scale.pings / 10).max(20);
    let (mut direct, mut relayed) = block_on(async move {
        let seen = Rc::new(Seen::default());
        let mut a = Sim::bind("ra", server.addr).await;
        let mut b = Sim::bind("rb", server.addr).await;
        a.register(&seen).await;
        b.register(&seen).await;
        let b_addr = b.socket.local_addr().expect("addr");
        let (from, to) = (name("ra"), name("rb"));
        let sealed = sealed("a relayed message of a typical length, 60 bytes or so, ok!");
        let proof = sealed.clone();
        let mut buf = Buf::take();
        let (mut direct, mut relayed) = (Vec::new(), Vec::new());
        for i in 0..pings as u64 {
            let id = MsgId(i + 1);
            let chat = encode(&Datagram::Chat { id, from: from.clone(), to: to.clone(), sealed: sealed.clone() })
                .expect("chat");
            let ack = encode(&Datagram::ChatAck { id, proof: proof.clone() }).expect("ack");
            let t = Instant::now();
            a.socket.send_to(&chat, b_addr).await.expect("send");
            until(&mut b, &mut buf, |d| matches!(d, Datagram::Chat { .. }).then_some(())).await;
            b.socket.send_to(&ack, a.socket.local_addr().expect("addr")).await.expect("send");
            until(&mut a, &mut buf, |d| matches!(d, Datagram::ChatAck { id: got, .. } if *got == id).then_some(()))
                .await;
            direct.push(t.elapsed());

            let id = MsgId(1_000_000 + i);
            let t = Instant::now();
            a.send(&Datagram::RelayChat { id, from: from.clone(), to: to.clone(), sealed: sealed.clone() }).await;
            until(&mut b, &mut buf, |d| matches!(d, Datagram::RelayChat { id: got, .. } if *got == id).then_some(()))
                .await;
            b.send(&Datagram::RelayAck { id, from: to.clone(), to: from.clone(), proof: proof.clone() }).await;
            until(&mut a, &mut buf, |d| matches!(d, Datagram::RelayAck { id: got, .. } if *got == id).then_some(()))
                .await;
            relayed.push(t.elapsed());
            // The relay passes 50 a second per client: stay under it.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (direct, relayed)
    });
    let (d50, r50) = (percentile(&mut direct, 50.0), percentile(&mut relayed, 50.0));
    let (d99, r99) = (percentile(&mut direct, 99.0), percentile(&mut relayed, 99.0));
    vec![
        Line {
            what: "9. relayed round trip p50".into(),
            ours: ms(r50),
            baseline: format!("{} direct", ms(d50)),
            ratio: format!("{:.1}×", r50.as_secs_f64() / d50.as_secs_f64()),
            target: "< 2× direct",
        },
        Line {
            what: "9. relayed round trip p99".into(),
            ours: ms(r99),
            baseline: format!("{} direct", ms(d99)),
            ratio: format!("{:.1}×", r99.as_secs_f64() / d99.as_secs_f64()),
            target: "",
        },
    ]
}
