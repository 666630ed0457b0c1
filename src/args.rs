//! The command line: the two positional forms of the assignment, checked one by one so that a
//! bad argument gets one line that names it, and the long options.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chat_proto::Name;
use clap::Parser;

/// The exit code for bad arguments.
const USAGE_ERROR: u8 = 2;

/// A UDP chat with a registration server.
///
/// Start the server first, then one client per user, in a terminal or with a browser page:
///
///   chatapp -s <port>
///
///   chatapp -c <name> <server-ip> <server-port> <client-port>
///
///   chatapp web <name> <server-ip> <server-port> <client-port>
#[derive(Debug, Parser)]
#[command(name = "chatapp", version, about, long_about, verbatim_doc_comment)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["server", "client", "web"]))]
struct Cli {
    /// Run the server on <port> (1024-65535)
    #[arg(short = 's', value_name = "port")]
    server: Option<String>,

    /// Run a client: its name, the server's IP and port, and the client's own port
    #[arg(short = 'c', num_args = 4, value_names = ["name", "server-ip", "server-port", "client-port"])]
    client: Option<Vec<String>>,

    /// Run a client with a browser page (`chatapp web …`, the same four values as -c): it prints
    /// the page's address, with its token, on standard output
    #[arg(long = "web", num_args = 4, value_names = ["name", "server-ip", "server-port", "client-port"])]
    web: Option<Vec<String>>,

    /// Web: where the page is served (loopback by default; port 0 is a free one)
    #[arg(long, value_name = "ip:port", default_value = "127.0.0.1:0")]
    http: SocketAddr,

    /// Server: the address to listen on (`::` for IPv6, which takes IPv4 too)
    #[arg(long, value_name = "ip", default_value = "0.0.0.0")]
    listen: IpAddr,

    /// Where the server keeps its table and stored messages, and a client its key, secret and
    /// history [default: $XDG_DATA_HOME/chatapp, else $HOME/.local/share/chatapp]
    #[arg(long, value_name = "dir")]
    data_dir: Option<PathBuf>,

    /// How long to wait for an ACK before retransmitting, in milliseconds
    #[arg(long, value_name = "ms", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    ack_timeout_ms: u64,

    /// Retransmissions after the first send before giving up
    #[arg(long, value_name = "n", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,

    /// Log level or filter for stderr (error, warn, info, debug, trace; RUST_LOG syntax)
    /// [default: info for the server, warn for a client]
    #[arg(long, value_name = "filter", env = "RUST_LOG")]
    log_level: Option<String>,

    /// Server: how often online clients keep alive, in milliseconds (told to each at
    /// registration); one silent for three intervals is marked offline
    #[arg(long, value_name = "ms", default_value_t = 25_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    keepalive_ms: u64,

    /// Client: the server's public key (64 hex digits, as the server logs it at start); a server
    /// showing another key is refused [default: the key the server showed the first time, kept
    /// in the data directory]
    #[arg(long, value_name = "hex")]
    server_key: Option<chat_proto::PublicKey>,

    /// Server: most messages kept for one offline client
    #[arg(long, value_name = "n", default_value_t = 10_000)]
    max_messages: usize,

    /// Server: most bytes kept for one offline client
    #[arg(long, value_name = "bytes", default_value_t = 16 << 20)]
    max_mailbox_bytes: u64,

    /// Server: where the client table and stored messages live: `files` in the data directory,
    /// or a PostgreSQL URL (`postgres://user@host:port/db`) that several server nodes share
    #[arg(long, value_name = "files|url", default_value = "files")]
    store: String,

    /// Server on a shared store: the address its clients reach this node at, which the other
    /// nodes give theirs to move to [default: the --listen address, or 127.0.0.1 when that is
    /// unspecified, with the server's port]
    #[arg(long, value_name = "ip:port")]
    advertise: Option<SocketAddr>,
}

/// Where the server keeps its table and stored messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// Files in the data directory (the default).
    Files,
    /// A PostgreSQL database several nodes share, by its URL.
    Postgres(String),
}

/// What to run.
#[derive(Debug)]
pub enum Mode {
    /// `-s <port>`
    Server { port: u16 },
    /// `-c <name> <server-ip> <server-port> <client-port>`
    Client { name: Name, server: SocketAddr, port: u16 },
    /// `web <name> <server-ip> <server-port> <client-port>`: a client with a browser page.
    Web { name: Name, server: SocketAddr, port: u16 },
}

/// Everything the command line decided.
#[derive(Debug)]
pub struct Options {
    pub mode: Mode,
    pub listen: IpAddr,
    pub data_dir: PathBuf,
    pub ack_timeout: Duration,
    pub retries: u32,
    pub log_level: String,
    pub max_messages: usize,
    pub max_mailbox_bytes: u64,
    pub server_key: Option<chat_proto::PublicKey>,
    pub keepalive: Duration,
    pub store: StoreChoice,
    pub advertise: Option<SocketAddr>,
    /// Where the browser page is served (`web`).
    pub http: SocketAddr,
}

/// Parses the command line. `Err` carries the exit code after help, version or an error line
/// has been printed.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, ExitCode> {
    let cli = Cli::try_parse_from(web_as_option(args)).map_err(|e| {
        if e.use_stderr() {
            // clap's message, without its usage block, on one line.
            let rendered = e.to_string();
            let message = rendered.split("\n\n").next().unwrap_or("error: bad arguments");
            let words: Vec<&str> = message.split_whitespace().collect();
            eprintln!("{} (try --help)", words.join(" "));
            ExitCode::from(USAGE_ERROR)
        } else {
            let _ = e.print();
            ExitCode::SUCCESS
        }
    })?;
    let mode = mode(&cli).map_err(|msg| {
        eprintln!("error: {msg}");
        ExitCode::from(USAGE_ERROR)
    })?;
    let is_server = matches!(mode, Mode::Server { .. });
    let store = store_choice(&cli.store).map_err(|msg| {
        eprintln!("error: {msg}");
        ExitCode::from(USAGE_ERROR)
    })?;
    let data_dir = match cli.data_dir {
        Some(dir) => dir,
        None => default_data_dir(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")).ok_or_else(|| {
            eprintln!("error: no data directory: set HOME or XDG_DATA_HOME, or give --data-dir <dir>");
            ExitCode::FAILURE
        })?,
    };
    Ok(Options {
        mode,
        listen: cli.listen,
        data_dir,
        ack_timeout: crate::millis(cli.ack_timeout_ms),
        retries: cli.retries,
        log_level: cli.log_level.unwrap_or_else(|| if is_server { "info" } else { "warn" }.to_string()),
        max_messages: cli.max_messages,
        max_mailbox_bytes: cli.max_mailbox_bytes,
        server_key: cli.server_key,
        keepalive: crate::millis(cli.keepalive_ms),
        store,
        advertise: cli.advertise,
        http: cli.http,
    })
}

/// `chatapp web …` is `chatapp --web …`: the word is the mode, as `-s` and `-c` are.
fn web_as_option(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "web") {
        args[1] = "--web".into();
    }
    args
}

/// The server at `host` (an IP address, or a name such as `localhost`, resolved here, an IPv4
/// address preferred) and `port`.
fn server_address(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let bad = || format!("invalid server IP '{host}': expected an address such as 127.0.0.1 (or IPv6), or a host name");
    // A dotted quad that did not parse (999.1.1.1) is a bad address, not a name to look up.
    if host.is_empty() || host.split('.').all(|part| part.chars().all(|c| c.is_ascii_digit())) {
        return Err(bad());
    }
    let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("cannot resolve the server '{host}': {e}"))?
        .collect();
    found.iter().find(|a| a.is_ipv4()).or(found.first()).copied().ok_or_else(bad)
}

/// `files`, or a PostgreSQL URL.
fn store_choice(arg: &str) -> Result<StoreChoice, String> {
    if arg == "files" {
        Ok(StoreChoice::Files)
    } else if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
        Ok(StoreChoice::Postgres(arg.to_owned()))
    } else {
        Err(format!("invalid --store '{arg}': expected `files` or a URL such as postgres://chat@127.0.0.1:5432/chat"))
    }
}

fn mode(cli: &Cli) -> Result<Mode, String> {
    if let Some(port) = &cli.server {
        return Ok(Mode::Server { port: port_arg("server port", port)? });
    }
    let (values, web) = match (&cli.client, &cli.web) {
        (Some(values), _) => (values.as_slice(), false),
        (None, Some(values)) => (values.as_slice(), true),
        (None, None) => (&[][..], false),
    };
    let [name, ip, server_port, port] = values else {
        let mode = if web { "web" } else { "-c" };
        return Err(format!("{mode} takes four values: <name> <server-ip> <server-port> <client-port>"));
    };
    let name = Name::new(name.as_str()).map_err(|e| format!("invalid client name '{name}': {e}"))?;
    let server = server_address(ip, port_arg("server port", server_port)?)?;
    let port = port_arg("client port", port)?;
    Ok(if web { Mode::Web { name, server, port } } else { Mode::Client { name, server, port } })
}

/// The user's own data directory for ChatApp, never the current folder: `$XDG_DATA_HOME/chatapp`,
/// else `$HOME/.local/share/chatapp` (an empty or relative variable counts as unset, as the XDG
/// Base Directory specification says).
fn default_data_dir(xdg_data_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute(xdg_data_home) {
        return Some(xdg.join("chatapp"));
    }
    absolute(home).map(|home| home.join(".local/share/chatapp"))
}

fn port_arg(what: &str, s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p >= 1024 => Ok(p),
        _ => Err(format!("invalid {what} '{s}': a port is an integer from 1024 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(args: &[&str]) -> Result<Mode, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("chatapp").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        mode(&cli)
    }

    #[test]
    fn accepts_both_positional_forms() {
        assert!(matches!(mode_of(&["-s", "5000"]), Ok(Mode::Server { port: 5000 })));
        let Ok(Mode::Client { name, server, port }) = mode_of(&["-c", "bob", "127.0.0.1", "5000", "6000"]) else {
            panic!("client form")
        };
        assert_eq!((name.as_str(), server.to_string(), port), ("bob", "127.0.0.1:5000".into(), 6000));
        assert!(mode_of(&["-c", "bob", "::1", "5000", "6000"]).is_ok());
    }

    #[test]
    fn web_is_a_third_mode_with_the_clients_values() {
        let args = ["chatapp", "web", "bob", "127.0.0.1", "5000", "6000"].map(OsString::from);
        let cli = Cli::try_parse_from(web_as_option(args)).expect("web form");
        let Ok(Mode::Web { name, server, port }) = mode(&cli) else { panic!("web mode") };
        assert_eq!((name.as_str(), server.to_string(), port), ("bob", "127.0.0.1:5000".into(), 6000));
        assert_eq!(cli.http, "127.0.0.1:0".parse::<SocketAddr>().expect("addr"), "loopback, a free port");
        let args = ["chatapp", "web", "b b", "127.0.0.1", "5000", "6000"].map(OsString::from);
        let err = mode(&Cli::try_parse_from(web_as_option(args)).expect("parsed")).expect_err("bad name");
        assert!(err.contains("client name 'b b'"), "{err}");
        let args = ["chatapp", "-c", "web", "127.0.0.1", "5000", "6000"].map(OsString::from);
        let cli = Cli::try_parse_from(web_as_option(args)).expect("a client named web");
        assert!(matches!(mode(&cli), Ok(Mode::Client { .. })), "only the mode's place makes it the mode");
    }

    #[test]
    fn the_default_data_dir_is_the_users_never_the_current_folder() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(default_data_dir(os("/x/data"), os("/home/a")), Some(PathBuf::from("/x/data/chatapp")));
        assert_eq!(default_data_dir(None, os("/home/a")), Some(PathBuf::from("/home/a/.local/share/chatapp")));
        assert_eq!(default_data_dir(os(""), os("/home/a")), Some(PathBuf::from("/home/a/.local/share/chatapp")));
        assert_eq!(default_data_dir(os("rel"), os("/home/a")), Some(PathBuf::from("/home/a/.local/share/chatapp")));
        assert_eq!(default_data_dir(None, None), None);
        assert_eq!(default_data_dir(os(""), os("relative")), None);
    }

    #[test]
    fn names_the_bad_argument() {
        let cases = [
            (&["-s", "80"][..], "server port '80'"),
            (&["-s", "70000"], "server port '70000'"),
            (&["-c", "bob", "999.1.1.1", "5000", "6000"], "server IP '999.1.1.1'"),
            (&["-c", "bob", "127.0.0.1", "5000", "abc"], "client port 'abc'"),
            (&["-c", "b b", "127.0.0.1", "5000", "6000"], "client name 'b b'"),
        ];
        for (args, needle) in cases {
            let err = mode_of(args).expect_err("bad arguments");
            assert!(err.contains(needle), "{err} should name {needle}");
        }
        assert!(mode_of(&[]).is_err());
        assert!(mode_of(&["-s", "5000", "-c", "a", "127.0.0.1", "5000", "6000"]).is_err());
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    #[test]
    fn the_store_is_files_or_a_postgres_url_and_anything_else_is_named() {
        assert_eq!(store_choice("files"), Ok(StoreChoice::Files));
        assert_eq!(
            store_choice("postgres://chat@127.0.0.1:5432/chat"),
            Ok(StoreChoice::Postgres("postgres://chat@127.0.0.1:5432/chat".into()))
        );
        assert!(matches!(store_choice("postgresql://u@/db?host=/tmp"), Ok(StoreChoice::Postgres(_))));
        let err = store_choice("mysql://x").expect_err("not a store");
        assert!(err.starts_with("invalid --store 'mysql://x'"), "{err}");
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    #[test]
    fn the_server_may_be_named_and_localhost_is_loopback() {
        let Ok(Mode::Client { server, .. }) = parse_mode(&["-c", "bob", "localhost", "5000", "6000"]) else {
            panic!("localhost is taken")
        };
        assert!(server.ip().is_loopback() && server.port() == 5000, "{server}");
        let err = server_address("999.1.1.1", 5000).expect_err("not an address");
        assert!(err.contains("server IP '999.1.1.1'"), "{err}");
    }

    fn parse_mode(args: &[&str]) -> Result<Mode, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("chatapp").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        mode(&cli)
    }
}
