//! The server's other nodes (SPEC 13), as the node the client talks to lists them: where to go
//! when that node stops answering, which nodes already failed since the client last registered,
//! and when anything last came from the node.
//!
//! It owns the list, the failures and the time last heard; it sends nothing and decides no
//! move: the core asks it for the next node and when silence means the node is gone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_proto::MAX_NODES;

/// How many keepalive intervals of silence from a node mean it is gone.
const SILENT_INTERVALS: u32 = 3;

/// The other nodes known, and the state of the current one.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    /// The other live nodes the current node listed, in the order to try them.
    list: Vec<SocketAddr>,
    /// Nodes that stopped answering, one after another, since the last registration that
    /// succeeded.
    failed: Vec<SocketAddr>,
    /// When any datagram last came from the current node.
    heard: Option<Instant>,
}

impl Nodes {
    /// The current node listed `nodes` (in `registered` or `nodes`): they replace the list.
    pub fn handle_list(&mut self, mut nodes: Vec<SocketAddr>) {
        nodes.truncate(MAX_NODES);
        self.list = nodes;
    }

    /// A registration succeeded: every node may be tried again.
    pub fn handle_registered(&mut self) {
        self.failed.clear();
    }

    /// Something came from the current node at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.heard = Some(now);
    }

    /// `node` stopped answering.
    pub fn handle_failed(&mut self, node: SocketAddr) {
        if !self.failed.contains(&node) {
            self.failed.push(node);
        }
    }

    /// The node to move to from `current`: the first listed that is not `current` and has not
    /// failed since the last registration. `None`: no other node is known, or every one failed.
    pub fn next(&self, current: SocketAddr) -> Option<SocketAddr> {
        self.list.iter().copied().find(|n| *n != current && !self.failed.contains(n))
    }

    /// When silence from the current node, which answers each keepalive sent `every`, means it
    /// is gone: three intervals after it was last heard.
    pub fn silent_at(&self, every: Duration) -> Option<Instant> {
        self.heard.map(|at| at + every.saturating_mul(SILENT_INTERVALS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_next_node_is_the_first_listed_that_has_not_failed_until_a_registration() {
        let mut n = Nodes::default();
        assert_eq!(n.next(addr(1)), None, "no other node known");
        n.handle_list(vec![addr(2), addr(3)]);
        n.handle_failed(addr(1));
        assert_eq!(n.next(addr(1)), Some(addr(2)));
        n.handle_failed(addr(2));
        assert_eq!(n.next(addr(2)), Some(addr(3)));
        n.handle_failed(addr(3));
        assert_eq!(n.next(addr(3)), None, "every node failed one after another");
        n.handle_registered();
        assert_eq!(n.next(addr(3)), Some(addr(2)), "registered again: all may be tried");
    }

    #[test]
    fn silence_counts_three_intervals_from_the_last_datagram() {
        let (t0, s) = (Instant::now(), Duration::from_secs(1));
        let mut n = Nodes::default();
        assert_eq!(n.silent_at(s), None);
        n.heard(t0);
        assert_eq!(n.silent_at(s), Some(t0 + 3 * s));
        n.heard(t0 + s);
        assert_eq!(n.silent_at(s), Some(t0 + 4 * s));
    }
}
