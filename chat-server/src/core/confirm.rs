//! The `confirm` handler: a client echoes the cookie of its `registered`, proving its address;
//! a new name joining from there gets its row.

use std::net::SocketAddr;

use chat_proto::{Datagram, MsgId, Refusal};
use offline_store::Store;

use super::Server;

impl<S: Store> Server<S> {
    pub(super) fn on_confirm(&mut self, from: SocketAddr, id: MsgId, cookie: u64) {
        let valid = match self.joining.key(from) {
            Some((name, key)) => self.cookie_ok(cookie, |p| self.ids.joining_cookie(from, name, key, p)),
            None => self.cookie_ok(cookie, |p| self.ids.cookie(from, p)),
        };
        if !valid {
            // A restarted server has a new key, the cookie expired, or what joins at this
            // address changed: the client registers again.
            tracing::debug!(%from, "confirm with a wrong cookie");
            self.out.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
            return;
        }
        self.prove(from);
        if self.joined(from) {
            self.answer(from, id, Datagram::Ack { id });
        } else {
            self.out.send(from, &Datagram::Refused { id, reason: Refusal::NotRegistered });
        }
    }

    /// Gives the name joining from the proven address `from` its row. Returns false when the
    /// client must register again: another client took the name meanwhile, or nothing
    /// registers at `from` (a joining name forgotten past capacity).
    fn joined(&mut self, from: SocketAddr) -> bool {
        match self.joining.take(from) {
            Some((name, ..)) if self.clients.get(&name).is_some() => false,
            Some((name, secret, key)) => {
                tracing::info!(%name, %from, "registered (address confirmed)");
                self.clients.set_online(&name, from);
                self.clients.set_lan(&name, self.lans.get(&from).copied());
                self.clients.set_secret(&name, &secret);
                self.clients.set_key(&name, key);
                self.tables.forget(from);
                self.start_fetch(&name);
                true
            }
            None => self.clients.online_at(from).is_some(),
        }
    }
}
