//! The multi-process harness: starts the real `chatapp` binary as child processes, drains their
//! stdout and stderr on threads the whole time, and waits for lines with deadlines.
//!
//! Every wait fails fast when the child has exited, and every failure panics with the child's
//! full captured output; a [`Proc`] dropped while its thread panics prints its output too, so a
//! failing test explains itself. Nothing here knows the wire format: tests talk to the product
//! only through its command line, its stdin and its output lines (and raw UDP for garbage), and
//! attack the server through its own encrypted channel ([`Attacker`], in `secure`).
//! Every child runs in a time zone the test chose (UTC unless it names a [`Zone`]), never in
//! the zone of the machine or of the test run.

use std::collections::HashSet;
use std::net::UdpSocket;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

pub mod browser;
mod netns;
mod proc;
mod secure;

pub use netns::{NAT1_PUBLIC, NAT2_PUBLIC, NatOptions, Network, Site};
pub use proc::Proc;
pub use secure::{Attacker, Cleartext, logged_server_key};

/// The time zone a client runs in: the `TZ` it is given and that zone's offset from UTC.
///
/// Clients show stored-message times in their local time, so the harness pins every child's
/// zone (UTC unless a test names another) instead of inheriting the zone of the test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone {
    /// The value of the child's `TZ`.
    pub tz: &'static str,
    /// Seconds east of UTC, all year (the zones here have no daylight saving time).
    pub offset_secs: i64,
}

impl Zone {
    /// UTC, the zone of every child unless a test picks another.
    pub const UTC: Zone = Zone { tz: proc::UTC_TZ, offset_secs: 0 };
    /// China Standard Time: UTC+8 all year since 1991. Needs the tz database (as CI's
    /// `TZ=Asia/Shanghai` run does).
    pub const SHANGHAI: Zone = Zone { tz: "Asia/Shanghai", offset_secs: 8 * 3600 };

    /// Seconds since the epoch of a `YYYY-MM-DD HH:MM:SS` wall-clock time in this zone.
    pub fn epoch_seconds(self, stamp: &str) -> Option<i64> {
        utc_seconds(stamp).map(|local| local - self.offset_secs)
    }
}

/// The default deadline of one wait.
pub const WAIT: Duration = Duration::from_secs(10);

/// Printed by a client once the server registered it (at start and after `reg`).
pub const WELCOME: &str = ">>> [Welcome, You are registered.]";
/// Printed when a registration or `dereg` (or save) got no answer from the server.
pub const NOT_RESPONDING: &str = ">>> [Server not responding]";
/// Printed right before a client exits with code 1.
pub const EXITING: &str = ">>> [Exiting]";
/// Printed whenever a client replaces its local table.
pub const TABLE: &str = ">>> [Client table updated.]";
/// Printed by the sender of a message the server stored.
pub const SAVED: &str = ">>> [Messages received by the server and saved]";
/// Printed after a successful `dereg`.
pub const OFFLINE_BYE: &str = ">>> [You are Offline. Bye.]";
/// Printed after registration when stored messages follow.
pub const HAVE_MESSAGES: &str = ">>> [You have messages]";
/// Printed by the sender of a `send_all` the server acknowledged.
pub const CHANNEL_ACKED: &str = ">>> [Message received by Server.]";
/// Printed by the sender of a `send_all` the server never acknowledged (with the dot).
pub const CHANNEL_NOT_RESPONDING: &str = ">>> [Server not responding.]";

/// `>>> [Message received by <name>.]`
pub fn acked_by(name: &str) -> String {
    format!(">>> [Message received by {name}.]")
}

/// `>>> [No ACK from <name>, message sent to server.]`
pub fn no_ack_from(name: &str) -> String {
    format!(">>> [No ACK from {name}, message sent to server.]")
}

/// `>>> <from>: <text>`, a direct message shown live.
pub fn chat(from: &str, text: &str) -> String {
    format!(">>> {from}: {text}")
}

/// `>>> [Channel_Message <from>: <text>]`, a channel message shown live.
pub fn channel(from: &str, text: &str) -> String {
    format!(">>> [Channel_Message {from}: {text}]")
}

/// The path of the `chatapp` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chatapp")
}

/// A UDP port (1024 or above) that is free now and that this test binary never handed out before,
/// so tests running in parallel do not pick the same port.
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Mutex::default);
    for _ in 0..1000 {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket to port 0");
        let port = sock.local_addr().expect("local address of a bound socket").port();
        drop(sock);
        let mut set = handed_out.lock().unwrap_or_else(PoisonError::into_inner);
        if port >= 1024 && set.insert(port) {
            return port;
        }
    }
    panic!("found no free UDP port in 1000 tries");
}

/// A fresh data directory, shareable between a client and its restart.
pub fn new_dir() -> Arc<TempDir> {
    Arc::new(TempDir::new().expect("create a temporary data directory"))
}

/// A running registration server on a free port, with its own data directory.
pub struct Server {
    proc: Proc,
    /// The UDP port the server listens on.
    pub port: u16,
    dir: TempDir,
    /// The options it was started with, kept for a restart.
    extra: Vec<String>,
    /// Its database, when the scenarios run over PostgreSQL (see [`STORE_ENV`]).
    _db: Option<chat_pg::testing::TestDb>,
}

/// With this variable set to `postgres`, every server the scenarios start without a `--store`
/// of their own keeps its table and messages in a fresh PostgreSQL database: CI runs the
/// scenarios once so, to prove SPEC 2–10 with either backend.
pub const STORE_ENV: &str = "CHATAPP_E2E_STORE";

/// Whether the scenarios run their servers over PostgreSQL (see [`STORE_ENV`]).
pub fn over_postgres() -> bool {
    std::env::var(STORE_ENV).is_ok_and(|v| v == "postgres")
}

/// A fresh database and the options that put a server on it, when [`STORE_ENV`] asks for one
/// and `extra` names no store.
fn store_for(extra: &[&str]) -> (Option<chat_pg::testing::TestDb>, Vec<String>) {
    if !over_postgres() || extra.contains(&"--store") {
        return (None, Vec::new());
    }
    let db = chat_pg::testing::database();
    let args = vec!["--store".to_owned(), db.url().to_owned()];
    (Some(db), args)
}

impl Server {
    /// The server's data directory (to look at, or damage, its files).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Starts a server with default options and waits for its `listening on` line.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server with extra options; retries on a fresh port if the process exits before
    /// it is listening (another program took the port in between).
    pub fn start_with(extra: &[&str]) -> Server {
        Self::start_through(&[], extra)
    }

    /// Starts a server through `wrapper`: the command line is `wrapper`, then the `chatapp`
    /// binary and its options, the last of them the data directory (see [`Proc::spawn_wrapped`]).
    pub fn start_wrapped(wrapper: &[&str]) -> Server {
        Self::start_through(wrapper, &[])
    }

    /// Starts a server through `wrapper` (as [`Server::start_wrapped`]) with extra options.
    pub fn start_wrapped_with(wrapper: &[&str], extra: &[&str]) -> Server {
        Self::start_through(wrapper, extra)
    }

    fn start_through(wrapper: &[&str], extra: &[&str]) -> Server {
        let (db, store) = store_for(extra);
        let mut db = db;
        let extra: Vec<&str> = extra.iter().copied().chain(store.iter().map(String::as_str)).collect();
        let extra = &extra[..];
        for attempt in 1..=3 {
            let port = free_port();
            let dir = TempDir::new().expect("create the server's data directory");
            let port_arg = port.to_string();
            let dir_arg = dir.path().to_str().expect("a UTF-8 temp path").to_owned();
            let mut args = vec!["-s", &port_arg, "--data-dir", &dir_arg];
            args.extend_from_slice(extra);
            let proc = Proc::spawn_wrapped(format!("server:{port}"), wrapper, &args);
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                let listening =
                    proc.stderr_lines().iter().chain(proc.stdout_lines().iter()).any(|l| l.contains("listening on"));
                if listening {
                    let extra = extra.iter().map(|s| (*s).to_owned()).collect();
                    return Server { proc, port, dir, extra, _db: db.take() };
                }
                if proc.exit_status().is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            if attempt == 3 || proc.exit_status().is_none() {
                if proc.exit_status().is_some() {
                    proc.wait_exit(WAIT);
                }
                proc.fail("never logged \"listening on\"");
            }
        }
        unreachable!("the loop returns or fails")
    }
}

impl Server {
    /// Starts the server again on the same port, data directory and options (after it was
    /// killed) and waits for its `listening on` line.
    pub fn restart(&mut self) {
        self.proc.kill();
        let port = self.port.to_string();
        let dir = self.dir.path().to_str().expect("a UTF-8 temp path").to_owned();
        let mut args = vec!["-s", &port, "--data-dir", &dir];
        args.extend(self.extra.iter().map(String::as_str));
        self.proc = Proc::spawn(format!("server:{port} (restarted)"), &args);
        self.proc.expect_contains("listening on", WAIT);
    }
}

impl Deref for Server {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// One row of a client's `list` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The client's name.
    pub name: String,
    /// Its IP address as printed.
    pub ip: String,
    /// Its port.
    pub port: u16,
    /// `online` (true) or `offline` (false).
    pub online: bool,
}

/// Parses `>>> <name> <ip> <port> <online|offline>` (any whitespace padding).
pub fn parse_row(line: &str) -> Option<Row> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [">>>", name, ip, port, status] = words.as_slice() else {
        return None;
    };
    let online = match *status {
        "online" => true,
        "offline" => false,
        _ => return None,
    };
    Some(Row { name: (*name).to_owned(), ip: (*ip).to_owned(), port: port.parse().ok()?, online })
}

/// A running client process with its name, port and data directory.
pub struct Client {
    proc: Proc,
    /// The client's name.
    pub name: String,
    /// The UDP port the client listens on.
    pub port: u16,
    /// The client's data directory (kept for a restart).
    pub dir: Arc<TempDir>,
    /// The time zone it runs in (kept for a restart).
    pub zone: Zone,
    /// Where it runs and which server address it was given (kept for a restart).
    place: Place,
}

/// How a client is started besides its name, ports and directory: the command it runs through
/// (empty for none) and the server IP it is given.
#[derive(Clone, Debug)]
struct Place {
    wrapper: Vec<String>,
    server_ip: String,
}

impl Place {
    fn loopback() -> Place {
        Place { wrapper: Vec::new(), server_ip: "127.0.0.1".to_owned() }
    }
}

impl Client {
    /// Starts a client process in UTC without waiting for anything.
    pub fn spawn(name: &str, server_port: u16, port: u16, dir: Arc<TempDir>, extra: &[&str]) -> Client {
        Client::spawn_in(Zone::UTC, name, server_port, port, dir, extra)
    }

    /// Starts a client process in time zone `zone` without waiting for anything.
    pub fn spawn_in(zone: Zone, name: &str, server_port: u16, port: u16, dir: Arc<TempDir>, extra: &[&str]) -> Client {
        Client::spawn_at(Place::loopback(), zone, name, server_port, port, dir, extra)
    }

    /// Starts a client process in UTC through `wrapper` (see [`Proc::spawn_wrapped`]), given
    /// `server_ip` as the server's address, without waiting for anything.
    pub fn spawn_wrapped(
        wrapper: &[&str],
        server_ip: &str,
        name: &str,
        server_port: u16,
        port: u16,
        dir: Arc<TempDir>,
        extra: &[&str],
    ) -> Client {
        let place =
            Place { wrapper: wrapper.iter().map(|w| (*w).to_owned()).collect(), server_ip: server_ip.to_owned() };
        Client::spawn_at(place, Zone::UTC, name, server_port, port, dir, extra)
    }

    fn spawn_at(
        place: Place,
        zone: Zone,
        name: &str,
        server_port: u16,
        port: u16,
        dir: Arc<TempDir>,
        extra: &[&str],
    ) -> Client {
        let server_arg = server_port.to_string();
        let port_arg = port.to_string();
        let dir_arg = dir.path().to_str().expect("a UTF-8 temp path").to_owned();
        let mut args = vec!["-c", name, &place.server_ip, &server_arg, &port_arg, "--data-dir", &dir_arg];
        args.extend_from_slice(extra);
        let label = format!("client {name}:{port} ({})", zone.tz);
        let proc = if place.wrapper.is_empty() {
            Proc::spawn_in(label, &args, zone.tz)
        } else {
            let wrapper: Vec<&str> = place.wrapper.iter().map(String::as_str).collect();
            Proc::spawn_wrapped_in(label, &wrapper, &args, zone.tz)
        };
        Client { proc, name: name.to_owned(), port, dir, zone, place }
    }

    /// Starts a new client (fresh port and data directory, a name with no stored messages) and
    /// waits for its Welcome line and its first table update.
    pub fn start(name: &str, server: &Server) -> Client {
        let client = Client::spawn(name, server.port, free_port(), new_dir(), &[]);
        client.expect_lines_unordered(&[WELCOME, TABLE], WAIT);
        client
    }

    /// Starts this client again: same name, port, data directory, zone, wrapper and server
    /// address (after it was killed). Waits for nothing.
    pub fn respawn(&self, server: &Server) -> Client {
        self.respawn_in(self.zone, server)
    }

    /// Starts this client again with the same name, port, data directory, wrapper and server
    /// address, in time zone `zone`. Waits for nothing.
    pub fn respawn_in(&self, zone: Zone, server: &Server) -> Client {
        Client::spawn_at(self.place.clone(), zone, &self.name, server.port, self.port, Arc::clone(&self.dir), &[])
    }

    /// Sends `list` and returns the `n` table rows it prints.
    pub fn list(&mut self, n: usize) -> Vec<Row> {
        self.send_line("list");
        let mut rows = Vec::new();
        while rows.len() < n {
            let line =
                self.expect_match(&format!("`list` row {} of {n}", rows.len() + 1), WAIT, |l| parse_row(l).is_some());
            rows.extend(parse_row(&line));
        }
        rows
    }

    /// Sends `list`, then `help` to mark the end of its rows, and returns every row it printed.
    pub fn list_all(&mut self) -> Vec<Row> {
        const HELP_FIRST: &str = ">>> send <name> <message>";
        let from = self.stdout_len();
        self.send_line("list");
        self.send_line("help");
        self.expect_match("the first line of `help`, after the rows of `list`", WAIT, |l| l.starts_with(HELP_FIRST));
        let lines = self.stdout_since(from);
        lines.iter().take_while(|l| !l.starts_with(HELP_FIRST)).filter_map(|l| parse_row(l)).collect()
    }

    /// Sends `list` and asserts the row of `name`: 127.0.0.1, `port`, `online`.
    pub fn assert_row(&mut self, n: usize, name: &str, port: u16, online: bool) {
        let rows = self.list(n);
        let want = Row { name: name.to_owned(), ip: "127.0.0.1".to_owned(), port, online };
        if !rows.contains(&want) {
            self.fail(&format!("`list` should show {want:?}, showed {rows:?}"));
        }
    }

    /// Waits for a stored message line `>>> <head>: <YYYY-MM-DD HH:MM:SS> <text>` (head is the
    /// sender's name, or `Channel_Message <name>`), checks the timestamp is a recent time in the
    /// client's zone, and returns it as seconds since the epoch.
    pub fn expect_stored(&self, head: &str, text: &str) -> i64 {
        let prefix = format!(">>> {head}: ");
        let suffix = format!(" {text}");
        let what = format!("stored message line {prefix:?}<timestamp>{suffix:?}");
        let line = self.expect_match(&what, WAIT, |l| {
            l.len() == prefix.len() + 19 + suffix.len() && l.starts_with(&prefix) && l.ends_with(&suffix)
        });
        let stamp = &line[prefix.len()..prefix.len() + 19];
        match self.zone.epoch_seconds(stamp) {
            Some(secs) if (secs - now_seconds()).abs() <= 120 => secs,
            _ => {
                self.fail(&format!("timestamp {stamp:?} is not a recent time in {} as %Y-%m-%d %H:%M:%S", self.zone.tz))
            }
        }
    }
}

impl Deref for Client {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// Starts clients one after another; after each registration, every client started before it
/// consumes the table update that registration caused.
pub fn start_clients<const N: usize>(server: &Server, names: [&str; N]) -> [Client; N] {
    let mut clients: Vec<Client> = Vec::with_capacity(N);
    for name in names {
        let client = Client::start(name, server);
        for earlier in &clients {
            earlier.expect_line(TABLE, WAIT);
        }
        clients.push(client);
    }
    match clients.try_into() {
        Ok(array) => array,
        Err(_) => unreachable!("exactly N clients were started"),
    }
}

/// Seconds since the epoch now, by the system clock (no time zone involved).
pub fn now_seconds() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs();
    i64::try_from(secs).expect("seconds fit in i64")
}

/// Seconds since the epoch of `YYYY-MM-DD HH:MM:SS` read as UTC, if it is one.
pub fn utc_seconds(stamp: &str) -> Option<i64> {
    let b = stamp.as_bytes();
    let shape_ok = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let num = |r: std::ops::Range<usize>| stamp[r].parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[test]
fn utc_seconds_reads_the_spec_format() {
    assert_eq!(utc_seconds("1970-01-01 00:00:00"), Some(0));
    assert_eq!(utc_seconds("2000-03-01 00:00:01"), Some(951_868_801));
    assert_eq!(utc_seconds("2026-11-23 14:05:09"), Some(1_795_442_709));
    assert_eq!(utc_seconds("2026-11-23T14:05:09"), None);
    assert_eq!(utc_seconds("2026-13-23 14:05:09"), None);
    assert_eq!(utc_seconds("26-11-23 14:05:09"), None);
}

#[test]
fn zones_read_wall_clock_times_back_to_the_epoch() {
    assert_eq!(Zone::UTC.epoch_seconds("2026-11-23 14:05:09"), Some(1_795_442_709));
    assert_eq!(Zone::SHANGHAI.epoch_seconds("2026-11-23 22:05:09"), Some(1_795_442_709));
    assert_eq!(Zone::SHANGHAI.epoch_seconds("2026-11-23 14:05"), None);
}

#[test]
fn parse_row_reads_list_lines() {
    let row = parse_row(">>> alice   127.0.0.1  40000  online").expect("a row");
    assert_eq!((row.name.as_str(), row.ip.as_str(), row.port, row.online), ("alice", "127.0.0.1", 40000, true));
    assert_eq!(parse_row(">>> bob 127.0.0.1 40001 offline").map(|r| r.online), Some(false));
    assert_eq!(parse_row(">>> [Client table updated.]"), None);
    assert_eq!(parse_row(">>> name ip port status"), None);
}
