//! Findings of reviews that show from outside the processes.

use chat_proto::KeyPair;

use crate::harness::{Proc, Server, WAIT, WELCOME, free_port, logged_server_key};

/// The server keeps its static key in `server.identity` in its data directory; a client keeps
/// its identity in `<name>.key` in its own, by default the same directory (the user's). A client
/// named `server` run by the same user must not take the server's key as its identity.
#[test]
fn a_client_named_server_does_not_take_the_servers_key_as_its_identity() {
    let server = Server::start();
    let server_key = logged_server_key(&server);
    let dir = server.data_dir().to_str().expect("a UTF-8 temp path").to_owned();
    let (server_port, port) = (server.port.to_string(), free_port().to_string());
    let client = Proc::spawn("client server", &["-c", "server", "127.0.0.1", &server_port, &port, "--data-dir", &dir]);
    client.expect_line(WELCOME, WAIT);
    let text = std::fs::read_to_string(server.data_dir().join("server.key")).expect("the client's key file");
    let client_key = KeyPair::from_file_text(&text).expect("a key").public();
    assert_ne!(client_key, server_key, "the client named server has its own key");
}
