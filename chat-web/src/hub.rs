//! What the page shows, kept in memory for as long as the gateway runs: the people and their
//! presence, the messages with their states, and the log of lines. It takes the lines typed on
//! the page and the client core's events (with the turn of the command each answers, see
//! `chat_client::Client::poll_answer`) and returns the updates for the page and the lines for
//! the core. Sans-IO: no sockets, no clock (`now` comes in), no tasks.

use std::collections::{BTreeMap, VecDeque};

use chat_client::{Command, Event};
use chat_proto::{Body, Origin, StoredMessage};
use chrono::{DateTime, Utc};

use crate::wire::{LogLine, Message, Person, Presence, State, Update};

/// How many messages are kept for a reload (the oldest go first).
pub const MESSAGES_KEPT: usize = 5_000;
/// How many log lines are kept for a reload (the oldest go first).
pub const LINES_KEPT: usize = 2_000;
/// How many commands waiting for their answers are remembered (the oldest are forgotten).
const TURNS_KEPT: usize = 10_000;

/// What a command's answers mean for the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// A `send` or `send_all`: its outcome is this message's state.
    Message(u64),
    /// A `list` the gateway sent itself to learn the table: its answer is not shown as lines.
    Table,
}

/// Whose message an outcome that came without its turn is about.
#[derive(Debug, Clone, Copy)]
enum Whom<'a> {
    Peer(&'a chat_proto::Name),
    AnyPeer,
    Channel,
    Nobody,
}

/// What the gateway does after an input: updates for the page, lines for the core.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// For the page, in order.
    pub updates: Vec<Update>,
    /// For the client core, in order.
    pub lines: Vec<String>,
}

/// The page's state.
#[derive(Debug)]
pub struct Hub {
    me: String,
    presence: Presence,
    people: Vec<Person>,
    messages: VecDeque<Message>,
    lines: VecDeque<LogLine>,
    /// The turn the next line sent to the core takes.
    next_turn: u64,
    /// Turns whose answers mean something for the page, oldest first (forgetting the oldest
    /// costs no walk over the others).
    asked: BTreeMap<u64, Asked>,
    /// Whether a `list` of the gateway's own is on its way (one covers any number of updates).
    table_asked: bool,
    next_message: u64,
}

impl Hub {
    /// The page of the client named `me`, registering.
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            presence: Presence::Joining,
            people: Vec::new(),
            messages: VecDeque::new(),
            lines: VecDeque::new(),
            next_turn: 0,
            asked: BTreeMap::new(),
            table_asked: false,
            next_message: 0,
        }
    }

    /// Everything so far, for a page that connects.
    pub fn snapshot(&self) -> Update {
        Update::Snapshot {
            me: self.me.clone(),
            presence: self.presence,
            people: self.people.clone(),
            messages: self.messages.iter().cloned().collect(),
            lines: self.lines.iter().cloned().collect(),
        }
    }

    /// Text the page sent at `now`: one command line per line, as typed at the terminal. Each
    /// goes to the core; a `send` or `send_all` also starts a message in its conversation.
    pub fn handle_text(&mut self, now: DateTime<Utc>, text: &str) -> Effects {
        let mut fx = Effects::default();
        for line in text.lines() {
            let parsed = chat_client::parse(line);
            if matches!(parsed, Ok(None)) {
                continue; // blank: the core takes no turn for it
            }
            fx.updates.push(self.log(line.trim_end().to_owned(), true));
            let message = match parsed {
                Ok(Some(Command::Send { to, text })) => Some((Some(to.as_str().to_owned()), text.as_str().to_owned())),
                Ok(Some(Command::SendAll { text })) => Some((None, text.as_str().to_owned())),
                _ => None,
            };
            if let Some((peer, text)) = message {
                let me = self.me.clone();
                let id = self.add(&mut fx, Message::new(0, peer, me, true, text, now, State::Sending));
                self.ask(Asked::Message(id));
            } else {
                self.ask_nothing();
            }
            fx.lines.push(line.to_owned());
        }
        fx
    }

    /// An event of the core at `now`, answering the command of `turn` if any.
    // `{ .. }` on every variant: the page keeps working when an event gains a field.
    #[allow(clippy::unneeded_struct_pattern)]
    pub fn handle_event(&mut self, now: DateTime<Utc>, event: Event, turn: Option<u64>) -> Effects {
        let mut fx = Effects::default();
        let asked = turn.and_then(|t| self.asked.get(&t).copied());
        if asked != Some(Asked::Table) {
            for line in event.to_string().lines() {
                fx.updates.push(self.log(line.to_owned(), false));
            }
        }
        match event {
            Event::Welcome { .. } => self.set_presence(&mut fx, Presence::Online),
            Event::Offline { .. } => self.set_presence(&mut fx, Presence::Offline),
            Event::ServerGone { .. }
            | Event::NameTaken { .. }
            | Event::NotOwner { .. }
            | Event::ServerKeyRefused { .. } => self.set_presence(&mut fx, Presence::Exited),
            Event::TableUpdated { .. } if !self.table_asked => {
                self.table_asked = true;
                self.ask(Asked::Table);
                fx.lines.push("list".into());
            }
            Event::List(table) => {
                if asked == Some(Asked::Table) {
                    self.table_asked = false;
                }
                let rows = table.map(|t| t.clients).unwrap_or_default();
                self.people =
                    rows.iter().map(|r| Person { name: r.name.as_str().to_owned(), online: r.online }).collect();
                fx.updates.push(self.people_update());
            }
            Event::Chat { from, text, .. } => {
                let m = Message::new(
                    0,
                    Some(from.to_string()),
                    from.to_string(),
                    false,
                    text.to_string(),
                    now,
                    State::Received,
                );
                self.add(&mut fx, m);
            }
            Event::Channel { from, text, .. } => {
                let m = Message::new(0, None, from.to_string(), false, text.to_string(), now, State::Received);
                self.add(&mut fx, m);
            }
            Event::Stored(m) => {
                self.add(&mut fx, stored(&m));
            }
            Event::Delivered { to, .. } => self.settle(&mut fx, asked, Whom::Peer(&to), State::Delivered, None),
            Event::NoAck { to, .. } => self.settle(&mut fx, asked, Whom::Peer(&to), State::ToServer, None),
            Event::Exists { to, .. } => self.settle(&mut fx, asked, Whom::Peer(&to), State::Sending, None),
            Event::Saved { .. } => self.settle(&mut fx, asked, Whom::AnyPeer, State::Saved, None),
            Event::NotSaved { ref to, .. } => {
                let why = event.to_string();
                self.settle(&mut fx, asked, Whom::Peer(to), State::Failed, Some(why));
            }
            Event::ChannelAcked { .. } => self.settle(&mut fx, asked, Whom::Channel, State::Delivered, None),
            Event::Abandoned { ref to, .. } => {
                let why = event.to_string();
                self.settle(&mut fx, asked, Whom::Peer(to), State::Failed, Some(why));
            }
            Event::ChannelFailed { .. } => {
                self.settle(&mut fx, asked, Whom::Channel, State::Failed, Some(event.to_string()));
            }
            // A send refused at once (no such name, offline…): its one line says why.
            Event::Notice(ref text) if matches!(asked, Some(Asked::Message(_))) => {
                let why = text.clone();
                self.settle(&mut fx, asked, Whom::Nobody, State::Failed, Some(why));
            }
            _ => {}
        }
        fx
    }

    /// The client has stopped: nothing more will change.
    pub fn handle_exit(&mut self) -> Effects {
        let mut fx = Effects::default();
        self.set_presence(&mut fx, Presence::Exited);
        fx
    }

    fn ask(&mut self, what: Asked) {
        while self.asked.len() >= TURNS_KEPT {
            self.asked.pop_first();
        }
        self.asked.insert(self.next_turn, what);
        self.next_turn += 1;
    }

    fn ask_nothing(&mut self) {
        self.next_turn += 1;
    }

    fn log(&mut self, text: String, typed: bool) -> Update {
        if self.lines.len() == LINES_KEPT {
            self.lines.pop_front();
        }
        let line = LogLine { text, typed };
        self.lines.push_back(line.clone());
        Update::Line { line }
    }

    fn add(&mut self, fx: &mut Effects, mut m: Message) -> u64 {
        m.id = self.next_message;
        self.next_message += 1;
        if self.messages.len() == MESSAGES_KEPT {
            self.messages.pop_front();
        }
        let id = m.id;
        fx.updates.push(Update::Message { message: m.clone() });
        self.messages.push_back(m);
        id
    }

    fn set_presence(&mut self, fx: &mut Effects, presence: Presence) {
        if self.presence != presence && self.presence != Presence::Exited {
            self.presence = presence;
            fx.updates.push(self.people_update());
        }
    }

    fn people_update(&self) -> Update {
        Update::People { presence: self.presence, people: self.people.clone() }
    }

    /// Moves the message an outcome belongs to into `state`: the one its turn started, else
    /// (an outcome that came without its turn) the oldest unsettled one to `whom`.
    fn settle(&mut self, fx: &mut Effects, asked: Option<Asked>, whom: Whom<'_>, state: State, detail: Option<String>) {
        let by_turn = match asked {
            // Kept in the order of their ids: no walk over thousands of messages per outcome.
            Some(Asked::Message(id)) => match self.messages.binary_search_by_key(&id, |m| m.id) {
                Ok(i) => self.messages.get_mut(i),
                Err(_) => None,
            },
            _ => None,
        };
        let found = match by_turn {
            Some(m) => Some(m),
            None => self.messages.iter_mut().find(|m| {
                m.outgoing
                    && matches!(m.state, State::Sending | State::ToServer)
                    && match whom {
                        Whom::Peer(to) => m.peer.as_deref() == Some(to.as_str()),
                        Whom::AnyPeer => m.peer.is_some(),
                        Whom::Channel => m.peer.is_none(),
                        Whom::Nobody => false,
                    }
            }),
        };
        if let Some(m) = found {
            m.state = state;
            m.detail = detail;
            fx.updates.push(Update::Message { message: m.clone() });
        }
    }
}

impl Message {
    fn new(
        id: u64,
        peer: Option<String>,
        from: String,
        outgoing: bool,
        text: String,
        at: DateTime<Utc>,
        state: State,
    ) -> Self {
        Self { id, peer, from, outgoing, text, at, state, detail: None }
    }
}

/// A message the server kept while this client was offline.
fn stored(m: &StoredMessage) -> Message {
    let text = match &m.body {
        Body::Text(t) => t.as_str().to_owned(),
        Body::Sealed { .. } => String::new(),
    };
    let peer = (m.origin == Origin::Direct).then(|| m.from.to_string());
    Message::new(0, peer, m.from.to_string(), false, text, m.at, State::Stored)
}

#[cfg(test)]
mod tests;
