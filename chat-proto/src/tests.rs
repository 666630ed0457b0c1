//! Round trips for every variant, golden strings that pin the format, and rejects.

use std::net::SocketAddr;

use chrono::{TimeZone, Utc};

use super::*;

fn name(s: &str) -> Name {
    Name::new(s).expect("test name")
}

fn text(s: &str) -> Text {
    Text::new(s).expect("test text")
}

fn key() -> PublicKey {
    KeyPair::from_secret([1; 32]).public()
}

/// A sealed text (what it says does not matter here: only its form on the wire).
fn sealed() -> Sealed {
    serde_json::from_str("\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"").expect("sealed")
}

fn secret() -> Secret {
    Secret::new("0123456789abcdefABCDEF").expect("secret")
}

#[test]
fn secrets_have_one_form_and_never_print() {
    assert!(Secret::new("short").is_err());
    assert!(Secret::new("has spaces in it here").is_err());
    assert!(Secret::new("x".repeat(65)).is_err());
    assert_eq!(format!("{:?}", secret()), "Secret(…)");
}

fn table() -> Table {
    Table {
        version: 7,
        clients: vec![ClientRow {
            lan: None,
            name: name("bob"),
            addr: "127.0.0.1:5001".parse().expect("addr"),
            online: true,
            key: Some(KeyPair::from_secret([2; 32]).public()),
        }],
    }
}

fn every_variant() -> Vec<Datagram> {
    let id = MsgId(42);
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
    let save = |force| Datagram::Save {
        id,
        msg: MsgId(9),
        from: name("a"),
        secret: secret(),
        to: name("b"),
        sealed: sealed(),
        force,
    };
    vec![
        Datagram::Register { lan: None, id, name: name("alice"), secret: None, key: key(), pad: String::new() },
        Datagram::Register {
            lan: None,
            id,
            name: name("alice"),
            secret: Some(secret()),
            key: key(),
            pad: "   ".into(),
        },
        Datagram::Confirm { id, cookie: 99 },
        Datagram::Dereg { id, name: name("alice"), secret: secret() },
        save(false),
        save(true),
        Datagram::ChannelSend { id, from: name("a"), secret: secret(), text: text("all") },
        Datagram::Fetch { id, index: 3 },
        Datagram::FetchDone { id, count: 4, last: MsgId(7) },
        Datagram::TableAck { version: 9 },
        Datagram::ProbeAck { id, name: name("b") },
        Datagram::ChannelAck { id },
        Datagram::Registered {
            id,
            version: 5,
            stored: 2,
            secret: secret(),
            cookie: 7,
            keepalive_ms: 25_000,
            nodes: vec![],
        },
        Datagram::Registered {
            id,
            version: 5,
            stored: 2,
            secret: secret(),
            cookie: 7,
            keepalive_ms: 25_000,
            nodes: vec!["10.0.0.2:4000".parse().expect("addr"), "[::1]:4001".parse().expect("addr")],
        },
        Datagram::Nodes { nodes: vec!["10.0.0.2:4000".parse().expect("addr")] },
        Datagram::Nodes { nodes: vec![] },
        Datagram::Alive,
        Datagram::Keepalive,
        Datagram::Refused { id, reason: Refusal::NameTaken },
        Datagram::Refused { id, reason: Refusal::MailboxFull },
        Datagram::Ack { id },
        Datagram::ChannelPartial { id, full: vec![name("b")], unstored: vec![] },
        Datagram::ChannelPartial { id, full: vec![], unstored: vec![name("b")] },
        Datagram::Exists { id, row: table().clients[0].clone() },
        Datagram::TablePage { version: 7, page: 1, pages: 3, clients: table().clients },
        Datagram::TableDelta { base: 6, version: 7, rows: table().clients },
        Datagram::Stored {
            id,
            index: 0,
            message: StoredMessage {
                id: MsgId(10),
                from: name("c"),
                origin: Origin::Channel,
                at,
                body: text("yo").into(),
            },
        },
        Datagram::Stored {
            id,
            index: 1,
            message: StoredMessage {
                id: MsgId(11),
                from: name("c"),
                origin: Origin::Direct,
                at,
                body: Body::Sealed { sealed: sealed(), key: key() },
            },
        },
        Datagram::Gone { id, index: 2, msg: MsgId(12) },
        Datagram::Table(table()),
        Datagram::Channel { id, from: name("a"), text: text("all") },
        Datagram::Probe { id },
        Datagram::Chat { id, from: name("a"), to: name("b"), sealed: sealed() },
        Datagram::ChatAck { id, proof: sealed() },
    ]
}

#[test]
fn a_stored_record_kept_before_sealing_still_reads() {
    let old = r#"{"id":1,"from":"a","origin":"direct","at":"2026-11-23T14:05:09Z","text":"hi"}"#;
    let m: StoredMessage = serde_json::from_str(old).expect("an old record");
    assert_eq!(m.body, Body::Text(text("hi")));
}

#[test]
fn every_variant_round_trips() {
    for d in every_variant() {
        let bytes = encode(&d).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), d);
    }
}

#[test]
fn golden_strings_pin_the_format() {
    let cases = [
        (
            Datagram::Register {
                lan: None,
                id: MsgId(1),
                name: name("alice"),
                secret: None,
                key: key(),
                pad: String::new(),
            },
            r#"{"type":"register","id":1,"name":"alice","key":"a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209"}"#,
        ),
        (
            Datagram::Chat { id: MsgId(2), from: name("a"), to: name("b"), sealed: sealed() },
            r#"{"type":"chat","id":2,"from":"a","to":"b","sealed":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
        ),
        (
            Datagram::Save {
                id: MsgId(3),
                msg: MsgId(8),
                from: name("a"),
                secret: secret(),
                to: name("b"),
                sealed: sealed(),
                force: false,
            },
            r#"{"type":"save","id":3,"msg":8,"from":"a","secret":"0123456789abcdefABCDEF","to":"b","sealed":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
        ),
        (
            Datagram::Refused { id: MsgId(4), reason: Refusal::NameTaken },
            r#"{"type":"refused","id":4,"reason":"name_taken"}"#,
        ),
        (
            Datagram::Table(table()),
            r#"{"type":"table","version":7,"clients":[{"name":"bob","addr":"127.0.0.1:5001","online":true,"key":"ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59"}]}"#,
        ),
        (
            Datagram::ChatAck { id: MsgId(5), proof: sealed() },
            r#"{"type":"chat_ack","id":5,"proof":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
        ),
        (Datagram::Keepalive, r#"{"type":"keepalive"}"#),
        (
            Datagram::Registered {
                id: MsgId(6),
                version: 7,
                stored: 0,
                secret: secret(),
                cookie: 9,
                keepalive_ms: 25_000,
                nodes: vec![],
            },
            r#"{"type":"registered","id":6,"version":7,"stored":0,"secret":"0123456789abcdefABCDEF","cookie":9,"keepalive_ms":25000}"#,
        ),
        (
            Datagram::Registered {
                id: MsgId(6),
                version: 7,
                stored: 0,
                secret: secret(),
                cookie: 9,
                keepalive_ms: 25_000,
                nodes: vec!["10.0.0.2:4000".parse().expect("addr"), "[::1]:4001".parse().expect("addr")],
            },
            r#"{"type":"registered","id":6,"version":7,"stored":0,"secret":"0123456789abcdefABCDEF","cookie":9,"keepalive_ms":25000,"nodes":["10.0.0.2:4000","[::1]:4001"]}"#,
        ),
        (
            Datagram::Nodes { nodes: vec!["10.0.0.2:4000".parse().expect("addr")] },
            r#"{"type":"nodes","nodes":["10.0.0.2:4000"]}"#,
        ),
        (Datagram::Alive, r#"{"type":"alive"}"#),
    ];
    for (d, golden) in cases {
        assert_eq!(String::from_utf8(encode(&d).expect("encode")).expect("utf8"), golden);
        assert_eq!(decode(golden.as_bytes()).expect("decode"), d);
    }
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let long = vec![b'x'; MAX_DATAGRAM + 1];
    let bad: [&[u8]; 12] = [
        b"",
        b"\xff\xfe\x00",
        b"not json",
        b"{}",
        br#"{"type":"warp","id":1}"#,
        br#"{"type":"chat","id":1,"from":"a"}"#,
        br#"{"type":"chat","id":-1,"from":"a","text":"x"}"#,
        br#"{"type":"chat","id":1,"from":"a b","text":"x"}"#,
        br#"{"type":"chat","id":1,"from":"a","text":"\u001b[2J"}"#,
        br#"{"type":"register","id":1,"name":""}"#,
        br#"{"type":"chat","id":1,"from":"a","text":"x""#,
        &long,
    ];
    for b in bad {
        assert!(decode(b).is_err(), "{:?}", String::from_utf8_lossy(&b[..b.len().min(60)]));
    }
}

#[test]
fn oversized_text_is_refused_on_both_sides() {
    let json = format!(r#"{{"type":"chat","id":1,"from":"a","text":"{}"}}"#, "x".repeat(MAX_TEXT_BYTES + 1));
    assert!(matches!(decode(json.as_bytes()), Err(ProtoError::Malformed(_))));
    let (from, to, id) = (name(&"n".repeat(32)), name(&"m".repeat(32)), MsgId(u64::MAX));
    let pair = KeyPair::from_secret([1; 32]).pairwise(&key());
    let sealed = pair.seal_text([0; NONCE_BYTES], &from, &to, id, &"x".repeat(MAX_TEXT_BYTES));
    let max = Datagram::Chat { id, from, to, sealed };
    assert!(encode(&max).expect("the largest sealed message fits").len() <= MAX_DATAGRAM);
}

#[test]
fn every_datagram_with_the_largest_text_and_names_fits() {
    let text = Text::new("\"".repeat(MAX_TEXT_ESCAPED / 2)).expect("the largest escaped text");
    let long = name(&"\"".repeat(32));
    let longest_secret = Secret::new("s".repeat(64)).expect("the longest secret");
    let at = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single().expect("time")
        + chrono::Duration::nanoseconds(999_999_999);
    let id = MsgId(u64::MAX);
    let message = StoredMessage { id, from: long.clone(), origin: Origin::Channel, at, body: text.clone().into() };
    // The longest names in bytes, and the longest text a sealed message may hold.
    let wide = name(&"\u{10348}".repeat(MAX_NAME_CHARS));
    let pair = KeyPair::from_secret([1; 32]).pairwise(&key());
    let sealed = pair.seal_text([0; NONCE_BYTES], &wide, &wide, id, &"x".repeat(MAX_TEXT_BYTES));
    assert!(sealed.len() <= MAX_TEXT_BYTES + SEAL_OVERHEAD && sealed.len() > MAX_TEXT_BYTES + SEAL_OVERHEAD - 8);
    let direct = StoredMessage {
        id,
        from: wide.clone(),
        origin: Origin::Direct,
        at,
        body: Body::Sealed { sealed: sealed.clone(), key: key() },
    };
    let all = [
        Datagram::Stored { id, index: u32::MAX, message },
        Datagram::Stored { id, index: u32::MAX, message: direct },
        Datagram::Save {
            id,
            msg: id,
            from: long.clone(),
            secret: longest_secret.clone(),
            to: wide.clone(),
            sealed: sealed.clone(),
            force: true,
        },
        Datagram::ChannelSend { id, from: long.clone(), secret: longest_secret, text: text.clone() },
        Datagram::Channel { id, from: long.clone(), text: text.clone() },
        Datagram::Chat { id, from: wide.clone(), to: wide, sealed },
    ];
    for d in all {
        assert!(encode(&d).is_ok(), "{:?} does not fit", std::mem::discriminant(&d));
    }
}

#[test]
fn refusal_all_names_every_reason_once() {
    // A new reason fails to compile here until it is numbered, and then this test until `ALL`
    // has it.
    let number = |r: Refusal| match r {
        Refusal::NameTaken => 0,
        Refusal::MailboxFull => 1,
        Refusal::NotRegistered => 2,
        Refusal::NotOwner => 3,
        Refusal::UnknownRecipient => 4,
        Refusal::StorageUnavailable => 5,
    };
    assert_eq!(Refusal::ALL.map(number), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn secrets_are_equal_only_when_every_byte_is() {
    let a = Secret::new("0123456789abcdef0123456789abcdef").expect("secret");
    let same = Secret::new("0123456789abcdef0123456789abcdef").expect("secret");
    let last_differs = Secret::new("0123456789abcdef0123456789abcdeg").expect("secret");
    let shorter = Secret::new("0123456789abcdef").expect("secret");
    assert_eq!(a, same);
    assert_ne!(a, last_differs);
    assert_ne!(a, shorter, "a prefix is not the secret");
}

#[test]
fn a_registered_from_an_older_server_decodes_with_no_nodes() {
    let old = r#"{"type":"registered","id":6,"version":7,"stored":0,"secret":"0123456789abcdefABCDEF","cookie":9}"#;
    let Datagram::Registered { nodes, keepalive_ms, .. } = decode(old.as_bytes()).expect("an older server's") else {
        panic!("a registered")
    };
    assert!(nodes.is_empty() && keepalive_ms == 0);
}

#[test]
fn alive_is_no_larger_than_the_keepalive_it_answers() {
    let alive = encode(&Datagram::Alive).expect("encode").len();
    assert!(alive <= encode(&Datagram::Keepalive).expect("encode").len(), "{alive} bytes");
}

#[test]
fn a_registered_with_the_most_nodes_fits_the_budget_of_an_unproven_address() {
    // The longest address there is, scope id and all.
    let longest: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535".parse().expect("addr");
    let d = Datagram::Registered {
        id: MsgId(u64::MAX),
        version: u64::MAX,
        stored: u32::MAX,
        secret: Secret::new("s".repeat(64)).expect("the longest secret"),
        cookie: u64::MAX,
        keepalive_ms: u64::MAX,
        nodes: vec![longest; MAX_NODES],
    };
    let len = encode(&d).expect("encode").len();
    assert!(len <= 3 * REGISTER_PAD_TO, "{len} bytes to an address that sent {REGISTER_PAD_TO}");
}
