//! The campaign's clients and their traffic: each actor is one name with one data directory and
//! port, run as one process after another (a run ends when the campaign kills it or it exits
//! on its own, and the next run starts with the same directory). Each drives a seeded mix of
//! direct sends (mostly to whoever is offline, so that saves and fetches happen), `send_all`,
//! and `dereg`/`reg` cycles, with a few commands in flight at once.
//!
//! Knows nothing of the faults: a scenario (see `campaign.rs`) says which server port a new run
//! is given, and kills what it kills between steps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::ledger::{self, End, Kind, Sent};
use crate::harness::{Client, HAVE_MESSAGES, OFFLINE_BYE, WELCOME, free_port, new_dir};

/// How many sends a client may have in flight (answers still due) at once.
const WINDOW: usize = 3;
/// The time between two commands of one client, at most.
const PACE: Duration = Duration::from_millis(150);

/// splitmix64, seeded by the scenario (its seed is printed, so a run can be replayed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration between `lo` and `hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = u64::try_from((hi - lo).as_millis()).unwrap_or(0);
        lo + Duration::from_millis(self.below(span + 1))
    }
}

/// Kill a run `after` it has shown `shown` stored messages of a fetch that started after stdout
/// line `from`, `times` times (the next runs fetch again, from line 0). `after` (0-30 ms, drawn
/// per kill) puts the kill at an arbitrary instant of the fetch, as a crash comes, rather than
/// always within a millisecond of the line the harness read.
#[derive(Clone, Copy, Debug)]
pub struct FetchKill {
    pub from: usize,
    pub shown: usize,
    pub times: u32,
    pub after: Duration,
}

/// Where an actor is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Its process started; not welcomed yet.
    Starting,
    Online,
    /// `dereg` sent (from this stdout line on), no answer yet.
    Leaving {
        from: usize,
    },
    /// Offline after a `dereg`.
    Offline,
    /// `reg` sent (from this stdout line on), no welcome yet.
    Returning {
        from: usize,
    },
}

/// One process of an actor and the sends it was given: indices into the world's `sent`, and
/// the stdout length when each was written (its answer comes after).
pub struct Run {
    pub client: Client,
    pub sends: Vec<usize>,
    pub issued: Vec<usize>,
    pub end: End,
    counter: std::cell::RefCell<ledger::Counter>,
}

impl Run {
    fn new(client: Client) -> Run {
        let counter = std::cell::RefCell::default();
        Run { client, sends: Vec::new(), issued: Vec::new(), end: End::Cut, counter }
    }

    /// Sends given and not answered yet.
    fn open_sends(&self) -> usize {
        let mut counter = self.counter.borrow_mut();
        let new = self.client.stdout_since(counter.next());
        let answered = counter.feed(&new, &self.issued);
        self.sends.len().saturating_sub(answered)
    }
}

/// One client name of the campaign.
pub struct Actor {
    pub name: String,
    pub port: u16,
    dir: Arc<TempDir>,
    /// The command each run starts through (`ip netns exec <ns>`), empty for none.
    wrapper: Vec<String>,
    pub runs: Vec<Run>,
    pub stage: Stage,
    next_at: Instant,
    /// Set by a scenario: kill the runs that fetch from now on, mid-fetch.
    pub kill_in_fetch: Option<FetchKill>,
    /// Runs killed mid-fetch.
    pub kills: usize,
}

impl Actor {
    pub fn new(name: &str, server_port: u16) -> Actor {
        Self::with(name, free_port(), server_port)
    }

    /// An actor on `port` (a relay may have to know it first).
    pub fn with(name: &str, port: u16, server_port: u16) -> Actor {
        Self::through(&[], name, port, server_port)
    }

    /// An actor whose runs start through `wrapper` (see [`Client::spawn_wrapped`]).
    pub fn through(wrapper: &[&str], name: &str, port: u16, server_port: u16) -> Actor {
        let (stage, next_at) = (Stage::Starting, Instant::now());
        let wrapper = wrapper.iter().map(|w| (*w).to_owned()).collect();
        let (name, dir) = (name.to_owned(), new_dir());
        let mut actor =
            Actor { name, port, dir, wrapper, runs: Vec::new(), stage, next_at, kill_in_fetch: None, kills: 0 };
        actor.respawn(server_port);
        actor
    }

    pub fn run(&self) -> &Run {
        self.runs.last().expect("an actor has a run")
    }

    fn run_mut(&mut self) -> &mut Run {
        self.runs.last_mut().expect("an actor has a run")
    }

    /// Sends in flight in the current run.
    pub fn open_sends(&self) -> usize {
        self.run().open_sends()
    }

    /// SIGKILLs the current run and starts the next, given `server_port`.
    pub fn restart(&mut self, server_port: u16) {
        self.run_mut().client.kill();
        self.respawn(server_port);
    }

    fn respawn(&mut self, server_port: u16) {
        let dir = Arc::clone(&self.dir);
        let client = if self.wrapper.is_empty() {
            Client::spawn(&self.name, server_port, self.port, dir, &[])
        } else {
            let wrapper: Vec<&str> = self.wrapper.iter().map(String::as_str).collect();
            Client::spawn_wrapped(&wrapper, "127.0.0.1", &self.name, server_port, self.port, dir, &[])
        };
        self.runs.push(Run::new(client));
        self.stage = Stage::Starting;
    }

    /// Whether the current run shows the welcome after stdout line `from`.
    fn welcomed_since(&self, from: usize) -> bool {
        self.run().client.stdout_since(from).iter().any(|l| l == WELCOME)
    }

    /// Moves on: a run that exited is followed by the next; answers move the stage.
    pub fn settle(&mut self, server_port: u16) {
        if self.run().client.exit_status().is_some() {
            self.run_mut().end = End::Exited;
            self.respawn(server_port);
            return;
        }
        self.stage = match self.stage {
            Stage::Starting if self.welcomed_since(0) => Stage::Online,
            Stage::Leaving { from } if self.run().client.stdout_since(from).iter().any(|l| l == OFFLINE_BYE) => {
                Stage::Offline
            }
            Stage::Returning { from } if self.welcomed_since(from) => Stage::Online,
            stage => stage,
        };
        self.kill_mid_fetch(server_port);
    }

    /// With `kill_in_fetch` set and a fetch under way in this run: waits (2 s at most) for that
    /// many stored messages to show, then SIGKILLs the run and starts the next.
    fn kill_mid_fetch(&mut self, server_port: u16) {
        let Some(FetchKill { from, shown, times, after }) = self.kill_in_fetch else { return };
        let lines = self.run().client.stdout_since(from);
        let Some(start) = lines.iter().position(|l| l == HAVE_MESSAGES).map(|i| i + from) else { return };
        let deadline = Instant::now() + Duration::from_secs(2);
        let count = || {
            let lines = self.run().client.stdout_since(start);
            lines.iter().filter(|l| matches!(ledger::classify(l), ledger::Line::Shown(_))).count()
        };
        while count() < shown && Instant::now() < deadline && self.run().client.exit_status().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(after);
        self.kill_in_fetch = (times > 1).then_some(FetchKill { from: 0, shown, times: times - 1, after });
        self.kills += 1;
        self.restart(server_port);
    }

    /// Sends `dereg` (no send may be in flight), to stay away for `away` from `now`.
    pub fn leave(&mut self, now: Instant, away: Duration) {
        let from = self.run().client.stdout_len();
        let name = self.name.clone();
        self.run_mut().client.send_line(&format!("dereg {name}"));
        self.stage = Stage::Leaving { from };
        self.next_at = now + away;
    }

    /// Sends `reg` if offline.
    pub fn come_back(&mut self) {
        if self.stage == Stage::Offline {
            let from = self.run().client.stdout_len();
            let name = self.name.clone();
            self.run_mut().client.send_line(&format!("reg {name}"));
            self.stage = Stage::Returning { from };
        }
    }
}

/// Every actor, every message sent, and the traffic's dice.
pub struct World {
    pub actors: Vec<Actor>,
    pub sent: Vec<Sent>,
    pub rng: Rng,
}

impl World {
    pub fn names(&self) -> Vec<String> {
        self.actors.iter().map(|a| a.name.clone()).collect()
    }

    /// One step of traffic for actor `i`, if it is online, has room in its window and its
    /// pace allows.
    pub fn traffic(&mut self, i: usize, now: Instant) {
        let (stage, open, next_at) = (self.actors[i].stage, self.actors[i].open_sends(), self.actors[i].next_at);
        if now < next_at {
            return;
        }
        match stage {
            Stage::Offline => self.actors[i].come_back(),
            Stage::Online if open < WINDOW => {
                let roll = self.rng.below(100);
                if roll < 6 && open == 0 {
                    let away = self.rng.between(Duration::from_millis(500), Duration::from_millis(3000));
                    self.actors[i].leave(now, away);
                    return;
                }
                let kind = if roll < 35 { Kind::Channel } else { Kind::Direct { to: self.target(i) } };
                self.send(i, kind);
            }
            _ => {}
        }
        self.actors[i].next_at = now + self.rng.between(PACE / 3, PACE);
    }

    /// Someone else: an offline one two times in three when there is one.
    fn target(&mut self, i: usize) -> String {
        let away: Vec<usize> = (0..self.actors.len())
            .filter(|j| *j != i && !matches!(self.actors[*j].stage, Stage::Online | Stage::Starting))
            .collect();
        if !away.is_empty() && self.rng.below(3) < 2 {
            let j = away[usize::try_from(self.rng.below(away.len() as u64)).unwrap_or(0)];
            return self.actors[j].name.clone();
        }
        let others = self.actors.len() as u64 - 1;
        let j = usize::try_from(self.rng.below(others)).unwrap_or(0);
        let j = if j >= i { j + 1 } else { j };
        self.actors[j].name.clone()
    }

    fn send(&mut self, i: usize, kind: Kind) {
        let n = self.sent.len();
        let sent = Sent::new(&self.actors[i].name, kind, n);
        let line = sent.command(usize::try_from(self.rng.below(100)).unwrap_or(0));
        self.sent.push(sent);
        let run = self.actors[i].run_mut();
        run.sends.push(n);
        run.issued.push(run.client.stdout_len());
        run.client.send_line(&line);
    }

    /// Which messages were acknowledged, from every run's outcome lines, how many outcome
    /// lines could not be tied to a command, and which runs those were.
    pub fn acked(&self) -> (Vec<bool>, usize, Vec<String>) {
        let mut acked = vec![false; self.sent.len()];
        let (mut unmatched, mut notes) = (0, Vec::new());
        for (actor, (k, run)) in self.actors.iter().flat_map(|a| a.runs.iter().enumerate().map(move |r| (a, r))) {
            let (a, u) = ledger::attribute(&run.client.stdout_lines(), &run.issued, run.end);
            for (n, ack) in run.sends.iter().zip(a) {
                acked[*n] = ack;
            }
            if u > 0 {
                notes.push(format!(
                    "unmatched: {} run {k} ({:?}): {} sends, {u} outcome lines off",
                    actor.name,
                    run.end,
                    run.sends.len()
                ));
            }
            unmatched += u;
        }
        (acked, unmatched, notes)
    }

    /// Every `(name, stdout)` of every run.
    pub fn outputs(&self) -> Vec<(String, Vec<String>)> {
        let runs = self.actors.iter().flat_map(|a| a.runs.iter().map(move |r| (a, r)));
        runs.map(|(a, r)| (a.name.clone(), r.client.stdout_lines())).collect()
    }
}
