//! The encrypted channel between client and server (`chat-secure`), in process with no sockets:
//! what a handshake costs the two ends together, and what one request costs to seal and open,
//! each beside the primitive it is built on, measured in the same run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::Entropy;
use chat_proto::KeyPair;
use chat_secure::{ClientChannel, ServerChannel, ServerConfig};

use crate::{Line, Scale};

/// A save request's size on the wire before the channel: a sealed 100-byte text and its fields.
const REQUEST: usize = 400;

fn per_op(total: Duration, n: usize) -> Duration {
    total / u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Runs one client's first send through a new handshake with `server`; returns its channel.
fn handshake(server: &mut ServerChannel, key: &KeyPair, from: SocketAddr, buf: &mut [u8]) -> ClientChannel {
    let now = Instant::now();
    let mut client = ClientChannel::new(key.clone(), None, Entropy::from_seed([7; 32]));
    client.send(now, &[b'x'; REQUEST]);
    loop {
        let mut moved = false;
        while let Some(d) = client.poll_transmit() {
            moved = true;
            server.receive(now, from, &d, buf);
        }
        while let Some(t) = server.poll_transmit() {
            moved = true;
            client.receive(now, &t.bytes, buf);
        }
        if !moved {
            break;
        }
    }
    assert!(client.is_established(), "the benchmark's handshake completed");
    client
}

pub(crate) fn channel(scale: &Scale) -> Vec<Line> {
    let n = scale.pings;
    let server_key = KeyPair::from_secret([1; 32]);
    let mut server =
        ServerChannel::new(server_key.clone(), ServerConfig::default(), Instant::now(), Entropy::from_seed([2; 32]));
    let client_key = KeyPair::from_secret([3; 32]);
    let mut buf = vec![0u8; 70_000];

    // Baseline: one X25519 key agreement, the primitive a handshake does six of (three a side).
    let t = Instant::now();
    for i in 0..n {
        let mut secret = [5u8; 32];
        secret[0] = i as u8;
        std::hint::black_box(KeyPair::from_secret(secret).pairwise(&server_key.public()));
    }
    let dh = per_op(t.elapsed(), n);

    let t = Instant::now();
    for i in 0..n {
        let from = SocketAddr::from(([127, 0, 0, 1], 1024 + (i % 60_000) as u16));
        std::hint::black_box(handshake(&mut server, &client_key, from, &mut buf));
    }
    let full = per_op(t.elapsed(), n);

    // One request each way under the session, against sealing it end to end (crypto_box).
    let from = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut client = handshake(&mut server, &client_key, from, &mut buf);
    let request = vec![b'r'; REQUEST];
    let now = Instant::now();
    let t = Instant::now();
    for _ in 0..n * 10 {
        client.send(now, &request);
        let d = client.poll_transmit().expect("sealed at once");
        std::hint::black_box(server.receive(now, from, &d, &mut buf));
    }
    let round = per_op(t.elapsed(), n * 10);
    let pair = client_key.pairwise(&server_key.public());
    let (a, b) = (crate::sim::name("a"), crate::sim::name("b"));
    let text = "r".repeat(REQUEST);
    let t = Instant::now();
    for i in 0..n * 10 {
        let sealed = pair.seal_text([i as u8; chat_proto::NONCE_BYTES], &a, &b, chat_proto::MsgId(1), &text);
        std::hint::black_box(pair.open_text(&sealed, &a, &b, chat_proto::MsgId(1)).is_some());
    }
    let e2e = per_op(t.elapsed(), n * 10);

    vec![
        Line {
            what: "7. channel handshake, both ends".into(),
            ours: us(full),
            baseline: format!("{} per X25519", us(dh)),
            ratio: format!("{:.1}×", full.as_secs_f64() / dh.as_secs_f64()),
            target: "report",
        },
        Line {
            what: format!("7. channel seal+open, {REQUEST} B request"),
            ours: us(round),
            baseline: format!("{} end-to-end seal", us(e2e)),
            ratio: format!("{:.2}×", round.as_secs_f64() / e2e.as_secs_f64()),
            target: "report",
        },
    ]
}
