//! The core over a real [`FileStore`], its disk jobs run on another thread: messages saved
//! before a restart are counted at registration by an open job, fetched one by one by read
//! jobs, and deleted by a removal job.

use std::net::SocketAddr;
use std::thread;
use std::time::Instant;

use chat_core::Entropy;
use chat_proto::{Datagram, MsgId, Name, REGISTER_PAD_TO, Secret, decode};
use chat_server::{Config, Job, JobDone, JobKind, Server};
use chrono::{TimeZone, Utc};
use offline_store::{FileStore, Limits, Store};

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const ALICE: u16 = 5001;
const BOB: u16 = 5002;

/// A server over the store in `dir`, started at `t0`.
fn server(dir: &std::path::Path, t0: Instant) -> Server<FileStore> {
    let store = FileStore::open(dir, Limits::default()).expect("open the store");
    let wall = Utc.with_ymd_and_hms(2026, 11, 23, 14, 5, 9).single().expect("time");
    Server::new(Config::default(), store, t0, wall, Entropy::from_seed([3; 32]))
}

/// Runs `job` on a thread of its own, as a driver that keeps the disk off its loop would.
fn on_a_thread(job: Job) -> JobDone {
    thread::spawn(move || job.run()).join().expect("the job's thread")
}

/// Delivers `d` from `port`, runs every job the server hands out (on other threads), and
/// returns what it sent, with the kinds of jobs it ran.
fn exchange(s: &mut Server<FileStore>, now: Instant, port: u16, d: Datagram) -> (Vec<(u16, Datagram)>, Vec<JobKind>) {
    s.handle_datagram(now, addr(port), d);
    let mut kinds = Vec::new();
    while let Some(job) = s.poll_job(now) {
        kinds.push(job.kind());
        s.handle_job_done(now, on_a_thread(job));
    }
    let out = std::iter::from_fn(|| s.poll_transmit())
        .map(|t| (t.to.port(), decode(&t.bytes).expect("valid datagram")))
        .collect();
    (out, kinds)
}

/// `who`'s key pair.
fn pair(who: &str) -> chat_proto::KeyPair {
    chat_proto::KeyPair::from_secret([who.len() as u8; 32])
}

/// `who`'s public key.
fn key(who: &str) -> chat_proto::PublicKey {
    pair(who).public()
}

/// `text`, message `id` from alice to bob, sealed as alice's client seals it.
fn sealed(id: MsgId, text: &str) -> chat_proto::Sealed {
    let (a, b) = (name("alice"), name("bob"));
    pair("alice").pairwise(&key("bob")).seal_text([1; chat_proto::NONCE_BYTES], &a, &b, id, text)
}

/// `who` registers at `port` (with `secret` if it has one) and confirms; returns its secret.
fn register(s: &mut Server<FileStore>, now: Instant, port: u16, who: &str, secret: Option<Secret>) -> (Secret, u32) {
    let reg = Datagram::Register {
        lan: None,
        id: MsgId(1),
        name: name(who),
        secret,
        key: key(who),
        pad: " ".repeat(REGISTER_PAD_TO),
    };
    let (out, _) = exchange(s, now, port, reg);
    let Some((secret, cookie, stored)) = out.into_iter().find_map(|(_, d)| match d {
        Datagram::Registered { secret, cookie, stored, .. } => Some((secret, cookie, stored)),
        _ => None,
    }) else {
        panic!("{who} not registered")
    };
    exchange(s, now, port, Datagram::Confirm { id: MsgId(2), cookie });
    (secret, stored)
}

#[test]
fn messages_saved_before_a_restart_are_counted_read_and_deleted_by_jobs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t0 = Instant::now();
    let mut s = server(dir.path(), t0);
    let (bob_secret, _) = register(&mut s, t0, BOB, "bob", None);
    exchange(&mut s, t0, BOB, Datagram::Dereg { id: MsgId(3), name: name("bob"), secret: bob_secret.clone() });
    let (alice_secret, _) = register(&mut s, t0, ALICE, "alice", None);
    for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
        let id = MsgId(10 + i as u64);
        let msg = MsgId(100 + i as u64);
        let save = Datagram::Save {
            id,
            msg,
            from: name("alice"),
            secret: alice_secret.clone(),
            to: name("bob"),
            sealed: sealed(msg, text),
            force: false,
        };
        let (out, _) = exchange(&mut s, t0, ALICE, save);
        assert!(out.contains(&(ALICE, Datagram::Ack { id })), "{out:?}");
    }
    let table = s.saved_table();
    drop(s);

    // A restart: the new store knows no mailbox.
    let mut s = server(dir.path(), t0);
    s.restore_table(table);
    let reg = Datagram::Register {
        lan: None,
        id: MsgId(20),
        name: name("bob"),
        secret: Some(bob_secret),
        key: key("bob"),
        pad: " ".repeat(REGISTER_PAD_TO),
    };
    let (out, kinds) = exchange(&mut s, t0, BOB, reg);
    assert_eq!(kinds, [JobKind::Open]);
    assert!(matches!(out[..], [(BOB, Datagram::Registered { stored: 3, .. })]), "{out:?}");
    let mut last = MsgId(0);
    for index in [2, 0, 1] {
        let (out, kinds) = exchange(&mut s, t0, BOB, Datagram::Fetch { id: MsgId(30 + u64::from(index)), index });
        assert_eq!(kinds, [JobKind::Read]);
        let [(BOB, Datagram::Stored { index: got, ref message, .. })] = out[..] else { panic!("{out:?}") };
        let msg = MsgId(100 + u64::from(index));
        let kept = chat_proto::Body::Sealed {
            sealed: sealed(msg, ["one", "two", "three"][index as usize]),
            key: key("alice"),
        };
        assert_eq!((got, &message.body), (index, &kept));
        if index == 2 {
            last = message.id;
        }
    }
    let (out, kinds) = exchange(&mut s, t0, BOB, Datagram::FetchDone { id: MsgId(40), count: 3, last });
    assert_eq!(kinds, [JobKind::Remove], "the ACK needs no sync of its own");
    assert_eq!(out.last(), Some(&(BOB, Datagram::Ack { id: MsgId(40) })), "{out:?}");
    assert!(s.store_mut().load(&name("bob")).expect("the mailbox").is_empty());
}

#[test]
fn jobs_and_their_results_can_go_to_another_thread() {
    fn sendable<T: Send + 'static>() {}
    sendable::<Job>();
    sendable::<JobDone>();
}

#[test]
fn a_registration_burst_after_a_restart_scans_each_mailbox_once() {
    const N: u16 = 40;
    let dir = tempfile::tempdir().expect("temporary directory");
    let t0 = Instant::now();
    let mut s = server(dir.path(), t0);
    let mut secrets = Vec::new();
    for i in 0..N {
        let (secret, _) = register(&mut s, t0, 7000 + i, &format!("user{i}"), None);
        secrets.push(secret);
    }
    let table = s.saved_table();
    drop(s);

    // A restart: every client registers again, all in one batch (one receive burst).
    let mut s = server(dir.path(), t0);
    s.restore_table(table);
    for (i, secret) in (0..N).zip(secrets) {
        let reg = Datagram::Register {
            lan: None,
            id: MsgId(50),
            name: name(&format!("user{i}")),
            secret: Some(secret),
            key: key(&format!("user{i}")),
            pad: " ".repeat(REGISTER_PAD_TO),
        };
        s.handle_datagram(t0, addr(7000 + i), reg);
    }
    let mut opens = 0;
    while let Some(job) = s.poll_job(t0) {
        opens += usize::from(job.kind() == JobKind::Open);
        s.handle_job_done(t0, job.run());
    }
    let registered = std::iter::from_fn(|| s.poll_transmit())
        .filter(|t| matches!(decode(&t.bytes), Ok(Datagram::Registered { .. })))
        .count();
    assert_eq!(registered, usize::from(N));
    // Each answer evicts its (empty) mailbox; had that made every scan still queued stale, the
    // scans would grow with the square of the burst.
    assert_eq!(opens, usize::from(N), "{opens} mailbox scans for {N} registrations");
}

#[test]
fn registrations_of_names_that_never_join_leave_no_mailbox_in_memory() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t0 = Instant::now();
    let mut s = server(dir.path(), t0);
    let names: Vec<String> = (0..500).map(|i| format!("ghost{i}")).collect();
    for (i, who) in names.iter().enumerate() {
        let port = 20_000 + u16::try_from(i).expect("port");
        let reg = Datagram::Register {
            lan: None,
            id: MsgId(1),
            name: name(who),
            secret: None,
            key: key(who),
            pad: " ".repeat(REGISTER_PAD_TO),
        };
        let (out, kinds) = exchange(&mut s, t0, port, reg);
        assert_eq!(kinds, [JobKind::Open], "a scan for a name no one has");
        assert!(matches!(out[..], [(_, Datagram::Registered { stored: 0, .. })]), "{out:?}");
    }
    // None of them ever confirms (forged source addresses): the store must not keep their
    // (empty) mailboxes, or any peer could grow the server's memory one padded datagram at a time.
    let kept = names.iter().filter(|who| s.store_mut().known_usage(&name(who)).is_some()).count();
    assert_eq!(kept, 0, "{kept} mailboxes of names that never joined are held in memory");
}
