//! The inbox's record of the messages this client has shown, so that a duplicate is ACKed again
//! but shown once, live or stored, also after the client restarts: the driver keeps the record
//! in a file ([`crate::record`]), loads it at start and appends each message's id right after
//! its line is printed (the core hands the id out with the line), before its ACK leaves.
//!
//! It owns only the ids (bounded, oldest forgotten first) and their text form; it neither shows
//! nor answers anything, and touches no file.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;

use chat_proto::{MsgId, Name, Origin, StoredMessage};

/// How many shown messages are remembered, both kinds together. More than a mailbox holds by
/// default (10,000), so a fetch that starts over after a restart finds every message it showed.
pub(crate) const SHOWN_KEPT: usize = 32_768;

/// One message shown.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Shown {
    /// A direct message's id is its sender's: the same id from two senders is two messages.
    Chat(Name, MsgId),
    /// A channel message.
    Channel(MsgId),
}

/// Its line in the record file: `d <name> <id>` or `c <id>`, the id in 16 hex digits (a name
/// holds no whitespace).
impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chat(from, id) => write!(f, "d {from} {id}"),
            Self::Channel(id) => write!(f, "c {id}"),
        }
    }
}

/// The message a stored one is.
impl From<&StoredMessage> for Shown {
    fn from(m: &StoredMessage) -> Self {
        match m.origin {
            Origin::Direct => Self::Chat(m.from.clone(), m.id),
            Origin::Channel => Self::Channel(m.id),
        }
    }
}

/// A line of the record file that is not a [`Shown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a shown message's line")]
pub(crate) struct BadLine;

impl FromStr for Shown {
    type Err = BadLine;

    fn from_str(line: &str) -> Result<Self, BadLine> {
        let id = |hex: &str| match hex.len() {
            16 => u64::from_str_radix(hex, 16).map(MsgId).map_err(|_| BadLine),
            _ => Err(BadLine),
        };
        let parts: Vec<&str> = line.split(' ').collect();
        match parts[..] {
            ["d", from, hex] => Ok(Self::Chat(Name::new(from).map_err(|_| BadLine)?, id(hex)?)),
            ["c", hex] => Ok(Self::Channel(id(hex)?)),
            _ => Err(BadLine),
        }
    }
}

/// The messages shown lately, oldest first.
#[derive(Debug)]
pub(crate) struct Inbox {
    seen: HashSet<Shown>,
    order: VecDeque<Shown>,
    capacity: usize,
}

impl Default for Inbox {
    fn default() -> Self {
        Self::with_capacity(SHOWN_KEPT)
    }
}

impl Inbox {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { seen: HashSet::new(), order: VecDeque::new(), capacity }
    }

    /// The record kept in `text` (one [`Shown`] a line, oldest first), and how many of its
    /// lines were damaged (skipped: the others still count).
    pub(crate) fn parse(text: &str, capacity: usize) -> (Self, usize) {
        let mut inbox = Self::with_capacity(capacity);
        let mut damaged = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match line.trim().parse::<Shown>() {
                Ok(shown) => {
                    inbox.remember(shown);
                }
                Err(BadLine) => damaged += 1,
            }
        }
        (inbox, damaged)
    }

    /// The whole record as its file holds it, oldest first (to compact the file).
    pub(crate) fn lines(&self) -> String {
        self.order.iter().map(|s| format!("{s}\n")).collect()
    }

    /// How many shown messages it remembers.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Records a direct message; true if it was not shown before.
    pub fn first_chat(&mut self, from: &Name, id: MsgId) -> bool {
        self.first(Shown::Chat(from.clone(), id))
    }

    /// Records a channel message; true if it was not shown before.
    pub fn first_channel(&mut self, id: MsgId) -> bool {
        self.first(Shown::Channel(id))
    }

    /// Records a stored message; false if it was shown already (live, its ACK lost, so it was
    /// stored too; or stored, by a run that ended before its `fetch_done` was answered).
    pub fn first_stored(&mut self, m: &StoredMessage) -> bool {
        match m.origin {
            Origin::Direct => self.first_chat(&m.from, m.id),
            Origin::Channel => self.first_channel(m.id),
        }
    }

    /// Whether `shown` was shown (and is still remembered).
    pub(crate) fn contains(&self, shown: &Shown) -> bool {
        self.seen.contains(shown)
    }

    /// Records `shown`; true if it was not shown before.
    pub(crate) fn first(&mut self, shown: Shown) -> bool {
        self.remember(shown)
    }

    /// Remembers `shown`, forgetting the oldest past the capacity; true if it was new.
    fn remember(&mut self, shown: Shown) -> bool {
        if !self.seen.insert(shown.clone()) {
            return false;
        }
        self.order.push_back(shown);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    #[test]
    fn a_duplicate_is_not_new_until_forgotten() {
        let mut inbox = Inbox::with_capacity(2);
        assert!(inbox.first_channel(MsgId(1)));
        assert!(!inbox.first_channel(MsgId(1)));
        assert!(inbox.first_channel(MsgId(2)));
        assert!(inbox.first_channel(MsgId(3)));
        assert!(inbox.first_channel(MsgId(1)), "1 was the oldest and is forgotten");
    }

    #[test]
    fn chat_ids_are_per_sender() {
        let mut inbox = Inbox::default();
        let (bob, carol) = (name("bob"), name("carol"));
        assert!(inbox.first_chat(&bob, MsgId(1)));
        assert!(inbox.first_chat(&carol, MsgId(1)));
        assert!(!inbox.first_chat(&bob, MsgId(1)));
        assert!(inbox.first_channel(MsgId(1)), "a channel id is not a chat id");
    }

    #[test]
    fn what_was_shown_survives_a_reload_of_its_lines() {
        let mut inbox = Inbox::default();
        assert!(inbox.first_chat(&name("bob"), MsgId(0xdead_beef)));
        assert!(inbox.first_channel(MsgId(u64::MAX)));
        assert!(!inbox.first_channel(MsgId(u64::MAX)));
        let text = inbox.lines();
        assert_eq!(text, "d bob 00000000deadbeef\nc ffffffffffffffff\n");

        let (mut again, damaged) = Inbox::parse(&text, SHOWN_KEPT);
        assert_eq!(damaged, 0);
        assert!(!again.first_chat(&name("bob"), MsgId(0xdead_beef)), "shown before the restart");
        assert!(!again.first_channel(MsgId(u64::MAX)));
        assert!(again.first_chat(&name("carol"), MsgId(0xdead_beef)));
        assert_eq!(again.lines(), format!("{text}d carol 00000000deadbeef\n"));
    }

    #[test]
    fn a_reload_keeps_the_newest_within_the_bound() {
        let text: String = (0..10u64).map(|i| format!("{}\n", Shown::Channel(MsgId(i)))).collect();
        let (mut inbox, _) = Inbox::parse(&text, 4);
        assert_eq!(inbox.len(), 4);
        assert_eq!(inbox.lines(), "c 0000000000000006\nc 0000000000000007\nc 0000000000000008\nc 0000000000000009\n");
        assert!(!inbox.first_channel(MsgId(9)));
        assert!(inbox.first_channel(MsgId(5)), "older than the bound: forgotten");
    }

    #[test]
    fn damaged_lines_are_counted_and_skipped_and_the_others_still_count() {
        let text = "d bob 0000000000000001\nd bob 00000000000000\ngarbage\nd two words 0000000000000002\n\
                    c 000000000000000g\n\u{0}\u{1}\nc 0000000000000003\nd bob 00000000000000";
        let (mut inbox, damaged) = Inbox::parse(text, SHOWN_KEPT);
        assert_eq!(damaged, 6, "the last line, cut short by a kill mid-write, is one of them");
        assert!(!inbox.first_chat(&name("bob"), MsgId(1)));
        assert!(!inbox.first_channel(MsgId(3)));
        assert_eq!(inbox.len(), 2);
    }
}
