//! Registration, de-registration, and the fetch of stored messages after `reg`.

use std::net::SocketAddr;
use std::time::Instant;

use chat_proto::{Datagram, MsgId, Name, Refusal, Secret};
use offline_store::Store;

use crate::Server;
use crate::probe::Waiter;

impl<S: Store> Server<S> {
    pub(crate) fn on_register(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: MsgId,
        name: Name,
        secret: Option<Secret>,
    ) {
        if self.replay(from, id) {
            return;
        }
        if self.clients.secret(&name).is_some_and(|known| Some(known) != secret.as_ref()) {
            // Online elsewhere, the name is simply in use; offline, or a restart at the same
            // address without the data directory, it still belongs to its owner.
            let elsewhere = self.clients.get(&name).is_some_and(|e| e.online && e.addr != from);
            let reason = if elsewhere { Refusal::NameTaken } else { Refusal::NotOwner };
            tracing::warn!(%name, %from, ?reason, "registration without the name's secret refused");
            self.answer(from, id, Datagram::Refused { id, reason });
            return;
        }
        match self.clients.get(&name) {
            Some(e) if e.online && e.addr != from => {
                tracing::info!(%name, %from, old = %e.addr, "name online elsewhere");
                self.dedup.pending(from, id);
                self.probe(now, &name, e.addr, Waiter::Register { from, id, name: name.clone() });
            }
            _ => self.register(now, from, id, &name, secret),
        }
    }

    /// Puts `name` online at `from` and answers with the number of stored messages. With none
    /// the table goes out at once; with some, after the client confirms it has them all. A new
    /// name gets its row only when `confirm` proves the address for it (the cookie is for the
    /// address and the name). A name the server has no secret for (it lost its row) takes the
    /// one the client `shown`.
    pub(crate) fn register(&mut self, _now: Instant, from: SocketAddr, id: MsgId, name: &Name, shown: Option<Secret>) {
        if self.clients.get(name).is_none() {
            let secret = self.joining.secret(from, name).cloned().or(shown).unwrap_or_else(|| self.fresh_secret());
            self.joining.insert(from, name.clone(), secret.clone());
            // A mailbox kept from before the server lost the name's row.
            let stored = self.storage.count(name);
            tracing::info!(%name, %from, stored, "new name: its row waits for the address to be confirmed");
            let (version, cookie) = (self.clients.version(), self.joining_cookie(from, name));
            self.answer(from, id, Datagram::Registered { id, version, stored, secret, cookie });
            return;
        }
        self.clients.set_online(name, from);
        // A new process at this address holds no table yet, waits for nothing on its way, and
        // confirms this registration, not one that joined from here before.
        self.acked.remove(&from);
        self.pushes.remove(&from);
        self.joining.take(from);
        let count = self.start_fetch(name);
        tracing::info!(%name, %from, stored = count, "registered");
        let secret = match self.clients.secret(name) {
            Some(s) => s.clone(),
            None => {
                let s = shown.unwrap_or_else(|| self.fresh_secret());
                self.clients.set_secret(name, s.clone());
                s
            }
        };
        let (version, cookie) = (self.clients.version(), self.cookie(from));
        self.answer(from, id, Datagram::Registered { id, version, stored: count, secret, cookie });
    }

    /// Loads `name`'s stored messages for it to fetch; with none, the table goes out at once
    /// (with some, after the fetch). Returns how many there are.
    pub(crate) fn start_fetch(&mut self, name: &Name) -> u32 {
        let stored = self.storage.load(name);
        let count = u32::try_from(stored.len()).unwrap_or(u32::MAX);
        if stored.is_empty() {
            self.fetches.remove(name);
            self.table_dirty = true;
        } else {
            self.fetches.insert(name.clone(), stored);
        }
        count
    }

    pub(crate) fn on_dereg(&mut self, from: SocketAddr, id: MsgId, name: &Name, secret: &Secret) {
        if self.replay(from, id) {
            return;
        }
        if self.clients.get(name).is_none_or(|e| e.addr != from) {
            self.answer(from, id, Datagram::Refused { id, reason: Refusal::NotRegistered });
            return;
        }
        if self.clients.secret(name) != Some(secret) {
            self.answer(from, id, Datagram::Refused { id, reason: Refusal::NotOwner });
            return;
        }
        if self.clients.set_offline(name) {
            tracing::info!(%name, %from, "deregistered");
            self.table_dirty = true;
        }
        self.fetches.remove(name);
        // Offline, it takes no tables: stop sending it the one in flight.
        self.pushes.remove(&from);
        self.acked.remove(&from);
        self.dedup.pending(from, id);
        self.storage.hold(from, id, Datagram::Ack { id });
    }

    pub(crate) fn on_fetch(&mut self, from: SocketAddr, id: MsgId, index: u32) {
        let Some(name) = self.clients.online_at(from).cloned() else { return };
        if !self.fetches.contains_key(&name) {
            // A restart forgot what was being fetched: the mailbox still has it.
            let msgs = self.storage.load(&name);
            if !msgs.is_empty() {
                self.fetches.insert(name.clone(), msgs);
            }
        }
        let message = self.fetches.get(&name).and_then(|msgs| msgs.get(usize::try_from(index).ok()?));
        match message {
            Some(message) => {
                let reply = Datagram::Stored { id, index, message: message.clone() };
                self.send(from, &reply);
            }
            None => tracing::debug!(%from, index, "fetch of no stored message"),
        }
    }

    /// The client has the first `count` stored messages, the last of them `last`: delete them
    /// (if they are still there), then tell everyone it is online.
    pub(crate) fn on_fetch_done(&mut self, from: SocketAddr, id: MsgId, count: u32, last: MsgId) {
        if self.replay(from, id) {
            return;
        }
        let Some(name) = self.clients.online_at(from).cloned() else {
            self.answer(from, id, Datagram::Refused { id, reason: Refusal::NotRegistered });
            return;
        };
        let msgs = match self.fetches.remove(&name) {
            Some(msgs) => msgs,
            None => self.storage.load(&name), // a restart forgot them
        };
        let n = usize::try_from(count).unwrap_or(usize::MAX).min(msgs.len());
        if n > 0 && msgs[n - 1].id == last {
            if let Err(e) = self.storage.remove_first(&name, n) {
                tracing::error!(%name, "cannot delete delivered messages: {e}");
                self.fetches.insert(name, msgs);
                return; // the client retries
            }
            tracing::info!(%name, delivered = n, "stored messages delivered and deleted");
        } else {
            tracing::debug!(%name, "fetch_done for messages no longer at the front: nothing deleted");
        }
        self.table_dirty = true;
        self.dedup.pending(from, id);
        self.storage.hold(from, id, Datagram::Ack { id });
    }
}
