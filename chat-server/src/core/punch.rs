//! Hole punching (SPEC 11): a client whose direct message got no ACK at once asks the server to
//! have the recipient open its NAT towards it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
        let window = self.punches.get_or_insert_with(from, || (now, 0));
        if now.duration_since(window.0) >= Duration::from_secs(1) {
            *window = (now, 0);
        }
        if window.1 >= PUNCHES_PER_SECOND {
            tracing::debug!(%asker, "punch requests over the rate: dropped");
            return;
        }
        window.1 += 1;
        tracing::debug!(%asker, %to, "asking for a punch");
        self.out.send(target.addr, &Datagram::PunchAsk { from: asker, addr: from });
    }
}
