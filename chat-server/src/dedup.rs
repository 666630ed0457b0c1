//! Remembers recent requests by (address, id), so that a retransmitted request is answered
//! with the same reply and never done twice.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use chat_proto::{Datagram, MsgId};

type Key = (SocketAddr, MsgId);

/// Where a request stands.
#[derive(Debug, Clone)]
pub(crate) enum Seen {
    /// Being worked on (a probe, a disk sync): retransmissions are ignored.
    Pending,
    /// Done: retransmissions get this reply again.
    Answered(Datagram),
}

/// A bounded map of recent requests; the oldest are forgotten first.
#[derive(Debug)]
pub(crate) struct Dedup {
    seen: HashMap<Key, Seen>,
    order: VecDeque<Key>,
    capacity: usize,
}

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        Self { seen: HashMap::new(), order: VecDeque::new(), capacity }
    }

    pub fn get(&self, from: SocketAddr, id: MsgId) -> Option<&Seen> {
        self.seen.get(&(from, id))
    }

    /// Forgets `id`, so that a retransmission is handled as new (after a failure).
    pub fn forget(&mut self, from: SocketAddr, id: MsgId) {
        self.seen.remove(&(from, id));
    }

    pub fn set(&mut self, from: SocketAddr, id: MsgId, state: Seen) {
        if self.seen.insert((from, id), state).is_none() {
            self.order.push_back((from, id));
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_past_capacity() {
        let from = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut d = Dedup::new(2);
        for i in 0..3 {
            d.set(from, MsgId(i), Seen::Pending);
        }
        assert!(d.get(from, MsgId(0)).is_none());
        assert!(d.get(from, MsgId(2)).is_some());
        d.set(from, MsgId(2), Seen::Answered(Datagram::Ack { id: MsgId(2) }));
        assert!(matches!(d.get(from, MsgId(1)), Some(Seen::Pending)));
    }
}
