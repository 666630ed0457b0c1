//! The client at a terminal (SPEC 4): the real `chatapp` in a real pseudo-terminal, a `tmux`
//! pane driven with `send-keys` and read with `capture-pane`, beside clients run as scripts.
//! And a script's output once more where colours would be allowed: the exact lines, nothing
//! else.
//!
//! These tests need `tmux` (`.ci/run` installs it); without it they fail, saying how to install
//! it, never skip.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{
    Client, OFFLINE_BYE, Server, TABLE, WAIT, WELCOME, acked_by, bin, chat, free_port, new_dir, parse_row,
};

/// A `tmux` server of the test's own with one pane running `chatapp`; killed on drop, showing
/// the pane if the test failed.
struct Pane {
    label: String,
    dir: TempDir,
    /// The data directory of the client in the pane.
    _data: Arc<TempDir>,
}

impl Pane {
    /// Starts the client `name` against `server` in a 120×40 pane, in UTC, with `env` added
    /// (`NO_COLOR`, say; none of the test run's own `NO_COLOR` or `RUST_LOG`), and waits for its
    /// welcome and its prompt.
    fn client(name: &str, server: &Server, env: &[&str]) -> Pane {
        let dir = TempDir::new().expect("a directory for the tmux socket");
        let conf = dir.path().join("tmux.conf");
        std::fs::write(&conf, "set -g remain-on-exit on\nset -g history-limit 10000\n").expect("write tmux.conf");
        let data = new_dir();
        let pane = Pane { label: format!("{name} at a terminal"), dir, _data: Arc::clone(&data) };
        let (server_port, port) = (server.port.to_string(), free_port().to_string());
        let data_arg = data.path().to_str().expect("a UTF-8 temp path");
        let conf = conf.to_str().expect("a UTF-8 temp path");
        let mut cmd = vec!["-f", conf, "new-session", "-d", "-x", "120", "-y", "40", "-s", "main", "--"];
        cmd.extend(["env", "-u", "NO_COLOR", "-u", "RUST_LOG", "TZ=UTC", "LC_ALL=C.UTF-8"]);
        cmd.extend(env);
        cmd.extend([bin(), "-c", name, "127.0.0.1", &server_port, &port, "--data-dir", data_arg]);
        pane.tmux(&cmd);
        pane.wait_for("the welcome, then the prompt with the name", |s| {
            s.iter().any(|l| l == WELCOME) && s.last().is_some_and(|l| *l == format!("{name}>>>"))
        });
        pane
    }

    /// Runs `tmux` on this pane's server with `args`; its output.
    fn tmux(&self, args: &[&str]) -> String {
        let socket = self.dir.path().join("socket");
        let out =
            Command::new("tmux").arg("-S").arg(&socket).args(args).env("LC_ALL", "C.UTF-8").output().unwrap_or_else(
                |e| panic!("tmux did not run ({e}): install it (apt-get install tmux) to run these tests"),
            );
        if !out.status.success() {
            panic!("tmux {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` as it is.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "main", "-l", text]);
    }

    /// Presses `key` (tmux's names: `Tab`, `Enter`, `C-u`).
    fn press(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "main", key]);
    }

    /// The pane's lines from the top of its history, wrapped lines joined, trailing blanks cut;
    /// with the colours' escape sequences if `escapes`.
    fn capture(&self, escapes: bool) -> Vec<String> {
        let mut args = vec!["capture-pane", "-p", "-J", "-S", "-", "-t", "main"];
        if escapes {
            args.push("-e");
        }
        let text = self.tmux(&args);
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_owned()).collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    }

    /// The screen, without colours.
    fn screen(&self) -> Vec<String> {
        self.capture(false)
    }

    /// Waits until the screen satisfies `pred`; the screen then.
    fn wait_for(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a line equal to `line`.
    fn expect_line(&self, line: &str) -> Vec<String> {
        self.wait_for(&format!("the line {line:?}"), |s| s.iter().any(|l| l == line))
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("{}: {msg}\n--- the pane ---\n{}\n---", self.label, self.screen().join("\n"));
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- {} ---\n{}\n---", self.label, self.screen().join("\n"));
        }
        let socket = self.dir.path().join("socket");
        let _ = Command::new("tmux").arg("-S").arg(&socket).arg("kill-server").output();
    }
}

/// The display width of `s` as a terminal shows it (what the pane's columns count).
fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// Whether `line` is `head` then two spaces and a time `HH:MM`.
fn with_time(line: &str, head: &str) -> bool {
    line.strip_prefix(head).and_then(|rest| rest.strip_prefix("  ")).is_some_and(|t| {
        let b = t.as_bytes();
        b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
    })
}

#[test]
fn the_prompt_shows_the_name_and_tab_completes_a_command_and_a_name() {
    let server = Server::start();
    let mut bob = Client::start("bob", &server);
    let alice = Pane::client("alice", &server, &[]);
    // A command: `li` becomes `list`.
    alice.type_text("li");
    alice.press("Tab");
    alice.wait_for("`li` completed to `list`", |s| s.last().is_some_and(|l| l == "alice>>> list"));
    alice.press("Enter");
    alice.wait_for("the list's header", |s| s.iter().any(|l| l.starts_with(">>> name ")));
    // A name: `send b` becomes `send bob `, and the message goes.
    alice.type_text("send b");
    alice.press("Tab");
    alice.wait_for("`send b` completed to `send bob `", |s| s.last().is_some_and(|l| l == "alice>>> send bob"));
    alice.type_text("hi from a terminal");
    alice.press("Enter");
    alice.expect_line(&acked_by("bob"));
    bob.expect_line(&chat("alice", "hi from a terminal"), WAIT);
    // Two commands start with `se`: the common part, then both listed.
    alice.type_text("se");
    alice.press("Tab");
    alice.press("Tab");
    alice.wait_for("`send` and `send_all` offered", |s| s.iter().any(|l| l.contains("send") && l.contains("send_all")));
    alice.press("C-u");
    bob.send_line("quit");
}

#[test]
fn a_message_arriving_while_a_line_is_half_typed_leaves_the_typed_line_intact() {
    let server = Server::start();
    let mut bob = Client::start("bob", &server);
    let alice = Pane::client("alice", &server, &[]);
    alice.type_text("send bob half typ");
    alice.wait_for("the half-typed line", |s| s.last().is_some_and(|l| l == "alice>>> send bob half typ"));
    bob.send_line("send alice hello while you type");
    bob.expect_line(&acked_by("alice"), WAIT);
    let typed = "alice>>> send bob half typ";
    let screen = alice.wait_for("bob's message with its time, and below it the typed line intact", |s| {
        s.iter().any(|l| with_time(l, ">>> bob: hello while you type")) && s.last().is_some_and(|l| l == typed)
    });
    assert_eq!(screen.iter().filter(|l| l.contains("half typ")).count(), 1, "not drawn twice: {screen:#?}");
    alice.type_text("ed");
    alice.press("Enter");
    bob.expect_line(&chat("alice", "half typed"), WAIT);
    alice.expect_line(&acked_by("bob"));
}

#[test]
fn list_is_aligned_with_cjk_and_emoji_names_marks_this_client_and_puts_who_is_online_first() {
    let server = Server::start();
    let mut aaron = Client::start("aaron", &server);
    let mut li = Client::start("李小龙", &server);
    let mut crab = Client::start("🦀crab", &server);
    let alice = Pane::client("alice", &server, &[]);
    aaron.send_line("dereg aaron");
    aaron.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(&format!("{TABLE} aaron is offline"));
    alice.type_text("list");
    alice.press("Enter");
    let rows = |screen: &[String], from: usize| -> Vec<String> {
        let at = screen.iter().skip(from).position(|l| l.starts_with(">>> name ")).map(|i| i + from);
        let Some(at) = at else { return Vec::new() };
        screen[at..].iter().take_while(|l| l.starts_with(">>> ")).cloned().collect()
    };
    let screen = alice.wait_for("the header and four rows", |s| rows(s, 0).len() == 5);
    let table = rows(&screen, 0);
    // Who, in which order: online first (this client marked), then offline.
    let names: Vec<&str> = table[1..].iter().filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(names, ["alice", "李小龙", "🦀crab", "aaron"], "online first, then offline: {table:#?}");
    assert!(table[1].ends_with("online  (you)"), "this client's row is marked: {table:#?}");
    assert!(table[4].ends_with(" offline"), "{table:#?}");
    // Aligned by display width: each column starts at the same column on every line.
    for column in ["127.0.0.1", "online"] {
        let at: Vec<usize> = table[1..]
            .iter()
            .map(|l| l.find(column).or_else(|| l.find("offline")).map_or(usize::MAX, |i| width(&l[..i])))
            .collect();
        assert!(at.iter().all(|c| *c == at[0] && *c != usize::MAX), "{column:?} aligned: {at:?} in {table:#?}");
    }
    let header_at = |word: &str| table[0].find(word).map(|i| width(&table[0][..i]));
    assert_eq!(header_at("address"), table[1].find("127.0.0.1").map(|i| width(&table[1][..i])), "{table:#?}");
    // After this client's own dereg, its row says offline (and moves down with the offline).
    let from = screen.len();
    alice.type_text("dereg alice");
    alice.press("Enter");
    alice.expect_line(OFFLINE_BYE);
    alice.type_text("list");
    alice.press("Enter");
    let screen = alice.wait_for("the list after dereg", |s| rows(s, from).len() == 5);
    let table = rows(&screen, from);
    let names: Vec<&str> = table[1..].iter().filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(names, ["李小龙", "🦀crab", "aaron", "alice"], "{table:#?}");
    assert!(table[4].ends_with("offline (you)"), "{table:#?}");
    li.send_line("quit");
    crab.send_line("quit");
}

#[test]
fn a_table_update_says_who_came_and_who_went_beside_the_line() {
    let server = Server::start();
    let alice = Pane::client("alice", &server, &[]);
    let mut bob = Client::start("bob", &server);
    alice.expect_line(&format!("{TABLE} bob is online"));
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(&format!("{TABLE} bob is offline"));
}

#[test]
fn names_have_colours_at_a_terminal_and_none_with_no_color() {
    let server = Server::start();
    let mut bob = Client::start("bob", &server);
    let coloured = Pane::client("alice", &server, &[]);
    let plain = Pane::client("carol", &server, &["NO_COLOR=1"]);
    bob.send_line("send alice hi alice");
    bob.send_line("send carol hi carol");
    coloured.wait_for("bob's message", |s| s.iter().any(|l| with_time(l, ">>> bob: hi alice")));
    plain.wait_for("bob's message", |s| s.iter().any(|l| with_time(l, ">>> bob: hi carol")));
    let line = |pane: &Pane, text: &str| {
        let screen = pane.capture(true);
        screen.into_iter().find(|l| l.contains(text)).unwrap_or_default()
    };
    let with = line(&coloured, "hi alice");
    assert!(with.contains("\x1b[") && with.contains("bob"), "bob in a colour: {with:?}");
    let without = line(&plain, "hi carol");
    assert!(!without.contains('\x1b'), "no colour with NO_COLOR: {without:?}");
}

/// Runs the client `name` as a script against `server` where colours would be allowed (a
/// terminal type, no `NO_COLOR`), with `script` as its standard input; its standard output once
/// it exited (within 20 s), line by line.
fn script_output(name: &str, server: &Server, port: u16, script: &str) -> Vec<String> {
    let data = new_dir();
    let data_arg = data.path().to_str().expect("a UTF-8 temp path");
    let mut child = Command::new(bin())
        .args(["-c", name, "127.0.0.1", &server.port.to_string(), &port.to_string(), "--data-dir", data_arg])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .env("TERM", "xterm-256color")
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the chatapp binary");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(script.as_bytes()).expect("write the script");
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("the child's status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("the child's output");
    assert!(out.status.success(), "exit 0 at the end of the script: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 output").lines().map(str::to_owned).collect()
}

#[test]
fn a_script_prints_the_exact_lines_and_nothing_else_even_where_colours_would_be_allowed() {
    let server = Server::start();
    let bob = Client::start("bob", &server);
    let port = free_port();
    let lines = script_output("alice", &server, port, "list\nsend bob hi\n");
    bob.expect_line(&chat("alice", "hi"), WAIT);
    assert!(lines.iter().all(|l| !l.contains('\x1b') && !l.contains("alice>>>")), "{lines:#?}");
    // Table updates come as the tables do (one or more); everything else, in this order.
    let (tables, rest): (Vec<&String>, Vec<&String>) = lines.iter().partition(|l| *l == TABLE);
    assert!(!tables.is_empty(), "{lines:#?}");
    let row = |name: &str, port: u16| format!(">>> {name:<5}  {:<15}  {port:>5}  online", "127.0.0.1");
    let want = [WELCOME.to_owned(), row("alice", port), row("bob", bob.port), acked_by("bob")];
    assert_eq!(rest, want.iter().collect::<Vec<_>>(), "exactly the lines of SPEC 2–10: {lines:#?}");
    assert!(lines.iter().filter_map(|l| parse_row(l)).count() == 2, "{lines:#?}");
}
