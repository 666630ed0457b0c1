//! The binary's errors: one [`AppError`] for everything `main` can fail on, and [`report`],
//! which turns one with its causes into the single line `main` prints.
//!
//! Owns how an error reads to the user; it must not decide exit codes or print anything itself.

use std::error::Error;
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
    /// The server stopped on an error.
    #[error("the server stopped")]
    Server(#[source] io::Error),
    /// The client stopped on an error (its secret file cannot be read, say).
    #[error("the client stopped")]
    Client(#[source] io::Error),
}

/// `err` and each of its causes, outermost first, joined by `: `, each said once.
///
/// An error whose message already ends with its cause's message (as `StoreError::Io` does
/// with its `io::Error`) would otherwise print that cause twice: such a cause is not repeated.
pub fn report(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Says its cause in its own message, as `StoreError::Io` does.
    #[derive(Debug, thiserror::Error)]
    #[error("create directory /data/mailboxes: {source}")]
    struct Embeds {
        source: io::Error,
    }

    /// Leaves its cause to the chain.
    #[derive(Debug, thiserror::Error)]
    #[error("journal /data/journal")]
    struct Defers {
        source: io::Error,
    }

    fn not_a_dir() -> io::Error {
        io::Error::new(io::ErrorKind::NotADirectory, "Not a directory")
    }

    #[test]
    fn each_cause_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot open the message store")]
        struct Top(#[source] Embeds);
        let err = Top(Embeds { source: not_a_dir() });
        assert_eq!(report(&err), "cannot open the message store: create directory /data/mailboxes: Not a directory");
    }

    #[test]
    fn causes_left_to_the_chain_are_all_said() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot open the message store")]
        struct Top(#[source] Defers);
        let err = Top(Defers { source: not_a_dir() });
        assert_eq!(report(&err), "cannot open the message store: journal /data/journal: Not a directory");
    }

    #[test]
    fn app_errors_read_as_one_line() {
        let err = AppError::Bind { port: 5000, source: io::Error::new(io::ErrorKind::AddrInUse, "Address in use") };
        assert_eq!(report(&err), "cannot listen on UDP port 5000: Address in use");
        let err = AppError::Client(io::Error::other("cannot read /d/erin.secret: Not a directory"));
        assert_eq!(report(&err), "the client stopped: cannot read /d/erin.secret: Not a directory");
    }
}
