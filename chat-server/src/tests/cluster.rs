//! Two nodes over one shared table, with the shared store played by the test: what each node
//! writes is given versions in order and handed to both, and their messages to each other are
//! carried at each `sync`.

use std::collections::BTreeMap;

use super::*;
use crate::cluster::{NodeId, PeerMsg, SharedRow};

/// What one node sent, by port.
type Sent = Vec<(u16, Datagram)>;

const NODE_A: NodeId = 1;
const NODE_B: NodeId = 2;

/// Nodes A and B, and the shared store between them.
struct Pair {
    a: Fixture,
    b: Fixture,
    /// Every row written, in version order, with the node that wrote it.
    log: Vec<(u64, NodeId, crate::cluster::SavedRow)>,
    /// What of the log each node has been handed, and what of its own table it has written.
    seen: [usize; 2],
    written: [u64; 2],
}

impl Pair {
    fn new() -> Self {
        let (a, b) = (Fixture::new(), Fixture::new());
        let written = [a.server.table_version(), b.server.table_version()];
        let mut pair = Self { a, b, log: Vec::new(), seen: [0, 0], written };
        pair.a.server.set_live_nodes(pair.a.now, BTreeMap::from([(NODE_B, addr(7002))]));
        pair.b.server.set_live_nodes(pair.b.now, BTreeMap::from([(NODE_A, addr(7001))]));
        pair
    }

    fn node(&mut self, id: NodeId) -> &mut Fixture {
        if id == NODE_A { &mut self.a } else { &mut self.b }
    }

    /// Carries what each node wrote and said to the other, until nothing is left to carry;
    /// returns what each sent meanwhile (A's, then B's).
    fn sync(&mut self) -> (Sent, Sent) {
        let mut sent = (Vec::new(), Vec::new());
        loop {
            let mut carried = false;
            for (i, id) in [NODE_A, NODE_B].into_iter().enumerate() {
                let base = self.written[i];
                let f = self.node(id);
                let rows = f.server.shared_changes(base);
                let version = f.server.table_version();
                let peers: Vec<(NodeId, PeerMsg)> = std::iter::from_fn(|| f.server.poll_peer()).collect();
                self.written[i] = version;
                for (row, base) in rows {
                    // As the store does: only over the version the change was made from.
                    let held = self.log.iter().rev().find(|(_, _, r)| r.name() == row.name()).map_or(0, |(v, _, _)| *v);
                    if held != base {
                        continue;
                    }
                    let v = self.log.len() as u64 + 1;
                    self.node(id).server.shared_as(row.name(), v);
                    self.log.push((v, id, row));
                    carried = true;
                }
                for (to, msg) in peers {
                    carried = true;
                    let f = self.node(to);
                    f.server.handle_peer(f.now, id, msg);
                    f.commit();
                }
            }
            for (i, id) in [NODE_A, NODE_B].into_iter().enumerate() {
                let news: Vec<SharedRow> = self.log[self.seen[i]..]
                    .iter()
                    .map(|(v, by, row)| SharedRow { row: row.clone(), home: (*by != id).then_some(*by), version: *v })
                    .collect();
                self.seen[i] = self.log.len();
                let f = self.node(id);
                f.server.apply_shared(news);
                f.commit();
            }
            sent.0.extend(self.a.drain());
            sent.1.extend(self.b.drain());
            if !carried {
                return sent;
            }
        }
    }

    /// alice registered at A and bob at B, each holding the table that shows both.
    fn alice_at_a_bob_at_b() -> Self {
        let mut p = Self::new();
        p.a.register("alice", ALICE);
        p.b.register("bob", BOB);
        let (to_a, to_b) = p.sync();
        p.a.ack_tables(&to_a);
        p.b.ack_tables(&to_b);
        p
    }

    /// Moves both clocks to `t0 + ms` and fires their timers, then syncs.
    fn at(&mut self, ms: u64) -> (Sent, Sent) {
        let (mut a, mut b) = (self.a.at(ms), self.b.at(ms));
        let (sa, sb) = self.sync();
        a.extend(sa);
        b.extend(sb);
        (a, b)
    }
}

#[test]
fn clients_of_two_nodes_see_one_table() {
    let mut p = Pair::new();
    p.a.register("alice", ALICE);
    p.b.register("bob", BOB);
    let (to_a, to_b) = p.sync();
    assert!(to_a.iter().any(|(port, d)| *port == ALICE && online_in(d, "bob") == Some(true)), "{to_a:?}");
    assert!(to_b.iter().any(|(port, d)| *port == BOB && online_in(d, "alice") == Some(true)), "{to_b:?}");
    assert!(to_a.iter().all(|(port, _)| *port == ALICE), "A sends only to its own clients: {to_a:?}");
}

#[test]
fn a_save_for_a_client_of_the_other_node_is_probed_by_that_node() {
    let mut p = Pair::new();
    p.a.register("alice", ALICE);
    p.b.register("bob", BOB);
    p.sync();
    let (id, out) = p.b.save(("bob", BOB), "alice", "hi");
    assert!(out.is_empty(), "B probes nothing itself: {out:?}");
    let (to_a, _) = p.sync();
    let [(ALICE, Datagram::Probe { id: probe })] = to_a[..] else { panic!("A probes alice: {to_a:?}") };
    p.a.recv(ALICE, Datagram::ProbeAck { id: probe, name: name("alice") });
    let (_, to_b) = p.sync();
    assert!(matches!(to_b[..], [(BOB, Datagram::Exists { id: got, .. })] if got == id), "{to_b:?}");
    assert!(p.b.stored("alice").is_empty() && p.a.stored("alice").is_empty());
}

#[test]
fn a_save_for_a_silent_client_of_the_other_node_is_stored_and_it_is_marked_offline() {
    let mut p = Pair::alice_at_a_bob_at_b();
    let (id, _) = p.b.save(("bob", BOB), "alice", "hi");
    p.sync();
    let (_, to_b) = p.at(600);
    assert!(to_b.contains(&(BOB, Datagram::Ack { id })), "stored and ACKed once A's probe went unanswered: {to_b:?}");
    assert!(to_b.iter().any(|(port, d)| *port == BOB && online_in(d, "alice") == Some(false)), "{to_b:?}");
    assert_eq!(p.b.stored("alice"), [("bob".into(), Origin::Direct, "hi".into())]);
}

#[test]
fn a_name_live_at_one_node_is_refused_at_the_other() {
    let mut p = Pair::new();
    p.a.register("alice", ALICE);
    p.sync();
    p.b.secrets = p.a.secrets.clone();
    let id = p.b.id();
    let out = p.b.recv(CAROL, p.b.reg(id, "alice"));
    assert!(out.is_empty(), "{out:?}");
    let (to_a, _) = p.sync();
    let [(ALICE, Datagram::Probe { id: probe })] = to_a[..] else { panic!("{to_a:?}") };
    p.a.recv(ALICE, Datagram::ProbeAck { id: probe, name: name("alice") });
    let (_, to_b) = p.sync();
    assert_eq!(to_b, [(CAROL, Datagram::Refused { id, reason: Refusal::NameTaken })]);
}

#[test]
fn the_channel_reaches_members_of_both_nodes_and_the_silent_ones_copy_is_stored_by_its_node() {
    let mut p = Pair::new();
    p.a.register("alice", ALICE);
    p.b.register("bob", BOB);
    p.b.register("carol", CAROL);
    p.sync();
    let id = p.a.id();
    let out = p.a.recv(ALICE, p.a.channel_send(id, "alice", "all"));
    assert!(out.contains(&(ALICE, Datagram::Ack { id })), "{out:?}");
    let (_, to_b) = p.sync();
    let copies: Vec<u16> =
        to_b.iter().filter(|(_, d)| matches!(d, Datagram::Channel { .. })).map(|(p, _)| *p).collect();
    assert_eq!(copies, [BOB, CAROL], "{to_b:?}");
    let Some((_, Datagram::Channel { id: cid, .. })) = to_b.first().cloned() else { panic!() };
    p.b.recv(BOB, Datagram::ChannelAck { id: cid });
    // carol takes nothing: B probes her after the window, and stores her copy.
    for ms in (100..=2000).step_by(100) {
        p.at(ms);
    }
    assert_eq!(p.b.stored("carol"), [("alice".into(), Origin::Channel, "all".into())]);
    assert!(p.b.stored("bob").is_empty() && p.a.stored("carol").is_empty());
}

#[test]
fn what_waited_on_a_node_that_died_goes_on_as_unanswered() {
    let mut p = Pair::new();
    p.a.register("alice", ALICE);
    p.b.register("bob", BOB);
    p.sync();
    let (id, _) = p.b.save(("bob", BOB), "alice", "hi");
    p.b.server.poll_peer(); // the request to A is lost with A
    p.b.server.set_live_nodes(p.b.now, BTreeMap::new());
    p.b.commit();
    assert!(p.b.drain().contains(&(BOB, Datagram::Ack { id })));
    assert_eq!(p.b.stored("alice").len(), 1);
    // A later save for a client of the dead node is stored at once.
    let (id, out) = p.b.save(("bob", BOB), "alice", "again");
    assert!(out.contains(&(BOB, Datagram::Ack { id })), "{out:?}");
}

#[test]
fn a_client_that_moves_to_the_other_node_is_taken_over_without_a_probe_and_left_by_the_first() {
    let mut p = Pair::alice_at_a_bob_at_b();
    // alice's node stops answering her; she registers at B from the same address.
    p.b.secrets = p.a.secrets.clone();
    let id = p.b.id();
    let out = p.b.recv(ALICE, p.b.reg(id, "alice"));
    assert!(matches!(out.first(), Some((ALICE, Datagram::Registered { .. }))), "no probe, no wait: {out:?}");
    let (to_a, _) = p.sync();
    assert!(to_a.iter().all(|(port, _)| *port != ALICE), "A no longer sends alice anything: {to_a:?}");
    // A's keepalive sweep leaves her alone: she is B's now.
    p.a.at(100_000);
    p.b.recv(ALICE, Datagram::Keepalive);
    let (to_a, _) = p.at(100_000);
    assert!(to_a.iter().all(|(_, d)| online_in(d, "alice") != Some(false)), "{to_a:?}");
}

#[test]
fn a_channel_copy_in_flight_at_the_old_node_does_not_mark_a_client_that_moved_offline() {
    let mut p = Pair::alice_at_a_bob_at_b();
    // bob writes to the channel: A gets the copy for alice and sends it to her.
    let id = p.b.id();
    p.b.recv(BOB, p.b.channel_send(id, "bob", "all"));
    let (to_a, _) = p.sync();
    let cid = to_a
        .iter()
        .find_map(|(port, d)| match d {
            Datagram::Channel { id, .. } if *port == ALICE => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("A delivers to alice: {to_a:?}"));
    // Her node stopped answering her before her ACK: she moves to B from the same address.
    p.b.secrets = p.a.secrets.clone();
    let rid = p.b.id();
    let out = p.b.recv(ALICE, p.b.reg(rid, "alice"));
    assert!(matches!(out.first(), Some((ALICE, Datagram::Registered { .. }))), "{out:?}");
    let (_, to_b) = p.sync();
    p.b.ack_tables(&to_b);
    // A's window for the copy ends; whatever A does, alice is B's and online there.
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    for ms in (100..=3000).step_by(100) {
        p.b.recv(ALICE, Datagram::Keepalive);
        let (a, b) = p.at(ms);
        p.b.ack_tables(&b);
        // alice, at B now, answers B as a live client does.
        for (port, d) in &b {
            match d {
                Datagram::Channel { id, .. } if *port == ALICE => {
                    p.b.recv(ALICE, Datagram::ChannelAck { id: *id });
                }
                Datagram::Probe { id } if *port == ALICE => {
                    p.b.recv(ALICE, Datagram::ProbeAck { id: *id, name: name("alice") });
                }
                _ => {}
            }
        }
        to_a.extend(a);
        to_b.extend(b);
    }
    let shown_offline: Vec<_> =
        to_a.iter().chain(&to_b).filter(|(_, d)| online_in(d, "alice") == Some(false)).collect();
    assert!(shown_offline.is_empty(), "alice, live at B, was marked offline by A: {shown_offline:?}");
    // And the copy she never ACKed reaches her where she is now.
    let got = to_b.iter().any(|(port, d)| *port == ALICE && matches!(d, Datagram::Channel { id, .. } if *id == cid));
    assert!(got, "the copy follows alice to B: {to_b:?}");
}

/// A channel copy handed to another node that dies before taking it: the node that sweeps the
/// dead one is handed its messages (see chat-pg's `Cluster`), and stores the copies of members
/// who are not its own.
#[test]
fn a_channel_copy_for_a_node_that_dies_before_taking_it_is_stored() {
    let mut p = Pair::alice_at_a_bob_at_b();
    let id = p.a.id();
    let out = p.a.recv(ALICE, p.a.channel_send(id, "alice", "all"));
    assert!(out.contains(&(ALICE, Datagram::Ack { id })), "{out:?}");
    // B dies with the copy for bob on its way to it.
    let lost: Vec<_> = std::iter::from_fn(|| p.a.server.poll_peer()).collect();
    assert!(matches!(lost[..], [(NODE_B, PeerMsg::Channel { .. })]), "{lost:?}");
    p.a.server.set_live_nodes(p.a.now, BTreeMap::new());
    p.a.commit();
    // The sweep hands A what was for B.
    for (_, msg) in lost {
        p.a.server.handle_peer(p.a.now, NODE_A, msg);
    }
    p.a.commit();
    for ms in (100..=5000).step_by(100) {
        p.a.at(ms);
    }
    assert_eq!(p.a.stored("bob"), [("alice".into(), Origin::Channel, "all".into())], "bob's copy is lost");
    assert!(p.a.drain().iter().all(|(port, _)| *port != BOB), "A sends nothing to B's client");
}

/// A padded `register` of "zoe" with mallory's key and no secret.
fn mallory_as_zoe(id: MsgId) -> Datagram {
    Datagram::Register {
        lan: None,
        id,
        name: name("zoe"),
        secret: None,
        key: key("mallory"),
        pad: " ".repeat(REGISTER_PAD_TO),
    }
}

#[test]
fn a_new_name_taken_at_both_nodes_in_one_instant_goes_to_one_key_and_the_other_client_learns_it() {
    let mut p = Pair::new();
    p.a.register("zoe", ALICE);
    // At B, before either row reached the store, another key takes "zoe" for a new name.
    let id = p.b.id();
    let out = p.b.recv(BOB, mallory_as_zoe(id));
    let Some((_, Datagram::Registered { cookie, .. })) = out.first().cloned() else { panic!("{out:?}") };
    let id = p.b.id();
    p.b.recv(BOB, Datagram::Confirm { id, cookie });
    let (to_a, to_b) = p.sync();
    // A wrote first: the name is the first key's, and B's client is told it is offline.
    assert!(to_a.iter().all(|(_, d)| online_in(d, "zoe") != Some(false)), "{to_a:?}");
    assert!(to_b.iter().any(|(port, d)| *port == BOB && online_in(d, "zoe") == Some(true)), "{to_b:?}");
    let told: Vec<_> = to_b.iter().filter(|(port, _)| *port == BOB).collect();
    assert!(!told.is_empty(), "B's client hears of it");
    // Registering again, it is refused: the name is in use by the other key.
    let id = p.b.id();
    let out = p.b.recv(BOB, mallory_as_zoe(id));
    assert_eq!(out, [(BOB, Datagram::Refused { id, reason: Refusal::NameTaken })]);
}
