//! Property-based fuzzing of the wire format: [`decode`] turns any bytes into a datagram or an
//! error and never panics (random bytes, mutated valid datagrams, hostile JSON), and every valid
//! [`Datagram`] survives `encode` then `decode` unchanged.
//!
//! Each property runs 256 cases by default. For a longer run:
//! `PROPTEST_CASES=100000 cargo test -p chat-proto --test fuzz --release`

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use chat_proto::{
    Body, ClientRow, Datagram, KeyPair, MAX_DATAGRAM, MAX_TEXT_BYTES, MsgId, NONCE_BYTES, Name, Origin, ProtoError,
    PublicKey, Refusal, Sealed, Secret, StoredMessage, Table, Text, decode, encode,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

/// 256 cases, or `PROPTEST_CASES` when it is set; failures are printed, not saved to files.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// ---- valid values ----

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![
        3 => prop::sample::select(vec!["alice", "bob", "carol", "client1", "Zoë", "李雷"]).prop_map(str::to_string),
        // Any printable character but whitespace, JSON's specials included.
        3 => "[\\PC&&\\S]{1,32}",
        2 => "[\"\\\\'{}\\[\\]:,/é李🦀\u{200d}\u{feff}\u{ad}]{1,32}",
    ]
    .prop_map(|s| Name::new(s).expect("the strategy makes valid names"))
}

/// A string of at most `MAX_TEXT_BYTES` bytes.
fn cut(mut s: String) -> String {
    while s.len() > MAX_TEXT_BYTES {
        s.pop();
    }
    s
}

fn text() -> impl Strategy<Value = Text> {
    let short = prop_oneof![
        "[\\PC\t\"\\\\]{0,64}",
        prop::collection::vec(
            any::<char>().prop_map(|c| if c.is_control() && c != '\t' { '\u{fffd}' } else { c }),
            0..64
        )
        .prop_map(String::from_iter),
    ];
    // Long texts: one character repeated up to the limit (quotes and backslashes double when
    // escaped, so some of these cannot fit one datagram).
    let long = (prop::sample::select(vec!['x', '"', '\\', '\t', 'é', '€', '🦀', '\u{2028}']), 0..=MAX_TEXT_BYTES)
        .prop_map(|(c, n)| cut(std::iter::repeat_n(c, n).collect()));
    prop_oneof![8 => short, 1 => long].prop_filter_map("a text the rules accept", |s| Text::new(s).ok())
}

fn secret() -> impl Strategy<Value = Secret> {
    "[0-9a-zA-Z]{16,64}".prop_map(|s| Secret::new(s).expect("the strategy makes valid secrets"))
}

/// A register's padding: spaces, as clients send it, or anything at all.
fn pad() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), " {0,300}", ".{0,16}"]
}

fn msg_id() -> impl Strategy<Value = MsgId> {
    prop_oneof![0u64..16, any::<u64>(), Just(u64::MAX)].prop_map(MsgId)
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))),
        // No flow info: `SocketAddr`'s text form (and so its serde form) does not carry it.
        (any::<[u8; 16]>(), any::<u16>(), any::<u32>())
            .prop_map(|(ip, port, scope)| { SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, scope)) }),
    ]
}

/// Any instant chrono can represent, in whole and fractional seconds.
fn wall_time() -> impl Strategy<Value = DateTime<Utc>> {
    let (lo, hi) = (DateTime::<Utc>::MIN_UTC.timestamp(), DateTime::<Utc>::MAX_UTC.timestamp());
    (lo..=hi, prop_oneof![Just(0u32), 0u32..1_000_000_000])
        .prop_map(|(s, ns)| DateTime::from_timestamp(s, ns).expect("in chrono's range"))
}

/// Instants from year 0 to 9999, the range RFC 3339 can write.
fn ordinary_time() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_167_219_200i64..253_402_300_800, 0u32..1_000_000_000)
        .prop_map(|(s, ns)| DateTime::from_timestamp(s, ns).expect("in chrono's range"))
}

fn table() -> impl Strategy<Value = Table> {
    let row = (name(), addr(), any::<bool>(), prop::option::of(key()))
        .prop_map(|(name, addr, online, key)| ClientRow { lan: None, name, addr, online, key });
    (any::<u64>(), prop::collection::vec(row, 0..8)).prop_map(|(version, clients)| Table { version, clients })
}

fn stored_message(at: BoxedStrategy<DateTime<Utc>>) -> impl Strategy<Value = StoredMessage> {
    let origin = prop_oneof![Just(Origin::Direct), Just(Origin::Channel)];
    let body = prop_oneof![
        text().prop_map(Body::Text),
        (sealed(), key()).prop_map(|(sealed, key)| Body::Sealed { sealed, key })
    ];
    (msg_id(), name(), origin, at, body).prop_map(|(id, from, origin, at, body)| StoredMessage {
        id,
        from,
        origin,
        at,
        body,
    })
}

fn key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey::from)
}

/// Sealed texts of assorted lengths (real seals of random texts between random keys).
fn sealed() -> impl Strategy<Value = Sealed> {
    (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; NONCE_BYTES]>(), msg_id(), text()).prop_map(
        |(mine, theirs, nonce, id, text)| {
            let their = KeyPair::from_secret(theirs).public();
            let n = Name::new("a").expect("name");
            KeyPair::from_secret(mine).pairwise(&their).seal_text(nonce, &n, &n, id, text.as_str())
        },
    )
}

fn refusal() -> impl Strategy<Value = Refusal> {
    prop::sample::select(Refusal::ALL.to_vec())
}

/// Every variant, each field over its whole valid range; `at` from `at`.
fn datagram_with(at: BoxedStrategy<DateTime<Utc>>) -> impl Strategy<Value = Datagram> {
    use Datagram as D;
    prop_oneof![
        (msg_id(), name(), prop::option::of(secret()), key(), pad())
            .prop_map(|(id, name, secret, key, pad)| { D::Register { lan: None, id, name, secret, key, pad } }),
        (msg_id(), any::<u64>()).prop_map(|(id, cookie)| D::Confirm { id, cookie }),
        (msg_id(), name(), secret()).prop_map(|(id, name, secret)| D::Dereg { id, name, secret }),
        (msg_id(), msg_id(), name(), secret(), name(), sealed(), any::<bool>()).prop_map(
            |(id, msg, from, secret, to, sealed, force)| D::Save { id, msg, from, secret, to, sealed, force }
        ),
        (msg_id(), name(), secret(), text()).prop_map(|(id, from, secret, text)| D::ChannelSend {
            id,
            from,
            secret,
            text
        }),
        (msg_id(), any::<u32>()).prop_map(|(id, index)| D::Fetch { id, index }),
        (msg_id(), any::<u32>(), msg_id()).prop_map(|(id, count, last)| D::FetchDone { id, count, last }),
        any::<u64>().prop_map(|version| D::TableAck { version }),
        Just(D::Keepalive),
        name().prop_map(|to| D::PunchRequest { to }),
        (name(), addr()).prop_map(|(from, addr)| D::PunchAsk { from, addr }),
        name().prop_map(|from| D::Punch { from }),
        (msg_id(), name(), name(), sealed()).prop_map(|(id, from, to, sealed)| D::RelayChat { id, from, to, sealed }),
        (msg_id(), name(), name(), sealed()).prop_map(|(id, from, to, proof)| D::RelayAck { id, from, to, proof }),
        (msg_id(), name()).prop_map(|(id, name)| D::ProbeAck { id, name }),
        msg_id().prop_map(|id| D::ChannelAck { id }),
        (
            msg_id(),
            any::<u64>(),
            any::<u32>(),
            secret(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(addr(), 0..4)
        )
            .prop_map(|(id, version, stored, secret, cookie, keepalive_ms, nodes)| D::Registered {
                id,
                version,
                stored,
                secret,
                cookie,
                keepalive_ms,
                nodes
            }),
        prop::collection::vec(addr(), 0..4).prop_map(|nodes| D::Nodes { nodes }),
        Just(D::Alive),
        (msg_id(), refusal()).prop_map(|(id, reason)| D::Refused { id, reason }),
        msg_id().prop_map(|id| D::Ack { id }),
        (msg_id(), table())
            .prop_filter_map("a row", |(id, table)| Some(D::Exists { id, row: table.clients.first()?.clone() })),
        (table(), any::<u16>(), any::<u16>()).prop_map(|(t, page, pages)| D::TablePage {
            version: t.version,
            page,
            pages,
            clients: t.clients
        }),
        (table(), any::<u64>()).prop_map(|(t, base)| D::TableDelta { base, version: t.version, rows: t.clients }),
        (msg_id(), any::<u32>(), stored_message(at)).prop_map(|(id, index, message)| D::Stored { id, index, message }),
        table().prop_map(D::Table),
        (msg_id(), name(), text()).prop_map(|(id, from, text)| D::Channel { id, from, text }),
        msg_id().prop_map(|id| D::Probe { id }),
        (msg_id(), name(), name(), sealed()).prop_map(|(id, from, to, sealed)| D::Chat { id, from, to, sealed }),
        (msg_id(), sealed()).prop_map(|(id, proof)| D::ChatAck { id, proof }),
    ]
}

fn datagram() -> impl Strategy<Value = Datagram> {
    datagram_with(ordinary_time().boxed())
}

/// A valid datagram and its bytes (those that fit one datagram).
fn encoded() -> impl Strategy<Value = Vec<u8>> {
    datagram().prop_filter_map("too large for one datagram", |d| encode(&d).ok())
}

// ---- mutations ----

/// One change to a byte string; positions are taken modulo its length.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to JSON, to UTF-8 and to the name and text rules.
    let special = prop::sample::select(b"\"\\{}[]:,0-+eE.\x00\x1b\n\t \x7f\x80\xc3\xff".to_vec());
    let byte = prop_oneof![special, any::<u8>()];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), byte.clone()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), prop::collection::vec(byte, 1..8)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    let pos = |at: usize| if n == 0 { 0 } else { at % n };
    match m {
        Mutation::Flip { at, bit } if n > 0 => bytes[pos(*at)] ^= 1u8 << *bit,
        Mutation::Set { at, byte } if n > 0 => bytes[pos(*at)] = *byte,
        Mutation::Insert { at, bytes: new } => {
            let at = pos(*at);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let at = pos(*at);
            bytes.drain(at..(at + len).min(n));
        }
        Mutation::Duplicate { at, len } => {
            let at = pos(*at);
            let copy = bytes[at..(at + len).min(n)].to_vec();
            bytes.splice(at..at, copy);
        }
        Mutation::Truncate { at } => bytes.truncate(pos(*at)),
        Mutation::Flip { .. } | Mutation::Set { .. } => {}
    }
}

/// Whatever `decode` accepts is a datagram like any other: it encodes, and decodes back to itself.
fn check_accepted(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(d) = decode(bytes) {
        match encode(&d) {
            Ok(again) => prop_assert_eq!(decode(&again).expect("an encoded datagram decodes"), d),
            // A decoded timestamp may be written longer than it came ("…:09.1Z" → "…:09.100Z").
            Err(ProtoError::Oversized(n)) => prop_assert!(bytes.len() > MAX_DATAGRAM - 64, "grew to {n}"),
            Err(e) => prop_assert!(false, "a decoded datagram does not encode: {e}"),
        }
    }
    Ok(())
}

/// A JSON value of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Raw JSON number texts no field accepts: negative, fractional, past `u64`, or enormous.
fn bad_number() -> impl Strategy<Value = String> {
    prop_oneof![
        (i64::MIN..0).prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e400".to_string()),
        Just("-0.0".to_string()),
        Just(format!("1{}", "0".repeat(5000))),
        (0u64..1000, 1u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        // `1e0` is a float to JSON, whole or not.
        any::<f64>().prop_map(|f| format!("{f:e}")),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..512),
        1 => prop::collection::vec(any::<u8>(), 0..70_000),
        1 => prop::collection::vec(any::<u8>(), MAX_DATAGRAM - 8..MAX_DATAGRAM + 8),
    ]) {
        let result = decode(&bytes);
        if bytes.len() > MAX_DATAGRAM {
            prop_assert!(matches!(result, Err(ProtoError::Oversized(_))), "{result:?}");
        }
        check_accepted(&bytes)?;
    }

    #[test]
    fn every_valid_datagram_round_trips(d in datagram()) {
        match encode(&d) {
            Ok(bytes) => {
                prop_assert!(bytes.len() <= MAX_DATAGRAM);
                prop_assert_eq!(decode(&bytes).expect("an encoded datagram decodes"), d);
            }
            Err(ProtoError::Oversized(n)) => prop_assert!(n > MAX_DATAGRAM),
            Err(e) => prop_assert!(false, "encode failed other than oversized: {e}"),
        }
    }

    #[test]
    fn every_timestamp_chrono_can_hold_round_trips(message in stored_message(wall_time().boxed())) {
        let d = Datagram::Stored { id: MsgId(1), index: 0, message };
        let Ok(bytes) = encode(&d) else { return Ok(()) }; // a long text that cannot fit
        let back = decode(&bytes);
        prop_assert!(back.is_ok(), "{} does not decode: {:?}", String::from_utf8_lossy(&bytes), back);
        prop_assert_eq!(back.expect("checked"), d);
    }

    #[test]
    fn every_truncation_is_an_error(bytes in encoded(), cut in any::<prop::sample::Index>()) {
        let at = cut.index(bytes.len());
        prop_assert!(decode(&bytes[..at]).is_err(), "{:?}", String::from_utf8_lossy(&bytes[..at]));
        if bytes.len() <= 256 {
            for at in 0..bytes.len() {
                prop_assert!(decode(&bytes[..at]).is_err(), "{:?}", String::from_utf8_lossy(&bytes[..at]));
            }
        }
    }

    #[test]
    fn mutated_datagrams_never_panic(mut bytes in encoded(), ms in prop::collection::vec(mutation(), 1..6)) {
        for m in &ms {
            apply(&mut bytes, m);
        }
        check_accepted(&bytes)?;
    }

    #[test]
    fn fields_of_the_wrong_type_never_panic(d in datagram(), pick in any::<prop::sample::Index>(), v in json_value()) {
        let mut obj = serde_json::to_value(&d).expect("a datagram is JSON");
        let map = obj.as_object_mut().expect("a datagram is an object");
        let keys: Vec<String> = map.keys().cloned().collect();
        let key = pick.get(&keys).clone();
        map.insert(key, v);
        let bytes = serde_json::to_vec(&obj).expect("JSON");
        check_accepted(&bytes)?;
    }

    #[test]
    fn bad_numbers_are_errors(d in datagram(), pick in any::<prop::sample::Index>(), n in bad_number()) {
        let obj = serde_json::to_value(&d).expect("a datagram is JSON");
        let numeric: Vec<&String> = obj.as_object().expect("object").iter()
            .filter(|(_, v)| v.is_u64()).map(|(k, _)| k).collect();
        prop_assume!(!numeric.is_empty());
        let key = pick.get(&numeric);
        // Splice the raw number text in, past what `serde_json::Value` can hold.
        let mut rest = obj.as_object().expect("object").clone();
        rest.remove(key.as_str());
        let head = serde_json::to_string(&rest).expect("JSON");
        let json = format!("{},{}:{n}}}", &head[..head.len() - 1], json!(key));
        prop_assert!(decode(json.as_bytes()).is_err(), "{json}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow(
        depth in prop_oneof![1usize..200, Just(10_000usize), Just(60_000usize)],
        open in prop::sample::select(vec!["[", "{\"a\":"]),
        at_top in any::<bool>(),
    ) {
        let nested = open.repeat(depth);
        let json = if at_top { nested } else { format!(r#"{{"type":"chat","id":1,"from":"a","text":{nested}"#) };
        prop_assert!(decode(json.as_bytes()).is_err());
        let closed = if open == "[" { "]" } else { "}" };
        let balanced = format!(r#"{{"type":"chat","id":1,"from":"a","text":"x","extra":{}1{}}}"#,
            open.repeat(depth.min(MAX_DATAGRAM / 8)), closed.repeat(depth.min(MAX_DATAGRAM / 8)));
        check_accepted(balanced.as_bytes())?;
    }
}

#[test]
fn hostile_json_is_an_error() {
    let bad = [
        r#"{"type":"chat","id":-1,"from":"a","text":"x"}"#,
        r#"{"type":"chat","id":1.5,"from":"a","text":"x"}"#,
        r#"{"type":"chat","id":"1","from":"a","text":"x"}"#,
        r#"{"type":"chat","id":18446744073709551616,"from":"a","text":"x"}"#,
        r#"{"type":"chat","id":1e400,"from":"a","text":"x"}"#,
        r#"{"type":"chat","id":1,"from":["a"],"text":"x"}"#,
        r#"{"type":"chat","id":1,"from":"a","text":null}"#,
        r#"{"type":"chat","id":1,"from":"a","text":"x","text":"y"}"#,
        r#"{"type":"chat","id":1,"id":2,"from":"a","text":"x"}"#,
        r#"{"type":1,"id":1}"#,
        r#"{"type":"fetch","id":1,"index":4294967296}"#,
        r#"{"type":"table","version":1,"clients":[{"name":"a","addr":"nowhere","online":true}]}"#,
        r#"{"type":"table","version":1,"clients":[{"name":"a","addr":"1.2.3.4:99999","online":true}]}"#,
        r#"{"type":"stored","id":1,"index":0,"message":{"id":1,"from":"a","origin":"carrier","at":"2026-11-23T14:05:09Z","text":"x"}}"#,
        r#"{"type":"stored","id":1,"index":0,"message":{"id":1,"from":"a","origin":"direct","at":"yesterday","text":"x"}}"#,
        r#"{"type":"refused","id":1,"reason":"because"}"#,
        r#"{"type":"register","id":1,"name":"a","secret":"too-short"}"#,
        r#"{"type":"register","id":1,"name":"a","secret":"0123456789abcdef0123456789abcdef!"}"#,
        r#"{"type":"register","id":1,"name":"a","pad":7}"#,
        r#"{"type":"confirm","id":1,"cookie":-1}"#,
        r#"{"type":"registered","id":1,"version":1,"stored":0,"cookie":1}"#,
        "\u{feff}{\"type\":\"ack\",\"id\":1}",
    ];
    for json in bad {
        assert!(decode(json.as_bytes()).is_err(), "{json}");
    }
    let deep = "[".repeat(10_000);
    assert!(decode(deep.as_bytes()).is_err());
}
