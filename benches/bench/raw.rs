//! Baselines: what plain sockets and a plain file do on this machine, in the same run.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::UdpSocket;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// An echo peer on its own thread (on core `cpu`, if given) that answers every datagram with
/// `reply`.
fn echo(reply: Vec<u8>, cpu: Option<usize>) -> std::net::SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = sock.local_addr().expect("addr");
    thread::spawn(move || {
        crate::cpu::pin(cpu);
        let mut buf = vec![0u8; 65_536];
        while let Ok((_, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&reply, from);
        }
    });
    addr
}

/// Round trips of `request` / `reply` between two plain sockets, one at a time; the echo
/// runs on core `far`.
pub(crate) fn ping_pong(request: &[u8], reply: &[u8], n: usize, far: usize) -> Vec<Duration> {
    let peer = echo(reply.to_vec(), Some(far));
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut buf = vec![0u8; 65_536];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            sock.send_to(request, peer).expect("send");
            sock.recv_from(&mut buf).expect("recv");
            t.elapsed()
        })
        .collect()
}

/// Request/response pairs per second with `window` requests in flight.
pub(crate) fn pairs_per_second(request: &[u8], reply: &[u8], n: usize, window: usize) -> f64 {
    let peer = echo(reply.to_vec(), None);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut buf = vec![0u8; 65_536];
    let t = Instant::now();
    let (mut sent, mut got) = (0, 0);
    while got < n {
        while sent < n && sent - got < window {
            sock.send_to(request, peer).expect("send");
            sent += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok(_) => got += 1,
            Err(_) => sent = got, // a datagram was lost: send the missing ones again
        }
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Appends `record` and fdatasyncs it, `n` times, one after the other.
pub(crate) fn append_and_sync(dir: &Path, record: &[u8], n: usize) -> Vec<Duration> {
    let mut file = OpenOptions::new().create(true).append(true).open(dir.join("raw.log")).expect("open");
    (0..n)
        .map(|_| {
            let t = Instant::now();
            file.write_all(record).expect("write");
            file.sync_data().expect("fdatasync");
            t.elapsed()
        })
        .collect()
}

/// One socket sends `msg` to `n` sockets (all served on one thread, as the simulated clients
/// are), which answer `ack`; the time until every one of them has it.
pub(crate) fn fanout(msg: &[u8], ack: &[u8], n: usize) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, async move {
        let got = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let mut peers = Vec::with_capacity(n);
        for _ in 0..n {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            peers.push(sock.local_addr().expect("addr"));
            let (ack, got) = (ack.to_vec(), got.clone());
            tokio::task::spawn_local(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((_, from)) = sock.recv_from(&mut buf).await {
                    got.set(got.get() + 1);
                    let _ = sock.send_to(&ack, from).await;
                }
            });
        }
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let t = Instant::now();
        for p in &peers {
            sock.send_to(msg, p).await.expect("send");
        }
        while got.get() < n && t.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        t.elapsed()
    })
}

/// The same round trips between two tokio sockets on two current-thread runtimes: the floor
/// for any program built on tokio's readiness model (a failed `recvfrom` and an `epoll_wait`
/// per datagram, where a blocking socket makes one `recvfrom`). The echo runs on core `far`.
pub(crate) fn tokio_ping_pong(request: &[u8], reply: &[u8], n: usize, far: usize) -> Vec<Duration> {
    let rt = || tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (tx, rx) = std::sync::mpsc::channel();
    let reply = reply.to_vec();
    thread::spawn(move || {
        crate::cpu::pin(Some(far));
        rt().block_on(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            tx.send(sock.local_addr().expect("addr")).expect("send addr");
            let mut buf = vec![0u8; 65_536];
            while let Ok((_, from)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(&reply, from).await;
            }
        });
    });
    let peer = rx.recv().expect("peer address");
    rt().block_on(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut buf = vec![0u8; 65_536];
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            sock.send_to(request, peer).await.expect("send");
            sock.recv_from(&mut buf).await.expect("recv");
            samples.push(t.elapsed());
        }
        samples
    })
}
