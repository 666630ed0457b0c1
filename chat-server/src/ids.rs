//! Ids, secrets and cookies: everything the server makes from the randomness handed in. Owns
//! the cookie key, the id counter and the [`Entropy`]; it knows nothing of who asked for them.

use std::net::SocketAddr;

use chat_core::{Entropy, Key};
use chat_proto::{MsgId, Name, PublicKey, Secret};

/// The maker of fresh ids, secrets and cookies.
#[derive(Debug)]
pub(crate) struct Ids {
    /// Keys cookies (a keyed hash of the client's address) and fresh ids.
    key: Key,
    next: u64,
    /// Where fresh secrets come from.
    entropy: Entropy,
}

impl Ids {
    /// The key is drawn from `entropy` first; secrets come from what follows.
    pub fn new(mut entropy: Entropy) -> Self {
        Self { key: entropy.key(), next: 0, entropy }
    }

    /// A fresh id for a datagram the server starts (probe, channel message): a keyed hash of a
    /// counter, so that seeing one id tells nothing of the next (a probe's answer proves an
    /// address, so its id must not be guessable).
    pub fn fresh_id(&mut self) -> MsgId {
        self.next = self.next.wrapping_add(1);
        MsgId(self.key.hash64(&[b"id", &self.next.to_le_bytes()]))
    }

    /// A new name's secret: 128 random bits, in hex.
    pub fn fresh_secret(&mut self) -> Secret {
        let hex: String = self.entropy.bytes::<16>().iter().map(|b| format!("{b:02x}")).collect();
        Secret::new(hex).unwrap_or_else(|_| unreachable!("32 hex digits are a valid secret"))
    }

    /// The cookie for `addr` in cookie period `period`: only a client that receives at `addr`
    /// learns it, and it expires (see [`crate::core`]'s `cookie_ok`).
    pub fn cookie(&self, addr: SocketAddr, period: u64) -> u64 {
        self.key.hash64(&[b"cookie", &period.to_le_bytes(), addr.to_string().as_bytes()])
    }

    /// The cookie for `name` joining from `addr` with `key` in period `period`: it proves the
    /// address for that name and key only, so a `register` spoofed from the same address cannot
    /// change what the `confirm` creates.
    pub fn joining_cookie(&self, addr: SocketAddr, name: &Name, key: &PublicKey, period: u64) -> u64 {
        let (period, addr) = (period.to_le_bytes(), addr.to_string());
        self.key.hash64(&[b"joining", &period, addr.as_bytes(), name.as_str().as_bytes(), key.as_bytes()])
    }
}
