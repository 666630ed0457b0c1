//! A simulated client: one UDP socket that speaks the protocol directly (register, confirm,
//! table ACKs, channel ACKs, probe answers), so that one process can stand in for thousands.

use std::cell::RefCell;
use std::net::SocketAddr;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::collections::HashMap;

use chat_core::Entropy;
use chat_proto::{ClientRow, Datagram, MsgId, Name, REGISTER_PAD_TO, Secret, Text, decode, encode};
use chat_secure::ClientChannel;
use tokio::net::UdpSocket;

/// What every simulated client saw, added up.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) datagrams: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

pub(crate) struct Sim {
    pub(crate) name: Name,
    pub(crate) socket: UdpSocket,
    pub(crate) server: SocketAddr,
    /// The newest table seen: its version and how many clients it shows online.
    pub(crate) table: (u64, usize),
    /// The name's secret, once registered.
    pub(crate) secret: Option<Secret>,
    /// The server's other live nodes, as it last told.
    pub(crate) nodes: Vec<SocketAddr>,
    rows: HashMap<Name, bool>,
    pages: Option<(u64, Vec<Option<Vec<ClientRow>>>)>,
    next_id: u64,
    /// The encrypted channel to the server, as a real client has.
    channel: ClientChannel,
    plain: Vec<u8>,
}

/// A receive buffer that fits any datagram, taken from this thread's pool and given back when
/// dropped: thousands of requests would otherwise each allocate and zero 64 KiB, work that
/// competes with the server for the CPU and that a real client does once.
pub(crate) struct Buf(Vec<u8>);

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

impl Buf {
    pub(crate) fn take() -> Buf {
        Buf(POOL.with_borrow_mut(Vec::pop).unwrap_or_else(|| vec![0u8; 65_536]))
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        POOL.with_borrow_mut(|pool| pool.push(buf));
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

pub(crate) fn name(s: &str) -> Name {
    Name::new(s).expect("bench names are valid")
}

pub(crate) fn text(s: &str) -> Text {
    Text::new(s).expect("bench texts are valid")
}

/// A simulated client's key pair, the same for the same name.
pub(crate) fn key_of(n: &Name) -> chat_proto::KeyPair {
    let mut bytes = [0x5a; 32];
    for (i, b) in n.as_str().bytes().enumerate() {
        bytes[i % 32] ^= b;
    }
    chat_proto::KeyPair::from_secret(bytes)
}

/// `text` sealed as the clients seal direct messages (the server keeps it without opening it).
pub(crate) fn sealed(text: &str) -> chat_proto::Sealed {
    let (a, b) = (name("a"), name("b"));
    key_of(&a).pairwise(&key_of(&b).public()).seal_text(
        [7; chat_proto::NONCE_BYTES],
        &a,
        &b,
        chat_proto::MsgId(1),
        text,
    )
}

impl Sim {
    /// A client of `server` that pins the first key it shows (as a client with no `--server-key`
    /// does on its first run).
    pub(crate) async fn bind(name_: &str, server: SocketAddr) -> Sim {
        Sim::bind_pinned(name_, server, None).await
    }

    /// A client of `server` that takes only `pinned` for its key, if given (nodes that share
    /// a database show one key, so a client of either pins the same).
    pub(crate) async fn bind_pinned(name_: &str, server: SocketAddr, pinned: Option<chat_proto::PublicKey>) -> Sim {
        let socket = bind().await;
        Sim {
            name: name(name_),
            socket,
            server,
            table: (0, 0),
            secret: None,
            nodes: Vec::new(),
            rows: HashMap::new(),
            pages: None,
            next_id: rand_seed(),
            channel: ClientChannel::new(key_of(&name(name_)), pinned, Entropy::from_os().expect("OS randomness")),
            plain: vec![0u8; 65_536],
        }
    }

    /// The secret the server handed out at registration.
    pub(crate) fn secret(&self) -> Secret {
        self.secret.clone().expect("a simulated client sends in its name only once registered")
    }

    pub(crate) fn id(&mut self) -> MsgId {
        self.next_id += 1;
        MsgId(self.next_id)
    }

    pub(crate) async fn send(&mut self, d: &Datagram) {
        let bytes = encode(d).expect("bench datagrams encode");
        let now = std::time::Instant::now();
        self.channel.handle_timeout(now);
        self.channel.send(now, &bytes);
        self.flush().await;
    }

    /// Sends what the channel queued: handshake datagrams, and what waited for the session.
    async fn flush(&mut self) {
        while let Some(bytes) = self.channel.poll_transmit() {
            let _ = self.socket.send_to(&bytes, self.server).await;
        }
    }

    /// The datagram that `raw`, received from the server, carried (if it carried one).
    pub(crate) async fn open(&mut self, raw: &[u8]) -> Option<Datagram> {
        let opened = self.channel.receive(std::time::Instant::now(), raw, &mut self.plain).map(decode);
        self.flush().await;
        opened?.ok()
    }

    /// Sends `d` until a datagram for which `answer` returns `Some` arrives (other datagrams
    /// are handled as a client would).
    pub(crate) async fn request<T>(
        &mut self,
        d: &Datagram,
        seen: &Seen,
        mut answer: impl FnMut(&Datagram) -> Option<T>,
    ) -> T {
        let mut buf = Buf::take();
        loop {
            self.send(d).await;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await {
                let Some(got) = self.open(&buf[..len]).await else { continue };
                seen.datagrams.fetch_add(1, Ordering::Relaxed);
                seen.bytes.fetch_add(len as u64, Ordering::Relaxed);
                if let Some(t) = answer(&got) {
                    return t;
                }
                self.answer(&got).await;
            }
        }
    }

    /// Sends a padded `register` until `registered` comes; keeps the secret, returns the cookie.
    async fn registered(&mut self, seen: &Seen) -> u64 {
        let id = self.id();
        let pad = " ".repeat(REGISTER_PAD_TO);
        let key = key_of(&self.name).public();
        let reg = Datagram::Register { lan: None, id, name: self.name.clone(), secret: None, key, pad };
        let (cookie, secret, nodes) = self
            .request(&reg, seen, |d| match d {
                Datagram::Registered { id: got, cookie, secret, nodes, .. } if *got == id => {
                    Some((*cookie, secret.clone(), nodes.clone()))
                }
                _ => None,
            })
            .await;
        self.secret = Some(secret);
        self.nodes = nodes;
        cookie
    }

    /// Registers and proves the address (which gives a new name its row), again if the server
    /// refuses the proof (it forgot the registration).
    pub(crate) async fn register(&mut self, seen: &Seen) {
        loop {
            let cookie = self.registered(seen).await;
            let id = self.id();
            let acked = self
                .request(&Datagram::Confirm { id, cookie }, seen, |d| match d {
                    Datagram::Ack { id: got } if *got == id => Some(true),
                    Datagram::Refused { id: got, .. } if *got == id => Some(false),
                    _ => None,
                })
                .await;
            if acked {
                return;
            }
        }
    }

    /// Registers, proves the address and goes offline at once: the `dereg` right behind the
    /// `confirm`, so that the server, which reads both in one batch, has no table to push. What
    /// stays on the server is the row, its secret and indexes.
    pub(crate) async fn register_and_leave(&mut self, seen: &Seen) {
        let cookie = self.registered(seen).await;
        let (confirm, id) = (self.id(), self.id());
        self.send(&Datagram::Confirm { id: confirm, cookie }).await;
        let dereg = Datagram::Dereg { id, name: self.name.clone(), secret: self.secret() };
        let left = self
            .request(&dereg, seen, |d| match d {
                Datagram::Ack { id: got } if *got == id => Some(true),
                Datagram::Refused { id: got, .. } if *got == id => Some(false),
                _ => None,
            })
            .await;
        if !left {
            // The confirm was not taken (it came after the dereg): the long way round.
            self.register(seen).await;
            self.dereg(seen).await;
        }
    }

    pub(crate) async fn dereg(&mut self, seen: &Seen) {
        let id = self.id();
        let d = Datagram::Dereg { id, name: self.name.clone(), secret: self.secret() };
        self.request(&d, seen, |d| matches!(d, Datagram::Ack { id: got } if *got == id).then_some(())).await;
    }

    /// What a client answers to what the server sends on its own.
    pub(crate) async fn answer(&mut self, d: &Datagram) {
        let reply = match d {
            Datagram::Table(t) => {
                if t.version > self.table.0 {
                    self.replace(t.version, &t.clients);
                }
                Datagram::TableAck { version: t.version }
            }
            Datagram::TablePage { version, page, pages, clients } => {
                if *version <= self.table.0 {
                    Datagram::TableAck { version: *version }
                } else {
                    let p = self.pages.get_or_insert_with(|| (*version, vec![None; usize::from(*pages)]));
                    if p.0 != *version || p.1.len() != usize::from(*pages) {
                        *p = (*version, vec![None; usize::from(*pages)]);
                    }
                    if let Some(slot) = p.1.get_mut(usize::from(*page)) {
                        *slot = Some(clients.clone());
                    }
                    if p.1.iter().any(Option::is_none) {
                        return;
                    }
                    let all: Vec<ClientRow> =
                        self.pages.take().into_iter().flat_map(|p| p.1).flatten().flatten().collect();
                    self.replace(*version, &all);
                    Datagram::TableAck { version: *version }
                }
            }
            Datagram::TableDelta { base, version, rows } => {
                let have = self.table.0;
                if have >= *version {
                    Datagram::TableAck { version: *version }
                } else if have > 0 && have >= *base {
                    for r in rows {
                        self.rows.insert(r.name.clone(), r.online);
                    }
                    self.table = (*version, self.rows.values().filter(|on| **on).count());
                    Datagram::TableAck { version: *version }
                } else {
                    Datagram::TableAck { version: have }
                }
            }
            Datagram::Channel { id, .. } => Datagram::ChannelAck { id: *id },
            Datagram::Probe { id } => Datagram::ProbeAck { id: *id, name: self.name.clone() },
            Datagram::Nodes { nodes } => {
                self.nodes.clone_from(nodes);
                return;
            }
            _ => return,
        };
        self.send(&reply).await;
    }
}

impl Sim {
    /// Whether the newest table seen has a row for `who` (online or not).
    pub(crate) fn knows(&self, who: &Name) -> bool {
        self.rows.contains_key(who)
    }

    /// Handles what the server sends, as a client would, until `done` holds; false if it did
    /// not within `limit`.
    pub(crate) async fn until(&mut self, seen: &Seen, limit: Duration, done: impl Fn(&Sim) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = Buf::take();
        while !done(self) {
            let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await else {
                return false;
            };
            let Some(got) = self.open(&buf[..len]).await else { continue };
            seen.datagrams.fetch_add(1, Ordering::Relaxed);
            seen.bytes.fetch_add(len as u64, Ordering::Relaxed);
            self.answer(&got).await;
        }
        true
    }

    fn replace(&mut self, version: u64, rows: &[ClientRow]) {
        self.rows = rows.iter().map(|r| (r.name.clone(), r.online)).collect();
        self.table = (version, self.rows.values().filter(|on| **on).count());
    }
}

/// A loopback socket with the buffers the `chatapp` binary asks for (see `widen_buffers` in
/// `src/main.rs`): 4 MiB, so that a table in several large datagrams is not cut short.
pub(crate) async fn bind() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind a loopback socket");
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(&socket, sockopt::RcvBuf, &(4usize << 20));
    let _ = setsockopt(&socket, sockopt::SndBuf, &(4usize << 20));
    socket
}

pub(crate) fn rand_seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // No fallback: a bench without randomness stops and says why.
    let base = getrandom::u64().expect("the OS random source must give a seed");
    base ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 40)
}
