//! Attackers of the server: an [`Attacker`] that speaks the real client-server channel, and a
//! [`Cleartext`] socket that sends datagrams as they were before the channel.
//!
//! The [`Attacker`] is a UDP socket on 127.0.0.1 and a `chat_secure::ClientChannel` with a
//! fresh key of its own: its JSON (the format of `docs/PROTOCOL.md`, written by the tests) goes
//! out in the channel's data datagrams after a real handshake, so it reaches the server's core
//! as an authenticated client's would, and is judged there. It counts the bytes it sent and
//! received on the wire, handshake included, for the amplification checks.
//!
//! Knows the channel's API (the same the client binary drives), not its wire format.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use chat_core::Entropy;
use chat_proto::{KeyPair, PublicKey};
use chat_secure::ClientChannel;
use serde_json::Value;

use super::Proc;

/// The largest datagram either side sends, and one byte more to see one that is larger.
const BUF: usize = 65_536;

/// A client of the server's channel with a key of its own, never registered unless a test
/// registers it.
pub struct Attacker {
    sock: UdpSocket,
    server: SocketAddr,
    key: PublicKey,
    channel: ClientChannel,
    /// Bytes sent to the server on the wire, handshake included.
    sent: usize,
    /// Bytes received from the server on the wire, handshake included.
    received: usize,
    /// Every plaintext the server sent, in order.
    plaintexts: Vec<Vec<u8>>,
    buf: Vec<u8>,
    plain: Vec<u8>,
}

impl Attacker {
    /// An attacker on a fresh port of 127.0.0.1 (the clients' IP), with a fresh key, for the
    /// server on `server_port`. It pins no key: it takes the one the server shows, as a client
    /// at its first run does. Nothing is sent before [`Attacker::send`].
    pub fn new(server_port: u16) -> Attacker {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the attacker's socket");
        let pair = KeyPair::generate().expect("a key from the OS random source");
        let key = pair.public();
        let channel = ClientChannel::new(pair, None, Entropy::from_os().expect("randomness from the OS"));
        let server = SocketAddr::from(([127, 0, 0, 1], server_port));
        Attacker {
            sock,
            server,
            key,
            channel,
            sent: 0,
            received: 0,
            plaintexts: Vec::new(),
            buf: vec![0; BUF],
            plain: vec![0; BUF],
        }
    }

    /// The attacker's public key: the one its channel shows the server.
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// Bytes sent to the server so far, on the wire (handshake included).
    pub fn sent_bytes(&self) -> usize {
        self.sent
    }

    /// Bytes received from the server so far, on the wire (handshake included).
    pub fn received_bytes(&self) -> usize {
        self.received
    }

    /// Sends `plaintext` to the server through the channel `times` times, each in a datagram of
    /// its own (as a client's retransmissions are). Before the first session, the channel keeps
    /// them and starts the handshake; they leave once [`Attacker::collect`] or
    /// [`Attacker::expect_answer`] has driven it to a session.
    pub fn send(&mut self, plaintext: &[u8], times: usize) {
        let now = Instant::now();
        for _ in 0..times {
            self.channel.send(now, plaintext);
        }
        self.flush();
    }

    /// Every plaintext the server sent so far, in order.
    pub fn plaintexts(&self) -> &[Vec<u8>] {
        &self.plaintexts
    }

    /// Keeps the channel going for all of `within`; returns every plaintext the server sent
    /// meanwhile, in order.
    pub fn collect(&mut self, within: Duration) -> Vec<Vec<u8>> {
        let from = self.plaintexts.len();
        self.pump(within, |_| false);
        self.plaintexts[from..].to_vec()
    }

    /// Keeps the channel going until the server sends a JSON plaintext that `pred` accepts, and
    /// returns it; fails `server` (with its output) if none comes within `within`. Plaintexts
    /// that `pred` does not accept are passed over.
    pub fn expect_answer(
        &mut self,
        server: &Proc,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut found = None;
        self.pump(within, |plaintext| {
            found = serde_json::from_slice::<Value>(plaintext).ok().filter(&pred);
            found.is_some()
        });
        match found {
            Some(answer) => answer,
            None => {
                let seen: Vec<String> = self
                    .plaintexts
                    .iter()
                    .map(|p| String::from_utf8_lossy(&p[..p.len().min(200)]).into_owned())
                    .collect();
                server.fail(&format!(
                    "the attacker at {} got no {what} within {within:?} (session established: {}; \
                 plaintexts received: {seen:?}; wire bytes sent {}, received {})",
                    self.addr(),
                    self.channel.is_established(),
                    self.sent,
                    self.received
                ))
            }
        }
    }

    fn addr(&self) -> String {
        self.sock.local_addr().map_or_else(|e| format!("<{e}>"), |a| a.to_string())
    }

    /// Receives from the server, hands what comes to the channel, keeps the plaintexts it yields
    /// and shows each to `take`, and runs the channel's timers (handshake retransmissions), until `within` has
    /// passed or `take` says it is done.
    fn pump(&mut self, within: Duration, mut take: impl FnMut(&[u8]) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            self.flush();
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let wake = self.channel.poll_timeout().map_or(deadline, |at| at.min(deadline));
            let wait = wake.saturating_duration_since(now).max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(wait)).expect("set a read timeout");
            match self.sock.recv_from(&mut self.buf) {
                Ok((len, from)) if from == self.server => {
                    self.received += len;
                    let now = Instant::now();
                    if let Some(plaintext) = self.channel.receive(now, &self.buf[..len], &mut self.plain) {
                        self.plaintexts.push(plaintext.to_vec());
                        if take(plaintext) {
                            self.flush();
                            return;
                        }
                    }
                }
                Ok(_) => {} // not from the server: nobody else talks to this socket
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("the attacker's socket failed: {e}"),
            }
            self.channel.handle_timeout(Instant::now());
        }
    }

    /// Sends what the channel queued, counting its bytes.
    fn flush(&mut self) {
        while let Some(datagram) = self.channel.poll_transmit() {
            self.sent += self.sock.send_to(&datagram, self.server).expect("send to the server");
        }
    }
}

/// A socket that sends datagrams to the server in clear, as clients did before the channel:
/// the server must not answer them at all.
pub struct Cleartext {
    sock: UdpSocket,
}

impl Cleartext {
    /// Sends `datagram` in clear to the server on `server_port`, `times` times, from a fresh
    /// port of 127.0.0.1.
    pub fn send(server_port: u16, datagram: &[u8], times: usize) -> Cleartext {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the cleartext socket");
        for _ in 0..times {
            sock.send_to(datagram, ("127.0.0.1", server_port)).expect("send a datagram in clear");
        }
        Cleartext { sock }
    }

    /// Every datagram that came back so far, and any that comes within `grace`.
    pub fn answers(&self, grace: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + grace;
        let mut buf = vec![0; BUF];
        let mut answers = Vec::new();
        loop {
            let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(wait)).expect("set a read timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((len, _)) => answers.push(buf[..len].to_vec()),
                Err(_) if Instant::now() >= deadline => return answers,
                Err(_) => {}
            }
        }
    }

    /// Fails `server` if anything came back. Call it once the server has handled what came
    /// after these datagrams (an answer to the same request through the channel, sent later):
    /// it answered these by then, if at all, and `grace` leaves the answer time to arrive.
    pub fn assert_unanswered(&self, server: &Proc, grace: Duration) {
        let answers = self.answers(grace);
        if !answers.is_empty() {
            let shown: Vec<String> =
                answers.iter().map(|a| String::from_utf8_lossy(&a[..a.len().min(200)]).into_owned()).collect();
            server.fail(&format!("answered datagrams sent in clear with {} datagram(s): {shown:?}", answers.len()));
        }
    }
}

/// The key the server logs at start (`server key <hex> (clients may pin it with
/// --server-key)`), waited for on its stderr.
pub fn logged_server_key(server: &Proc) -> PublicKey {
    let line = server.expect_contains("server key ", super::WAIT);
    let hex = line.split("server key ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default();
    match hex.parse() {
        Ok(key) => key,
        Err(_) => server.fail(&format!("the key line {line:?} does not name a key of 64 hex digits")),
    }
}
