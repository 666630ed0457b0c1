//! What ChatApp's two sans-IO cores share, and nothing else: the datagram to send
//! ([`Transmit`]), a map that forgets its oldest entries ([`BoundedMap`]), deadlines kept in
//! order ([`Deadlines`]), and the randomness and keyed hashes handed in from outside
//! ([`Entropy`], [`Key`]). No clock: `now` always comes from the caller; the only I/O is
//! [`private`], the one way files and directories are made in a data directory (the owner's alone).

mod bounded;
mod deadlines;
pub mod private;
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

/// `err` and each of its causes, outermost first, joined by `: `: the one line a log or `main`
/// prints for an error. Each error in a chain displays only what it adds, so each cause is said
/// once.
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the message store")]
    struct Top(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("journal /data/journal")]
    struct Middle(#[source] io::Error);

    #[test]
    fn a_report_says_every_cause_once_in_order() {
        let err = Top(Middle(io::Error::new(io::ErrorKind::NotADirectory, "Not a directory")));
        assert_eq!(report(&err), "cannot open the message store: journal /data/journal: Not a directory");
    }
}
