//! `chatapp`: the one program users run, as the server (`-s`), a client (`-c`), or a client
//! with a browser page (`web`).
//!
//! A thin `main`: parse and check the arguments, set up logging, bind the socket, map
//! Ctrl+C/SIGTERM/SIGHUP to a shutdown token, and hand over to `chat_server::run`,
//! `chat_client::run` or `chat_web::run`. Whatever stops it early is an [`AppError`], printed as one line,
//! `error: <what failed>: <cause>: <its cause>…` with each cause said once, and exit code 1.

mod args;
mod error;
mod identity;

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use offline_store::{FileStore, Limits};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::args::{Mode, Options, StoreChoice};
use crate::error::AppError;

fn main() -> ExitCode {
    let opts = match args::parse(std::env::args_os()) {
        Ok(opts) => opts,
        Err(exit) => return exit,
    };
    init_logging(&opts);
    match run(&opts) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", chat_core::report(&e));
            ExitCode::FAILURE
        }
    }
}

/// Runs the server or the client until it stops; the client's exit code on success.
fn run(opts: &Options) -> Result<u8, AppError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(AppError::Runtime)?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        match &opts.mode {
            Mode::Server { port } => serve(*port, opts, shutdown).await,
            Mode::Client { name, server, port } => chat(name, *server, *port, opts, None, shutdown).await,
            Mode::Web { name, server, port } => chat(name, *server, *port, opts, Some(opts.http), shutdown).await,
        }
    })
}

async fn serve(port: u16, opts: &Options, shutdown: CancellationToken) -> Result<u8, AppError> {
    let limits = Limits { max_messages: opts.max_messages, max_bytes: opts.max_mailbox_bytes };
    let socket = bind(SocketAddr::new(opts.listen, port)).await?;
    let local = socket.local_addr().map_err(AppError::LocalAddr)?;
    // The key clients pin: the same across restarts, so they keep trusting this server.
    let key_file = opts.data_dir.join("server.identity");
    let cfg = chat_server::Config {
        ack_timeout: opts.ack_timeout,
        retries: opts.retries,
        keepalive: opts.keepalive,
        ..Default::default()
    };
    match &opts.store {
        StoreChoice::Files => {
            let dir = opts.data_dir.join("mailboxes");
            let store = FileStore::open(&dir, limits)?;
            let key = identity::load_or_create(&key_file).map_err(AppError::ServerKey)?;
            tracing::info!("chatapp server listening on {local}, messages in {}", dir.display());
            tracing::info!("server key {} (clients may pin it with --server-key)", key.public());
            let table = chat_server::Tables::Files(chat_server::TableFile::new(&opts.data_dir));
            chat_server::run(socket, key, store, table, cfg, shutdown).await?;
        }
        StoreChoice::Postgres(url) => {
            let db = chat_pg::Db::connect(url, DB_TIMEOUT)?;
            // The nodes share one identity: the first node's, kept in the database.
            let own = identity::load_or_create(&key_file).map_err(AppError::ServerKey)?;
            let key = chat_pg::shared_identity(&db, &own)?;
            let advertise = opts.advertise.unwrap_or_else(|| advertised(local));
            let cluster = chat_pg::Cluster::join(db.clone(), advertise, chat_pg::ClusterConfig::default())?;
            // The channel messages it owes are its node's rows: taken over if it dies.
            let store = chat_pg::PgStore::new(db, limits).owed_by(cluster.node());
            tracing::info!(
                "chatapp server node {} listening on {local} (clients reach it at {advertise}), table and messages in {}",
                cluster.node(),
                redact(url)
            );
            tracing::info!("server key {} (clients may pin it with --server-key)", key.public());
            chat_server::run(socket, key, store, chat_server::Tables::Shared(Box::new(cluster)), cfg, shutdown).await?;
        }
    }
    Ok(0)
}

/// How long the server waits for PostgreSQL at start.
const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// The address clients reach a node bound at `local` at, when `--advertise` does not say:
/// loopback for an unspecified address.
fn advertised(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local.port()),
        _ => local,
    }
}

fn redact(url: &str) -> String {
    chat_pg::redact(url)
}

async fn chat(
    name: &chat_proto::Name,
    server: SocketAddr,
    port: u16,
    opts: &Options,
    http: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> Result<u8, AppError> {
    let any: IpAddr = if server.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let socket = bind(SocketAddr::new(any, port)).await?;
    // One data directory can serve several clients: their files are named after a safe
    // encoding of the name, which no name can turn into a path outside the directory.
    let stem = offline_store::file_name(name);
    // No identity kept, no registration: the name would be lost to a key nobody has.
    let key = identity::load_or_create(&opts.data_dir.join(format!("{stem}.key"))).map_err(AppError::Identity)?;
    let files = chat_client::Files {
        history: opts.data_dir.join(format!("{stem}.history")),
        secret: opts.data_dir.join(format!("{stem}.secret")),
        keys: opts.data_dir.join(format!("{stem}.keys")),
        servers: opts.data_dir.join("known_servers"),
        shown: opts.data_dir.join(format!("{stem}.shown")),
    };
    let lan = lan_address(server, port);
    let cfg = chat_client::Config { ack_timeout: opts.ack_timeout, retries: opts.retries, lan, ..Default::default() };
    let code = match http {
        None => chat_client::run(socket, cfg, name.clone(), server, opts.server_key, key, files, shutdown).await?,
        Some(http) => {
            let page = chat_web::Page::bind(http).await?;
            // The one line a web client prints: where to open its page.
            println!("{}", page.line());
            chat_web::run(socket, cfg, name.clone(), server, opts.server_key, key, files, page, shutdown).await?
        }
    };
    Ok(u8::try_from(code).unwrap_or(1))
}

/// This host's address on the way to `server`, with the client's `port`: where peers behind the
/// same NAT reach the client. Connecting a UDP socket sends nothing; it only asks the OS which
/// interface it would use. None for a loopback address: only this host could use it, and it
/// reaches the client at its public address as well.
fn lan_address(server: SocketAddr, port: u16) -> Option<SocketAddr> {
    let any: IpAddr = if server.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let probe = std::net::UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
    probe.connect(server).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(SocketAddr::new(ip, port))
}

async fn bind(addr: SocketAddr) -> Result<UdpSocket, AppError> {
    let socket = UdpSocket::bind(addr).await.map_err(|source| AppError::Bind { port: addr.port(), source })?;
    widen_buffers(&socket);
    Ok(socket)
}

/// Asks for socket buffers of 4 MiB (the kernel may grant less): a large table arrives as
/// several datagrams of up to 64 KiB at once, and a default buffer of about 200 KiB would drop
/// the last of them before they are read.
fn widen_buffers(socket: &UdpSocket) {
    #[cfg(unix)]
    {
        use nix::sys::socket::{setsockopt, sockopt};
        const SIZE: usize = 4 << 20;
        for result in [setsockopt(socket, sockopt::RcvBuf, &SIZE), setsockopt(socket, sockopt::SndBuf, &SIZE)] {
            if let Err(e) = result {
                tracing::debug!("socket buffer not widened: {e}");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = socket;
}

fn init_logging(opts: &Options) {
    let filter = EnvFilter::try_new(&opts.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// Ctrl+C, SIGTERM or SIGHUP (a closed terminal): stop at once, a silent leave.
async fn on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}

/// Keeps `Duration` in the public option types readable.
pub(crate) fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
