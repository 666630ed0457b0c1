//! A small Internet in network namespaces: a public segment with the server on it, and two
//! Linux NAT boxes, two clients on a LAN behind the first, one behind the second. Built with
//! iproute2 and iptables; needs root.
//!
//! ```text
//!   pub: br0 198.51.100.1/24 (the server)
//!    ├── nat1: 198.51.100.11 ── MASQUERADE ── lan1 10.0.1.1/24 ─┬─ a:  10.0.1.2
//!    │                                                          └─ a2: 10.0.1.3
//!    └── nat2: 198.51.100.12 ── MASQUERADE ── lan2 10.0.2.1/24 ─── b:  10.0.2.2
//! ```
//!
//! Each NAT forwards from its public side only what conntrack ties to a packet sent from inside
//! (ESTABLISHED, RELATED), like a home router. Optionally it drops every inbound packet that
//! would start a new conntrack entry before conntrack records it (without that, a peer's early
//! packet leaves an entry that makes MASQUERADE give the client's next flow to that peer another
//! port), its conntrack forgets idle UDP flows after a chosen time, and it can pick a new public
//! port for every flow (`--random`: endpoint-dependent mapping, a "hard" NAT).
//!
//! Every namespace name starts with a prefix unique to this process and network, so tests run in
//! parallel (and beside other runs on the machine); iptables waits for its lock, the only thing
//! it shares between namespaces. Every command is checked: a failure panics with the command and
//! its stderr, so a test that cannot build its network fails (it never skips). Dropping the
//! [`Network`] kills what still runs in its namespaces, then deletes them, also while a test
//! panics. It knows nothing of ChatApp beyond starting the server and clients in a namespace.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Client, Server, TABLE, WAIT, WELCOME, free_port, new_dir};

/// The server's address on the public segment.
pub const SERVER_IP: &str = "198.51.100.1";
/// The public address of the NAT in front of client site A.
pub const NAT1_PUBLIC: &str = "198.51.100.11";
/// The public address of the NAT in front of client site B.
pub const NAT2_PUBLIC: &str = "198.51.100.12";

/// The conntrack UDP timeouts, set per namespace in each NAT.
const UDP_TIMEOUT: &str = "net.netfilter.nf_conntrack_udp_timeout";
const UDP_TIMEOUT_STREAM: &str = "net.netfilter.nf_conntrack_udp_timeout_stream";

/// How the two NATs behave.
#[derive(Clone, Copy, Debug, Default)]
pub struct NatOptions {
    /// Drop, in mangle PREROUTING, every packet from the public side that would start a new
    /// conntrack entry, so it leaves no state behind.
    pub drop_new_inbound: bool,
    /// `nf_conntrack_udp_timeout` in whole seconds: how long a UDP flow seen one way only (or
    /// both ways for under two seconds) is remembered. `None` keeps the kernel's (30 s).
    pub udp_timeout_secs: Option<u32>,
    /// `nf_conntrack_udp_timeout_stream` in whole seconds: the same for a flow seen both ways for
    /// two seconds or more. `None` keeps the kernel's (120 s, or 180 s).
    pub udp_timeout_stream_secs: Option<u32>,
    /// A NAT that picks a new public port for every new flow (MASQUERADE `--random`): what a
    /// peer sees is never the port the server sees, and no punch opens a path.
    pub hard: bool,
}

/// A place in the network where a client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// 10.0.1.2, behind nat1 (public 198.51.100.11).
    A,
    /// 10.0.2.2, behind nat2 (public 198.51.100.12).
    B,
    /// 10.0.1.3, behind nat1 beside A, on the same LAN.
    A2,
}

impl Site {
    /// The public address of this site's NAT: the address the server and peers see.
    pub fn public_ip(self) -> &'static str {
        match self {
            Site::A | Site::A2 => NAT1_PUBLIC,
            Site::B => NAT2_PUBLIC,
        }
    }
}

/// The namespaces of one network, deleted (after what runs in them is killed) on drop.
pub struct Network {
    prefix: String,
    /// Namespaces created so far, in creation order.
    created: Vec<String>,
}

impl Network {
    /// Builds the network with `options` on both NATs; panics (with the failing command and its
    /// stderr) if any step fails.
    pub fn build(options: NatOptions) -> Network {
        // `ip netns add` makes /run/netns a shared mount the first time, racily: build one
        // network at a time in this process.
        static BUILDING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
        let mut net = Network { prefix: unique_prefix(), created: Vec::new() };
        net.build_public();
        net.build_nat(1, &[Site::A, Site::A2], options);
        net.build_nat(2, &[Site::B], options);
        net
    }

    /// The name of namespace `role` (`pub`, `nat1`, `nat2`, `a`, `b`) of this network.
    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    /// The namespace a client at `site` runs in.
    pub fn site_ns(&self, site: Site) -> String {
        self.ns(Self::role(site))
    }

    fn role(site: Site) -> &'static str {
        match site {
            Site::A => "a",
            Site::B => "b",
            Site::A2 => "a2",
        }
    }

    /// Starts the server on the public segment (listening on every address there, so on
    /// [`SERVER_IP`]) with extra options, and waits for its `listening on` line.
    pub fn start_server(&self, extra: &[&str]) -> Server {
        let ns = self.ns("pub");
        Server::start_wrapped_with(&["ip", "netns", "exec", &ns], extra)
    }

    /// Starts a client `name` at `site` (a fresh port and data directory), given [`SERVER_IP`]
    /// as the server's address, without waiting for anything.
    pub fn spawn_client(&self, site: Site, name: &str, server: &Server, extra: &[&str]) -> Client {
        let ns = self.site_ns(site);
        Client::spawn_wrapped(
            &["ip", "netns", "exec", &ns],
            SERVER_IP,
            name,
            server.port,
            free_port(),
            new_dir(),
            extra,
        )
    }

    /// Starts a client `name` at `site` and waits for its Welcome line and first table update.
    pub fn start_client(&self, site: Site, name: &str, server: &Server) -> Client {
        let client = self.spawn_client(site, name, server, &[]);
        client.expect_lines_unordered(&[WELCOME, TABLE], WAIT);
        client
    }

    /// Runs `args` inside namespace `role` of this network, checked.
    pub fn exec(&self, role: &str, args: &[&str]) -> String {
        let ns = self.ns(role);
        let mut all = vec!["netns", "exec", &ns];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    fn add_ns(&mut self, role: &str) {
        let ns = self.ns(role);
        run("ip", &["netns", "add", &ns]);
        self.created.push(ns);
        self.ip(role, &["link", "set", "lo", "up"]);
    }

    /// `ip -n <namespace role> args…`, checked.
    fn ip(&self, role: &str, args: &[&str]) {
        let ns = self.ns(role);
        let mut all = vec!["-n", &ns];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    fn build_public(&mut self) {
        self.add_ns("pub");
        self.ip("pub", &["link", "add", "br0", "type", "bridge"]);
        self.ip("pub", &["addr", "add", &format!("{SERVER_IP}/24"), "dev", "br0"]);
        self.ip("pub", &["link", "set", "br0", "up"]);
    }

    /// NAT `n` (public side `pub<n>` on the bridge, private side the bridge `lan<n>`) and the
    /// client namespaces of `sites` behind it (`eth0` each, 10.0.`n`.2 and up, default route
    /// through the NAT).
    fn build_nat(&mut self, n: u8, sites: &[Site], options: NatOptions) {
        let nat = format!("nat{n}");
        let (wan, lan, port) = (format!("pub{n}"), format!("lan{n}"), format!("p{n}"));
        self.add_ns(&nat);
        // Both ends are created directly in their namespaces: no name in the caller's.
        let nat_ns = self.ns(&nat);
        self.ip("pub", &["link", "add", &port, "type", "veth", "peer", "name", &wan, "netns", &nat_ns]);
        self.ip("pub", &["link", "set", &port, "master", "br0", "up"]);
        self.ip(&nat, &["addr", "add", &format!("{}/24", sites[0].public_ip()), "dev", &wan]);
        self.ip(&nat, &["link", "set", &wan, "up"]);
        self.ip(&nat, &["link", "add", &lan, "type", "bridge"]);
        self.ip(&nat, &["addr", "add", &format!("10.0.{n}.1/24"), "dev", &lan]);
        self.ip(&nat, &["link", "set", &lan, "up"]);
        for (i, site) in sites.iter().enumerate() {
            let host = Self::role(*site);
            self.add_ns(host);
            let (host_ns, side) = (self.ns(host), format!("h{host}"));
            self.ip(&nat, &["link", "add", &side, "type", "veth", "peer", "name", "eth0", "netns", &host_ns]);
            self.ip(&nat, &["link", "set", &side, "master", &lan, "up"]);
            self.ip(host, &["addr", "add", &format!("10.0.{n}.{}/24", i + 2), "dev", "eth0"]);
            self.ip(host, &["link", "set", "eth0", "up"]);
            self.ip(host, &["route", "add", "default", "via", &format!("10.0.{n}.1")]);
        }

        self.exec(&nat, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let iptables = |rule: &[&str]| {
            let mut args = vec!["iptables", "-w"];
            args.extend_from_slice(rule);
            self.exec(&nat, &args);
        };
        let mut masquerade = vec!["-t", "nat", "-A", "POSTROUTING", "-o", &wan, "-j", "MASQUERADE"];
        if options.hard {
            masquerade.push("--random");
        }
        iptables(&masquerade);
        iptables(&["-A", "FORWARD", "-i", &wan, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]);
        iptables(&["-A", "FORWARD", "-i", &wan, "-j", "DROP"]);
        if options.drop_new_inbound {
            iptables(&[
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
                "-i",
                &wan,
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-j",
                "DROP",
            ]);
        }
        // After the rules: they load conntrack, whose sysctls then exist in this namespace.
        for (key, secs) in
            [(UDP_TIMEOUT, options.udp_timeout_secs), (UDP_TIMEOUT_STREAM, options.udp_timeout_stream_secs)]
        {
            if let Some(secs) = secs {
                self.set_sysctl(&nat, key, secs);
            }
        }
    }

    /// Sets `key` to `value` in namespace `role` and reads it back there.
    fn set_sysctl(&self, role: &str, key: &str, value: u32) {
        self.exec(role, &["sysctl", "-qw", &format!("{key}={value}")]);
        let read = self.exec(role, &["sysctl", "-n", key]);
        if read.trim() != value.to_string() {
            panic!("{key} in {} reads {:?} after being set to {value}", self.ns(role), read.trim());
        }
    }

    /// Kills every process still in our namespaces and waits until they are gone, then deletes
    /// the namespaces; returns what failed.
    fn teardown(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        for ns in &self.created {
            if let Err(e) = kill_all_in(ns) {
                failures.push(e);
            }
        }
        for ns in self.created.drain(..).rev() {
            if let Err(e) = try_run("ip", &["netns", "del", &ns]) {
                failures.push(e);
            }
        }
        failures
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let failures = self.teardown();
        if failures.is_empty() {
            return;
        }
        let msg = format!("tearing down network {}:\n{}", self.prefix, failures.join("\n"));
        if thread::panicking() {
            eprintln!("{msg}");
        } else {
            panic!("{msg}");
        }
    }
}

/// SIGKILLs what runs in namespace `ns` until nothing does (within a few seconds).
fn kill_all_in(ns: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = try_run("ip", &["netns", "pids", ns])?;
        let pids: Vec<&str> = listed.split_whitespace().collect();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("processes {pids:?} still run in {ns}"));
        }
        // One may exit between the listing and the kill: the next listing is the check.
        let mut args = vec!["-KILL"];
        args.extend_from_slice(&pids);
        let _ = try_run("kill", &args);
        thread::sleep(Duration::from_millis(20));
    }
}

/// A namespace name prefix no other network of this process, nor of another process alive
/// now (or, very likely, one that died leaving namespaces behind), uses.
fn unique_prefix() -> String {
    static RUN_TAG: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let tag = RUN_TAG.get_or_init(|| {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32)) & 0xffff
    });
    format!("chat{}x{tag:04x}n{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs `program args…`; panics with the command and its stderr unless it exits 0.
fn run(program: &str, args: &[&str]) -> String {
    try_run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `program args…`; its stdout if it exits 0, else the command, status and stderr.
fn try_run(program: &str, args: &[&str]) -> Result<String, String> {
    let shown = format!("`{program} {}`", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{shown} could not start: {e} (the network tests need iproute2 and iptables, as root)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[test]
fn dropping_a_network_kills_what_runs_in_it_and_deletes_its_namespaces_even_in_a_panic() {
    let mut sleeper = None;
    let mut names = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let net = Network::build(NatOptions::default());
        names = ["pub", "nat1", "nat2", "a", "a2", "b"].map(|r| net.ns(r)).to_vec();
        let ns = net.ns("a");
        let child = Command::new("ip").args(["netns", "exec", &ns, "sleep", "600"]).spawn();
        sleeper = Some(child.expect("start sleep in a namespace"));
        let deadline = Instant::now() + WAIT;
        while run("ip", &["netns", "pids", &ns]).trim().is_empty() {
            assert!(Instant::now() < deadline, "sleep never showed up in {ns}");
            thread::sleep(Duration::from_millis(10));
        }
        panic!("a test fails with its network up");
    }));
    assert!(outcome.is_err(), "the test panicked");
    let status = sleeper.as_mut().map(|c| c.wait().expect("reap sleep"));
    assert!(status.is_some_and(|s| !s.success()), "the process in the network was killed, got {status:?}");
    assert_eq!(names.len(), 6, "all six namespaces were built");
    let left = run("ip", &["netns", "list"]);
    for name in &names {
        assert!(!left.lines().any(|l| l.split_whitespace().next() == Some(name)), "{name} is left in {left}");
    }
}

#[test]
fn conntrack_timeouts_are_set_in_each_nat_alone() {
    // The first network's rules load conntrack (on a fresh machine its sysctls appear only then).
    let plain = Network::build(NatOptions::default());
    let before = [UDP_TIMEOUT, UDP_TIMEOUT_STREAM].map(|key| run("sysctl", &["-n", key]));
    let short = Network::build(NatOptions {
        udp_timeout_secs: Some(2),
        udp_timeout_stream_secs: Some(3),
        ..NatOptions::default()
    });
    for (key, want, before) in [(UDP_TIMEOUT, "2", &before[0]), (UDP_TIMEOUT_STREAM, "3", &before[1])] {
        for nat in ["nat1", "nat2"] {
            assert_eq!(short.exec(nat, &["sysctl", "-n", key]).trim(), want, "{key} in {nat}");
            assert_ne!(plain.exec(nat, &["sysctl", "-n", key]).trim(), want, "{key} in another network's {nat}");
        }
        assert_eq!(&run("sysctl", &["-n", key]), before, "{key} of the machine");
    }
}
