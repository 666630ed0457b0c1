//! The server's end: answers handshakes (with a cookie first when many are half-open), keeps a
//! session per client address, and tells whom it has no session with to start one.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{BoundedMap, Entropy, Transmit};
use chat_proto::{KeyPair, PublicKey};
use subtle::ConstantTimeEq;

use crate::replay::Window;
use crate::{
    COOKIE, COOKIE_LEN, COOKIE_REPLY_LEN, DATA, E_LEN, FINAL, FINAL_LEN, INITIATION, INITIATION_LEN, NO_SESSION,
    RESPONSE, RESPONSE_LEN, Transport, params, u32_at,
};

/// How long a half-open handshake waits for the client's last datagram.
const PENDING_FOR: Duration = Duration::from_secs(5);
/// A cookie is good in the period it was made and the next one: one to two of these.
pub(crate) const COOKIE_PERIOD: Duration = Duration::from_secs(60);
/// At most one `no session` per address this often.
const HINT_GAP: Duration = Duration::from_secs(1);
/// A session not heard from for this long is dropped (online clients keep alive far more
/// often); its client, if it comes back, is told `no session` and makes another.
pub(crate) const IDLE_FOR: Duration = Duration::from_secs(3600);
/// How often idle sessions are looked for.
const IDLE_SWEEP: Duration = Duration::from_secs(60);

/// The server channel's limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// With this many handshakes half-open, an initiation must carry a valid cookie.
    pub busy_at: usize,
    /// The most half-open handshakes kept; the oldest goes first.
    pub max_pending: usize,
    /// The most sessions kept; the oldest goes first.
    pub max_sessions: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { busy_at: 1024, max_pending: 4096, max_sessions: 1 << 20 }
    }
}

struct Pending {
    state: snow::HandshakeState,
    from: SocketAddr,
    their_index: u32,
    response: Arc<[u8]>,
}

struct Session {
    transport: Transport,
    from: SocketAddr,
    key: PublicKey,
    /// When authentic data last came under it (or it was made).
    heard: Instant,
}

/// The sessions at one address: the newest, and the one before it while the client may still
/// be sending under it.
#[derive(Clone, Copy)]
struct Slots {
    current: u32,
    previous: Option<u32>,
}

/// The server's end of the channels to its clients.
pub struct ServerChannel {
    key: KeyPair,
    cfg: ServerConfig,
    entropy: Entropy,
    cookie_key: [u8; 32],
    epoch: Instant,
    pending: HashMap<u32, Pending>,
    pending_by_peer: HashMap<(SocketAddr, u32), u32>,
    /// Half-open handshakes in the order they expire (all wait as long).
    pending_order: VecDeque<(Instant, u32)>,
    sessions: HashMap<u32, Session>,
    by_addr: HashMap<SocketAddr, Slots>,
    session_order: VecDeque<u32>,
    hinted: BoundedMap<SocketAddr, Instant>,
    out: VecDeque<Transmit>,
    dropped: u64,
    next_idle_sweep: Instant,
}

impl ServerChannel {
    /// The channel of the server whose static key is `key`.
    pub fn new(key: KeyPair, cfg: ServerConfig, now: Instant, mut entropy: Entropy) -> Self {
        let cookie_key = entropy.bytes();
        Self {
            key,
            cfg,
            entropy,
            cookie_key,
            epoch: now,
            pending: HashMap::new(),
            pending_by_peer: HashMap::new(),
            pending_order: VecDeque::new(),
            sessions: HashMap::new(),
            by_addr: HashMap::new(),
            session_order: VecDeque::new(),
            hinted: BoundedMap::new(4096),
            out: VecDeque::new(),
            dropped: 0,
            next_idle_sweep: now + IDLE_SWEEP,
        }
    }

    /// Handles a datagram from `from`: the client's key and the plaintext it carried, if it is
    /// data that is authentic, new, and under the session of that address.
    pub fn receive<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        out: &'a mut [u8],
    ) -> Option<(PublicKey, &'a [u8])> {
        let taken = match bytes.first().copied() {
            Some(DATA) => return self.on_data(now, from, bytes, out),
            Some(INITIATION) if bytes.len() == INITIATION_LEN => self.on_initiation(now, from, bytes),
            Some(FINAL) if bytes.len() == FINAL_LEN => self.on_final(now, from, bytes),
            _ => false,
        };
        if !taken {
            self.dropped += 1;
        }
        None
    }

    /// Sends `plaintext` to the client at `to`, under its session: of the sessions at that
    /// address with `key` (the key of the client the server knows there, or of the one whose
    /// request this answers; any key if none is given), the one heard from last.
    /// An attacker who makes a session from a client's address (it is on the path) so gets
    /// nothing meant for that client. Without such a session, the client is told to start one
    /// (the cores send again).
    pub fn send(&mut self, now: Instant, to: SocketAddr, key: Option<PublicKey>, plaintext: &[u8]) {
        let sealed = self.session_for(to, key).and_then(|s| s.transport.seal(plaintext));
        match sealed {
            Some(bytes) => self.out.push_back(Transmit { to, bytes: bytes.into() }),
            None => self.hint(now, to),
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`ServerChannel::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = (!self.sessions.is_empty()).then_some(self.next_idle_sweep);
        self.pending_order.front().map(|(at, _)| *at).into_iter().chain(idle).min()
    }

    /// Forgets handshakes left half-open too long, and sessions idle for an hour.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_idle_sweep {
            self.next_idle_sweep = now + IDLE_SWEEP;
            let idle: Vec<u32> = self
                .sessions
                .iter()
                .filter(|(_, s)| now.duration_since(s.heard) >= IDLE_FOR)
                .map(|(i, _)| *i)
                .collect();
            for index in idle {
                self.forget_session(index);
            }
        }
        while let Some(&(at, index)) = self.pending_order.front() {
            if at > now {
                break;
            }
            self.pending_order.pop_front();
            self.forget_pending(index);
        }
    }

    /// How many sessions are kept.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// How many handshakes are half-open.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many datagrams were dropped: not authentic, not for a live session, or replays.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The session to send to `to` under: see [`ServerChannel::send`].
    fn session_for(&mut self, to: SocketAddr, key: Option<PublicKey>) -> Option<&mut Session> {
        let slots = *self.by_addr.get(&to)?;
        let candidates = [Some(slots.current), slots.previous];
        let best = candidates
            .into_iter()
            .flatten()
            .filter_map(|i| self.sessions.get(&i).filter(|s| key.is_none_or(|k| s.key == k)).map(|s| (s.heard, i)))
            .max()
            .map(|(_, i)| i)?;
        self.sessions.get_mut(&best)
    }

    fn hint(&mut self, now: Instant, to: SocketAddr) {
        if self.hinted.get(&to).is_some_and(|at| now.duration_since(*at) < HINT_GAP) {
            return;
        }
        self.hinted.insert(to, now);
        self.out.push_back(Transmit { to, bytes: Arc::from([NO_SESSION].as_slice()) });
    }

    fn cookie(&self, period: u64, from: SocketAddr, their_index: u32) -> [u8; COOKIE_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.cookie_key);
        h.update(&period.to_le_bytes());
        match from {
            SocketAddr::V4(a) => h.update(&a.ip().octets()),
            SocketAddr::V6(a) => h.update(&a.ip().octets()),
        };
        h.update(&from.port().to_le_bytes());
        h.update(&their_index.to_le_bytes());
        let mut cookie = [0u8; COOKIE_LEN];
        cookie.copy_from_slice(&h.finalize().as_bytes()[..COOKIE_LEN]);
        cookie
    }

    fn period(&self, now: Instant) -> u64 {
        (now.duration_since(self.epoch).as_secs()) / COOKIE_PERIOD.as_secs()
    }

    fn cookie_is_valid(&self, now: Instant, from: SocketAddr, their_index: u32, shown: &[u8]) -> bool {
        let period = self.period(now);
        let this = self.cookie(period, from, their_index).ct_eq(shown);
        let last = self.cookie(period.saturating_sub(1), from, their_index).ct_eq(shown);
        bool::from(this | last)
    }

    fn on_initiation(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        let Some(their_index) = u32_at(bytes, 1) else { return false };
        if let Some(pending) = self.pending_by_peer.get(&(from, their_index)).and_then(|i| self.pending.get(i)) {
            // The client did not get the response: the same again.
            let bytes = pending.response.clone();
            self.out.push_back(Transmit { to: from, bytes });
            return true;
        }
        if self.pending.len() >= self.cfg.busy_at
            && !self.cookie_is_valid(now, from, their_index, &bytes[5..5 + COOKIE_LEN])
        {
            let mut reply = Vec::with_capacity(COOKIE_REPLY_LEN);
            reply.push(COOKIE);
            reply.extend_from_slice(&their_index.to_le_bytes());
            reply.extend_from_slice(&self.cookie(self.period(now), from, their_index));
            self.out.push_back(Transmit { to: from, bytes: reply.into() });
            return true;
        }
        while self.pending.len() >= self.cfg.max_pending {
            let Some((_, oldest)) = self.pending_order.pop_front() else { break };
            self.forget_pending(oldest);
        }
        let secret = self.key.secret_bytes();
        let Ok(mut state) =
            snow::Builder::new(params()).local_private_key(&secret).and_then(snow::Builder::build_responder)
        else {
            return false;
        };
        let noise_at = 5 + COOKIE_LEN;
        let mut payload = [0u8; 64];
        if state.read_message(&bytes[noise_at..noise_at + E_LEN], &mut payload).is_err() {
            return false;
        }
        let index = self.new_index();
        let mut response = vec![0u8; RESPONSE_LEN];
        response[0] = RESPONSE;
        response[1..5].copy_from_slice(&index.to_le_bytes());
        response[5..9].copy_from_slice(&their_index.to_le_bytes());
        if state.write_message(&[], &mut response[9..]).is_err() {
            return false;
        }
        let response: Arc<[u8]> = response.into();
        self.out.push_back(Transmit { to: from, bytes: response.clone() });
        self.pending.insert(index, Pending { state, from, their_index, response });
        self.pending_by_peer.insert((from, their_index), index);
        self.pending_order.push_back((now + PENDING_FOR, index));
        true
    }

    fn on_final(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        let Some(index) = u32_at(bytes, 1) else { return false };
        if self.sessions.get(&index).is_some_and(|s| s.from == from) {
            // The client did not get the confirmation: another one.
            self.confirm(index);
            return true;
        }
        if self.pending.get(&index).is_none_or(|p| p.from != from) {
            // A handshake this server does not have (it restarted in the middle): the client is
            // told to start again rather than wait out its retries.
            self.hint(now, from);
            return false;
        }
        let mut payload = [0u8; 64];
        let read = self.pending.get_mut(&index).map(|p| p.state.read_message(&bytes[5..], &mut payload));
        if !matches!(read, Some(Ok(_))) {
            return false; // not this handshake's last datagram: it may still come
        }
        let Some(pending) = self.forget_pending(index) else { return false };
        let Some(Ok(key)) = pending.state.get_remote_static().map(<[u8; 32]>::try_from) else { return false };
        let key = PublicKey::from(key);
        let Ok(keys) = pending.state.into_stateless_transport_mode() else { return false };
        let transport = Transport { keys, their_index: pending.their_index, sent: 0, window: Window::new() };
        while self.sessions.len() >= self.cfg.max_sessions {
            let Some(oldest) = self.session_order.pop_front() else { break };
            self.forget_session(oldest);
        }
        self.sessions.insert(index, Session { transport, from, key, heard: now });
        self.session_order.push_back(index);
        if self.session_order.len() > 2 * self.sessions.len() + 64 {
            let sessions = &self.sessions;
            self.session_order.retain(|i| sessions.contains_key(i));
        }
        let slots = match self.by_addr.get(&from).copied() {
            Some(old) => {
                if let Some(older) = old.previous {
                    self.forget_session(older);
                }
                Slots { current: index, previous: Some(old.current) }
            }
            None => Slots { current: index, previous: None },
        };
        self.by_addr.insert(from, slots);
        self.confirm(index);
        true
    }

    fn on_data<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        out: &'a mut [u8],
    ) -> Option<(PublicKey, &'a [u8])> {
        let index = u32_at(bytes, 1)?;
        let Some(session) = self.sessions.get_mut(&index).filter(|s| s.from == from) else {
            self.dropped += 1;
            self.hint(now, from);
            return None;
        };
        let Some(len) = session.transport.open(bytes, out) else {
            self.dropped += 1;
            return None;
        };
        let key = session.key;
        session.heard = now;
        if let Some(slots) = self.by_addr.get_mut(&from).filter(|s| s.previous.is_some() && s.current == index) {
            // The client uses the newest session: the one before is done.
            if let Some(older) = slots.previous.take() {
                self.forget_session(older);
            }
        }
        (len > 0).then_some((key, &out[..len]))
    }

    fn confirm(&mut self, index: u32) {
        if let Some(s) = self.sessions.get_mut(&index) {
            if let Some(bytes) = s.transport.seal(&[]) {
                self.out.push_back(Transmit { to: s.from, bytes: bytes.into() });
            }
        }
    }

    fn new_index(&mut self) -> u32 {
        loop {
            let index = u32::from_le_bytes(self.entropy.bytes());
            if !self.pending.contains_key(&index) && !self.sessions.contains_key(&index) {
                return index;
            }
        }
    }

    fn forget_pending(&mut self, index: u32) -> Option<Pending> {
        let pending = self.pending.remove(&index)?;
        self.pending_by_peer.remove(&(pending.from, pending.their_index));
        Some(pending)
    }

    fn forget_session(&mut self, index: u32) {
        let Some(session) = self.sessions.remove(&index) else { return };
        if let Some(slots) = self.by_addr.get_mut(&session.from) {
            if slots.current == index {
                match slots.previous.take() {
                    Some(previous) => slots.current = previous,
                    None => {
                        self.by_addr.remove(&session.from);
                    }
                }
            } else if slots.previous == Some(index) {
                slots.previous = None;
            }
        }
    }
}
