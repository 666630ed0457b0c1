//! Identity at rest (SPEC 12, first bullet): the data directory is the user's own, never the
//! current folder, so a client started from anywhere keeps its name; a client that cannot keep
//! its identity does not register and leaves the name free; the server keeps no copy of a
//! secret, and every file it writes is its own alone.

use std::path::Path;

use crate::harness::{Client, OFFLINE_BYE, Proc, SAVED, Server, TABLE, WAIT, WELCOME, free_port, new_dir};

/// `chatapp -c <name> …` for `server` on a fresh port, with no `--data-dir`: `HOME` is `home`,
/// started from `cwd`.
fn client_at_home(name: &str, server: &Server, home: &Path, cwd: &Path) -> Proc {
    let (server_port, port) = (server.port.to_string(), free_port().to_string());
    let args = ["-c", name, "127.0.0.1", &server_port, &port];
    Proc::spawn_at_home(format!("client {name}:{port} (home {})", home.display()), &args, home, cwd)
}

/// Every file under `dir` with its mode, and every directory below it.
#[cfg(unix)]
fn walk(dir: &Path, files: &mut Vec<(std::path::PathBuf, u32)>, dirs: &mut Vec<(std::path::PathBuf, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).expect("read a data directory").flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            dirs.push((path.clone(), mode));
            walk(&path, files, dirs);
        } else {
            files.push((path, mode));
        }
    }
}

#[test]
fn a_client_started_from_another_folder_keeps_its_name() {
    let server = Server::start();
    let (home, elsewhere) = (new_dir(), new_dir());
    let (first_cwd, second_cwd) = (new_dir(), new_dir());

    let mut first = client_at_home("dave", &server, home.path(), first_cwd.path());
    first.expect_lines_unordered(&[WELCOME, TABLE], WAIT);
    first.send_line("quit");
    first.expect_line(OFFLINE_BYE, WAIT);
    assert_eq!(first.wait_exit(WAIT).code(), Some(0));
    assert!(home.path().join(".local/share/chatapp/dave.key").is_file(), "the key is in the user's data directory");
    let in_cwd: Vec<_> = std::fs::read_dir(first_cwd.path()).expect("read cwd").flatten().collect();
    assert!(in_cwd.is_empty(), "nothing is written to the current folder: {in_cwd:?}");

    let mut again = client_at_home("dave", &server, home.path(), second_cwd.path());
    again.expect_lines_unordered(&[WELCOME, TABLE], WAIT);
    again.send_line("quit");
    again.expect_line(OFFLINE_BYE, WAIT);
    assert_eq!(again.wait_exit(WAIT).code(), Some(0));

    let stranger = client_at_home("dave", &server, elsewhere.path(), second_cwd.path());
    let code = stranger.wait_exit(WAIT).code();
    if code != Some(1) || stranger.stdout_lines().iter().any(|l| l == WELCOME) {
        stranger.fail(&format!("another user's client must be refused dave (exit 1); exit {code:?}"));
    }
}

#[test]
fn with_no_data_dir_and_no_home_the_program_gives_one_line_and_exit_1() {
    let cwd = new_dir();
    let proc = Proc::spawn_at_home("server with no home", &["-s", &free_port().to_string()], Path::new(""), cwd.path());
    // An empty HOME is no home: the same as none.
    assert_eq!(proc.wait_exit(WAIT).code(), Some(1));
    let err = proc.stderr_lines();
    if err.len() != 1 || !err[0].starts_with("error: no data directory") {
        proc.fail("should print one `error: no data directory` line");
    }
}

#[test]
fn a_client_that_cannot_keep_its_identity_does_not_register_and_the_name_stays_free() {
    let server = Server::start();
    let (server_port, port) = (server.port.to_string(), free_port().to_string());
    let args = ["-c", "erin", "127.0.0.1", &server_port, &port, "--data-dir", "/proc/nope"];
    let homeless = Proc::spawn("client erin (/proc/nope)", &args);
    assert_eq!(homeless.wait_exit(WAIT).code(), Some(1));
    let err = homeless.stderr_lines();
    let want = "error: no identity, so no registration: cannot keep the identity in /proc/nope/erin.key";
    if err.len() != 1 || !err[0].starts_with(want) || !homeless.stdout_lines().is_empty() {
        homeless.fail(&format!("should print one line starting `{want}` and nothing on stdout"));
    }
    let erin = Client::start("erin", &server);
    erin.assert_alive();
}

#[cfg(unix)]
#[test]
fn the_server_keeps_no_copy_of_a_secret_and_its_files_are_its_own_alone() {
    let server = Server::start();
    let mut alice = Client::start("alice", &server);
    let mut bob = Client::start("bob", &server);
    alice.expect_line(TABLE, WAIT);
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(TABLE, WAIT);
    alice.send_line("send bob kept for bob");
    alice.expect_line(SAVED, WAIT);

    let secrets: Vec<String> = [&alice, &bob]
        .iter()
        .map(|c| std::fs::read_to_string(c.dir.path().join(format!("{}.secret", c.name))).expect("the client's secret"))
        .map(|s| s.trim().to_owned())
        .collect();
    assert!(secrets.iter().all(|s| s.len() >= 16), "{secrets:?}");
    // The table is written after each batch of changes: wait until it names bob offline.
    let deadline = std::time::Instant::now() + WAIT;
    let table = || {
        ["clients.json", "clients.log"]
            .iter()
            .map(|f| std::fs::read_to_string(server.data_dir().join(f)).unwrap_or_default())
            .collect::<String>()
    };
    while !table().contains("\"bob\"") {
        if std::time::Instant::now() > deadline {
            server.fail("the table files never named bob");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    walk(server.data_dir(), &mut files, &mut dirs);
    assert!(files.iter().any(|(p, _)| p.ends_with("journal")), "a stored message was written: {files:?}");
    for (path, mode) in &files {
        let bytes = std::fs::read(path).expect("read a server file");
        for secret in &secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{} holds a client's secret", path.display());
        }
        assert_eq!(*mode, 0o600, "{} is mode {mode:o}", path.display());
    }
    for (path, mode) in &dirs {
        assert_eq!(*mode, 0o700, "{} is mode {mode:o}", path.display());
    }
}
