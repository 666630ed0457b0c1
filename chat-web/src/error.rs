//! The gateway's errors.

use std::net::SocketAddr;

/// What stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The page's address cannot be bound.
    #[error("cannot serve the page on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bound address cannot be read back.
    #[error("cannot read the page's address")]
    LocalAddr(#[source] std::io::Error),
    /// No randomness for the token.
    #[error("no randomness from the OS for the page's token")]
    Random(#[source] getrandom::Error),
    /// The client cannot start.
    #[error(transparent)]
    Client(#[from] chat_client::ClientError),
}
