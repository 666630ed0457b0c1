//! The channel between a client and its server: a Noise `XX` handshake (`snow`), then each
//! datagram encrypted and authenticated under the session's keys, with its counter checked
//! against an anti-replay window. Sans-IO, like the two cores: bytes and `now` come in, bytes and
//! deadlines go out.
//!
//! The wire (the first byte says which; a client's peer-to-peer datagrams are JSON and start
//! with `{`):
//!
//! | type | name | layout | bytes |
//! |---|---|---|---|
//! | 1 | initiation | client index (4), cookie (16), Noise `→ e` (32), zeros | [`INITIATION_LEN`] |
//! | 2 | response | server index (4), client index (4), Noise `← e, ee, s, es` (96) | 105 |
//! | 3 | final | server index (4), Noise `→ s, se` (64) | 69 |
//! | 4 | data | receiver's index (4), counter (8), ciphertext and tag | +[`DATA_OVERHEAD`] |
//! | 5 | cookie | client index (4), cookie (16) | 21 |
//! | 6 | no session | — | 1 |
//!
//! The initiation is padded so that nothing the server sends before the client proved its
//! address is larger than what the client sent; under load the server answers an initiation
//! with a cookie (a keyed BLAKE3 MAC of the address, valid one to two minutes) instead of
//! keeping state for it. A `no session` answers data under an index the server does not know
//! (it restarted): the client starts a new handshake. It is never authenticated, so all it can
//! do is cost a handshake, at most one a second.

mod client;
mod replay;
mod server;
#[cfg(test)]
mod tests;

pub use client::{ClientChannel, ClientEvent};
pub use server::{ServerChannel, ServerConfig};

/// The Noise protocol: `XX`, so the client learns the server's key in the handshake (and pins
/// it) and the server learns the client's.
const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// How long a first datagram is: at least as long as anything the server answers it with.
pub const INITIATION_LEN: usize = 256;
/// What a data datagram adds to its plaintext: type, index, counter and tag.
pub const DATA_OVERHEAD: usize = 1 + 4 + 8 + 16;
const _: () = assert!(DATA_OVERHEAD == chat_proto::CHANNEL_OVERHEAD, "the wire format's budget for the channel");

const INITIATION: u8 = 1;
const RESPONSE: u8 = 2;
const FINAL: u8 = 3;
const DATA: u8 = 4;
const COOKIE: u8 = 5;
const NO_SESSION: u8 = 6;

const COOKIE_LEN: usize = 16;
const E_LEN: usize = 32;
const RESPONSE_NOISE_LEN: usize = 96;
const FINAL_NOISE_LEN: usize = 64;
const RESPONSE_LEN: usize = 1 + 4 + 4 + RESPONSE_NOISE_LEN;
const FINAL_LEN: usize = 1 + 4 + FINAL_NOISE_LEN;
const COOKIE_REPLY_LEN: usize = 1 + 4 + COOKIE_LEN;

fn params() -> snow::params::NoiseParams {
    // A constant that parses: checked by every test that makes a channel.
    PATTERN.parse().unwrap_or_else(|_| unreachable!("{PATTERN} is a valid Noise pattern"))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// One direction of an established session: snow's keys with the counter carried in each
/// datagram, so that datagrams lost or reordered do not stop the rest.
struct Transport {
    keys: snow::StatelessTransportState,
    /// The index the other side knows this session by.
    their_index: u32,
    /// The counter of the next datagram sent.
    sent: u64,
    window: replay::Window,
}

impl Transport {
    /// `plaintext` as a data datagram.
    fn seal(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let counter = self.sent;
        self.sent = self.sent.checked_add(1)?;
        let mut out = vec![0u8; 1 + 4 + 8 + plaintext.len() + 16];
        out[0] = DATA;
        out[1..5].copy_from_slice(&self.their_index.to_le_bytes());
        out[5..13].copy_from_slice(&counter.to_le_bytes());
        let n = self.keys.write_message(counter, plaintext, &mut out[13..]).ok()?;
        out.truncate(13 + n);
        Some(out)
    }

    /// Opens data datagram `bytes` (whose index was already matched) into `out`: the
    /// plaintext's length, if it is authentic and not a replay.
    fn open(&mut self, bytes: &[u8], out: &mut [u8]) -> Option<usize> {
        let counter = u64_at(bytes, 5)?;
        if !self.window.allows(counter) {
            return None;
        }
        let n = self.keys.read_message(counter, bytes.get(13..)?, out).ok()?;
        self.window.mark(counter);
        Some(n)
    }
}
