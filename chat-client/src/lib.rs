//! ChatApp's client: the local client table, direct sends with ACK, retry and fallback to the
//! server, the channel, the commands, and what the user is shown.
//!
//! [`Client`] is the sans-IO core (no socket, no clock, no terminal); [`run`] drives it over a
//! bound UDP socket, reading commands from a terminal (with line editing) or a script.

mod answers;
mod command;
mod core;
mod driver;
mod error;
mod event;
mod fetch;
mod identity;
mod inbox;
mod keybook;
mod nodes;
mod output;
mod record;
mod requests;
mod send;
mod session;
mod table;
mod terminal;

pub use crate::command::{Command, CommandError, parse};
pub use crate::core::{Client, Config};
pub use crate::error::ClientError;
pub use crate::event::{Event, Presence};
pub use crate::identity::Identity;
pub use crate::keybook::{KeyBook, KeyBookError};
pub use chat_core::{Entropy, Transmit};
pub use driver::{Files, Sink, drive, open, run};
pub use output::Input;

#[cfg(test)]
mod tests;
