//! The `register` and `dereg` handlers.

use std::net::SocketAddr;
use std::time::Instant;

use chat_proto::{Datagram, MsgId, Name, PublicKey, Refusal, Secret};
use offline_store::Store;

use super::Server;
use super::waiting::Resume;
use crate::probe::Waiter;

/// What a `register` asks for.
pub(super) struct Registration {
    pub id: MsgId,
    pub name: Name,
    pub secret: Option<Secret>,
    pub key: PublicKey,
    pub lan: Option<SocketAddr>,
}

impl<S: Store> Server<S> {
    pub(super) fn on_register(&mut self, now: Instant, from: SocketAddr, r: Registration) {
        let Registration { id, name, secret, key, lan } = r;
        if self.session_key.is_some_and(|session| session != key) {
            self.dropped += 1;
            tracing::warn!(%name, %from, "dropped a registration whose key is not its session's");
            return;
        }
        if self.replay(from, id) {
            return;
        }
        match lan {
            Some(lan) => self.lans.insert(from, lan),
            None => self.lans.remove(&from),
        };
        // The name belongs to the key that first registered it, and to the secret it was given.
        let wrong_secret =
            self.clients.has_secret(&name) && !secret.as_ref().is_some_and(|s| self.clients.secret_matches(&name, s));
        let wrong_key = self.clients.key(&name).is_some_and(|known| *known != key);
        if wrong_secret || wrong_key {
            // Online elsewhere, the name is simply in use; offline, or a restart at the same
            // address without the data directory, it still belongs to its owner.
            let elsewhere = self.clients.get(&name).is_some_and(|e| e.online && e.addr != from);
            let reason = if elsewhere { Refusal::NameTaken } else { Refusal::NotOwner };
            if elsewhere {
                tracing::info!(%name, %from, "registration refused: the name is in use at another address");
            } else {
                tracing::warn!(%name, %from, wrong_key, "registration refused: not the name's secret or key");
            }
            self.answer(from, id, Datagram::Refused { id, reason });
            return;
        }
        match self.clients.get(&name) {
            Some(e) if e.online && e.addr != from => {
                tracing::info!(%name, %from, old = %e.addr, "name online elsewhere");
                self.dedup.pending(from, id);
                let waiter = Waiter::Register { from, id, name: name.clone(), secret, key };
                self.probe(now, &name, e.addr, waiter);
            }
            _ => self.register(from, id, &name, secret, key),
        }
    }

    /// Puts `name` online at `from` and answers with the number of stored messages (once its
    /// mailbox is known: an open job learns it first). With none the table goes out at once;
    /// with some, after the client confirms it has them all. A new name gets its row only when
    /// `confirm` proves the address for it (the cookie is for the address and the name). A
    /// name the server has no secret for (it lost its row) takes the one the client `shown`,
    /// and one kept from before keys takes the client's `key`.
    pub(super) fn register(&mut self, from: SocketAddr, id: MsgId, name: &Name, shown: Option<Secret>, key: PublicKey) {
        if self.clients.get(name).is_none() {
            self.join(from, id, name, shown, key);
            return;
        }
        self.clients.set_online(name, from);
        self.clients.set_lan(name, self.lans.get(&from).copied());
        if self.clients.key(name).is_none() {
            self.clients.set_key(name, key);
        }
        // A new process at this address holds no table yet, waits for nothing on its way, and
        // confirms this registration, not one that joined from here before.
        self.tables.forget(from);
        self.joining.take(from);
        // The server keeps only a hash: a known name is answered with the secret it showed.
        let secret = match shown {
            Some(s) if self.clients.has_secret(name) => s,
            shown => {
                let s = shown.unwrap_or_else(|| self.ids.fresh_secret());
                self.clients.set_secret(name, &s);
                s
            }
        };
        let cookie = self.ids.cookie(from, self.cookie_period());
        self.answer_registration(from, id, name, (secret, cookie), false);
    }

    /// Answers the registration with the count of `name`'s mailbox as an open job learns it
    /// now: what memory held of it may be stale, as other nodes sharing the store may have
    /// stored into it or delivered from it since (then, this node's fetch would miss the
    /// former, or fail on the latter). The fetch that follows reads that view.
    fn answer_registration(&mut self, from: SocketAddr, id: MsgId, name: &Name, keys: (Secret, u64), joining: bool) {
        self.storage.evict(name);
        match self.storage.known_count(name) {
            Some(count) => self.registered(from, id, name, keys, count, joining),
            None => {
                self.dedup.pending(from, id);
                let (secret, cookie) = keys;
                let waiter = Resume::Register { from, id, name: name.clone(), secret, cookie, joining };
                self.storage.when_known(vec![name.clone()], waiter);
            }
        }
    }

    /// A new name: answered, but its row waits for the address to be confirmed.
    fn join(&mut self, from: SocketAddr, id: MsgId, name: &Name, shown: Option<Secret>, key: PublicKey) {
        let secret = self.joining.secret(from, name).cloned().or(shown).unwrap_or_else(|| self.ids.fresh_secret());
        self.joining.insert(from, name.clone(), secret.clone(), key);
        // A mailbox kept from before the server lost the name's row.
        let cookie = self.ids.joining_cookie(from, name, &key, self.cookie_period());
        self.answer_registration(from, id, name, (secret, cookie), true);
    }

    pub(super) fn on_dereg(&mut self, from: SocketAddr, id: MsgId, name: &Name, secret: &Secret) {
        if self.replay(from, id) {
            return;
        }
        if self.clients.get(name).is_none_or(|e| e.addr != from) {
            self.answer(from, id, Datagram::Refused { id, reason: Refusal::NotRegistered });
            return;
        }
        if !self.clients.secret_matches(name, secret) {
            self.answer(from, id, Datagram::Refused { id, reason: Refusal::NotOwner });
            return;
        }
        if self.clients.set_offline(name) {
            tracing::info!(%name, %from, "deregistered");
            self.tables.changed();
        }
        self.storage.evict(name);
        // Offline, it takes no tables: stop sending it the one in flight.
        self.tables.forget(from);
        self.dedup.pending(from, id);
        // Nothing of a dereg is on disk: with the disk full it is done all the same.
        self.storage.hold(from, id, Datagram::Ack { id }, Datagram::Ack { id });
    }
}
