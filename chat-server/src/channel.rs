//! The channel: `send_all` fan-out to every online client, ACK collection inside one window,
//! and storage for those that are offline or gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use chat_core::Key;
use chat_proto::{Datagram, MsgId, Name, Origin, Secret, StoredMessage, Text, encode};
use offline_store::{Store, StoreError};

use crate::Server;
use crate::core::Transmit;
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
    pub(crate) fn on_channel_send(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: MsgId,
        (sender, secret): (&Name, &Secret),
        text: Text,
    ) {
        if self.replay(from, id) || !self.owner_sends(from, id, sender, secret) {
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
        let (mut live, mut stored, mut failed, mut full) = (0, 0, false, Vec::new());
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
            } else {
                match self.append_channel(&row.name, &msg) {
                    Appended::Stored => stored += 1,
                    Appended::Full => full.push(row.name),
                    Appended::Failed => failed = true,
                }
            }
        }
        tracing::debug!(%sender, live, stored, "channel message");
        if failed {
            // Not acknowledged and forgotten: the sender retries, and the same channel id
            // makes whoever already has it show it once.
            return;
        }
        let reply = if full.is_empty() { Datagram::Ack { id } } else { Datagram::ChannelPartial { id, full } };
        self.dedup.pending(from, id);
        self.storage.hold(from, id, reply);
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
        let _ = self.append_channel(&d.to, &d.msg); // logged; the sender was answered long ago
    }

    /// Stores a channel copy for an offline client.
    fn append_channel(&mut self, to: &Name, msg: &StoredMessage) -> Appended {
        match self.storage.append_copy(to, msg) {
            Ok(()) => Appended::Stored,
            Err(e @ StoreError::MailboxFull { .. }) => {
                tracing::warn!(%to, from = %msg.from, "channel message not stored: {e}");
                Appended::Full
            }
            Err(e) => {
                tracing::error!(%to, from = %msg.from, "channel message not stored: {e}");
                Appended::Failed
            }
        }
    }
}

/// What became of one channel copy for an offline member.
enum Appended {
    Stored,
    /// The member's mailbox is full: this copy is lost, and the sender is told.
    Full,
    /// A disk error: the request is not answered, so the sender retries.
    Failed,
}

/// The id of the channel message that request `id` of `sender` makes: the same for every
/// retransmission, also one the server handles again after a restart, so recipients that
/// already showed it show it once.
pub(crate) fn channel_id(sender: &Name, id: MsgId) -> MsgId {
    MsgId(CHANNEL_ID_KEY.hash64(&[sender.as_str().as_bytes(), &id.0.to_le_bytes()]))
}

/// The fixed key of [`channel_id`]: a domain separator, the same in every run.
const CHANNEL_ID_KEY: Key = Key::fixed(*b"chatapp channel message id v1..\0");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_id_is_the_same_in_every_run() {
        let alice = Name::new("alice").expect("name");
        assert_eq!(channel_id(&alice, MsgId(7)), MsgId(0xad4c_a6ff_b09d_3d54));
    }
}
