//! The core's handling of trust: checking the keys a table carries against the key book,
//! warning of a changed key, and the `verify` and `trust` commands. Part of the core: it routes
//! to the table and the key book, and owns no state of its own.

use chat_proto::{ClientRow, Name, PublicKey};

use super::Client;
use crate::event::Event;
use crate::keybook::{Seen, safety_number};
use crate::session::Stage;

/// The names and keys of `rows` that carry a key.
pub(super) fn keyed(rows: &[ClientRow]) -> Vec<(Name, PublicKey)> {
    rows.iter().filter_map(|r| Some((r.name.clone(), r.key?))).collect()
}

/// What a changed key means and what to type.
pub(super) fn changed_advice(name: &Name) -> String {
    format!("{name}'s key has changed. Type verify {name} to compare safety numbers, then trust {name}.")
}

impl Client {
    /// Checks the keys a table just applied carries: a first key is known from now on (the
    /// driver keeps it); a known name with another key warns once, and sends to it are held.
    pub(super) fn check_keys(&mut self, keyed: Vec<(Name, PublicKey)>) {
        for (name, key) in keyed {
            if name == self.me || self.keys.handle_seen(&name, key) != Seen::Changed {
                continue;
            }
            tracing::warn!(%name, %key, "a known name shows another key");
            let warning = Event::Notice(format!("Warning: {}", changed_advice(&name)));
            // As the table's update line: not held back while stored messages are shown.
            if matches!(self.session.stage(), Stage::Fetching { .. }) {
                self.emit(warning);
            } else {
                self.show_live(warning);
            }
        }
    }

    /// The table's key for `name`, or why there is none (told to the user).
    fn key_for(&mut self, name: &Name) -> Option<PublicKey> {
        if *name == self.me {
            self.notice("That is you: type verify or trust with another client's name.");
            return None;
        }
        if self.table.row(name).is_none() {
            self.notice(format!("No client named {name}. Type list to see the table."));
            return None;
        }
        let key = self.table.key(name);
        if key.is_none() {
            self.notice(format!("The table has no key for {name}."));
        }
        key
    }

    /// `verify <name>`: the safety number of this client's key and the table's key for `name`.
    pub(super) fn verify(&mut self, name: &Name) {
        let Some(key) = self.key_for(name) else { return };
        let number = safety_number(&self.identity.public(), &key);
        let mut line = format!("Safety number with {name}: {number}");
        if self.keys.holds(name, key) {
            line.push_str(&format!(" (its new key, not trusted yet: type trust {name} if it matches)"));
        }
        self.notice(line);
    }

    /// `trust <name>`: the table's key for `name` is trusted from now on, and sends to it go
    /// out again.
    pub(super) fn trust(&mut self, name: &Name) {
        let Some(key) = self.key_for(name) else { return };
        if !self.keys.holds(name, key) {
            self.notice(format!("{name}'s key has not changed: nothing to trust."));
            return;
        }
        self.keys.trust(name, key);
        self.notice(format!("Trusted {name}'s new key: messages to {name} are sent again."));
    }
}
