//! Routing around probes: a `probe_ack`, the probes whose window ended, and the channel
//! deliveries whose window ended (their recipients are probed); then what each waiter does
//! once its client is known alive or gone.

use std::net::SocketAddr;
use std::time::Instant;

use chat_proto::{Datagram, MsgId, Name, Refusal};
use offline_store::Store;

use super::Server;
use crate::cluster::PeerMsg;
use crate::probe::Waiter;

impl<S: Store> Server<S> {
    pub(super) fn on_probe_ack(&mut self, now: Instant, from: SocketAddr, id: MsgId, name: &Name) {
        let Some(waiters) = self.probes.handle_ack(from, id, name) else { return };
        self.prove(from);
        for w in waiters {
            self.on_alive(now, w);
        }
    }

    pub(super) fn probe_timeouts(&mut self, now: Instant) {
        for p in self.probes.handle_timeout(now, &mut self.out) {
            // A client of another node is marked by its node (or, if that one died, by the
            // shared store's sweep of its clients).
            if p.via.is_none() {
                self.mark_gone(&p.name, p.addr);
            }
            for w in p.waiters {
                self.on_dead(now, w);
            }
        }
    }

    /// Channel deliveries unACKed through their window: their recipients are probed.
    pub(super) fn delivery_timeouts(&mut self, now: Instant) {
        for d in self.deliveries.handle_timeout(now, &mut self.out) {
            let Some(d) = self.unless_moved(d) else { continue };
            let (to, addr) = (d.to.clone(), d.addr);
            self.probes.probe(now, &to, addr, Waiter::Channel(d), &mut self.ids, &mut self.out);
        }
    }

    /// A channel copy whose recipient is registered at another node now (it moved while the
    /// copy was on its way here): handed to that node, which delivers it or stores it, or
    /// stored if that node is gone. This node neither probes nor marks a client that is not
    /// its own. Returns the copy if its recipient is still this node's.
    fn unless_moved(&mut self, d: crate::deliveries::Delivery) -> Option<crate::deliveries::Delivery> {
        match self.clients.get(&d.to).and_then(|e| e.home) {
            None => Some(d),
            Some(node) if self.peers.is_live(node) => {
                tracing::info!(to = %d.to, node, "channel copy follows its recipient to its node");
                self.send_channel_to(node, vec![d.to.clone()], &d.msg);
                self.served(&d.to, &d.msg);
                None
            }
            Some(_) => {
                self.store_channel(&d.to, &d.msg);
                None
            }
        }
    }

    pub(super) fn on_alive(&mut self, now: Instant, w: Waiter) {
        match w {
            Waiter::Register { from, id, name, .. } => {
                tracing::info!(%name, %from, "registration refused: name in use");
                self.answer(from, id, Datagram::Refused { id, reason: Refusal::NameTaken });
            }
            Waiter::Save { from, id, to, .. } => match self.clients.row_of(&to) {
                Some(row) => self.answer(from, id, Datagram::Exists { id, row }),
                None => self.answer(from, id, Datagram::Refused { id, reason: Refusal::UnknownRecipient }),
            },
            Waiter::Channel(d) => {
                if let Some(d) = self.deliveries.redeliver(now, d, &mut self.out) {
                    tracing::warn!(to = %d.to, "answers probes but never ACKs the channel: marked offline");
                    self.mark_gone(&d.to, d.addr);
                    self.store_channel(&d.to, &d.msg);
                }
            }
            Waiter::Peer { node, token } => self.peers.send(node, PeerMsg::Probed { token, alive: true }),
        }
    }

    pub(super) fn on_dead(&mut self, _now: Instant, w: Waiter) {
        match w {
            Waiter::Register { from, id, name, secret, key } => self.register(from, id, &name, secret, key),
            Waiter::Save { from, id, to, msg } => self.store_for(from, id, &to, msg),
            Waiter::Channel(d) => {
                if let Some(d) = self.unless_moved(d) {
                    self.store_channel(&d.to, &d.msg);
                }
            }
            Waiter::Peer { node, token } => self.peers.send(node, PeerMsg::Probed { token, alive: false }),
        }
    }
}
