//! What the server keeps of a name's secret: its BLAKE3 hash, never the secret, so that its
//! table files (and its memory) give nobody a secret to show. A secret shown later is hashed and
//! compared in constant time (`subtle`). A secret is 128 random bits, so a plain hash (in BLAKE3's
//! key derivation mode, with a context of its own) is as hard to invert as the secret is to guess.

use std::fmt;

use chat_proto::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// The context string of the hash: no other hash in ChatApp can collide with it.
const CONTEXT: &str = "chatapp 2026-12 name secret v1";

/// The hash of a name's secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretHash([u8; 32]);

impl SecretHash {
    /// The hash of `secret`.
    pub fn of(secret: &Secret) -> Self {
        Self(blake3::derive_key(CONTEXT, secret.expose().as_bytes()))
    }

    /// Whether `shown` is the secret hashed here, in time that does not depend on where the
    /// hashes differ.
    pub fn matches(&self, shown: &Secret) -> bool {
        Self::of(shown).0.ct_eq(&self.0).into()
    }

    fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *o = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl Serialize for SecretHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for SecretHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("a secret hash is 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s).expect("secret")
    }

    #[test]
    fn only_the_hashed_secret_matches_and_the_hash_reads_back() {
        let s = secret("0123456789abcdef0123456789abcdef");
        let h = SecretHash::of(&s);
        assert!(h.matches(&s));
        assert!(!h.matches(&secret("0123456789abcdef0123456789abcdee")));
        let json = serde_json::to_string(&h).expect("json");
        assert!(!json.contains(s.expose()));
        assert_eq!(serde_json::from_str::<SecretHash>(&json).expect("back"), h);
        assert!(serde_json::from_str::<SecretHash>("\"0123\"").is_err());
        assert!(serde_json::from_str::<SecretHash>(&format!("\"{}\"", "zz".repeat(32))).is_err());
    }
}
