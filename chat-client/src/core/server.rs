//! The core's handling of the server's answers: registration, the address confirm, the fetch
//! of stored messages, `dereg`, refusals, `exists`, give-ups and tables. Part of the core: it
//! routes to the session, the requests, the table and the inbox, and owns no state of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use chat_proto::{
    Body, ClientRow, Datagram, MsgId, Name, Origin, PublicKey, REGISTER_PAD_TO, Refusal, Secret, StoredMessage, Text,
};

use super::{Client, Kind};
use crate::event::{Event, Presence};
use crate::inbox::Shown;
use crate::session::Stage;
use crate::table::{Applied, LocalTable};

impl Client {
    // ---- registration, dereg, fetch ----

    pub(super) fn register(&mut self, now: Instant) {
        if self.requests.any(|k| matches!(k, Kind::Register)) {
            return;
        }
        self.requests.cancel(Kind::is_joining);
        self.session.handle_join();
        let id = self.fresh_id();
        let mut d = Datagram::Register {
            lan: self.lan,
            id,
            name: self.me.clone(),
            secret: self.identity.secret().cloned(),
            key: self.identity.public(),
            pad: String::new(),
        };
        // Padding pays for the server's answer before the server knows we receive here.
        let len = chat_proto::encode(&d).map_or(0, |b| b.len());
        if let Datagram::Register { pad, .. } = &mut d {
            *pad = " ".repeat(REGISTER_PAD_TO.saturating_sub(len));
        }
        self.request(now, self.server, id, &d, Kind::Register);
    }

    pub(super) fn on_registered(
        &mut self,
        now: Instant,
        id: MsgId,
        (version, stored): (u64, u32),
        secret: Secret,
        cookie: u64,
        nodes: Vec<SocketAddr>,
    ) {
        if self.requests.answer(id, self.server, |k| matches!(k, Kind::Register)).is_none() {
            return;
        }
        self.nodes.handle_list(nodes);
        self.nodes.handle_registered();
        self.identity.handle_issued(secret);
        // Online for datagrams now; the welcome waits for the server to confirm the address, so
        // that it means the registration is done (what arrives meanwhile is shown after it).
        self.session.handle_registered(stored);
        self.table.handle_registered(version);
        let id = self.fresh_id();
        self.request(now, self.server, id, &Datagram::Confirm { id, cookie }, Kind::Confirm);
    }

    /// The server knows we receive at our address: welcome, the sends it had refused, then
    /// fetch stored messages, or wait for the table.
    pub(super) fn on_confirmed(&mut self, now: Instant) {
        let (welcome, stored) = self.session.handle_confirmed();
        if let Some(welcome) = welcome {
            self.emit(welcome);
        }
        // What was in flight to a node that stopped answering: the same requests, here.
        let moved = self.requests.resend_moved(now, self.server);
        self.out.extend(moved);
        for kind in self.requests.unpark() {
            match kind {
                Kind::Save(o) => self.save(now, o),
                Kind::Channel(text, turn) => self.in_turn(turn, |c| c.send_all(now, text)),
                _ => {}
            }
        }
        if stored == 0 {
            self.registration_done(now);
        } else {
            self.fetch_more(now);
        }
    }

    pub(super) fn registration_done(&mut self, now: Instant) {
        self.release_held();
        self.table.expect(now);
    }

    pub(super) fn fetch_more(&mut self, now: Instant) {
        let Some(indices) = self.session.fetch_mut().map(crate::fetch::Fetch::poll_indices) else { return };
        for index in indices {
            let id = self.fresh_id();
            self.request(now, self.server, id, &Datagram::Fetch { id, index }, Kind::Fetch { index });
        }
    }

    pub(super) fn on_stored(&mut self, now: Instant, id: MsgId, index: u32, message: StoredMessage) {
        if !self.answers_fetch(id, index) {
            return;
        }
        let msg_id = message.id;
        let message = self.open_stored(message);
        self.fetched(now, index, msg_id, message);
    }

    /// Stored message `index` (id `msg`) is no longer stored (another node delivered it): it is
    /// skipped, and counts, as one that does not open.
    pub(super) fn on_gone(&mut self, now: Instant, id: MsgId, index: u32, msg: MsgId) {
        if !self.answers_fetch(id, index) {
            return;
        }
        tracing::info!(index, %msg, "a stored message another node delivered: skipped");
        self.fetched(now, index, msg, None);
    }

    /// Whether `id` answers a fetch in flight for `index` (and so ends it).
    fn answers_fetch(&mut self, id: MsgId, index: u32) -> bool {
        // The answer must be for the index asked: another would be shown in the wrong place.
        let asked = |k: &Kind| matches!(k, Kind::Fetch { index: i } if *i == index);
        if self.requests.answer(id, self.server, asked).is_none() {
            tracing::debug!(%id, index, "a stored message that answers no fetch in flight");
            return false;
        }
        true
    }

    /// The fetch has message `index` (id `msg_id`; `None` if it is not to be shown): what is
    /// ready is shown, then the fetch asks for more or is done.
    fn fetched(&mut self, now: Instant, index: u32, msg_id: MsgId, message: Option<StoredMessage>) {
        let Some(fetch) = self.session.fetch_mut() else { return };
        let ready = fetch.handle_stored(index, msg_id, message);
        let done = if ready.is_empty() { None } else { fetch.done() };
        for m in ready.into_iter().flatten() {
            self.show_stored(m);
        }
        match done {
            Some((count, last)) => {
                let id = self.fresh_id();
                self.request(now, self.server, id, &Datagram::FetchDone { id, count, last }, Kind::FetchDone);
            }
            None => self.fetch_more(now),
        }
    }

    /// A stored message as it may be shown: a channel message's text as it came (the server
    /// relays the channel), a direct message opened: its text if it was sealed for this
    /// client by the key its sender's name belongs to (the table's, else the one the server
    /// kept with it). `None` for a direct message that does not open, or that the server
    /// holds in clear (it could have written it itself): never shown.
    fn open_stored(&mut self, mut m: StoredMessage) -> Option<StoredMessage> {
        let text = match (&m.origin, &m.body) {
            (Origin::Channel, Body::Text(_)) => return Some(m),
            (Origin::Direct, Body::Sealed { sealed, key }) => {
                // The server says which key the name had; the table, where it knows the name,
                // decides.
                let key = self.table.key(&m.from).unwrap_or(*key);
                let me = self.me.clone();
                self.identity.pairwise(key).open_text(sealed, &m.from, &me, m.id).and_then(|t| Text::new(t).ok())
            }
            _ => None,
        };
        let Some(text) = text else {
            self.unauthentic += 1;
            tracing::warn!(from = %m.from, id = %m.id, "a stored message that does not open with its sender's key: not shown");
            return None;
        };
        m.body = Body::Text(text);
        Some(m)
    }

    /// Shows a stored message unless it was shown live already (its ACK was lost, and so the
    /// sender or the server stored it too).
    pub(super) fn show_stored(&mut self, m: StoredMessage) {
        if !self.inbox.first_stored(&m) {
            tracing::debug!(from = %m.from, id = %m.id, "stored message already shown");
            return;
        }
        if self.session.fetch_mut().is_some_and(crate::fetch::Fetch::announce) {
            self.emit(Event::HaveMessages);
        }
        // Answers no command (a fetch runs outside any turn): shown in its place, with the
        // message for the driver to record right after its line.
        let shown = Shown::from(&m);
        self.events.push_back((Event::Stored(m), None, Some(shown)));
    }

    pub(super) fn dereg(&mut self, now: Instant, then_exit: bool) {
        let Some(secret) = self.proof() else {
            self.session.handle_stay();
            return;
        };
        let id = self.fresh_id();
        let d = Datagram::Dereg { id, name: self.me.clone(), secret };
        self.request(now, self.server, id, &d, Kind::Dereg { then_exit });
    }

    pub(super) fn went_offline(&mut self, then_exit: bool) {
        self.session.handle_offline();
        self.requests.cancel(Kind::is_joining);
        self.release_held();
        self.table.stop_waiting();
        self.emit(Event::Offline);
        if then_exit {
            self.exit_with(0, None);
        }
    }

    // ---- answers from the server ----

    pub(super) fn on_ack(&mut self, now: Instant, id: MsgId) {
        match self.requests.answer(id, self.server, Kind::is_acked) {
            Some(Kind::Dereg { then_exit }) => self.went_offline(then_exit),
            Some(Kind::Confirm) => self.on_confirmed(now),
            Some(Kind::Save(o)) => self.in_turn(o.turn(), |c| c.emit(Event::Saved)),
            Some(Kind::Channel(_, turn)) => self.in_turn(turn, |c| c.emit(Event::ChannelAcked)),
            Some(Kind::FetchDone) => {
                self.session.handle_fetched();
                self.registration_done(now);
            }
            _ => {}
        }
    }

    /// A `send_all` that reached everyone online, but whose copies for some offline members
    /// could not be kept: their mailboxes are `full`, or the server's disk could not take them
    /// (`unstored`).
    pub(super) fn on_channel_partial(&mut self, now: Instant, id: MsgId, full: &[Name], unstored: &[Name]) {
        let Some(&Kind::Channel(_, turn)) = self.requests.get(id, self.server) else { return };
        self.on_ack(now, id);
        let list = |names: &[Name]| names.iter().map(Name::as_str).collect::<Vec<_>>().join(", ");
        self.in_turn(turn, |c| {
            if !full.is_empty() {
                c.notice(format!("Not kept for {}: mailbox full.", list(full)));
            }
            if !unstored.is_empty() {
                c.notice(format!("Not kept for {}: {}.", list(unstored), Refusal::StorageUnavailable));
            }
        });
    }

    pub(super) fn on_refused(&mut self, now: Instant, id: MsgId, reason: Refusal) {
        let Some(kind) = self.requests.answer(id, self.server, |k| !matches!(k, Kind::Direct(_))) else { return };
        self.in_turn(kind.turn(), |c| c.refused(now, kind, reason));
    }

    fn refused(&mut self, now: Instant, kind: Kind, reason: Refusal) {
        match kind {
            Kind::Register => self.registration_refused(reason),
            // The server does not take this secret for the name: still online there.
            Kind::Dereg { then_exit } if reason == Refusal::NotOwner => {
                self.notice(format!("Not deregistered: {reason}."));
                self.session.handle_stay();
                if then_exit {
                    self.exit_with(0, None);
                }
            }
            // The server does not know this client at this address: it is offline already.
            Kind::Dereg { then_exit } => self.went_offline(then_exit),
            // The server does not know this client (it restarted): register, then do it again.
            kind @ (Kind::Save(_) | Kind::Channel(..)) if reason == Refusal::NotRegistered => {
                self.requests.park(kind);
                self.register(now);
            }
            Kind::Save(o) => self.emit(Event::NotSaved { to: o.to().clone(), reason }),
            Kind::Channel(..) => self.notice(format!("Message not sent: {reason}.")),
            // The server lost track of this registration (it restarted): register again.
            // What was held back is shown once registered again (or at exit).
            Kind::Confirm | Kind::Fetch { .. } | Kind::FetchDone => self.register(now),
            Kind::Direct(_) => {}
        }
    }

    pub(super) fn registration_refused(&mut self, reason: Refusal) {
        let name = self.me.clone();
        match reason {
            Refusal::NameTaken => self.exit_with(1, Some(Event::NameTaken(name))),
            Refusal::NotOwner => self.exit_with(1, Some(Event::NotOwner(name))),
            _ => {
                // The answers of earlier commands go first, as at any exit.
                self.show_held_answers();
                self.notice(format!("Registration refused: {reason}."));
                self.exit_with(1, Some(Event::Notice("Exiting".into())));
            }
        }
    }

    /// The recipient answered the server's probe: show it, take the table, try it directly
    /// once more.
    pub(super) fn on_exists(&mut self, now: Instant, id: MsgId, row: ClientRow) {
        let Some(Kind::Save(mut o)) = self.requests.answer(id, self.server, |k| matches!(k, Kind::Save(_))) else {
            return;
        };
        self.in_turn(o.turn(), |c| {
            c.emit(Event::Exists { to: o.to().clone() });
            let keyed = super::trust::keyed(std::slice::from_ref(&row));
            let presence = c.table.apply_row(row);
            c.emit(Event::TableUpdated(presence));
            c.check_keys(keyed);
            o.handle_exists();
            c.direct(now, o);
        });
    }

    /// Request `id` (`bytes`) got no answer after every retry. One to the server moves the
    /// client to another node if it knows one (the request goes there too, if the user asked
    /// for it).
    pub(super) fn on_gave_up(&mut self, now: Instant, id: MsgId, bytes: Arc<[u8]>, kind: Kind) {
        let kind = match kind {
            Kind::Direct(_) => kind,
            kind => match self.move_with(now, id, bytes, kind) {
                Some(kind) => kind,
                None => return,
            },
        };
        self.in_turn(kind.turn(), |c| c.gave_up(now, kind));
    }

    fn gave_up(&mut self, now: Instant, kind: Kind) {
        match kind {
            Kind::Direct(o) => {
                self.emit(Event::NoAck { to: o.to().clone() });
                self.save(now, o);
            }
            Kind::Channel(..) => self.emit(Event::ChannelFailed),
            _ => {
                self.abandon_sends();
                self.exit_with(1, Some(Event::ServerGone));
            }
        }
    }

    /// The client exits because its server stopped answering, while other sends still wait:
    /// each ends now in its own line, in its command's turn (SPEC 10.1: exactly one outcome), so
    /// that in a script every command's lines stay where its turn is, and a later command's
    /// `[Messages received by the server and saved]` is not taken for an earlier one's.
    fn abandon_sends(&mut self) {
        let mut kinds = self.requests.take(Kind::is_send);
        kinds.sort_by_key(Kind::turn);
        for kind in kinds {
            let turn = kind.turn();
            let e = match kind {
                Kind::Direct(o) => Event::Abandoned { to: o.to().clone(), saving: false },
                Kind::Save(o) => Event::Abandoned { to: o.to().clone(), saving: true },
                _ => Event::ChannelFailed,
            };
            self.in_turn(turn, |c| c.emit(e));
        }
    }

    // ---- the table ----

    /// Applies a table datagram; `keyed`: the names and keys it carries, if not the whole
    /// table (a delta), checked against the key book once applied.
    pub(super) fn on_table(
        &mut self,
        now: Instant,
        apply: impl FnOnce(&mut LocalTable) -> Applied,
        keyed: Option<Vec<(Name, PublicKey)>>,
    ) {
        if !self.session.answers_peers() {
            return;
        }
        let Applied { ack, changed } = apply(&mut self.table);
        if let Some(version) = ack {
            self.send_once(self.server, &Datagram::TableAck { version });
        }
        if let Some(presence) = changed {
            self.table_changed(now, presence);
            let keyed = keyed.unwrap_or_else(|| self.table.keys());
            self.check_keys(keyed);
        }
    }

    /// Shows the update; a table that says the server lost track of this client (its probe
    /// answers were lost) makes it register again.
    pub(super) fn table_changed(&mut self, now: Instant, presence: Presence) {
        if self.table.lost(&self.me) && self.session.confirmed() {
            tracing::info!("the server lists this client offline: registering again");
            self.register(now);
        }
        // While stored messages are shown, table updates are not held back.
        if matches!(self.session.stage(), Stage::Fetching { .. }) {
            self.emit(Event::TableUpdated(presence));
        } else {
            self.show_live(Event::TableUpdated(presence));
        }
        // Chats that came before their senders' keys: opened now, or dropped.
        for (from, id, sender, sealed) in std::mem::take(&mut self.unverified) {
            self.on_chat(from, id, sender, &sealed);
        }
    }
}
