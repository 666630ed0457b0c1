//! The fetch of stored messages after `reg`: `fetch` by index (each message read by a job),
//! then `fetch_done`, which deletes what the client has (a removal job) and shows it online.

use std::net::SocketAddr;

use chat_proto::{Datagram, MsgId, Name, Refusal};
use offline_store::{Fetched, Store, StoreError};

use super::Server;
use super::waiting::Resume;
use crate::jobs::Read;
use crate::storage::Delivered;

impl<S: Store> Server<S> {
    /// `name` was confirmed: with nothing stored, the table goes out at once (with some, after
    /// the fetch).
    pub(super) fn start_fetch(&mut self, name: &Name) {
        if self.park_unless_known(std::slice::from_ref(name), || Resume::StartFetch(name.clone())) {
            return;
        }
        if self.storage.known_count(name) == Some(0) {
            self.tables.changed();
            self.storage.evict(name);
        }
    }

    pub(super) fn on_fetch(&mut self, from: SocketAddr, id: MsgId, index: u32) {
        // Marked gone meanwhile (a forced save for it): refused, the client registers again,
        // where silence would make it give up on the server.
        let Some(name) = self.clients.online_at(from).cloned() else {
            self.out.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
            return;
        };
        self.read_stored(from, id, name, index);
    }

    /// Starts the read of message `index` of `name`'s mailbox (once it is known), answered when
    /// it is done.
    pub(super) fn read_stored(&mut self, from: SocketAddr, id: MsgId, name: Name, index: u32) {
        if self.park_unless_known(std::slice::from_ref(&name), || Resume::Fetch { from, id, name: name.clone(), index })
        {
            return;
        }
        match self.storage.read(Read { name: name.clone(), index, to: from, id }) {
            Ok(true) => {}
            // Past the end of a mailbox a discarded batch shrank: the count in the client's
            // `registered` may be no longer true. Refused, the client registers again and
            // learns the count as it is now.
            Ok(false) if self.storage.take_shrunk(&name) => {
                tracing::info!(%from, index, "fetch past the end of a mailbox a discarded batch shrank: refused");
                self.out.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
            }
            Ok(false) => tracing::debug!(%from, index, "fetch of no stored message"),
            // Not answered: the client asks again.
            Err(e) => tracing::warn!(%from, index, "stored message not read: {}", chat_core::report(&e)),
        }
    }

    /// A read job ended: the message goes to the client that asked, or, if another node
    /// delivered it since this one learnt the mailbox, that it is gone (the client skips it and
    /// its fetch goes on). A failure is logged; the client asks again.
    pub(super) fn on_read(&mut self, read: Read, result: Result<Fetched, StoreError>) {
        let Read { name, index, to, id } = read;
        match result {
            Ok(Fetched::Message(message)) => {
                self.out.send(to, &Datagram::Stored { id, index, message });
            }
            Ok(Fetched::Gone(msg)) => {
                tracing::info!(%name, index, %msg, "stored message delivered by another node meanwhile: skipped");
                self.out.send(to, &Datagram::Gone { id, index, msg });
            }
            Err(e) => tracing::warn!(%name, index, "stored message not read: {}", chat_core::report(&e)),
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
        self.dedup.pending(from, id);
        self.deliver(from, id, name, count, last);
    }

    /// Deletes the first `count` messages of `name`'s mailbox (once it is known) if the last of
    /// them is `last`, by a removal job in the store's lane; then the fetch is over.
    pub(super) fn deliver(&mut self, from: SocketAddr, id: MsgId, name: Name, count: u32, last: MsgId) {
        let waiter = || Resume::FetchDone { from, id, name: name.clone(), count, last };
        if self.park_unless_known(std::slice::from_ref(&name), waiter) {
            return;
        }
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        let n = n.min(self.storage.known_count(&name).map_or(0, |c| usize::try_from(c).unwrap_or(usize::MAX)));
        if n == 0 || self.storage.id_at(&name, n - 1) != Some(last) {
            tracing::debug!(%name, "fetch_done for messages no longer at the front: nothing deleted");
            self.fetched(from, id, &name);
            return;
        }
        let waiter = Resume::FetchDone { from, id, name: name.clone(), count, last };
        self.storage.remove_first(name, n, last, waiter);
    }

    /// A removal job ended: the fetch is over, or, if it failed, the request is forgotten so
    /// that the client's retransmission tries again.
    pub(super) fn on_removed(&mut self, waiter: Resume, result: Result<Delivered, StoreError>) {
        let Resume::FetchDone { from, id, name, .. } = waiter else {
            tracing::error!("a removal ended for no fetch_done: {waiter:?}");
            return;
        };
        match result {
            Ok(Delivered::Deleted(n)) => tracing::info!(%name, delivered = n, "stored messages delivered and deleted"),
            Ok(Delivered::NotAtFront) => {
                tracing::debug!(%name, "fetch_done for messages no longer at the front: nothing deleted");
            }
            Err(e) => {
                tracing::error!(%name, "cannot delete delivered messages: {}", chat_core::report(&e));
                self.dedup.forget(from, id);
                return;
            }
        }
        self.fetched(from, id, &name);
    }

    /// The fetch is over: `name` is shown online, its mailbox leaves memory, and the ACK leaves
    /// after the next sync.
    fn fetched(&mut self, from: SocketAddr, id: MsgId, name: &Name) {
        self.tables.changed();
        self.storage.evict(name);
        // The deletion is durable already: with the disk full the fetch is over all the same.
        self.storage.hold(from, id, Datagram::Ack { id }, Datagram::Ack { id });
    }
}
