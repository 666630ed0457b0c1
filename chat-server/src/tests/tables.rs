//! Table pushes: deltas, pages, retransmissions and backoff.

use super::*;

#[test]
fn a_client_that_acked_gets_only_what_changed() {
    let mut f = Fixture::new();
    f.register("alice", ALICE);
    let out = f.join("bob", BOB);
    let to_alice: Vec<_> = out.iter().filter(|(p, _)| *p == ALICE).collect();
    let [(_, Datagram::TableDelta { rows, .. })] = to_alice[..] else { panic!("a delta: {out:?}") };
    assert_eq!(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["bob"], "only bob's row");
}

fn rows_to(out: &[(u16, Datagram)], port: u16) -> Vec<Vec<String>> {
    out.iter()
        .filter(|(p, _)| *p == port)
        .filter_map(|(_, d)| match d {
            Datagram::TableDelta { rows, .. } => Some(rows.iter().map(|r| r.name.to_string()).collect()),
            _ => None,
        })
        .collect()
}

#[test]
fn changes_while_a_push_is_in_flight_go_out_together_once_it_is_acked() {
    let mut f = Fixture::online(&[("alice", ALICE)]);
    let first = f.join("bob", BOB);
    assert_eq!(rows_to(&first, ALICE), [["bob"]]);
    for (who, port) in [("carol", CAROL), ("dave", 5004)] {
        let out = f.join(who, port);
        assert_eq!(rows_to(&out, ALICE), Vec::<Vec<String>>::new(), "alice has not ACKed the last one");
    }
    let Some(version) = first.iter().find(|(p, _)| *p == ALICE).and_then(|(_, d)| table_version(d)) else { panic!() };
    let out = f.recv(ALICE, Datagram::TableAck { version });
    assert_eq!(rows_to(&out, ALICE), [["carol", "dave"]], "both changes in one delta");
}

#[test]
fn a_push_the_table_moved_past_is_retransmitted_as_the_current_one() {
    let mut f = Fixture::online(&[("alice", ALICE)]);
    f.join("bob", BOB);
    f.join("carol", CAROL);
    let out = f.at(500);
    assert_eq!(rows_to(&out, ALICE), [["bob", "carol"]], "not the stale delta with bob alone");
}

/// The rows of every table, page and delta `out` sends to `port`.
fn names_to(out: &[(u16, Datagram)], port: u16) -> Vec<String> {
    out.iter()
        .filter(|(p, _)| *p == port)
        .flat_map(|(_, d)| match d {
            Datagram::TableDelta { rows, .. } | Datagram::TablePage { clients: rows, .. } => rows.clone(),
            Datagram::Table(t) => t.clients.clone(),
            _ => Vec::new(),
        })
        .map(|r| r.name.to_string())
        .collect()
}

#[test]
fn a_change_while_the_last_retransmission_is_pending_still_goes_out() {
    let mut f = Fixture::online(&[("alice", ALICE)]);
    f.join("bob", BOB); // alice never ACKs from now on
    for ms in [500, 1500, 3500, 7500, 15_500, 16_000] {
        f.at(ms); // the last retransmission at 15.5 s; given up at 23.5 s unless ACKed
    }
    f.join("carol", CAROL);
    let later: Vec<_> = (33..=48).flat_map(|i| f.at(i * 500)).collect();
    assert!(names_to(&later, ALICE).contains(&"carol".to_owned()), "{later:?}");
}

#[test]
fn a_client_that_never_acks_costs_one_push_per_longest_backoff_while_the_table_changes() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let mut to_alice = Vec::new();
    for ms in (100..=60_000).step_by(100) {
        if ms % 2000 == 0 {
            // bob goes offline and comes back every 2 s; he ACKs, alice never does
            let out = if ms % 4000 == 0 { f.dereg("bob", BOB) } else { f.join("bob", BOB) };
            f.ack_tables(&out.iter().filter(|(p, _)| *p == BOB).cloned().collect::<Vec<_>>());
            to_alice.extend(out.into_iter().filter(|(p, _)| *p == ALICE).map(|_| ms));
        }
        to_alice.extend(f.at(ms).into_iter().filter(|(p, _)| *p == ALICE).map(|_| ms));
    }
    let late = to_alice.iter().filter(|ms| **ms > 30_000).count();
    assert!((1..=5).contains(&late), "pushes to alice in the last 30 s: {late} (at {to_alice:?})");
}

#[test]
fn a_client_restarting_at_the_same_address_gets_the_table_at_once() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.join("carol", CAROL); // on its way to bob, who crashed and never ACKs
    f.at(500);
    let out = f.join("bob", BOB);
    assert!(names_to(&out, BOB).contains(&"carol".to_owned()), "{out:?}");
}

#[test]
fn a_client_marked_offline_is_told_at_once_whatever_is_on_its_way() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.join("carol", CAROL); // bob's link is down: no ACKs, no probe answers
    f.at(500);
    f.at(1500);
    f.save(("alice", ALICE), "bob", "hi");
    let out: Vec<_> = (1..=6).flat_map(|i| f.at(1500 + i * 100)).collect();
    assert!(out.iter().any(|(p, d)| *p == BOB && online_in(d, "bob") == Some(false)), "{out:?}");
}

#[test]
fn a_whole_table_in_pages_is_resent_at_its_version_with_what_changed_after_it() {
    let mut f = Fixture::new();
    f.register_many(&(0..600u16).map(|i| (format!("{}{i:04}", "é".repeat(28)), 10_000 + i)).collect::<Vec<_>>());
    let out = f.join("dave", 5004); // never ACKed
    let versions = |out: &[(u16, Datagram)]| -> Vec<u64> {
        out.iter()
            .filter_map(|(p, d)| match d {
                Datagram::TablePage { version, .. } if *p == 5004 => Some(*version),
                _ => None,
            })
            .collect()
    };
    let first = versions(&out);
    assert!(first.len() > 1 && first.iter().all(|v| *v == first[0]), "{first:?}");
    f.join("erin", 5005);
    let again = f.at(500);
    assert_eq!(versions(&again), first, "the same pages again");
    let delta = again.iter().find_map(|(p, d)| match d {
        Datagram::TableDelta { base, rows, .. } if *p == 5004 => Some((*base, rows.clone())),
        _ => None,
    });
    let Some((base, rows)) = delta else { panic!("and a delta after them: {again:?}") };
    assert_eq!(base, first[0]);
    assert!(rows.iter().any(|r| r.name.as_str() == "erin"));
}

#[test]
fn a_client_behind_the_delta_gets_the_whole_table_again() {
    let mut f = Fixture::new();
    f.register("alice", ALICE);
    let out = f.join("bob", BOB);
    assert!(out.iter().any(|(p, d)| *p == ALICE && matches!(d, Datagram::TableDelta { .. })));
    // alice lost her table (or could not apply the delta): she says where she is.
    let out = f.recv(ALICE, Datagram::TableAck { version: 0 });
    let [(ALICE, Datagram::Table(ref t))] = out[..] else { panic!("the whole table: {out:?}") };
    assert_eq!(t.clients.len(), 2);
}

#[test]
fn a_table_too_big_for_one_datagram_goes_in_pages() {
    let mut f = Fixture::new();
    f.register_many(&(0..600u16).map(|i| (format!("{}{i:04}", "é".repeat(28)), 10_000 + i)).collect::<Vec<_>>());
    let id = f.id();
    let mut out = f.recv(CAROL, f.reg(id, "carol"));
    let Some((_, Datagram::Registered { cookie, .. })) = out.first().cloned() else { panic!() };
    out.extend(f.recv(CAROL, Datagram::Confirm { id: MsgId(5), cookie }));
    let pages: Vec<(u16, u16, usize)> = out
        .iter()
        .filter_map(|(p, d)| match d {
            Datagram::TablePage { page, pages, clients, .. } if *p == CAROL => Some((*page, *pages, clients.len())),
            _ => None,
        })
        .collect();
    assert!(pages.len() >= 2, "{pages:?}");
    assert_eq!(pages.iter().map(|p| p.2).sum::<usize>(), 601, "every row once");
    assert!(pages.iter().all(|p| p.1 as usize == pages.len()));
}
