//! ChatApp's wire format: every datagram type, `encode`/`decode`, the size limits and the name
//! rules. No I/O: this crate turns values into bytes and back, nothing else.
//!
//! One datagram is one JSON object (see `docs/PROTOCOL.md`). [`decode`] is the only place that
//! parses bytes from the network; anything it refuses is dropped by the caller.

mod datagram;
mod keys;
mod name;
mod sealed;
mod text;

pub use datagram::{Body, ClientRow, Datagram, MsgId, Origin, Refusal, Secret, SecretError, StoredMessage, Table};
pub use keys::{KeyError, KeyPair, PublicKey};
pub use name::{MAX_NAME_CHARS, Name, NameError};
pub use sealed::{NONCE_BYTES, Pairwise, SEAL_OVERHEAD, Sealed, SealedError};
pub use text::{MAX_TEXT_BYTES, MAX_TEXT_ESCAPED, Text, TextError};

/// The largest datagram ChatApp accepts: the largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// What the encrypted channel between a client and its server adds to each datagram it carries
/// (type, index, counter and tag; see `chat-secure`).
pub const CHANNEL_OVERHEAD: usize = 29;

/// The largest datagram ChatApp encodes: one that still fits [`MAX_DATAGRAM`] once the channel
/// to the server has wrapped it.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - CHANNEL_OVERHEAD;

/// A `register` datagram is padded to at least this many bytes (see [`Datagram::Register`]).
pub const REGISTER_PAD_TO: usize = 256;

/// The most other nodes a server lists in [`Datagram::Registered`] and [`Datagram::Nodes`]: a
/// `registered` with this many of the longest addresses is still no more than three times a
/// padded `register`, what a server may send an address that has not proven it receives.
pub const MAX_NODES: usize = 8;

/// Why bytes could not be turned into a datagram, or a datagram into bytes.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The datagram is larger than [`MAX_PAYLOAD`] (encoding) or [`MAX_DATAGRAM`] (decoding).
    #[error("datagram of {0} bytes is over the limit of {MAX_PAYLOAD}")]
    Oversized(usize),
    /// The bytes are not a datagram ChatApp knows (bad JSON, unknown type, a rule broken).
    #[error("malformed datagram: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Encodes one datagram.
///
/// # Errors
/// [`ProtoError::Oversized`] if the result would not fit in one UDP datagram with the channel's
/// overhead (a long text made of many characters that JSON escapes, or a table of very many
/// clients).
pub fn encode(d: &Datagram) -> Result<Vec<u8>, ProtoError> {
    let bytes = serde_json::to_vec(d)?;
    if bytes.len() > MAX_PAYLOAD {
        return Err(ProtoError::Oversized(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes one datagram, checking every field's rules (names, text limits).
///
/// # Errors
/// [`ProtoError`] for anything that is not one valid datagram; never panics.
pub fn decode(bytes: &[u8]) -> Result<Datagram, ProtoError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(ProtoError::Oversized(bytes.len()));
    }
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests;
