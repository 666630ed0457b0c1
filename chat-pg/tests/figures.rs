//! Throughput figures on this machine, run by hand (`--ignored`, in release):
//! `cargo test --release -p chat-pg --test figures -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use chat_pg::{Db, PgStore, testing};
use chat_proto::{MsgId, Name, Origin, StoredMessage, Text};
use offline_store::{Limits, Store};

const RUN: Duration = Duration::from_secs(3);

fn msg(from: &Name, i: u64) -> StoredMessage {
    StoredMessage {
        id: MsgId(i),
        from: from.clone(),
        origin: Origin::Direct,
        at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid time"),
        body: Text::new(format!("message {i} with some text in it")).expect("text").into(),
    }
}

#[test]
#[ignore = "a measurement, run by hand in release"]
fn durable_saves_per_second() {
    let test = testing::database();
    let db = Db::connect(test.url(), Duration::from_secs(5)).expect("connect");

    // One connection, one INSERT and its synchronous commit at a time.
    let (n, took) = db
        .run(|pool| async move {
            let client = pool.get().await.expect("a connection");
            let insert = client
                .prepare(
                    "INSERT INTO offline_messages (recipient, sender, id, body) VALUES ('loop', 'alice', $1, '{}')",
                )
                .await
                .expect("prepare");
            let start = Instant::now();
            let mut n = 0i64;
            while start.elapsed() < RUN {
                client.execute(&insert, &[&n]).await.expect("insert");
                n += 1;
            }
            (n, start.elapsed())
        })
        .expect("the database thread");
    println!("single connection insert+commit: {:.0}/s", n as f64 / took.as_secs_f64());

    // PgStore: 64 appenders (64 senders to 64 mailboxes) per sync batch, one transaction each.
    let mut store = PgStore::new(db, Limits::default());
    let senders: Vec<Name> = (0..64).map(|i| Name::new(format!("s{i}")).expect("name")).collect();
    let recipients: Vec<Name> = (0..64).map(|i| Name::new(format!("r{i}")).expect("name")).collect();
    for r in &recipients {
        store.usage(r).expect("learn");
    }
    let (start, mut saves, mut i) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < RUN {
        for (s, r) in senders.iter().zip(&recipients) {
            store.append(r, &msg(s, i)).expect("append");
            saves += 1;
        }
        i += 1;
        store.sync().expect("sync");
        if i % 100 == 0 {
            for r in &recipients {
                store.remove_first(r, 100).expect("keep the mailboxes under their limits");
            }
        }
    }
    println!("PgStore, 64 appends per sync: {:.0} durable saves/s", saves as f64 / start.elapsed().as_secs_f64());
}
