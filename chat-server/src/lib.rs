//! ChatApp's registration server: the client table and its broadcast, save-message requests
//! with their probes, the delivery of stored messages after `reg`, and the channel relay.
//!
//! [`Server`] is the sans-IO core (no socket, no clock); [`run`] drives it over a bound UDP
//! socket until a shutdown token is cancelled. Disk access goes through
//! [`offline_store::Store`].

mod budget;
mod clients;
mod core;
mod dedup;
mod deliveries;
mod driver;
mod error;
mod ids;
mod joining;
mod outbox;
mod probe;
mod storage;
mod table_file;
mod tables;

pub use crate::clients::SavedTable;
pub use crate::core::{Config, Server, Transmit};
pub use driver::run;
pub use error::ServerError;
pub use table_file::TableFile;

#[cfg(test)]
mod tests;
