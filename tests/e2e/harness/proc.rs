//! One child process: started with piped stdin, stdout and stderr, its output drained line by
//! line on two threads into a shared capture, and waits on that capture with deadlines.
//!
//! Every child gets an explicit `TZ` (UTC unless the caller names another zone), so what it
//! prints does not depend on the zone the tests run in.
//!
//! Knows nothing of ChatApp's lines or roles; `harness` builds servers and clients on top.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::bin;

/// UTC as a POSIX `TZ` rule, which needs no time zone database (a bare `UTC` does, and without
/// one a program falls back to the machine's zone).
pub const UTC_TZ: &str = "UTC0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Out = 0,
    Err = 1,
}

/// Everything a child wrote so far, line by line.
#[derive(Default)]
struct Captured {
    lines: [Vec<String>; 2],
    eof: [bool; 2],
}

#[derive(Default)]
struct Shared {
    captured: Mutex<Captured>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Captured> {
        self.captured.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads `src` line by line until end of file, appending to the shared capture.
fn drain(src: impl Read + Send + 'static, shared: Arc<Shared>, stream: Stream) {
    thread::spawn(move || {
        let mut reader = BufReader::new(src);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        buf.pop();
                    }
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    shared.lock().lines[stream as usize].push(line);
                    shared.changed.notify_all();
                }
            }
        }
        shared.lock().eof[stream as usize] = true;
        shared.changed.notify_all();
    });
}

/// First index at or after `from` whose line satisfies `pred`.
fn find_from(lines: &[String], from: usize, pred: impl Fn(&str) -> bool) -> Option<usize> {
    lines.iter().enumerate().skip(from).find(|(_, l)| pred(l)).map(|(i, _)| i)
}

/// A line cut to a readable length for failure dumps (a 32 KiB message stays recognisable).
fn shorten(line: &str) -> String {
    const KEEP: usize = 200;
    if line.len() <= KEEP {
        return line.to_owned();
    }
    let mut end = KEEP;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &line[..end], line.len())
}

/// One running `chatapp` process with piped stdin, stdout and stderr.
///
/// Waits look at stdout lines after a cursor (and stderr lines after a second cursor, for
/// [`Proc::expect_contains`]); a line found moves the cursor past it, so the same line can be
/// awaited twice in sequence.
pub struct Proc {
    label: String,
    child: RefCell<Child>,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    cursors: [Cell<usize>; 2],
    status: Cell<Option<ExitStatus>>,
    dumped: Cell<bool>,
}

impl Proc {
    /// Starts `chatapp` with `args` in UTC; `label` names it in failure output.
    pub fn spawn(label: impl Into<String>, args: &[&str]) -> Proc {
        Self::spawn_in(label, args, UTC_TZ)
    }

    /// Starts `chatapp` with `args` and its `TZ` set to `tz`, whatever the zone of the test run.
    pub fn spawn_in(label: impl Into<String>, args: &[&str], tz: &str) -> Proc {
        Self::spawn_through(label, &[], args, tz, |_| {})
    }

    /// Starts `chatapp` with `args` in UTC, from the current directory `cwd`, with `HOME` set to
    /// `home` and no `XDG_DATA_HOME`: as a user whose home is `home` starts it from `cwd`.
    pub fn spawn_at_home(label: impl Into<String>, args: &[&str], home: &Path, cwd: &Path) -> Proc {
        Self::spawn_through(label, &[], args, UTC_TZ, |c| {
            c.env("HOME", home).env_remove("XDG_DATA_HOME").current_dir(cwd);
        })
    }

    /// Starts `wrapper` (a command and its arguments, e.g. one that sets up a mount and then
    /// execs what follows it) with the `chatapp` binary and `args` after it, in UTC. An empty
    /// `wrapper` starts `chatapp` itself.
    pub fn spawn_wrapped(label: impl Into<String>, wrapper: &[&str], args: &[&str]) -> Proc {
        Self::spawn_through(label, wrapper, args, UTC_TZ, |_| {})
    }

    /// Starts `wrapper` with the `chatapp` binary and `args` after it (as
    /// [`Proc::spawn_wrapped`]), with its `TZ` set to `tz`.
    pub fn spawn_wrapped_in(label: impl Into<String>, wrapper: &[&str], args: &[&str], tz: &str) -> Proc {
        Self::spawn_through(label, wrapper, args, tz, |_| {})
    }

    fn spawn_through(
        label: impl Into<String>,
        wrapper: &[&str],
        args: &[&str],
        tz: &str,
        setup: impl FnOnce(&mut Command),
    ) -> Proc {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        setup(&mut command);
        let mut child = command
            .args(args)
            .env("TZ", tz)
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the chatapp binary");
        let shared = Arc::new(Shared::default());
        drain(child.stdout.take().expect("piped stdout"), Arc::clone(&shared), Stream::Out);
        drain(child.stderr.take().expect("piped stderr"), Arc::clone(&shared), Stream::Err);
        let stdin = child.stdin.take();
        Proc {
            label: format!("{} (pid {}, args {wrapper:?} {args:?})", label.into(), child.id()),
            child: RefCell::new(child),
            stdin,
            shared,
            cursors: [Cell::new(0), Cell::new(0)],
            status: Cell::new(None),
            dumped: Cell::new(false),
        }
    }

    /// Writes one command line to the child's stdin and flushes it.
    pub fn send_line(&mut self, line: &str) {
        let result = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(format!("{line}\n").as_bytes()).and_then(|()| stdin.flush()),
            None => self.fail(&format!("cannot send {line:?}: stdin already closed")),
        };
        if let Err(e) = result {
            self.fail(&format!("cannot send {:?}: {e}", shorten(line)));
        }
    }

    /// Closes the child's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Kills the child with SIGKILL (a silent leave) and reaps it.
    pub fn kill(&mut self) {
        let status = {
            let mut child = self.child.borrow_mut();
            let _ = child.kill();
            child.wait().expect("reap a killed child")
        };
        self.status.set(Some(status));
        self.await_eof(Duration::from_secs(2));
    }

    /// Sends signal `name` (`STOP`, `CONT`, `TERM`…) to the child with kill(1).
    pub fn signal(&self, name: &str) {
        let pid = self.child.borrow().id().to_string();
        let ok = Command::new("kill").args(["-s", name, &pid]).status().is_ok_and(|s| s.success());
        if !ok {
            self.fail(&format!("could not send SIG{name}"));
        }
    }

    /// The exit status, if the child has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        if self.status.get().is_none() {
            if let Ok(Some(status)) = self.child.borrow_mut().try_wait() {
                self.status.set(Some(status));
            }
        }
        self.status.get()
    }

    /// Waits for the child to exit, and for its output to be read to the end.
    pub fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                self.await_eof(Duration::from_secs(2));
                return status;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("did not exit within {timeout:?}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics unless the child is still running.
    pub fn assert_alive(&self) {
        if let Some(status) = self.exit_status() {
            self.await_eof(Duration::from_secs(2));
            self.fail(&format!("should still run, but exited with {status}"));
        }
    }

    /// Waits for a stdout line equal to `exact` after the cursor; returns its index.
    pub fn expect_line(&self, exact: &str, timeout: Duration) -> usize {
        let what = format!("stdout line {:?}", shorten(exact));
        let from = self.cursor(Stream::Out);
        let idx = self.wait_until(&what, timeout, |cap| find_from(&cap.lines[0], from, |l| l == exact));
        self.cursors[0].set(idx + 1);
        idx
    }

    /// Waits for a line containing `substr` on stdout or stderr (each after its own cursor).
    pub fn expect_contains(&self, substr: &str, timeout: Duration) -> String {
        let what = format!("a line containing {substr:?} (stdout or stderr)");
        let from = [self.cursor(Stream::Out), self.cursor(Stream::Err)];
        let (stream, idx, line) = self.wait_until(&what, timeout, |cap| {
            [Stream::Out, Stream::Err].into_iter().find_map(|s| {
                let lines = &cap.lines[s as usize];
                find_from(lines, from[s as usize], |l| l.contains(substr)).map(|i| (s, i, lines[i].clone()))
            })
        });
        self.cursors[stream as usize].set(idx + 1);
        line
    }

    /// Waits for a stdout line after the cursor that `pred` accepts; returns it.
    pub fn expect_match(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let from = self.cursor(Stream::Out);
        let (idx, line) = self.wait_until(what, timeout, |cap| {
            find_from(&cap.lines[0], from, &pred).map(|i| (i, cap.lines[0][i].clone()))
        });
        self.cursors[0].set(idx + 1);
        line
    }

    /// Waits for every line of `exact` on stdout after the cursor, in any order; the cursor
    /// moves past the last of them.
    pub fn expect_lines_unordered(&self, exact: &[&str], timeout: Duration) {
        let what = format!("stdout lines {exact:?} in any order");
        let from = self.cursor(Stream::Out);
        let last = self.wait_until(&what, timeout, |cap| {
            let mut used: Vec<usize> = Vec::new();
            for want in exact {
                let i = (from..cap.lines[0].len()).find(|i| !used.contains(i) && cap.lines[0][*i] == *want)?;
                used.push(i);
            }
            used.into_iter().max()
        });
        self.cursors[0].set(last + 1);
    }

    /// Waits `quiet`, then asserts that no stdout line after the cursor equals `line`.
    pub fn assert_never(&self, line: &str, quiet: Duration) {
        thread::sleep(quiet);
        let from = self.cursor(Stream::Out);
        let seen = self.shared.lock().lines[0].iter().skip(from).filter(|l| *l == line).count();
        if seen != 0 {
            self.fail(&format!(
                "stdout line {:?} should not appear after line {from}, but appeared {seen} time(s)",
                shorten(line)
            ));
        }
    }

    /// Asserts that `line` appears exactly `n` times on stdout so far (from the start).
    pub fn assert_count(&self, line: &str, n: usize) {
        let seen = self.shared.lock().lines[0].iter().filter(|l| *l == line).count();
        if seen != n {
            self.fail(&format!("stdout line {:?} should appear {n} time(s), appeared {seen} time(s)", shorten(line)));
        }
    }

    /// How many stdout lines were captured so far.
    pub fn stdout_len(&self) -> usize {
        self.shared.lock().lines[0].len()
    }

    /// The stdout lines captured from index `from` on.
    pub fn stdout_since(&self, from: usize) -> Vec<String> {
        self.shared.lock().lines[0].iter().skip(from).cloned().collect()
    }

    /// All stdout lines captured so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_since(0)
    }

    /// All stderr lines captured so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.shared.lock().lines[1].clone()
    }

    /// Keeps the child's output out of a panic's dump (a test that saved it elsewhere).
    pub fn skip_dump(&self) {
        self.dumped.set(true);
    }

    /// Panics with `msg` and the child's whole captured output.
    pub fn fail(&self, msg: &str) -> ! {
        self.dumped.set(true);
        panic!("{}: {msg}\n{}", self.label, self.dump());
    }

    fn cursor(&self, stream: Stream) -> usize {
        self.cursors[stream as usize].get()
    }

    /// Polls `check` on the captured output until it answers, the deadline passes, or the child
    /// has exited and its output is read to the end; the last two panic.
    fn wait_until<R>(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Captured) -> Option<R>) -> R {
        let deadline = Instant::now() + timeout;
        let mut exited_at: Option<(Instant, ExitStatus)> = None;
        loop {
            {
                let cap = self.shared.lock();
                if let Some(found) = check(&cap) {
                    return found;
                }
                if let Some((at, status)) = exited_at {
                    if cap.eof.iter().all(|e| *e) || at.elapsed() > Duration::from_secs(2) {
                        drop(cap);
                        self.fail(&format!("exited ({status}) while waiting for {what}"));
                    }
                }
                let now = Instant::now();
                if now >= deadline {
                    drop(cap);
                    self.fail(&format!("no {what} within {timeout:?}"));
                }
                let slice = (deadline - now).min(Duration::from_millis(50));
                drop(self.shared.changed.wait_timeout(cap, slice));
            }
            if exited_at.is_none() {
                if let Some(status) = self.exit_status() {
                    exited_at = Some((Instant::now(), status));
                }
            }
        }
    }

    fn await_eof(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut cap = self.shared.lock();
        while !cap.eof.iter().all(|e| *e) {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            cap = self.shared.changed.wait_timeout(cap, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn dump(&self) -> String {
        let cap = self.shared.lock();
        let mut out = String::new();
        for (stream, name) in [(Stream::Out, "stdout"), (Stream::Err, "stderr")] {
            let lines = &cap.lines[stream as usize];
            let cursor = self.cursor(stream);
            let _ = writeln!(out, "---- {} {name}: {} lines, cursor at {cursor} ----", self.label, lines.len());
            for (i, line) in lines.iter().enumerate() {
                let mark = if i == cursor { "->" } else { "  " };
                let _ = writeln!(out, "{mark}{i:4} {}", shorten(line));
            }
        }
        let status = self.status.get().map_or_else(|| "running".to_owned(), |s| s.to_string());
        let _ = writeln!(out, "---- {}: {status} ----", self.label);
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            let mut child = self.child.borrow_mut();
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() && !self.dumped.get() {
            self.await_eof(Duration::from_millis(500));
            eprintln!("{}", self.dump());
        }
    }
}
