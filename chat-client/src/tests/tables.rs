//! The local table: versions, pages, deltas, a lost registration, and asking for the table.

use super::*;

fn row(n: &str, port: u16, online: bool) -> ClientRow {
    ClientRow { lan: None, name: name(n), addr: addr(port), online, key: Some(key(n)) }
}

fn listed(f: &mut Fixture) -> Vec<(String, bool)> {
    f.cmd("list");
    let shown = f.events();
    shown[0]
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .map(|w| (w[1].to_owned(), w[4] == "online"))
        .collect()
}

#[test]
fn a_delta_on_top_of_the_table_applies_and_is_acked() {
    let mut f = Fixture::online(true);
    let delta =
        Datagram::TableDelta { base: 10, version: 12, rows: vec![row("bob", BOB, false), row("carl", 5003, true)] };
    f.recv(SERVER, delta);
    assert_eq!(f.events(), [">>> [Client table updated.]"]);
    assert_eq!(f.sent(), [(SERVER, Datagram::TableAck { version: 12 })]);
    assert_eq!(listed(&mut f), [("alice".into(), true), ("bob".into(), false), ("carl".into(), true)]);
    // An old delta again: nothing changes, but it is ACKed.
    f.recv(SERVER, Datagram::TableDelta { base: 10, version: 11, rows: vec![row("bob", BOB, true)] });
    assert!(f.events().is_empty());
    assert_eq!(f.sent(), [(SERVER, Datagram::TableAck { version: 11 })]);
}

#[test]
fn a_delta_from_a_version_it_does_not_have_asks_from_where_it_is() {
    let mut f = Fixture::online(true);
    f.recv(SERVER, Datagram::TableDelta { base: 11, version: 13, rows: vec![row("bob", BOB, false)] });
    assert!(f.events().is_empty(), "not applied");
    assert_eq!(f.sent(), [(SERVER, Datagram::TableAck { version: 10 })]);
}

#[test]
fn pages_make_a_table_once_all_have_come_in_any_order() {
    let mut f = Fixture::online(true);
    let page = |page, clients| Datagram::TablePage { version: 20, page, pages: 3, clients };
    f.recv(SERVER, page(2, vec![row("zed", 5009, true)]));
    f.recv(SERVER, page(0, vec![row("alice", ME, true), row("bob", BOB, true)]));
    assert!(f.events().is_empty() && f.sent().is_empty(), "not before the last page");
    f.recv(SERVER, page(1, vec![row("carl", 5003, false)]));
    assert_eq!(f.events(), [">>> [Client table updated.]"]);
    assert_eq!(f.sent(), [(SERVER, Datagram::TableAck { version: 20 })]);
    assert_eq!(listed(&mut f).len(), 4);
}

#[test]
fn an_older_table_never_replaces_a_newer_one() {
    let mut f = Fixture::online(true);
    f.recv(SERVER, Datagram::Table(table(12, true, false)));
    f.recv(SERVER, Datagram::Table(table(11, true, true)));
    f.recv(SERVER, Datagram::Table(table(12, true, false)));
    assert_eq!(f.events(), [">>> [Client table updated.]"], "only version 12, once");
    let acks: Vec<_> = f.sent().into_iter().map(|(_, d)| d).collect();
    assert_eq!(acks.len(), 3, "every table is ACKed, so the server stops resending");
    f.cmd("list");
    assert!(f.events()[0].contains("bob") && f.events().is_empty());
}

#[test]
fn listed_offline_while_online_registers_again() {
    let mut f = Fixture::online(true);
    f.recv(SERVER, Datagram::Table(table(11, false, true)));
    assert!(f.sent().iter().any(|(p, d)| *p == SERVER && matches!(d, Datagram::Register { .. })));
}

#[test]
fn a_table_without_its_row_means_a_lost_registration_only_once_it_was_shown_online() {
    let bob_only = |version| {
        let mut t = table(version, true, true);
        t.clients.retain(|r| r.name.as_str() == "bob");
        t
    };
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 10, 0);
    f.recv(SERVER, Datagram::Table(bob_only(11)));
    let sent = f.sent();
    assert!(!sent.iter().any(|(_, d)| matches!(d, Datagram::Register { .. })), "its row may be on its way: {sent:?}");
    f.recv(SERVER, Datagram::Table(table(12, true, true)));
    f.recv(SERVER, Datagram::Table(bob_only(13)));
    assert!(f.sent().iter().any(|(p, d)| *p == SERVER && matches!(d, Datagram::Register { .. })), "its row is gone");
}

#[test]
fn without_a_table_after_registering_it_asks_for_one_backing_off() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 10, 0);
    let asked: Vec<u64> = (1..=300)
        .map(|i| i * 50)
        .filter(|ms| {
            f.at(*ms);
            f.sent().contains(&(SERVER, Datagram::TableAck { version: 0 }))
        })
        .collect();
    assert_eq!(asked, [2000, 6000, 14_000], "after 2 s, then waits that double");
    f.until(30_000);
    assert!(f.sent().contains(&(SERVER, Datagram::TableAck { version: 0 })), "the fourth ask");
    f.until(120_000);
    assert!(f.sent().is_empty() && f.client.poll_timeout().is_none(), "then no more");
}

#[test]
fn once_the_table_is_there_it_stops_asking() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!() };
    f.registered(id, 10, 0);
    f.until(2000);
    f.recv(SERVER, Datagram::Table(table(10, true, true)));
    f.sent();
    f.until(60_000);
    assert!(f.sent().is_empty(), "no more asking");
}

#[test]
fn listed_offline_while_fetching_stored_messages_registers_again() {
    let (mut f, fetches) = fetching(2);
    assert_eq!(fetches.len(), 2);
    f.recv(SERVER, Datagram::Table(table(41, false, true)));
    assert!(
        f.sent().iter().any(|(p, d)| *p == SERVER && matches!(d, Datagram::Register { .. })),
        "the server marked it gone mid-fetch: waiting on would end in a give-up"
    );
}

/// The presence each table update carries, in the order the events come.
fn presences(f: &mut Fixture) -> Vec<(Vec<String>, Vec<String>)> {
    let names = |v: &[Name]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    std::iter::from_fn(|| f.client.poll_event())
        .filter_map(|e| match e {
            crate::Event::TableUpdated(p) => Some((names(&p.came), names(&p.went))),
            _ => None,
        })
        .collect()
}

#[test]
fn each_table_update_says_who_came_and_who_went_whole_tables_and_deltas() {
    let mut f = Fixture::new();
    let [(SERVER, Datagram::Register { id, .. })] = f.sent()[..] else { panic!("register first") };
    f.registered(id, 10, 0);
    f.recv(SERVER, Datagram::Table(table(10, true, false)));
    let first = (vec!["alice".to_owned()], vec!["bob".to_owned()]);
    assert_eq!(presences(&mut f), [first], "the first table counts every row");
    f.recv(SERVER, Datagram::TableDelta { base: 10, version: 11, rows: vec![row("bob", BOB, true)] });
    assert_eq!(presences(&mut f), [(vec!["bob".to_owned()], vec![])]);
    // A row sent again unchanged is no news; a new name offline is.
    let rows = vec![row("bob", BOB, true), row("carl", 5003, false)];
    f.recv(SERVER, Datagram::TableDelta { base: 11, version: 12, rows });
    assert_eq!(presences(&mut f), [(vec![], vec!["carl".to_owned()])]);
    // A whole table: bob went, carl came.
    let clients = vec![row("alice", ME, true), row("bob", BOB, false), row("carl", 5003, true)];
    f.recv(SERVER, Datagram::Table(Table { version: 13, clients }));
    assert_eq!(presences(&mut f), [(vec!["carl".to_owned()], vec!["bob".to_owned()])]);
    // Online rows that leave the table went; offline ones are no news.
    f.recv(SERVER, Datagram::Table(Table { version: 14, clients: vec![row("alice", ME, true)] }));
    assert_eq!(presences(&mut f), [(vec![], vec!["carl".to_owned()])]);
    f.recv(SERVER, Datagram::Table(Table { version: 14, clients: vec![] }));
    assert!(presences(&mut f).is_empty(), "not newer: not applied");
}
