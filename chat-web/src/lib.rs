//! ChatApp's browser page: the same client core as the terminal (`chat_client::drive`), with a
//! web page as its interface. An HTTP server on loopback serves the page (only with the run's
//! random token) and a WebSocket (only from the page's own origin) that carries command lines
//! in and, out, each event's terminal line with what the page needs beside it (the people and
//! their presence, messages with their times and states). The conversation is kept in memory
//! and sent to each tab that connects, so a reload keeps it; one tab at a time.
//!
//! It owns the page and its state; it decides nothing about the chat (the core does) and
//! prints nothing (the binary prints the page's address).

mod error;
mod gateway;
mod http;
mod hub;
mod token;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use chat_client::{Config, Files};
use chat_proto::{KeyPair, Name, PublicKey};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::error::WebError;
pub use crate::gateway::Gateway;
pub use crate::hub::{Effects, Hub};
pub use crate::token::Token;

/// The default address of the page: loopback, a free port.
pub const DEFAULT_HTTP: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The page's listening socket and its token.
#[derive(Debug)]
pub struct Page {
    listener: TcpListener,
    addr: SocketAddr,
    token: Token,
}

impl Page {
    /// Binds the page's address (port 0: a free one) and makes its token.
    ///
    /// # Errors
    /// The address cannot be bound, or the OS gives no randomness for the token.
    pub async fn bind(addr: SocketAddr) -> Result<Self, WebError> {
        let token = Token::from_os()?;
        let listener = TcpListener::bind(addr).await.map_err(|source| WebError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(WebError::LocalAddr)?;
        Ok(Self { listener, addr, token })
    }

    /// The page's address with its token, to open in a browser: `http://127.0.0.1:43121/?token=…`
    /// (an unspecified listening address is shown as loopback).
    pub fn url(&self) -> String {
        let mut shown = self.addr;
        if shown.ip().is_unspecified() {
            shown.set_ip(if shown.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{shown}/?token={}", self.token.hex())
    }

    /// The line the binary prints on standard output: `>>> [Page at <url>]`.
    pub fn line(&self) -> String {
        format!(">>> [Page at {}]", self.url())
    }
}

/// Every frame goes out as it is written: without this, Nagle's algorithm holds each update
/// written while the one before is not yet acknowledged, and the browser delays its ACK (40 ms
/// on Linux), so a message's outcome reached the page some 44 ms after it came.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY on the page's connection: {e}");
    }
}

/// How long the HTTP server may take to close its connections once the client has stopped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Runs the client named `me` (as `chat_client::run` does, with the same arguments) with the
/// page as its interface, until the client exits (the returned code: `quit` on the page, or the
/// server gone) or `shutdown` is cancelled (a silent leave, code 0). The page stays open until
/// the client has stopped.
///
/// # Errors
/// [`WebError::Client`]: the client's files exist but cannot be read or hold something else, or
/// the OS gives no randomness.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    socket: UdpSocket,
    cfg: Config,
    me: Name,
    server: SocketAddr,
    server_key: Option<PublicKey>,
    key: KeyPair,
    files: Files,
    page: Page,
    shutdown: CancellationToken,
) -> Result<i32, WebError> {
    // As at a terminal: each answer shows as it comes, not held for the order of commands.
    let cfg = Config { answers_in_order: false, ..cfg };
    let (core, channel) = chat_client::open(cfg, me.clone(), server, server_key, key, &files)?;
    let (input, lines) = mpsc::unbounded_channel();
    let gateway = Arc::new(Gateway::new(me.as_str(), input, page.token, page.addr));
    let stop_http = CancellationToken::new();
    let app = http::router(gateway.clone());
    let served =
        axum::serve(page.listener.tap_io(no_delay), app).with_graceful_shutdown(stop_http.clone().cancelled_owned());
    let http = tokio::spawn(async move {
        if let Err(e) = served.await {
            tracing::warn!("the page's server stopped: {e}");
        }
    });
    tracing::info!(addr = %page.addr, "serving the page");
    let mut sink = gateway::GatewaySink(gateway.clone());
    let code = chat_client::drive(core, channel, &socket, lines, &mut sink, Some(&files), shutdown).await;
    gateway.handle_exit();
    stop_http.cancel();
    if tokio::time::timeout(CLOSE_WAIT, http).await.is_err() {
        tracing::debug!("the page's server did not close in time");
    }
    Ok(code)
}
