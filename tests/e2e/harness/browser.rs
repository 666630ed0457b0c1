//! The browser side of the harness: `chatapp web` as a child process ([`WebClient`], its page's
//! address read from its one stdout line) and headless Chromium driven through chromedriver
//! ([`Browser`], chromedriver started on a free port and killed in `Drop`). Missing Chromium or
//! chromedriver fails the test with how to install them; nothing is skipped.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client as Driver, ClientBuilder, Locator};
use tempfile::TempDir;

use super::{Proc, WAIT, free_port, new_dir};

/// Where Debian puts Chromium and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Runs `f` to completion on a runtime of its own (the tests are plain `#[test]`s, like the
/// others, and block on the harness's waits between browser steps).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(f)
}

/// A `chatapp web` client: the process and its page's address.
pub struct WebClient {
    /// The process (its stdout holds only the page's line).
    pub proc: Proc,
    /// The page's address, with its token.
    pub url: String,
    /// Its data directory, kept while it runs.
    _dir: Arc<TempDir>,
}

impl WebClient {
    /// Starts `chatapp web <name> 127.0.0.1 <server_port> <free port>` and waits for its line
    /// `>>> [Page at http://…/?token=…]`.
    pub fn start(name: &str, server_port: u16) -> WebClient {
        let dir = new_dir();
        let (server, port) = (server_port.to_string(), free_port().to_string());
        let dir_arg = dir.path().to_str().expect("a UTF-8 temp path").to_owned();
        let args = ["web", name, "127.0.0.1", &server, &port, "--data-dir", &dir_arg];
        let proc = Proc::spawn(format!("web client {name}:{port}"), &args);
        let line = proc.expect_match("the page's address line", WAIT, |l| l.starts_with(">>> [Page at http://"));
        let url = line.trim_start_matches(">>> [Page at ").trim_end_matches(']').to_owned();
        WebClient { proc, url, _dir: dir }
    }

    /// `host:port` of the page.
    pub fn authority(&self) -> &str {
        let rest = self.url.trim_start_matches("http://");
        rest.split('/').next().expect("an authority")
    }

    /// The page's token.
    pub fn token(&self) -> &str {
        self.url.split("token=").nth(1).expect("a token in the address")
    }
}

/// Headless Chromium through chromedriver.
pub struct Browser {
    /// The WebDriver session.
    pub driver: Driver,
    chromedriver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: the browser tests need Debian's Chromium and its driver \
                 (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            );
        }
        let port = free_tcp_port();
        let chromedriver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut caps = serde_json::Map::new();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-gpu".to_owned(),
            format!("--window-size={width},{height}"),
        ];
        caps.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": CHROMIUM, "args": args }));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        let driver = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
                Ok(driver) => break driver,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session from chromedriver: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Browser { driver, chromedriver }
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.driver.clone().close().await;
    }

    /// The "Message" box: the input the label "Message" names.
    pub async fn message_box(&self) -> fantoccini::elements::Element {
        let label =
            self.driver.find(Locator::XPath("//label[normalize-space()='Message']")).await.expect("a label Message");
        let id = label.attr("for").await.expect("read for").expect("the label names its input");
        self.driver.find(Locator::Id(&id)).await.expect("the input the label names")
    }

    /// Types `line` in the "Message" box (after what it holds) and presses Enter.
    pub async fn type_line(&self, line: &str) {
        let input = self.message_box().await;
        input.send_keys(&format!("{line}\u{E007}")).await.expect("type in the Message box");
    }

    /// Waits until the text of the first element matching `css` (its `textContent`: a hidden
    /// view counts too) satisfies `pred`; returns it.
    pub async fn wait_text(&self, what: &str, css: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.driver.find(Locator::Css(css)).await {
                if let Ok(Some(text)) = el.prop("textContent").await {
                    if pred(&text) {
                        return text;
                    }
                    last = text;
                }
            }
            if Instant::now() > deadline {
                let _ = self.screenshot("failure").await;
                panic!("waited {WAIT:?} for {what} ({css}); its text was {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.driver.wait().for_element(Locator::Css(css)).await.expect(css).click().await.expect("click");
    }

    /// Saves a screenshot of the page as `web-<name>.png` in the target's test directory.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.driver.screenshot().await.expect("a screenshot");
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("web-{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

/// A TCP port free now.
fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
    listener.local_addr().expect("its address").port()
}
