//! Who is really there: when each online client's address was last heard from, and which have
//! been silent for three keepalive intervals. No allocation per datagram: an address gets its
//! slot when a sweep first finds it online, and a datagram only moves the time in it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Silent this many intervals, a client is gone.
const SILENT_INTERVALS: u32 = 3;

#[derive(Debug)]
pub(crate) struct Presence {
    interval: Duration,
    heard: HashMap<SocketAddr, Instant>,
    next_sweep: Instant,
    /// The table's version at the last sweep: while it is the same and nobody was online then,
    /// there is nothing to sweep and no timer.
    swept_version: Option<u64>,
}

impl Presence {
    /// Clients are told to keep alive every `interval`; the table is at `version`, with nobody
    /// online. A client's count starts at the first sweep that finds it online (so clients a
    /// restarted server restored get their whole grace).
    pub(crate) fn new(interval: Duration, now: Instant, version: u64) -> Self {
        let next_sweep = now + Self::sweep_every(interval);
        Self { interval, heard: HashMap::new(), next_sweep, swept_version: Some(version) }
    }

    /// The keepalive interval clients are told.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// The table changed in a way the version does not show (it was restored): sweep it.
    pub(crate) fn arm(&mut self) {
        self.swept_version = None;
    }

    /// A datagram came from `addr`.
    pub(crate) fn heard(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(at) = self.heard.get_mut(&addr) {
            *at = now;
        }
    }

    /// The next sweep, if one can find anything: someone was online at the last sweep, or the
    /// table (at `version` now) changed since.
    pub(crate) fn next_timeout(&self, version: u64) -> Option<Instant> {
        let idle = self.heard.is_empty() && self.swept_version == Some(version);
        (!idle).then_some(self.next_sweep)
    }

    /// At a sweep: of the clients `online` (name and address) in the table at `version`, those
    /// silent for three intervals. An address seen online for the first time starts its count
    /// now; one no longer online is forgotten.
    pub(crate) fn sweep<'a, N: 'a>(
        &mut self,
        now: Instant,
        version: u64,
        online: impl Iterator<Item = (&'a N, SocketAddr)>,
    ) -> Vec<(&'a N, SocketAddr)> {
        if now < self.next_sweep {
            return Vec::new();
        }
        self.next_sweep = now + Self::sweep_every(self.interval);
        self.swept_version = Some(version);
        let limit = self.interval * SILENT_INTERVALS;
        let mut still = HashMap::with_capacity(self.heard.len());
        let mut gone = Vec::new();
        for (name, addr) in online {
            let at = self.heard.get(&addr).copied().unwrap_or(now);
            if now.duration_since(at) >= limit {
                gone.push((name, addr));
            } else {
                still.insert(addr, at);
            }
        }
        self.heard = still;
        gone
    }

    /// Sweeps run twice an interval: a silent client is noticed within three and a half.
    fn sweep_every(interval: Duration) -> Duration {
        interval / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_client_silent_for_three_intervals_is_gone_and_one_heard_from_is_not() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut p = Presence::new(10 * second, t0, 0);
        let online = [("alice", addr(1)), ("bob", addr(2))];
        let list = || online.iter().map(|(n, a)| (n, *a));
        let mut gone = Vec::new();
        for t in (0..=40).map(|s| t0 + s * second) {
            if t.duration_since(t0).as_secs() % 10 == 0 {
                p.heard(addr(1), t); // alice keeps alive every interval
            }
            gone.extend(p.sweep(t, 1, list()).into_iter().map(|(n, _)| (*n, t.duration_since(t0).as_secs())));
        }
        // Bob's count started at the first sweep (5 s); he is gone at the first sweep 30 s after.
        assert_eq!(gone, vec![("bob", 35)]);
    }

    #[test]
    fn with_nobody_online_at_the_last_sweep_and_no_change_since_there_is_no_timer() {
        let t0 = Instant::now();
        let mut p = Presence::new(Duration::from_secs(10), t0, 6);
        assert_eq!(p.next_timeout(6), None, "a new table with nobody online");
        assert_eq!(p.next_timeout(7), Some(t0 + Duration::from_secs(5)), "someone came: a sweep to see");
        let nobody: [(&str, SocketAddr); 0] = [];
        assert!(p.sweep(t0 + Duration::from_secs(5), 7, nobody.iter().map(|(n, a)| (n, *a))).is_empty());
        assert_eq!(p.next_timeout(7), None, "nothing to sweep");
        assert_eq!(p.next_timeout(8), Some(t0 + Duration::from_secs(10)), "the table changed: sweep again");
    }
}
