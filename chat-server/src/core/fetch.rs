//! The fetch of stored messages after `reg`: `fetch` by index, then `fetch_done`, which deletes
//! what the client has and shows it online.

use std::net::SocketAddr;

use chat_proto::{Datagram, MsgId, Name, Refusal};
use offline_store::Store;

use super::Server;

impl<S: Store> Server<S> {
    /// Loads `name`'s stored messages for it to fetch; with none, the table goes out at once
    /// (with some, after the fetch). Returns how many there are.
    pub(super) fn start_fetch(&mut self, name: &Name) -> u32 {
        let stored = self.storage.load(name);
        let count = u32::try_from(stored.len()).unwrap_or(u32::MAX);
        if stored.is_empty() {
            self.fetches.remove(name);
            self.tables.changed();
        } else {
            self.fetches.insert(name.clone(), stored);
        }
        count
    }

    pub(super) fn on_fetch(&mut self, from: SocketAddr, id: MsgId, index: u32) {
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
                self.out.send(from, &reply);
            }
            None => tracing::debug!(%from, index, "fetch of no stored message"),
        }
    }

    /// The client has the first `count` stored messages, the last of them `last`: delete them
    /// (if they are still there), then tell everyone it is online.
    pub(super) fn on_fetch_done(&mut self, from: SocketAddr, id: MsgId, count: u32, last: MsgId) {
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
        self.tables.changed();
        self.dedup.pending(from, id);
        self.storage.hold(from, id, Datagram::Ack { id });
    }
}
