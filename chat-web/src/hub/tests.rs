//! The hub's tests: turns counted as the core counts them, outcomes on the right message, the
//! gateway's own `list` hidden, and a snapshot that keeps everything for a reload.

use chat_client::Event;
use chat_proto::{ClientRow, Name, Table};
use chrono::{TimeZone, Utc};

use super::*;

fn n(s: &str) -> Name {
    Name::new(s).expect("name")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time")
}

fn messages(fx: &Effects) -> Vec<Message> {
    fx.updates
        .iter()
        .filter_map(|u| match u {
            Update::Message { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn each_outcome_settles_the_message_its_turn_started() {
    let mut hub = Hub::new("alice");
    let fx = hub.handle_text(t0(), "send bob one\n\nlist\nsend bob two\nsend_all all");
    assert_eq!(fx.lines, ["send bob one", "list", "send bob two", "send_all all"], "blank lines take no turn");
    let sent = messages(&fx);
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|m| m.state == State::Sending && m.outgoing && m.at == t0()));
    // Turns: 0 send one, 1 list, 2 send two, 3 send_all. The second send's outcome comes first.
    let fx = hub.handle_event(t0(), Event::Delivered { to: n("bob") }, Some(2));
    assert_eq!(messages(&fx)[0].text, "two");
    assert_eq!(messages(&fx)[0].state, State::Delivered);
    let fx = hub.handle_event(t0(), Event::NoAck { to: n("bob") }, Some(0));
    assert_eq!((messages(&fx)[0].text.as_str(), messages(&fx)[0].state), ("one", State::ToServer));
    let fx = hub.handle_event(t0(), Event::Saved, Some(0));
    assert_eq!((messages(&fx)[0].text.as_str(), messages(&fx)[0].state), ("one", State::Saved));
    let fx = hub.handle_event(t0(), Event::ChannelAcked, Some(3));
    assert_eq!((messages(&fx)[0].peer.clone(), messages(&fx)[0].state), (None, State::Delivered));
}

#[test]
fn a_send_refused_at_once_fails_with_its_line() {
    let mut hub = Hub::new("alice");
    hub.handle_text(t0(), "send zed hi");
    let fx = hub.handle_event(t0(), Event::Notice("No client named zed. Type list to see the table.".into()), Some(0));
    let m = &messages(&fx)[0];
    assert_eq!(m.state, State::Failed);
    assert_eq!(m.detail.as_deref(), Some("No client named zed. Type list to see the table."));
}

#[test]
fn a_table_update_asks_for_the_table_once_and_its_answer_is_not_a_line() {
    let mut hub = Hub::new("alice");
    let fx = hub.handle_event(t0(), Event::Welcome, None);
    assert!(fx.updates.iter().any(|u| matches!(u, Update::People { presence: Presence::Online, .. })));
    let fx = hub.handle_event(t0(), Event::TableUpdated(chat_client::Presence::default()), None);
    assert_eq!(fx.lines, ["list"]);
    assert!(
        hub.handle_event(t0(), Event::TableUpdated(chat_client::Presence::default()), None).lines.is_empty(),
        "one list covers both"
    );
    let row = |name: &str, online| ClientRow {
        name: n(name),
        addr: "127.0.0.1:5000".parse().expect("addr"),
        online,
        key: None,
        lan: None,
    };
    let table = Table { version: 2, clients: vec![row("alice", true), row("bob", false)] };
    let fx = hub.handle_event(t0(), Event::List(Some(table)), Some(0));
    assert!(!fx.updates.iter().any(|u| matches!(u, Update::Line { .. })), "the gateway's own list shows no line");
    let Some(Update::People { people, .. }) = fx.updates.last() else { panic!("people") };
    assert_eq!(people[1], Person { name: "bob".into(), online: false });
    assert_eq!(
        hub.handle_event(t0(), Event::TableUpdated(chat_client::Presence::default()), None).lines,
        ["list"],
        "asked again after the answer"
    );
}

#[test]
fn the_snapshot_keeps_lines_and_messages_for_a_reload() {
    let mut hub = Hub::new("alice");
    hub.handle_text(t0(), "send bob hi");
    hub.handle_event(t0(), Event::Chat { from: n("bob"), text: chat_proto::Text::new("yo").expect("text") }, None);
    let Update::Snapshot { me, lines, messages, .. } = hub.snapshot() else { panic!("snapshot") };
    assert_eq!(me, "alice");
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["send bob hi", ">>> bob: yo"], "the typed line, then the event's exact line");
    assert_eq!(messages.len(), 2);
    assert_eq!((messages[1].from.as_str(), messages[1].state, messages[1].outgoing), ("bob", State::Received, false));
    let json = serde_json::to_string(&hub.snapshot()).expect("json");
    assert!(json.starts_with("{\"type\":\"snapshot\""), "{json}");
    assert!(json.contains("\"at\":\"2026-11-23T14:05:09Z\""), "{json}");
}

#[test]
fn past_the_turns_kept_the_oldest_is_forgotten_and_the_newest_still_settles_its_message() {
    let mut hub = Hub::new("alice");
    let lines: Vec<String> = (0..=TURNS_KEPT).map(|i| format!("send bob m{i}")).collect();
    hub.handle_text(t0(), &lines.join("\n"));
    assert_eq!(hub.asked.len(), TURNS_KEPT, "bounded");
    assert!(!hub.asked.contains_key(&0), "the oldest turn is forgotten");
    let newest = TURNS_KEPT as u64;
    let fx = hub.handle_event(t0(), Event::Delivered { to: n("bob") }, Some(newest));
    let newest_text = format!("m{TURNS_KEPT}");
    assert_eq!((messages(&fx)[0].text.as_str(), messages(&fx)[0].state), (newest_text.as_str(), State::Delivered));
    // An outcome whose turn is forgotten settles the oldest unsettled message to bob still kept.
    let fx = hub.handle_event(t0(), Event::Delivered { to: n("bob") }, Some(0));
    let oldest_kept = format!("m{}", TURNS_KEPT + 1 - MESSAGES_KEPT);
    assert_eq!((messages(&fx)[0].text.as_str(), messages(&fx)[0].state), (oldest_kept.as_str(), State::Delivered));
}
