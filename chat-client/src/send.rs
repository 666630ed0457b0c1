//! A direct message on its way: the same chat id and the same sealed bytes on every attempt,
//! first to the peer, then, failing that, to the server as a save-message request. It owns the
//! message and builds its datagrams; it sends nothing and keeps no timers (the requests in
//! flight do).

use chat_proto::{Datagram, MsgId, Name, PublicKey, Sealed, Secret};

/// A direct message on its way.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    to: Name,
    /// The key it is sealed for: the recipient's ACK must be made with it.
    key: PublicKey,
    sealed: Sealed,
    /// The same id on every attempt, so the peer shows it once however often it arrives.
    chat_id: MsgId,
    /// The server already refused a save with `exists` once: next time it must store.
    retried: bool,
    /// The command it answers (see `answers.rs`).
    turn: Option<u64>,
}

impl Outgoing {
    /// A text `sealed` for `to`, whose key is `key`, with the id it keeps on every attempt, for
    /// command `turn`.
    pub fn new((to, key): (Name, PublicKey), sealed: Sealed, chat_id: MsgId, turn: Option<u64>) -> Self {
        Self { to, key, sealed, chat_id, retried: false, turn }
    }

    /// The recipient's key.
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// The command it answers.
    pub fn turn(&self) -> Option<u64> {
        self.turn
    }

    /// The recipient.
    pub fn to(&self) -> &Name {
        &self.to
    }

    /// The chat id, which is also the request id of a direct attempt.
    pub fn chat_id(&self) -> MsgId {
        self.chat_id
    }

    /// The direct message, from `me`.
    pub fn chat(&self, me: &Name) -> Datagram {
        Datagram::Chat { id: self.chat_id, from: me.clone(), to: self.to.clone(), sealed: self.sealed.clone() }
    }

    /// The same chat, to go through the server.
    pub fn relay(&self, me: &Name) -> Datagram {
        Datagram::RelayChat { id: self.chat_id, from: me.clone(), to: self.to.clone(), sealed: self.sealed.clone() }
    }

    /// The save-message request `id`, from `me` proven by `secret`.
    pub fn save(&self, id: MsgId, me: &Name, secret: Secret) -> Datagram {
        Datagram::Save {
            id,
            msg: self.chat_id,
            from: me.clone(),
            secret,
            to: self.to.clone(),
            sealed: self.sealed.clone(),
            force: self.retried,
        }
    }

    /// The server refused a save because the recipient answered its probe: the next save must
    /// store.
    pub fn handle_exists(&mut self) {
        self.retried = true;
    }
}
