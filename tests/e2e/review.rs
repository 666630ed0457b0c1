//! A review's findings that show from outside the processes; each test is ignored until fixed.

use crate::harness::{Proc, Server, WAIT, WELCOME, free_port, logged_server_key};

/// The server keeps its static key in `server.key` in its data directory; a client keeps its
/// identity in `<name>.key` in its own, by default the same directory (the user's). A client
/// named `server` run by the same user takes the server's key as its identity.
#[test]
#[ignore = "demonstrates finding 10"]
fn a_client_named_server_does_not_take_the_servers_key_as_its_identity() {
    let server = Server::start();
    let server_key = logged_server_key(&server);
    let dir = server.data_dir().to_str().expect("a UTF-8 temp path").to_owned();
    let (server_port, port) = (server.port.to_string(), free_port().to_string());
    let client = Proc::spawn("client server", &["-c", "server", "127.0.0.1", &server_port, &port, "--data-dir", &dir]);
    client.expect_line(WELCOME, WAIT);
    let keys: Vec<String> = std::fs::read_dir(server.data_dir())
        .expect("the data directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".key"))
        .collect();
    assert!(
        keys.len() >= 2,
        "one key file, {keys:?}, is both the server's key {server_key} and the identity of the client named server"
    );
}
