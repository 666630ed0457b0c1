//! Across NATs (SPEC 11): hole punching, where a client whose direct message got no ACK at once
//! asks the server to have the recipient open its NAT towards it; and the relay, where the
//! server passes on a chat (and its ACK) that found no direct path. Both only for the client
//! online at the address the request came from, in its own name, and at a bounded rate.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::BoundedMap;
use chat_proto::{Datagram, Name};
use offline_store::Store;

use super::Server;

/// At most this many punch requests from one client are passed on per second: a request is
/// small and makes the recipient send a datagram, so a flood stops here.
pub(super) const PUNCHES_PER_SECOND: u32 = 10;

impl<S: Store> Server<S> {
    pub(super) fn on_punch_request(&mut self, now: Instant, from: SocketAddr, to: &Name) {
        let Some(asker) = self.clients.online_at(from).cloned() else {
            tracing::debug!(%from, "punch request from no online client dropped");
            return;
        };
        let Some(target) = self.clients.get(to).filter(|e| e.online && e.addr != from) else { return };
        if !within_rate(&mut self.punches, from, now, PUNCHES_PER_SECOND) {
            tracing::debug!(%asker, "punch requests over the rate: dropped");
            return;
        }
        tracing::debug!(%asker, %to, "asking for a punch");
        self.out.send(target.addr, &Datagram::PunchAsk { from: asker, addr: from });
    }

    /// A relayed chat or its ACK (`d`, from `sender` to `to`): passed on unchanged if `sender`
    /// is the client online at `from`, `to` is online elsewhere, and `from` is within its rate.
    pub(super) fn on_relay(&mut self, now: Instant, from: SocketAddr, sender: &Name, to: &Name, d: &Datagram) {
        if self.clients.online_at(from) != Some(sender) {
            tracing::debug!(%from, %sender, "relay in another's name, or from no online client: dropped");
            return;
        }
        let Some(target) = self.clients.get(to).filter(|e| e.online && e.addr != from) else { return };
        // Chats and ACKs have a budget each: a client relaying a burst of its own must still be
        // able to ACK what it is relayed.
        let windows = if matches!(d, Datagram::RelayAck { .. }) { &mut self.relay_acks } else { &mut self.relays };
        if !within_rate(windows, from, now, RELAYS_PER_SECOND) {
            tracing::debug!(%sender, "relayed datagrams over the rate: dropped");
            return;
        }
        tracing::debug!(%sender, %to, "relaying");
        self.out.send(target.addr, d);
    }
}

/// At most this many chats, and as many ACKs, from one client are relayed per second: enough for
/// a person typing, with retransmissions, and a ceiling on what one client can make the server
/// send.
pub(super) const RELAYS_PER_SECOND: u32 = 50;

/// Counts one more from `from` in its one-second window; whether it is within `per_second`.
fn within_rate(
    windows: &mut BoundedMap<SocketAddr, (Instant, u32)>,
    from: SocketAddr,
    now: Instant,
    per_second: u32,
) -> bool {
    let window = windows.get_or_insert_with(from, || (now, 0));
    if now.duration_since(window.0) >= Duration::from_secs(1) {
        *window = (now, 0);
    }
    if window.1 >= per_second {
        return false;
    }
    window.1 += 1;
    true
}
