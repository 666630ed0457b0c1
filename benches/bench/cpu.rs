//! Where the round trip's two ends run. On this VM a wake-up that crosses cores costs more than
//! everything ChatApp does per message, and the scheduler places a blocking ping-pong and an
//! epoll loop differently, so each end is pinned: both on one core, then each on its own.

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// Where the two ends of a round trip run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Placement {
    OneCore,
    TwoCores,
}

impl Placement {
    /// The placements this machine has room for.
    pub(crate) fn available() -> Vec<Placement> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        if cores >= 2 { vec![Placement::OneCore, Placement::TwoCores] } else { vec![Placement::OneCore] }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Placement::OneCore => "one core",
            Placement::TwoCores => "two cores",
        }
    }

    /// The core of the end that measures.
    pub(crate) fn near(self) -> usize {
        0
    }

    /// The core of the end that answers.
    pub(crate) fn far(self) -> usize {
        match self {
            Placement::OneCore => 0,
            Placement::TwoCores => 1,
        }
    }
}

/// Keeps the calling thread on `cpu`, or lets it run anywhere again with `None`.
pub(crate) fn pin(cpu: Option<usize>) {
    pin_thread(Pid::from_raw(0), cpu);
}

/// Keeps thread `tid` on `cpu`, or lets it run anywhere again with `None`.
pub(crate) fn pin_thread(tid: Pid, cpu: Option<usize>) {
    let mut set = CpuSet::new();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for c in cpu.map_or(0..cores, |c| c..c + 1) {
        set.set(c).expect("a core this machine has");
    }
    sched_setaffinity(tid, &set).expect("sched_setaffinity");
}
