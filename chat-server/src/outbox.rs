//! The datagrams waiting to leave, behind the amplification limit: owns the send queue and the
//! address [`Budgets`]. Every component's transmits go through it; it decides only whether an
//! unproven address may be sent more, not what is sent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use chat_core::Transmit;
use chat_proto::{Datagram, PublicKey, encode};

use crate::budget::Budgets;

/// The send queue and the budgets of the addresses it sends to.
#[derive(Debug)]
pub(crate) struct Outbox {
    budgets: Budgets,
    /// Each datagram with the key of the session it answers, if it answers one.
    queue: VecDeque<(Transmit, Option<PublicKey>)>,
    /// While a datagram is handled: its address and the key of the session it came under.
    answering: Option<(SocketAddr, PublicKey)>,
}

impl Outbox {
    /// Remembers the budgets of at most `capacity` unproven addresses.
    pub fn new(capacity: usize) -> Self {
        Self { budgets: Budgets::new(capacity), queue: VecDeque::new(), answering: None }
    }

    /// A datagram from `from` under the session of `key` is being handled (`None`: done):
    /// what is queued for `from` meanwhile answers it, and goes back under that session.
    pub fn answering(&mut self, input: Option<(SocketAddr, PublicKey)>) {
        self.answering = input;
    }

    /// `len` bytes came from `from`.
    pub fn handle_received(&mut self, from: SocketAddr, len: usize) {
        self.budgets.received(from, len);
    }

    /// Whether `addr` has proven it receives there.
    pub fn is_proven(&self, addr: SocketAddr) -> bool {
        self.budgets.is_proven(addr)
    }

    /// `addr` echoed something it could only have received there. Returns whether that is new.
    pub fn prove(&mut self, addr: SocketAddr) -> bool {
        if self.budgets.is_proven(addr) {
            return false;
        }
        self.budgets.prove(addr);
        true
    }

    /// Queues `t`, unless `t.to` is unproven and past its budget.
    pub fn push(&mut self, t: Transmit) {
        if self.budgets.allow(t.to, t.bytes.len()) {
            let key = self.answering.filter(|(from, _)| *from == t.to).map(|(_, key)| key);
            self.queue.push_back((t, key));
        } else {
            tracing::debug!(to = %t.to, len = t.bytes.len(), "held back: the address has not proven it receives");
        }
    }

    /// Encodes `d` and queues it for `to`; returns its bytes.
    pub fn send(&mut self, to: SocketAddr, d: &Datagram) -> Option<Arc<[u8]>> {
        match encode(d) {
            Ok(bytes) => {
                let bytes: Arc<[u8]> = bytes.into();
                self.push(Transmit { to, bytes: bytes.clone() });
                Some(bytes)
            }
            Err(e) => {
                tracing::error!(%to, "cannot encode a reply: {e}");
                None
            }
        }
    }

    /// The next datagram to send, with the key of the session it answers, if it answers one.
    pub fn poll_transmit(&mut self) -> Option<(Transmit, Option<PublicKey>)> {
        self.queue.pop_front()
    }
}
