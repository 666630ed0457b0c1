//! [`Cluster`]: the client table several nodes share, the nodes' heartbeats, and the messages
//! between nodes, in PostgreSQL (the tables of schema version 2).
//!
//! A node joins with its address (a row in `nodes`), writes the rows it changed and its
//! messages to other nodes in one transaction each time ([`SharedTable::write`]), and follows
//! the others on a connection of its own: `LISTEN chatapp` wakes it, and it reads every row
//! changed after the last version it saw (so nothing is missed after a lost connection: it
//! reconnects and reads on from there) and the messages for it. Every heartbeat it also
//! reads the live nodes and removes those whose heartbeat stopped, marking their clients
//! offline in the same transaction.
//!
//! This module owns those tables' SQL; what a row or a message means is chat-server's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_proto::KeyPair;
use chat_server::cluster::{ClusterEvent, NodeId, PeerMsg, SavedRow, SharedError, SharedRow, SharedTable};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::db::{Db, DbError, deepest};

/// The channel every node listens on.
const CHANNEL: &str = "chatapp";

/// How often a node beats and looks at the others, and when one counts as dead.
#[derive(Debug, Clone, Copy)]
pub struct ClusterConfig {
    /// How often this node writes its heartbeat (and reads the live nodes).
    pub heartbeat: Duration,
    /// A node whose heartbeat is older is dead: removed, its clients marked offline.
    pub dead_after: Duration,
}

impl Default for ClusterConfig {
    /// A heartbeat a second; dead after five.
    fn default() -> Self {
        Self { heartbeat: Duration::from_secs(1), dead_after: Duration::from_secs(5) }
    }
}

/// This node's membership of the cluster: [`SharedTable`] for the server's driver.
pub struct Cluster {
    db: Db,
    node: NodeId,
    events: mpsc::UnboundedReceiver<ClusterEvent>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

/// The identity the nodes share: the one in the database, or `local` put there first if
/// there is none yet (the first node's).
///
/// # Errors
/// [`DbError::Query`] when it cannot be read or written; [`DbError::Identity`] when the one
/// in the database is damaged.
pub fn shared_identity(db: &Db, local: &KeyPair) -> Result<KeyPair, DbError> {
    let url = db.url().to_owned();
    let text = local.to_file_text();
    let stored: String = db.run(move |pool| async move {
        let query = |op: &'static str| {
            let url = url.clone();
            move |source| DbError::Query { url, op, source }
        };
        let client = pool.get().await.map_err(|e| DbError::Unreachable { url: url.clone(), reason: deepest(&e) })?;
        client
            .execute("INSERT INTO server_identity (key_file) VALUES ($1) ON CONFLICT DO NOTHING", &[&text])
            .await
            .map_err(query("keep the server identity"))?;
        let row = client
            .query_one("SELECT key_file FROM server_identity", &[])
            .await
            .map_err(query("read the server identity"))?;
        row.try_get::<_, String>(0).map_err(query("read the server identity"))
    })??;
    KeyPair::from_file_text(&stored).map_err(|e| DbError::Identity(e.to_string()))
}

impl Cluster {
    /// Joins the cluster as a node that clients reach at `addr`, and starts following the
    /// others.
    ///
    /// # Errors
    /// [`DbError`] when the node cannot be entered.
    pub fn join(db: Db, addr: SocketAddr, cfg: ClusterConfig) -> Result<Self, DbError> {
        let url = db.url().to_owned();
        let addr_text = addr.to_string();
        let node: i64 = db.run(move |pool| async move {
            let client =
                pool.get().await.map_err(|e| DbError::Unreachable { url: url.clone(), reason: deepest(&e) })?;
            let row = client
                .query_one("INSERT INTO nodes (addr) VALUES ($1) RETURNING id", &[&addr_text])
                .await
                .map_err(|source| DbError::Query { url: url.clone(), op: "enter this node", source })?;
            row.try_get::<_, i64>(0).map_err(|source| DbError::Query { url, op: "enter this node", source })
        })??;
        let node = node.unsigned_abs();
        let (tx, events) = mpsc::unbounded_channel();
        let config = db.config().clone();
        db.spawn(move |_pool| follow(config, Follower { me: node, addr, cfg, tx }))?;
        tracing::info!(node, %addr, "joined the cluster");
        Ok(Self { db, node, events })
    }

    /// This node's number.
    pub fn node(&self) -> NodeId {
        self.node
    }
}

impl SharedTable for Cluster {
    fn load(&mut self) -> Result<Vec<SharedRow>, SharedError> {
        // The follower reads every row from version 0 on as it starts: nothing to do here.
        Ok(Vec::new())
    }

    fn write(&mut self, rows: &[SavedRow], peers: &[(NodeId, PeerMsg)]) -> Result<Vec<u64>, SharedError> {
        let me = signed(self.node);
        let rows: Vec<(String, String)> = rows
            .iter()
            .map(|r| Ok((r.name().to_string(), serde_json::to_string(r)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        let peers: Vec<(i64, String)> = peers
            .iter()
            .map(|(n, m)| Ok((signed(*n), serde_json::to_string(m)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        let versions = self.db.run(move |pool| async move {
            let mut client = pool.get().await.map_err(|e| -> SharedError { Box::new(e) })?;
            let tx = client.transaction().await?;
            let mut versions = Vec::with_capacity(rows.len());
            if !rows.is_empty() {
                let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
                let top: i64 = tx.query_one("UPDATE table_version SET version = version + $1 RETURNING version", &[&n]).await?.try_get(0)?;
                let upsert = tx
                    .prepare(
                        "INSERT INTO clients (name, home, version, data) VALUES ($1, $2, $3, $4::text::json) \
                         ON CONFLICT (name) DO UPDATE SET home = EXCLUDED.home, version = EXCLUDED.version, data = EXCLUDED.data",
                    )
                    .await?;
                for (i, (name, data)) in rows.iter().enumerate() {
                    let v = top - n + 1 + i64::try_from(i).unwrap_or(0);
                    tx.execute(&upsert, &[name, &me, &v, data]).await?;
                    versions.push(v.unsigned_abs());
                }
            }
            if !peers.is_empty() {
                let insert = tx.prepare("INSERT INTO peer_messages (to_node, from_node, body) VALUES ($1, $2, $3::text::json)").await?;
                for (to, body) in &peers {
                    tx.execute(&insert, &[to, &me, body]).await?;
                }
            }
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await?;
            tx.commit().await?;
            Ok::<_, SharedError>(versions)
        })??;
        Ok(versions)
    }

    fn events(&mut self) -> &mut mpsc::UnboundedReceiver<ClusterEvent> {
        &mut self.events
    }
}

fn signed(n: NodeId) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What the follower keeps between connections.
struct Follower {
    me: NodeId,
    addr: SocketAddr,
    cfg: ClusterConfig,
    tx: mpsc::UnboundedSender<ClusterEvent>,
}

/// Follows the other nodes until the server stops listening: connects (again after a loss,
/// every half second), listens, and reads what changed on each notification and heartbeat.
async fn follow(config: tokio_postgres::Config, f: Follower) {
    let mut state = Seen { version: 0, live: None };
    while !f.tx.is_closed() {
        match follow_once(&config, &f, &mut state).await {
            Ok(()) => return,
            Err(e) => tracing::warn!("lost the shared store's connection: {}; connecting again", deepest(&e)),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the follower has passed on.
struct Seen {
    /// The highest row version read.
    version: i64,
    /// The live nodes last passed on.
    live: Option<BTreeMap<NodeId, SocketAddr>>,
}

async fn follow_once(
    config: &tokio_postgres::Config,
    f: &Follower,
    seen: &mut Seen,
) -> Result<(), tokio_postgres::Error> {
    let (mut client, mut connection) = config.connect(NoTls).await?;
    let (wake, mut woken) = mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    let _ = wake.send(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    let result = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        let connected = Instant::now();
        let mut beat = tokio::time::interval(f.cfg.heartbeat);
        loop {
            tokio::select! {
                w = woken.recv() => if w.is_none() { return Ok(()) },
                _ = beat.tick() => {
                    // Only a node connected for a whole dead time judges the others: after an
                    // outage of the store, they need as long to beat again.
                    let judge = connected.elapsed() >= f.cfg.dead_after;
                    heartbeat(&mut client, f, seen, judge).await?;
                }
            }
            while woken.try_recv().is_ok() {}
            if catch_up(&client, f, seen).await? {
                // A row from a node this one has not seen beat yet: a node that just joined.
                live_nodes(&client, f, seen).await?;
            }
            if f.tx.is_closed() {
                return Ok(());
            }
        }
    }
    .await;
    pump.abort();
    result
}

/// Passes on the rows changed after the last version seen, and the messages for this node;
/// returns whether a row was registered at a node not known live.
async fn catch_up(
    client: &tokio_postgres::Client,
    f: &Follower,
    seen: &mut Seen,
) -> Result<bool, tokio_postgres::Error> {
    let me = signed(f.me);
    let mut stranger = false;
    loop {
        let rows = client
            .query(
                "SELECT home, version, data::text FROM clients WHERE version > $1 ORDER BY version LIMIT 4096",
                &[&seen.version],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        let mut shared = Vec::with_capacity(rows.len());
        for r in &rows {
            let (home, version, data): (Option<i64>, i64, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            seen.version = seen.version.max(version);
            match serde_json::from_str::<SavedRow>(&data) {
                Ok(row) => {
                    let home = home.filter(|h| *h != me).map(i64::unsigned_abs);
                    stranger |= home.is_some_and(|h| !seen.live.as_ref().is_some_and(|l| l.contains_key(&h)));
                    shared.push(SharedRow { row, home, version: version.unsigned_abs() });
                }
                Err(e) => tracing::warn!(version, "skipped a damaged row of the shared table: {e}"),
            }
        }
        let _ = f.tx.send(ClusterEvent::Rows(shared));
    }
    let mut msgs = client
        .query("DELETE FROM peer_messages WHERE to_node = $1 RETURNING id, from_node, body::text", &[&me])
        .await?;
    msgs.sort_by_key(|r| r.try_get::<_, i64>(0).unwrap_or_default());
    for r in &msgs {
        let (from, body): (i64, String) = (r.try_get(1)?, r.try_get(2)?);
        match serde_json::from_str::<PeerMsg>(&body) {
            Ok(msg) => {
                let _ = f.tx.send(ClusterEvent::Peer(from.unsigned_abs(), msg));
            }
            Err(e) => tracing::warn!(from, "skipped a damaged message from another node: {e}"),
        }
    }
    Ok(stranger)
}

/// Beats (entering this node again if another removed it), removes the dead nodes when this one
/// may judge, marking their clients offline, and passes on the live nodes when they changed.
async fn heartbeat(
    client: &mut tokio_postgres::Client,
    f: &Follower,
    seen: &mut Seen,
    judge: bool,
) -> Result<(), tokio_postgres::Error> {
    let me = signed(f.me);
    let dead_after = f.cfg.dead_after.as_secs_f64();
    let beaten = client.execute("UPDATE nodes SET heartbeat = now() WHERE id = $1", &[&me]).await?;
    if beaten == 0 {
        tracing::warn!(node = f.me, "this node was taken for dead: entering it again");
        let addr = f.addr.to_string();
        client
            .execute("INSERT INTO nodes (id, addr) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING", &[&me, &addr])
            .await?;
    }
    if judge {
        let tx = client.transaction().await?;
        let dead: Vec<i64> = tx
            .query("DELETE FROM nodes WHERE heartbeat < now() - make_interval(secs => $1) RETURNING id", &[&dead_after])
            .await?
            .iter()
            .filter_map(|r| r.try_get(0).ok())
            .collect();
        if !dead.is_empty() {
            let version: i64 = tx.query_one("SELECT version FROM table_version FOR UPDATE", &[]).await?.try_get(0)?;
            let names: Vec<String> = tx
                .query(
                    "SELECT name FROM clients WHERE home = ANY($1) AND (data->>'online')::boolean ORDER BY name",
                    &[&dead],
                )
                .await?
                .iter()
                .filter_map(|r| r.try_get(0).ok())
                .collect();
            let mut v = version;
            for name in &names {
                v += 1;
                tx.execute(
                    "UPDATE clients SET data = jsonb_set(data::jsonb, '{online}', 'false')::json, version = $2 WHERE name = $1",
                    &[name, &v],
                )
                .await?;
            }
            tx.execute("UPDATE table_version SET version = $1", &[&v]).await?;
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await?;
            tracing::warn!(nodes = ?dead, clients = names.len(), "nodes stopped beating: removed, their clients offline");
        }
        tx.commit().await?;
    }
    live_nodes(client, f, seen).await
}

/// Reads the other live nodes, and passes them on if they changed.
async fn live_nodes(
    client: &tokio_postgres::Client,
    f: &Follower,
    seen: &mut Seen,
) -> Result<(), tokio_postgres::Error> {
    let (me, dead_after) = (signed(f.me), f.cfg.dead_after.as_secs_f64());
    let live: BTreeMap<NodeId, SocketAddr> = client
        .query(
            "SELECT id, addr FROM nodes WHERE id <> $1 AND heartbeat >= now() - make_interval(secs => $2)",
            &[&me, &dead_after],
        )
        .await?
        .iter()
        .filter_map(|r| {
            let (id, addr): (i64, String) = (r.try_get(0).ok()?, r.try_get(1).ok()?);
            Some((id.unsigned_abs(), addr.parse().ok()?))
        })
        .collect();
    if seen.live.as_ref() != Some(&live) {
        seen.live = Some(live.clone());
        let _ = f.tx.send(ClusterEvent::Nodes(live));
    }
    Ok(())
}
