//! The database's schema: the migrations in order (`schema.sql` is version 1, the mailboxes;
//! `cluster.sql` version 2, the shared table; `owed.sql` version 3, the channel messages each
//! node still owes), and the `meta` table that says which have run.
//!
//! This module owns the DDL; nothing else creates or alters a table.

use crate::db::DbError;

/// Each version's SQL, in order: version `n` is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[include_str!("schema.sql"), include_str!("cluster.sql"), include_str!("owed.sql")];

/// An arbitrary constant for `pg_advisory_xact_lock`: nodes that start together migrate one
/// after the other.
const MIGRATION_LOCK: i64 = 0x6368_6174_6170_7001;

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction: creates `meta` (one row,
/// `schema_version`) if missing, then runs the migrations past the version it holds.
///
/// # Errors
/// [`DbError::Query`] when a statement fails (nothing is changed);
/// [`DbError::NewerSchema`] when the database is ahead of this build.
pub(crate) async fn migrate(client: &mut deadpool_postgres::Client, url: &str) -> Result<(), DbError> {
    let query = |op: &'static str| move |source| DbError::Query { url: url.to_owned(), op, source };
    let tx = client.transaction().await.map_err(query("begin the schema migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(query("lock the schema"))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS meta (schema_version integer NOT NULL)")
        .await
        .map_err(query("create the meta table"))?;
    let found: i32 =
        match tx.query_opt("SELECT schema_version FROM meta", &[]).await.map_err(query("read the schema version"))? {
            Some(row) => row.try_get(0).map_err(query("read the schema version"))?,
            None => {
                tx.execute("INSERT INTO meta (schema_version) VALUES (0)", &[])
                    .await
                    .map_err(query("write the schema version"))?;
                0
            }
        };
    if found > SCHEMA_VERSION {
        return Err(DbError::NewerSchema { url: url.to_owned(), found, known: SCHEMA_VERSION });
    }
    let start = usize::try_from(found).unwrap_or_default();
    for sql in MIGRATIONS.iter().skip(start) {
        tx.batch_execute(sql).await.map_err(query("migrate the schema"))?;
    }
    tx.execute("UPDATE meta SET schema_version = $1", &[&SCHEMA_VERSION])
        .await
        .map_err(query("write the schema version"))?;
    tx.commit().await.map_err(query("commit the schema migration"))
}
