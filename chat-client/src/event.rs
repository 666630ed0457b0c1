//! What the client tells its user: one [`Event`] per thing that happened, and the exact line
//! each one prints.

use std::fmt;
use std::net::SocketAddr;

use chat_proto::{Body, Name, Origin, PublicKey, Refusal, StoredMessage, Table, Text};
use chrono::Local;

/// Something to show the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Registration (or `reg`) succeeded.
    Welcome,
    /// Stored messages follow.
    HaveMessages,
    /// One stored message, in the order the server received it.
    Stored(StoredMessage),
    /// A newer client table was applied; who came or went with it (the terminal says so beside
    /// the line, a script sees the line alone).
    TableUpdated(Presence),
    /// A direct message arrived.
    Chat {
        /// The sender.
        from: Name,
        /// The message.
        text: Text,
    },
    /// The recipient ACKed a direct message.
    Delivered {
        /// The recipient.
        to: Name,
    },
    /// No ACK from the recipient; the message goes to the server.
    NoAck {
        /// The recipient.
        to: Name,
    },
    /// The server stored a message.
    Saved,
    /// The server refused a save because the recipient answered its probe.
    Exists {
        /// The recipient.
        to: Name,
    },
    /// The server refused a save for another reason.
    NotSaved {
        /// The recipient.
        to: Name,
        /// Why.
        reason: Refusal,
    },
    /// `dereg` succeeded.
    Offline,
    /// The server ACKed a `send_all`.
    ChannelAcked,
    /// The server did not ACK a `send_all`.
    ChannelFailed,
    /// A channel message arrived.
    Channel {
        /// The sender.
        from: Name,
        /// The message.
        text: Text,
    },
    /// The client table, for `list`.
    List(Option<Table>),
    /// The command list, for `help`.
    Help,
    /// A one-line answer to a command: an error, or why it cannot run now.
    Notice(String),
    /// The server did not answer a request the client cannot go on without; the client exits 1.
    ServerGone,
    /// The client exits (its server stopped answering) while this `send` still waited: for
    /// the server's answer to its save (`saving`), or for `to`'s ACK (and then it was not sent
    /// to the server). Its command's last line.
    Abandoned {
        /// The recipient.
        to: Name,
        /// The save was in flight (else the direct message).
        saving: bool,
    },
    /// The server's node at `from` stopped answering: the client moves to the node at `to`
    /// and registers there (a notice, not an answer to a command).
    ServerMoved {
        /// The node that stopped answering.
        from: SocketAddr,
        /// The node the client moves to.
        to: SocketAddr,
    },
    /// The name is online at another address that answers; the client exits 1.
    NameTaken(Name),
    /// The name is registered and this client does not have its secret; the client exits 1.
    NotOwner(Name),
    /// The server showed another key than the one pinned for it; the client exits 1.
    ServerKeyRefused {
        /// The server's address.
        server: SocketAddr,
        /// The key it showed.
        shown: PublicKey,
        /// The key pinned for it.
        pinned: PublicKey,
    },
}

/// Who a table update shows coming online and going offline: what the terminal says beside
/// `[Client table updated.]`. A table that comes when there was none counts every row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    /// Now online, and before offline or not in the table.
    pub came: Vec<Name>,
    /// Now offline, and before online or not in the table; or online before and no longer in
    /// the table.
    pub went: Vec<Name>,
}

impl Presence {
    /// Notes that `name` is now `online` or not.
    pub(crate) fn note(&mut self, name: Name, online: bool) {
        if online { self.came.push(name) } else { self.went.push(name) }
    }

    /// Whether nobody came or went.
    pub fn is_empty(&self) -> bool {
        self.came.is_empty() && self.went.is_empty()
    }
}

/// A stored message's text (a message still sealed is never shown: the core drops it).
fn body(m: &StoredMessage) -> &str {
    match &m.body {
        Body::Text(t) => t.as_str(),
        Body::Sealed { .. } => "",
    }
}

fn stamp(m: &StoredMessage) -> impl fmt::Display {
    m.at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S")
}

impl fmt::Display for Event {
    /// The lines to print, each starting with `>>> `, separated by newlines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Welcome => f.write_str(">>> [Welcome, You are registered.]"),
            Self::HaveMessages => f.write_str(">>> [You have messages]"),
            Self::Stored(m) if m.origin == Origin::Channel => {
                write!(f, ">>> Channel_Message {}: {} {}", m.from, stamp(m), body(m))
            }
            Self::Stored(m) => write!(f, ">>> {}: {} {}", m.from, stamp(m), body(m)),
            Self::TableUpdated(_) => f.write_str(">>> [Client table updated.]"),
            Self::Chat { from, text } => write!(f, ">>> {from}: {text}"),
            Self::Delivered { to } => write!(f, ">>> [Message received by {to}.]"),
            Self::NoAck { to } => write!(f, ">>> [No ACK from {to}, message sent to server.]"),
            Self::Saved => f.write_str(">>> [Messages received by the server and saved]"),
            Self::Exists { to } => write!(f, ">>> [Client {to} exists!!]"),
            Self::NotSaved { to, reason } => {
                write!(f, ">>> [Message for {to} not saved: {reason}.]")
            }
            Self::Offline => f.write_str(">>> [You are Offline. Bye.]"),
            Self::ChannelAcked => f.write_str(">>> [Message received by Server.]"),
            Self::ChannelFailed => f.write_str(">>> [Server not responding.]"),
            Self::Channel { from, text } => write!(f, ">>> [Channel_Message {from}: {text}]"),
            Self::List(table) => list(f, table.as_ref()),
            Self::Help => {
                let lines: Vec<String> = crate::command::HELP.iter().map(|l| format!(">>> {l}")).collect();
                f.write_str(&lines.join("\n"))
            }
            Self::Notice(s) => write!(f, ">>> [{s}]"),
            Self::ServerGone => f.write_str(">>> [Server not responding]\n>>> [Exiting]"),
            Self::Abandoned { saving: true, .. } => f.write_str(">>> [Server not responding]"),
            Self::Abandoned { to, saving: false } => {
                write!(f, ">>> [No ACK from {to} yet, message not sent to server: exiting.]")
            }
            Self::ServerMoved { from, to } => write!(f, ">>> [Server {from} not responding: moving to {to}.]"),
            Self::NameTaken(name) => write!(f, ">>> [Name {name} is in use by another client.]\n>>> [Exiting]"),
            Self::ServerKeyRefused { server, shown, pinned } => write!(
                f,
                ">>> [The server at {server} shows key {shown}, not its pinned key {pinned}: not connecting.]\n>>> [Exiting]"
            ),
            Self::NotOwner(name) => {
                write!(
                    f,
                    ">>> [Name {name} belongs to another client: its key and secret are not in this data directory.]\n>>> [Exiting]"
                )
            }
        }
    }
}

fn list(f: &mut fmt::Formatter<'_>, table: Option<&Table>) -> fmt::Result {
    let Some(table) = table.filter(|t| !t.clients.is_empty()) else {
        return f.write_str(">>> [The client table is empty.]");
    };
    let width = table.clients.iter().map(|r| r.name.as_str().chars().count()).max().unwrap_or(0);
    let rows: Vec<String> = table
        .clients
        .iter()
        .map(|r| {
            let status = if r.online { "online" } else { "offline" };
            let ip = r.addr.ip().to_string();
            format!(">>> {:<width$}  {ip:<15}  {:>5}  {status}", r.name.as_str(), r.addr.port())
        })
        .collect();
    f.write_str(&rows.join("\n"))
}

#[cfg(test)]
mod tests {
    use chat_proto::ClientRow;
    use chrono::{TimeZone, Utc};

    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    #[test]
    fn lines_are_exactly_the_spec() {
        let text = Text::new("Hello").expect("text");
        let cases = [
            (Event::Welcome, ">>> [Welcome, You are registered.]"),
            (Event::Delivered { to: n("bob") }, ">>> [Message received by bob.]"),
            (Event::NoAck { to: n("bob") }, ">>> [No ACK from bob, message sent to server.]"),
            (Event::Saved, ">>> [Messages received by the server and saved]"),
            (Event::Exists { to: n("bob") }, ">>> [Client bob exists!!]"),
            (Event::ChannelFailed, ">>> [Server not responding.]"),
            (Event::ServerGone, ">>> [Server not responding]\n>>> [Exiting]"),
            (Event::Abandoned { to: n("bob"), saving: true }, ">>> [Server not responding]"),
            (
                Event::Abandoned { to: n("bob"), saving: false },
                ">>> [No ACK from bob yet, message not sent to server: exiting.]",
            ),
            (Event::Chat { from: n("alice"), text: text.clone() }, ">>> alice: Hello"),
            (Event::Channel { from: n("alice"), text }, ">>> [Channel_Message alice: Hello]"),
        ];
        for (event, line) in cases {
            assert_eq!(event.to_string(), line);
        }
    }

    #[test]
    fn a_move_to_another_node_is_one_line_naming_both() {
        let from: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let to: SocketAddr = "[::1]:4001".parse().expect("addr");
        assert_eq!(
            Event::ServerMoved { from, to }.to_string(),
            ">>> [Server 127.0.0.1:4000 not responding: moving to [::1]:4001.]"
        );
    }

    #[test]
    fn a_refused_server_key_names_the_server_and_both_keys_then_exits() {
        let (shown, pinned) = (PublicKey::from([0xab; 32]), PublicKey::from([0xcd; 32]));
        let server: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let line = Event::ServerKeyRefused { server, shown, pinned }.to_string();
        assert_eq!(
            line,
            format!(
                ">>> [The server at 127.0.0.1:5000 shows key {}, not its pinned key {}: not connecting.]\n>>> [Exiting]",
                "ab".repeat(32),
                "cd".repeat(32)
            )
        );
    }

    #[test]
    fn stored_messages_carry_their_timestamp() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
        let local = at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string();
        let text = Text::new("Welcome to Channel").expect("text");
        let m = StoredMessage {
            id: chat_proto::MsgId(1),
            from: n("carol"),
            origin: Origin::Channel,
            at,
            body: text.into(),
        };
        assert_eq!(
            Event::Stored(m.clone()).to_string(),
            format!(">>> Channel_Message carol: {local} Welcome to Channel")
        );
        let m = StoredMessage { origin: Origin::Direct, ..m };
        assert_eq!(Event::Stored(m).to_string(), format!(">>> carol: {local} Welcome to Channel"));
    }

    #[test]
    fn list_shows_one_row_per_client() {
        let row = |name: &str, port, online| ClientRow {
            lan: None,
            name: n(name),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            online,
            key: None,
        };
        let table = Table { version: 1, clients: vec![row("alice", 5001, true), row("bo", 5002, false)] };
        let shown = Event::List(Some(table)).to_string();
        let rows: Vec<Vec<&str>> = shown.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows,
            [[">>>", "alice", "127.0.0.1", "5001", "online"], [">>>", "bo", "127.0.0.1", "5002", "offline"]]
        );
        assert_eq!(Event::List(None).to_string(), ">>> [The client table is empty.]");
    }
}
