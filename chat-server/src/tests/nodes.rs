//! The other live nodes (SPEC 13): told at registration and when they change, and the `alive`
//! that answers a keepalive.

use super::*;

const NODE_B: u16 = 4001;
const NODE_C: u16 = 4002;

#[test]
fn registered_carries_the_other_live_nodes_and_a_change_goes_to_each_online_client_once() {
    let mut f = Fixture::online(&[("alice", ALICE)]);
    let (b, c) = (addr(NODE_B), addr(NODE_C));
    f.server.set_nodes(f.now, vec![b, c]);
    assert_eq!(f.drain(), [(ALICE, Datagram::Nodes { nodes: vec![b, c] })], "alice is told once");
    f.server.set_nodes(f.now, vec![b, c, b]);
    assert!(f.drain().is_empty(), "the same set: nothing to tell");
    let id = f.id();
    let out = f.recv(BOB, f.reg(id, "bob"));
    assert!(matches!(&out[..], [(BOB, Datagram::Registered { nodes, .. })] if *nodes == [b, c]), "{out:?}");
    // Bob is not online until he confirms: only alice hears of the change.
    f.server.set_nodes(f.now, vec![c]);
    assert_eq!(f.drain(), [(ALICE, Datagram::Nodes { nodes: vec![c] })]);
    f.server.set_nodes(f.now, vec![]);
    assert_eq!(f.drain(), [(ALICE, Datagram::Nodes { nodes: vec![] })], "no other node left");
}

#[test]
fn a_single_server_lists_no_nodes() {
    let mut f = Fixture::new();
    let id = f.id();
    let out = f.recv(ALICE, f.reg(id, "alice"));
    assert!(matches!(&out[..], [(ALICE, Datagram::Registered { nodes, .. })] if nodes.is_empty()), "{out:?}");
}

#[test]
fn at_most_max_nodes_are_kept() {
    let mut f = Fixture::online(&[("alice", ALICE)]);
    let many: Vec<SocketAddr> = (0..20).map(|i| addr(4100 + i)).collect();
    f.server.set_nodes(f.now, many.clone());
    assert_eq!(f.server.nodes(), many[..chat_proto::MAX_NODES]);
}

#[test]
fn a_keepalive_from_an_online_client_is_answered_alive_and_one_from_elsewhere_is_not() {
    let mut f = Fixture::online(&[("alice", ALICE)]);
    assert_eq!(f.recv(ALICE, Datagram::Keepalive), [(ALICE, Datagram::Alive)]);
    let out = f.recv(CAROL, Datagram::Keepalive);
    assert!(out.iter().all(|(_, d)| *d != Datagram::Alive), "nobody is online there: {out:?}");
    // Offline after dereg: a keepalive is told the table (as before), not `alive`.
    f.dereg("alice", ALICE);
    let out = f.recv(ALICE, Datagram::Keepalive);
    assert!(out.iter().all(|(_, d)| *d != Datagram::Alive), "{out:?}");
}

#[test]
fn a_node_that_does_not_follow_the_shared_store_answers_no_keepalive_until_it_does_again() {
    let mut f = Fixture::online(&[("alice", ALICE)]);
    f.server.set_following(false);
    let out = f.recv(ALICE, Datagram::Keepalive);
    assert!(out.iter().all(|(_, d)| *d != Datagram::Alive), "adrift, it claims nothing: {out:?}");
    f.server.set_following(false);
    assert!(f.recv(ALICE, Datagram::Keepalive).is_empty(), "still adrift");
    f.server.set_following(true);
    assert_eq!(f.recv(ALICE, Datagram::Keepalive), [(ALICE, Datagram::Alive)], "following again");
}
