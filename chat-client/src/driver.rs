//! The async driver: one loop over the UDP socket, user input, the core's next timeout and
//! shutdown. What goes to and comes from the server passes the encrypted channel
//! (`chat-secure`); peers' datagrams are sealed end to end by the core itself. When the core
//! moves to another node of the server, the driver opens a channel to it that expects the key
//! pinned for the node it leaves, and ignores what the old node still sends.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chat_core::{Entropy, Transmit};
use chat_proto::{KeyPair, MAX_DATAGRAM, Name, PublicKey, Secret};
use chat_secure::{ClientChannel, ClientEvent};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use crate::inbox::SHOWN_KEPT;
use crate::output::{self, Input, Printer};
use crate::record::ShownFile;
use crate::{Client, ClientError, Config, Event, Identity, KeyBook};

/// The files a client keeps in its data directory.
#[derive(Debug, Clone)]
pub struct Files {
    /// A terminal's command history.
    pub history: PathBuf,
    /// The name's secret, handed out by the server at the first registration.
    pub secret: PathBuf,
    /// The key book: the key first seen (or trusted) for each name, one `name hex` line each.
    pub keys: PathBuf,
    /// The servers' pinned keys, one `address hex` line each (a later line for an address
    /// replaces an earlier one).
    pub servers: PathBuf,
    /// The record of the messages shown, so that none is shown again after a restart: one
    /// line each, bounded (see the `record` module).
    pub shown: PathBuf,
}

/// Runs the client named `me`, whose long-term key is `key`, on `socket` against the server at
/// `server` until it exits (the returned code), the user leaves, or `shutdown` is cancelled (a
/// silent leave, code 0). The server must show `server_key` if given, else the key pinned for
/// it in `files`, else the key it shows is pinned. Commands come from the terminal or standard
/// input, lines go to standard output.
///
/// # Errors
/// [`ClientError`]: the secret file, the key book or the pinned server keys exist but cannot be
/// read or hold something else, or the OS gives no randomness; network errors are logged and
/// survived.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    socket: UdpSocket,
    cfg: Config,
    me: Name,
    server: SocketAddr,
    server_key: Option<PublicKey>,
    key: KeyPair,
    files: Files,
    shutdown: CancellationToken,
) -> Result<i32, ClientError> {
    let pinned = match server_key {
        Some(given) => Some(given),
        None => read_server_key(&files.servers, server)?,
    };
    let channel = ClientChannel::new(key.clone(), pinned, Entropy::from_os()?);
    let identity = Identity::new(key, read_secret(&files.secret)?);
    let book = read_keys(&files.keys)?;
    let entropy = Entropy::from_os()?;
    let (input, mut printer) = output::start(&me, Some(files.history.clone()));
    // A script reads answers line by line: it gets them in the order of its commands.
    let cfg = Config { answers_in_order: printer.is_plain(), ..cfg };
    let core = Client::new(cfg, me, server, identity, entropy).with_key_book(book);
    let code = drive(core, channel, &socket, input, &mut printer, Some(&files), shutdown).await;
    printer.restore();
    Ok(code)
}

/// Reads what earlier runs kept in `files` (the name's secret, the key book, the server's
/// pinned key unless `server_key` is given) and makes the core named `me` and its channel to
/// `server`, as [`run`] does: for a program that embeds a client (a gateway) and calls
/// [`drive`] with them.
///
/// # Errors
/// As [`run`]: a file exists but cannot be read or holds something else, or the OS gives no
/// randomness.
pub fn open(
    cfg: Config,
    me: Name,
    server: SocketAddr,
    server_key: Option<PublicKey>,
    key: KeyPair,
    files: &Files,
) -> Result<(Client, ClientChannel), ClientError> {
    let pinned = match server_key {
        Some(given) => Some(given),
        None => read_server_key(&files.servers, server)?,
    };
    let channel = ClientChannel::new(key.clone(), pinned, Entropy::from_os()?);
    let identity = Identity::new(key, read_secret(&files.secret)?);
    let core = Client::new(cfg, me, server, identity, Entropy::from_os()?).with_key_book(read_keys(&files.keys)?);
    Ok((core, channel))
}

/// Where a client's events go.
pub trait Sink {
    /// Shows one event.
    ///
    /// # Errors
    /// The output is gone: the client stops (a silent leave).
    fn show(&mut self, event: Event) -> io::Result<()>;

    /// Shows one of the last events before the client exits.
    ///
    /// # Errors
    /// The output is gone.
    fn show_last(&mut self, event: Event) -> io::Result<()> {
        self.show(event)
    }

    /// Shows one event with the turn of the command it answers, if any (see
    /// [`Client::poll_answer`]); [`Sink::show`] unless the sink tells answers apart.
    ///
    /// # Errors
    /// The output is gone: the client stops (a silent leave).
    fn show_answer(&mut self, event: Event, turn: Option<u64>) -> io::Result<()> {
        let _ = turn;
        self.show(event)
    }
}

impl Sink for Printer {
    fn show(&mut self, event: Event) -> io::Result<()> {
        Printer::show(self, &event)
    }

    fn show_last(&mut self, event: Event) -> io::Result<()> {
        Printer::show_last(self, &event)
    }
}

impl Sink for mpsc::UnboundedSender<Event> {
    fn show(&mut self, event: Event) -> io::Result<()> {
        self.send(event).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// How many nodes the client left are remembered, to ignore what they still send.
const FORMER_KEPT: usize = 64;

/// The encrypted channel to the node the core talks to, and the nodes it left.
struct Link {
    server: SocketAddr,
    channel: ClientChannel,
    /// Nodes the core moved away from: what they send is ignored.
    former: Vec<SocketAddr>,
}

impl Link {
    /// Follows the core to the node it moved to, if it did: a new channel there, which expects
    /// the key pinned for the node it leaves (all nodes show one key: a move never makes the
    /// client take another), and that key pinned for the new address in `known_servers`.
    fn follow(&mut self, core: &mut Client, files: Option<&Files>) {
        let to = core.server();
        if to == self.server {
            return;
        }
        let pinned = self.channel.pinned();
        if pinned.is_none() {
            tracing::warn!(from = %self.server, %to, "moving with no key pinned for the node left");
        }
        let entropy = Entropy::from_seed(core.channel_seed());
        self.channel = ClientChannel::new(core.key_pair().clone(), pinned, entropy);
        self.former.retain(|a| *a != to && *a != self.server);
        if self.former.len() == FORMER_KEPT {
            self.former.remove(0);
        }
        self.former.push(self.server);
        tracing::info!(from = %self.server, %to, "moved to another node");
        self.server = to;
        let (Some(files), Some(key)) = (files, pinned) else { return };
        if matches!(read_server_key(&files.servers, to), Ok(Some(known)) if known == key) {
            return;
        }
        if let Err(e) = append_server_key(&files.servers, to, key) {
            core.notice(format!("Cannot keep the server's key: {e}."));
        }
    }
}

/// Drives `core` on `socket`, talking to its server through `channel`, with commands from
/// `input` and events to `out` until it exits; keeps a new secret, new entries of the key book,
/// a newly pinned server key and the record of the messages shown in `files` (whose record,
/// kept by earlier runs, it reads first: what they showed is not shown again). [`run`] uses it
/// with the terminal; a program that embeds a client (a benchmark, a gateway) uses it with
/// channels.
pub async fn drive(
    mut core: Client,
    channel: ClientChannel,
    socket: &UdpSocket,
    mut input: mpsc::UnboundedReceiver<Input>,
    out: &mut impl Sink,
    files: Option<&Files>,
    shutdown: CancellationToken,
) -> i32 {
    let mut record = files.map(|f| {
        let (inbox, file, warning) = crate::record::load(&f.shown, SHOWN_KEPT);
        core.handle_record(inbox);
        if let Some(warning) = warning {
            core.notice(warning);
        }
        file
    });
    core.start(Instant::now());
    let mut link = Link { server: core.server(), channel, former: Vec::new() };
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut plain = vec![0u8; MAX_DATAGRAM + 1];
    let mut input_open = true;
    // One timer for the whole loop, moved when the core's next deadline moves.
    let timer = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(timer);
    loop {
        if let Some(code) = flush(&mut core, &mut link, socket, out, files, record.as_mut()).await {
            return code;
        }
        let wake = core.poll_timeout().into_iter().chain(link.channel.poll_timeout()).min();
        let wake = wake.map(tokio::time::Instant::from_std);
        if let Some(at) = wake.filter(|at| *at != timer.deadline()) {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => core.handle_interrupt(),
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) if from == link.server => {
                    let now = Instant::now();
                    if let Some(bytes) = link.channel.receive(now, &buf[..len], &mut plain) {
                        core.handle_bytes(now, from, bytes);
                    }
                }
                Ok((_, from)) if link.former.contains(&from) => {
                    tracing::debug!(%from, "ignored a datagram from a node the client left");
                }
                Ok((len, from)) => core.handle_bytes(Instant::now(), from, &buf[..len]),
                Err(e) => tracing::debug!("receive error: {e}"),
            },
            line = input.recv(), if input_open => match line {
                Some(Input::Line(line)) => core.handle_line(Instant::now(), &line),
                Some(Input::Unreadable) => core.handle_unreadable_line(Instant::now()),
                Some(Input::Interrupt) => core.handle_interrupt(),
                Some(Input::End) | None => {
                    input_open = false;
                    core.handle_end_of_input(Instant::now());
                }
            },
            () = &mut timer, if wake.is_some() => {}
        }
        let now = Instant::now();
        core.handle_timeout(now);
        link.channel.handle_timeout(now);
        keep(&mut core, files);
    }
}

/// Keeps what the core handed out: a new secret, new entries of the key book (each problem
/// told to the user once it happens).
fn keep(core: &mut Client, files: Option<&Files>) {
    let secret = core.poll_secret();
    let keys = core.poll_keys();
    let Some(files) = files else { return };
    if let Some(secret) = secret {
        if let Err(e) = write_secret(&files.secret, &secret) {
            core.notice(format!("Cannot keep the name's secret in {}: {e}.", files.secret.display()));
        }
    }
    if !keys.is_empty() {
        if let Err(e) = append_keys(&files.keys, &keys) {
            core.notice(format!("Cannot keep the key book in {}: {e}.", files.keys.display()));
        }
    }
}

/// Follows the core to another node if it moved, acts on what the channel found out about the
/// server's key, prints the core's events, keeps what they showed in `record`, and sends what
/// the core queued (to the server through the link's channel); the exit code once it is done,
/// or 0 if the output is gone (a closed terminal is a silent leave).
///
/// The order is what makes a message shown once across restarts: its line is printed, then
/// recorded (before the next line is printed), then its ACK (or the `fetch_done` of stored
/// ones) leaves, once every line of the batch is shown and recorded. A kill between a line and
/// its record shows that one line again at the next run, but that message was never
/// acknowledged: its sender retries (or the server still holds it), and seeing it twice is the
/// lesser harm.
/// Recording first would, after a kill before the line, leave a message recorded as shown that
/// nobody saw, and ACKed again as a duplicate by the next run: lost while its sender is told it
/// was received. Printing and recording are each one `write`, so that window is a few
/// microseconds wide; neither needs an `fsync` to survive a process kill (see the record).
async fn flush(
    core: &mut Client,
    link: &mut Link,
    socket: &UdpSocket,
    out: &mut impl Sink,
    files: Option<&Files>,
    mut record: Option<&mut ShownFile>,
) -> Option<i32> {
    link.follow(core, files);
    let Link { server, channel, .. } = link;
    let server = *server;
    while let Some(event) = channel.poll_event() {
        match event {
            ClientEvent::KeyLearned(key) => {
                tracing::info!(%server, %key, "server key pinned");
                if let Some(Err(e)) = files.map(|f| append_server_key(&f.servers, server, key)) {
                    core.notice(format!("Cannot keep the server's key: {e}."));
                }
            }
            ClientEvent::KeyRefused { shown, pinned } => core.refuse_server_key(shown, pinned),
        }
    }
    let exiting = core.poll_exit().is_some();
    while let Some((event, turn, message)) = core.poll_line() {
        let printed = if exiting { out.show_last(event) } else { out.show_answer(event, turn) };
        if printed.is_err() {
            return Some(0);
        }
        // Recorded right after its own line, before the next line is printed: a kill shows
        // again at most the one line it cut in.
        if let (Some(record), Some(message)) = (record.as_deref_mut(), message) {
            if let Some(problem) = record.append(&message, core.record()) {
                core.notice(problem);
            }
        }
    }
    while let Some(Transmit { to, bytes }) = core.poll_transmit() {
        if to == server {
            channel.send(Instant::now(), &bytes);
        } else if let Err(e) = socket.send_to(&bytes, to).await {
            tracing::debug!(%to, "send failed: {e}");
        }
    }
    while let Some(bytes) = channel.poll_transmit() {
        if let Err(e) = socket.send_to(&bytes, server).await {
            tracing::debug!(%server, "send failed: {e}");
        }
    }
    core.poll_exit()
}

/// The secret kept by an earlier run, if any.
fn read_secret(path: &Path) -> Result<Option<Secret>, ClientError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Secret::new(text.trim())
            .map(Some)
            .map_err(|source| ClientError::BadSecret { path: path.to_owned(), source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ClientError::ReadSecret { path: path.to_owned(), source }),
    }
}

/// The key pinned for the server at `server` by an earlier run, if any.
fn read_server_key(path: &Path, server: SocketAddr) -> Result<Option<PublicKey>, ClientError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ClientError::ReadServers { path: path.to_owned(), source }),
    };
    let mut found = None;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || ClientError::BadServers { path: path.to_owned(), line: i + 1 };
        let (addr, key) = line.trim().split_once(' ').ok_or_else(bad)?;
        let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
        let key: PublicKey = key.trim().parse().map_err(|_| bad())?;
        if addr == server {
            found = Some(key);
        }
    }
    Ok(found)
}

/// Pins `key` for the server at `server`, where only this user can read it.
fn append_server_key(path: &Path, server: SocketAddr, key: PublicKey) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        chat_core::private::create_dir_all(dir)?;
    }
    let mut file = chat_core::private::file_options().append(true).create(true).open(path)?;
    io::Write::write_all(&mut file, format!("{server} {key}\n").as_bytes())?;
    file.sync_data()
}

/// The key book kept by earlier runs (empty if none).
fn read_keys(path: &Path) -> Result<KeyBook, ClientError> {
    match std::fs::read_to_string(path) {
        Ok(text) => KeyBook::parse(&text).map_err(|source| ClientError::BadKeys { path: path.to_owned(), source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(KeyBook::default()),
        Err(source) => Err(ClientError::ReadKeys { path: path.to_owned(), source }),
    }
}

/// Appends `keys` to the key book (a later line for a name replaces an earlier one), where only
/// this user can read it.
fn append_keys(path: &Path, keys: &[(Name, PublicKey)]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let text: String = keys.iter().map(|(n, k)| KeyBook::line(n, k)).collect();
    io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_data()
}

/// Keeps the secret where only this user can read it.
fn write_secret(path: &Path, secret: &Secret) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        chat_core::private::create_dir_all(dir)?;
    }
    let mut file = chat_core::private::file_options().write(true).create(true).truncate(true).open(path)?;
    io::Write::write_all(&mut file, format!("{}\n", secret.expose()).as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn a_bad_secret_file_is_an_error_that_names_it_and_chains_its_cause_once() {
        let dir = std::env::temp_dir().join(format!("chat-client-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("alice.secret");
        assert!(matches!(read_secret(&path), Ok(None)), "no file yet: no secret");
        std::fs::write(&path, "not a secret\n").expect("write");
        let err = read_secret(&path).expect_err("not a secret");
        let shown = err.to_string();
        assert_eq!(shown, format!("the secret file {} holds no valid secret", path.display()));
        let cause = err.source().expect("a cause").to_string();
        assert!(!shown.contains(&cause), "the cause is chained, not repeated: {shown}");
        std::fs::write(&path, "00112233445566778899aabbccddeeff\n").expect("write");
        assert!(matches!(read_secret(&path), Ok(Some(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_key_book_round_trips_through_its_file_kept_private_and_a_bad_one_names_it() {
        let dir = std::env::temp_dir().join(format!("chat-client-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("alice.keys");
        let _ = std::fs::remove_file(&path);
        assert!(read_keys(&path).expect("no file yet").known(&Name::new("bob").expect("name")).is_none());
        let (bob, carol) = (Name::new("bob").expect("name"), Name::new("carol").expect("name"));
        append_keys(&path, &[(bob.clone(), PublicKey::from([1; 32])), (carol.clone(), PublicKey::from([2; 32]))])
            .expect("append");
        append_keys(&path, &[(bob.clone(), PublicKey::from([3; 32]))]).expect("append");
        let book = read_keys(&path).expect("its own file");
        assert_eq!(book.known(&bob), Some(PublicKey::from([3; 32])), "the later line wins");
        assert_eq!(book.known(&carol), Some(PublicKey::from([2; 32])));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "bob nothex\n").expect("write");
        let err = read_keys(&path).expect_err("damaged");
        assert_eq!(err.to_string(), format!("the key book {} is damaged", path.display()));
        assert_eq!(err.source().expect("a cause").to_string(), "line 1: not a key (64 hex digits)");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn following_a_move_expects_the_key_pinned_for_the_node_left_and_pins_it_for_the_new_one() {
        let dir = std::env::temp_dir().join(format!("chat-client-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = Files {
            history: dir.join("alice.history"),
            secret: dir.join("alice.secret"),
            keys: dir.join("alice.keys"),
            servers: dir.join("known_servers"),
            shown: dir.join("alice.shown"),
        };
        let (old, new): (SocketAddr, SocketAddr) =
            ("127.0.0.1:4000".parse().expect("addr"), "127.0.0.1:4001".parse().expect("addr"));
        let key = KeyPair::from_secret([5; 32]);
        let pinned = PublicKey::from([7; 32]);
        let identity = Identity::new(key.clone(), None);
        let name = Name::new("alice").expect("name");
        // The core talks to `new` now; the link still to `old`, whose key is pinned.
        let mut core = Client::new(Config::default(), name, new, identity, Entropy::from_seed([1; 32]));
        let channel = ClientChannel::new(key, Some(pinned), Entropy::from_seed([2; 32]));
        let mut link = Link { server: old, channel, former: Vec::new() };
        link.follow(&mut core, Some(&files));
        assert_eq!((link.server, link.channel.pinned()), (new, Some(pinned)), "the same key, expected at the new node");
        assert_eq!(link.former, [old], "what the old node sends is ignored");
        assert_eq!(read_server_key(&files.servers, new).expect("read"), Some(pinned));
        link.follow(&mut core, Some(&files));
        let lines = std::fs::read_to_string(&files.servers).expect("read");
        assert_eq!(lines.lines().count(), 1, "pinned once: {lines}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Checks, at each line shown, that the record holds exactly the messages of the lines
    /// shown before it (each recorded right after its own line), and that no ACK left yet.
    struct Order {
        record: PathBuf,
        bob: std::net::UdpSocket,
        seen: Vec<String>,
        /// The record's line for each line shown so far.
        kept: String,
        /// The record's line for each message, in the order they are shown.
        lines: Vec<String>,
    }

    impl Sink for Order {
        fn show(&mut self, event: Event) -> io::Result<()> {
            let recorded = std::fs::read_to_string(&self.record).unwrap_or_default();
            assert_eq!(recorded, self.kept, "the record at line {} ({event})", self.seen.len() + 1);
            let mut buf = [0u8; 2048];
            let acked = self.bob.recv_from(&mut buf);
            assert!(acked.is_err(), "ACKed before it was shown");
            if let Some(line) = self.lines.get(self.seen.len()) {
                self.kept.push_str(line);
            }
            self.seen.push(event.to_string());
            Ok(())
        }
    }

    /// Bob's port is a fixed one: the tests that bind it take turns.
    static BOB_PORT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Bob's chats `ids` come in at once, then one `flush`: each line is shown, then recorded
    /// (checked by [`Order`] at the next line), and the ACKs leave only after all of them.
    async fn shown_recorded_acked(ids: &[u64]) {
        let _turn = BOB_PORT.lock().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alice.shown");
        let bob = std::net::UdpSocket::bind(("127.0.0.1", crate::tests::BOB)).expect("bob's port");
        bob.set_nonblocking(true).expect("nonblocking");
        let mut f = crate::tests::Fixture::online(true);
        let (inbox, mut record, _) = crate::record::load(&path, SHOWN_KEPT);
        f.client.handle_record(inbox);
        for &id in ids {
            f.chat_from_bob(id, &format!("hi {id}"));
        }

        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let channel = ClientChannel::new(KeyPair::from_secret([5; 32]), None, Entropy::from_seed([2; 32]));
        let mut link = Link { server: f.client.server(), channel, former: Vec::new() };
        let lines: Vec<String> = ids.iter().map(|id| format!("d bob {id:016x}\n")).collect();
        let mut out = Order { record: path.clone(), bob, seen: Vec::new(), kept: String::new(), lines: lines.clone() };
        let code = flush(&mut f.client, &mut link, &socket, &mut out, None, Some(&mut record)).await;
        let shown: Vec<String> = ids.iter().map(|id| format!(">>> bob: hi {id}")).collect();
        assert_eq!((code, &out.seen[..]), (None, &shown[..]));
        assert_eq!(std::fs::read_to_string(&path).expect("recorded"), lines.concat());
        out.bob.set_nonblocking(false).expect("blocking");
        out.bob.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        for &id in ids {
            let mut buf = [0u8; 2048];
            let (len, _) = out.bob.recv_from(&mut buf).expect("the ACK, after");
            let acked = chat_proto::decode(&buf[..len]).expect("a datagram");
            assert!(
                matches!(acked, chat_proto::Datagram::ChatAck { id: chat_proto::MsgId(i), .. } if i == id),
                "{acked:?}"
            );
        }
    }

    /// Issue 17, part 3: a message's line is shown, then the message is recorded in the
    /// client's file, then its ACK leaves (the comment on `flush` says why this order).
    #[tokio::test]
    async fn a_message_is_shown_then_recorded_then_acked() {
        shown_recorded_acked(&[7]).await;
    }

    /// Each message of a batch is recorded right after its own line, before the next line is
    /// printed: a kill in the middle of a batch shows again at most the line it cut in, not
    /// every line printed before it (the campaign's `doubled cmp.d.cy.365`).
    #[tokio::test]
    async fn each_line_of_a_batch_is_recorded_before_the_next_is_shown() {
        shown_recorded_acked(&[7, 8, 9]).await;
    }

    #[test]
    fn a_pinned_server_key_is_kept_per_address_privately_and_a_damaged_file_names_its_line() {
        let dir = std::env::temp_dir().join(format!("chat-client-servers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("known_servers");
        let (one, two): (SocketAddr, SocketAddr) =
            ("127.0.0.1:5000".parse().expect("addr"), "[::1]:5000".parse().expect("addr"));
        assert!(read_server_key(&path, one).expect("no file yet").is_none());
        append_server_key(&path, one, PublicKey::from([1; 32])).expect("pin");
        append_server_key(&path, two, PublicKey::from([2; 32])).expect("pin");
        append_server_key(&path, one, PublicKey::from([3; 32])).expect("pin again");
        assert_eq!(read_server_key(&path, one).expect("read"), Some(PublicKey::from([3; 32])), "the later line wins");
        assert_eq!(read_server_key(&path, two).expect("read"), Some(PublicKey::from([2; 32])));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("127.0.0.1:5000 nothex\n");
        std::fs::write(&path, text).expect("write");
        let err = read_server_key(&path, one).expect_err("damaged");
        assert_eq!(
            err.to_string(),
            format!("the pinned server keys {} are damaged: line 4 is not an address and a key", path.display())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
