//! New names registering, until `confirm` proves they receive at their address: only then
//! does such a name get its row, so that registrations sent from spoofed addresses add nothing
//! to the table. Bounded: past capacity the oldest are forgotten (their clients' `confirm` is
//! then refused, and they register again).

use std::net::SocketAddr;

use chat_core::BoundedMap;
use chat_proto::{Name, PublicKey, Secret};

/// The names joining, by address, with the secret handed out for each and the key it shows.
#[derive(Debug)]
pub(crate) struct Joining {
    by_addr: BoundedMap<SocketAddr, (Name, Secret, PublicKey)>,
}

impl Joining {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { by_addr: BoundedMap::new(capacity) }
    }

    /// The secret handed out to `name` joining from `from`, if it is.
    pub(crate) fn secret(&self, from: SocketAddr, name: &Name) -> Option<&Secret> {
        self.by_addr.get(&from).filter(|(n, ..)| n == name).map(|(_, s, _)| s)
    }

    /// Notes that `name` joins from `from` with `secret` and `key` (replacing what `from`
    /// joined as).
    pub(crate) fn insert(&mut self, from: SocketAddr, name: Name, secret: Secret, key: PublicKey) {
        // Noted again, it goes last in the order.
        self.by_addr.remove(&from);
        self.by_addr.insert(from, (name, secret, key));
    }

    /// The name joining from `from`, and the key it shows, if any.
    pub(crate) fn key(&self, from: SocketAddr) -> Option<(&Name, &PublicKey)> {
        self.by_addr.get(&from).map(|(n, _, k)| (n, k))
    }

    /// What `from` joins as, no longer noted.
    pub(crate) fn take(&mut self, from: SocketAddr) -> Option<(Name, Secret, PublicKey)> {
        self.by_addr.remove(&from)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_at_most_its_capacity_forgetting_the_oldest() {
        let secret = Secret::new("00112233445566778899aabbccddeeff").expect("secret");
        let mut j = Joining::new(2);
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        for (port, who) in [(1, "a"), (2, "b"), (1, "c"), (3, "d")] {
            j.insert(
                at(port),
                Name::new(who).expect("name"),
                secret.clone(),
                chat_proto::KeyPair::from_secret([1; 32]).public(),
            );
        }
        assert_eq!(j.len(), 2);
        assert_eq!(j.take(at(2)), None, "the oldest went first");
        assert_eq!(j.take(at(1)).map(|(n, ..)| n.to_string()), Some("c".into()), "re-noted, so kept");
        assert!(j.take(at(3)).is_some());
    }
}
