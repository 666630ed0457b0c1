//! No amplifier: what an unproven address may be sent.

use super::*;

fn sent_to(out: &[(u16, Datagram)], port: u16) -> usize {
    out.iter().filter(|(p, _)| *p == port).map(|(_, d)| chat_proto::encode(d).expect("encode").len()).sum()
}

#[test]
fn an_unpadded_register_from_an_unknown_address_gets_nothing() {
    let mut f = Fixture::new();
    let d = Datagram::Register {
        lan: None,
        id: MsgId(1),
        name: name("m"),
        secret: None,
        key: key("m"),
        pad: String::new(),
    };
    assert!(f.recv(CAROL, d).is_empty());
    assert!(f.server.table().clients.is_empty(), "and registers nothing");
}

#[test]
fn an_unconfirmed_address_gets_at_most_three_times_its_bytes() {
    let mut f = Fixture::new();
    for (i, who) in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"].into_iter().enumerate() {
        f.register(&format!("{who}{}", "x".repeat(30)), 6000 + i as u16);
    }
    let reg = f.reg(MsgId(77), "spoofed");
    let received = chat_proto::encode(&reg).expect("encode").len();
    let mut out = f.recv(CAROL, reg);
    for ms in (500..=4000).step_by(500) {
        out.extend(f.at(ms));
    }
    assert!(matches!(out.iter().find(|(p, _)| *p == CAROL), Some((_, Datagram::Registered { .. }))));
    assert!(!out.iter().any(|(p, d)| *p == CAROL && table_version(d).is_some()), "the table is held back");
    assert!(sent_to(&out, CAROL) <= 3 * received, "{} > 3 × {received}", sent_to(&out, CAROL));
}

#[test]
fn the_cookie_proves_the_address_and_releases_the_table() {
    let mut f = Fixture::new();
    for (i, who) in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"].into_iter().enumerate() {
        f.register(&format!("{who}{}", "x".repeat(30)), 6000 + i as u16);
    }
    let out = f.recv(CAROL, f.reg(MsgId(77), "carol"));
    let Some((_, Datagram::Registered { cookie, .. })) = out.iter().find(|(p, _)| *p == CAROL).cloned() else {
        panic!("{out:?}")
    };
    let wrong = f.recv(CAROL, Datagram::Confirm { id: MsgId(78), cookie: cookie ^ 1 });
    let refused = Datagram::Refused { id: MsgId(78), reason: Refusal::NotRegistered };
    assert_eq!(wrong, vec![(CAROL, refused)], "a wrong cookie proves nothing: the client registers again");
    let out = f.recv(CAROL, Datagram::Confirm { id: MsgId(79), cookie });
    assert!(
        out.iter().any(|(p, d)| *p == CAROL && matches!(d, Datagram::Table(t) if t.clients.len() == 13)),
        "{out:?}"
    );
    assert!(out.contains(&(CAROL, Datagram::Ack { id: MsgId(79) })));
}

#[test]
fn a_cookie_expires_after_one_to_two_minutes() {
    let mut f = Fixture::new();
    let out = f.recv(BOB, f.reg(MsgId(1), "bob"));
    let [(BOB, Datagram::Registered { cookie, .. })] = out[..] else { panic!("{out:?}") };
    f.at(121_000);
    let late = f.recv(BOB, Datagram::Confirm { id: MsgId(2), cookie });
    assert_eq!(late, vec![(BOB, Datagram::Refused { id: MsgId(2), reason: Refusal::NotRegistered })]);

    // Made late in a period, it still works early in the next.
    f.at(179_000);
    let out = f.recv(BOB, f.reg(MsgId(3), "bob"));
    let [(BOB, Datagram::Registered { cookie, .. })] = out[..] else { panic!("{out:?}") };
    f.at(181_000);
    let out = f.recv(BOB, Datagram::Confirm { id: MsgId(4), cookie });
    assert!(out.contains(&(BOB, Datagram::Ack { id: MsgId(4) })), "{out:?}");
}
