//! The channel: fan-out, ACK windows, probes and storage for the gone.

use super::*;

fn send_all(f: &mut Fixture, text: &str) -> (MsgId, Vec<(u16, Datagram)>) {
    let id = f.id();
    let d = f.channel_send(id, "alice", text);
    (id, f.recv(ALICE, d))
}

fn three_online() -> Fixture {
    Fixture::online(&[("alice", ALICE), ("bob", BOB), ("carol", CAROL)])
}

fn channel_ids(out: &[(u16, Datagram)]) -> Vec<(u16, MsgId)> {
    out.iter().filter_map(|(p, d)| if let Datagram::Channel { id, .. } = d { Some((*p, *id)) } else { None }).collect()
}

#[test]
fn acks_the_sender_and_reaches_everyone_else_once() {
    let mut f = three_online();
    let (id, out) = send_all(&mut f, "hello all");
    assert!(out.contains(&(ALICE, Datagram::Ack { id })));
    let sent = channel_ids(&out);
    assert_eq!(sent.iter().map(|(p, _)| *p).collect::<Vec<_>>().len(), 2);
    assert!(sent.iter().all(|(p, _)| *p != ALICE), "not to the sender");
    for (p, cid) in sent {
        f.recv(p, Datagram::ChannelAck { id: cid });
    }
    assert!(f.at(2000).is_empty(), "all ACKed: nothing more to send");
    let dup = f.channel_send(id, "alice", "hello all");
    assert_eq!(f.recv(ALICE, dup), vec![(ALICE, Datagram::Ack { id })], "a retransmission is not relayed again");
}

#[test]
fn stores_at_once_for_offline_clients() {
    let mut f = three_online();
    f.dereg("carol", CAROL);
    let (_, out) = send_all(&mut f, "hi");
    assert_eq!(channel_ids(&out).len(), 1);
    assert_eq!(f.stored("carol"), vec![("alice".into(), Origin::Channel, "hi".into())]);
}

#[test]
fn a_late_ack_inside_the_window_needs_no_probe() {
    let mut f = three_online();
    let (_, out) = send_all(&mut f, "hi");
    for (p, cid) in channel_ids(&out) {
        f.at(300);
        f.recv(p, Datagram::ChannelAck { id: cid });
    }
    let later: Vec<_> = (5..=12).flat_map(|i| f.at(i * 100)).collect();
    assert!(later.iter().all(|(_, d)| !matches!(d, Datagram::Probe { .. })), "{later:?}");
    assert!(f.stored("bob").is_empty() && f.stored("carol").is_empty());
}

#[test]
fn a_recipient_that_never_acks_is_retried_probed_then_stored() {
    let mut f = three_online();
    let (_, out) = send_all(&mut f, "hi");
    let ids = channel_ids(&out);
    let (_, carol_id) = ids.iter().find(|(p, _)| *p == CAROL).copied().expect("carol");
    let (_, bob_id) = ids.iter().find(|(p, _)| *p == BOB).copied().expect("bob");
    f.recv(CAROL, Datagram::ChannelAck { id: carol_id });
    f.recv(CAROL, Datagram::ChannelAck { id: carol_id }); // a duplicate ACK changes nothing
    let resends: usize = (1..=4).map(|i| channel_ids(&f.at(i * 100)).len()).sum();
    assert_eq!(resends, 4, "bob's copy retransmitted inside the window");
    let out = f.at(500);
    assert!(out.iter().any(|d| matches!(d, (BOB, Datagram::Probe { .. }))), "{out:?}");
    let out: Vec<_> = (6..=10).flat_map(|i| f.at(i * 100)).collect();
    assert!(out.iter().any(|(p, d)| *p == ALICE && online_in(d, "bob") == Some(false)), "{out:?}");
    assert_eq!(f.stored("bob"), vec![("alice".into(), Origin::Channel, "hi".into())]);
    assert!(f.stored("carol").is_empty());
    assert!(
        !f.recv(BOB, Datagram::ChannelAck { id: bob_id }).iter().any(|(_, d)| matches!(d, Datagram::Channel { .. }))
    );
}

#[test]
fn a_recipient_that_answers_the_probe_gets_the_message_again() {
    let mut f = three_online();
    let (_, out) = send_all(&mut f, "hi");
    for (p, cid) in channel_ids(&out) {
        if p == CAROL {
            f.recv(p, Datagram::ChannelAck { id: cid });
        }
    }
    let out = f.at(500);
    let Some(&(_, Datagram::Probe { id: probe })) =
        out.iter().find(|(p, d)| *p == BOB && matches!(d, Datagram::Probe { .. }))
    else {
        panic!("{out:?}")
    };
    let out = f.recv(BOB, Datagram::ProbeAck { id: probe, name: name("bob") });
    let again = channel_ids(&out);
    assert_eq!(again.len(), 1, "sent again after the probe: {out:?}");
    f.recv(BOB, Datagram::ChannelAck { id: again[0].1 });
    assert!(f.at(3000).is_empty());
    assert!(f.stored("bob").is_empty());
}
