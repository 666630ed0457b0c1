//! The channel: `send_all` fan-out to every online client, ACK collection inside one window,
//! and storage for those that are offline or gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use chat_proto::{Datagram, MsgId, Name, Origin, Refusal, StoredMessage, Text, encode};
use offline_store::{Store, StoreError};

use crate::Server;
use crate::core::Transmit;
use crate::dedup::Seen;
use crate::probe::Waiter;

/// Channel datagrams are retransmitted this many times per ACK window.
const SENDS_PER_WINDOW: u32 = 5;

/// One channel message on its way to one recipient.
#[derive(Debug)]
pub(crate) struct Delivery {
    to: Name,
    addr: SocketAddr,
    id: MsgId,
    msg: Arc<StoredMessage>,
    bytes: Arc<[u8]>,
    deadline: Instant,
    next_send: Instant,
    /// Windows already spent on this recipient (one more each time it answers a probe).
    rounds: u32,
}

impl Delivery {
    pub fn due(&self) -> Instant {
        self.deadline.min(self.next_send)
    }
}

impl<S: Store> Server<S> {
    pub(crate) fn on_channel_send(&mut self, now: Instant, from: SocketAddr, id: MsgId, sender: &Name, text: Text) {
        if self.replay(from, id) {
            return;
        }
        if self.clients.online_at(from) != Some(sender) {
            self.answer(from, id, Datagram::Refused { id, reason: Refusal::NotRegistered });
            return;
        }
        let cid = channel_id(sender, id);
        let bytes: Arc<[u8]> = match encode(&Datagram::Channel { id: cid, from: sender.clone(), text: text.clone() }) {
            Ok(b) => b.into(),
            Err(e) => {
                tracing::warn!(%sender, "channel message cannot be relayed: {e}");
                return;
            }
        };
        let msg = Arc::new(StoredMessage {
            id: cid,
            from: sender.clone(),
            origin: Origin::Channel,
            at: self.wall(now),
            text,
        });
        let table = self.clients.snapshot();
        let (mut live, mut stored, mut failed) = (0, 0, false);
        for row in table.clients.into_iter().filter(|r| &r.name != sender) {
            if row.online {
                live += 1;
                let d = Delivery {
                    to: row.name,
                    addr: row.addr,
                    id: cid,
                    msg: msg.clone(),
                    bytes: bytes.clone(),
                    deadline: now,
                    next_send: now,
                    rounds: 0,
                };
                self.deliver(now, d);
            } else if self.append_channel(&row.name, &msg) {
                stored += 1;
            } else {
                failed = true;
            }
        }
        tracing::info!(%sender, live, stored, "channel message");
        if failed {
            // Not acknowledged and forgotten: the sender retries, and the same channel id
            // makes whoever already has it show it once.
            return;
        }
        self.dedup.set(from, id, Seen::Pending);
        self.after_commit.push((from, id, Datagram::Ack { id }));
    }

    pub(crate) fn on_channel_ack(&mut self, from: SocketAddr, id: MsgId) {
        self.deliveries.remove(&(from, id));
    }

    /// Sends `d` now and opens a fresh ACK window for it.
    fn deliver(&mut self, now: Instant, mut d: Delivery) {
        d.deadline = now + self.cfg.ack_timeout;
        d.next_send = now + self.cfg.ack_timeout / SENDS_PER_WINDOW;
        self.push_out(Transmit { to: d.addr, bytes: d.bytes.clone() });
        self.deliveries.insert((d.addr, d.id), d);
    }

    pub(crate) fn delivery_timeouts(&mut self, now: Instant) {
        let step = self.cfg.ack_timeout / SENDS_PER_WINDOW;
        let mut resend = Vec::new();
        let mut expired = Vec::new();
        for (key, d) in &mut self.deliveries {
            if d.deadline <= now {
                expired.push(*key);
            } else if d.next_send <= now {
                resend.push(Transmit { to: d.addr, bytes: d.bytes.clone() });
                d.next_send = now + step;
            }
        }
        for t in resend {
            self.push_out(t);
        }
        for key in expired {
            if let Some(d) = self.deliveries.remove(&key) {
                let (to, addr) = (d.to.clone(), d.addr);
                self.probe(now, &to, addr, Waiter::Channel(d));
            }
        }
    }

    /// The recipient answered a probe but not the message: another window, up to the retry
    /// limit; past it, it is treated as gone.
    pub(crate) fn redeliver(&mut self, now: Instant, mut d: Delivery) {
        d.rounds += 1;
        if d.rounds > self.cfg.retries {
            tracing::warn!(to = %d.to, "answers probes but never ACKs the channel: marked offline");
            self.mark_gone(&d.to, d.addr);
            self.store_channel(&d);
        } else {
            self.deliver(now, d);
        }
    }

    pub(crate) fn store_channel(&mut self, d: &Delivery) {
        self.append_channel(&d.to, &d.msg);
    }

    /// Stores a channel copy for an offline client. False on a disk error; a full mailbox
    /// only loses this copy (logged), the message still reaches everyone else.
    fn append_channel(&mut self, to: &Name, msg: &StoredMessage) -> bool {
        match self.store.append(to, msg) {
            Ok(()) => {
                self.unsynced = true;
                true
            }
            Err(e @ StoreError::MailboxFull { .. }) => {
                tracing::warn!(%to, from = %msg.from, "channel message not stored: {e}");
                true
            }
            Err(e) => {
                tracing::error!(%to, from = %msg.from, "channel message not stored: {e}");
                false
            }
        }
    }
}

/// The id of the channel message that request `id` of `sender` makes: the same for every
/// retransmission, also one the server handles again after a restart, so recipients that
/// already showed it show it once.
fn channel_id(sender: &Name, id: MsgId) -> MsgId {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(sender.as_str(), id.0), &mut h);
    MsgId(std::hash::Hasher::finish(&h))
}
