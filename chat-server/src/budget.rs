//! No amplifier: to an address that has not proven it receives there, the server sends at most
//! three times the bytes it received from it.
//!
//! An address is proven when it echoes something the server sent only there: the cookie of a
//! `registered` (in `confirm`) or a probe's id (in `probe_ack`). Until then every datagram to
//! it is counted against its budget and dropped past it; the retransmission logic sends it
//! again once the address is proven.

use std::collections::HashSet;
use std::net::SocketAddr;

use chat_core::BoundedMap;

/// How much more than it received an unproven address may be sent.
const FACTOR: u64 = 3;

#[derive(Debug, Default, Clone, Copy)]
struct Budget {
    received: u64,
    sent: u64,
}

/// Proven addresses, and the byte counts of the others (the most recent `capacity` of them).
#[derive(Debug)]
pub(crate) struct Budgets {
    proven: HashSet<SocketAddr>,
    unproven: BoundedMap<SocketAddr, Budget>,
}

impl Budgets {
    pub fn new(capacity: usize) -> Self {
        Self { proven: HashSet::new(), unproven: BoundedMap::new(capacity) }
    }

    pub fn is_proven(&self, addr: SocketAddr) -> bool {
        self.proven.contains(&addr)
    }

    pub fn prove(&mut self, addr: SocketAddr) {
        self.proven.insert(addr);
        self.unproven.remove(&addr);
    }

    /// `len` bytes came from `from`.
    pub fn received(&mut self, from: SocketAddr, len: usize) {
        if self.proven.contains(&from) {
            return;
        }
        self.unproven.get_or_insert_with(from, Budget::default).received += len as u64;
    }

    /// Whether `len` more bytes may go to `to`; if so they are counted.
    pub fn allow(&mut self, to: SocketAddr, len: usize) -> bool {
        if self.proven.contains(&to) {
            return true;
        }
        match self.unproven.get_mut(&to) {
            Some(b) if b.sent + len as u64 <= FACTOR * b.received => {
                b.sent += len as u64;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unproven_address_gets_three_times_what_it_sent_and_a_proven_one_anything() {
        let a = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut b = Budgets::new(8);
        assert!(!b.allow(a, 1), "nothing received, nothing sent");
        b.received(a, 100);
        assert!(b.allow(a, 250));
        assert!(!b.allow(a, 51));
        assert!(b.allow(a, 50));
        b.prove(a);
        assert!(b.allow(a, 1 << 20));
    }

    #[test]
    fn forgets_the_oldest_unproven_addresses() {
        let mut b = Budgets::new(2);
        for port in 1..=3 {
            b.received(SocketAddr::from(([127, 0, 0, 1], port)), 10);
        }
        assert!(!b.allow(SocketAddr::from(([127, 0, 0, 1], 1)), 1));
        assert!(b.allow(SocketAddr::from(([127, 0, 0, 1], 3)), 30));
    }
}
