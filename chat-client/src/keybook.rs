//! The key book: the key this client first saw for each name (trust on first use), the names
//! whose table key is another since, and the safety numbers `verify` shows.
//!
//! It owns the known keys, the warnings already given and the entries the driver has not kept
//! yet. It reads and writes no file: the driver does, in the format of [`KeyBook::parse`] and
//! [`KeyBook::line`] (one `name hex` line per name; a later line for a name replaces an earlier
//! one, so that the driver only ever appends).

use std::collections::HashMap;

use chat_proto::{Name, PublicKey};

/// The label that makes a safety number mean nothing else.
const SAFETY_LABEL: &str = "chatapp 2026 safety number v1";

/// Why the key book's text is not a key book: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct KeyBookError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// What a table row's key means for the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The key known for it, or a first key (now known).
    Known,
    /// Another key than the one known, newly seen: warn once.
    Changed,
    /// The same other key as before: warned already.
    StillChanged,
}

/// The keys known for each name.
#[derive(Debug, Default)]
pub struct KeyBook {
    known: HashMap<Name, PublicKey>,
    /// The other key each name was last warned about.
    warned: HashMap<Name, PublicKey>,
    /// Entries not yet handed to the driver to keep.
    unsaved: Vec<(Name, PublicKey)>,
}

impl KeyBook {
    /// The book kept in `text`: one `name hex` line per name, blank lines skipped; a later
    /// line for a name replaces an earlier one.
    ///
    /// # Errors
    /// [`KeyBookError`] for the first line that is not a name and a key.
    pub fn parse(text: &str) -> Result<Self, KeyBookError> {
        let mut book = Self::default();
        for (i, line) in text.lines().enumerate() {
            let err = |what| KeyBookError { line: i + 1, what };
            let mut words = line.split_whitespace();
            let Some(name) = words.next() else { continue };
            let (Some(key), None) = (words.next(), words.next()) else {
                return Err(err("not a name and a key"));
            };
            let name = Name::new(name).map_err(|_| err("not a valid name"))?;
            let key = key.parse().map_err(|_| err("not a key (64 hex digits)"))?;
            book.known.insert(name, key);
        }
        Ok(book)
    }

    /// The line that keeps `name`'s key, newline included.
    pub fn line(name: &Name, key: &PublicKey) -> String {
        format!("{name} {key}\n")
    }

    /// The key known for `name`.
    pub fn known(&self, name: &Name) -> Option<PublicKey> {
        self.known.get(name).copied()
    }

    /// A table shows `key` for `name`: a first key is known from now on.
    pub(crate) fn handle_seen(&mut self, name: &Name, key: PublicKey) -> Seen {
        match self.known.get(name) {
            None => {
                self.remember(name, key);
                Seen::Known
            }
            Some(k) if *k == key => {
                self.warned.remove(name);
                Seen::Known
            }
            Some(_) if self.warned.get(name) == Some(&key) => Seen::StillChanged,
            Some(_) => {
                self.warned.insert(name.clone(), key);
                Seen::Changed
            }
        }
    }

    /// Whether sends to `name` are held: its table key `current` is not the one known.
    pub(crate) fn holds(&self, name: &Name, current: PublicKey) -> bool {
        self.known.get(name).is_some_and(|k| *k != current)
    }

    /// The user trusts `key` for `name` from now on.
    pub(crate) fn trust(&mut self, name: &Name, key: PublicKey) {
        self.warned.remove(name);
        self.remember(name, key);
    }

    fn remember(&mut self, name: &Name, key: PublicKey) {
        self.known.insert(name.clone(), key);
        self.unsaved.push((name.clone(), key));
    }

    /// The entries the driver has not kept yet, once.
    pub(crate) fn poll_unsaved(&mut self) -> Vec<(Name, PublicKey)> {
        std::mem::take(&mut self.unsaved)
    }
}

/// The safety number of two keys: the same whichever is whose. BLAKE3 in its key-derivation
/// mode, over the two keys in sorted order, read as 12 groups of 5 digits (each from 5 bytes
/// of output, as Signal's safety numbers are).
pub(crate) fn safety_number(a: &PublicKey, b: &PublicKey) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut hasher = blake3::Hasher::new_derive_key(SAFETY_LABEL);
    hasher.update(lo.as_bytes());
    hasher.update(hi.as_bytes());
    let mut out = [0u8; 60];
    hasher.finalize_xof().fill(&mut out);
    let groups: Vec<String> = out
        .chunks_exact(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect();
    groups.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PublicKey {
        PublicKey::from([b; 32])
    }

    fn name(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    #[test]
    fn the_book_round_trips_through_its_lines_and_a_later_line_wins() {
        let mut book = KeyBook::default();
        assert_eq!(book.handle_seen(&name("bob"), key(1)), Seen::Known);
        assert_eq!(book.handle_seen(&name("carol"), key(2)), Seen::Known);
        book.trust(&name("bob"), key(3));
        let text: String = book.poll_unsaved().iter().map(|(n, k)| KeyBook::line(n, k)).collect();
        assert_eq!(text.lines().count(), 3, "appended, never rewritten: {text}");
        let read = KeyBook::parse(&text).expect("its own lines");
        assert_eq!(read.known(&name("bob")), Some(key(3)));
        assert_eq!(read.known(&name("carol")), Some(key(2)));
        assert_eq!(read.known(&name("dave")), None);
        assert!(book.poll_unsaved().is_empty(), "handed out once");
    }

    #[test]
    fn bad_lines_are_errors_that_say_which_line() {
        let good = format!("bob {}\n\n", key(1));
        assert!(KeyBook::parse(&good).is_ok());
        let cases = [
            (format!("{good}bob\n"), 3, "not a name and a key"),
            (format!("bob {} extra\n", key(1)), 1, "not a name and a key"),
            (format!("{good}bob 12ab\n"), 3, "not a key (64 hex digits)"),
            (format!("{} {}\n", "n".repeat(40), key(1)), 1, "not a valid name"),
        ];
        for (text, line, what) in cases {
            assert_eq!(KeyBook::parse(&text).err(), Some(KeyBookError { line, what }), "{text:?}");
        }
    }

    #[test]
    fn a_changed_key_is_reported_once_until_it_changes_again_or_comes_back() {
        let mut book = KeyBook::default();
        let bob = name("bob");
        assert_eq!(book.handle_seen(&bob, key(1)), Seen::Known);
        assert_eq!(book.handle_seen(&bob, key(2)), Seen::Changed);
        assert_eq!(book.handle_seen(&bob, key(2)), Seen::StillChanged);
        assert!(book.holds(&bob, key(2)));
        assert_eq!(book.handle_seen(&bob, key(3)), Seen::Changed);
        assert_eq!(book.handle_seen(&bob, key(1)), Seen::Known);
        assert!(!book.holds(&bob, key(1)));
        assert_eq!(book.handle_seen(&bob, key(2)), Seen::Changed, "a new change warns again");
    }

    #[test]
    fn the_safety_number_is_the_same_both_ways_and_differs_per_pair() {
        let ab = safety_number(&key(1), &key(2));
        assert_eq!(ab, safety_number(&key(2), &key(1)));
        assert_ne!(ab, safety_number(&key(1), &key(3)));
        let groups: Vec<&str> = ab.split(' ').collect();
        assert_eq!(groups.len(), 12, "{ab}");
        assert!(groups.iter().all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())), "{ab}");
    }
}
