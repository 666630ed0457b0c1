//! Several nodes over one shared table: rows changed by other nodes, the rows this node
//! changed, the other live nodes, and the requests between nodes (a probe of a client
//! registered at another node, channel copies for its clients).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use chat_proto::Name;
use offline_store::Store;

use super::Server;
use crate::cluster::{NodeId, PeerMsg, SavedRow, SharedRow};
use crate::deliveries::Delivery;
use crate::probe::Waiter;

impl<S: Store> Server<S> {
    /// Takes rows as the shared store holds them (changed by other nodes, or by this one
    /// earlier); a row no newer than what this node knows of it is ignored. Clients here are
    /// pushed the table. A client of this node whose row now says it is registered elsewhere (it
    /// moved) is no longer this node's; one marked offline by another node is told, and
    /// registers again.
    pub fn apply_shared(&mut self, rows: Vec<SharedRow>) {
        let mut changed = false;
        for SharedRow { row, home, version } in rows {
            let name = row.name().clone();
            let old_key = self.clients.key(&name).copied();
            let Some(old) = self.clients.apply_shared(row, home, version) else { continue };
            changed = true;
            let Some(old) = old.filter(|o| o.online && o.home.is_none()) else { continue };
            let now = self.clients.get(&name);
            let same_key = self.clients.key(&name).copied() == old_key;
            if home.is_some() && same_key {
                tracing::info!(%name, addr = %old.addr, node = home, "registered at another node now");
                self.tables.forget(old.addr);
            } else if !now.is_some_and(|e| e.online && e.addr == old.addr) {
                // Marked offline by another node (which took this one for dead), or the name
                // went to another key at another node in the same instant: told, the client
                // registers again, and learns which.
                tracing::warn!(%name, addr = %old.addr, "this client's row was changed by another node");
                self.tables.tell_offline(old.addr);
            }
        }
        if changed {
            self.tables.changed();
        }
    }

    /// The rows this node changed after version `base` of its table (see
    /// [`Server::table_version`]), for the driver to write to the shared store, each with the
    /// store's version of the row it was changed from.
    pub fn shared_changes(&self, base: u64) -> Vec<(SavedRow, u64)> {
        self.clients.shared_since(base)
    }

    /// The shared store holds `name`'s row as this node wrote it, at its version `version`.
    pub fn shared_as(&mut self, name: &Name, version: u64) {
        self.clients.shared_as(name, version);
    }

    /// Takes the other live nodes and the addresses their clients reach them at (told to this
    /// node's clients). What waited on a node that is gone goes on as if its client did not
    /// answer.
    pub fn set_live_nodes(&mut self, now: Instant, live: BTreeMap<NodeId, SocketAddr>) {
        // Clients learn where to move when this node stops answering them.
        self.set_nodes(now, live.values().copied().collect());
        for node in self.peers.set_live(live) {
            tracing::warn!(node, "node gone");
            for p in self.probes.abandon_via(node) {
                for w in p.waiters {
                    self.on_dead(now, w);
                }
            }
        }
    }

    /// The next message for another node.
    pub fn poll_peer(&mut self) -> Option<(NodeId, PeerMsg)> {
        self.peers.poll()
    }

    /// Takes a message from node `from`.
    pub fn handle_peer(&mut self, now: Instant, from: NodeId, msg: PeerMsg) {
        self.now = now;
        match msg {
            PeerMsg::Probe { token, name, addr } => {
                if self.clients.online().any(|(n, a)| *n == name && a == addr) {
                    let waiter = Waiter::Peer { node: from, token };
                    self.probes.probe(now, &name, addr, waiter, &mut self.ids, &mut self.out);
                } else {
                    self.peers.send(from, PeerMsg::Probed { token, alive: false });
                }
            }
            PeerMsg::Probed { token, alive } => {
                let Some(waiters) = self.probes.handle_peer_answer(from, token) else { return };
                for w in waiters {
                    if alive { self.on_alive(now, w) } else { self.on_dead(now, w) }
                }
            }
            PeerMsg::Channel { members, msg } => self.deliver_for_peer(now, members, msg),
        }
    }

    /// Probes `name` at `addr` for `waiter`: itself if the client is registered here, through
    /// its node if that one is live; a client whose node is gone counts as not answering.
    pub(super) fn probe(&mut self, now: Instant, name: &Name, addr: SocketAddr, waiter: Waiter) {
        match self.clients.get(name).and_then(|e| e.home) {
            None => self.probes.probe(now, name, addr, waiter, &mut self.ids, &mut self.out),
            Some(node) if self.peers.is_live(node) => {
                if let Some(token) = self.probes.probe_via(now, (name, addr), node, waiter, &mut self.ids) {
                    self.peers.send(node, PeerMsg::Probe { token, name: name.clone(), addr });
                }
            }
            Some(node) => {
                tracing::info!(%name, node, "registered at a node that is gone: counted as not answering");
                self.on_dead(now, waiter);
            }
        }
    }

    /// Whether `name`'s row is this node's, or another live node's: `None` when it is
    /// registered at a node that is gone.
    pub(super) fn reachable_home(&self, name: &Name) -> Option<Option<NodeId>> {
        match self.clients.get(name)?.home {
            None => Some(None),
            Some(node) => self.peers.is_live(node).then_some(Some(node)),
        }
    }

    /// Sends a channel message to another node for its members there.
    pub(super) fn send_channel_to(&mut self, node: NodeId, members: Vec<Name>, msg: &chat_proto::StoredMessage) {
        self.peers.send(node, PeerMsg::Channel { members, msg: msg.clone() });
    }

    /// Another node's channel message for `members` here (or one a node that is gone still
    /// owed them): delivered to each online here (with the usual window, probe and storage),
    /// stored for the others. Owed until each is served: the shared store recorded it as owed
    /// by this node as it handed it over, and the store's done deletes that record.
    fn deliver_for_peer(&mut self, now: Instant, members: Vec<Name>, msg: chat_proto::StoredMessage) {
        let Some(bytes) = self.owed_channel_bytes(&msg, "from another node") else { return };
        let msg = Arc::new(msg);
        self.owed.add(&msg, members.iter().cloned());
        for name in members {
            match self.clients.get(&name).filter(|e| e.online && e.home.is_none()).map(|e| e.addr) {
                Some(addr) => {
                    let d = Delivery::new(now, name, addr, msg.id, (Arc::clone(&msg), Arc::clone(&bytes)));
                    self.deliveries.deliver(now, d, &mut self.out);
                }
                None => self.store_channel(&name, &msg),
            }
        }
    }
}
