//! The server's other live nodes (SPEC 13): where its clients reach them, told in every
//! `registered` and, when the set changes, in a `nodes` to each online client; and the `alive`
//! that answers a keepalive, so that an idle client notices when its node is gone. A node that
//! has lost the shared store for as long as the others wait before they take it for dead
//! answers no keepalive until it follows the store again, so that its clients move to a node
//! that does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use chat_core::Transmit;
use chat_proto::{Datagram, MAX_NODES, encode};
use offline_store::Store;

use super::Server;

/// The client-facing addresses of the other live nodes, in the order clients try them.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    list: Vec<SocketAddr>,
    /// This node has not followed the shared store for the dead-node window: it does not claim
    /// to be alive.
    adrift: bool,
}

impl Nodes {
    /// Takes `nodes` (the first [`MAX_NODES`] distinct ones); returns whether the list changed.
    fn set(&mut self, nodes: Vec<SocketAddr>) -> bool {
        let mut list = Vec::with_capacity(nodes.len().min(MAX_NODES));
        for node in nodes {
            if list.len() == MAX_NODES {
                break;
            }
            if !list.contains(&node) {
                list.push(node);
            }
        }
        if list == self.list {
            return false;
        }
        self.list = list;
        true
    }

    /// The list, as `registered` carries it.
    pub(crate) fn list(&self) -> Vec<SocketAddr> {
        self.list.clone()
    }
}

impl<S: Store> Server<S> {
    /// The other live nodes are now `nodes` (their client-facing addresses, in the order
    /// clients should try them; at most [`MAX_NODES`] are kept). When that changes, each client
    /// online here is sent a `nodes` with the new list (once: every `registered` carries it
    /// too).
    pub fn set_nodes(&mut self, now: Instant, nodes: Vec<SocketAddr>) {
        self.now = now;
        if !self.nodes.set(nodes) {
            return;
        }
        tracing::info!(nodes = ?self.nodes.list, "the other live nodes changed");
        let d = Datagram::Nodes { nodes: self.nodes.list() };
        let bytes: Arc<[u8]> = match encode(&d) {
            Ok(bytes) => bytes.into(),
            Err(e) => {
                tracing::error!("cannot encode the nodes: {e}");
                return;
            }
        };
        let online: Vec<SocketAddr> = self.clients.online().map(|(_, addr)| addr).collect();
        for to in online {
            self.out.push(Transmit { to, bytes: bytes.clone() });
        }
    }

    /// The other live nodes, as `registered` tells them.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        self.nodes.list()
    }

    /// Whether this node follows the shared store (see [`ClusterEvent::Following`]). While it
    /// does not, its keepalives go unanswered, so its clients move to another node.
    ///
    /// [`ClusterEvent::Following`]: crate::cluster::ClusterEvent::Following
    pub fn set_following(&mut self, following: bool) {
        if self.nodes.adrift != following {
            return;
        }
        self.nodes.adrift = !following;
        if following {
            tracing::info!("following the shared store again: answering keepalives");
        } else {
            tracing::warn!("not following the shared store: answering no keepalive, so that clients move");
        }
    }

    /// A keepalive from `from`, whose client is online there: the node is alive, unless it is
    /// adrift from the shared store. (An online address has proven it receives, and `alive` is
    /// smaller than the keepalive anyway.)
    pub(super) fn answer_alive(&mut self, from: SocketAddr) {
        if self.nodes.adrift {
            tracing::debug!(%from, "no alive: this node does not follow the shared store");
            return;
        }
        self.out.send(from, &Datagram::Alive);
    }
}
