//! Client names: the one rule for what a name may be, checked once when a `Name` is built.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest name, in characters (not bytes).
pub const MAX_NAME_CHARS: usize = 32;

/// A client's name: 1–32 characters, none of them whitespace or control characters.
///
/// Any Unicode letter is fine. A `Name` that exists has passed the check, so code that holds one
/// never checks again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The string is empty.
    #[error("a name cannot be empty")]
    Empty,
    /// The string has more than [`MAX_NAME_CHARS`] characters.
    #[error("a name has at most {MAX_NAME_CHARS} characters, this one has {0}")]
    TooLong(usize),
    /// The string holds whitespace or a control character.
    #[error("a name cannot contain whitespace or control characters")]
    BadChar,
}

impl Name {
    /// Checks `s` against the name rules.
    ///
    /// # Errors
    /// [`NameError`] says which rule `s` breaks.
    pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
        let s = s.into();
        let chars = s.chars().count();
        if chars == 0 {
            return Err(NameError::Empty);
        }
        if chars > MAX_NAME_CHARS {
            return Err(NameError::TooLong(chars));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(NameError::BadChar);
        }
        Ok(Self(s))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::new(s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_names() {
        for ok in ["a", "client1", "Zoë", "李雷", "x-y_z.9", &"n".repeat(32), &"é".repeat(32)] {
            assert_eq!(Name::new(ok).map(|n| n.to_string()), Ok(ok.to_string()));
        }
    }

    #[test]
    fn rejects_empty_long_and_blank_names() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new("n".repeat(33)), Err(NameError::TooLong(33)));
        for bad in ["a b", "tab\there", "nl\n", "\u{7}bell", "nb\u{a0}sp"] {
            assert_eq!(Name::new(bad), Err(NameError::BadChar), "{bad:?}");
        }
    }

    #[test]
    fn deserializing_applies_the_rules() {
        assert!(serde_json::from_str::<Name>("\"bob\"").is_ok());
        assert!(serde_json::from_str::<Name>("\"b o b\"").is_err());
        assert!(serde_json::from_str::<Name>("\"\"").is_err());
    }
}
