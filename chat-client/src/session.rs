//! The client's standing with the server, as one state: joining, confirming its address,
//! fetching stored messages, online, leaving, offline; with the welcome owed to the user and
//! what arrived while the client could not show it yet.
//!
//! It owns the stage and the held lines. It makes no request and sends nothing: its methods
//! say where the session goes, and the core makes the requests that go with it.

use std::net::SocketAddr;

use chat_proto::Datagram;

use crate::event::Event;
use crate::fetch::Fetch;
use crate::inbox::Shown;

/// A message held with its line, unanswered: it counts as shown, and its ACK leaves, only once
/// its line is shown. A kill meanwhile loses nothing: its sender (or the server) still has it
/// and sends it again.
#[derive(Debug)]
pub(crate) struct Unacked {
    /// The message, for the record of what was shown.
    pub shown: Shown,
    /// Where its ACK goes.
    pub to: SocketAddr,
    /// Its ACK.
    pub ack: Datagram,
}

/// How many messages from peers wait at most, unanswered, for a registration or fetch to end.
pub(crate) const HELD_MESSAGES: usize = 1024;

/// What comes after a registration that is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// Stay online.
    Stay,
    /// `dereg` (or `quit`: `then_exit`) was asked before the server lost track of the client:
    /// leave once registered again.
    Leave { then_exit: bool },
}

/// Where the client stands with the server.
#[derive(Debug)]
pub(crate) enum Stage {
    /// A `register` is in flight: the first, `reg` after `dereg` (`answering` false: the
    /// client answers no one until the server has it), or again on the client's own.
    Joining { answering: bool, then: Then },
    /// Registered; the `confirm` that proves the address is in flight.
    Confirming { stored: u32, then: Then },
    /// The address is confirmed and stored messages are being fetched.
    Fetching { fetch: Fetch, then: Then },
    /// Registered: messages, probes and tables are answered.
    Online,
    /// `dereg` or `quit`: the sends in flight end, then a `dereg` is in flight.
    Leaving { then_exit: bool },
    /// After `dereg`: to everyone else the client is gone.
    Offline,
}

/// The session: its stage, and the lines held back until the registration is done.
#[derive(Debug)]
pub(crate) struct Session {
    stage: Stage,
    /// The welcome for the registration the user asked for (the first, or `reg`) was shown: a
    /// registration the client makes again on its own shows none.
    welcomed: bool,
    /// What arrived live while the client was registering or fetching stored messages: shown
    /// after the welcome and the stored messages; a message with its ACK, which waits too.
    held: Vec<(Event, Option<Unacked>)>,
}

impl Default for Session {
    fn default() -> Self {
        Self { stage: Stage::Joining { answering: true, then: Then::Stay }, welcomed: false, held: Vec::new() }
    }
}

impl Session {
    /// The stage, to read.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The fetch of stored messages, while there is one.
    pub fn fetch_mut(&mut self) -> Option<&mut Fetch> {
        match &mut self.stage {
            Stage::Fetching { fetch, .. } => Some(fetch),
            _ => None,
        }
    }

    /// Whether the client answers chats, probes and tables (to everyone else, an offline
    /// client is gone).
    pub fn answers_peers(&self) -> bool {
        !matches!(self.stage, Stage::Offline | Stage::Joining { answering: false, .. })
    }

    /// Whether the client is registered and welcomed, and so may run commands.
    pub fn settled(&self) -> bool {
        matches!(self.stage, Stage::Online | Stage::Offline)
    }

    /// Whether the server has this client as it is, its address confirmed: a table that lists
    /// it offline now means the server lost track of it (also while stored messages are being
    /// fetched: the server may mark it gone then, and the answer to its `fetch_done` may come
    /// after the table that says so).
    pub fn confirmed(&self) -> bool {
        matches!(self.stage, Stage::Fetching { .. } | Stage::Online)
    }

    /// Whether a live line waits: the registration is not answered or its address not
    /// confirmed yet (no welcome yet), stored messages are being fetched, or earlier lines are
    /// still held.
    pub fn holds(&self) -> bool {
        matches!(self.stage, Stage::Joining { .. } | Stage::Confirming { .. } | Stage::Fetching { .. })
            || !self.held.is_empty()
    }

    /// Holds `e` until the registration is done, or returns it to show now.
    pub fn hold(&mut self, e: Event) -> Option<Event> {
        if self.holds() {
            self.held.push((e, None));
            return None;
        }
        Some(e)
    }

    /// Holds the line of a message and its ACK until the registration is done, or returns them
    /// to show and send now. Past [`HELD_MESSAGES`] held, a message is dropped unanswered: its
    /// sender retransmits it, or leaves it with the server, so nothing is lost, and peers that
    /// send while this client fetches cannot grow its memory without end.
    pub fn hold_message(&mut self, e: Event, unacked: Unacked) -> Option<(Event, Unacked)> {
        if self.holds() {
            if self.held.iter().filter(|(_, u)| u.is_some()).count() < HELD_MESSAGES {
                self.held.push((e, Some(unacked)));
            } else {
                tracing::debug!("dropped a message unanswered: {HELD_MESSAGES} wait for the registration");
            }
            return None;
        }
        Some((e, unacked))
    }

    /// Whether the message `shown` is held (a copy of it is answered when it is shown).
    pub fn holding(&self, shown: &Shown) -> bool {
        self.held.iter().any(|(_, u)| u.as_ref().is_some_and(|u| u.shown == *shown))
    }

    /// The held lines, to show now, with the ACKs of the messages among them.
    pub fn release(&mut self) -> Vec<(Event, Option<Unacked>)> {
        std::mem::take(&mut self.held)
    }

    /// `reg`: a registration the user asked for, which gets its welcome.
    pub fn handle_reg(&mut self) {
        self.welcomed = false;
        self.handle_join();
    }

    /// A `register` goes out (unless one is in flight already).
    pub fn handle_join(&mut self) {
        let (answering, then) = match &self.stage {
            Stage::Joining { .. } => return,
            Stage::Offline => (false, Then::Stay),
            Stage::Online => (true, Then::Stay),
            Stage::Leaving { then_exit } => (true, Then::Leave { then_exit: *then_exit }),
            Stage::Confirming { then, .. } | Stage::Fetching { then, .. } => (true, *then),
        };
        self.stage = Stage::Joining { answering, then };
    }

    /// The server registered this client with `stored` messages waiting; the address is
    /// confirmed next.
    pub fn handle_registered(&mut self, stored: u32) {
        let then = match self.stage {
            Stage::Joining { then, .. } => then,
            _ => Then::Stay,
        };
        self.stage = Stage::Confirming { stored, then };
    }

    /// The address is confirmed: the welcome, if owed, and the messages to fetch (0: none, the
    /// registration is done).
    pub fn handle_confirmed(&mut self) -> (Option<Event>, u32) {
        let (stored, then) = match self.stage {
            Stage::Confirming { stored, then } => (stored, then),
            _ => (0, Then::Stay),
        };
        let welcome = (!std::mem::replace(&mut self.welcomed, true)).then_some(Event::Welcome);
        if stored == 0 {
            self.finish(then);
        } else {
            self.stage = Stage::Fetching { fetch: Fetch::new(stored), then };
        }
        (welcome, stored)
    }

    /// Every stored message is fetched and confirmed: the registration is done.
    pub fn handle_fetched(&mut self) {
        if let Stage::Fetching { then, .. } = self.stage {
            self.finish(then);
        }
    }

    fn finish(&mut self, then: Then) {
        self.stage = match then {
            Then::Stay => Stage::Online,
            Then::Leave { then_exit } => Stage::Leaving { then_exit },
        };
    }

    /// `dereg` (or `quit`: `then_exit`): leave once the sends in flight end.
    pub fn handle_leave(&mut self, then_exit: bool) {
        self.stage = Stage::Leaving { then_exit };
    }

    /// The server would not deregister this client: it stays online.
    pub fn handle_stay(&mut self) {
        self.stage = Stage::Online;
    }

    /// Deregistered (or the server had this client offline already).
    pub fn handle_offline(&mut self) {
        self.stage = Stage::Offline;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_welcome_is_owed_once_per_registration_the_user_asked_for() {
        let mut s = Session::default();
        s.handle_registered(0);
        assert_eq!(s.handle_confirmed(), (Some(Event::Welcome), 0));
        assert!(s.confirmed());
        s.handle_join();
        s.handle_registered(0);
        assert_eq!(s.handle_confirmed(), (None, 0), "the client registered again on its own");
        s.handle_offline();
        s.handle_reg();
        assert!(!s.answers_peers(), "offline until the server has it");
        s.handle_registered(2);
        assert_eq!(s.handle_confirmed(), (Some(Event::Welcome), 2));
        assert!(s.fetch_mut().is_some() && s.holds());
        s.handle_fetched();
        assert!(s.confirmed());
    }

    #[test]
    fn a_leave_asked_before_a_registration_again_comes_back_after_it() {
        let mut s = Session::default();
        s.handle_registered(0);
        s.handle_confirmed();
        s.handle_leave(true);
        s.handle_join();
        s.handle_registered(0);
        s.handle_confirmed();
        assert!(matches!(s.stage(), Stage::Leaving { then_exit: true }));
    }
}
