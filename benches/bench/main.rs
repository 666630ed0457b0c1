//! ChatApp's benchmarks, each beside a baseline measured in the same run on the same machine.
//!
//! `cargo bench --bench bench` runs them all (a few minutes on 2 cores) and prints a table;
//! `cargo bench --bench bench -- --quick` is the short smoke pass CI runs; naming groups
//! (`rtt throughput saves fanout storm memory secure keepalive relay cluster web`) runs only
//! those. Nothing here asserts a timing: the numbers are printed, and kept in
//! `docs/BENCHMARKS.md`.

mod cluster;
mod cpu;
mod nat;
mod peers;
mod raw;
mod secure;
mod sim;
mod swarm;
mod timed;
mod web;

use std::time::Duration;

/// How big each benchmark is.
pub(crate) struct Scale {
    pub(crate) pings: usize,
    pub(crate) flood: usize,
    pub(crate) window: usize,
    pub(crate) savers: Vec<usize>,
    pub(crate) saves_each: usize,
    pub(crate) fanout: usize,
    pub(crate) storms: Vec<usize>,
    pub(crate) memory_clients: usize,
    /// The senders of the saves through PostgreSQL nodes.
    pub(crate) cluster_savers: Vec<usize>,
    /// How long PostgreSQL's own commit loop runs, before the nodes' saves and again after.
    pub(crate) commit_loop: Duration,
}

impl Scale {
    fn full() -> Self {
        Scale {
            pings: 5_000,
            flood: 20_000,
            window: 64,
            savers: vec![1, 32, 64, 128],
            saves_each: 1_000,
            fanout: 1_000,
            storms: vec![250, 1_000, 5_000],
            memory_clients: 10_000,
            cluster_savers: vec![1, 64],
            commit_loop: Duration::from_secs(2),
        }
    }

    fn quick() -> Self {
        Scale {
            pings: 200,
            flood: 1_000,
            window: 16,
            savers: vec![1, 4],
            saves_each: 10,
            fanout: 50,
            storms: vec![20],
            memory_clients: 200,
            cluster_savers: vec![1, 4],
            commit_loop: Duration::from_millis(250),
        }
    }
}

/// One line of the report.
pub(crate) struct Line {
    pub(crate) what: String,
    pub(crate) ours: String,
    pub(crate) baseline: String,
    pub(crate) ratio: String,
    pub(crate) target: &'static str,
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The `p`th percentile (0–100) of `samples`.
pub(crate) fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() as f64 - 1.0) * p / 100.0).round() as usize;
    samples.get(i).copied().unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    let run = |group: &str| only.is_empty() || only.contains(&group);
    let scale = if quick { Scale::quick() } else { Scale::full() };
    let mut lines = Vec::new();
    if run("rtt") {
        eprintln!("direct round trip…");
        lines.extend(peers::round_trip(&scale));
    }
    if run("throughput") {
        eprintln!("direct throughput…");
        lines.extend(peers::throughput(&scale));
    }
    if run("saves") {
        eprintln!("durable saves…");
        lines.extend(swarm::saves(&scale));
    }
    if run("fanout") {
        eprintln!("channel fan-out…");
        lines.extend(swarm::fanout(&scale));
    }
    if run("storm") {
        eprintln!("registration storms…");
        for &n in &scale.storms {
            lines.extend(swarm::storm(n));
        }
    }
    if run("memory") {
        eprintln!("memory…");
        lines.extend(swarm::memory(&scale));
    }

    if run("keepalive") {
        eprintln!("keepalives…");
        lines.extend(nat::keepalive(&scale));
    }
    if run("relay") {
        eprintln!("relayed round trip…");
        lines.extend(nat::relay(&scale));
    }
    if run("cluster") {
        eprintln!("nodes over PostgreSQL…");
        lines.extend(cluster::cluster(&scale));
    }
    if run("web") {
        eprintln!("the browser page…");
        lines.extend(web::round_trip(&scale));
        lines.extend(web::throughput(&scale));
    }
    if run("secure") {
        eprintln!("encrypted channel…");
        lines.extend(secure::channel(&scale));
    }

    let w = lines.iter().map(|l| l.what.len()).max().unwrap_or(10);
    println!("| {:w$} | {:>22} | {:>22} | {:>8} | target |", "benchmark", "ChatApp", "baseline", "ratio");
    println!("|{}|{}|{}|{}|---|", "-".repeat(w + 2), "-".repeat(24), "-".repeat(24), "-".repeat(10));
    for l in lines {
        println!("| {:w$} | {:>22} | {:>22} | {:>8} | {} |", l.what, l.ours, l.baseline, l.ratio, l.target);
    }
}
