//! Every datagram ChatApp sends, in one enum, and the records they carry.

use std::fmt;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use crate::{Name, PublicKey, Sealed, Text};

/// The id of one request or message, unique per sender.
///
/// A retransmission carries the same id as the original, so a receiver can tell the two apart
/// from a new message with the same text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MsgId(pub u64);

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The proof that a client owns its name: handed out by the server at the name's first
/// registration, kept by the client, shown again at every later registration. Two secrets are
/// compared in constant time (`subtle`), so the time of a refusal tells nothing of how much of a
/// guess was right.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Secret(String);

/// Why a string is not a [`Secret`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a secret is 16 to 64 ASCII letters and digits")]
pub struct SecretError;

impl Secret {
    /// Checks the form of a secret: 16–64 ASCII letters and digits.
    ///
    /// # Errors
    /// [`SecretError`] if `s` has another form.
    pub fn new(s: impl Into<String>) -> Result<Self, SecretError> {
        let s = s.into();
        let ok = (16..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if ok { Ok(Self(s)) } else { Err(SecretError) }
    }

    /// The secret as text, to be kept in a file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl TryFrom<String> for Secret {
    type Error = SecretError;
    fn try_from(s: String) -> Result<Self, SecretError> {
        Self::new(s)
    }
}

impl From<Secret> for String {
    fn from(s: Secret) -> String {
        s.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One row of the client table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRow {
    /// The client's name.
    pub name: Name,
    /// Where the client listens: the address its datagrams come from.
    pub addr: SocketAddr,
    /// Whether the server believes the client is there.
    pub online: bool,
    /// The long-term public key the name belongs to: what its messages are sealed with and
    /// opened by. None only in a table kept from before keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PublicKey>,
    /// Where the client listens on its own network, if that differs from `addr` (it sits
    /// behind a NAT): peers behind the same public address reach it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan: Option<SocketAddr>,
}

/// The whole client table at one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Grows with every change, also across server restarts; never applied over a newer one.
    pub version: u64,
    /// Every client the server knows, online or not, sorted by name.
    pub clients: Vec<ClientRow>,
}

/// Whether a stored message was sent to one client or to the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `send <name> <message>` that found the recipient offline.
    Direct,
    /// `send_all <message>` while the recipient was offline.
    Channel,
}

/// A message the server keeps for an offline client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// The message's own id (the direct message's or the channel message's), so that a
    /// recipient that already showed it live does not show it again.
    pub id: MsgId,
    /// Who sent it.
    pub from: Name,
    /// Direct or channel.
    pub origin: Origin,
    /// When the server received it.
    pub at: DateTime<Utc>,
    /// The message: a channel message's text, or a direct message sealed for the recipient.
    /// (Records kept before sealing name it `text`.)
    #[serde(alias = "text")]
    pub body: Body,
}

/// What a stored message holds: a text travels as a string, a sealed message as an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Body {
    /// A channel message's text (the server relays the channel and can read it).
    Text(Text),
    /// A direct message sealed by the sender for the recipient, which the server cannot read,
    /// with the sender's key when the server stored it.
    Sealed {
        /// The sealed text.
        sealed: Sealed,
        /// The key the sender's name belonged to.
        key: PublicKey,
    },
}

impl From<Text> for Body {
    fn from(t: Text) -> Self {
        Self::Text(t)
    }
}

/// Why the server turned a request down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The name is online at another address that answered the server's probe.
    NameTaken,
    /// The recipient's mailbox is at its limit; nothing was stored.
    MailboxFull,
    /// The sender's name is not registered at the address the request came from.
    NotRegistered,
    /// The name is registered and the request did not show its secret.
    NotOwner,
    /// The recipient of a save is not a client the server knows.
    UnknownRecipient,
    /// The server could not make the message durable (its disk is full or failing); nothing
    /// was stored, and the request may be tried again later.
    StorageUnavailable,
}

impl Refusal {
    /// Every reason, for tests that go through them all.
    pub const ALL: [Refusal; 6] = [
        Self::NameTaken,
        Self::MailboxFull,
        Self::NotRegistered,
        Self::NotOwner,
        Self::UnknownRecipient,
        Self::StorageUnavailable,
    ];
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NameTaken => "the name is in use by another client",
            Self::MailboxFull => "the recipient's mailbox is full",
            Self::NotRegistered => "not registered with the server",
            Self::NotOwner => "the name belongs to another client",
            Self::UnknownRecipient => "no such client",
            Self::StorageUnavailable => "the server cannot store messages now",
        })
    }
}

/// One datagram: one message, request, answer or ACK.
///
/// On the wire it is a JSON object whose `type` field names the variant
/// (see `docs/PROTOCOL.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Datagram {
    // ---- client → server ----
    /// Register `name` at the address this datagram comes from (also `reg` after `dereg`).
    Register {
        /// Request id.
        id: MsgId,
        /// The name to register.
        name: Name,
        /// The name's secret, from its first registration; none the first time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<Secret>,
        /// The client's long-term public key: the name belongs to the key that first
        /// registered it.
        key: PublicKey,
        /// Where the client listens on its own network (its interface's address and port),
        /// told so that peers behind the same NAT can reach it there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lan: Option<SocketAddr>,
        /// Spaces that bring the datagram to [`crate::REGISTER_PAD_TO`] bytes, so that the
        /// server's answer to an address it cannot yet trust stays within three times what it
        /// received (no amplification).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pad: String,
    },
    /// The client got [`Datagram::Registered`] at this address: `cookie` proves it.
    Confirm {
        /// Request id.
        id: MsgId,
        /// The cookie from `registered`.
        cookie: u64,
    },
    /// Mark `name` offline (`dereg`).
    Dereg {
        /// Request id.
        id: MsgId,
        /// The name to take offline: the sender's own.
        name: Name,
        /// The name's secret: only its owner acts for it.
        secret: Secret,
    },
    /// Keep `text` for `to`, who did not answer a direct send or is offline.
    Save {
        /// Request id.
        id: MsgId,
        /// The direct message's id, kept with the stored message.
        msg: MsgId,
        /// The sender.
        from: Name,
        /// The sender's secret: only its owner acts for a name.
        secret: Secret,
        /// The recipient.
        to: Name,
        /// The message, sealed for the recipient (the same bytes as the direct attempts).
        sealed: Sealed,
        /// Store without probing: the recipient was probed alive once for this message and still
        /// did not take it directly.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// Send `text` to the channel (`send_all`).
    ChannelSend {
        /// Request id.
        id: MsgId,
        /// The sender.
        from: Name,
        /// The sender's secret: only its owner acts for a name.
        secret: Secret,
        /// The message.
        text: Text,
    },
    /// Ask for stored message number `index` (0-based) after [`Datagram::Registered`].
    Fetch {
        /// Request id.
        id: MsgId,
        /// Which stored message.
        index: u32,
    },
    /// The first `count` stored messages were received and shown: the server may delete them.
    FetchDone {
        /// Request id.
        id: MsgId,
        /// How many, from the start of the mailbox.
        count: u32,
        /// The id of message number `count - 1`: the server deletes only if that message is
        /// still where the client saw it, so a late retransmission deletes nothing new.
        last: MsgId,
    },
    /// A direct message to `to` got no ACK at once: the server asks `to` to open the way
    /// (hole punching). Unanswered.
    PunchRequest {
        /// The peer the client cannot reach.
        to: Name,
    },
    /// The client is still there: sent while online, every interval the server gave in
    /// [`Datagram::Registered`]. It also keeps the client's NAT mapping open. A server answers
    /// [`Datagram::Alive`] if the client is online at that address (an older one, nothing).
    Keepalive,
    /// The client applied the table at `version` (or a newer one).
    TableAck {
        /// The version applied.
        version: u64,
    },
    /// The answer to [`Datagram::Probe`]: `name` is here.
    ProbeAck {
        /// The probe's id.
        id: MsgId,
        /// The name of the client answering.
        name: Name,
    },
    /// The client showed channel message `id`.
    ChannelAck {
        /// The channel message's id.
        id: MsgId,
    },

    // ---- server → client ----
    /// Registration succeeded; `stored` messages wait to be fetched.
    Registered {
        /// The request's id.
        id: MsgId,
        /// The table version that shows the client online.
        version: u64,
        /// How many stored messages wait.
        stored: u32,
        /// The name's secret, to show at the next registration.
        secret: Secret,
        /// To send back in [`Datagram::Confirm`]: proves the client receives at its address.
        cookie: u64,
        /// How often, in milliseconds, the client sends [`Datagram::Keepalive`] while online
        /// (0: never, as from a server before keepalives).
        #[serde(default)]
        keepalive_ms: u64,
        /// Where the client reaches the other live nodes of the server (at most
        /// [`crate::MAX_NODES`]), in the order to try them if this one stops answering; absent
        /// on the wire when empty (a single server).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<SocketAddr>,
    },
    /// The request was turned down.
    Refused {
        /// The request's id.
        id: MsgId,
        /// Why.
        reason: Refusal,
    },
    /// The request was done: dereg, save (on disk), channel send, fetch-done.
    Ack {
        /// The request's id.
        id: MsgId,
    },
    /// The answer to a `channel_send` when the copies for some offline members could not be
    /// kept: the message went to everyone else.
    ChannelPartial {
        /// The request's id.
        id: MsgId,
        /// The members whose copy was not kept because their mailboxes are full.
        full: Vec<Name>,
        /// The members whose copy was not kept because the server's disk could not take it
        /// (absent on the wire when empty).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unstored: Vec<Name>,
    },
    /// A save was refused because the recipient answered a probe; here is its current row.
    Exists {
        /// The save request's id.
        id: MsgId,
        /// The recipient's row in the server's table.
        row: ClientRow,
    },
    /// Stored message number `index`, the answer to [`Datagram::Fetch`].
    Stored {
        /// The fetch request's id.
        id: MsgId,
        /// Which stored message.
        index: u32,
        /// The message.
        message: StoredMessage,
    },
    /// Stored message number `index` is no longer stored, the answer to [`Datagram::Fetch`]
    /// when another node of the server delivered it (and deleted it) since this one counted the
    /// mailbox: the client shows nothing for it, but counts it, so its fetch completes.
    Gone {
        /// The fetch request's id.
        id: MsgId,
        /// Which stored message.
        index: u32,
        /// Its message id (for `fetch_done`'s `last`).
        msg: MsgId,
    },
    /// The whole client table, when it fits one datagram: sent to a client that has no table
    /// yet (or one too old for a delta).
    Table(Table),
    /// One page of the whole client table, when it does not fit one datagram.
    TablePage {
        /// The table's version.
        version: u64,
        /// This page's number, from 0.
        page: u16,
        /// How many pages the table has.
        pages: u16,
        /// This page's rows.
        clients: Vec<ClientRow>,
    },
    /// What changed in the table after version `base`: applied on top of a table at `base` or
    /// newer (but older than `version`), it gives the table at `version`.
    TableDelta {
        /// The version the client last acknowledged.
        base: u64,
        /// The version this gives.
        version: u64,
        /// The rows that changed after `base`, as they are at `version`.
        rows: Vec<ClientRow>,
    },
    /// A channel message relayed by the server.
    Channel {
        /// Message id (chosen by the server).
        id: MsgId,
        /// The sender.
        from: Name,
        /// The message.
        text: Text,
    },
    /// The set of the server's other live nodes changed: where the client reaches them now
    /// (at most [`crate::MAX_NODES`]), replacing the list of [`Datagram::Registered`]. Sent once
    /// to each online client, not ACKed: the list in `registered` is the reliable copy.
    Nodes {
        /// The other live nodes, in the order to try them.
        nodes: Vec<SocketAddr>,
    },
    /// The answer to a [`Datagram::Keepalive`] from a client online at that address: the node
    /// is alive, so a client that hears nothing at all for three intervals moves to another.
    Alive,
    /// "Are you there?": the server checks that a client still answers.
    Probe {
        /// Probe id.
        id: MsgId,
    },
    /// `from`, at public address `addr`, cannot reach this client directly: send it a
    /// [`Datagram::Punch`], which opens this client's NAT towards it.
    PunchAsk {
        /// Who asked.
        from: Name,
        /// Where it is, as the server sees it.
        addr: SocketAddr,
    },

    // ---- client → server → client (relay) ----
    /// A chat that did not get through directly, sent through the server: the sender sends it
    /// to the server, which passes it unchanged to `to` if `from` is the client at the address
    /// it came from. The fields are a [`Datagram::Chat`]'s; the recipient answers with
    /// [`Datagram::RelayAck`].
    RelayChat {
        /// Message id (the chat's).
        id: MsgId,
        /// The sender.
        from: Name,
        /// The recipient.
        to: Name,
        /// The message, sealed end to end as in a chat: the server cannot read it.
        sealed: Sealed,
    },
    /// The ACK of a relayed chat, back through the server: `from` (the recipient) sends it to
    /// the server, which passes it unchanged to `to` (the sender).
    RelayAck {
        /// The chat's id.
        id: MsgId,
        /// Who ACKs: the chat's recipient.
        from: Name,
        /// Who the ACK is for: the chat's sender.
        to: Name,
        /// As in [`Datagram::ChatAck`]: made by the recipient, so the server cannot forge it.
        proof: Sealed,
    },

    // ---- client ↔ client ----
    /// Sent to a peer the server said cannot reach this client: it opens this client's NAT
    /// towards the peer, whose retransmissions then come through. A peer that gets one sends
    /// its direct messages in flight to the sender again at once.
    Punch {
        /// The sender.
        from: Name,
    },
    /// A direct message.
    Chat {
        /// Message id.
        id: MsgId,
        /// The sender.
        from: Name,
        /// The recipient: another client now at the address drops it and does not ACK.
        to: Name,
        /// The message, sealed for the recipient with the sender's key: only the recipient
        /// reads it, and it opens only if `from`'s key made it.
        sealed: Sealed,
    },
    /// The recipient showed (or had already shown) chat message `id`.
    ChatAck {
        /// The message's id.
        id: MsgId,
        /// The recipient's proof that it was the one that got it.
        proof: Sealed,
    },
}
