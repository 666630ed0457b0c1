//! Several server nodes over one PostgreSQL database (issue 11): durable saves through one and
//! two nodes beside PostgreSQL's own commit rate and the file store's, and `send_all` fan-out
//! to members spread over two nodes beside one node's.
//!
//! The database server is `chat_pg::testing`'s: the one `CHATAPP_TEST_PG` names, else a private
//! PostgreSQL started for this process (fsync on, in the temporary directory, on the same file
//! system as the file store's runs); every run gets a fresh database.

use std::time::{Duration, Instant};

use chat_pg::testing;

use crate::peers::ServerHandle;
use crate::swarm::{TEXT, fanout_over, save_burst, save_record};
use crate::{Line, Scale, ms, percentile};

/// One burst of saves: the senders, the rate and the p99 of a save's round trip.
struct Burst {
    savers: usize,
    rate: f64,
    p99: Duration,
}

fn burst(nodes: &[&ServerHandle], savers: usize, each: usize) -> Burst {
    let (mut latencies, elapsed) = save_burst(nodes, savers, each, TEXT);
    Burst { savers, rate: latencies.len() as f64 / elapsed.as_secs_f64(), p99: percentile(&mut latencies, 99.0) }
}

/// `n` fresh nodes sharing a fresh database (dropped after the nodes, which are stopped first).
fn with_nodes<T>(n: usize, f: impl FnOnce(&[&ServerHandle]) -> T) -> T {
    let db = testing::database();
    let nodes: Vec<ServerHandle> = (0..n).map(|_| ServerHandle::start_pg(db.url())).collect();
    assert!(nodes.iter().all(|node| node.key == nodes[0].key), "the nodes show one key");
    let refs: Vec<&ServerHandle> = nodes.iter().collect();
    let out = f(&refs);
    drop(refs);
    drop(nodes);
    drop(db);
    out
}

/// PostgreSQL's own commit rate for the rows a save stores: one connection doing
/// `INSERT` of the same row (recipient, sender, id, the message's JSON) with its synchronous
/// commit, one after another, for `run`. Returns each commit's time.
fn commit_loop(run: Duration) -> Vec<Duration> {
    let db = testing::database();
    let body = serde_json::to_string(&save_record()).expect("record");
    let conn = chat_pg::Db::connect(db.url(), Duration::from_secs(10)).expect("connect to PostgreSQL");
    conn.run(move |pool| async move {
        let client = pool.get().await.expect("a connection");
        client.batch_execute("SET synchronous_commit = on").await.expect("synchronous commit");
        let insert = client
            .prepare("INSERT INTO offline_messages (recipient, sender, id, body) VALUES ($1, $2, $3, $4::text::json)")
            .await
            .expect("prepare");
        let mut samples = Vec::new();
        let start = Instant::now();
        let mut id = 0i64;
        while start.elapsed() < run {
            let to = format!("away{}", id % 8);
            let t = Instant::now();
            client.execute(&insert, &[&to, &"saver1", &id, &body]).await.expect("insert");
            samples.push(t.elapsed());
            id += 1;
        }
        samples
    })
    .expect("the database thread")
}

pub(crate) fn cluster(scale: &Scale) -> Vec<Line> {
    let each = scale.saves_each;
    // The baseline before and after, so that the machine's drift falls on both sides.
    let mut commits = commit_loop(scale.commit_loop);
    let files: Vec<Burst> = scale
        .cluster_savers
        .iter()
        .map(|&savers| {
            let server = ServerHandle::start();
            burst(&[&server], savers, each)
        })
        .collect();
    let one: Vec<Burst> =
        scale.cluster_savers.iter().map(|&savers| with_nodes(1, |nodes| burst(nodes, savers, each))).collect();
    let two: Vec<Burst> =
        scale.cluster_savers.iter().map(|&savers| with_nodes(2, |nodes| burst(nodes, savers, each))).collect();
    commits.extend(commit_loop(scale.commit_loop));
    let commit_rate = commits.len() as f64 / commits.iter().map(Duration::as_secs_f64).sum::<f64>();
    let commit_p99 = percentile(&mut commits, 99.0);

    let mut lines = vec![Line {
        what: "10. PostgreSQL: 1 connection, INSERT + COMMIT".into(),
        ours: format!("{commit_rate:.0} commits/s"),
        baseline: format!("p99 {}", ms(commit_p99)),
        ratio: String::new(),
        target: "",
    }];
    for (nodes, runs) in [("1 node", &one), ("2 nodes", &two)] {
        for (run, file) in runs.iter().zip(&files) {
            let senders = if run.savers == 1 { "1 sender".to_owned() } else { format!("{} senders", run.savers) };
            lines.push(Line {
                what: format!("10. saves over PG, {nodes}, {senders}"),
                ours: format!("{:.0} saves/s", run.rate),
                baseline: format!("{commit_rate:.0} commits/s 1 conn"),
                ratio: format!("{:.1}×", run.rate / commit_rate),
                target: if run.savers > 1 { "≥ 10× 1-conn commit rate" } else { "" },
            });
            lines.push(Line {
                what: format!("10. saves over PG, {nodes}, {senders}, vs files"),
                ours: format!("{:.0} saves/s", run.rate),
                baseline: format!("{:.0} saves/s file store", file.rate),
                ratio: format!("{:.2}×", run.rate / file.rate),
                target: "",
            });
            lines.push(Line {
                what: format!("10. save p99 over PG, {nodes}, {senders}"),
                ours: ms(run.p99),
                baseline: format!("{} file store", ms(file.p99)),
                ratio: format!("{:.1}×", run.p99.as_secs_f64() / file.p99.as_secs_f64()),
                target: "p99 < 10 ms",
            });
        }
    }

    let n = scale.fanout;
    let single = {
        let server = ServerHandle::start();
        fanout_over(&[&server], n)
    };
    let pg_single = with_nodes(1, |nodes| fanout_over(nodes, n));
    let pg_two = with_nodes(2, |nodes| fanout_over(nodes, n));
    let shown = |t: Option<Duration>| t.map_or("did not finish".into(), ms);
    let base = single.map_or("did not finish".into(), |t| format!("{} 1 node (files)", ms(t)));
    let ratio = |t: Option<Duration>| match (t, single) {
        (Some(t), Some(s)) => format!("{:.1}×", t.as_secs_f64() / s.as_secs_f64()),
        _ => String::new(),
    };
    lines.push(Line {
        what: format!("10. fan-out to {n} clients, 1 node over PG"),
        ours: shown(pg_single),
        baseline: base.clone(),
        ratio: ratio(pg_single),
        target: "",
    });
    lines.push(Line {
        what: format!("10. fan-out to {n} clients, 2 nodes ({} each)", n / 2),
        ours: shown(pg_two),
        baseline: base,
        ratio: ratio(pg_two),
        target: "< 50 ms",
    });
    lines
}
