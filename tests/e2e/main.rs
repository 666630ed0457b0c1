//! End-to-end scenarios: the real `chatapp` binary as a server and several clients, driven
//! through stdin and read line by line on stdout, checked against the exact lines of SPEC.md.
//!
//! One test binary (so it links once); one module per area. Every test starts its own server
//! on a free port, so tests run in parallel.

mod harness;

mod args;
mod at_rest;
mod campaign;
mod channel;
mod direct;
mod disk;
mod faults;
mod nat;
mod nat_review;
mod nodes;
mod offline;
mod order;
mod presence;
mod register;
mod regressions;
mod relay;
mod review;
mod robustness;
mod sealed;
mod secure;
mod security;
mod shown;
mod spoof;
mod terminal;
mod trust;
mod web;
