//! Sending: commands, direct messages with their ACK and fallback to the server, saves, the
//! channel, and the answers to incoming messages.

use std::net::SocketAddr;
use std::time::Instant;

use chat_proto::{ClientRow, Datagram, MsgId, Name, Text};

use crate::command::Command;
use crate::core::{Client, Kind, Status};
use crate::event::Event;

/// A direct message on its way: first to the peer, then, failing that, to the server.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub to: Name,
    text: Text,
    /// The same id on every attempt, so the peer shows it once however often it arrives.
    chat_id: MsgId,
    /// The server already refused a save with `exists` once: next time it must store.
    retried: bool,
}

impl Client {
    pub(crate) fn run_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::List => self.emit(Event::List(self.table.clone())),
            Command::Help => self.emit(Event::Help),
            Command::Quit if self.status == Status::Offline => self.exit_with(0, None),
            // Sends in flight end first: each keeps its one outcome line.
            Command::Quit => self.leaving = Some(true),
            Command::Reg { name } if name != self.me => {
                self.notice(format!("You can only reg as yourself ({}).", self.me));
            }
            Command::Reg { .. } if self.status == Status::Online => self.notice("You are already registered."),
            Command::Reg { .. } => {
                self.welcomed = false;
                self.register(now);
            }
            _ if self.status == Status::Offline => {
                let me = &self.me;
                self.notice(format!(
                    "You are offline: only reg, list, help and quit work. Type reg {me} to come back."
                ));
            }
            Command::Dereg { name } if name != self.me => {
                self.notice(format!("You can only dereg yourself ({}).", self.me));
            }
            Command::Dereg { .. } => self.leaving = Some(false),
            Command::Send { to, text } => self.send(now, to, text),
            Command::SendAll { text } => self.send_all(now, text),
        }
    }

    pub(crate) fn send_all(&mut self, now: Instant, text: Text) {
        let Some(secret) = self.proof() else { return };
        let id = self.fresh_id();
        let d = Datagram::ChannelSend { id, from: self.me.clone(), secret, text: text.clone() };
        self.request(now, self.server, id, &d, Kind::Channel(text));
    }

    fn send(&mut self, now: Instant, to: Name, text: Text) {
        if self.row(&to).is_none() {
            self.notice(format!("No client named {to}. Type list to see the table."));
            return;
        }
        let chat_id = self.fresh_id();
        self.direct(now, Outgoing { to, text, chat_id, retried: false });
    }

    fn row(&self, name: &Name) -> Option<(SocketAddr, bool)> {
        let table = self.table.as_ref()?;
        table.clients.iter().find(|r| &r.name == name).map(|r| (r.addr, r.online))
    }

    /// Sends to the peer if the table shows it online, else straight to the server.
    fn direct(&mut self, now: Instant, o: Outgoing) {
        match self.row(&o.to) {
            Some((addr, true)) => {
                let (from, to, text) = (self.me.clone(), o.to.clone(), o.text.clone());
                let d = Datagram::Chat { id: o.chat_id, from, to, text };
                self.request(now, addr, o.chat_id, &d, Kind::Direct(o));
            }
            _ => self.save(now, o),
        }
    }

    pub(crate) fn save(&mut self, now: Instant, o: Outgoing) {
        let Some(secret) = self.proof() else { return };
        let id = self.fresh_id();
        let d = Datagram::Save {
            id,
            msg: o.chat_id,
            from: self.me.clone(),
            secret,
            to: o.to.clone(),
            text: o.text.clone(),
            force: o.retried,
        };
        self.request(now, self.server, id, &d, Kind::Save(o));
    }

    pub(crate) fn on_chat_ack(&mut self, from: SocketAddr, id: MsgId) {
        if let Some(Kind::Direct(o)) = self.answered(id, from) {
            self.emit(Event::Delivered { to: o.to });
        }
    }

    /// The recipient answered the server's probe: show it, take the table, try it directly
    /// once more.
    pub(crate) fn on_exists(&mut self, now: Instant, id: MsgId, row: ClientRow) {
        let Some(Kind::Save(mut o)) = self.answered(id, self.server) else {
            return;
        };
        self.emit(Event::Exists { to: o.to.clone() });
        self.apply_row(row);
        o.retried = true;
        self.direct(now, o);
    }

    /// Shows a live message now, or after the welcome and the stored messages while the client
    /// is still registering or fetching them.
    fn show_live(&mut self, e: Event) {
        if self.holding() {
            self.held.push(e);
        } else {
            self.emit(e);
        }
    }

    pub(crate) fn on_chat(&mut self, from: SocketAddr, id: MsgId, sender: Name, text: Text) {
        if self.status == Status::Offline {
            return;
        }
        if self.chats_seen.insert((sender.clone(), id)) {
            self.show_live(Event::Chat { from: sender, text });
        }
        self.send_once(from, &Datagram::ChatAck { id });
    }

    pub(crate) fn on_channel(&mut self, id: MsgId, sender: Name, text: Text) {
        if self.status == Status::Offline {
            return;
        }
        if self.channel_seen.insert(id) {
            self.show_live(Event::Channel { from: sender, text });
        }
        self.send_once(self.server, &Datagram::ChannelAck { id });
    }
}
