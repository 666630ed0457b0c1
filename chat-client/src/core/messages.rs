//! The core's handling of messages and commands: chats and channel messages coming in, and
//! the commands with the sends they start. Part of the core: it routes to the session, the
//! requests, the table and the inbox, and owns no state of its own.

use std::net::SocketAddr;
use std::time::Instant;

use chat_proto::{Datagram, MsgId, Name, Sealed, Text};

use super::{Client, Kind, Path};

/// How many chats wait for their senders' keys at most.
const UNVERIFIED_KEPT: usize = 64;
use crate::command::Command;
use crate::event::Event;
use crate::inbox::Shown;
use crate::send::Outgoing;
use crate::session::{Stage, Unacked};

impl Client {
    // ---- messages ----

    /// A chat is shown (and ACKed) only if it opens with the key the table gives its sender:
    /// anything else is dropped and counted, unanswered.
    pub(super) fn on_chat(&mut self, from: SocketAddr, id: MsgId, sender: Name, sealed: &Sealed) {
        if !self.session.answers_peers() {
            return;
        }
        let Some(key) = self.table.key(&sender) else {
            // Before any table, or one older than the sender: kept for the next table.
            if self.unverified.len() == UNVERIFIED_KEPT {
                self.unverified.pop_front();
            }
            if !self.table.has_table() || self.table.row(&sender).is_none() {
                self.unverified.push_back((from, id, sender, sealed.clone()));
            } else {
                self.unauthentic(&sender, "a chat from a name with no key in the table");
            }
            return;
        };
        let me = self.me.clone();
        let text = self.identity.pairwise(key).open_text(sealed, &sender, &me, id).and_then(|t| Text::new(t).ok());
        let Some(text) = text else {
            self.unauthentic(&sender, "a chat that does not open with its sender's key");
            return;
        };
        let nonce = self.entropy.bytes();
        let proof = self.identity.pairwise(key).seal_ack(nonce, &sender, &me, id);
        let ack = if from == self.server {
            Datagram::RelayAck { id, from: me, to: sender.clone(), proof }
        } else {
            Datagram::ChatAck { id, proof }
        };
        let shown = Shown::Chat(sender.clone(), id);
        self.show_message(Event::Chat { from: sender, text }, Unacked { shown, to: from, ack });
    }

    /// Shows a message and sends its ACK, in that order (the driver records it as shown
    /// between the two), or holds both while the client is still registering or fetching: a
    /// message is ACKed only once it is shown, so a client killed before it showed a held one
    /// loses nothing. A copy of one shown before is ACKed again at once; a copy of one held,
    /// never (the held one's ACK answers it).
    fn show_message(&mut self, e: Event, unacked: Unacked) {
        if self.inbox.contains(&unacked.shown) {
            self.send_once(unacked.to, &unacked.ack);
            return;
        }
        if self.session.holding(&unacked.shown) {
            return;
        }
        if let Some((e, unacked)) = self.session.hold_message(e, unacked) {
            self.deliver(e, unacked);
        }
    }

    /// Shows a message unless it was shown already, then queues its ACK.
    pub(super) fn deliver(&mut self, e: Event, Unacked { shown, to, ack }: Unacked) {
        if self.inbox.first(shown.clone()) {
            self.events.push_back((e, None, Some(shown)));
        }
        self.send_once(to, &ack);
    }

    fn unauthentic(&mut self, from: &Name, what: &str) {
        self.unauthentic += 1;
        tracing::debug!(%from, total = self.unauthentic, "dropped {what}");
    }

    pub(super) fn on_channel(&mut self, id: MsgId, sender: Name, text: Text) {
        if !self.session.answers_peers() {
            return;
        }
        let unacked = Unacked { shown: Shown::Channel(id), to: self.server, ack: Datagram::ChannelAck { id } };
        self.show_message(Event::Channel { from: sender, text }, unacked);
    }

    /// The ACK of a chat we also relayed, back through the server from `acker`: it counts as
    /// the ACK from the address the chat was sent to, if `acker` made it.
    pub(super) fn on_relay_ack(&mut self, id: MsgId, acker: &Name, proof: &Sealed) {
        let Some(peer) = self.requests.target(id) else { return };
        if matches!(self.requests.get(id, peer), Some(Kind::Direct(o)) if o.to() == acker) {
            self.delivered(peer, id, proof, Path::Relay);
        }
    }

    /// An ACK from the peer's address (or from its public one, for a chat sent to its LAN
    /// address that only got through at the public one).
    pub(super) fn on_chat_ack(&mut self, from: SocketAddr, id: MsgId, proof: &Sealed) {
        let target = self.requests.target(id).filter(|t| *t != from && self.table.public_of_lan(*t) == Some(from));
        self.delivered(target.unwrap_or(from), id, proof, Path::Direct);
    }

    /// An ACK counts only if the recipient made it, for this message; the path it came by is
    /// remembered for the next message to that peer.
    fn delivered(&mut self, from: SocketAddr, id: MsgId, proof: &Sealed, path: Path) {
        let Some(Kind::Direct(o)) = self.requests.get(id, from) else { return };
        let (to, key) = (o.to().clone(), o.key());
        let me = self.me.clone();
        if !self.identity.pairwise(key).opens_ack(proof, &me, &to, id) {
            self.unauthentic(&to, "an ACK its recipient did not make");
            return;
        }
        if let Some(Kind::Direct(o)) = self.requests.answer(id, from, |k| matches!(k, Kind::Direct(_))) {
            self.paths.insert(o.to().clone(), path);
            self.in_turn(o.turn(), |c| c.emit(Event::Delivered { to: o.to().clone() }));
        }
    }

    /// Shows a live line now, or after the welcome and the stored messages while the client is
    /// still registering or fetching them.
    pub(super) fn show_live(&mut self, e: Event) {
        if let Some(e) = self.session.hold(e) {
            self.emit(e);
        }
    }

    // ---- commands ----

    pub(super) fn run_command(&mut self, now: Instant, cmd: Command) {
        let offline = matches!(self.session.stage(), Stage::Offline);
        match cmd {
            Command::List => self.emit(Event::List(self.table.snapshot())),
            Command::Help => self.emit(Event::Help),
            Command::Quit if offline => self.exit_with(0, None),
            // Sends in flight end first: each keeps its one outcome line.
            Command::Quit => self.session.handle_leave(true),
            Command::Reg { name } if name != self.me => {
                self.notice(format!("You can only reg as yourself ({}).", self.me));
            }
            Command::Reg { .. } if !offline => self.notice("You are already registered."),
            Command::Reg { .. } => {
                self.session.handle_reg();
                self.register(now);
            }
            _ if offline => {
                let me = &self.me;
                self.notice(format!(
                    "You are offline: only reg, list, help and quit work. Type reg {me} to come back."
                ));
            }
            Command::Dereg { name } if name != self.me => {
                self.notice(format!("You can only dereg yourself ({}).", self.me));
            }
            Command::Dereg { .. } => self.session.handle_leave(false),
            Command::Verify { name } => self.verify(&name),
            Command::Trust { name } => self.trust(&name),
            Command::Send { to, text } => self.send(now, to, text),
            Command::SendAll { text } => self.send_all(now, text),
        }
    }

    /// Seals `text` for `to` once (its retries and a save carry the same bytes) and sends it.
    pub(super) fn send(&mut self, now: Instant, to: Name, text: Text) {
        if self.table.row(&to).is_none() {
            self.notice(format!("No client named {to}. Type list to see the table."));
            return;
        }
        let Some(key) = self.table.key(&to) else {
            self.notice(format!("Message not sent: the table has no key for {to}."));
            return;
        };
        if self.keys.holds(&to, key) {
            self.notice(format!("Message not sent: {}", super::trust::changed_advice(&to)));
            return;
        }
        let chat_id = self.fresh_id();
        let nonce = self.entropy.bytes();
        let me = self.me.clone();
        let sealed = self.identity.pairwise(key).seal_text(nonce, &me, &to, chat_id, text.as_str());
        self.direct(now, Outgoing::new((to, key), sealed, chat_id, self.turn));
    }

    /// Sends to the peer if the table shows it online, else straight to the server.
    pub(super) fn direct(&mut self, now: Instant, o: Outgoing) {
        match self.table.route(&self.me, o.to()) {
            Some((addr, true)) => {
                let (d, id) = (o.chat(&self.me), o.chat_id());
                // Reached through the server last time: a copy goes that way at once too.
                let relayed = self.paths.get(o.to()) == Some(&Path::Relay);
                self.request(now, addr, id, &d, Kind::Direct(o));
                if relayed {
                    self.relay_copy(id, addr);
                }
            }
            _ => self.save(now, o),
        }
    }

    pub(super) fn save(&mut self, now: Instant, o: Outgoing) {
        let Some(secret) = self.proof() else { return };
        let id = self.fresh_id();
        let d = o.save(id, &self.me, secret);
        self.request(now, self.server, id, &d, Kind::Save(o));
    }

    pub(super) fn send_all(&mut self, now: Instant, text: Text) {
        let Some(secret) = self.proof() else { return };
        let id = self.fresh_id();
        let d = Datagram::ChannelSend { id, from: self.me.clone(), secret, text: text.clone() };
        self.request(now, self.server, id, &d, Kind::Channel(text, self.turn));
    }
}
