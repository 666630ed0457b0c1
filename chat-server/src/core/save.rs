//! The `save` handler: store a message for a recipient that is offline or does not answer.

use std::net::SocketAddr;
use std::time::Instant;

use chat_proto::{Body, Datagram, MsgId, Name, Origin, Refusal, Sealed, Secret, StoredMessage};
use offline_store::{Appended, Store, StoreError};

use super::Server;
use super::waiting::Resume;
use crate::probe::Waiter;

/// One save-message request, as it came in.
#[derive(Debug)]
pub(super) struct SaveRequest {
    pub id: MsgId,
    pub msg: MsgId,
    pub sender: Name,
    pub secret: Secret,
    pub to: Name,
    pub sealed: Sealed,
    pub force: bool,
}

impl<S: Store> Server<S> {
    pub(super) fn on_save(&mut self, now: Instant, from: SocketAddr, req: SaveRequest) {
        let SaveRequest { id, msg, sender, secret, to, sealed, force } = req;
        if self.replay(from, id) || !self.owner_sends(from, id, &sender, &secret) {
            return;
        }
        // Kept with the key the sender's name belongs to, which the recipient checks.
        let Some(&key) = self.clients.key(&sender) else {
            self.answer(from, id, Datagram::Refused { id, reason: Refusal::NotRegistered });
            return;
        };
        let Some(entry) = self.clients.get(&to) else {
            self.answer(from, id, Datagram::Refused { id, reason: Refusal::UnknownRecipient });
            return;
        };
        let body = Body::Sealed { sealed, key };
        let msg = StoredMessage { id: msg, from: sender, origin: Origin::Direct, at: self.wall(now), body };
        self.dedup.pending(from, id);
        if entry.online && !force {
            let waiter = Waiter::Save { from, id, to: to.clone(), msg };
            self.probe(now, &to, entry.addr, waiter);
            return;
        }
        // A forced save is for a client that answers probes but not messages: marking it
        // offline makes it register again and so fetch the message.
        self.mark_gone(&to, entry.addr);
        self.store_for(from, id, &to, msg);
    }

    /// Appends `msg` to `to`'s mailbox (once it is known); the ACK leaves after the next sync.
    pub(super) fn store_for(&mut self, from: SocketAddr, id: MsgId, to: &Name, msg: StoredMessage) {
        if !self.storage.unknown([to.clone()]).is_empty() {
            self.storage.when_known(vec![to.clone()], Resume::Save { from, id, to: to.clone(), msg });
            return;
        }
        match self.storage.append(to, &msg) {
            Ok(appended) => {
                tracing::info!(%to, from = %msg.from, duplicate = appended == Appended::Duplicate, "message kept for an offline client (ACKed once durable)");
                // A duplicate of a durable copy is stored whatever becomes of the batch; anything
                // else is dropped with the batch if its sync fails for lack of space.
                let no_space = if appended == Appended::Duplicate && self.storage.holds_durable(to, &msg) {
                    Datagram::Ack { id }
                } else {
                    Datagram::Refused { id, reason: Refusal::StorageUnavailable }
                };
                self.storage.hold(from, id, Datagram::Ack { id }, no_space);
            }
            Err(StoreError::MailboxFull { .. }) => {
                tracing::warn!(%to, from = %msg.from, "mailbox full, message refused");
                self.answer(from, id, Datagram::Refused { id, reason: Refusal::MailboxFull });
            }
            Err(e) if e.is_no_space() => {
                tracing::error!(%to, from = %msg.from, "disk full, message refused: {}", chat_core::report(&e));
                self.answer(from, id, Datagram::Refused { id, reason: Refusal::StorageUnavailable });
            }
            Err(e) => {
                // Not acknowledged and forgotten: the sender's retransmission tries again.
                tracing::error!(%to, "cannot store a message: {e}");
                self.dedup.forget(from, id);
            }
        }
    }
}
