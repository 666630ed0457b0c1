//! What nodes sharing one table say to each other, and what the core keeps about them: the
//! other live nodes, and the requests for them not yet handed to the driver. No I/O: the
//! shared store carries the messages (see `chat-pg`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use chat_proto::{MsgId, Name, StoredMessage};
use serde::{Deserialize, Serialize};

pub use crate::clients::{NodeId, SavedRow};

/// A message from one node to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerMsg {
    /// Is `name`, registered at the receiving node from `addr`, still there? Answered with
    /// [`PeerMsg::Probed`] once the receiving node's own probe is answered or not.
    Probe {
        /// The asker's request.
        token: MsgId,
        /// The client.
        name: Name,
        /// Where the asker's table has it.
        addr: SocketAddr,
    },
    /// The answer to [`PeerMsg::Probe`] `token`.
    Probed {
        /// The request answered.
        token: MsgId,
        /// Whether the client answered its node's probe.
        alive: bool,
    },
    /// A channel message for `members`, registered at the receiving node: it delivers to each
    /// inside its ACK window and stores the copies of those that do not take it.
    Channel {
        /// Who it is for.
        members: Vec<Name>,
        /// The message (its `id` is the channel id).
        msg: StoredMessage,
    },
}

/// A row as the shared store holds it, for [`crate::Server::apply_shared`].
#[derive(Debug, Clone)]
pub struct SharedRow {
    /// The row, with its secret's hash.
    pub row: SavedRow,
    /// The node it is registered at; `None` for this node.
    pub home: Option<NodeId>,
    /// The store's version of this state of the row: every change in the store has a higher
    /// one than every change committed before it.
    pub version: u64,
}

/// The other nodes and what is to be said to them.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    /// The other live nodes, with the address their clients reach them at.
    live: BTreeMap<NodeId, SocketAddr>,
    out: VecDeque<(NodeId, PeerMsg)>,
}

impl Peers {
    /// Whether `node` is one of the other live nodes.
    pub fn is_live(&self, node: NodeId) -> bool {
        self.live.contains_key(&node)
    }

    /// Takes the set of other live nodes; returns the nodes that were live and are not now.
    pub fn set_live(&mut self, live: BTreeMap<NodeId, SocketAddr>) -> Vec<NodeId> {
        let gone = self.live.keys().filter(|n| !live.contains_key(n)).copied().collect();
        self.live = live;
        gone
    }

    /// Queues `msg` for `node`.
    pub fn send(&mut self, node: NodeId, msg: PeerMsg) {
        self.out.push_back((node, msg));
    }

    /// The next message to hand to the driver.
    pub fn poll(&mut self) -> Option<(NodeId, PeerMsg)> {
        self.out.pop_front()
    }
}

/// What the shared store tells a node: what the other nodes did.
#[derive(Debug)]
pub enum ClusterEvent {
    /// Rows changed in the store (by other nodes, or by this one: those are known already).
    Rows(Vec<SharedRow>),
    /// A message from another node.
    Peer(NodeId, PeerMsg),
    /// The other live nodes now, with the addresses their clients reach them at.
    Nodes(BTreeMap<NodeId, SocketAddr>),
    /// Whether this node follows the store: `false` once it has not been able to for as long
    /// as the other nodes wait before they take a silent node for dead (they are removing it,
    /// and it would miss their changes), `true` when it follows again, caught up.
    Following(bool),
}

/// The cause of a failure of the shared store.
pub type SharedError = Box<dyn std::error::Error + Send + Sync>;

/// The client table in a store several nodes share: the driver's side of it. The calls block
/// (briefly: one transaction); the events come on a channel the driver waits on.
pub trait SharedTable: Send {
    /// Every row of the table, at start.
    ///
    /// # Errors
    /// The store cannot be read.
    fn load(&mut self) -> Result<Vec<SharedRow>, SharedError>;

    /// Writes the rows this node changed, each with the store's version of the row the change
    /// was made from (0 for a name the store did not have), and its messages to other nodes, in
    /// one transaction. A row the store holds at another version than that (another node
    /// changed it meanwhile) is not written. Returns the version each row got, in order, or
    /// `None` for a row not written.
    ///
    /// # Errors
    /// The transaction failed: nothing was written.
    fn write(&mut self, rows: &[(SavedRow, u64)], peers: &[(NodeId, PeerMsg)])
    -> Result<Vec<Option<u64>>, SharedError>;

    /// Where the store's events come.
    fn events(&mut self) -> &mut tokio::sync::mpsc::UnboundedReceiver<ClusterEvent>;
}
