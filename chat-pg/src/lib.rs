//! ChatApp server's PostgreSQL backend, for several server nodes that share one database.
//!
//! - [`Db`]: a handle to one database whose connections live on a thread of their own (a tokio
//!   current-thread runtime with a small pool), so that the server's driver, which runs store
//!   jobs inline on its own runtime, can block on a query without nesting runtimes.
//! - [`PgStore`]: the offline mailboxes behind [`offline_store::Store`].
//! - [`Cluster`]: the client table several nodes share, their heartbeats and their messages to
//!   each other, behind [`chat_server::cluster::SharedTable`]; [`shared_identity`], the one
//!   key the nodes show.
//! - [`schema`]: the tables and their migrations (`meta.schema_version`).
//! - [`testing`]: a fresh database per test, on `CHATAPP_TEST_PG` or on a private server
//!   started for the test process.
//!
//! This crate must not know about sockets, requests or who is online; it needs no database to
//! build (no compile-time checked queries).

mod cluster;
mod db;
mod queries;
pub mod schema;
mod store;
pub mod testing;

pub use cluster::{Cluster, ClusterConfig, shared_identity};
pub use db::{Db, DbError, redact};
pub use store::PgStore;
