//! The HTTP side: the page (only with the token), its script and style (the same for everyone,
//! no secret in them), and the WebSocket (only with the token, and only from the page's own
//! origin). One tab at a time: a new WebSocket replaces the one before. Requests and frames are
//! checked, never unwrapped.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};

use crate::gateway::Gateway;

/// The page, its script and its style, inside the binary.
const PAGE: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

/// The longest text frame taken from the page: a message of 32 KiB and its command, with room.
pub const MAX_FRAME: usize = 64 * 1024;

/// What the page may load and connect to: only itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The routes, over the gateway.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/ws", get(socket))
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, "not found") })
        .with_state(gateway)
}

async fn page(State(gw): State<Arc<Gateway>>, RawQuery(query): RawQuery) -> Response {
    if !gw.token_in(query.as_deref()) {
        return no_token();
    }
    let mut response = asset("text/html; charset=utf-8", PAGE);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn socket(
    State(gw): State<Arc<Gateway>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !gw.token_in(query.as_deref()) {
        return no_token();
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin.is_some_and(|o| gw.origin_allowed(o)) {
        tracing::warn!(origin = origin.unwrap_or("none"), "refused a WebSocket from another origin");
        return refuse(StatusCode::FORBIDDEN, "this WebSocket is only for the page's own origin");
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    upgrade.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME).on_upgrade(move |ws| serve(gw, ws))
}

/// One tab's WebSocket: the snapshot first, then every update; each text frame from the page
/// is command lines. Ends when the page closes it or another tab takes over.
async fn serve(gw: Arc<Gateway>, ws: WebSocket) {
    let (tab, mut updates) = gw.connect();
    let (mut to_page, mut from_page) = ws.split();
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(json) => {
                    // The updates waiting now go out in one write, not one each.
                    let mut sent = to_page.feed(Frame::Text(json.as_ref().into())).await;
                    while sent.is_ok() {
                        let Ok(json) = updates.try_recv() else { break };
                        sent = to_page.feed(Frame::Text(json.as_ref().into())).await;
                    }
                    if sent.is_err() || to_page.flush().await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = to_page.send(Frame::Close(None)).await;
                    break;
                }
            },
            frame = from_page.next() => match frame {
                Some(Ok(Frame::Text(text))) => gw.handle_text(tab, text.as_str()),
                Some(Ok(Frame::Close(_))) | None => break,
                Some(Ok(_)) => {} // pings are answered by the library; binary frames mean nothing here
                Some(Err(e)) => {
                    tracing::debug!("WebSocket error: {e}");
                    break;
                }
            },
        }
    }
    gw.disconnect(tab);
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn no_token() -> Response {
    refuse(StatusCode::FORBIDDEN, "open the address chatapp printed: it carries the page's token")
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    let mut response = (status, format!("{} {why}\n", status.as_u16())).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
