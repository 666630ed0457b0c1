//! The page's token: 128 bits from the OS random source, made once per run and printed in the
//! page's address. Whoever has it may use the page; it is compared in constant time and never
//! logged.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::WebError;

/// The token's length in bytes.
const LEN: usize = 16;

/// A random token that opens the page.
#[derive(Clone)]
pub struct Token([u8; LEN]);

impl Token {
    /// A fresh token from the OS random source.
    ///
    /// # Errors
    /// [`WebError::Random`]: the OS gives no randomness (never a weaker fallback).
    pub fn from_os() -> Result<Self, WebError> {
        let mut bytes = [0u8; LEN];
        getrandom::fill(&mut bytes).map_err(WebError::Random)?;
        Ok(Self(bytes))
    }

    /// The token as it goes in the address: 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `given` (from a request) is this token, compared in constant time.
    pub fn matches(&self, given: &str) -> bool {
        let Some(bytes) = decode(given) else { return false };
        bool::from(bytes.ct_eq(&self.0))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// 32 hex digits as bytes; anything else is none.
fn decode(hex: &str) -> Option<[u8; LEN]> {
    let digits = hex.as_bytes();
    if digits.len() != 2 * LEN {
        return None;
    }
    let mut out = [0u8; LEN];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_own_hex_only() {
        let token = Token::from_os().expect("randomness");
        let hex = token.hex();
        assert_eq!(hex.len(), 32);
        assert!(token.matches(&hex));
        assert!(token.matches(&hex.to_uppercase()), "hex digits in either case");
        let mut other = hex.clone().into_bytes();
        other[31] = if other[31] == b'0' { b'1' } else { b'0' };
        assert!(!token.matches(std::str::from_utf8(&other).expect("ascii")));
        for bad in ["", "00", &hex[..31], &format!("{hex}0"), "zz", &"é".repeat(16)] {
            assert!(!token.matches(bad), "{bad:?}");
        }
        assert_ne!(Token::from_os().expect("randomness").hex(), hex, "fresh each time");
        assert_eq!(format!("{token:?}"), "Token(…)", "never shown by Debug");
    }
}
