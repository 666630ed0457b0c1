//! The errors [`crate::run`] can end with. Bad datagrams and bad lines are no errors: they are
//! counted or explained, and the client goes on.

use std::path::PathBuf;

/// Why the client could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The secret file exists but cannot be read.
    #[error("cannot read the secret file {path}")]
    ReadSecret {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The secret file holds something that is not a secret.
    #[error("the secret file {path} holds no valid secret")]
    BadSecret {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: chat_proto::SecretError,
    },
    /// The key book exists but cannot be read.
    #[error("cannot read the key book {path}")]
    ReadKeys {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key book holds a line that is not a name and a key.
    #[error("the key book {path} is damaged")]
    BadKeys {
        /// The file.
        path: PathBuf,
        /// Which line, and why.
        #[source]
        source: crate::keybook::KeyBookError,
    },
    /// The file of pinned server keys exists but cannot be read.
    #[error("cannot read the pinned server keys {path}")]
    ReadServers {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file of pinned server keys holds a line that is not an address and a key.
    #[error("the pinned server keys {path} are damaged: line {line} is not an address and a key")]
    BadServers {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
    /// The OS gives no randomness for the client's ids.
    #[error("no randomness for the client's ids")]
    Entropy(#[from] chat_core::EntropyError),
}
