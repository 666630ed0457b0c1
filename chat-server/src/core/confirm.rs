//! The `confirm` handler: a client echoes the cookie of its `registered`, proving its address;
//! a new name joining from there gets its row.

use std::net::SocketAddr;

use chat_proto::{Datagram, MsgId, Refusal};
use offline_store::Store;

use super::Server;

impl<S: Store> Server<S> {
    pub(super) fn on_confirm(&mut self, from: SocketAddr, id: MsgId, cookie: u64) {
        let expected = match self.joining.name_at(from) {
            Some(name) => self.ids.joining_cookie(from, name),
            None => self.ids.cookie(from),
        };
        if cookie != expected {
            // A restarted server has a new key, or what joins at this address changed: the
            // client registers again.
            tracing::debug!(%from, "confirm with a wrong cookie");
            self.out.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
            return;
        }
        self.prove(from);
        match self.joining.take(from) {
            // Another client registered the name meanwhile: this one learns it when it
            // registers again.
            Some((name, _)) if self.clients.get(&name).is_some() => {
                self.out.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
                return;
            }
            Some((name, secret)) => {
                tracing::info!(%name, %from, "registered (address confirmed)");
                self.clients.set_online(&name, from);
                self.clients.set_secret(&name, secret);
                self.tables.forget(from);
                self.start_fetch(&name);
            }
            // Nothing registers at this address (a joining name forgotten past capacity): the
            // client registers again.
            None if self.clients.online_at(from).is_none() => {
                self.out.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
                return;
            }
            None => {}
        }
        self.answer(from, id, Datagram::Ack { id });
    }
}
