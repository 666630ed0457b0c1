//! The binary's errors: one [`AppError`] for everything `main` can fail on; `main` prints it
//! with its causes as one line ([`chat_core::report`]).
//!
//! Owns how an error reads to the user; it must not decide exit codes or print anything itself.

use std::io;

use offline_store::StoreError;

/// Why `chatapp` stopped with an error (bad arguments are handled before, by `args`).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The async runtime could not be built.
    #[error("cannot start the runtime")]
    Runtime(#[source] io::Error),
    /// The UDP socket could not be bound (port in use, address not local…).
    #[error("cannot listen on UDP port {port}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The bound socket could not tell its own address.
    #[error("cannot read the address of the bound socket")]
    LocalAddr(#[source] io::Error),
    /// The server's message store could not be opened (a data directory that is a file, or
    /// that this user cannot write, a journal that cannot be replayed).
    #[error("cannot open the message store")]
    Store(#[from] StoreError),
    /// The client's key pair cannot be read or kept: it does not register.
    #[error("no identity, so no registration")]
    Identity(#[source] crate::identity::IdentityError),
    /// The server's key pair cannot be read or kept: it does not serve.
    #[error("no server key, so no service")]
    ServerKey(#[source] crate::identity::IdentityError),
    /// PostgreSQL cannot be reached, or its schema cannot be brought up to date, or the
    /// node cannot join the others there.
    #[error(transparent)]
    Database(#[from] chat_pg::DbError),
    /// The server stopped on an error.
    #[error("the server stopped")]
    Server(#[from] chat_server::ServerError),
    /// The client stopped on an error (its secret file cannot be read, say).
    #[error("the client stopped")]
    Client(#[from] chat_client::ClientError),
    /// The browser page's client could not start.
    #[error("the web client stopped")]
    Web(#[from] chat_web::WebError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::report;

    #[test]
    fn app_errors_read_as_one_line() {
        let err = AppError::Bind { port: 5000, source: io::Error::new(io::ErrorKind::AddrInUse, "Address in use") };
        assert_eq!(report(&err), "cannot listen on UDP port 5000: Address in use");
    }
}
