//! Property-based fuzzing of the client's sans-IO core: random sequences of datagrams from the
//! server and from peers, answers to what the client sent, command lines (well formed, broken
//! and arbitrary), time passing, and maybe the end of input. Whatever happens, the client does not
//! panic; everything it sends decodes, fits one datagram and goes to the server or a peer (and a
//! `register` is padded to `REGISTER_PAD_TO` bytes); every event prints as lines that start with
//! `>>> ` and hold no control character (but the tab a message may hold); and after a minute
//! with no input it has no timer left or has exited.
//!
//! Each property runs 256 cases by default. For a longer run:
//! `PROPTEST_CASES=100000 cargo test -p chat-client --test fuzz --release`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_client::{Client, Config, Entropy, Identity, Transmit, parse};
use chat_proto::{
    Body, ClientRow, Datagram, KeyPair, MAX_DATAGRAM, MAX_TEXT_BYTES, MsgId, NONCE_BYTES, Name, Origin,
    REGISTER_PAD_TO, Refusal, Sealed, Secret, StoredMessage, Table, Text, decode,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::sample::Index;

/// 256 cases, or `PROPTEST_CASES` when it is set; failures are printed, not saved to files.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const SERVER: u16 = 4000;
/// The peers' addresses: 127.0.0.1:5001 to 5006.
const PEERS: std::ops::RangeInclusive<u16> = 5001..=5006;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

// ---- what the server and peers send ----

const NAMES: [&str; 4] = ["alice", "bob", "carol", "李雷"];

fn a_name() -> impl Strategy<Value = Name> {
    prop::sample::select(NAMES.to_vec()).prop_map(name)
}

fn text_str() -> impl Strategy<Value = String> {
    let long = (prop::sample::select(vec!['x', '"', 'é']), 0..=MAX_TEXT_BYTES)
        .prop_map(|(c, n)| std::iter::repeat_n(c, n / c.len_utf8()).collect::<String>());
    prop_oneof![40 => "[\\PC\t\"\\\\]{0,24}".boxed(), 1 => long.boxed()]
}

fn text() -> impl Strategy<Value = Text> {
    text_str().prop_filter_map("a text the rules accept", |s| Text::new(s).ok())
}

/// The client's own key pair.
fn alice_key() -> KeyPair {
    KeyPair::from_secret([1; 32])
}

/// Each name's key pair, the same every time (alice's is the client's).
fn key_of(n: &Name) -> KeyPair {
    let mut bytes = [0x55; 32];
    for (i, b) in n.as_str().bytes().enumerate() {
        bytes[i % 32] ^= b;
    }
    if n.as_str() == "alice" { alice_key() } else { KeyPair::from_secret(bytes) }
}

/// A text sealed by `from`'s key for alice as message `id` (or, if `forged`, by another key).
fn sealed_for_alice(from: &Name, id: MsgId, text: &str, forged: bool) -> Sealed {
    let maker = if forged { KeyPair::from_secret([9; 32]) } else { key_of(from) };
    maker.pairwise(&alice_key().public()).seal_text([3; NONCE_BYTES], from, &name("alice"), id, text)
}

/// `who`'s ACK of alice's message `id` (or, if `forged`, one made with another key).
fn ack_from(who: &Name, id: MsgId, forged: bool) -> Sealed {
    let maker = if forged { KeyPair::from_secret([9; 32]) } else { key_of(who) };
    maker.pairwise(&alice_key().public()).seal_ack([4; NONCE_BYTES], &name("alice"), who, id)
}

/// The seed of the client's randomness: its ids count up from the first `u64` drawn from it.
const SEED: [u8; 32] = [0; 32];

/// Mostly ids just past the client's first, so that they meet the client's own.
fn msg_id() -> impl Strategy<Value = MsgId> {
    let base = Entropy::from_seed(SEED).u64();
    prop_oneof![8 => (0u64..16).prop_map(move |n| base.wrapping_add(n)), 1 => any::<u64>()].prop_map(MsgId)
}

fn version() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..12, Just(u64::MAX), any::<u64>()]
}

fn small() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..4, 1 => any::<u32>()]
}

fn refusal() -> impl Strategy<Value = Refusal> {
    prop::sample::select(Refusal::ALL.to_vec())
}

fn secret() -> impl Strategy<Value = Secret> {
    "[0-9a-f]{32}".prop_map(|s| Secret::new(s).expect("valid secret"))
}

fn table() -> impl Strategy<Value = Table> {
    let row = (a_name(), PEERS, any::<bool>(), 0u8..8).prop_map(|(name, p, online, k)| {
        // Mostly the name's own key; sometimes none (a table from before keys) or another.
        let key = match k {
            0 => None,
            1 => Some(KeyPair::from_secret([9; 32]).public()),
            _ => Some(key_of(&name).public()),
        };
        ClientRow { lan: None, name, addr: addr(p), online, key }
    });
    (version(), prop::collection::vec(row, 0..5)).prop_map(|(version, clients)| Table { version, clients })
}

/// Any instant chrono can represent: the client prints it in local time.
fn wall_time() -> impl Strategy<Value = DateTime<Utc>> {
    let (lo, hi) = (DateTime::<Utc>::MIN_UTC.timestamp(), DateTime::<Utc>::MAX_UTC.timestamp());
    prop_oneof![
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
        (lo..=hi, 0u32..1_000_000_000).prop_map(|(s, ns)| DateTime::from_timestamp(s, ns).expect("in range")),
    ]
}

fn stored_message() -> impl Strategy<Value = StoredMessage> {
    let origin = prop_oneof![Just(Origin::Direct), Just(Origin::Channel)];
    (msg_id(), a_name(), origin, wall_time(), text(), 0u8..4).prop_map(|(id, from, origin, at, text, how)| {
        // Sealed by the sender (or a forger), or in clear (as a server could write it).
        let body = match how {
            0 => Body::Text(text),
            n => {
                Body::Sealed { sealed: sealed_for_alice(&from, id, text.as_str(), n == 1), key: key_of(&from).public() }
            }
        };
        StoredMessage { id, from, origin, at, body }
    })
}

/// Every variant; those a client takes from the server or a peer weighted up.
fn datagram() -> impl Strategy<Value = Datagram> {
    use Datagram as D;
    prop_oneof![
        1 => (msg_id(), a_name(), prop::option::of(secret()))
            .prop_map(|(id, name, secret)| D::Register { lan: None, id, key: key_of(&name).public(), name, secret, pad: String::new() }),
        1 => (msg_id(), any::<u64>()).prop_map(|(id, cookie)| D::Confirm { id, cookie }),
        1 => (msg_id(), a_name(), secret()).prop_map(|(id, name, secret)| D::Dereg { id, name, secret }),
        1 => (msg_id(), msg_id(), a_name(), secret(), a_name(), text(), any::<bool>())
            .prop_map(|(id, msg, from, secret, to, text, force)| {
                let sealed = sealed_for_alice(&from, msg, text.as_str(), false);
                D::Save { id, msg, from, secret, to, sealed, force }
            }),
        1 => (msg_id(), a_name(), secret(), text()).prop_map(|(id, from, secret, text)| D::ChannelSend { id, from, secret, text }),
        1 => (msg_id(), small()).prop_map(|(id, index)| D::Fetch { id, index }),
        1 => (msg_id(), small(), msg_id()).prop_map(|(id, count, last)| D::FetchDone { id, count, last }),
        1 => version().prop_map(|version| D::TableAck { version }),
        1 => (a_name(), PEERS).prop_map(|(from, port)| D::PunchAsk { from, addr: addr(port) }),
        1 => a_name().prop_map(|from| D::Punch { from }),
        1 => (msg_id(), a_name()).prop_map(|(id, name)| D::ProbeAck { id, name }),
        1 => msg_id().prop_map(|id| D::ChannelAck { id }),
        4 => (msg_id(), version(), small(), secret(), any::<u64>())
            .prop_map(|(id, version, stored, secret, cookie)| D::Registered { id, version, stored, secret, cookie, keepalive_ms: 0, nodes: vec![] }),
        3 => (msg_id(), refusal()).prop_map(|(id, reason)| D::Refused { id, reason }),
        4 => msg_id().prop_map(|id| D::Ack { id }),
        2 => (msg_id(), table()).prop_filter_map("a row", |(id, table)| Some(D::Exists { id, row: table.clients.first()?.clone() })),
        1 => (table(), any::<u16>(), any::<u16>()).prop_map(|(t, page, pages)| D::TablePage { version: t.version, page, pages, clients: t.clients }),
        1 => (table(), any::<u64>()).prop_map(|(t, base)| D::TableDelta { base, version: t.version, rows: t.clients }),
        3 => (msg_id(), small(), stored_message()).prop_map(|(id, index, message)| D::Stored { id, index, message }),
        6 => table().prop_map(D::Table),
        3 => (msg_id(), a_name(), text()).prop_map(|(id, from, text)| D::Channel { id, from, text }),
        3 => msg_id().prop_map(|id| D::Probe { id }),
        5 => (msg_id(), a_name(), a_name(), text(), any::<bool>())
            .prop_map(|(id, from, to, text, forged)| D::Chat { id, sealed: sealed_for_alice(&from, id, text.as_str(), forged), from, to }),
        3 => (msg_id(), a_name(), any::<bool>()).prop_map(|(id, who, forged)| D::ChatAck { id, proof: ack_from(&who, id, forged) }),
        2 => (msg_id(), a_name(), a_name(), text(), any::<bool>())
            .prop_map(|(id, from, to, text, forged)| D::RelayChat { id, sealed: sealed_for_alice(&from, id, text.as_str(), forged), from, to }),
        2 => (msg_id(), a_name(), a_name(), any::<bool>())
            .prop_map(|(id, from, to, forged)| D::RelayAck { id, proof: ack_from(&from, id, forged), from, to }),
    ]
}

// ---- what the user types ----

/// Well-formed commands, mostly sends.
fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (a_name(), text_str()).prop_map(|(n, t)| format!("send {n} {t}")),
        3 => text_str().prop_map(|t| format!("send_all {t}")),
        1 => prop::sample::select(vec!["dereg alice", "reg alice", "list", "help"]).prop_map(str::to_string),
    ]
}

/// Commands; lines made of the command words, names and texts, joined loosely; anything at all.
fn line() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec!["send", "send_all", "dereg", "reg", "list", "help", "quit", "exit", "sned"]);
    let sep = prop::sample::select(vec!["", " ", "  ", "\t", " \u{a0}"]);
    let arg = prop_oneof![
        4 => prop::sample::select(NAMES.to_vec()).prop_map(str::to_string),
        1 => "[\\PC]{0,40}",
        1 => ".{0,12}",
    ];
    let end = prop::sample::select(vec!["", "\n", "\r\n", " "]);
    let shaped =
        (word, sep.clone(), arg, sep, text_str(), end).prop_map(|(w, s1, a, s2, t, e)| format!("{w}{s1}{a}{s2}{t}{e}"));
    let over_long = (prop::sample::select(vec!["send bob ", "send_all "]), MAX_TEXT_BYTES - 2..MAX_TEXT_BYTES + 4)
        .prop_map(|(cmd, n)| format!("{cmd}{}", "\"".repeat(n)));
    prop_oneof![
        12 => command(),
        6 => shaped,
        2 => any::<String>(),
        2 => "[\\PC\\pC]{0,24}",
        1 => over_long,
        1 => Just(String::new()),
    ]
}

// ---- the script ----

/// One thing that happens to the client.
#[derive(Clone, Debug)]
enum Step {
    /// A datagram arrives from the server.
    FromServer(Datagram),
    /// A datagram arrives from a peer at 127.0.0.1:`port`.
    FromPeer { port: u16, d: Datagram },
    /// The server or a peer answers one of the client's recent datagrams, the one `pick` picks.
    Answer { pick: Index, answer: Answer },
    /// The user enters a line.
    Line(String),
    /// Time passes and timers fire.
    Wait { ms: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    let answer =
        (any::<Index>(), any::<u8>(), msg_id(), version(), 0u32..12, refusal(), table(), wall_time(), secret())
            .prop_map(|(pick, how, id, version, stored, reason, table, at, secret)| Step::Answer {
                pick,
                answer: Answer { how, id, version, stored, reason, table, at, secret },
            });
    prop_oneof![
        6 => datagram().prop_map(Step::FromServer),
        3 => (PEERS, datagram()).prop_map(|(port, d)| Step::FromPeer { port, d }),
        8 => answer,
        6 => line().prop_map(Step::Line),
        5 => prop_oneof![0u64..200, 0u64..=2000].prop_map(|ms| Step::Wait { ms }),
    ]
}

/// How many of the client's latest datagrams `Answer` chooses from.
const LOG: usize = 32;

struct Harness {
    client: Client,
    now: Instant,
    sent: Vec<(SocketAddr, Datagram)>,
}

impl Harness {
    fn new(secret: Option<Secret>) -> Result<Self, TestCaseError> {
        let now = Instant::now();
        let mut client = Client::new(
            Config::default(),
            name("alice"),
            addr(SERVER),
            Identity::new(KeyPair::from_secret([1; 32]), secret),
            Entropy::from_seed(SEED),
        );
        client.start(now);
        let mut h = Self { client, now, sent: Vec::new() };
        h.drain()?;
        Ok(h)
    }

    fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::FromServer(d) => self.client.handle_datagram(self.now, addr(SERVER), d),
            Step::FromPeer { port, d } => self.client.handle_datagram(self.now, addr(port), d),
            Step::Answer { pick, answer } => {
                if !self.sent.is_empty() {
                    let (to, d) = pick.get(&self.sent).clone();
                    if let Some(reply) = answer.to(&d) {
                        self.client.handle_datagram(self.now, to, reply);
                    }
                }
            }
            // As the driver does: the line goes to the core, which explains it in its turn if
            // it does not parse.
            Step::Line(line) => self.client.handle_line(self.now, &line),
            Step::Wait { ms } => {
                self.now += Duration::from_millis(ms);
                self.client.handle_timeout(self.now);
            }
        }
        self.drain()
    }

    /// Takes everything the client queued and checks it.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(Transmit { to, bytes }) = self.client.poll_transmit() {
            prop_assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes to {to}", bytes.len());
            prop_assert!(to.port() == SERVER || PEERS.contains(&to.port()), "sent to {to}");
            let d = decode(&bytes);
            prop_assert!(d.is_ok(), "the client sent what does not decode: {d:?}");
            if let Ok(Datagram::Register { .. }) = d {
                prop_assert!(bytes.len() >= REGISTER_PAD_TO, "a register of {} bytes", bytes.len());
            }
            self.sent.push((to, d.expect("checked")));
            if self.sent.len() > LOG {
                self.sent.remove(0);
            }
        }
        // As the driver does: a new secret is kept.
        while self.client.poll_secret().is_some() {}
        while let Some(event) = self.client.poll_event() {
            let shown = event.to_string();
            for line in shown.split('\n') {
                prop_assert!(line.starts_with(">>> "), "line {line:?} of {event:?}");
            }
            let bad = shown.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t');
            prop_assert!(bad.is_none(), "control character {bad:?} in {shown:?}");
        }
        Ok(())
    }

    fn exited(&self) -> bool {
        self.client.poll_exit().is_some()
    }

    /// No input for a minute: the client wakes whenever it asked to, as the driver does, and at
    /// the end has no timer left, or has exited.
    fn fall_quiet(&mut self) -> Result<(), TestCaseError> {
        let end = self.now + Duration::from_secs(60);
        for _ in 0..100_000 {
            match self.client.poll_timeout() {
                Some(at) if at <= end && !self.exited() => {
                    self.now = self.now.max(at);
                    self.client.handle_timeout(self.now);
                    self.drain()?;
                }
                _ => break,
            }
        }
        let left = self.client.poll_timeout().map(|at| at.saturating_duration_since(self.now));
        prop_assert!(self.exited() || left.is_none(), "a timer is still set after a quiet minute (due in {left:?})");
        Ok(())
    }
}

/// The parts of an answer a step chose; `how` picks which answer.
#[derive(Debug, Clone)]
struct Answer {
    how: u8,
    id: MsgId,
    version: u64,
    stored: u32,
    reason: Refusal,
    table: Table,
    at: DateTime<Utc>,
    secret: Secret,
}

impl Answer {
    /// What the server or a peer answers to `d`, as the real ones do (or a refusal).
    fn to(self, d: &Datagram) -> Option<Datagram> {
        let Self { how, id: fresh, version, stored, reason, table, at, secret } = self;
        let refuse = |id| Datagram::Refused { id, reason };
        Some(match *d {
            Datagram::Register { id, .. } if how % 16 == 0 => refuse(id),
            // The cookie a server hands out is the same for every registration from one address.
            Datagram::Register { id, .. } => Datagram::Registered {
                id,
                version,
                stored: stored % 3,
                secret,
                cookie: 7,
                keepalive_ms: 0,
                nodes: vec![],
            },
            Datagram::Confirm { id, cookie: 7 } if how % 8 != 7 => Datagram::Ack { id },
            Datagram::Save { id, .. } if how % 4 == 0 => refuse(id),
            Datagram::Save { id, .. } if how % 4 == 1 && !table.clients.is_empty() => {
                Datagram::Exists { id, row: table.clients[0].clone() }
            }
            Datagram::Dereg { id, .. } | Datagram::Save { id, .. } | Datagram::FetchDone { id, .. } if how % 8 == 7 => {
                refuse(id)
            }
            Datagram::Dereg { id, .. } | Datagram::Save { id, .. } | Datagram::FetchDone { id, .. } => {
                Datagram::Ack { id }
            }
            Datagram::ChannelSend { id, .. } if how % 4 == 0 => refuse(id),
            Datagram::ChannelSend { id, .. } => Datagram::Ack { id },
            Datagram::Fetch { id, index } => {
                let origin = if how % 2 == 0 { Origin::Direct } else { Origin::Channel };
                let text = format!("stored {index}");
                let bob = name("bob");
                let body = match origin {
                    Origin::Channel => Body::Text(Text::new(text).expect("valid text")),
                    Origin::Direct => {
                        Body::Sealed { sealed: sealed_for_alice(&bob, fresh, &text, false), key: key_of(&bob).public() }
                    }
                };
                let message = StoredMessage { id: fresh, from: bob, origin, at, body };
                Datagram::Stored { id, index, message }
            }
            Datagram::Chat { id, ref to, .. } => Datagram::ChatAck { id, proof: ack_from(to, id, how % 8 == 3) },
            Datagram::TableAck { .. } => Datagram::Table(table),
            _ => return None,
        })
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_input_never_breaks_the_client(
        secret in prop::option::of(secret()),
        steps in prop::collection::vec(step(), 1..200),
        end_input in any::<bool>(),
    ) {
        let mut h = Harness::new(secret)?;
        for step in steps {
            if h.exited() {
                break;
            }
            h.run(step)?;
        }
        // Input ends (Ctrl+D, the end of a script), or the user just stops typing.
        if end_input && !h.exited() {
            h.client.handle_end_of_input(h.now);
            h.drain()?;
        }
        h.fall_quiet()?;
    }

    /// What the user is told about a line that did not parse prints cleanly: no control
    /// character from the line reaches the terminal.
    #[test]
    fn a_bad_line_is_explained_without_control_characters(line in line()) {
        if let Err(e) = parse(&line) {
            let shown = e.to_string();
            let bad = shown.chars().find(|c| c.is_control());
            prop_assert!(bad.is_none(), "control character {:?} in {:?}", bad, shown);
        }
    }
}
