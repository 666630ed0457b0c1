//! ChatApp's registration server: the client table and its broadcast, save-message requests
//! with their probes, the delivery of stored messages after `reg`, and the channel relay.
//!
//! [`Server`] is the sans-IO core (no socket, no clock, no randomness of its own); [`run`]
//! drives it over a bound UDP socket until a shutdown token is cancelled. The core only routes
//! (`core.rs`, with one handler file per request under `core/`); the state lives in components
//! that own it and do not know the core: `clients` (the table), `tables` (its pushes),
//! `probe`, `deliveries` (channel copies in flight), `owed` (the members each channel message
//! is still owed to), `dedup` (recent requests), `joining`,
//! `secret_hash` (what is kept of a secret), `outbox` (the send queue behind the address budgets of `budget`), `ids` (cookies, ids and
//! secrets from the handed-in [`chat_core::Entropy`]), `storage` (the port to
//! [`offline_store::Store`]: its jobs) and `parked` (what waits on mailboxes being learnt). No
//! handler touches the disk: the disk work leaves the core as a [`Job`] ([`Server::poll_job`])
//! and comes back as an input ([`Server::handle_job_done`]).

mod budget;
mod clients;
pub mod cluster;
mod core;
mod dedup;
mod deliveries;
mod driver;
mod error;
mod ids;
mod jobs;
mod joining;
mod outbox;
mod owed;
mod parked;
mod presence;
mod probe;
mod secret_hash;
mod storage;
mod table_file;
mod tables;

pub use crate::clients::SavedTable;
pub use crate::core::{Config, Server, Transmit};
pub use driver::{Tables, run};
pub use error::ServerError;
pub use jobs::{Job, JobDone, JobKind};
pub use table_file::TableFile;

#[cfg(test)]
mod tests;
