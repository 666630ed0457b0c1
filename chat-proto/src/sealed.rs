//! End-to-end sealing of direct messages: NaCl's `crypto_box` (X25519, XSalsa20-Poly1305, from
//! RustCrypto) between the sender's and the recipient's long-term keys, with the sender, the
//! recipient and the message id sealed in front of the text (XSalsa20-Poly1305 takes no
//! associated data) and checked on opening. Only the recipient can open a
//! sealed text, and it opens only if the sender's key made it for this recipient and this id:
//! a text cannot be moved to another id, sender or recipient, or reflected back.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use crypto_box::aead::Aead;
use serde::{Deserialize, Serialize};

use crate::{KeyPair, MAX_TEXT_BYTES, MsgId, Name, PublicKey};

/// The nonce's length: XSalsa20's 24 bytes, random per message.
pub const NONCE_BYTES: usize = 24;
/// What sealing adds to a text at most: the nonce, Poly1305's 16-byte tag, and the header that
/// binds the message's kind, names and id (two names of up to [`crate::MAX_NAME_CHARS`]
/// characters of up to 4 bytes, a 20-digit id, labels and separators).
pub const SEAL_OVERHEAD: usize = NONCE_BYTES + 16 + 2 * 4 * crate::MAX_NAME_CHARS + 40;

/// A sealed text as it travels: the nonce, then the ciphertext with its tag, in base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sealed(Vec<u8>);

/// Why a string is not a [`Sealed`] text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed text is base64 of {min} to {max} bytes", min = NONCE_BYTES + 16, max = MAX_TEXT_BYTES + SEAL_OVERHEAD)]
pub struct SealedError;

impl Sealed {
    /// How many bytes it holds (nonce, ciphertext and tag).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never: a sealed text holds at least its nonce and tag.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<String> for Sealed {
    type Error = SealedError;
    fn try_from(s: String) -> Result<Self, SealedError> {
        // Checked before decoding: a forged datagram cannot make it decode much.
        if s.len() > (MAX_TEXT_BYTES + SEAL_OVERHEAD).div_ceil(3) * 4 {
            return Err(SealedError);
        }
        let bytes = B64.decode(s.as_bytes()).map_err(|_| SealedError)?;
        if !(NONCE_BYTES + 16..=MAX_TEXT_BYTES + SEAL_OVERHEAD).contains(&bytes.len()) {
            return Err(SealedError);
        }
        Ok(Self(bytes))
    }
}

impl From<Sealed> for String {
    fn from(s: Sealed) -> String {
        B64.encode(&s.0)
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// The key two parties share: one X25519 exchange between one's secret key and the other's
/// public key, done once and kept (sealing and opening then cost no exchange).
pub struct Pairwise(crypto_box::SalsaBox);

impl fmt::Debug for Pairwise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pairwise(..)")
    }
}

impl KeyPair {
    /// The key this pair shares with the holder of `their`.
    pub fn pairwise(&self, their: &PublicKey) -> Pairwise {
        Pairwise(crypto_box::SalsaBox::new(&crypto_box::PublicKey::from(*their.as_bytes()), self.secret()))
    }
}

/// What a message's seal binds besides its text, sealed in front of it: what it is, who sent
/// it, to whom, and its id.
fn bound(what: &str, from: &Name, to: &Name, id: MsgId) -> Vec<u8> {
    // Names cannot hold control characters, so the separators are unambiguous.
    format!("chatapp/1\n{what}\n{from}\n{to}\n{}\n", id.0).into_bytes()
}

impl Pairwise {
    /// Seals `text`, message `id` from `from` to `to`, under the random `nonce`.
    pub fn seal_text(&self, nonce: [u8; NONCE_BYTES], from: &Name, to: &Name, id: MsgId, text: &str) -> Sealed {
        self.seal(nonce, &bound("text", from, to, id), text.as_bytes())
    }

    /// The text of `sealed` if it is message `id` from `from` to `to`, made with the other
    /// party's key; `None` for anything else (forged, altered, moved, or not UTF-8).
    pub fn open_text(&self, sealed: &Sealed, from: &Name, to: &Name, id: MsgId) -> Option<String> {
        let plain = self.open(sealed, &bound("text", from, to, id))?;
        String::from_utf8(plain).ok()
    }

    /// An ACK's proof: `to`, who got message `id` from `from`, says so (sealed empty).
    pub fn seal_ack(&self, nonce: [u8; NONCE_BYTES], from: &Name, to: &Name, id: MsgId) -> Sealed {
        self.seal(nonce, &bound("ack", from, to, id), &[])
    }

    /// Whether `proof` is `to`'s ACK of message `id` from `from`.
    pub fn opens_ack(&self, proof: &Sealed, from: &Name, to: &Name, id: MsgId) -> bool {
        self.open(proof, &bound("ack", from, to, id)).is_some_and(|p| p.is_empty())
    }

    fn seal(&self, nonce: [u8; NONCE_BYTES], header: &[u8], msg: &[u8]) -> Sealed {
        let mut plain = Vec::with_capacity(header.len() + msg.len());
        plain.extend_from_slice(header);
        plain.extend_from_slice(msg);
        let mut out = nonce.to_vec();
        match self.0.encrypt(&nonce.into(), plain.as_slice()) {
            Ok(ct) => out.extend(ct),
            // XSalsa20-Poly1305 fails only past 2^38 bytes, never for one text; were it to
            // fail, what goes out opens for no one.
            Err(_) => out.extend([0; 16]),
        }
        Sealed(out)
    }

    fn open(&self, sealed: &Sealed, header: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ct) = sealed.0.split_at_checked(NONCE_BYTES)?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        let plain = self.0.decrypt(&nonce.into(), ct).ok()?;
        plain.strip_prefix(header).map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    #[test]
    fn only_the_recipient_opens_and_only_what_the_sender_made_for_it() {
        let (alice, bob, carol) =
            (KeyPair::from_secret([1; 32]), KeyPair::from_secret([2; 32]), KeyPair::from_secret([3; 32]));
        let (a, b, c) = (n("alice"), n("bob"), n("carol"));
        let sealed = alice.pairwise(&bob.public()).seal_text([9; NONCE_BYTES], &a, &b, MsgId(7), "hi bob");
        let at_bob = bob.pairwise(&alice.public());
        assert_eq!(at_bob.open_text(&sealed, &a, &b, MsgId(7)).as_deref(), Some("hi bob"));
        assert_eq!(at_bob.open_text(&sealed, &a, &b, MsgId(8)), None, "moved to another id");
        assert_eq!(at_bob.open_text(&sealed, &c, &b, MsgId(7)), None, "claimed by another sender");
        assert_eq!(at_bob.open_text(&sealed, &b, &a, MsgId(7)), None, "reflected back");
        assert_eq!(carol.pairwise(&alice.public()).open_text(&sealed, &a, &b, MsgId(7)), None, "another recipient");
        let forged = carol.pairwise(&bob.public()).seal_text([9; NONCE_BYTES], &a, &b, MsgId(7), "I am alice");
        assert_eq!(at_bob.open_text(&forged, &a, &b, MsgId(7)), None, "made with another key");
        let mut flipped = sealed.clone();
        flipped.0[30] ^= 1;
        assert_eq!(at_bob.open_text(&flipped, &a, &b, MsgId(7)), None, "altered");
        let json = serde_json::to_string(&sealed).expect("encode");
        assert!(!json.contains("hi bob"));
        assert_eq!(serde_json::from_str::<Sealed>(&json).expect("decode"), sealed);
    }

    #[test]
    fn an_ack_proves_only_the_message_it_names() {
        let (alice, bob) = (KeyPair::from_secret([1; 32]), KeyPair::from_secret([2; 32]));
        let (a, b) = (n("alice"), n("bob"));
        let proof = bob.pairwise(&alice.public()).seal_ack([4; NONCE_BYTES], &a, &b, MsgId(7));
        let at_alice = alice.pairwise(&bob.public());
        assert!(at_alice.opens_ack(&proof, &a, &b, MsgId(7)));
        assert!(!at_alice.opens_ack(&proof, &a, &b, MsgId(6)));
        let text = alice.pairwise(&bob.public()).seal_text([4; NONCE_BYTES], &a, &b, MsgId(7), "");
        assert!(!at_alice.opens_ack(&text, &a, &b, MsgId(7)), "a sealed empty text is no ACK");
    }

    #[test]
    fn a_32_kib_text_still_fits_and_bad_encodings_are_refused() {
        let alice = KeyPair::from_secret([1; 32]);
        let text = "x".repeat(MAX_TEXT_BYTES);
        let sealed = alice.pairwise(&alice.public()).seal_text([0; NONCE_BYTES], &n("a"), &n("b"), MsgId(1), &text);
        let json = serde_json::to_string(&sealed).expect("encode");
        assert!(json.len() < 44_000, "{}", json.len());
        assert!(serde_json::from_str::<Sealed>(&json).is_ok());
        for bad in ["\"\"", "\"!!!!\"", "\"AAAA\""] {
            assert!(serde_json::from_str::<Sealed>(bad).is_err(), "{bad}");
        }
        let too_long = format!("\"{}\"", "A".repeat((MAX_TEXT_BYTES + SEAL_OVERHEAD).div_ceil(3) * 4 + 4));
        assert!(serde_json::from_str::<Sealed>(&too_long).is_err());
    }
}
