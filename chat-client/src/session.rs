//! The client's standing with the server: registration (first, `reg`, and again when a table
//! lists it offline), `dereg`, the fetch of stored messages, tables and probes.

use std::collections::BTreeMap;
use std::time::Instant;

use chat_proto::{Datagram, MsgId, Origin, REGISTER_PAD_TO, Refusal, Secret, StoredMessage, encode};

use crate::core::{Client, Kind, Status};
use crate::event::Event;

/// How many stored messages are requested at once.
const FETCH_WINDOW: u32 = 8;

/// Stored messages being fetched after a registration.
#[derive(Debug)]
pub(crate) struct Fetch {
    total: u32,
    next_request: u32,
    next_show: u32,
    early: BTreeMap<u32, StoredMessage>,
    /// `[You have messages]` was shown.
    announced: bool,
    /// The id of the last stored message, for `fetch_done`.
    last: MsgId,
}

impl Client {
    pub(crate) fn register(&mut self, now: Instant) {
        if self.requests.values().any(|r| matches!(r.kind, Kind::Register)) {
            return;
        }
        let id = self.fresh_id();
        let mut d = Datagram::Register { id, name: self.me.clone(), secret: self.secret.clone(), pad: String::new() };
        // Padding pays for the server's answer before the server knows we receive here.
        let len = encode(&d).map_or(0, |b| b.len());
        if let Datagram::Register { pad, .. } = &mut d {
            *pad = " ".repeat(REGISTER_PAD_TO.saturating_sub(len));
        }
        self.request(now, self.server, id, &d, Kind::Register);
    }

    pub(crate) fn dereg(&mut self, now: Instant, then_exit: bool) {
        if self.requests.values().any(|r| matches!(r.kind, Kind::Dereg { .. })) {
            return;
        }
        let Some(secret) = self.proof() else { return };
        let id = self.fresh_id();
        let d = Datagram::Dereg { id, name: self.me.clone(), secret };
        self.request(now, self.server, id, &d, Kind::Dereg { then_exit });
    }

    pub(crate) fn on_registered(
        &mut self,
        now: Instant,
        id: MsgId,
        version: u64,
        stored: u32,
        secret: Secret,
        cookie: u64,
    ) {
        if !matches!(self.answered(id, self.server), Some(Kind::Register)) {
            return;
        }
        if self.secret.as_ref() != Some(&secret) {
            self.secret = Some(secret);
            self.secret_changed = true;
        }
        // Online for datagrams now; the welcome waits for the server to confirm the address, so
        // that it means the registration is done (what arrives meanwhile is shown after it).
        self.status = Status::Online;
        self.registered_version = version;
        self.seen_online = false;
        let id = self.fresh_id();
        self.request(now, self.server, id, &Datagram::Confirm { id, cookie }, Kind::Confirm { stored });
    }

    /// The server knows we receive at our address: welcome, then fetch stored messages, or wait
    /// for the table.
    fn on_confirmed(&mut self, now: Instant, stored: u32) {
        if !std::mem::replace(&mut self.welcomed, true) {
            self.emit(Event::Welcome);
        }
        for kind in std::mem::take(&mut self.redo) {
            match kind {
                Kind::Save(o) => self.save(now, o),
                Kind::Channel(text) => self.send_all(now, text),
                _ => {}
            }
        }
        if stored == 0 {
            self.release_held();
            self.wait_for_table(now);
            return;
        }
        self.fetch = Some(Fetch {
            total: stored,
            next_request: 0,
            next_show: 0,
            early: BTreeMap::new(),
            announced: false,
            last: MsgId(0),
        });
        self.fetch_more(now);
    }

    /// Commands wait (a bounded time) for the table that shows this client online, so that a
    /// script's first `send` finds its peers.
    fn wait_for_table(&mut self, now: Instant) {
        self.table_wait = Some(now + self.cfg.ack_timeout * (self.cfg.retries + 1));
        self.expect_table(now);
    }

    fn fetch_more(&mut self, now: Instant) {
        let Some(f) = self.fetch.as_mut() else { return };
        let indices: Vec<u32> = (f.next_request..f.total.min(f.next_show + FETCH_WINDOW)).collect();
        f.next_request += indices.len() as u32;
        for index in indices {
            let id = self.fresh_id();
            self.request(now, self.server, id, &Datagram::Fetch { id, index }, Kind::Fetch { index });
        }
    }

    pub(crate) fn on_stored(&mut self, now: Instant, id: MsgId, index: u32, message: StoredMessage) {
        // The answer must be for the index asked: another would be shown in the wrong place.
        if !matches!(self.in_flight(id, self.server), Some(&Kind::Fetch { index: asked }) if asked == index) {
            tracing::debug!(%id, index, "a stored message that answers no fetch in flight");
            return;
        }
        self.answered(id, self.server);
        let Some(f) = self.fetch.as_mut() else { return };
        if index.checked_add(1) == Some(f.total) {
            f.last = message.id;
        }
        if index >= f.next_show {
            f.early.insert(index, message);
        }
        let mut ready = Vec::new();
        while let Some(m) = f.early.remove(&f.next_show) {
            ready.push(m);
            f.next_show += 1;
        }
        let (done, count, last) = (f.next_show == f.total && !ready.is_empty(), f.total, f.last);
        for m in ready {
            self.show_stored(m);
        }
        if done {
            let id = self.fresh_id();
            self.request(now, self.server, id, &Datagram::FetchDone { id, count, last }, Kind::FetchDone);
        } else {
            self.fetch_more(now);
        }
    }

    /// Shows a stored message unless it was shown live already (its ACK was lost, and so the
    /// sender or the server stored it too).
    fn show_stored(&mut self, m: StoredMessage) {
        let fresh = match m.origin {
            Origin::Direct => self.chats_seen.insert((m.from.clone(), m.id)),
            Origin::Channel => self.channel_seen.insert(m.id),
        };
        if !fresh {
            tracing::debug!(from = %m.from, id = %m.id, "stored message already shown");
            return;
        }
        if let Some(f) = self.fetch.as_mut().filter(|f| !f.announced) {
            f.announced = true;
            self.emit(Event::HaveMessages);
        }
        self.emit(Event::Stored(m));
    }

    pub(crate) fn on_ack(&mut self, now: Instant, id: MsgId) {
        match self.answered(id, self.server) {
            Some(Kind::Dereg { then_exit }) => self.went_offline(then_exit),
            Some(Kind::Confirm { stored }) => self.on_confirmed(now, stored),
            Some(Kind::Save(_)) => self.emit(Event::Saved),
            Some(Kind::Channel(_)) => self.emit(Event::ChannelAcked),
            Some(Kind::FetchDone) => {
                self.fetch = None;
                self.release_held();
                self.wait_for_table(now);
            }
            _ => {}
        }
    }

    /// A `send_all` that reached everyone online, but whose copies for some offline members
    /// could not be kept (their mailboxes are full).
    pub(crate) fn on_channel_partial(&mut self, now: Instant, id: MsgId, full: &[chat_proto::Name]) {
        if !matches!(self.requests.get(&id).map(|r| &r.kind), Some(Kind::Channel(_))) {
            return;
        }
        self.on_ack(now, id);
        let names: Vec<&str> = full.iter().map(chat_proto::Name::as_str).collect();
        self.notice(format!("Not kept for {}: mailbox full.", names.join(", ")));
    }

    pub(crate) fn on_refused(&mut self, now: Instant, id: MsgId, reason: Refusal) {
        match self.answered(id, self.server) {
            Some(Kind::Register) if reason == Refusal::NameTaken => {
                let name = self.me.clone();
                self.exit_with(1, Some(Event::NameTaken(name)));
            }
            Some(Kind::Register) if reason == Refusal::NotOwner => {
                let name = self.me.clone();
                self.exit_with(1, Some(Event::NotOwner(name)));
            }
            Some(Kind::Register) => {
                self.notice(format!("Registration refused: {reason}."));
                self.exit_with(1, Some(Event::Notice("Exiting".into())));
            }
            // The server does not take this secret for the name: still online there.
            Some(Kind::Dereg { then_exit }) if reason == Refusal::NotOwner => {
                self.notice(format!("Not deregistered: {reason}."));
                if then_exit {
                    self.exit_with(0, None);
                }
            }
            // The server does not know this client at this address: it is offline already.
            Some(Kind::Dereg { then_exit }) => self.went_offline(then_exit),
            // The server does not know this client (it restarted): register, then do it again.
            Some(kind @ (Kind::Save(_) | Kind::Channel(_))) if reason == Refusal::NotRegistered => {
                self.redo.push(kind);
                self.register(now);
            }
            Some(Kind::Save(o)) => self.emit(Event::NotSaved { to: o.to, reason }),
            Some(Kind::Channel(_)) => self.notice(format!("Message not sent: {reason}.")),
            // The server lost track of this registration (it restarted): register again.
            // What was held back is shown once registered again (or at exit).
            Some(Kind::Confirm { .. } | Kind::Fetch { .. } | Kind::FetchDone) => {
                self.fetch = None;
                self.register(now);
            }
            _ => {}
        }
    }

    fn went_offline(&mut self, then_exit: bool) {
        self.status = Status::Offline;
        self.fetch = None;
        self.release_held();
        self.table_wait = None;
        self.emit(Event::Offline);
        if then_exit {
            self.exit_with(0, None);
        }
    }

    /// A request got no answer after every retry.
    pub(crate) fn on_gave_up(&mut self, now: Instant, kind: Kind) {
        match kind {
            Kind::Direct(o) => {
                self.emit(Event::NoAck { to: o.to.clone() });
                self.save(now, o);
            }
            Kind::Channel(_) => self.emit(Event::ChannelFailed),
            Kind::Register
            | Kind::Confirm { .. }
            | Kind::Dereg { .. }
            | Kind::Save(_)
            | Kind::Fetch { .. }
            | Kind::FetchDone => {
                self.exit_with(1, Some(Event::ServerGone));
            }
        }
    }

    pub(crate) fn on_probe(&mut self, id: MsgId) {
        if self.status != Status::Offline {
            self.send_once(self.server, &Datagram::ProbeAck { id, name: self.me.clone() });
        }
    }
}
