//! The client's end: starts a handshake when it has something to send and no session, pins the
//! server's key, and keeps what it sends waiting until the server confirmed the session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chat_core::Entropy;
use chat_proto::{KeyPair, PublicKey};

use crate::replay::Window;
use crate::{
    COOKIE, COOKIE_LEN, COOKIE_REPLY_LEN, DATA, E_LEN, FINAL, INITIATION, INITIATION_LEN, NO_SESSION, RESPONSE,
    RESPONSE_LEN, Transport, params, u32_at,
};

/// How often a handshake datagram is sent again while no answer comes.
pub(crate) const RESEND: Duration = Duration::from_millis(250);
/// How long a handshake is tried before it is dropped (the next send starts another).
pub(crate) const GIVE_UP: Duration = Duration::from_secs(5);
/// At most one new handshake this often for a `no session` from the server.
pub(crate) const RESTART_GAP: Duration = Duration::from_secs(1);
/// A session this old is replaced by a new handshake at the next send.
pub(crate) const REKEY_AFTER: Duration = Duration::from_secs(600);
/// How long a key other than the pinned one may be all the server's address shows before it is
/// refused: long enough for the genuine server to answer another initiation or two (a forged
/// response must not end the client), short of the cores' 3 s of retries.
pub(crate) const REFUSE_AFTER: Duration = Duration::from_secs(1);
/// How many plaintexts wait for a session; the oldest goes first (the cores resend).
const QUEUE: usize = 64;

/// What the channel tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server showed this key and none was pinned: keep it for next time.
    KeyLearned(PublicKey),
    /// The server showed `shown`, not the pinned key: the channel sends nothing more.
    KeyRefused {
        /// The key the server showed.
        shown: PublicKey,
        /// The key pinned for it.
        pinned: PublicKey,
    },
}

struct Handshake {
    state: snow::HandshakeState,
    index: u32,
    initiation: Vec<u8>,
    /// When the initiation was last sent.
    sent_at: Instant,
    resend_at: Instant,
    give_up_at: Instant,
}

/// A session whose last handshake datagram was sent: usable once the server confirms it.
struct Confirming {
    transport: Transport,
    index: u32,
    last: Vec<u8>,
    resend_at: Instant,
    give_up_at: Instant,
}

struct Session {
    transport: Transport,
    index: u32,
    since: Instant,
}

/// The client's end of the channel to its server.
pub struct ClientChannel {
    key: KeyPair,
    pinned: Option<PublicKey>,
    entropy: Entropy,
    handshake: Option<Handshake>,
    confirming: Option<Confirming>,
    session: Option<Session>,
    last_start: Option<Instant>,
    waiting: VecDeque<Vec<u8>>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    refused: bool,
    /// A response showed another key than the pinned one: refused if no response with the
    /// pinned key comes by the deadline (one forged response must not end the client).
    wrong_key: Option<(PublicKey, Instant)>,
    /// When to start again after a response with another key (not at once: each start sends
    /// 256 bytes).
    retry_at: Option<Instant>,
    /// When authentic data last came from the server, and when data last went to it: a
    /// `no session` is believed only if the server has not answered since we last sent.
    data_in: Option<Instant>,
    data_out: Option<Instant>,
    /// Datagrams from the server's address that were not authentic, not for a live session, or
    /// replays.
    dropped: u64,
}

impl ClientChannel {
    /// A channel for the client whose static key is `key`, to a server whose key is `pinned`
    /// (`None`: the first key the server shows is learned).
    pub fn new(key: KeyPair, pinned: Option<PublicKey>, entropy: Entropy) -> Self {
        Self {
            key,
            pinned,
            entropy,
            handshake: None,
            confirming: None,
            session: None,
            last_start: None,
            waiting: VecDeque::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            refused: false,
            wrong_key: None,
            retry_at: None,
            data_in: None,
            data_out: None,
            dropped: 0,
        }
    }

    /// Sends `plaintext` to the server: now under the session, or once a handshake gives one.
    pub fn send(&mut self, now: Instant, plaintext: &[u8]) {
        if self.refused {
            return;
        }
        let stale = self.session.as_ref().is_some_and(|s| now.duration_since(s.since) >= REKEY_AFTER);
        if stale && !self.starting() {
            self.start(now);
        }
        match self.session.as_mut().and_then(|s| s.transport.seal(plaintext)) {
            Some(datagram) => {
                self.data_out = Some(now);
                self.out.push_back(datagram);
            }
            None => {
                if self.waiting.len() == QUEUE {
                    self.waiting.pop_front();
                }
                self.waiting.push_back(plaintext.to_vec());
                if !self.starting() {
                    self.start(now);
                }
            }
        }
    }

    /// Handles a datagram from the server's address; the plaintext it carried, if it is
    /// authentic, new, and not the session's empty confirmation.
    pub fn receive<'a>(&mut self, now: Instant, bytes: &[u8], out: &'a mut [u8]) -> Option<&'a [u8]> {
        if self.refused {
            return None;
        }
        let taken = match bytes.first().copied() {
            Some(DATA) => return self.on_data(now, bytes, out),
            Some(RESPONSE) if bytes.len() == RESPONSE_LEN => self.on_response(now, bytes),
            Some(COOKIE) if bytes.len() == COOKIE_REPLY_LEN => self.on_cookie(now, bytes),
            Some(NO_SESSION) if bytes.len() == 1 => self.on_no_session(now),
            _ => false,
        };
        if !taken {
            self.dropped += 1;
        }
        None
    }

    /// The next datagram for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`ClientChannel::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let h = self.handshake.as_ref().map(|h| h.resend_at.min(h.give_up_at));
        let c = self.confirming.as_ref().map(|c| c.resend_at.min(c.give_up_at));
        let wrong = self.wrong_key.filter(|_| !self.refused).map(|(_, at)| at);
        h.into_iter().chain(c).chain(self.retry_at).chain(wrong).min()
    }

    /// Sends a handshake datagram again, or gives the handshake up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.refused {
            return;
        }
        if let Some((shown, deadline)) = self.wrong_key.filter(|_| self.session.is_none()) {
            if now >= deadline {
                // Only the other key answered, all this time: it is the server's.
                self.refuse(shown);
                return;
            }
        }
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            if !self.starting() {
                self.start(now);
            }
        }
        if let Some(h) = &mut self.handshake {
            if now >= h.give_up_at {
                self.handshake = None;
                self.waiting.clear();
            } else if now >= h.resend_at {
                h.resend_at = now + RESEND;
                h.sent_at = now;
                self.out.push_back(h.initiation.clone());
            }
        }
        if let Some(c) = &mut self.confirming {
            if now >= c.give_up_at {
                self.confirming = None;
                if self.session.is_none() {
                    self.waiting.clear();
                }
            } else if now >= c.resend_at {
                c.resend_at = now + RESEND;
                self.out.push_back(c.last.clone());
            }
        }
    }

    /// The key pinned for the server: given, or learned in a handshake.
    pub fn pinned(&self) -> Option<PublicKey> {
        self.pinned
    }

    /// Whether the channel has a session the server confirmed.
    pub fn is_established(&self) -> bool {
        self.session.is_some()
    }

    /// How many datagrams from the server's address were dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn starting(&self) -> bool {
        self.handshake.is_some() || self.confirming.is_some()
    }

    fn start(&mut self, now: Instant) {
        let secret = self.key.secret_bytes();
        let state = snow::Builder::new(params()).local_private_key(&secret).and_then(snow::Builder::build_initiator);
        let mut state = match state {
            Ok(state) => state,
            Err(e) => {
                tracing::error!("cannot start a handshake: {e}");
                return;
            }
        };
        let index = self.entropy.bytes::<4>();
        let mut initiation = vec![0u8; INITIATION_LEN];
        initiation[0] = INITIATION;
        initiation[1..5].copy_from_slice(&index);
        let noise_at = 5 + COOKIE_LEN;
        match state.write_message(&[], &mut initiation[noise_at..]) {
            Ok(E_LEN) => {}
            other => {
                tracing::error!("cannot start a handshake: {other:?}");
                return;
            }
        }
        self.out.push_back(initiation.clone());
        self.last_start = Some(now);
        self.handshake = Some(Handshake {
            state,
            index: u32::from_le_bytes(index),
            initiation,
            sent_at: now,
            resend_at: now + RESEND,
            give_up_at: now + GIVE_UP,
        });
    }

    fn on_cookie(&mut self, now: Instant, bytes: &[u8]) -> bool {
        let Some(h) = self.handshake.as_mut().filter(|h| u32_at(bytes, 1) == Some(h.index)) else { return false };
        let first = h.initiation[5..5 + COOKIE_LEN].iter().all(|b| *b == 0);
        h.initiation[5..5 + COOKIE_LEN].copy_from_slice(&bytes[5..5 + COOKIE_LEN]);
        // At once for the first cookie, then at most once a resend interval: a flood of forged
        // cookies (the index is in clear) must not make this client send more than it gets.
        if first || now.duration_since(h.sent_at) >= RESEND {
            h.sent_at = now;
            h.resend_at = now + RESEND;
            self.out.push_back(h.initiation.clone());
        }
        true
    }

    fn on_response(&mut self, now: Instant, bytes: &[u8]) -> bool {
        let Some(h) = self.handshake.as_mut().filter(|h| u32_at(bytes, 5) == Some(h.index)) else { return false };
        let Some(server_index) = u32_at(bytes, 1) else { return false };
        let mut payload = [0u8; 64];
        if h.state.read_message(&bytes[9..], &mut payload).is_err() {
            return false; // not the server's answer to this handshake: it goes on
        }
        let Some(Ok(shown)) = h.state.get_remote_static().map(<[u8; 32]>::try_from) else { return false };
        let shown = PublicKey::from(shown);
        match self.pinned {
            Some(pinned) if pinned != shown => {
                // Maybe forged (an attacker who saw our initiation can answer it): this
                // handshake is spent, another starts shortly; only if nothing but the other
                // key answers until the deadline is the server refused.
                self.handshake = None;
                let deadline = self.wrong_key.map_or(now + REFUSE_AFTER, |(_, at)| at);
                self.wrong_key = Some((shown, deadline));
                self.retry_at = Some(now + RESEND);
                return true;
            }
            // The pinned key answered: whatever showed another key before was not the server.
            Some(_) => self.wrong_key = None,
            None => {
                self.pinned = Some(shown);
                self.events.push_back(ClientEvent::KeyLearned(shown));
            }
        }
        let Some(h) = self.handshake.take() else { return false };
        let mut state = h.state;
        let mut last = vec![0u8; crate::FINAL_LEN];
        last[0] = FINAL;
        last[1..5].copy_from_slice(&server_index.to_le_bytes());
        if state.write_message(&[], &mut last[5..]).is_err() {
            return false;
        }
        let Ok(keys) = state.into_stateless_transport_mode() else { return false };
        self.out.push_back(last.clone());
        let transport = Transport { keys, their_index: server_index, sent: 0, window: Window::new() };
        self.confirming =
            Some(Confirming { transport, index: h.index, last, resend_at: now + RESEND, give_up_at: now + GIVE_UP });
        true
    }

    fn on_data<'a>(&mut self, now: Instant, bytes: &[u8], out: &'a mut [u8]) -> Option<&'a [u8]> {
        let index = u32_at(bytes, 1);
        let len = if let Some(c) = self.confirming.as_mut().filter(|c| Some(c.index) == index) {
            let len = c.transport.open(bytes, out);
            if len.is_some() {
                // The server's first datagram under the new session: it has the session.
                if let Some(c) = self.confirming.take() {
                    self.session = Some(Session { transport: c.transport, index: c.index, since: now });
                    self.flush_waiting(now);
                }
            }
            len
        } else if let Some(s) = self.session.as_mut().filter(|s| Some(s.index) == index) {
            s.transport.open(bytes, out)
        } else {
            None
        };
        if len.is_some() {
            self.data_in = Some(now);
        }
        match len {
            None => {
                self.dropped += 1;
                None
            }
            Some(0) => None, // a confirmation
            Some(len) => Some(&out[..len]),
        }
    }

    fn on_no_session(&mut self, now: Instant) -> bool {
        if self.handshake.is_some() {
            return false;
        }
        if self.confirming.is_some() {
            // The server lost the handshake we are finishing (it restarted): start again now,
            // rather than wait out the retries of our last datagram.
            if self.last_start.is_some_and(|at| now.duration_since(at) < RESEND) {
                return false;
            }
            self.confirming = None;
            self.start(now);
            return true;
        }
        // Believed only if the server has not answered since we last sent: a `no session` is
        // not authenticated, and a forged one must not cost a handshake while all is well.
        let unanswered = self.data_out.is_some_and(|out| self.data_in.is_none_or(|got| got < out));
        if !unanswered || self.last_start.is_some_and(|at| now.duration_since(at) < RESTART_GAP) {
            return false;
        }
        self.start(now);
        true
    }

    fn refuse(&mut self, shown: PublicKey) {
        let Some(pinned) = self.pinned else { return };
        self.refused = true;
        self.retry_at = None;
        self.handshake = None;
        self.confirming = None;
        self.waiting.clear();
        self.events.push_back(ClientEvent::KeyRefused { shown, pinned });
    }

    fn flush_waiting(&mut self, now: Instant) {
        while let Some(plaintext) = self.waiting.pop_front() {
            if let Some(datagram) = self.session.as_mut().and_then(|s| s.transport.seal(&plaintext)) {
                self.data_out = Some(now);
                self.out.push_back(datagram);
            }
        }
    }
}
