//! The fetch of stored messages after `reg`: `fetch` by index, then `fetch_done`, which deletes
//! what the client has and shows it online.

use std::net::SocketAddr;

use chat_proto::{Datagram, MsgId, Name, Refusal};
use offline_store::Store;

use super::Server;
use crate::storage::Delivered;

impl<S: Store> Server<S> {
    /// Opens `name`'s mailbox for it to fetch; with nothing stored, the table goes out at once
    /// (with some, after the fetch). Returns how many messages there are.
    pub(super) fn start_fetch(&mut self, name: &Name) -> u32 {
        let count = self.storage.open_mailbox(name);
        if count == 0 {
            self.tables.changed();
        }
        count
    }

    pub(super) fn on_fetch(&mut self, from: SocketAddr, id: MsgId, index: u32) {
        let Some(name) = self.clients.online_at(from).cloned() else { return };
        match self.storage.stored(&name, index) {
            Some(message) => {
                self.out.send(from, &Datagram::Stored { id, index, message });
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
        match self.storage.deliver_first(&name, count, last) {
            Ok(Delivered::Deleted(n)) => tracing::info!(%name, delivered = n, "stored messages delivered and deleted"),
            Ok(Delivered::NotAtFront) => {
                tracing::debug!(%name, "fetch_done for messages no longer at the front: nothing deleted");
            }
            Err(e) => {
                tracing::error!(%name, "cannot delete delivered messages: {e}");
                return; // the client retries
            }
        }
        self.tables.changed();
        self.dedup.pending(from, id);
        // The deletion is durable already: with the disk full the fetch is over all the same.
        self.storage.hold(from, id, Datagram::Ack { id }, Datagram::Ack { id });
    }
}
