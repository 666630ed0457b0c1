//! What the gateway tells the page over the WebSocket: one JSON object per text frame, tagged
//! by `type`. The page sends plain text frames back, each one command line (or several, one
//! per line), exactly as typed at the terminal. No I/O here.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One update for the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    /// Everything so far: sent first on every connection (a reload keeps the conversation).
    Snapshot {
        /// This client's name.
        me: String,
        /// Where this client stands.
        presence: Presence,
        /// The people in the client table.
        people: Vec<Person>,
        /// The messages kept, oldest first.
        messages: Vec<Message>,
        /// The log: typed commands and event lines kept, oldest first.
        lines: Vec<LogLine>,
    },
    /// One line for the log.
    Line {
        /// The line.
        line: LogLine,
    },
    /// The people and this client's presence changed.
    People {
        /// Where this client stands.
        presence: Presence,
        /// The people in the client table.
        people: Vec<Person>,
    },
    /// A message is new, or its state changed (the page replaces the one with its `id`).
    Message {
        /// The message.
        message: Message,
    },
    /// Another tab took over: this one is closed.
    Replaced,
}

/// Where this client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Registering (at start or after `reg`).
    Joining,
    /// Registered and online.
    Online,
    /// Offline after `dereg`.
    Offline,
    /// The client has exited: the page can only show what was.
    Exited,
}

/// One row of the client table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    /// The name.
    pub name: String,
    /// Online in the table.
    pub online: bool,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// The text: an event line exactly as the terminal prints it, or a typed command.
    pub text: String,
    /// Whether the user typed it (an echo of the command) rather than the client printing it.
    pub typed: bool,
}

/// A message in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// The gateway's number for it, growing.
    pub id: u64,
    /// The conversation: the other person's name, or `None` for the channel.
    pub peer: Option<String>,
    /// Who wrote it.
    pub from: String,
    /// Written here (`true`) or received.
    pub outgoing: bool,
    /// The text.
    pub text: String,
    /// When it was sent or received here, or when the server received it (a stored message).
    pub at: DateTime<Utc>,
    /// Where it stands.
    pub state: State,
    /// Why it failed, for [`State::Failed`]: the client's line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Sent, no answer yet.
    Sending,
    /// The recipient (or, for the channel, the server) acknowledged it.
    Delivered,
    /// No ACK from the recipient: on its way to the server to be stored.
    ToServer,
    /// Saved on the server for the recipient, who is offline.
    Saved,
    /// Not sent or not saved (see `detail`).
    Failed,
    /// Received live.
    Received,
    /// Received after `reg`: the server kept it while this client was offline.
    Stored,
}
