//! The mailbox statements, each an async function on the pool that retries on a connection
//! lost (all of them are idempotent: a batch inserts with `ON CONFLICT DO NOTHING`, a removal
//! deletes by key), so that a restart of the server costs a sync nothing but a reconnect.
//!
//! This module owns the SQL on `offline_messages` and the mapping of rows to messages; it must
//! not decide what to store or remove (that is [`crate::PgStore`]'s).

use std::future::Future;
use std::time::Duration;

use chat_proto::{MsgId, Name, StoredMessage};
use deadpool_postgres::{Pool, PoolError};
use offline_store::Listed;
use tokio_postgres::error::SqlState;

/// Attempts after the first when the connection is lost (the pool may hold that many dead ones).
const RETRIES: u32 = 5;

/// Longest one attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a record line adds to a message's JSON (`crc32-hex SP json LF`), so that bytes count
/// against the limits as in a file store ([`offline_store::record_len`]).
pub(crate) const RECORD_OVERHEAD: u64 = 10;

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QueryError {
    /// No connection could be had from the pool.
    #[error("no connection")]
    Pool(#[source] PoolError),
    /// The statement (or the connection under it) failed.
    #[error(transparent)]
    Pg(#[from] tokio_postgres::Error),
    /// An attempt took longer than [`ATTEMPT_TIMEOUT`].
    #[error("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())]
    Timeout,
    /// A row does not hold a valid message.
    #[error("a stored row does not decode: {0}")]
    Decode(String),
    /// The message read is not in the database (another node removed it).
    #[error("the message is no longer stored")]
    Gone,
}

impl QueryError {
    /// Whether a new connection may succeed where this one failed.
    fn is_connection(&self) -> bool {
        match self {
            Self::Pool(_) => true,
            Self::Pg(e) => {
                let shutdown = [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW];
                e.is_closed()
                    || e.code().is_some_and(|code| shutdown.contains(code))
                    || (e.as_db_error().is_none()
                        && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()))
            }
            Self::Timeout | Self::Decode(_) | Self::Gone => false,
        }
    }
}

impl From<PoolError> for QueryError {
    fn from(e: PoolError) -> Self {
        Self::Pool(e)
    }
}

/// Runs `op` until it succeeds, fails otherwise than by a lost connection, or has been retried
/// [`RETRIES`] times.
async fn retrying<T, F, Fut>(pool: &Pool, what: &str, op: F) -> Result<T, QueryError>
where
    F: Fn(Pool) -> Fut,
    Fut: Future<Output = Result<T, QueryError>>,
{
    let mut attempt = 0;
    loop {
        let result = tokio::time::timeout(ATTEMPT_TIMEOUT, op(pool.clone())).await.unwrap_or(Err(QueryError::Timeout));
        match result {
            Err(e) if e.is_connection() && attempt < RETRIES => {
                attempt += 1;
                tracing::debug!(what, attempt, error = %e, "connection lost, trying again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            result => return result,
        }
    }
}

/// The columns of a batch of messages to insert, one entry per message, in order, and the
/// changes to the node's owed channel messages that ride with it.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) recipients: Vec<String>,
    pub(crate) senders: Vec<String>,
    pub(crate) ids: Vec<i64>,
    pub(crate) bodies: Vec<String>,
    /// The owed records to write (`owed_channels`), and those to delete.
    pub(crate) owed: OwedChanges,
}

/// Changes to one node's rows of `owed_channels`.
#[derive(Debug, Default)]
pub(crate) struct OwedChanges {
    pub(crate) node: i64,
    /// Sender, id, and the record (an `OwedChannel` as JSON) of each message noted.
    pub(crate) noted: Vec<(String, i64, String)>,
    /// Sender and id of each message done.
    pub(crate) done: Vec<(String, i64)>,
}

impl OwedChanges {
    pub(crate) fn note(&mut self, from: &Name, id: MsgId, body: String) {
        self.noted.push((from.as_str().to_owned(), to_db(id), body));
    }

    pub(crate) fn done(&mut self, from: &Name, id: MsgId) {
        self.done.push((from.as_str().to_owned(), to_db(id)));
    }

    fn is_empty(&self) -> bool {
        self.noted.is_empty() && self.done.is_empty()
    }
}

impl Batch {
    pub(crate) fn push(&mut self, to: &Name, from: &Name, id: MsgId, body: String) {
        self.recipients.push(to.as_str().to_owned());
        self.senders.push(from.as_str().to_owned());
        self.ids.push(to_db(id));
        self.bodies.push(body);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.owed.is_empty()
    }
}

/// Stores the batch in one transaction, with a synchronous commit: each message is stored once
/// per (recipient, sender, id), whoever stored it first; then the owed records noted are
/// written (again: the same record) and those done deleted. Without owed changes, one
/// statement, so its own transaction and one round trip; the connection's session has
/// `synchronous_commit=on` (see [`crate::Db::connect`]). Run twice, it changes nothing more.
pub(crate) async fn insert(pool: &Pool, batch: &Batch) -> Result<(), QueryError> {
    const INSERT: &str = "INSERT INTO offline_messages (recipient, sender, id, body) \
         SELECT r, s, i, b::json FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) \
         WITH ORDINALITY AS t (r, s, i, b, n) ORDER BY n \
         ON CONFLICT (recipient, sender, id) DO NOTHING";
    retrying(pool, "insert", |pool| async move {
        let mut client = pool.get().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&batch.recipients, &batch.senders, &batch.ids, &batch.bodies];
        if batch.owed.is_empty() {
            let insert = client.prepare_cached(INSERT).await?;
            client.execute(&insert, &params).await?;
            return Ok(());
        }
        let tx = client.transaction().await?;
        if !batch.ids.is_empty() {
            let insert = tx.prepare_cached(INSERT).await?;
            tx.execute(&insert, &params).await?;
        }
        let OwedChanges { node, noted, done } = &batch.owed;
        if !noted.is_empty() {
            let note = tx
                .prepare_cached(
                    "INSERT INTO owed_channels (node, sender, id, body) VALUES ($1, $2, $3, $4::text::json) \
                     ON CONFLICT (node, sender, id) DO UPDATE SET body = EXCLUDED.body",
                )
                .await?;
            for (from, id, body) in noted {
                tx.execute(&note, &[node, from, id, body]).await?;
            }
        }
        if !done.is_empty() {
            let senders: Vec<&str> = done.iter().map(|(from, _)| from.as_str()).collect();
            let ids: Vec<i64> = done.iter().map(|&(_, id)| id).collect();
            let delete = tx
                .prepare_cached(
                    "DELETE FROM owed_channels WHERE node = $1 \
                     AND (sender, id) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))",
                )
                .await?;
            tx.execute(&delete, &[node, &senders, &ids]).await?;
        }
        tx.commit().await?;
        Ok(())
    })
    .await
}

/// `to`'s messages as keys and sizes, oldest first.
pub(crate) async fn list(pool: &Pool, to: &Name) -> Result<Vec<Listed>, QueryError> {
    let rows = retrying(pool, "list", |pool| async move {
        let client = pool.get().await?;
        let list = client
            .prepare_cached(
                "SELECT sender, id, octet_length(body::text)::bigint FROM offline_messages \
                 WHERE recipient = $1 ORDER BY seq",
            )
            .await?;
        Ok(client.query(&list, &[&to.as_str()]).await?)
    })
    .await?;
    rows.iter()
        .map(|row| {
            let from = name(row.try_get(0)?)?;
            let id = from_db(row.try_get(1)?);
            let len: i64 = row.try_get(2)?;
            Ok(Listed { from, id, bytes: u64::try_from(len).unwrap_or_default() + RECORD_OVERHEAD })
        })
        .collect()
}

/// The message of `to`'s mailbox from `from` with `id`.
pub(crate) async fn read(pool: &Pool, to: &Name, from: &Name, id: MsgId) -> Result<StoredMessage, QueryError> {
    let row = retrying(pool, "read", |pool| async move {
        let client = pool.get().await?;
        let read = client
            .prepare_cached("SELECT body::text FROM offline_messages WHERE recipient = $1 AND sender = $2 AND id = $3")
            .await?;
        Ok(client.query_opt(&read, &[&to.as_str(), &from.as_str(), &to_db(id)]).await?)
    })
    .await?;
    decode(row.ok_or(QueryError::Gone)?.try_get(0)?)
}

/// Every message of `to`'s mailbox with its key, oldest first.
pub(crate) async fn read_all(pool: &Pool, to: &Name) -> Result<Vec<StoredMessage>, QueryError> {
    let rows = retrying(pool, "read all", |pool| async move {
        let client = pool.get().await?;
        let all =
            client.prepare_cached("SELECT body::text FROM offline_messages WHERE recipient = $1 ORDER BY seq").await?;
        Ok(client.query(&all, &[&to.as_str()]).await?)
    })
    .await?;
    rows.iter().map(|row| decode(row.try_get(0)?)).collect()
}

/// Deletes the messages of `to`'s mailbox with these keys (sender, id); those already gone
/// are no error. Returns how many rows went.
pub(crate) async fn delete(pool: &Pool, to: &Name, keys: &[(Name, MsgId)]) -> Result<u64, QueryError> {
    let senders: Vec<&str> = keys.iter().map(|(from, _)| from.as_str()).collect();
    let ids: Vec<i64> = keys.iter().map(|&(_, id)| to_db(id)).collect();
    let (senders, ids) = (&senders, &ids);
    retrying(pool, "delete", |pool| async move {
        let client = pool.get().await?;
        let delete = client
            .prepare_cached(
                "DELETE FROM offline_messages WHERE recipient = $1 \
                 AND (sender, id) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))",
            )
            .await?;
        Ok(client.execute(&delete, &[&to.as_str(), senders, ids]).await?)
    })
    .await
}

fn name(s: String) -> Result<Name, QueryError> {
    Name::new(s).map_err(|e| QueryError::Decode(format!("sender: {e}")))
}

fn decode(body: String) -> Result<StoredMessage, QueryError> {
    serde_json::from_str(&body).map_err(|e| QueryError::Decode(e.to_string()))
}

/// A message id as PostgreSQL's `bigint`: the same 64 bits, read as signed.
pub(crate) fn to_db(id: MsgId) -> i64 {
    i64::from_ne_bytes(id.0.to_ne_bytes())
}

fn from_db(id: i64) -> MsgId {
    MsgId(u64::from_ne_bytes(id.to_ne_bytes()))
}
