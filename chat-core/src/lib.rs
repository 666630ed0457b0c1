//! What ChatApp's two sans-IO cores share, and nothing else: the datagram to send
//! ([`Transmit`]), a map that forgets its oldest entries ([`BoundedMap`]), deadlines kept in
//! order ([`Deadlines`]), and the randomness and keyed hashes handed in from outside
//! ([`Entropy`], [`Key`]). No I/O and no clock: `now` always comes from the caller.

mod bounded;
mod deadlines;
mod random;

use std::net::SocketAddr;
use std::sync::Arc;

pub use bounded::BoundedMap;
pub use deadlines::Deadlines;
pub use random::{Entropy, EntropyError, Key};

/// One datagram for a core's driver to send. The bytes are shared when the same datagram goes
/// to many addresses (a table push, a channel message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub to: SocketAddr,
    /// The encoded datagram.
    pub bytes: Arc<[u8]>,
}
