//! Channel messages on their way to online members: which members each is still owed to, so
//! that the store's durable record of it ([`offline_store::Store::note_owed`]) is marked done
//! once every member's copy was ACKed or stored. Owns that set only; it neither sends nor
//! stores anything.

use std::collections::{HashMap, HashSet};

use chat_proto::{MsgId, Name, StoredMessage};

/// The members still owed each channel message, by sender and channel id.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    open: HashMap<(Name, MsgId), HashSet<Name>>,
}

impl Owed {
    /// `msg` is on its way to `members` (a message relayed again replaces what was owed).
    pub fn open(&mut self, msg: &StoredMessage, members: impl IntoIterator<Item = Name>) {
        let members: HashSet<Name> = members.into_iter().collect();
        if !members.is_empty() {
            self.open.insert((msg.from.clone(), msg.id), members);
        }
    }

    /// `msg` is on its way to `members` too (a copy handed over by another node, which may
    /// come again): added to those it is owed to already.
    pub fn add(&mut self, msg: &StoredMessage, members: impl IntoIterator<Item = Name>) {
        let key = (msg.from.clone(), msg.id);
        let members: HashSet<Name> = members.into_iter().collect();
        if !members.is_empty() {
            self.open.entry(key).or_default().extend(members);
        }
    }

    /// `member`'s copy of `msg` was ACKed or stored (or handed to another node). Returns true
    /// when that was the last member owed it: the message is done.
    pub fn served(&mut self, msg: &StoredMessage, member: &Name) -> bool {
        let key = (msg.from.clone(), msg.id);
        let Some(members) = self.open.get_mut(&key) else { return false };
        if !members.remove(member) || !members.is_empty() {
            return false;
        }
        self.open.remove(&key);
        true
    }

    /// How many messages are owed to someone.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use chat_proto::{Origin, Text};

    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    #[test]
    fn a_message_is_done_once_its_last_member_is_served() {
        let msg = StoredMessage {
            id: MsgId(9),
            from: name("alice"),
            origin: Origin::Channel,
            at: chrono::DateTime::UNIX_EPOCH,
            body: Text::new("hi").expect("text").into(),
        };
        let mut owed = Owed::default();
        owed.open(&msg, [name("bob"), name("carol")]);
        assert!(!owed.served(&msg, &name("bob")));
        assert!(!owed.served(&msg, &name("bob")), "a second ACK of the same member is not another member");
        assert!(!owed.served(&msg, &name("dave")), "a member not owed it changes nothing");
        assert!(owed.served(&msg, &name("carol")));
        assert_eq!(owed.len(), 0);
        assert!(!owed.served(&msg, &name("carol")), "done once");
    }
}
