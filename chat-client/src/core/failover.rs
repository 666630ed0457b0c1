//! The core's moves between the server's nodes (SPEC 13): when the node it talks to stops
//! answering (a request gives up, or nothing at all comes for three keepalive intervals), the
//! client says so in one line, makes the next node its server, registers there at once, and
//! sends it what was in flight to the old one once registered. Part of the core: the list and
//! the failures are the [`crate::nodes::Nodes`]'s, the requests the [`crate::requests::Requests`]'s.

use std::sync::Arc;
use std::time::Instant;

use chat_proto::MsgId;

use super::{Client, Kind};
use crate::event::Event;

impl Client {
    /// Whether a request of `kind` goes to the next node when its node stops answering (the
    /// same id and bytes, once registered there): what the user asked for. The rest (the
    /// registration and its parts, a `dereg` that the session makes again) is made anew.
    fn follows_a_move(kind: &Kind) -> bool {
        matches!(kind, Kind::Save(_) | Kind::Channel(..))
    }

    /// The server stopped answering request `id` (`bytes`, of `kind`): moves to the next node
    /// with it, if another node is known and has not failed since the last registration.
    /// Returns the kind back if not (no other node: as without nodes).
    pub(super) fn move_with(&mut self, now: Instant, id: MsgId, bytes: Arc<[u8]>, kind: Kind) -> Option<Kind> {
        if self.nodes.next(self.server).is_none() {
            return Some(kind);
        }
        if Self::follows_a_move(&kind) {
            self.requests.hold(id, bytes, kind);
        }
        self.move_on(now);
        None
    }

    /// The current node failed: moves to the next one if there is one (returns whether it did).
    pub(super) fn move_on(&mut self, now: Instant) -> bool {
        let old = self.server;
        self.nodes.handle_failed(old);
        let Some(next) = self.nodes.next(old) else { return false };
        tracing::warn!(%old, %next, "the server's node stopped answering: moving");
        // A notice, not the answer of the command whose request gave up.
        self.in_turn(None, |c| c.emit(Event::ServerMoved { from: old, to: next }));
        self.server = next;
        self.table.moved();
        self.nodes.heard(now);
        // Nothing more goes to the old node (the driver would not know where to send it).
        self.out.retain(|t| t.to != old);
        self.requests.move_off(old, Self::follows_a_move);
        self.register(now);
        true
    }

    /// While online with another node to go to: the current node has been silent (not even an
    /// `alive` for a keepalive) for three keepalive intervals.
    pub(super) fn silent_at(&self) -> Option<Instant> {
        let every = self.keepalive.every;
        if every.is_zero() || !self.keeps_alive() || self.nodes.next(self.server).is_none() {
            return None;
        }
        self.nodes.silent_at(every)
    }

    /// Moves if the current node has been silent too long.
    pub(super) fn check_silence(&mut self, now: Instant) {
        if self.silent_at().is_some_and(|at| at <= now) {
            tracing::info!(server = %self.server, "nothing from the server for three keepalive intervals");
            self.move_on(now);
        }
    }
}
