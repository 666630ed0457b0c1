//! The browser page (issue 12): a real client behind the `chat_web` gateway (its entry point,
//! as `chatapp web` runs it), its WebSocket driven as the page's script drives it (the token in
//! the address, the page's own `Origin`, one text frame per command line, each frame from the
//! gateway parsed as JSON), beside the same client core driven directly through its channels
//! in the same run.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message as Frame, http::HeaderValue};
use tokio_util::sync::CancellationToken;

use crate::peers::{self, PAYLOAD, Peer, ServerHandle, with_alice};
use crate::sim::name;
use crate::{Line, Scale, ms, percentile};

/// The page's WebSocket.
type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where the gateway (and the client core behind it) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// On a thread of its own, as `chatapp web` runs in a process of its own beside the browser.
    OwnThread,
    /// As a task on the thread that drives the WebSocket: the gateway's own work, without the
    /// wake-up of another thread.
    PageThread,
}

impl Place {
    fn label(self) -> &'static str {
        match self {
            Place::OwnThread => "gateway on its own thread",
            Place::PageThread => "gateway on the page's thread",
        }
    }
}

/// How a message the page sent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Saved on the server, or failed: not what is measured; counted and shown.
    Other,
}

/// Runs `f` against the page of a real client named `who`, served by `chat_web::run` placed as
/// `place` says, once the page shows the client online with bob online in its table. The
/// WebSocket is driven on this thread's runtime.
fn with_page<T>(server: &ServerHandle, who: &str, place: Place, f: impl AsyncFnOnce(&mut Ws) -> T) -> T {
    let (addr, key, me) = (server.addr, server.key, who.to_owned());
    let stop = CancellationToken::new();
    let (url_tx, url_rx) = oneshot::channel();
    let token = stop.clone();
    let gateway = move || serve_page(addr, key, me, url_tx, token);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut thread = None;
    let out = tokio::task::LocalSet::new().block_on(&rt, async {
        match place {
            Place::OwnThread => {
                thread = Some(thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    rt.block_on(gateway());
                }));
            }
            Place::PageThread => {
                tokio::task::spawn_local(gateway());
            }
        }
        let url = url_rx.await.expect("the page's address");
        let mut ws = connect(&url).await;
        online(&mut ws).await;
        let out = f(&mut ws).await;
        let _ = ws.close(None).await;
        stop.cancel();
        // On the page's thread the gateway must be run to its end here.
        if place == Place::PageThread {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out
    });
    if let Some(thread) = thread {
        thread.join().expect("the gateway's thread");
    }
    out
}

/// The client named `me` with its page, as `chatapp web` runs them: the page's address (with
/// its token) goes to `url` once bound.
async fn serve_page(
    server: SocketAddr,
    server_key: chat_proto::PublicKey,
    me: String,
    url: oneshot::Sender<String>,
    stop: CancellationToken,
) {
    let dir = tempfile::TempDir::new().expect("the client's data directory");
    let files = chat_client::Files {
        history: dir.path().join("history"),
        secret: dir.path().join("secret"),
        keys: dir.path().join("keys"),
        servers: dir.path().join("known_servers"),
        shown: dir.path().join("shown"),
    };
    let key = chat_proto::KeyPair::generate().expect("OS randomness");
    let page = chat_web::Page::bind(chat_web::DEFAULT_HTTP).await.expect("bind the page");
    let socket = crate::sim::bind().await;
    url.send(page.url()).expect("report the page's address");
    let cfg = chat_client::Config::default();
    chat_web::run(socket, cfg, name(&me), server, Some(server_key), key, files, page, stop)
        .await
        .expect("the page runs");
}

/// Opens the page's WebSocket as its script does: `ws://<host>/ws?token=…` from the page's own
/// origin (`http://<host>`, which the browser sends).
async fn connect(url: &str) -> Ws {
    let rest = url.strip_prefix("http://").expect("an http address");
    let (host, query) = rest.split_once("/?").expect("the token in the address");
    let mut request = format!("ws://{host}/ws?{query}").into_client_request().expect("a WebSocket request");
    let origin = HeaderValue::from_str(&format!("http://{host}")).expect("an origin");
    request.headers_mut().insert("Origin", origin);
    // Browsers send without Nagle's delay (TCP_NODELAY), so the page's end does too.
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(request, None, true).await.expect("the page's WebSocket");
    ws
}

/// The next update from the gateway, parsed as the page parses it.
async fn update(ws: &mut Ws) -> serde_json::Value {
    loop {
        let frame = ws.next().await.expect("the WebSocket is open").expect("a frame");
        if let Frame::Text(text) = frame {
            return serde_json::from_str(text.as_str()).expect("JSON from the gateway");
        }
    }
}

/// Waits until the page shows this client online and bob online in its table: in the snapshot
/// (the client may have registered and read the table before the page connected) or in an
/// update after it.
async fn online(ws: &mut Ws) {
    loop {
        let u = update(ws).await;
        let people = match u["type"].as_str() {
            Some("snapshot" | "people") if u["presence"] == "online" => &u["people"],
            _ => continue,
        };
        let bob = people.as_array().into_iter().flatten().any(|p| p["name"] == "bob" && p["online"] == true);
        if bob {
            return;
        }
    }
}

/// Sends `send bob …` as the page does: one text frame.
async fn send(ws: &mut Ws) {
    ws.send(Frame::text(format!("send bob {PAYLOAD}"))).await.expect("the WebSocket is open");
}

/// Reads updates until one settles an outgoing message: "received by bob", or another end.
async fn settled(ws: &mut Ws) -> Outcome {
    loop {
        let u = update(ws).await;
        if u["type"] != "message" || u["message"]["outgoing"] != true {
            continue;
        }
        match u["message"]["state"].as_str() {
            Some("delivered") => return Outcome::Delivered,
            Some("saved" | "failed") => return Outcome::Other,
            _ => {}
        }
    }
}

fn other_note(others: usize) -> String {
    if others == 0 { String::new() } else { format!(" ({others} not delivered)") }
}

/// Round trips through the page, each place of the gateway, in five rounds, each of the page
/// then the embedded client, so that the machine's drift falls on both alike.
pub(crate) fn round_trip(scale: &Scale) -> Vec<Line> {
    let server = ServerHandle::start();
    let bob = Peer::start("bob", server.addr).drain();
    let n = (scale.pings / 5).max(1);
    let warm = 20;
    let mut lines = Vec::new();
    let mut next = 0;
    for place in [Place::OwnThread, Place::PageThread] {
        let (mut page, mut direct, mut others) = (Vec::new(), Vec::new(), 0);
        for _ in 0..5 {
            next += 1;
            let (samples, o) = with_page(&server, &format!("page{next}"), place, async |ws| {
                let (mut samples, mut others) = (Vec::with_capacity(n + warm), 0);
                for _ in 0..n + warm {
                    let t = Instant::now();
                    send(ws).await;
                    if settled(ws).await != Outcome::Delivered {
                        others += 1;
                    }
                    samples.push(t.elapsed());
                }
                (samples.split_off(warm), others)
            });
            page.extend(samples);
            others += o;
            direct.extend(with_alice(server.addr, &format!("direct{next}"), async |input, events| {
                let mut samples = Vec::with_capacity(n + warm);
                for _ in 0..n + warm {
                    let t = Instant::now();
                    peers::send(input);
                    peers::delivered(events).await;
                    samples.push(t.elapsed());
                }
                samples.split_off(warm)
            }));
        }
        for p in [50.0, 99.0] {
            let (ours, base) = (percentile(&mut page, p), percentile(&mut direct, p));
            lines.push(Line {
                what: format!("11. page round trip p{p}, {}", place.label()),
                ours: format!("{}{}", ms(ours), other_note(others)),
                baseline: format!("{} embedded", ms(base)),
                ratio: format!("+{:.3} ms", (ours.as_secs_f64() - base.as_secs_f64()) * 1e3),
                target: if p == 50.0 && place == Place::OwnThread { "< 1 ms added" } else { "" },
            });
        }
    }
    bob.cancel();
    lines
}

/// Messages a second through one page's WebSocket with `scale.window` in flight, then the same
/// through the embedded client, twice each, alternately.
pub(crate) fn throughput(scale: &Scale) -> Vec<Line> {
    let server = ServerHandle::start();
    let bob = Peer::start("bob", server.addr).drain();
    let (n, window) = (scale.flood, scale.window);
    let (mut page, mut direct, mut others) = (Vec::new(), Vec::new(), 0);
    for round in 0..2 {
        let (rate, o) = with_page(&server, &format!("flood{round}"), Place::OwnThread, async |ws| {
            let mut others = 0;
            let t = Instant::now();
            for _ in 0..window.min(n) {
                send(ws).await;
            }
            for done in 1..=n {
                if settled(ws).await != Outcome::Delivered {
                    others += 1;
                }
                if done + window <= n {
                    send(ws).await;
                }
            }
            (n as f64 / t.elapsed().as_secs_f64(), others)
        });
        page.push(rate);
        others += o;
        direct.push(with_alice(server.addr, &format!("directflood{round}"), async |input, events| {
            let t = Instant::now();
            for _ in 0..window.min(n) {
                peers::send(input);
            }
            for done in 1..=n {
                peers::delivered(events).await;
                if done + window <= n {
                    peers::send(input);
                }
            }
            n as f64 / t.elapsed().as_secs_f64()
        }));
    }
    bob.cancel();
    let shown = |rates: &[f64]| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    vec![Line {
        what: format!("11. page throughput, {window} in flight, gateway on its own thread"),
        ours: format!("{} msg/s{}", shown(&page), other_note(others)),
        baseline: format!("{} msg/s embedded", shown(&direct)),
        ratio: format!("{:.2}×", mean(&page) / mean(&direct)),
        target: "≥ 5,000 msg/s",
    }]
}
