//! Long-term identity keys: X25519 key pairs (`crypto_box`, RustCrypto) and the public key as it
//! travels, as 64 hex digits.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An X25519 public key: who a name belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey([u8; 32]);

/// Why a string or a file is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key is 64 hex digits")]
pub struct KeyError;

impl PublicKey {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for PublicKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        parse_hex(s).map(Self)
    }
}

impl TryFrom<String> for PublicKey {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        s.parse()
    }
}

impl From<PublicKey> for String {
    fn from(k: PublicKey) -> String {
        k.to_string()
    }
}

/// 32 bytes from exactly 64 hex digits.
fn parse_hex(s: &str) -> Result<[u8; 32], KeyError> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return Err(KeyError);
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| KeyError)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| KeyError)?;
    }
    Ok(out)
}

/// A long-term X25519 key pair. The secret half never leaves the process but to its key file
/// ([`KeyPair::to_file_text`]); it is wiped from memory when dropped (`zeroize`, in
/// `crypto_box`).
#[derive(Clone)]
pub struct KeyPair {
    secret: crypto_box::SecretKey,
    public: PublicKey,
}

impl KeyPair {
    /// A new key pair from the OS random source.
    ///
    /// # Errors
    /// The OS gives no randomness: there is no fallback.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self::from_secret(bytes))
    }

    /// The key pair whose secret half is `bytes` (a key file's, or a test's).
    pub fn from_secret(bytes: [u8; 32]) -> Self {
        let secret = crypto_box::SecretKey::from(bytes);
        let public = PublicKey(*secret.public_key().as_bytes());
        Self { secret, public }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The secret half, for sealing.
    pub(crate) fn secret(&self) -> &crypto_box::SecretKey {
        &self.secret
    }

    /// The secret half's bytes, for a Noise handshake (`snow` takes the static key as bytes and
    /// keeps its own copy).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The text of a key file: the secret half as 64 hex digits and a newline.
    pub fn to_file_text(&self) -> String {
        let hex: String = self.secret.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}\n")
    }

    /// The key pair a key file's text holds.
    ///
    /// # Errors
    /// [`KeyError`] if the text is not 64 hex digits (and white space around them).
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        parse_hex(text.trim()).map(Self::from_secret)
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_gives_back_the_same_pair_and_bad_text_is_refused() {
        let pair = KeyPair::generate().expect("randomness");
        let again = KeyPair::from_file_text(&pair.to_file_text()).expect("its own text");
        assert_eq!(again.public(), pair.public());
        assert_ne!(KeyPair::generate().expect("randomness").public(), pair.public());
        for bad in ["", "zz", &"0".repeat(63), &"g".repeat(64), &"0".repeat(66)] {
            assert_eq!(KeyPair::from_file_text(bad).map(|p| p.public()), Err(KeyError), "{bad:?}");
        }
        assert!(!format!("{pair:?}").contains(pair.to_file_text().trim()), "Debug shows no secret");
    }

    #[test]
    fn a_public_key_travels_as_hex() {
        let key = KeyPair::from_secret([7; 32]).public();
        let json = serde_json::to_string(&key).expect("encode");
        assert_eq!(json.len(), 66);
        assert_eq!(serde_json::from_str::<PublicKey>(&json).expect("decode"), key);
        assert!(serde_json::from_str::<PublicKey>("\"abc\"").is_err());
    }
}
