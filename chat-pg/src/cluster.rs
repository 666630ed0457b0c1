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

/// The other live nodes: not this one, nor one at this node's own address (this node's former
/// self, restarted on the same address: dead, whatever its heartbeat says, and a node never
/// lists itself to its clients).
const LIVE_NODES: &str = "SELECT id, addr FROM nodes \
    WHERE id <> $1 AND addr <> $3 AND heartbeat >= now() - make_interval(secs => $2)";

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
        // The live nodes before this one serves: until it knows them, a client of another
        // node would count as one of a node that is gone, whose name anyone may take.
        let (me, dead_after, url) = (signed(node), cfg.dead_after.as_secs_f64(), db.url().to_owned());
        let here = addr.to_string();
        let live = db.run(move |pool| async move {
            let client =
                pool.get().await.map_err(|e| DbError::Unreachable { url: url.clone(), reason: deepest(&e) })?;
            let rows = client.query(LIVE_NODES, &[&me, &dead_after, &here]).await.map_err(|source| DbError::Query {
                url,
                op: "read the live nodes",
                source,
            })?;
            Ok::<_, DbError>(live_from(&rows))
        })??;
        let _ = tx.send(ClusterEvent::Nodes(live));
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
        // Read here, before the node answers anyone: the follower reads the same rows again as
        // it starts, but a node that served first would take a known name for a new one. The
        // rows it passes on again are no newer than these, and ignored.
        let me = signed(self.node);
        let rows = self.db.run(move |pool| async move {
            let client = pool.get().await.map_err(|e| -> SharedError { Box::new(e) })?;
            let rows = client.query("SELECT home, version, data::text FROM clients ORDER BY version", &[]).await?;
            let mut shared = Vec::with_capacity(rows.len());
            for r in &rows {
                let (home, version, data): (Option<i64>, i64, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                match serde_json::from_str::<SavedRow>(&data) {
                    Ok(row) => {
                        let home = home.filter(|h| *h != me).map(i64::unsigned_abs);
                        shared.push(SharedRow { row, home, version: version.unsigned_abs() });
                    }
                    Err(e) => tracing::warn!(version, "skipped a damaged row of the shared table: {e}"),
                }
            }
            Ok::<_, SharedError>(shared)
        })??;
        Ok(rows)
    }

    fn write(
        &mut self,
        rows: &[(SavedRow, u64)],
        peers: &[(NodeId, PeerMsg)],
    ) -> Result<Vec<Option<u64>>, SharedError> {
        let me = signed(self.node);
        let rows: Vec<(String, String, i64)> = rows
            .iter()
            .map(|(r, base)| Ok((r.name().to_string(), serde_json::to_string(r)?, signed(*base))))
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
                         ON CONFLICT (name) DO UPDATE SET home = EXCLUDED.home, version = EXCLUDED.version, data = EXCLUDED.data \
                         WHERE clients.version = $5 RETURNING version",
                    )
                    .await?;
                // Each row only over the state this node's change was made from (0: none, a new
                // name): a row another node changed meanwhile keeps its change, and this node
                // takes it from the follower.
                for (i, (name, data, base)) in rows.iter().enumerate() {
                    let v = top - n + 1 + i64::try_from(i).unwrap_or(0);
                    let written = tx.query_opt(&upsert, &[name, &me, &v, data, base]).await?;
                    versions.push(written.map(|_| v.unsigned_abs()));
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

/// Follows the other nodes until the server stops listening: connects (again after any end of
/// the connection, clean or not, every half second), listens, and reads what changed on each
/// notification and heartbeat, from the last version it saw.
async fn follow(config: tokio_postgres::Config, f: Follower) {
    let mut state = Seen { version: 0, live: None };
    let mut drift = Drift::new(f.cfg.dead_after);
    while !f.tx.is_closed() {
        match follow_once(&config, &f, &mut state, &mut drift).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(version = state.version, "lost the shared store: {e}; connecting again"),
        }
        drift.handle_lost(Instant::now());
        tokio::time::sleep(RECONNECT).await;
        if let Some(event) = drift.poll(Instant::now()) {
            let _ = f.tx.send(event);
        }
    }
}

/// How long the follower waits between two attempts to connect.
const RECONNECT: Duration = Duration::from_millis(500);

/// Why the follower stopped following for now.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("{}", deepest(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("the connection ended")]
    Closed,
    #[error("no answer within {0:?}")]
    Silent(Duration),
}

/// Whether the follower follows the store, for [`ClusterEvent::Following`]: since when it has
/// not, and whether the core was told. Sans-IO: the times come from the caller.
#[derive(Debug)]
struct Drift {
    /// After this long without following, the other nodes take this one for dead.
    window: Duration,
    lost_at: Option<Instant>,
    told_adrift: bool,
}

impl Drift {
    fn new(window: Duration) -> Self {
        Self { window, lost_at: None, told_adrift: false }
    }

    /// The follower lost the store at `now` (the first loss counts, until it follows again).
    fn handle_lost(&mut self, now: Instant) {
        self.lost_at.get_or_insert(now);
    }

    /// The follower follows again, caught up: the event for the core if it was told otherwise.
    fn handle_following(&mut self) -> Option<ClusterEvent> {
        self.lost_at = None;
        std::mem::take(&mut self.told_adrift).then_some(ClusterEvent::Following(true))
    }

    /// The event for the core once the follower has been lost for the whole window.
    fn poll(&mut self, now: Instant) -> Option<ClusterEvent> {
        let adrift = self.lost_at.is_some_and(|at| now.saturating_duration_since(at) >= self.window);
        (adrift && !self.told_adrift).then(|| {
            self.told_adrift = true;
            ClusterEvent::Following(false)
        })
    }
}

/// What the follower has passed on.
struct Seen {
    /// The highest row version read.
    version: i64,
    /// The live nodes last passed on.
    live: Option<BTreeMap<NodeId, SocketAddr>>,
}

/// Follows on one connection until it is lost (an error) or the server stops (`Ok`).
async fn follow_once(
    config: &tokio_postgres::Config,
    f: &Follower,
    seen: &mut Seen,
    drift: &mut Drift,
) -> Result<(), Lost> {
    // A store that does not answer (a paused server, a dead host) is as lost as one that said no.
    let patience = f.cfg.dead_after;
    let (mut client, mut connection) =
        tokio::time::timeout(patience, config.connect(NoTls)).await.map_err(|_| Lost::Silent(patience))??;
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
        let mut caught_up = false;
        loop {
            tokio::select! {
                w = woken.recv() => if w.is_none() { return Err(Lost::Closed) },
                _ = beat.tick() => {
                    // Only a node connected for a whole dead time judges the others: after an
                    // outage of the store, they need as long to beat again.
                    let judge = connected.elapsed() >= f.cfg.dead_after;
                    within(patience, heartbeat(&mut client, f, seen, judge)).await?;
                }
            }
            while woken.try_recv().is_ok() {}
            if within(patience, catch_up(&mut client, f, seen)).await? {
                // A row from a node this one has not seen beat yet: a node that just joined.
                within(patience, live_nodes(&client, f, seen)).await?;
            }
            if !std::mem::replace(&mut caught_up, true) {
                tracing::info!(version = seen.version, "following the shared store, caught up");
                if let Some(event) = drift.handle_following() {
                    let _ = f.tx.send(event);
                }
            }
            if f.tx.is_closed() {
                return Ok(());
            }
        }
    }
    .await;
    match result {
        // The connection's own error says more than that it ended.
        Err(Lost::Closed) => match pump.await {
            Ok(Err(e)) => Err(Lost::Db(e)),
            _ => Err(Lost::Closed),
        },
        other => {
            pump.abort();
            other
        }
    }
}

/// `work`, or [`Lost::Silent`] if it takes longer than `patience`.
async fn within<T>(
    patience: Duration,
    work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Lost> {
    Ok(tokio::time::timeout(patience, work).await.map_err(|_| Lost::Silent(patience))??)
}

/// Passes on the rows changed after the last version seen, and the messages for this node (the
/// channel copies among them recorded as owed by this node in the transaction that deletes
/// them); returns whether a row was registered at a node not known live.
async fn catch_up(
    client: &mut tokio_postgres::Client,
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
    let tx = client.transaction().await?;
    let msgs =
        tx.query("DELETE FROM peer_messages WHERE to_node = $1 RETURNING id, from_node, body::text", &[&me]).await?;
    let msgs = peer_msgs(&msgs, "skipped a damaged message from another node")?;
    own(&tx, me, &msgs).await?;
    tx.commit().await?;
    for (from, msg) in msgs {
        let _ = f.tx.send(ClusterEvent::Peer(from, msg));
    }
    Ok(stranger)
}

/// The messages in rows of `id, from_node, body`, in the order they were sent (a damaged one is
/// left out, with `damaged` as warning).
fn peer_msgs(rows: &[tokio_postgres::Row], damaged: &str) -> Result<Vec<(NodeId, PeerMsg)>, tokio_postgres::Error> {
    let mut msgs = Vec::with_capacity(rows.len());
    for r in rows {
        let (id, from, body): (i64, i64, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        match serde_json::from_str::<PeerMsg>(&body) {
            Ok(msg) => msgs.push((id, from.unsigned_abs(), msg)),
            Err(e) => tracing::warn!(from, "{damaged}: {e}"),
        }
    }
    msgs.sort_by_key(|(id, ..)| *id);
    Ok(msgs.into_iter().map(|(_, from, msg)| (from, msg)).collect())
}

/// Records the channel copies among `msgs` as owed by node `me` (rows of `owed_channels`, which
/// its store deletes once each member was served), in `tx`: a copy this node takes up survives
/// its death, taken over by the node that removes it. A row it holds already for the same
/// message is kept.
async fn own(
    tx: &tokio_postgres::Transaction<'_>,
    me: i64,
    msgs: &[(NodeId, PeerMsg)],
) -> Result<(), tokio_postgres::Error> {
    let mut insert = None;
    for (_, msg) in msgs {
        let PeerMsg::Channel { members, msg } = msg else { continue };
        let owed = offline_store::OwedChannel { msg: msg.clone(), members: members.clone() };
        let body = match serde_json::to_string(&owed) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(from = %msg.from, "channel copy not recorded as owed: {e}");
                continue;
            }
        };
        let statement = match &insert {
            Some(s) => s,
            None => insert.insert(
                tx.prepare(
                    "INSERT INTO owed_channels (node, sender, id, body) VALUES ($1, $2, $3, $4::text::json) \
                     ON CONFLICT (node, sender, id) DO NOTHING",
                )
                .await?,
            ),
        };
        tx.execute(statement, &[&me, &msg.from.as_str(), &crate::queries::to_db(msg.id), &body]).await?;
    }
    Ok(())
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
                    // Compared as text, not cast: a damaged row must not fail the sweep.
                    "SELECT name FROM clients WHERE home = ANY($1) AND data->>'online' = 'true' ORDER BY name",
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
        // Messages for nodes that are gone: channel copies their members were to get are this
        // node's to store now (they are offline), so that no copy whose sender was answered is
        // lost with the node it was handed to. So are the copies the nodes that are gone still
        // owed their members (relayed, or read from another node, and not yet ACKed or stored):
        // their rows become this node's, in the same transaction, so a copy outlives each node
        // that dies holding it.
        let orphans = tx
            .query(
                "DELETE FROM peer_messages p WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = p.to_node) \
                 RETURNING id, from_node, body::text",
                &[],
            )
            .await?;
        let mut orphans = peer_msgs(&orphans, "skipped a damaged message for a node that is gone")?;
        orphans.retain(|(_, msg)| matches!(msg, PeerMsg::Channel { .. }));
        let owed = tx
            .query(
                "DELETE FROM owed_channels o WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = o.node) \
                 RETURNING node, body::text",
                &[],
            )
            .await?;
        for r in &owed {
            let (node, body): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
            match serde_json::from_str::<offline_store::OwedChannel>(&body) {
                Ok(o) => orphans.push((node.unsigned_abs(), PeerMsg::Channel { members: o.members, msg: o.msg })),
                Err(e) => tracing::warn!(node, "skipped a damaged owed channel message of a node that is gone: {e}"),
            }
        }
        own(&tx, me, &orphans).await?;
        tx.commit().await?;
        if !owed.is_empty() {
            tracing::warn!(messages = owed.len(), "channel messages owed by nodes that are gone: taken over");
        }
        for (from, msg) in orphans {
            let _ = f.tx.send(ClusterEvent::Peer(from, msg));
        }
    }
    live_nodes(client, f, seen).await
}

/// The nodes in rows of `id, addr` (a damaged address is left out).
fn live_from(rows: &[tokio_postgres::Row]) -> BTreeMap<NodeId, SocketAddr> {
    rows.iter()
        .filter_map(|r| {
            let (id, addr): (i64, String) = (r.try_get(0).ok()?, r.try_get(1).ok()?);
            Some((id.unsigned_abs(), addr.parse().ok()?))
        })
        .collect()
}

/// Reads the other live nodes, and passes them on if they changed.
async fn live_nodes(
    client: &tokio_postgres::Client,
    f: &Follower,
    seen: &mut Seen,
) -> Result<(), tokio_postgres::Error> {
    let (me, dead_after, here) = (signed(f.me), f.cfg.dead_after.as_secs_f64(), f.addr.to_string());
    let live = client.query(LIVE_NODES, &[&me, &dead_after, &here]).await?;
    let live = live_from(&live);
    if seen.live.as_ref() != Some(&live) {
        seen.live = Some(live.clone());
        let _ = f.tx.send(ClusterEvent::Nodes(live));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn following(e: Option<ClusterEvent>) -> Option<bool> {
        e.map(|e| match e {
            ClusterEvent::Following(f) => f,
            other => panic!("not a Following: {other:?}"),
        })
    }

    #[test]
    fn a_follower_lost_for_the_dead_node_window_is_adrift_once_and_following_again_once() {
        let t0 = Instant::now();
        let window = Duration::from_secs(5);
        let mut d = Drift::new(window);
        assert_eq!(following(d.poll(t0 + window * 2)), None, "never lost");
        d.handle_lost(t0);
        d.handle_lost(t0 + Duration::from_secs(3)); // a second failed attempt: the first loss counts
        assert_eq!(following(d.poll(t0 + window - Duration::from_millis(1))), None, "not yet the window");
        assert_eq!(following(d.poll(t0 + window)), Some(false));
        assert_eq!(following(d.poll(t0 + window * 3)), None, "told once");
        assert_eq!(following(d.handle_following()), Some(true));
        assert_eq!(following(d.handle_following()), None, "told once");
    }

    #[test]
    fn a_short_loss_tells_the_core_nothing() {
        let t0 = Instant::now();
        let mut d = Drift::new(Duration::from_secs(5));
        d.handle_lost(t0);
        assert_eq!(following(d.poll(t0 + Duration::from_secs(1))), None);
        assert_eq!(following(d.handle_following()), None, "it was never told it was adrift");
        assert_eq!(following(d.poll(t0 + Duration::from_secs(60))), None, "the loss is over");
    }
}
