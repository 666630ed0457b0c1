//! Command-line checks: a bad argument gives one stderr line naming it and exit code 2;
//! `--help` and `--version` exit 0; an error at start is one `error:` line that says each of
//! its causes once, and exit code 1. No server is needed.

use std::time::Duration;

use tempfile::NamedTempFile;

use crate::harness::{Proc, free_port};

const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Runs `chatapp args…` with stdin closed; returns the process after it exited.
fn run(args: &[&str]) -> (Proc, Option<i32>) {
    let mut proc = Proc::spawn("chatapp", args);
    proc.close_stdin();
    let code = proc.wait_exit(EXIT_WAIT).code();
    (proc, code)
}

/// Asserts exit code 2 and exactly one (non-blank) stderr line containing one of `mentions`.
fn assert_usage_error(args: &[&str], mentions: &[&str]) {
    let (proc, code) = run(args);
    if code != Some(2) {
        proc.fail(&format!("bad arguments should exit with code 2, got {code:?}"));
    }
    let lines: Vec<String> = proc.stderr_lines().into_iter().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        proc.fail(&format!("expected exactly one line on stderr, got {}", lines.len()));
    }
    let line = lines[0].to_lowercase();
    if !mentions.iter().any(|m| line.contains(&m.to_lowercase())) {
        proc.fail(&format!("the stderr line should mention one of {mentions:?}"));
    }
}

#[test]
fn server_port_below_1024_is_refused() {
    assert_usage_error(&["-s", "80"], &["80"]);
}

#[test]
fn server_port_above_65535_is_refused() {
    assert_usage_error(&["-s", "70000"], &["70000"]);
}

#[test]
fn server_port_not_a_number_is_refused() {
    assert_usage_error(&["-s", "abc"], &["abc"]);
}

#[test]
fn client_port_below_1024_is_refused() {
    let server = free_port().to_string();
    assert_usage_error(&["-c", "alice", "127.0.0.1", &server, "80"], &["80"]);
}

#[test]
fn client_server_port_above_65535_is_refused() {
    let port = free_port().to_string();
    assert_usage_error(&["-c", "alice", "127.0.0.1", "70000", &port], &["70000"]);
}

#[test]
fn bad_server_ip_is_refused() {
    let (server, port) = (free_port().to_string(), free_port().to_string());
    assert_usage_error(&["-c", "alice", "999.1.1.1", &server, &port], &["999.1.1.1"]);
}

#[test]
fn name_with_whitespace_is_refused() {
    let (server, port) = (free_port().to_string(), free_port().to_string());
    assert_usage_error(&["-c", "a b", "127.0.0.1", &server, &port], &["a b"]);
}

#[test]
fn name_longer_than_32_chars_is_refused() {
    let (server, port) = (free_port().to_string(), free_port().to_string());
    let name = "n".repeat(33);
    assert_usage_error(&["-c", &name, "127.0.0.1", &server, &port], &[&name, "name"]);
}

#[test]
fn missing_client_port_is_refused() {
    let server = free_port().to_string();
    assert_usage_error(&["-c", "alice", "127.0.0.1", &server], &["port"]);
}

#[test]
fn missing_server_port_is_refused() {
    assert_usage_error(&["-s"], &["port"]);
}

#[test]
fn no_arguments_is_refused() {
    let (proc, code) = run(&[]);
    if code != Some(2) {
        proc.fail(&format!("no arguments should exit with code 2, got {code:?}"));
    }
    let lines = proc.stderr_lines().into_iter().filter(|l| !l.trim().is_empty()).count();
    if lines != 1 {
        proc.fail(&format!("expected exactly one line on stderr, got {lines}"));
    }
}

#[test]
fn help_exits_0() {
    let (proc, code) = run(&["--help"]);
    if code != Some(0) {
        proc.fail(&format!("--help should exit 0, got {code:?}"));
    }
    let text = proc.stdout_lines().join("\n");
    if !(text.contains("-s") && text.contains("-c")) {
        proc.fail("--help should describe -s and -c on stdout");
    }
}

#[test]
fn version_exits_0() {
    let (proc, code) = run(&["--version"]);
    if code != Some(0) {
        proc.fail(&format!("--version should exit 0, got {code:?}"));
    }
    if !proc.stdout_lines().iter().any(|l| l.contains(env!("CARGO_PKG_VERSION"))) {
        proc.fail("--version should print the package version on stdout");
    }
}

/// A data directory that is a regular file: the store cannot create its folder in it. The one
/// line names what failed (the store), where (the folder), and the OS's reason, once: the
/// store's own error already says that reason, and it is also the store error's source.
#[test]
fn a_data_dir_that_is_a_file_gives_one_error_line_with_each_cause_once() {
    let file = NamedTempFile::new().expect("create a temporary file");
    let mailboxes = file.path().join("mailboxes");
    let reason = std::fs::create_dir(&mailboxes).expect_err("no folder can be made inside a file").to_string();
    let dir = file.path().to_str().expect("a UTF-8 temp path");
    let (proc, code) = run(&["-s", &free_port().to_string(), "--data-dir", dir]);
    if code != Some(1) {
        proc.fail(&format!("an unusable data directory should exit with code 1, got {code:?}"));
    }
    let stderr = proc.stderr_lines();
    let errors: Vec<&String> = stderr.iter().filter(|l| l.starts_with("error: ")).collect();
    let [line] = errors.as_slice() else {
        proc.fail(&format!("expected exactly one `error:` line on stderr, got {}", errors.len()));
    };
    let want = ["cannot open the message store", &mailboxes.display().to_string(), &reason];
    if let Some(missing) = want.iter().find(|w| !line.contains(*w)) {
        proc.fail(&format!("the error line should contain {missing:?}"));
    }
    let said = stderr.iter().map(|l| l.matches(&reason).count()).sum::<usize>();
    if said != 1 {
        proc.fail(&format!("the cause {reason:?} should be said once on stderr, was said {said} times"));
    }
}

/// A server whose port is taken stops with one line, and leaves its data directory as it was:
/// no key, no table, no mailboxes made for a server that never served.
#[test]
fn a_server_whose_port_is_taken_says_so_and_makes_no_files() {
    let taken = std::net::UdpSocket::bind("0.0.0.0:0").expect("take a port");
    let port = taken.local_addr().expect("its address").port().to_string();
    let dir = tempfile::TempDir::new().expect("a data directory");
    let dir_arg = dir.path().to_str().expect("utf-8").to_owned();
    let (proc, code) = run(&["-s", &port, "--data-dir", &dir_arg]);
    assert_eq!(code, Some(1));
    let errors: Vec<String> = proc.stderr_lines().into_iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with(&format!("error: cannot listen on UDP port {port}")), "{errors:?}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read the directory").collect();
    assert!(left.is_empty(), "files made by a server that never served: {left:?}");
}
