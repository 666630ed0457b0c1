//! SPEC 14, the browser page: `chatapp web` beside terminal clients in script mode, driven in
//! headless Chromium. Screenshots go to the target's test directory (`web-*.png`).

use std::io::{Read, Write};
use std::net::TcpStream;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, http::HeaderValue};

use crate::harness::browser::{Browser, WebClient, block_on};
use crate::harness::{SAVED, Server, WAIT, channel, chat, start_clients};

/// The log's last lines, joined.
const LOG: &str = "#log";

#[test]
fn the_page_registers_shows_who_is_online_and_talks_with_terminal_clients() {
    let server = Server::start();
    let [mut bob, mut carol] = start_clients(&server, ["bob", "carol"]);
    let alice = WebClient::start("alice", server.port);
    block_on(async {
        let browser = Browser::start(1100, 720).await;
        browser.driver.goto(&alice.url).await.expect("open the page");
        browser.wait_text("the welcome", LOG, |t| t.contains(">>> [Welcome, You are registered.]")).await;
        browser.wait_text("the presence", "#me", |t| t == "alice · online").await;
        let people = browser.wait_text("the people", "#people", |t| t.contains("bob") && t.contains("carol")).await;
        assert!(people.contains("alice (you)"), "{people}");
        browser.wait_text("bob online", "[data-place='@bob'] .presence", |t| t == "online").await;

        // The Message box takes the terminal's command lines and shows the same lines.
        browser.type_line("send bob hi from the page").await;
        bob.expect_line(&chat("alice", "hi from the page"), WAIT);
        browser.wait_text("the outcome", LOG, |t| t.contains(">>> [Message received by bob.]")).await;

        // A click on a person: what is typed goes to them, with its state and time.
        browser.click("[data-place='@bob']").await;
        let boxed = browser.message_box().await.prop("value").await.expect("value");
        assert_eq!(boxed.as_deref(), Some("send bob "), "the box is filled for bob");
        browser.type_line("a second one").await;
        bob.expect_line(&chat("alice", "a second one"), WAIT);
        browser.wait_text("its state", "#messages .msg.out:last-child .state", |t| t == "✓ received by bob").await;
        let at = browser.wait_text("its time", "#messages .msg.out:last-child time", |t| !t.is_empty()).await;
        assert!(at.contains(':'), "a time such as 14:05: {at}");

        // Incoming, live: a direct message in the open conversation, a channel message marked unread.
        bob.send_line("send alice hello page");
        browser.wait_text("bob's message", "#messages .msg.in:last-child .text", |t| t == "hello page").await;
        carol.send_line("send_all hi all");
        carol.expect_line(crate::harness::CHANNEL_ACKED, WAIT);
        browser.wait_text("the unread mark", "#place-channel .badge", |t| t == "1").await;
        browser.wait_text("the channel line", LOG, |t| t.contains(&channel("carol", "hi all"))).await;
        browser.screenshot("conversation").await;
        browser.click("#place-channel").await;
        browser.wait_text("the channel", "#messages .msg.in:last-child .text", |t| t == "hi all").await;
        let badge = browser.driver.find(fantoccini::Locator::Css("#place-channel .badge")).await.expect("badge");
        assert!(!badge.is_displayed().await.expect("displayed?"), "read once opened");
        browser.type_line("welcome carol").await;
        bob.expect_line(&channel("alice", "welcome carol"), WAIT);
        browser.wait_text("acked", "#messages .msg.out:last-child .state", |t| t == "✓ received by the server").await;

        // Presence, live: carol leaves.
        carol.send_line("dereg carol");
        browser.wait_text("carol offline", "[data-place='@carol'] .presence", |t| t == "offline").await;
        browser.screenshot("wide").await;
        browser.driver.set_window_size(400, 760).await.expect("narrow window");
        browser.click("[data-place='@bob']").await;
        browser.screenshot("narrow").await;
        browser.close().await;
    });
    alice.proc.assert_alive();
}

#[test]
fn a_message_for_an_offline_person_is_saved_and_a_reload_keeps_the_conversation() {
    let server = Server::start();
    let [mut bob] = start_clients(&server, ["bob"]);
    let alice = WebClient::start("alice", server.port);
    block_on(async {
        let browser = Browser::start(1100, 720).await;
        browser.driver.goto(&alice.url).await.expect("open the page");
        browser.wait_text("bob online", "[data-place='@bob'] .presence", |t| t == "online").await;
        bob.send_line("dereg bob");
        bob.expect_line(crate::harness::OFFLINE_BYE, WAIT);
        browser.wait_text("bob offline", "[data-place='@bob'] .presence", |t| t == "offline").await;
        browser.click("[data-place='@bob']").await;
        browser.type_line("are you there").await;
        browser.wait_text("saved", "#messages .msg.out:last-child .state", |t| t == "saved on the server").await;
        browser.wait_text("the line", LOG, |t| t.contains(SAVED)).await;

        browser.driver.refresh().await.expect("reload");
        browser.click("[data-place='@bob']").await;
        let kept =
            browser.wait_text("the kept message", "#messages .msg.out:last-child .text", |t| !t.is_empty()).await;
        assert_eq!(kept, "are you there", "a reload keeps the conversation");
        browser.wait_text("its state", "#messages .msg.out:last-child .state", |t| t == "saved on the server").await;
        browser.click("#place-log").await;
        browser.wait_text("the log", LOG, |t| t.contains(SAVED) && t.contains("» send bob are you there")).await;
        browser.screenshot("reloaded").await;

        bob.send_line("reg bob");
        bob.expect_stored("alice", "are you there");
        browser.wait_text("bob back", "[data-place='@bob'] .presence", |t| t == "online").await;
        browser.close().await;
    });
}

#[test]
fn the_page_refuses_a_request_without_its_token_and_a_websocket_from_another_origin() {
    let server = Server::start();
    let alice = WebClient::start("alice", server.port);
    let host = alice.authority().to_owned();
    let token = alice.token().to_owned();
    assert_eq!(token.len(), 32, "128 bits in hex: {token}");
    assert_eq!(status(&host, "/"), 403, "no token");
    assert_eq!(status(&host, "/?token=00000000000000000000000000000000"), 403, "a wrong token");
    assert_eq!(status(&host, &format!("/ws?token={token}x")), 403, "a longer token");
    assert_eq!(status(&host, &format!("/?token={token}")), 200, "the page with its token");

    block_on(async {
        let origin = format!("http://{host}");
        let refused = connect_ws(&host, &token, Some("http://evil.example")).await.expect_err("another origin");
        assert_eq!(http_status(&refused), Some(403), "{refused}");
        let refused = connect_ws(&host, &token, None).await.expect_err("no origin");
        assert_eq!(http_status(&refused), Some(403), "{refused}");
        let refused = connect_ws(&host, "0123", Some(&origin)).await.expect_err("no token");
        assert_eq!(http_status(&refused), Some(403), "{refused}");

        // Its own origin with the token: the snapshot; a second tab replaces the first.
        let mut first = connect_ws(&host, &token, Some(&origin)).await.expect("the page's own origin");
        assert!(next_text(&mut first).await.contains("\"type\":\"snapshot\""));
        let mut second = connect_ws(&host, &token, Some(&origin)).await.expect("a second tab");
        assert!(next_text(&mut second).await.contains("\"type\":\"snapshot\""));
        // The first tab may still get an update first (alice's registration can finish after
        // its snapshot: over PostgreSQL it often does); then it is told it was replaced.
        let mut seen = Vec::new();
        while !seen.last().is_some_and(|f: &String| f.contains("\"type\":\"replaced\"")) {
            assert!(seen.len() < 20, "the first tab is told: {seen:?}");
            seen.push(next_text(&mut first).await);
        }
    });
    alice.proc.assert_alive();
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_ws(host: &str, token: &str, origin: Option<&str>) -> Result<Ws, WsError> {
    let mut request = format!("ws://{host}/ws?token={token}").into_client_request()?;
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", HeaderValue::from_str(origin).expect("an origin header"));
    }
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

fn http_status(e: &WsError) -> Option<u16> {
    match e {
        WsError::Http(response) => Some(response.status().as_u16()),
        _ => None,
    }
}

async fn next_text(ws: &mut Ws) -> String {
    let frame = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").expect("open").expect("a frame");
    frame.into_text().expect("a text frame").to_string()
}

/// The status code of `GET path` on `host`, read from the raw response.
fn status(host: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(host).expect("connect to the page");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let code = response.split_whitespace().nth(1).expect("a status line");
    code.parse().expect("a status code")
}

#[test]
fn each_outcome_reaches_the_page_without_waiting_for_a_tcp_ack() {
    // The gateway writes a message's outcome as several frames (its log line, then its state).
    // With Nagle's algorithm on the page's connection the second waited for the browser's
    // delayed ACK: some 44 ms a message on Linux, every time.
    let server = Server::start();
    let [_bob] = start_clients(&server, ["bob"]);
    let alice = WebClient::start("alice", server.port);
    let host = alice.authority().to_owned();
    let token = alice.token().to_owned();
    block_on(async {
        let origin = format!("http://{host}");
        let mut request = format!("ws://{host}/ws?token={token}").into_client_request().expect("a request");
        request.headers_mut().insert("Origin", HeaderValue::from_str(&origin).expect("an origin header"));
        // As a browser connects: without Nagle's delay on its side.
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(request, None, true).await.expect("the page's WebSocket");
        while !next_text(&mut ws).await.contains(r#"{"name":"bob","online":true}"#) {}
        let mut fastest = WAIT;
        for i in 0..5 {
            let start = std::time::Instant::now();
            ws.send(format!("send bob quick {i}").into()).await.expect("send");
            while !next_text(&mut ws).await.contains(r#""state":"delivered""#) {}
            fastest = fastest.min(start.elapsed());
        }
        assert!(fastest < std::time::Duration::from_millis(30), "the fastest of 5 round trips took {fastest:?}");
    });
    alice.proc.assert_alive();
}
