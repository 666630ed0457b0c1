//! What waits on disk work: a request parked in the storage port until the mailboxes it needs
//! are known, and how each goes on once they are ([`Server::resume`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use chat_proto::{Datagram, MsgId, Name, Refusal, Secret, StoredMessage};
use offline_store::Store;

use super::Server;

/// A request (or a part of one) waiting for mailboxes to be learnt.
#[derive(Debug)]
pub(crate) enum Resume {
    /// A registration, answered with the count of `name`'s stored messages. `joining`: a new
    /// name, whose row waits for the address to be confirmed.
    Register { from: SocketAddr, id: MsgId, name: Name, secret: Secret, cookie: u64, joining: bool },
    /// A name just confirmed: with nothing stored, the table goes out at once.
    StartFetch(Name),
    /// A fetch of message `index`.
    Fetch { from: SocketAddr, id: MsgId, name: Name, index: u32 },
    /// A `fetch_done`: the first `count` messages, the last of them `last`, are delivered.
    FetchDone { from: SocketAddr, id: MsgId, name: Name, count: u32, last: MsgId },
    /// A save for `to`.
    Save { from: SocketAddr, id: MsgId, to: Name, msg: StoredMessage },
    /// A channel copy for a member found gone (its sender was answered long ago).
    Copy { to: Name, msg: StoredMessage },
    /// A channel message, before its fan-out: it waits for the offline members' mailboxes.
    Channel { from: SocketAddr, id: MsgId, sender: Name, msg: Arc<StoredMessage>, bytes: Arc<[u8]> },
}

impl<S: Store> Server<S> {
    /// Parks the request `waiter()` makes if any of `names`' mailboxes is not known yet, and
    /// returns true; the handler then stops, and goes on in [`Server::resume`].
    pub(super) fn park_unless_known(&mut self, names: &[Name], waiter: impl FnOnce() -> Resume) -> bool {
        let unknown = self.storage.unknown(names.iter().cloned());
        if unknown.is_empty() {
            return false;
        }
        self.storage.when_known(unknown, waiter());
        true
    }

    /// The mailboxes `waiter` waited for are known (but `failed`, which could not be read).
    pub(super) fn resume(&mut self, now: Instant, waiter: Resume, failed: &[Name]) {
        let ok = failed.is_empty();
        match waiter {
            Resume::Register { from, id, name, secret, cookie, joining } => {
                // An unreadable mailbox (logged) counts none: it is kept for the next registration.
                match self.storage.known_count(&name).filter(|_| ok) {
                    Some(count) => self.registered(from, id, &name, (secret, cookie), count, joining),
                    None if ok => {
                        // Evicted again meanwhile: learnt again.
                        let waiter = Resume::Register { from, id, name: name.clone(), secret, cookie, joining };
                        self.storage.when_known(vec![name], waiter);
                    }
                    None => self.registered(from, id, &name, (secret, cookie), 0, joining),
                }
            }
            Resume::StartFetch(name) => self.start_fetch(&name),
            Resume::Fetch { from, id, name, index } if ok => self.read_stored(from, id, name, index),
            Resume::FetchDone { from, id, name, count, last } if ok => self.deliver(from, id, name, count, last),
            Resume::Save { from, id, to, msg } if ok => self.store_for(from, id, &to, msg),
            Resume::Copy { to, msg } if ok => self.store_channel(&to, &msg),
            Resume::Copy { to, msg } => tracing::error!(%to, from = %msg.from, "channel message not stored"),
            Resume::Channel { from, id, sender, msg, bytes } if ok => self.relay(now, from, id, &sender, (msg, bytes)),
            // The recipient's mailbox cannot be read: the sender is told, as for a full disk,
            // rather than left to retransmit into the same failure.
            Resume::Save { from, id, to, .. } => {
                tracing::error!(%to, "save refused: the recipient's mailbox cannot be read");
                self.answer(from, id, Datagram::Refused { id, reason: Refusal::StorageUnavailable });
            }
            // Not answered and forgotten: the retransmission tries again (a fetch is simply asked again).
            Resume::Fetch { .. } => {}
            Resume::FetchDone { from, id, .. } | Resume::Channel { from, id, .. } => {
                self.dedup.forget(from, id);
            }
        }
    }

    /// A mailbox `waiter` needs could not be read for a failure that may pass (the shared
    /// database restarting): the request is forgotten unanswered, so that its retransmission
    /// tries again, rather than refused or answered without its stored messages.
    pub(super) fn retry_later(&mut self, waiter: Resume) {
        match waiter {
            Resume::Register { from, id, .. }
            | Resume::Save { from, id, .. }
            | Resume::FetchDone { from, id, .. }
            | Resume::Channel { from, id, .. } => self.dedup.forget(from, id),
            Resume::Fetch { .. } | Resume::StartFetch(_) => {}
            Resume::Copy { to, msg } => tracing::error!(%to, from = %msg.from, "channel message not stored"),
        }
    }

    /// Answers a registration of `name` with `count` stored messages; with none, the table goes
    /// out at once (with some, after the fetch).
    pub(super) fn registered(
        &mut self,
        from: SocketAddr,
        id: MsgId,
        name: &Name,
        (secret, cookie): (Secret, u64),
        count: u32,
        joining: bool,
    ) {
        if joining {
            tracing::info!(%name, %from, stored = count, "new name, registered once its address is confirmed");
        } else {
            tracing::info!(%name, %from, stored = count, "registered");
            if count == 0 {
                self.tables.changed();
            }
        }
        // An empty mailbox is not kept in memory, also for a name that may never confirm (a
        // registration from a forged address): `confirm` learns it again.
        if count == 0 {
            self.storage.evict(name);
        }
        // The count is true now: only a later discard makes a fetch past it a sign of one.
        let _ = self.storage.take_shrunk(name);
        let version = self.clients.version();
        let keepalive_ms = u64::try_from(self.presence.interval().as_millis()).unwrap_or(u64::MAX);
        self.answer(
            from,
            id,
            Datagram::Registered { id, version, stored: count, secret, cookie, keepalive_ms, nodes: self.nodes.list() },
        );
    }
}
