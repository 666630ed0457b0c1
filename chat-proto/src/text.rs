//! Message texts: the size limit and the characters a message may hold.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest message text, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 32 * 1024;

/// The longest message text once JSON-escaped (quotes, backslashes and tabs take two bytes):
/// what is left of one datagram after the largest envelope that carries a text (a stored
/// message with its ids, timestamp and names). So every datagram with a valid text fits.
pub const MAX_TEXT_ESCAPED: usize = crate::MAX_PAYLOAD - 1_000;

/// A message text: at most [`MAX_TEXT_BYTES`] bytes, no control characters but tab.
///
/// Refusing control characters keeps a peer from sending terminal escape sequences that would
/// repaint the recipient's screen, and keeps every message on one output line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

/// Why a string is not a valid [`Text`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The text is longer than [`MAX_TEXT_BYTES`].
    #[error("message too long: {0} bytes, the limit is {MAX_TEXT_BYTES}")]
    TooLong(usize),
    /// The text would be longer than [`MAX_TEXT_ESCAPED`] on the wire.
    #[error(
        "message too long: {0} bytes once encoded (quotes, backslashes and tabs count twice), the limit is {MAX_TEXT_ESCAPED}"
    )]
    TooLongEncoded(usize),
    /// The text holds a control character other than tab.
    #[error("a message cannot contain control characters")]
    BadChar,
}

impl Text {
    /// Checks `s` against the text rules.
    ///
    /// # Errors
    /// [`TextError`] says which rule `s` breaks.
    pub fn new(s: impl Into<String>) -> Result<Self, TextError> {
        let s = s.into();
        if s.len() > MAX_TEXT_BYTES {
            return Err(TextError::TooLong(s.len()));
        }
        if s.chars().any(|c| c.is_control() && c != '\t') {
            return Err(TextError::BadChar);
        }
        let escaped = s.len() + s.bytes().filter(|b| matches!(b, b'"' | b'\\' | b'\t')).count();
        if escaped > MAX_TEXT_ESCAPED {
            return Err(TextError::TooLongEncoded(escaped));
        }
        Ok(Self(s))
    }

    /// The text itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Text {
    type Error = TextError;
    fn try_from(s: String) -> Result<Self, TextError> {
        Self::new(s)
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_spaces_tabs_and_unicode() {
        let t = Text::new("  hi\tthere  ✓ 你好 ").expect("valid text");
        assert_eq!(t.as_str(), "  hi\tthere  ✓ 你好 ");
        assert!(Text::new("").is_ok());
    }

    #[test]
    fn enforces_the_byte_limit() {
        assert!(Text::new("x".repeat(MAX_TEXT_BYTES)).is_ok());
        assert_eq!(Text::new("x".repeat(MAX_TEXT_BYTES + 1)), Err(TextError::TooLong(MAX_TEXT_BYTES + 1)));
        // The limit is in bytes: 3-byte characters reach it sooner.
        assert!(Text::new("€".repeat(MAX_TEXT_BYTES / 3 + 1)).is_err());
    }

    #[test]
    fn counts_what_json_escapes() {
        assert!(Text::new("\"".repeat(MAX_TEXT_ESCAPED / 2)).is_ok());
        assert_eq!(
            Text::new("\\".repeat(MAX_TEXT_ESCAPED / 2 + 1)),
            Err(TextError::TooLongEncoded(2 * (MAX_TEXT_ESCAPED / 2 + 1)))
        );
    }

    #[test]
    fn refuses_control_characters() {
        for bad in ["a\nb", "\u{1b}[2J", "nul\0", "\r"] {
            assert_eq!(Text::new(bad), Err(TextError::BadChar), "{bad:?}");
        }
    }
}
