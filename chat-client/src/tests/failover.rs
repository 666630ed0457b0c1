//! Moving between the server's nodes (SPEC 13): a node that stops answering is left for the
//! next one listed, with one line, a registration there at once, and what was in flight sent
//! there again; without other nodes, the client behaves as it always did.

use super::*;

const NODE_B: u16 = 4001;
const NODE_C: u16 = 4002;
const MOVED: &str = ">>> [Server 127.0.0.1:4000 not responding: moving to 127.0.0.1:4001.]";

/// Alice registered at the node at `SERVER`, which lists `nodes` and a keepalive of
/// `keepalive_ms`; her table shows bob as `bob_online`.
fn clustered(cfg: Config, nodes: &[u16], keepalive_ms: u64, bob_online: bool) -> Fixture {
    let mut f = Fixture::with(cfg);
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("register first") };
    let nodes = nodes.iter().map(|p| addr(*p)).collect();
    f.recv(
        SERVER,
        Datagram::Registered { id, version: 10, stored: 0, secret: secret(), cookie: 42, keepalive_ms, nodes },
    );
    let Some((SERVER, Datagram::Confirm { id, .. })) = f.sent().pop() else { panic!("confirm") };
    f.recv(SERVER, Datagram::Ack { id });
    f.recv(SERVER, Datagram::Table(table(10, true, bob_online)));
    f.sent();
    assert_eq!(f.events(), [">>> [Welcome, You are registered.]", ">>> [Client table updated.]"]);
    f
}

/// The node at `port` registers alice (its `register` was `id`, and it lists `nodes`) and
/// confirms her address; returns what she sent after the confirm's ACK.
fn registered_at(f: &mut Fixture, port: u16, id: MsgId, nodes: &[u16]) -> Vec<(u16, Datagram)> {
    let nodes = nodes.iter().map(|p| addr(*p)).collect();
    f.recv(
        port,
        Datagram::Registered { id, version: 11, stored: 0, secret: secret(), cookie: 43, keepalive_ms: 0, nodes },
    );
    let sent = f.sent();
    let Some(&(p, Datagram::Confirm { id, cookie: 43 })) = sent.last() else { panic!("confirm: {sent:?}") };
    assert_eq!(p, port, "confirmed where it registered");
    f.recv(port, Datagram::Ack { id });
    f.sent()
}

#[test]
fn a_save_in_flight_when_the_node_dies_is_answered_by_the_next_node_and_shown_once() {
    let mut f = clustered(Config::default(), &[NODE_B, NODE_C], 0, false);
    f.cmd("send bob hi");
    let [(SERVER, Datagram::Save { id: save, .. })] = f.sent()[..] else { panic!("a save to the server") };
    // The node dies: the save is retransmitted to it, then it is left for the next node listed.
    f.until(2950);
    assert!(f.sent().iter().all(|(p, d)| *p == SERVER && matches!(d, Datagram::Save { .. })));
    assert!(f.events().is_empty(), "not before the last retry");
    f.at(3000);
    assert_eq!(f.events(), [MOVED]);
    assert_eq!(f.client.server(), addr(NODE_B));
    let sent = f.sent();
    let [(NODE_B, Datagram::Register { id, ref secret, key, .. })] = sent[..] else { panic!("{sent:?}") };
    assert_eq!((secret.clone(), key), (Some(super::secret()), super::key("alice")), "the name's secret, its key");
    // The save waits for the registration, then goes to the new node: the same request.
    let again = registered_at(&mut f, NODE_B, id, &[SERVER, NODE_C]);
    assert!(matches!(again[..], [(NODE_B, Datagram::Save { id, .. })] if id == save), "{again:?}");
    assert_eq!(text_of(&again[0].1), "hi");
    // A late answer from the old node is no answer; the new node's is, once.
    f.recv(SERVER, Datagram::Ack { id: save });
    assert!(f.events().is_empty(), "from the old node: ignored");
    f.recv(NODE_B, Datagram::Ack { id: save });
    f.recv(NODE_B, Datagram::Ack { id: save });
    f.recv(NODE_B, Datagram::Table(table(11, true, false)));
    assert_eq!(f.events(), [">>> [Messages received by the server and saved]", ">>> [Client table updated.]"]);
    assert_eq!(f.client.poll_exit(), None);
}

#[test]
fn a_channel_send_in_flight_keeps_its_id_at_the_next_node() {
    let mut f = clustered(Config::default(), &[NODE_B], 0, true);
    f.cmd("send_all hello all");
    let [(SERVER, Datagram::ChannelSend { id: send, .. })] = f.sent()[..] else { panic!() };
    f.until(3000);
    assert_eq!(f.events(), [MOVED], "no [Server not responding.]: another node takes it");
    let [(NODE_B, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    let again = registered_at(&mut f, NODE_B, id, &[]);
    // The channel message's id is made from the request's: the same id is shown once anywhere.
    assert!(matches!(again[..], [(NODE_B, Datagram::ChannelSend { id, .. })] if id == send), "{again:?}");
    f.recv(NODE_B, Datagram::Ack { id: send });
    assert_eq!(f.events(), [">>> [Message received by Server.]"]);
}

#[test]
fn an_idle_client_moves_after_three_silent_intervals_and_not_before() {
    let mut f = clustered(Config::default(), &[NODE_B], 1_000, true);
    // Keepalives at 1 s, 2 s; the node answers the first with `alive`.
    f.until(1_000);
    assert!(f.sent().contains(&(SERVER, Datagram::Keepalive)));
    f.recv(SERVER, Datagram::Alive);
    f.until(3_950);
    assert!(f.events().is_empty(), "heard at 1 s: not silent for three intervals yet");
    // Any datagram counts as much as an `alive`.
    f.recv(SERVER, Datagram::Table(table(11, true, true)));
    assert_eq!(f.events(), [">>> [Client table updated.]"]);
    f.sent();
    f.until(6_900);
    assert!(f.events().is_empty(), "heard at 3.95 s");
    assert_eq!(f.client.server(), addr(SERVER));
    f.until(6_950);
    assert_eq!(f.events(), [">>> [Server 127.0.0.1:4000 not responding: moving to 127.0.0.1:4001.]"]);
    let sent = f.sent();
    assert!(matches!(sent[..], [(NODE_B, Datagram::Register { .. })]), "nothing more to the old node: {sent:?}");
    assert!(f.client.poll_timeout().is_some(), "the register's retry");
}

#[test]
fn a_suspended_client_does_not_take_its_own_sleep_for_the_nodes_silence() {
    let mut f = clustered(Config::default(), &[NODE_B], 1_000, true);
    f.until(500);
    // Asleep for 10 s: the first wake-up is long past every deadline.
    f.at(10_500);
    f.until(12_950);
    assert!(f.events().is_empty(), "silence counts from the wake-up");
    assert_eq!(f.client.server(), addr(SERVER));
}

#[test]
fn without_other_nodes_a_client_never_moves_and_exits_as_before() {
    let mut f = clustered(Config::default(), &[], 1_000, false);
    f.until(10_000);
    assert!(f.events().is_empty(), "silent for ten intervals: no node to move to, no move");
    f.cmd("send bob hi");
    f.until(13_000);
    assert_eq!(f.events(), [">>> [Server not responding]\n>>> [Exiting]"]);
    assert_eq!(f.client.poll_exit(), Some(1));
    assert_eq!(f.client.server(), addr(SERVER));
}

#[test]
fn when_every_node_failed_one_after_another_the_client_exits_as_before() {
    let mut f = clustered(Config::default(), &[NODE_B], 0, false);
    f.cmd("send bob hi");
    f.until(3_000);
    assert_eq!(f.events(), [MOVED]);
    // The next node does not answer its registration either: the send, held for it, ends in
    // its own line (issue 17, part 5), then the client exits as before.
    f.until(6_000);
    assert_eq!(f.events(), [">>> [Server not responding]", ">>> [Server not responding]\n>>> [Exiting]"]);
    assert_eq!(f.client.poll_exit(), Some(1));
}

#[test]
fn the_list_the_new_node_sends_replaces_the_old_one() {
    let mut f = clustered(Config::default(), &[NODE_B], 0, true);
    f.cmd("send_all one");
    f.until(3_000);
    assert_eq!(f.events(), [MOVED]);
    let [(NODE_B, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    registered_at(&mut f, NODE_B, id, &[NODE_C]);
    f.recv(NODE_B, Datagram::Nodes { nodes: vec![addr(NODE_C), addr(SERVER)] });
    // A `nodes` from another address than the server's is nobody's list.
    f.recv(SERVER, Datagram::Nodes { nodes: vec![addr(5999)] });
    f.events();
    f.cmd("send_all two");
    f.sent();
    f.until(6_000);
    assert_eq!(
        f.events(),
        [">>> [Server 127.0.0.1:4001 not responding: moving to 127.0.0.1:4002.]"],
        "the first the new node listed"
    );
}

#[test]
fn in_a_script_the_move_line_is_a_notice_and_answers_stay_in_command_order() {
    let cfg = Config { answers_in_order: true, ..Config::default() };
    let mut f = clustered(cfg, &[NODE_B], 0, false);
    f.cmd("send bob hi");
    let [(SERVER, Datagram::Save { id: save, .. })] = f.sent()[..] else { panic!() };
    f.cmd("list");
    assert!(f.events().is_empty(), "the list waits for the send's answer");
    f.until(3_000);
    assert_eq!(f.events(), [MOVED], "shown at once, before the answers it does not belong to");
    let [(NODE_B, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    registered_at(&mut f, NODE_B, id, &[]);
    f.recv(NODE_B, Datagram::Ack { id: save });
    let events = f.events();
    assert_eq!(events[0], ">>> [Messages received by the server and saved]");
    assert!(events[1].starts_with(">>> alice"), "then the list: {events:?}");
}

#[test]
fn a_dereg_in_flight_when_the_node_dies_is_done_at_the_next_node() {
    let mut f = clustered(Config::default(), &[NODE_B], 0, true);
    f.cmd("dereg alice");
    let [(SERVER, Datagram::Dereg { .. })] = f.sent()[..] else { panic!() };
    f.until(3_000);
    assert_eq!(f.events(), [MOVED]);
    let [(NODE_B, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    let again = registered_at(&mut f, NODE_B, id, &[]);
    let [(NODE_B, Datagram::Dereg { id, .. })] = again[..] else { panic!("the dereg, at the new node: {again:?}") };
    f.recv(NODE_B, Datagram::Ack { id });
    assert_eq!(f.events(), [">>> [You are Offline. Bye.]"]);
    assert_eq!(f.client.poll_exit(), None, "offline, still running");
}

/// Each node numbers its own table's versions (from its start time, one more per change), so
/// the versions of two nodes do not compare: a node started later is far ahead. A client that
/// moves to a node with lower versions must take that node's tables all the same, or its
/// table stays frozen at the dead node's last one for as long as the gap lasts.
#[test]
fn after_a_move_the_new_nodes_tables_are_taken_whatever_their_versions() {
    let mut f = clustered(Config::default(), &[NODE_B], 0, false);
    // The first node started after the second one: its versions are ahead by its head start.
    f.recv(SERVER, Datagram::Table(table(2_000_000_000, true, false)));
    assert_eq!(f.events(), [">>> [Client table updated.]"]);
    f.sent();
    f.cmd("send_all one");
    f.until(3_000);
    assert_eq!(f.events(), [MOVED]);
    let [(NODE_B, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    registered_at(&mut f, NODE_B, id, &[]);
    f.recv(NODE_B, Datagram::Table(table(11, true, true)));
    let events = f.events();
    assert!(events.contains(&">>> [Client table updated.]".to_string()), "the new node's table is taken: {events:?}");
}

/// Issue 17, part 5: the next node does not answer the registration either (a request no
/// command made), while a save waits for it: the save ends in its own line, in its turn, and
/// the client's last lines come after every command's.
#[test]
fn in_a_script_when_every_node_failed_each_command_ends_in_its_turn_before_the_exit() {
    let cfg = Config { answers_in_order: true, ..Config::default() };
    let mut f = clustered(cfg, &[NODE_B], 0, false);
    f.cmd("send bob hi");
    f.cmd("list");
    f.until(3_000);
    assert_eq!(f.events(), [MOVED]);
    f.until(6_000);
    let events = f.events();
    assert_eq!(events[0], ">>> [Server not responding]", "send bob hi: {events:?}");
    assert!(events[1].starts_with(">>> alice"), "then the list: {events:?}");
    assert_eq!(events[2..], [">>> [Server not responding]\n>>> [Exiting]"]);
    assert_eq!(f.client.poll_exit(), Some(1));
}
