//! Answers come in the order of the commands (SPEC 4), also for a script piped in before the
//! registration has finished.

use std::time::Duration;

use crate::harness::{
    CHANNEL_ACKED, CHANNEL_NOT_RESPONDING, Client, EXITING, NOT_RESPONDING, OFFLINE_BYE, Row, SAVED, Server, TABLE,
    WAIT, WELCOME, free_port, new_dir, no_ack_from, parse_row, start_clients,
};

/// The lines `help` prints, in order.
const HELP: [&str; 9] = [
    ">>> send <name> <message>   direct message to a client",
    ">>> send_all <message>      message to everyone, through the server",
    ">>> dereg <name>            go offline (your own name)",
    ">>> reg <name>              come back online and get stored messages",
    ">>> verify <name>           safety number to compare with that client",
    ">>> trust <name>            accept that client's new key",
    ">>> list                    show the client table",
    ">>> help                    show this list",
    ">>> quit                    go offline and exit",
];

/// `printf 'list\nbogus\nhelp\n' | chatapp -c erin …`: the script is in the pipe before erin is
/// registered, and is answered in its order, after the welcome: the `list` row, the
/// unknown-command line, the help lines; then end of input exits 0. Table updates are pushes
/// from the server, not answers, so they may fall anywhere and are left out of the order.
#[test]
fn a_piped_script_is_answered_in_the_order_of_its_commands() {
    let server = Server::start();
    let port = free_port();
    let mut erin = Client::spawn("erin", server.port, port, new_dir(), &[]);
    for line in ["list", "bogus", "help"] {
        erin.send_line(line);
    }
    erin.close_stdin();
    let status = erin.wait_exit(WAIT);

    let answers: Vec<String> = erin.stdout_lines().into_iter().filter(|l| l != TABLE).collect();
    let mut want = vec![WELCOME.to_owned(), format!("<the list row of erin at 127.0.0.1:{port}>")];
    want.push(">>> [Unknown command 'bogus'. Type help for the commands.]".to_owned());
    want.extend(HELP.iter().map(|l| (*l).to_owned()));
    let erin_row = Row { name: "erin".to_owned(), ip: "127.0.0.1".to_owned(), port, online: true };
    let in_order = answers.len() == want.len()
        && answers.iter().zip(&want).enumerate().all(|(i, (got, want))| match i {
            1 => parse_row(got).as_ref() == Some(&erin_row),
            _ => got == want,
        });
    if !in_order {
        erin.fail(&format!(
            "stdout (table updates left out) should be, in this order, {want:#?}\nbut was {answers:#?}"
        ));
    }
    if status.code() != Some(0) {
        erin.fail(&format!("end of input should exit 0, got {status}"));
    }
}

/// A script's `send` to a peer that does not answer ends some three seconds later, with the
/// fallback to the server; the `send_all` typed after it is answered after it, not before.
#[test]
fn a_send_all_after_a_slow_send_is_answered_after_it() {
    let server = Server::start();
    let [mut alice, mut bob] = start_clients(&server, ["alice", "bob"]);
    bob.kill();
    alice.send_line("send bob hi");
    alice.send_line("send_all hello");
    alice.expect_line(CHANNEL_ACKED, WAIT);
    let answers: Vec<String> = alice.stdout_lines().into_iter().filter(|l| l != TABLE).collect();
    let at = |line: &str| answers.iter().position(|l| l == line);
    let (no_ack, saved, acked) = (at(&no_ack_from("bob")), at(SAVED), at(CHANNEL_ACKED));
    if !(no_ack.is_some() && no_ack < saved && saved < acked) {
        alice.fail(&format!("the send's two lines should come before the send_all's answer: {answers:#?}"));
    }
}

/// A script whose server stops answering with several sends in flight (issue 17, part 5): the
/// save that gives up first ends its command with `[Server not responding]` and `[Exiting]`,
/// and every other command still waiting ends in its own line, in its own turn, before the
/// held answers of the commands after it: the outcome of each command can be told from the
/// output alone.
#[test]
fn in_a_script_every_send_in_flight_ends_in_its_own_line_when_the_server_stops_answering() {
    let server = Server::start();
    let [mut alice, mut bob, mut carol] = start_clients(&server, ["alice", "bob", "carol"]);
    bob.send_line("dereg bob");
    bob.expect_line(OFFLINE_BYE, WAIT);
    alice.expect_line(TABLE, WAIT);
    carol.expect_line(TABLE, WAIT);
    // carol leaves silently: alice's table still has her online, so a send to her goes direct.
    carol.kill();
    server.signal("STOP");
    let from = alice.stdout_len();
    for line in ["send bob one", "send carol two", "send bob three", "send_all four", "list"] {
        alice.send_line(line);
    }
    let status = alice.wait_exit(Duration::from_secs(30));
    server.signal("CONT");
    let lines = alice.stdout_since(from);
    let want = [
        NOT_RESPONDING, // send bob one: its save, the first to give up
        EXITING,
        ">>> [No ACK from carol yet, message not sent to server: exiting.]", // send carol two
        NOT_RESPONDING,                                                      // send bob three
        CHANNEL_NOT_RESPONDING,                                              // send_all four
    ];
    if lines.len() != want.len() + 3
        || lines[..want.len()] != want
        || !lines[want.len()..].iter().all(|l| parse_row(l).is_some())
    {
        alice.fail(&format!("each command's own line, in order, then the 3 rows of list; got {lines:#?}"));
    }
    assert_eq!(status.code(), Some(1));
}
