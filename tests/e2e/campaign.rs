//! The reliability campaign (issue 17): six real clients send tagged messages (direct, to online
//! and offline peers, `send_all`, `dereg`/`reg` cycles) while one kind of fault hits them, then
//! everything is healed, every client registers again and fetches, and the checker verifies
//! from the clients' output alone that every acknowledged message was shown by each recipient
//! it was owed to, and nothing was shown twice by one recipient across all its runs.
//!
//! Each scenario prints one line `campaign <scenario> sent <n> acked <n> lost <n> doubled <n>`
//! (and the checker's own errors: outcome lines that could not be tied to their command,
//! messages shown by a client they were not for), appends it to the file named by
//! `CHATAPP_CAMPAIGN_REPORT` if set, and fails on any loss, double or checker error. The
//! traffic lasts `CHATAPP_CAMPAIGN_SECS` seconds per scenario (20 by default, for CI), from the
//! seed `CHATAPP_CAMPAIGN_SEED` (else the clock; it is printed). A failing scenario dumps every
//! process's output, or, with `CHATAPP_CAMPAIGN_LOGS` naming a directory, writes the clients'
//! there.
//!
//! Counting: `sent` and `acked` count messages; `lost` and `doubled` count deliveries (a
//! message and one recipient). A `send_all` is owed to every other client of the scenario: all
//! register before the first message, and a member stays a member while offline (its copy is
//! stored), so each was a member when the server took it.

mod driver;
mod ledger;

use std::io::Write as _;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_pg::testing::{TestDb, dedicated};

use self::driver::{Actor, FetchKill, Rng, Stage, World};
use crate::harness::{Server, free_port};
use crate::relay::{Faults, Relay};

const NAMES: [&str; 6] = ["ana", "bo", "cy", "di", "ed", "flo"];
/// How long the clients have to register at the start, to settle after the faults, to register
/// again, and to show what they are owed.
const PHASE: Duration = Duration::from_secs(60);
/// The driver's step: how often it looks at the clients' output and gives them commands.
const STEP: Duration = Duration::from_millis(10);

/// One kind of fault, hitting the servers, the database, the network or the clients.
trait Chaos {
    /// The server port a new run of actor `i` is given.
    fn port_for(&self, i: usize) -> u16;
    /// Makes actor `i` (a scenario may put something in front of it).
    fn actor(&mut self, i: usize) -> Actor {
        Actor::new(NAMES[i], self.port_for(i))
    }
    /// One step: injects a fault when one is due.
    fn tick(&mut self, now: Instant, world: &mut World);
    /// Ends every fault: whatever was killed runs again, nothing drops.
    fn heal(&mut self, world: &mut World);
    /// How many faults were injected.
    fn count(&self, world: &World) -> usize;
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// The seed of this scenario's traffic and faults: one per test (each runs on its own thread),
/// so the printed seed replays both.
fn seed() -> u64 {
    thread_local! {
        static SEED: u64 = env_u64("CHATAPP_CAMPAIGN_SEED")
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    }
    SEED.with(|s| *s)
}

/// Steps every actor (and the traffic, if `traffic`) until `done` holds, `PHASE` at most; says
/// what did not happen in time (the scenario then fails, after its table line).
fn settle(
    world: &mut World,
    chaos: &mut dyn Chaos,
    what: &str,
    traffic: bool,
    done: impl Fn(&World) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + PHASE;
    while !done(world) {
        if Instant::now() >= deadline {
            let stuck: Vec<String> = world.actors.iter().map(|a| format!("{} {:?}", a.name, a.stage)).collect();
            return Some(format!("{what} not within {PHASE:?}: {}", stuck.join(", ")));
        }
        step(world, chaos, traffic);
    }
    None
}

fn step(world: &mut World, chaos: &mut dyn Chaos, traffic: bool) {
    let now = Instant::now();
    for i in 0..world.actors.len() {
        world.actors[i].settle(chaos.port_for(i));
        if traffic {
            world.traffic(i, now);
        } else {
            world.actors[i].come_back();
        }
    }
    thread::sleep(STEP);
}

fn all_online(world: &World) -> bool {
    world.actors.iter().all(|a| a.stage == Stage::Online)
}

fn quiet(world: &World) -> bool {
    world.actors.iter().all(|a| a.stage == Stage::Online && a.open_sends() == 0)
}

fn run(scenario: &str, chaos: &mut dyn Chaos) {
    let seed = seed();
    let secs = env_u64("CHATAPP_CAMPAIGN_SECS").unwrap_or(20);
    let actors = (0..NAMES.len()).map(|i| chaos.actor(i)).collect();
    let mut world = World { actors, sent: Vec::new(), rng: Rng(seed) };
    if let Some(stuck) = settle(&mut world, chaos, "the first registrations", false, all_online) {
        panic!("campaign {scenario}: {stuck}");
    }

    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        chaos.tick(Instant::now(), &mut world);
        step(&mut world, chaos, true);
    }

    chaos.heal(&mut world);
    let mut stuck = settle(&mut world, chaos, "every answer after the faults", false, quiet);
    if stuck.is_none() {
        // Every client registers again, and so fetches what was stored for it.
        let now = Instant::now();
        world.actors.iter_mut().for_each(|a| a.leave(now, Duration::ZERO));
        stuck = settle(&mut world, chaos, "a dereg and reg of every client", false, all_online);
    }
    let deadline = Instant::now() + PHASE;
    let tally = loop {
        let (acked, unmatched, mut notes) = world.acked();
        let outputs = world.outputs();
        let shown = ledger::shown(outputs.iter().map(|(n, l)| (n.as_str(), &l[..])));
        let mut tally = ledger::Tally { unmatched, ..ledger::judge(&world.sent, &acked, &world.names(), &shown) };
        notes.truncate(10);
        tally.examples.extend(notes);
        if tally.lost == 0 || Instant::now() >= deadline {
            break tally;
        }
        let next = Instant::now() + Duration::from_millis(500);
        while Instant::now() < next {
            step(&mut world, chaos, false);
        }
    };
    report(scenario, seed, secs, &tally, chaos.count(&world), &world, stuck);
}

fn report(
    scenario: &str,
    seed: u64,
    secs: u64,
    t: &ledger::Tally,
    faults: usize,
    world: &World,
    stuck: Option<String>,
) {
    let runs: usize = world.actors.iter().map(|a| a.runs.len()).sum();
    let line = format!(
        "campaign {scenario} sent {} acked {} lost {} doubled {} (unmatched {}, stray {}; {faults} faults, \
         {runs} client runs, {secs} s, seed {seed})",
        t.sent, t.acked, t.lost, t.doubled, t.unmatched, t.stray
    );
    println!("{line}");
    if let Ok(path) = std::env::var("CHATAPP_CAMPAIGN_REPORT") {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
        if let Err(e) = file.and_then(|mut f| writeln!(f, "{line}")) {
            eprintln!("campaign: cannot append to {path}: {e}");
        }
    }
    if !t.ok() || stuck.is_some() {
        save_outputs(scenario, world);
    }
    assert!(t.sent > 0 && t.acked > 0, "{line}: no traffic");
    assert!(t.ok(), "{line}\n{}", t.examples.join("\n"));
    if let Some(stuck) = stuck {
        panic!("{line}: {stuck}");
    }
}

/// With `CHATAPP_CAMPAIGN_LOGS` naming a directory, writes each client run's stdout there
/// (`<scenario>.<name>.<run>.log`) instead of into the failure's dump (a long run's output is
/// too much for a terminal).
fn save_outputs(scenario: &str, world: &World) {
    let Ok(dir) = std::env::var("CHATAPP_CAMPAIGN_LOGS") else { return };
    for actor in &world.actors {
        for (k, run) in actor.runs.iter().enumerate() {
            let path = std::path::Path::new(&dir).join(format!("{scenario}.{}.{k}.log", actor.name));
            let text = run.client.stdout_lines().join("\n");
            match std::fs::write(&path, text + "\n") {
                Ok(()) => run.client.skip_dump(),
                Err(e) => eprintln!("campaign: cannot write {}: {e}", path.display()),
            }
        }
    }
    eprintln!("campaign {scenario}: the clients' output is in {dir}");
}

/// The file-store server SIGKILLed and restarted (same port, same data directory) every 2-5 s.
struct ServerKills {
    server: Server,
    rng: Rng,
    next: Instant,
    count: usize,
}

impl Chaos for ServerKills {
    fn port_for(&self, _: usize) -> u16 {
        self.server.port
    }
    fn tick(&mut self, now: Instant, _: &mut World) {
        if now >= self.next {
            self.server.restart();
            self.count += 1;
            self.next = now + self.rng.between(Duration::from_secs(2), Duration::from_secs(5));
        }
    }
    fn heal(&mut self, _: &mut World) {}
    fn count(&self, _: &World) -> usize {
        self.count
    }
}

#[test]
fn file_server_killed() {
    let server = Server::start_with(&["--keepalive-ms", "1000"]);
    let next = Instant::now() + Duration::from_secs(2);
    run("file_server_killed", &mut ServerKills { server, rng: Rng(seed()), next, count: 0 });
}

/// Two nodes of one database; one of them SIGKILLed for 1-3 s, every 4-7 s, the two in turn.
struct NodeKills {
    nodes: [Server; 2],
    down: Option<(usize, Instant)>,
    rng: Rng,
    next: Instant,
    count: usize,
    _db: TestDb,
}

fn node(db: &TestDb) -> Server {
    Server::start_with(&["--store", db.url(), "--keepalive-ms", "500"])
}

impl Chaos for NodeKills {
    fn port_for(&self, i: usize) -> u16 {
        let home = i % 2;
        let up = if self.down.is_some_and(|(k, _)| k == home) { 1 - home } else { home };
        self.nodes[up].port
    }
    fn tick(&mut self, now: Instant, _: &mut World) {
        match self.down {
            Some((k, until)) if now >= until => {
                self.nodes[k].restart();
                self.down = None;
            }
            None if now >= self.next => {
                let k = self.count % 2;
                self.nodes[k].kill();
                self.count += 1;
                self.down = Some((k, now + self.rng.between(Duration::from_secs(1), Duration::from_secs(3))));
                self.next = now + self.rng.between(Duration::from_secs(4), Duration::from_secs(7));
            }
            _ => {}
        }
    }
    fn heal(&mut self, _: &mut World) {
        if let Some((k, _)) = self.down.take() {
            self.nodes[k].restart();
        }
    }
    fn count(&self, _: &World) -> usize {
        self.count
    }
}

#[test]
fn node_killed() {
    let db = dedicated();
    let nodes = [node(&db), node(&db)];
    let next = Instant::now() + Duration::from_secs(2);
    run("node_killed", &mut NodeKills { nodes, down: None, rng: Rng(seed()), next, count: 0, _db: db });
}

/// Two nodes of one database; PostgreSQL restarted every 4-7 s, `-m fast` and `-m immediate`
/// in turn (on a thread, while the traffic goes on).
struct PgRestarts {
    nodes: [Server; 2],
    db: Arc<TestDb>,
    restarting: Option<JoinHandle<Result<(), String>>>,
    rng: Rng,
    next: Instant,
    count: usize,
}

impl PgRestarts {
    fn join(&mut self) {
        if let Some(handle) = self.restarting.take() {
            handle.join().expect("the restart thread").expect("restart PostgreSQL");
        }
    }
}

impl Chaos for PgRestarts {
    fn port_for(&self, i: usize) -> u16 {
        self.nodes[i % 2].port
    }
    fn tick(&mut self, now: Instant, _: &mut World) {
        if self.restarting.as_ref().is_some_and(JoinHandle::is_finished) {
            self.join();
        }
        if self.restarting.is_none() && now >= self.next {
            let (db, immediate) = (Arc::clone(&self.db), self.count % 2 == 1);
            self.restarting =
                Some(thread::spawn(move || if immediate { db.restart_immediate() } else { db.restart() }));
            self.count += 1;
            self.next = now + self.rng.between(Duration::from_secs(4), Duration::from_secs(7));
        }
    }
    fn heal(&mut self, _: &mut World) {
        self.join();
    }
    fn count(&self, _: &World) -> usize {
        self.count
    }
}

#[test]
fn postgres_restarted() {
    let db = Arc::new(dedicated());
    let nodes = [node(&db), node(&db)];
    let next = Instant::now() + Duration::from_secs(2);
    let mut chaos = PgRestarts { nodes, db, restarting: None, rng: Rng(seed()), next, count: 0 };
    run("postgres_restarted", &mut chaos);
}

/// Every 2-4 s, a client that is online leaves for 2-4 s (the others' messages for it are
/// stored meanwhile), comes back, and is SIGKILLed once or twice after 1-15 of its stored
/// messages were shown, each next run fetching again with the same data directory; or, one
/// time in three, an online client is SIGKILLed and restarted at once.
struct ClientKills {
    server: Server,
    rng: Rng,
    next: Instant,
    plain: usize,
}

impl Chaos for ClientKills {
    fn port_for(&self, _: usize) -> u16 {
        self.server.port
    }
    fn tick(&mut self, now: Instant, world: &mut World) {
        if now < self.next {
            return;
        }
        self.next = now + self.rng.between(Duration::from_secs(2), Duration::from_secs(4));
        let ready: Vec<usize> = (0..world.actors.len())
            .filter(|i| world.actors[*i].stage == Stage::Online && world.actors[*i].kill_in_fetch.is_none())
            .collect();
        let Some(&i) = ready.get(usize::try_from(self.rng.below(ready.len() as u64)).unwrap_or(0)) else { return };
        let actor = &mut world.actors[i];
        if self.rng.below(3) == 0 {
            actor.restart(self.server.port);
            self.plain += 1;
        } else if actor.open_sends() == 0 {
            let from = actor.run().client.stdout_len();
            let shown = 1 + usize::try_from(self.rng.below(15)).unwrap_or(0);
            let times = 1 + u32::from(self.rng.below(2) == 1);
            let after = self.rng.between(Duration::ZERO, Duration::from_millis(30));
            actor.kill_in_fetch = Some(FetchKill { from, shown, times, after });
            actor.leave(now, self.rng.between(Duration::from_secs(2), Duration::from_secs(4)));
        }
    }
    fn heal(&mut self, world: &mut World) {
        world.actors.iter_mut().for_each(|a| a.kill_in_fetch = None);
    }
    fn count(&self, world: &World) -> usize {
        self.plain + world.actors.iter().map(|a| a.kills).sum::<usize>()
    }
}

// Known failing (issue 17 stays open for it): about one run in four shows one delivery twice
// (one in two when the kill came within a millisecond of the line the harness counted), each the
// last line a killed run printed, shown again by the next run's fetch: the client prints a line,
// then records it (chat-client `driver::flush`), and a SIGKILL between the two writes shows it
// again. Run it by name with `--ignored` to see the figure.
#[test]
#[ignore = "known doubles across a kill between a line and its record (issue 17)"]
fn clients_killed_mid_fetch() {
    let server = Server::start_with(&["--keepalive-ms", "1000"]);
    let next = Instant::now() + Duration::from_secs(1);
    run("clients_killed_mid_fetch", &mut ClientKills { server, rng: Rng(seed()), next, plain: 0 });
}

/// Every client behind its own relay that drops 10 % of the datagrams, duplicates 10 % and
/// delays each by up to 40 ms (so reorders them), both to the server and to its peers.
struct Lossy {
    server: Server,
    relays: Vec<Relay>,
    seed: u64,
}

impl Chaos for Lossy {
    fn port_for(&self, i: usize) -> u16 {
        self.relays[i].server_proxy.port()
    }
    fn actor(&mut self, i: usize) -> Actor {
        let port = free_port();
        let loopback = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let faults = Faults { drop: 0.1, duplicate: 0.1, max_delay: Duration::from_millis(40), lose_first_sent: 0 };
        let seed = self.seed.wrapping_add(i as u64);
        self.relays.push(Relay::start(loopback(port), loopback(self.server.port), faults, faults, seed));
        Actor::with(NAMES[i], port, self.port_for(i))
    }
    fn tick(&mut self, _: Instant, _: &mut World) {}
    fn heal(&mut self, _: &mut World) {
        self.relays.iter().for_each(Relay::heal);
    }
    /// The datagrams dropped or duplicated.
    fn count(&self, _: &World) -> usize {
        self.relays.iter().map(|r| usize::try_from(r.faults()).unwrap_or(usize::MAX)).sum()
    }
}

#[test]
fn loss_duplication_reordering() {
    let server = Server::start_with(&["--keepalive-ms", "1000"]);
    run("loss_duplication_reordering", &mut Lossy { server, relays: Vec::new(), seed: seed() });
}

/// Every process in a network namespace of its own, whose iptables drop 10 % of the UDP
/// datagrams arriving (`statistic`, in INPUT) and duplicate 10 % of those sent (`TEE` to
/// 127.0.0.1, in mangle OUTPUT): the kernel's loss and duplication on every path at once. (No
/// reordering: this kernel has no netem; the relays' scenario reorders.)
struct KernelLoss {
    server: Server,
    ns: Netns,
    /// The datagrams the rules dropped or duplicated, read when they are removed.
    hits: usize,
}

/// A network namespace with its loopback up, deleted on drop (after the processes in it, which
/// the scenario's world owns and drops first).
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ns = Netns(format!("chatcmp{}x{n}", std::process::id()));
        let _ = ns.ip(&["netns", "add", &ns.0]);
        let _ = ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn wrapper(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.0]
    }

    /// Runs `args` in the namespace; returns its stdout.
    fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.0];
        all.extend_from_slice(args);
        self.ip(&all)
    }

    fn ip(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("ip").args(args).output().expect("run ip (iproute2; as root)");
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The packets the rules of `chain` (in `table`) matched, from `iptables -L -v -x`.
    fn matched(&self, table: &str, chain: &str) -> usize {
        let listing = self.exec(&["iptables", "-w", "-t", table, "-L", chain, "-v", "-n", "-x"]);
        listing.lines().skip(2).filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok()).sum()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

impl Chaos for KernelLoss {
    fn port_for(&self, _: usize) -> u16 {
        self.server.port
    }
    fn actor(&mut self, i: usize) -> Actor {
        Actor::through(&self.ns.wrapper(), NAMES[i], free_port(), self.server.port)
    }
    fn tick(&mut self, _: Instant, _: &mut World) {}
    fn heal(&mut self, _: &mut World) {
        self.hits = self.ns.matched("filter", "INPUT") + self.ns.matched("mangle", "OUTPUT");
        let _ = self.ns.exec(&["iptables", "-w", "-F", "INPUT"]);
        let _ = self.ns.exec(&["iptables", "-w", "-t", "mangle", "-F", "OUTPUT"]);
    }
    fn count(&self, _: &World) -> usize {
        self.hits
    }
}

#[test]
fn kernel_loss_and_duplication() {
    let ns = Netns::new();
    let random = ["-m", "statistic", "--mode", "random", "--probability", "0.1"];
    let mut drop = vec!["iptables", "-w", "-A", "INPUT", "-p", "udp"];
    drop.extend_from_slice(&random);
    drop.extend_from_slice(&["-j", "DROP"]);
    let _ = ns.exec(&drop);
    let mut tee = vec!["iptables", "-w", "-t", "mangle", "-A", "OUTPUT", "-p", "udp"];
    tee.extend_from_slice(&random);
    tee.extend_from_slice(&["-j", "TEE", "--gateway", "127.0.0.1"]);
    let _ = ns.exec(&tee);
    let server = Server::start_wrapped_with(&ns.wrapper(), &["--keepalive-ms", "1000"]);
    run("kernel_loss_and_duplication", &mut KernelLoss { server, ns, hits: 0 });
}
