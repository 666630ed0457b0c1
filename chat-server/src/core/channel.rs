//! The `send_all` handler: fan-out to every online member (through the deliveries), storage
//! for those that are offline or gone, and the reply once the copies are durable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use chat_core::Key;
use chat_proto::{Body, ClientRow, Datagram, MsgId, Name, Origin, Secret, StoredMessage, Text, encode};
use offline_store::{OwedChannel, Store, StoreError};

use super::Server;
use super::waiting::Resume;
use crate::cluster::NodeId;
use crate::deliveries::Delivery;

/// What became of one channel copy for an offline member.
enum Appended {
    Stored,
    /// The member's mailbox is full: this copy is lost, and the sender is told.
    Full,
    /// The disk is full: this copy is lost, and the sender is told.
    NoSpace,
    /// Another disk error: the request is not answered, so the sender retries.
    Failed,
}

/// Where the copies of one channel message went.
#[derive(Default)]
struct FannedOut {
    /// Offline members whose copy was appended (durable after the next sync).
    stored: Vec<Name>,
    /// Offline members whose copy was not kept: their mailbox is full.
    full: Vec<Name>,
    /// Offline members whose copy was not kept: the disk is full.
    unstored: Vec<Name>,
}

impl<S: Store> Server<S> {
    pub(super) fn on_channel_send(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: MsgId,
        (sender, secret): (&Name, &Secret),
        text: Text,
    ) {
        if self.replay(from, id) || !self.owner_sends(from, id, sender, secret) {
            return;
        }
        let cid = channel_id(sender, id);
        let bytes: Arc<[u8]> = match encode(&Datagram::Channel { id: cid, from: sender.clone(), text: text.clone() }) {
            Ok(b) => b.into(),
            Err(e) => {
                tracing::warn!(%sender, "channel message cannot be relayed: {e}");
                return;
            }
        };
        let at = self.wall(now);
        let msg =
            Arc::new(StoredMessage { id: cid, from: sender.clone(), origin: Origin::Channel, at, body: text.into() });
        self.relay(now, from, id, sender, (msg, bytes));
    }

    /// Relays the channel message of request `id` once the offline members' mailboxes are
    /// known (open jobs learn them first), and holds the reply until the copies are durable.
    pub(super) fn relay(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: MsgId,
        sender: &Name,
        (msg, bytes): (Arc<StoredMessage>, Arc<[u8]>),
    ) {
        let mut rows: Vec<ClientRow> =
            self.clients.snapshot().clients.into_iter().filter(|r| &r.name != sender).collect();
        // A member registered at a node that is gone gets its copy stored, as if offline.
        for r in rows.iter_mut().filter(|r| r.online) {
            r.online = self.reachable_home(&r.name).is_some();
        }
        let offline: Vec<Name> = rows.iter().filter(|r| !r.online).map(|r| r.name.clone()).collect();
        let waiter =
            || Resume::Channel { from, id, sender: sender.clone(), msg: Arc::clone(&msg), bytes: Arc::clone(&bytes) };
        if self.park_unless_known(&offline, waiter) {
            self.dedup.pending(from, id);
            return;
        }
        match self.fan_out(now, sender, rows, (msg, bytes)) {
            Some(fanned) => self.hold_channel_reply(from, id, fanned),
            None => {
                // Not acknowledged and forgotten: the sender retries, and the same channel id
                // makes whoever already has it show it once.
                self.dedup.forget(from, id);
            }
        }
    }

    /// The reply to channel request `id` leaves once its copies are durable.
    fn hold_channel_reply(&mut self, from: SocketAddr, id: MsgId, out: FannedOut) {
        let FannedOut { stored, full, mut unstored } = out;
        let partial = |full: Vec<Name>, unstored: Vec<Name>| {
            if full.is_empty() && unstored.is_empty() {
                Datagram::Ack { id }
            } else {
                Datagram::ChannelPartial { id, full, unstored }
            }
        };
        let reply = partial(full.clone(), unstored.clone());
        // With the disk full, the copies appended are not kept either: the message went to
        // every online member, as with full mailboxes, and the sender is told who misses it.
        unstored.extend(stored);
        self.dedup.pending(from, id);
        self.storage.hold(from, id, reply, partial(full, unstored));
    }

    /// Sends `msg` (encoded as `bytes`) to the members in `rows` that are online, and stores it
    /// for the offline ones (whose mailboxes are known). Returns where the copies went, or
    /// `None` after a disk error (other than a full disk).
    fn fan_out(
        &mut self,
        now: Instant,
        sender: &Name,
        rows: Vec<ClientRow>,
        (msg, bytes): (Arc<StoredMessage>, Arc<[u8]>),
    ) -> Option<FannedOut> {
        let (mut live, mut failed, mut out) = (0, false, FannedOut::default());
        let mut elsewhere: BTreeMap<NodeId, Vec<Name>> = BTreeMap::new();
        let mut owed = Vec::new();
        for row in rows {
            if row.online {
                live += 1;
                if let Some(Some(node)) = self.reachable_home(&row.name) {
                    elsewhere.entry(node).or_default().push(row.name);
                    continue;
                }
                owed.push(row.name.clone());
                let d = Delivery::new(now, row.name, row.addr, msg.id, (msg.clone(), bytes.clone()));
                self.deliveries.deliver(now, d, &mut self.out);
                continue;
            }
            match self.append_channel(&row.name, &msg, false) {
                Appended::Stored => out.stored.push(row.name),
                Appended::Full => out.full.push(row.name),
                Appended::NoSpace => out.unstored.push(row.name),
                Appended::Failed => failed = true,
            }
        }
        self.note_owed(&msg, owed);
        // Members registered at other nodes: each node delivers to its own, and stores the
        // copies of those that do not take it.
        for (node, members) in elsewhere {
            self.send_channel_to(node, members, &msg);
        }
        tracing::info!(%sender, online = live, stored = out.stored.len(), "channel message relayed");
        (!failed).then_some(out)
    }

    /// Stores the copy of a member found gone (once its mailbox is known); the sender was
    /// answered long ago.
    pub(super) fn store_channel(&mut self, to: &Name, msg: &StoredMessage) {
        if self.park_unless_known(std::slice::from_ref(to), || Resume::Copy { to: to.clone(), msg: msg.clone() }) {
            return;
        }
        // Kept if its batch is discarded for lack of space: appended again for a later one.
        let _ = self.append_channel(to, msg, true); // logged
        self.served(to, msg);
    }

    /// `msg` is on its way to the online `members`: noted in the store (durable with the sync
    /// that the sender's reply waits on), so that a restart before they all have it delivers
    /// it again.
    fn note_owed(&mut self, msg: &StoredMessage, members: Vec<Name>) {
        if members.is_empty() {
            return;
        }
        self.owed.open(msg, members.iter().cloned());
        if let Err(e) = self.storage.note_owed(&OwedChannel { msg: msg.clone(), members }) {
            tracing::error!(from = %msg.from, "channel message not noted as owed (a restart would not resume it): {e}");
        }
    }

    /// `to`'s copy of `msg` was ACKed, stored or handed to its node: once no member is owed
    /// it, the store's record of it is done.
    pub(super) fn served(&mut self, to: &Name, msg: &StoredMessage) {
        if self.owed.served(msg, to) {
            self.storage.owed_done(&msg.from, msg.id);
        }
    }

    /// Takes up the channel messages the store holds as still owed: a previous run
    /// acknowledged them and stopped while copies were on their way. Each member they were
    /// owed to gets its copy again: live (with the usual window, probe and storage) if online
    /// here, handed to its node if online at another, stored otherwise. A member that had
    /// shown it already shows it once: a client drops a channel id it has shown, live or
    /// stored. Call it once, after the table is restored.
    pub fn resume_owed(&mut self, now: Instant) {
        for OwedChannel { msg, members } in self.storage.owed() {
            let Some(bytes) = self.owed_channel_bytes(&msg, "owed by the last run") else { continue };
            tracing::info!(from = %msg.from, members = members.len(), "channel message owed by the last run: delivered again");
            let msg = Arc::new(msg);
            self.owed.open(&msg, members.iter().cloned());
            for name in members {
                self.resume_copy(now, name, (Arc::clone(&msg), Arc::clone(&bytes)));
            }
        }
    }

    /// The `channel` datagram of `msg`, a channel message owed to members (`whose`: where it
    /// came from, for the log); `None`, and the store's record of it done, for one that cannot
    /// be relayed (not text, or not encodable): it is dropped rather than owed for ever.
    pub(super) fn owed_channel_bytes(&mut self, msg: &StoredMessage, whose: &str) -> Option<Arc<[u8]>> {
        let encoded = match msg.body.clone() {
            Body::Text(text) => encode(&Datagram::Channel { id: msg.id, from: msg.from.clone(), text }),
            _ => {
                tracing::warn!(from = %msg.from, "dropped a channel message {whose} that is not text");
                self.storage.owed_done(&msg.from, msg.id);
                return None;
            }
        };
        match encoded {
            Ok(bytes) => Some(bytes.into()),
            Err(e) => {
                tracing::warn!(from = %msg.from, "dropped a channel message {whose} that cannot be relayed: {e}");
                self.storage.owed_done(&msg.from, msg.id);
                None
            }
        }
    }

    /// Delivers an owed copy to `name` again (see [`Server::resume_owed`]).
    fn resume_copy(&mut self, now: Instant, name: Name, (msg, bytes): (Arc<StoredMessage>, Arc<[u8]>)) {
        let Some(entry) = self.clients.get(&name).filter(|e| e.online) else {
            self.store_channel(&name, &msg);
            return;
        };
        match (entry.home, entry.addr) {
            (None, addr) => {
                let d = Delivery::new(now, name, addr, msg.id, (msg, bytes));
                self.deliveries.deliver(now, d, &mut self.out);
            }
            (Some(node), _) if self.peers.is_live(node) => {
                self.send_channel_to(node, vec![name.clone()], &msg);
                self.served(&name, &msg);
            }
            (Some(_), _) => self.store_channel(&name, &msg),
        }
    }

    /// Stores a channel copy for an offline client; `kept`: one whose sender was answered long
    /// ago, appended again if its batch is discarded (see [`crate::storage::Storage::append_kept_copy`]).
    fn append_channel(&mut self, to: &Name, msg: &StoredMessage, kept: bool) -> Appended {
        let appended = if kept { self.storage.append_kept_copy(to, msg) } else { self.storage.append_copy(to, msg) };
        match appended {
            Ok(()) => Appended::Stored,
            Err(e @ StoreError::MailboxFull { .. }) => {
                tracing::warn!(%to, from = %msg.from, "channel message not stored: {e}");
                Appended::Full
            }
            Err(e) if e.is_no_space() => {
                tracing::error!(%to, from = %msg.from, "channel message not stored: {}", chat_core::report(&e));
                Appended::NoSpace
            }
            Err(e) => {
                tracing::error!(%to, from = %msg.from, "channel message not stored: {e}");
                Appended::Failed
            }
        }
    }
}

/// The id of the channel message that request `id` of `sender` makes: the same for every
/// retransmission, also one the server handles again after a restart, so recipients that
/// already showed it show it once.
pub(crate) fn channel_id(sender: &Name, id: MsgId) -> MsgId {
    MsgId(CHANNEL_ID_KEY.hash64(&[sender.as_str().as_bytes(), &id.0.to_le_bytes()]))
}

/// The fixed key of [`channel_id`]: a domain separator, the same in every run.
const CHANNEL_ID_KEY: Key = Key::fixed(*b"chatapp channel message id v1..\0");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_id_is_the_same_in_every_run() {
        let alice = Name::new("alice").expect("name");
        assert_eq!(channel_id(&alice, MsgId(7)), MsgId(0xad4c_a6ff_b09d_3d54));
    }
}
