//! Where the round trip's two ends run. On this VM a wake-up that crosses cores costs more than
//! everything ChatApp does per message, and the scheduler places a blocking ping-pong and an
//! epoll loop differently, so each end is pinned: both on one core, then each on its own.

use std::sync::OnceLock;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// Where the two ends of a round trip run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Placement {
    OneCore,
    TwoCores,
}

/// The cores this process may run on, as it started.
fn allowed() -> &'static CpuSet {
    static ALLOWED: OnceLock<CpuSet> = OnceLock::new();
    ALLOWED.get_or_init(|| sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity"))
}

/// The `n`th core this process may run on.
fn core(n: usize) -> Option<usize> {
    (0..CpuSet::count()).filter(|&c| allowed().is_set(c).unwrap_or(false)).nth(n)
}

impl Placement {
    /// The placements this machine has room for.
    pub(crate) fn available() -> Vec<Placement> {
        if core(1).is_some() { vec![Placement::OneCore, Placement::TwoCores] } else { vec![Placement::OneCore] }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Placement::OneCore => "one core",
            Placement::TwoCores => "two cores",
        }
    }

    /// The core of the end that measures.
    pub(crate) fn near(self) -> usize {
        core(0).expect("a core to run on")
    }

    /// The core of the end that answers.
    pub(crate) fn far(self) -> usize {
        match self {
            Placement::OneCore => self.near(),
            Placement::TwoCores => core(1).expect("a second core"),
        }
    }
}

/// Keeps the calling thread on `cpu`, or lets it run where it could at the start with `None`.
pub(crate) fn pin(cpu: Option<usize>) {
    pin_thread(Pid::from_raw(0), cpu);
}

/// Keeps thread `tid` on `cpu`, or lets it run where the process could at the start with `None`.
pub(crate) fn pin_thread(tid: Pid, cpu: Option<usize>) {
    let set = match cpu {
        Some(c) => {
            let mut one = CpuSet::new();
            one.set(c).expect("a core this machine has");
            one
        }
        None => *allowed(),
    };
    sched_setaffinity(tid, &set).expect("sched_setaffinity");
}
