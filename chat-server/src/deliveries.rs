//! Channel deliveries: each channel message on its way to each online member, retransmitted
//! inside one ACK window. Owns the deliveries in flight and their deadlines; a delivery whose
//! window ends unACKed is handed back, for the caller to probe its recipient.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{Deadlines, Transmit};
use chat_proto::{MsgId, Name, StoredMessage};

use crate::outbox::Outbox;

/// Channel datagrams are retransmitted this many times per ACK window.
const SENDS_PER_WINDOW: u32 = 5;

type Key = (SocketAddr, MsgId);

/// One channel message on its way to one recipient.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub to: Name,
    pub addr: SocketAddr,
    id: MsgId,
    pub msg: Arc<StoredMessage>,
    bytes: Arc<[u8]>,
    deadline: Instant,
    next_send: Instant,
    /// Windows already spent on this recipient (one more each time it answers a probe).
    rounds: u32,
}

impl Delivery {
    /// Message `msg` (channel id `id`, encoded as `bytes`) for `to` at `addr`, as of `now`.
    pub fn new(now: Instant, to: Name, addr: SocketAddr, id: MsgId, msg: (Arc<StoredMessage>, Arc<[u8]>)) -> Self {
        let (msg, bytes) = msg;
        Self { to, addr, id, msg, bytes, deadline: now, next_send: now, rounds: 0 }
    }
}

/// The deliveries in flight, by recipient address and channel id.
#[derive(Debug)]
pub(crate) struct Deliveries {
    window: Duration,
    retries: u32,
    live: HashMap<Key, Delivery>,
    due: Deadlines<Key>,
}

impl Deliveries {
    /// Deliveries with an ACK window of `window`, given `retries` more windows after a probe.
    pub fn new(window: Duration, retries: u32) -> Self {
        Self { window, retries, live: HashMap::new(), due: Deadlines::default() }
    }

    /// Sends `d` now and opens a fresh ACK window for it.
    pub fn deliver(&mut self, now: Instant, mut d: Delivery, out: &mut Outbox) {
        d.deadline = now + self.window;
        d.next_send = now + self.window / SENDS_PER_WINDOW;
        out.push(Transmit { to: d.addr, bytes: d.bytes.clone() });
        let key = (d.addr, d.id);
        self.due.set(key, d.next_send.min(d.deadline));
        self.live.insert(key, d);
    }

    /// The recipient answered a probe but not the message: another window, up to the retry
    /// limit. Past it, the delivery is handed back: its recipient is to be treated as gone.
    pub fn redeliver(&mut self, now: Instant, mut d: Delivery, out: &mut Outbox) -> Option<Delivery> {
        d.rounds += 1;
        if d.rounds > self.retries {
            return Some(d);
        }
        self.deliver(now, d, out);
        None
    }

    /// `from` ACKed channel message `id`: returns the delivery that ends, if one was in flight.
    pub fn handle_ack(&mut self, from: SocketAddr, id: MsgId) -> Option<Delivery> {
        self.due.cancel(&(from, id));
        self.live.remove(&(from, id))
    }

    /// Retransmits what is due, and returns the deliveries whose window ended unACKed.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) -> Vec<Delivery> {
        let step = self.window / SENDS_PER_WINDOW;
        let mut expired = Vec::new();
        let due: Vec<Key> = std::iter::from_fn(|| self.due.pop_due(now)).collect();
        for key in due {
            let Some(d) = self.live.get_mut(&key) else { continue };
            if d.deadline <= now {
                expired.extend(self.live.remove(&key));
                continue;
            }
            out.push(Transmit { to: d.addr, bytes: d.bytes.clone() });
            d.next_send = now + step;
            self.due.set(key, d.next_send.min(d.deadline));
        }
        expired
    }

    /// When a delivery is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due.next()
    }
}
