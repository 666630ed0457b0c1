//! The async driver: one loop over the UDP socket, user input, the core's next timeout and
//! shutdown.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chat_proto::{MAX_DATAGRAM, Name, Secret, decode};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::output::{self, Input, Printer};
use crate::{Client, Config, parse};

/// The files a client keeps in its data directory.
#[derive(Debug, Clone)]
pub struct Files {
    /// A terminal's command history.
    pub history: PathBuf,
    /// The name's secret, handed out by the server at the first registration.
    pub secret: PathBuf,
}

/// Runs the client named `me` on `socket` against the server at `server` until it exits (the
/// returned code), the user leaves, or `shutdown` is cancelled (a silent leave, code 0).
///
/// # Errors
/// The secret file exists but cannot be read; network errors are logged and survived.
pub async fn run(
    socket: UdpSocket,
    cfg: Config,
    me: Name,
    server: SocketAddr,
    files: Files,
    shutdown: CancellationToken,
) -> io::Result<i32> {
    let secret = read_secret(&files.secret)?;
    let (mut input, mut printer) = output::start(Some(files.history.clone()));
    let seed = getrandom::u64().unwrap_or_else(|_| u64::from(std::process::id()) << 32);
    let mut core = Client::new(cfg, me, server, secret, seed);
    core.start(Instant::now());
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut input_open = true;
    let code = loop {
        if let Some(code) = flush(&mut core, &socket, &mut printer).await {
            break code;
        }
        let wake = core.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            () = shutdown.cancelled() => break 0,
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => match decode(&buf[..len]) {
                    Ok(d) => core.handle_datagram(Instant::now(), from, d),
                    Err(e) => tracing::debug!(%from, "dropped a bad datagram: {e}"),
                },
                Err(e) => tracing::debug!("receive error: {e}"),
            },
            line = input.recv(), if input_open => match line {
                Some(Input::Line(line)) => match parse(&line) {
                    Ok(Some(cmd)) => core.handle_command(Instant::now(), cmd),
                    Ok(None) => {}
                    Err(e) => core.notice(e.to_string()),
                },
                Some(Input::Unreadable) => core.notice("That line is not UTF-8 text."),
                Some(Input::Interrupt) => break 0,
                Some(Input::End) | None => {
                    input_open = false;
                    core.handle_end_of_input(Instant::now());
                }
            },
            () = sleep_until(wake), if wake.is_some() => {}
        }
        core.handle_timeout(Instant::now());
        if let Some(secret) = core.poll_secret() {
            if let Err(e) = write_secret(&files.secret, &secret) {
                core.notice(format!("Cannot keep the name's secret in {}: {e}.", files.secret.display()));
            }
        }
    };
    printer.restore();
    Ok(code)
}

/// Sends what the core queued and prints its events; the exit code once it is done, or 0 if
/// the output is gone (a closed terminal is a silent leave).
async fn flush(core: &mut Client, socket: &UdpSocket, printer: &mut Printer) -> Option<i32> {
    while let Some((to, bytes)) = core.poll_transmit() {
        if let Err(e) = socket.send_to(&bytes, to).await {
            tracing::debug!(%to, "send failed: {e}");
        }
    }
    while let Some(event) = core.poll_event() {
        if printer.print(event.to_string()).is_err() {
            return Some(0);
        }
    }
    core.poll_exit()
}

/// The secret kept by an earlier run, if any.
fn read_secret(path: &Path) -> io::Result<Option<Secret>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Secret::new(text.trim()).map(Some).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a secret: {e}", path.display()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))),
    }
}

/// Keeps the secret where only this user can read it.
fn write_secret(path: &Path, secret: &Secret) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    io::Write::write_all(&mut file, format!("{}\n", secret.expose()).as_bytes())?;
    file.sync_all()
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
