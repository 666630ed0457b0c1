//! The inbox's memory of recent message ids, so that a duplicate is ACKed again but shown once,
//! live or stored. It owns only the ids (bounded, oldest forgotten first); it neither shows nor
//! answers anything.

use chat_core::BoundedMap;
use chat_proto::{MsgId, Name, Origin, StoredMessage};

/// How many recent message ids are remembered, per kind, to spot duplicates.
const RECENT_IDS: usize = 16_384;

/// The ids of the direct and channel messages shown lately.
#[derive(Debug)]
pub(crate) struct Inbox {
    /// A direct message's id is its sender's: the same id from two senders is two messages.
    chats: BoundedMap<(Name, MsgId), ()>,
    channel: BoundedMap<MsgId, ()>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self::with_capacity(RECENT_IDS)
    }
}

impl Inbox {
    fn with_capacity(capacity: usize) -> Self {
        Self { chats: BoundedMap::new(capacity), channel: BoundedMap::new(capacity) }
    }

    /// Records a direct message; true if it was not seen lately.
    pub fn first_chat(&mut self, from: &Name, id: MsgId) -> bool {
        first(&mut self.chats, (from.clone(), id))
    }

    /// Records a channel message; true if it was not seen lately.
    pub fn first_channel(&mut self, id: MsgId) -> bool {
        first(&mut self.channel, id)
    }

    /// Records a stored message; false if it was shown live already (its ACK was lost, so it
    /// was stored too).
    pub fn first_stored(&mut self, m: &StoredMessage) -> bool {
        match m.origin {
            Origin::Direct => self.first_chat(&m.from, m.id),
            Origin::Channel => self.first_channel(m.id),
        }
    }
}

fn first<K: std::hash::Hash + Eq + Clone>(map: &mut BoundedMap<K, ()>, key: K) -> bool {
    map.insert(key, ()).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (bob, carol) = (Name::new("bob").expect("name"), Name::new("carol").expect("name"));
        assert!(inbox.first_chat(&bob, MsgId(1)));
        assert!(inbox.first_chat(&carol, MsgId(1)));
        assert!(!inbox.first_chat(&bob, MsgId(1)));
    }
}
