//! Databases for tests, never skipped: [`database`] gives each test a fresh, uniquely named
//! database, on the server named by `CHATAPP_TEST_PG` if set (a URL where the user may
//! `CREATE DATABASE`), else on a private server started once per test process (`initdb` into a
//! temporary directory, `pg_ctl start` on a unix socket there, `fsync` on), which a watchdog
//! stops and removes when the process ends, however it ends. [`dedicated`] gives a test a
//! server of its own, for [`TestDb::restart`] (fast or immediate), [`TestDb::stop`] and [`TestDb::start`]. Without PostgreSQL a test fails with one line
//! that says how to get it.
//!
//! This module owns starting, restarting and stopping test servers; it must not be used
//! outside tests (it panics, by design, where a test must fail).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Db;

/// The variable naming a server to test on instead of a private one.
pub const ENV: &str = "CHATAPP_TEST_PG";

const HOW_TO_GET_IT: &str = "PostgreSQL is needed for this test and none was found: install it \
    (`apt-get install postgresql`, which puts initdb and pg_ctl in /usr/lib/postgresql/*/bin) or set \
    CHATAPP_TEST_PG to the URL of a server where this user may CREATE DATABASE \
    (e.g. postgres://postgres@127.0.0.1:5432/postgres)";

/// How long a test waits to connect to its server.
const CONNECT: Duration = Duration::from_secs(10);

/// A fresh database for one test. Dropping it drops the database on a `CHATAPP_TEST_PG` server
/// (best effort), and stops and removes a dedicated server.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    name: String,
    /// The server's maintenance connection.
    admin: Db,
    /// A server of this test's own (from [`dedicated`]).
    own: Option<Instance>,
    /// Whether the database lives on the `CHATAPP_TEST_PG` server.
    on_env: bool,
}

impl TestDb {
    /// The database's URL, for [`Db::connect`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops every connection to this database as a restart of the server would: on a
    /// [`dedicated`] private server, `pg_ctl restart -m fast` (which returns once the server
    /// takes connections again); on a shared or `CHATAPP_TEST_PG` server (which other tests
    /// use), `pg_terminate_backend` of this database's other connections.
    ///
    /// # Errors
    /// What failed, on one line.
    pub fn restart(&self) -> Result<(), String> {
        self.restart_in("fast")
    }

    /// As [`TestDb::restart`], but `pg_ctl restart -m immediate` on a [`dedicated`] server: it
    /// stops as a crash would (no shutdown checkpoint; the start replays the WAL), so what was
    /// committed survives and what was not is gone. On a shared or `CHATAPP_TEST_PG` server,
    /// the same as [`TestDb::restart`].
    ///
    /// # Errors
    /// What failed, on one line.
    pub fn restart_immediate(&self) -> Result<(), String> {
        self.restart_in("immediate")
    }

    fn restart_in(&self, mode: &str) -> Result<(), String> {
        if let Some(own) = &self.own {
            // `-l` as at the start: without it the server would write to (and hold) our pipes.
            return own.pg_ctl(&["restart", "-m", mode, "-w", "-t", "60", "-l", &own.log()]).map(drop);
        }
        let name = self.name.clone();
        self.admin
            .run(move |pool| async move {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                 WHERE datname = $1 AND pid <> pg_backend_pid()";
                client.execute(terminate, &[&name]).await.map(drop).map_err(|e| crate::db::deepest(&e))
            })
            .map_err(|e| e.to_string())?
    }
}

impl TestDb {
    /// Stops the server of a [`dedicated`] database (`pg_ctl stop -m fast`); on a
    /// `CHATAPP_TEST_PG` server, refuses new connections to this database and ends its others.
    ///
    /// # Errors
    /// What failed, on one line.
    pub fn stop(&self) -> Result<(), String> {
        match &self.own {
            Some(own) => own.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"]).map(drop),
            None => {
                self.admin_sql(format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false", self.name))?;
                self.restart()
            }
        }
    }

    /// Starts again what [`TestDb::stop`] stopped, and returns once it takes connections.
    ///
    /// # Errors
    /// What failed, on one line.
    pub fn start(&self) -> Result<(), String> {
        match &self.own {
            Some(own) => own.pg_ctl(&["start", "-w", "-t", "60", "-l", &own.log(), "-o", &own.options()]).map(drop),
            None => self.admin_sql(format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true", self.name)),
        }
    }

    fn admin_sql(&self, sql: String) -> Result<(), String> {
        self.admin
            .run(move |pool| async move {
                let client = pool.get().await.map_err(|e| crate::db::deepest(&e))?;
                client.batch_execute(&sql).await.map_err(|e| crate::db::deepest(&e))
            })
            .map_err(|e| e.to_string())?
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.on_env {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = self.admin.run(move |pool| async move {
                if let Ok(client) = pool.get().await {
                    let _ = client.batch_execute(&sql).await;
                }
            });
        }
    }
}

/// A fresh database on the shared test server.
///
/// # Panics
/// When no server can be had (the message says how to get PostgreSQL), or the database cannot
/// be created: the test fails, it is never skipped.
pub fn database() -> TestDb {
    try_database().unwrap_or_else(|e| panic!("{e}"))
}

/// [`database`], with the reason it failed instead of a panic.
///
/// # Errors
/// Why no database could be had, on one line.
pub fn try_database() -> Result<TestDb, String> {
    let shared = SHARED.get_or_init(Shared::start).as_ref().map_err(Clone::clone)?;
    fresh(&shared.base, &shared.admin, shared.on_env, None)
}

/// A fresh database on a private server of this test's own, which [`TestDb::restart`],
/// [`TestDb::stop`] and [`TestDb::start`] act on without disturbing other tests (with
/// `CHATAPP_TEST_PG` set and no `initdb` here: a database there, as [`database`], on which those
/// calls only end and refuse connections).
///
/// # Panics
/// As [`database`].
pub fn dedicated() -> TestDb {
    try_dedicated().unwrap_or_else(|e| panic!("{e}"))
}

/// [`dedicated`], with the reason it failed instead of a panic.
///
/// # Errors
/// Why no server could be had, on one line.
pub fn try_dedicated() -> Result<TestDb, String> {
    if std::env::var_os(ENV).is_some() && find_bin().is_none() {
        return try_database();
    }
    let own = Instance::start()?;
    let base = own.url("postgres");
    let admin = Db::connect_bare(&base, CONNECT).map_err(|e| e.to_string())?;
    fresh(&base, &admin, false, Some(own))
}

/// The shared server of this test process.
struct Shared {
    /// A URL of the server, whose database name [`with_dbname`] replaces.
    base: String,
    admin: Db,
    on_env: bool,
    /// The private server, kept until the process ends (its watchdog then stops it).
    _instance: Option<Instance>,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

impl Shared {
    fn start() -> Result<Self, String> {
        if let Ok(url) = std::env::var(ENV) {
            let admin = Db::connect_bare(&url, CONNECT).map_err(|e| format!("{ENV}: {e}"))?;
            return Ok(Self { base: url, admin, on_env: true, _instance: None });
        }
        let instance = Instance::start()?;
        let base = instance.url("postgres");
        let admin = Db::connect_bare(&base, CONNECT).map_err(|e| e.to_string())?;
        Ok(Self { base, admin, on_env: false, _instance: Some(instance) })
    }
}

/// Creates a uniquely named database on the server of `admin`.
fn fresh(base: &str, admin: &Db, on_env: bool, own: Option<Instance>) -> Result<TestDb, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("chatapp_test_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let sql = format!("CREATE DATABASE \"{name}\"");
    admin
        .run(move |pool| async move {
            let client = pool.get().await.map_err(|e| crate::db::deepest(&e))?;
            client.batch_execute(&sql).await.map_err(|e| crate::db::deepest(&e))
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot create a test database on {}: {e}", admin.url()))?;
    Ok(TestDb { url: with_dbname(base, &name), name, admin: admin.clone(), own, on_env })
}

/// `url` with its database name replaced by `name` (URL or key-value form).
fn with_dbname(url: &str, name: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return format!("{url} dbname={name}") };
    let (main, query) = rest.split_once('?').map_or((rest, None), |(m, q)| (m, Some(q)));
    let authority = main.split_once('/').map_or(main, |(a, _)| a);
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// A private PostgreSQL server: its directory (data, socket, log) and the watchdog that stops
/// it and removes the directory when its stdin closes (on drop, or when the process ends).
#[derive(Debug)]
struct Instance {
    dir: PathBuf,
    bin: PathBuf,
    /// Running as root: PostgreSQL runs as the `postgres` user.
    as_postgres: bool,
    watchdog: Child,
}

/// The port in the socket's name (the server listens on no TCP port).
const PORT: u16 = 5432;

impl Instance {
    fn start() -> Result<Self, String> {
        let bin = find_bin().ok_or_else(|| HOW_TO_GET_IT.to_owned())?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("chatapp-pg-")
            .tempdir()
            .map_err(|e| format!("cannot make a directory for PostgreSQL: {e}"))?
            .keep();
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&dir), "chown the test server's directory to postgres")?;
        }
        let watchdog = watchdog(&bin, &dir, as_postgres)?;
        let instance = Self { dir, bin, as_postgres, watchdog };
        let data = instance.dir.join("data");
        let initdb =
            ["-D", &data.to_string_lossy(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]
                .map(str::to_owned);
        run(&mut instance.command("initdb", &initdb), "initdb")?;
        instance.pg_ctl(&["start", "-w", "-t", "60", "-l", &instance.log(), "-o", &instance.options()])?;
        Ok(instance)
    }

    /// The server's options: a unix socket in the directory and no TCP port, `fsync` on (the
    /// tests measure durability).
    fn options(&self) -> String {
        format!("-k {} -p {PORT} -c listen_addresses= -c max_connections=300 -c fsync=on", self.dir.display())
    }

    fn log(&self) -> String {
        self.dir.join("log").to_string_lossy().into_owned()
    }

    /// The URL of database `db` on this server (its unix socket).
    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@/{db}?host={}&port={PORT}", self.dir.display())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String, String> {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let mut all = vec!["-D".to_owned(), data];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(&mut self.command("pg_ctl", &all), "pg_ctl")
    }

    /// `program` of this server's bin directory, as the `postgres` user when running as root.
    fn command(&self, program: &str, args: &[String]) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.args(args).current_dir(&self.dir).stdin(Stdio::null());
        command
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Closing its stdin tells the watchdog to stop the server and remove the directory.
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

/// A shell that waits for its stdin to close (this process dropped it, or ended), then stops
/// the server at once and removes its directory. It ignores the signals a terminal sends the
/// whole process group, so that a test run stopped with Ctrl-C still cleans up.
fn watchdog(bin: &Path, dir: &Path, as_postgres: bool) -> Result<Child, String> {
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let runuser = if as_postgres { "runuser -u postgres -- " } else { "" };
    let script = format!(
        "trap '' INT HUP TERM QUIT; cat > /dev/null; \
         if [ -e {data}/postmaster.pid ]; then {runuser}{pg_ctl} -D {data} -m immediate stop > /dev/null 2>&1; fi; \
         rm -rf {dir}",
        data = quote(&dir.join("data")),
        pg_ctl = quote(&bin.join("pg_ctl")),
        dir = quote(dir),
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the test server's watchdog (sh): {e}"))?;
    // Nothing is written; the pipe only tells the watchdog when this process is gone.
    if let Some(stdin) = child.stdin.as_mut() {
        let _ = stdin.flush();
    }
    Ok(child)
}

/// Runs `command`, and gives its output, or a one-line error with the end of what it said.
fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let output = command.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().replace('\n', " | ");
    if output.status.success() {
        Ok(text(&output.stdout))
    } else {
        Err(format!("{what} failed ({}): {} {}", output.status, text(&output.stderr), text(&output.stdout)))
    }
}

/// The directory of `initdb` and `pg_ctl`: the newest under `/usr/lib/postgresql/*/bin`
/// (Debian's layout), else the first on `PATH`.
fn find_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| has_tools(dir))
}

/// Whether this process runs as root (PostgreSQL refuses to).
fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn the_database_name_is_replaced_in_either_form() {
        assert_eq!(with_dbname("postgres://u@h:5/old", "t1"), "postgres://u@h:5/t1");
        assert_eq!(with_dbname("postgres://u@h:5", "t1"), "postgres://u@h:5/t1");
        assert_eq!(with_dbname("postgres://u@/old?host=/tmp/x&port=5", "t1"), "postgres://u@/t1?host=/tmp/x&port=5");
        assert_eq!(with_dbname("host=/tmp user=u", "t1"), "host=/tmp user=u dbname=t1");
    }
}
