//! What [`crate::run`] and the table file can fail with: one error type for the crate. Owns no
//! state and decides nothing; messages are lowercase, and a source is chained, not repeated.

use std::io;
use std::path::PathBuf;

use chat_core::EntropyError;
use offline_store::StoreError;

/// Why the server could not start, go on, or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The OS random source gave nothing to key cookies and make secrets with.
    #[error("no randomness for cookie keys and secrets")]
    Entropy(#[from] EntropyError),
    /// The client table file could not be read or written.
    #[error("cannot {op} the client table {}", path.display())]
    TableFile {
        /// What was being done (`read`, `write`, `rename`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The store failed (at shutdown, its last sync).
    #[error("the message store failed")]
    Store(#[from] StoreError),
    /// The shared client table could not be read.
    #[error("cannot read the shared client table")]
    Shared(#[source] crate::cluster::SharedError),
}

impl ServerError {
    /// Builds the closure that turns an [`io::Error`] on the table file into
    /// [`ServerError::TableFile`].
    pub(crate) fn table(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::TableFile { op, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_cause_is_chained_not_repeated() {
        let e = ServerError::table("read", "/data/clients.json")(io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "cannot read the client table /data/clients.json");
        assert_eq!(e.source().map(ToString::to_string), Some("disk on fire".into()));
    }
}
