//! The async driver: one loop over the UDP socket, user input, the core's next timeout and
//! shutdown.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use chat_proto::{MAX_DATAGRAM, Name, decode};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::output::{self, Input, Printer};
use crate::{Client, Config, parse};

/// Runs the client named `me` on `socket` against the server at `server` until it exits (the
/// returned code), the user leaves, or `shutdown` is cancelled (a silent leave, code 0).
/// `history` is the file that keeps a terminal's command history.
///
/// # Errors
/// None today; network errors are logged and survived.
pub async fn run(
    socket: UdpSocket,
    cfg: Config,
    me: Name,
    server: SocketAddr,
    history: Option<PathBuf>,
    shutdown: CancellationToken,
) -> io::Result<i32> {
    let (mut input, mut printer) = output::start(history);
    let seed = getrandom::u64().unwrap_or_else(|_| u64::from(std::process::id()) << 32);
    let mut core = Client::new(cfg, me, server, seed);
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

async fn sleep_until(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
