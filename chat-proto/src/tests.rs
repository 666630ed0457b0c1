//! Round trips for every variant, golden strings that pin the format, and rejects.

use chrono::{TimeZone, Utc};

use super::*;

fn name(s: &str) -> Name {
    Name::new(s).expect("test name")
}

fn text(s: &str) -> Text {
    Text::new(s).expect("test text")
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
        clients: vec![ClientRow { name: name("bob"), addr: "127.0.0.1:5001".parse().expect("addr"), online: true }],
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
        text: text("hi"),
        force,
    };
    vec![
        Datagram::Register { id, name: name("alice"), secret: None, pad: String::new() },
        Datagram::Register { id, name: name("alice"), secret: Some(secret()), pad: "   ".into() },
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
        Datagram::Registered { id, version: 5, stored: 2, secret: secret(), cookie: 7 },
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
            message: StoredMessage { id: MsgId(10), from: name("c"), origin: Origin::Channel, at, text: text("yo") },
        },
        Datagram::Table(table()),
        Datagram::Channel { id, from: name("a"), text: text("all") },
        Datagram::Probe { id },
        Datagram::Chat { id, from: name("a"), to: name("b"), text: text("hello there") },
        Datagram::ChatAck { id },
    ]
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
            Datagram::Register { id: MsgId(1), name: name("alice"), secret: None, pad: String::new() },
            r#"{"type":"register","id":1,"name":"alice"}"#,
        ),
        (
            Datagram::Chat { id: MsgId(2), from: name("a"), to: name("b"), text: text("hi") },
            r#"{"type":"chat","id":2,"from":"a","to":"b","text":"hi"}"#,
        ),
        (
            Datagram::Save {
                id: MsgId(3),
                msg: MsgId(8),
                from: name("a"),
                secret: secret(),
                to: name("b"),
                text: text("x"),
                force: false,
            },
            r#"{"type":"save","id":3,"msg":8,"from":"a","secret":"0123456789abcdefABCDEF","to":"b","text":"x"}"#,
        ),
        (
            Datagram::Refused { id: MsgId(4), reason: Refusal::NameTaken },
            r#"{"type":"refused","id":4,"reason":"name_taken"}"#,
        ),
        (
            Datagram::Table(table()),
            r#"{"type":"table","version":7,"clients":[{"name":"bob","addr":"127.0.0.1:5001","online":true}]}"#,
        ),
        (Datagram::ChatAck { id: MsgId(5) }, r#"{"type":"chat_ack","id":5}"#),
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
    let max = Datagram::Chat {
        id: MsgId(u64::MAX),
        from: name(&"n".repeat(32)),
        to: name(&"m".repeat(32)),
        text: text(&"x".repeat(MAX_TEXT_BYTES)),
    };
    assert!(encode(&max).expect("the largest plain message fits").len() <= MAX_DATAGRAM);
}

#[test]
fn every_datagram_with_the_largest_text_and_names_fits() {
    let text = Text::new("\"".repeat(MAX_TEXT_ESCAPED / 2)).expect("the largest escaped text");
    let long = name(&"\"".repeat(32));
    let longest_secret = Secret::new("s".repeat(64)).expect("the longest secret");
    let at = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single().expect("time")
        + chrono::Duration::nanoseconds(999_999_999);
    let id = MsgId(u64::MAX);
    let message = StoredMessage { id, from: long.clone(), origin: Origin::Channel, at, text: text.clone() };
    let all = [
        Datagram::Stored { id, index: u32::MAX, message },
        Datagram::Save {
            id,
            msg: id,
            from: long.clone(),
            secret: longest_secret.clone(),
            to: long.clone(),
            text: text.clone(),
            force: true,
        },
        Datagram::ChannelSend { id, from: long.clone(), secret: longest_secret, text: text.clone() },
        Datagram::Channel { id, from: long.clone(), text: text.clone() },
        Datagram::Chat { id, from: long.clone(), to: long, text },
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
