//! The gateway between the page and the client core: it holds the [`Hub`] and the one tab
//! connected, under one lock, so that the order of the lines it hands the core is the order
//! of the turns the hub counts. It is the core's [`Sink`]: every event goes through the hub to
//! the tab. It decides nothing about the chat.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chat_client::{Event, Input, Sink};
use tokio::sync::mpsc;

use crate::hub::{Effects, Hub};
use crate::token::Token;
use crate::wire::Update;

/// A tab's number.
pub type TabId = u64;

/// The tab connected now.
struct Tab {
    id: TabId,
    updates: mpsc::UnboundedSender<Arc<str>>,
}

struct Inner {
    hub: Hub,
    tab: Option<Tab>,
    next_tab: TabId,
    input: mpsc::UnboundedSender<Input>,
}

/// The page's side of the client.
pub struct Gateway {
    inner: Mutex<Inner>,
    token: Token,
    origins: Vec<String>,
}

impl Gateway {
    /// The gateway of the client named `me`, whose lines go to `input`, serving the page at
    /// `addr` to whoever has `token`.
    pub fn new(me: &str, input: mpsc::UnboundedSender<Input>, token: Token, addr: SocketAddr) -> Self {
        let inner = Inner { hub: Hub::new(me), tab: None, next_tab: 0, input };
        Self { inner: Mutex::new(inner), token, origins: origins(addr) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a request's query (`token=…` among its pairs) carries the token.
    pub fn token_in(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        query.split('&').filter_map(|pair| pair.split_once('=')).any(|(k, v)| k == "token" && self.token.matches(v))
    }

    /// Whether a WebSocket's `Origin` is the page's own.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// A tab connects: it replaces the one before (told so, then closed) and gets everything so
    /// far, then every update.
    pub fn connect(&self) -> (TabId, mpsc::UnboundedReceiver<Arc<str>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        let id = inner.next_tab;
        inner.next_tab += 1;
        if let Some(old) = inner.tab.take() {
            let _ = old.updates.send(json(&Update::Replaced));
            tracing::info!("a new tab replaces the one before");
        }
        let _ = tx.send(json(&inner.hub.snapshot()));
        inner.tab = Some(Tab { id, updates: tx });
        (id, rx)
    }

    /// The tab `id` went away.
    pub fn disconnect(&self, id: TabId) {
        let mut inner = self.lock();
        if inner.tab.as_ref().is_some_and(|t| t.id == id) {
            inner.tab = None;
        }
    }

    /// Text from tab `id`: command lines, unless another tab has taken over.
    pub fn handle_text(&self, id: TabId, text: &str) {
        let mut inner = self.lock();
        if inner.tab.as_ref().is_none_or(|t| t.id != id) {
            return;
        }
        let fx = inner.hub.handle_text(chrono::Utc::now(), text);
        inner.apply(fx);
    }

    /// The client has stopped: the tab is told, then closed.
    pub fn handle_exit(&self) {
        let mut inner = self.lock();
        let fx = inner.hub.handle_exit();
        inner.apply(fx);
        inner.tab = None;
    }

    fn handle_event(&self, event: Event, turn: Option<u64>) {
        let mut inner = self.lock();
        let fx = inner.hub.handle_event(chrono::Utc::now(), event, turn);
        inner.apply(fx);
    }
}

impl Inner {
    fn apply(&mut self, fx: Effects) {
        for line in fx.lines {
            if self.input.send(Input::Line(line)).is_err() {
                tracing::debug!("the client has stopped: a line from the page is dropped");
            }
        }
        if let Some(tab) = &self.tab {
            for update in &fx.updates {
                let _ = tab.updates.send(json(update));
            }
        }
    }
}

/// The core's events go to the gateway; a page that is not there does not stop the client.
pub struct GatewaySink(pub Arc<Gateway>);

impl Sink for GatewaySink {
    fn show(&mut self, event: Event) -> io::Result<()> {
        self.0.handle_event(event, None);
        Ok(())
    }

    fn show_answer(&mut self, event: Event, turn: Option<u64>) -> io::Result<()> {
        self.0.handle_event(event, turn);
        Ok(())
    }
}

fn json(update: &Update) -> Arc<str> {
    serde_json::to_string(update).unwrap_or_else(|e| format!("{{\"type\":\"error\",\"error\":\"{e}\"}}")).into()
}

/// The page's own origins for a server bound at `addr`: its address, and for loopback the
/// other names of loopback with its port.
fn origins(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![addr.to_string()];
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        hosts.extend([format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]);
    }
    hosts.sort();
    hosts.dedup();
    hosts.into_iter().map(|h| format!("http://{h}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_its_own_origin_and_nothing_else() {
        let (input, _rx) = mpsc::unbounded_channel();
        let token = Token::from_os().expect("randomness");
        let hex = token.hex();
        let gw = Gateway::new("alice", input, token, "127.0.0.1:4321".parse().expect("addr"));
        for ok in ["http://127.0.0.1:4321", "http://localhost:4321", "http://[::1]:4321", "HTTP://LOCALHOST:4321"] {
            assert!(gw.origin_allowed(ok), "{ok}");
        }
        for bad in ["http://127.0.0.1:4322", "https://127.0.0.1:4321", "http://evil.example", "null", ""] {
            assert!(!gw.origin_allowed(bad), "{bad}");
        }
        assert!(gw.token_in(Some(&format!("token={hex}"))));
        assert!(gw.token_in(Some(&format!("a=b&token={hex}&c"))));
        for bad in [None, Some(""), Some("token="), Some("token"), Some("tok=x")] {
            assert!(!gw.token_in(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_second_tab_replaces_the_first_whose_lines_are_ignored() {
        let (input, mut lines) = mpsc::unbounded_channel();
        let gw = Gateway::new("alice", input, Token::from_os().expect("randomness"), "127.0.0.1:1".parse().expect("a"));
        let (first, mut first_rx) = gw.connect();
        assert!(first_rx.try_recv().expect("snapshot").contains("\"type\":\"snapshot\""));
        let (second, mut second_rx) = gw.connect();
        assert!(first_rx.try_recv().expect("told").contains("\"type\":\"replaced\""));
        assert!(first_rx.try_recv().is_err(), "then closed");
        assert!(second_rx.try_recv().expect("snapshot").contains("\"type\":\"snapshot\""));
        gw.handle_text(first, "list");
        assert!(lines.try_recv().is_err(), "the replaced tab's line is ignored");
        gw.handle_text(second, "list");
        assert!(matches!(lines.try_recv(), Ok(Input::Line(l)) if l == "list"));
    }
}
