//! Unit tests for both stores, the file name encoding and the record format.

use std::fs;
use std::path::Path;

use chat_proto::{Name, Origin, StoredMessage, Text};
use chrono::DateTime;

use crate::{Appended, FileStore, Limits, MemStore, Store, StoreError, Usage, file_name, record};

fn name(s: &str) -> Name {
    Name::new(s).expect("valid name")
}

fn msg(i: u32) -> StoredMessage {
    StoredMessage {
        id: chat_proto::MsgId(u64::from(i)),
        from: name("alice"),
        origin: if i % 2 == 0 { Origin::Direct } else { Origin::Channel },
        at: DateTime::from_timestamp(1_800_000_000 + i64::from(i), 0).expect("valid time"),
        body: Text::new(format!("hello number {i} \"quoted\" λ")).expect("valid text").into(),
    }
}

fn msgs(range: std::ops::Range<u32>) -> Vec<StoredMessage> {
    range.map(msg).collect()
}

fn line_len(i: u32) -> u64 {
    record::encode(&msg(i)).expect("encodes").len() as u64
}

fn append_all(store: &mut impl Store, to: &Name, range: std::ops::Range<u32>) {
    for i in range {
        store.append(to, &msg(i)).expect("append");
    }
}

fn open(dir: &Path) -> FileStore {
    FileStore::open(dir, Limits::default()).expect("open store")
}

#[test]
fn append_load_keeps_order_across_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("nested/mail");
    let bob = name("bob");
    let mut store = open(&dir);
    assert_eq!(store.load(&bob).expect("load"), vec![]);
    append_all(&mut store, &bob, 0..150);
    // Written at once: visible before the sync.
    assert_eq!(store.load(&bob).expect("load"), msgs(0..150));
    store.sync().expect("sync");
    assert_eq!(store.open_handles(), 1, "the busy mailbox stays open");
    append_all(&mut store, &bob, 150..200);
    store.sync().expect("sync");
    let usage = store.usage(&bob).expect("usage");
    drop(store);

    let mut again = open(&dir);
    assert_eq!(again.usage(&bob).expect("usage"), usage);
    assert_eq!(usage.count, 200);
    assert_eq!(usage.bytes, fs::metadata(again.mailbox_path(&bob)).expect("meta").len());
    assert_eq!(again.load(&bob).expect("load"), msgs(0..200));
}

#[cfg(unix)]
#[test]
fn every_file_and_directory_the_store_makes_is_its_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data/mailboxes");
    let (bob, carol) = (name("bob"), name("carol"));
    let mut store = open(&dir);
    append_all(&mut store, &bob, 0..5);
    append_all(&mut store, &carol, 0..2);
    store.sync().expect("sync");
    store.remove_first(&bob, 2).expect("a partial removal rewrites the mailbox");
    store.sync().expect("sync");
    assert_eq!((mode(&tmp.path().join("data")), mode(&dir)), (0o700, 0o700));
    let files: Vec<_> = fs::read_dir(&dir).expect("read dir").flatten().map(|e| e.path()).collect();
    assert_eq!(files.len(), 3, "journal and two mailboxes: {files:?}");
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn remove_first_partial_then_all() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..5);
    store.sync().expect("sync");
    store.remove_first(&bob, 2).expect("remove 2");
    assert_eq!(store.load(&bob).expect("load"), msgs(2..5));
    let usage = store.usage(&bob).expect("usage");
    assert_eq!(open(tmp.path()).usage(&bob).expect("usage"), usage);
    assert_eq!(usage.bytes, line_len(2) + line_len(3) + line_len(4));
    // Unsynced appends survive a partial removal, and later appends go to the new file.
    store.append(&bob, &msg(5)).expect("append");
    store.remove_first(&bob, 1).expect("remove 1");
    store.append(&bob, &msg(6)).expect("append");
    store.sync().expect("sync");
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), msgs(3..7));

    store.remove_first(&bob, 100).expect("remove all");
    assert!(!store.mailbox_path(&bob).exists(), "file removed");
    assert_eq!(store.load(&bob).expect("load"), vec![]);
    assert_eq!(store.usage(&bob).expect("usage"), Usage::default());
    let leftovers: Vec<_> =
        fs::read_dir(tmp.path()).expect("read dir").flatten().filter(|e| e.file_name() != "journal").collect();
    assert!(leftovers.is_empty(), "no temp files left: {leftovers:?}");
    store.remove_first(&bob, 1).expect("remove from no mailbox");
}

#[test]
fn count_limit_refuses_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let limits = Limits { max_messages: 3, ..Limits::default() };
    let mut store = FileStore::open(tmp.path(), limits).expect("open");
    append_all(&mut store, &bob, 0..3);
    store.sync().expect("sync");
    let before = fs::read(store.mailbox_path(&bob)).expect("read");
    let err = store.append(&bob, &msg(3)).expect_err("full");
    store.sync().expect("sync");
    assert!(
        matches!(&err, StoreError::MailboxFull { name, limit } if *name == bob && limit == "3 messages"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "mailbox of bob is full (3 messages)");
    assert_eq!(fs::read(store.mailbox_path(&bob)).expect("read"), before);
    // A fresh scan sees the same, and other mailboxes are not affected.
    let mut again = FileStore::open(tmp.path(), limits).expect("open");
    assert!(again.append(&bob, &msg(3)).is_err());
    again.append(&name("carol"), &msg(3)).expect("other mailbox");
    again.remove_first(&bob, 1).expect("remove");
    again.append(&bob, &msg(3)).expect("room again");
    assert_eq!(again.load(&bob).expect("load"), msgs(1..4));
}

#[test]
fn byte_limit_refuses_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let max_bytes = line_len(0) + line_len(1) + line_len(2) - 1;
    let limits = Limits { max_bytes, ..Limits::default() };
    let mut store = FileStore::open(tmp.path(), limits).expect("open");
    append_all(&mut store, &bob, 0..2);
    let err = store.append(&bob, &msg(2)).expect_err("full");
    assert_eq!(err.to_string(), format!("mailbox of bob is full ({max_bytes} bytes)"));
    store.sync().expect("sync");
    let len = fs::metadata(store.mailbox_path(&bob)).expect("meta").len();
    assert_eq!(len, line_len(0) + line_len(1));
    assert_eq!(store.usage(&bob).expect("usage").bytes, len);
    // Refused on a new, empty mailbox too: no file is created.
    let tiny = Limits { max_bytes: 10, ..Limits::default() };
    let mut store = FileStore::open(tmp.path(), tiny).expect("open");
    assert!(store.append(&name("carol"), &msg(0)).is_err());
    store.sync().expect("sync");
    assert!(!store.mailbox_path(&name("carol")).exists());
}

#[test]
fn file_names_are_safe() {
    let cases = [
        ("bob", "bob"),
        ("Bob", "%42ob"),
        ("..", "%2E%2E"),
        ("a/b", "a%2Fb"),
        ("a\\b", "a%5Cb"),
        ("%41", "%2541"),
        ("x_y-9", "x_y-9"),
        ("李", "%E6%9D%8E"),
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = open(tmp.path());
    for (raw, encoded) in cases {
        let n = name(raw);
        assert_eq!(file_name(&n), encoded, "{raw}");
        let path = store.mailbox_path(&n);
        assert_eq!(path.parent(), Some(tmp.path()), "{raw}");
        assert_eq!(path.file_name().and_then(|f| f.to_str()), Some(&*format!("{encoded}.mbox")));
    }
    assert_ne!(file_name(&name("Bob")).to_lowercase(), file_name(&name("bob")));
    // Long non-ASCII names switch to the base32 form and stay under 255 bytes.
    let cyrillic = name(&"Ж".repeat(32));
    assert!(file_name(&cyrillic).starts_with("%D0%96"));
    for ch in ["李", "😀"] {
        let longest = name(&ch.repeat(32));
        let stem = file_name(&longest);
        assert!(stem.starts_with('='), "{stem}");
        assert!(stem.len() + ".mbox".len() < 255, "{stem}");
        assert_eq!(store.mailbox_path(&longest).parent(), Some(tmp.path()));
    }
    assert_ne!(file_name(&name(&"李".repeat(31))), file_name(&name(&"李".repeat(32))));
    assert_eq!(file_name(&name(&"李".repeat(22))).len(), 198, "still the %XX form");
}

#[test]
fn torn_tail_is_skipped_then_cut_before_the_next_append() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..3);
    store.checkpoint().expect("checkpoint: the damage below is to durable data, past the journal");
    let path = store.mailbox_path(&bob);
    drop(store);
    let cut = line_len(0) + line_len(1) + line_len(2) / 2;
    fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(cut)).expect("chop");

    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), msgs(0..2));
    assert_eq!(store.usage(&bob).expect("usage").count, 2);
    store.append(&bob, &msg(3)).expect("append");
    store.checkpoint().expect("checkpoint");
    let want = vec![msg(0), msg(1), msg(3)];
    assert_eq!(store.load(&bob).expect("load"), want);
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), want);
    let len = fs::metadata(&path).expect("meta").len();
    assert_eq!(len, line_len(0) + line_len(1) + line_len(3));

    // Same when the first thing after the restart is the append (no load before).
    fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(len - 3)).expect("chop");
    let mut store = open(tmp.path());
    store.append(&bob, &msg(4)).expect("append");
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(1), msg(4)]);
}

#[test]
fn corrupt_middle_record_is_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..3);
    store.checkpoint().expect("checkpoint: the damage below is to durable data, past the journal");
    let path = store.mailbox_path(&bob);
    let mut bytes = fs::read(&path).expect("read");
    let at = usize::try_from(line_len(0) + 20).expect("small");
    bytes[at] ^= 0x01;
    fs::write(&path, bytes).expect("write");

    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(2)]);
    assert_eq!(store.usage(&bob).expect("usage").count, 2);
    store.append(&bob, &msg(3)).expect("append");
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(2), msg(3)]);
    store.remove_first(&bob, 1).expect("remove");
    assert_eq!(store.load(&bob).expect("load"), vec![msg(2), msg(3)]);
}

#[test]
fn records_round_trip_and_reject_garbage() {
    let line = record::encode(&msg(7)).expect("encode");
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(record::decode(&line).expect("decode"), msg(7));
    let json = &line[9..line.len() - 1];
    assert_eq!(&line[..9], format!("{:08x} ", crc32fast::hash(json)).as_bytes());
    for bad in [&b""[..], b"\n", b"12345678", b"zzzzzzzz {}", b"00000000 {}", b"ABCDEF01 {}"] {
        assert!(record::decode(bad).is_err(), "{bad:?}");
    }
    let crc = format!("{:08x} {{}}", crc32fast::hash(b"{}"));
    assert!(record::decode(crc.as_bytes()).is_err(), "valid crc, not a message");
}

/// One sequence of operations; the result (every load and usage) must be the same for both.
fn scenario(store: &mut impl Store) -> Vec<String> {
    let (bob, carol) = (name("bob"), name("Carol"));
    let mut log = Vec::new();
    let note = |store: &mut dyn Store, log: &mut Vec<String>, step: &str| {
        for who in [&bob, &carol] {
            let loaded = store.load(who).expect("load");
            let usage = store.usage(who).expect("usage");
            log.push(format!("{step} {who}: {loaded:?} {usage:?}"));
        }
    };
    note(store, &mut log, "empty");
    append_all(store, &bob, 0..4);
    append_all(store, &carol, 10..12);
    store.sync().expect("sync");
    note(store, &mut log, "appended");
    let full = store.append(&bob, &msg(4)).expect_err("count limit");
    log.push(full.to_string());
    let big = StoredMessage { body: Text::new("x".repeat(2000)).expect("text").into(), ..msg(20) };
    log.push(store.append(&carol, &big).expect_err("byte limit").to_string());
    store.remove_first(&bob, 3).expect("remove");
    store.remove_first(&carol, 0).expect("remove none");
    note(store, &mut log, "removed");
    store.append(&bob, &msg(5)).expect("append");
    store.remove_first(&carol, 9).expect("remove all");
    store.sync().expect("sync");
    note(store, &mut log, "end");
    log
}

#[test]
fn mem_store_behaves_like_file_store() {
    let limits = Limits { max_messages: 4, max_bytes: 1000 };
    let tmp = tempfile::tempdir().expect("tempdir");
    let from_file = scenario(&mut FileStore::open(tmp.path(), limits).expect("open"));
    let from_mem = scenario(&mut MemStore::new(limits));
    assert_eq!(from_file, from_mem);
    assert!(from_file.contains(&"mailbox of bob is full (4 messages)".to_owned()));
    assert!(from_file.contains(&"mailbox of Carol is full (1000 bytes)".to_owned()));
    assert!(from_file.last().is_some_and(|l| l.starts_with("end Carol: [] Usage { count: 0, bytes: 0 }")));
}

#[test]
fn default_limits() {
    let l = Limits::default();
    assert_eq!((l.max_messages, l.max_bytes), (10_000, 16 * 1024 * 1024));
}

#[test]
fn overlong_garbage_lines_are_skipped_without_losing_neighbours() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    store.append(&bob, &msg(0)).expect("append");
    store.sync().expect("sync");
    let path = store.mailbox_path(&bob);
    drop(store);
    let mut bytes = fs::read(&path).expect("read");
    bytes.extend(std::iter::repeat_n(b'x', 600 * 1024));
    bytes.push(b'\n');
    bytes.extend(record::encode(&msg(1)).expect("encode"));
    bytes.extend(std::iter::repeat_n(b'y', 600 * 1024));
    fs::write(&path, bytes).expect("write");

    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), msgs(0..2));
    store.append(&bob, &msg(2)).expect("append");
    assert_eq!(store.load(&bob).expect("load"), msgs(0..3));
    store.remove_first(&bob, 1).expect("remove");
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), msgs(1..3));
    let len = fs::metadata(&path).expect("meta").len();
    assert_eq!(len, line_len(1) + line_len(2), "garbage dropped by the rewrite");
}

#[test]
fn one_journal_sync_makes_a_batch_durable_and_a_restart_restores_what_a_mailbox_lost() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bob, carol) = (name("bob"), name("carol"));
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..3);
    append_all(&mut store, &carol, 10..12);
    store.sync().expect("one sync for both mailboxes");
    let journal = fs::metadata(tmp.path().join("journal")).expect("journal").len();
    assert!(journal > 0, "the batch is in the journal");
    // A machine crash loses mailbox writes that were only in the page cache.
    let bob_path = store.mailbox_path(&bob);
    fs::OpenOptions::new().write(true).open(&bob_path).and_then(|f| f.set_len(line_len(0) + 5)).expect("chop");
    fs::remove_file(store.mailbox_path(&carol)).expect("lose carol's file");
    drop(store);

    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), msgs(0..3), "restored in order, none doubled");
    assert_eq!(store.load(&carol).expect("load"), msgs(10..12));
    assert_eq!(fs::metadata(tmp.path().join("journal")).expect("journal").len(), 0, "replayed and emptied");
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), msgs(0..3), "a second open changes nothing");
}

#[test]
fn the_journal_never_brings_back_what_was_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..3);
    store.sync().expect("sync");
    store.remove_first(&bob, 2).expect("remove");
    store.append(&bob, &msg(3)).expect("append");
    store.sync().expect("sync");
    drop(store);
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), vec![msg(2), msg(3)]);
}

#[test]
fn open_handles_stay_bounded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = open(tmp.path());
    for i in 0..3 * crate::file::OPEN_HANDLES {
        store.append(&name(&format!("n{i}")), &msg(1)).expect("append");
        store.sync().expect("sync");
        assert!(store.open_handles() <= crate::file::OPEN_HANDLES + 1, "{}", store.open_handles());
    }
}

#[test]
fn a_sync_job_runs_on_another_thread_while_appends_go_on_and_covers_only_those_before_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    assert!(store.start_sync().expect("start").is_none(), "nothing appended, nothing to wait for");
    append_all(&mut store, &bob, 0..3);
    assert!(!store.mailbox_path(&bob).exists(), "a batch's records are written out when its sync starts");
    let job = store.start_sync().expect("start").expect("a job for the three appends");
    assert_eq!(fs::metadata(store.mailbox_path(&bob)).expect("mailbox").len(), (0..3).map(line_len).sum::<u64>());
    let journal = tmp.path().join("journal");
    let covered = fs::metadata(&journal).expect("journal").len();
    assert!(covered > 0, "the three appends are written out before the job runs");
    let running = std::thread::spawn(move || job.run());
    append_all(&mut store, &bob, 3..5);
    assert_eq!(fs::metadata(&journal).expect("journal").len(), covered, "later appends wait for the next sync");
    running.join().expect("the job's thread").expect("synced");
    store.finish_sync().expect("finish");
    assert_eq!(store.load(&bob).expect("load"), msgs(0..5));
    let next = store.start_sync().expect("start").expect("a job for the two later appends");
    next.run().expect("synced");
    assert!(fs::metadata(&journal).expect("journal").len() > covered);
    drop(store);
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), msgs(0..5));
}

#[test]
fn records_whose_write_failed_are_written_by_the_next_sync() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    store.append(&bob, &msg(0)).expect("append");
    // A directory where the mailbox file should be: writing it out fails.
    fs::create_dir(store.mailbox_path(&bob)).expect("in the way");
    assert!(store.load(&bob).is_err());
    assert!(store.start_sync().is_err(), "a sync that cannot write everything out fails");
    fs::remove_dir(store.mailbox_path(&bob)).expect("out of the way");
    store.sync().expect("sync");
    assert_eq!(store.load(&bob).expect("load"), msgs(0..1));
    assert_eq!(store.usage(&bob).expect("usage"), Usage { count: 1, bytes: line_len(0) });
    drop(store);
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), msgs(0..1));
}

#[test]
fn a_sync_not_known_to_have_succeeded_is_done_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = open(tmp.path());
    store.append(&name("bob"), &msg(0)).expect("append");
    let lost = store.start_sync().expect("start").expect("a job");
    drop(lost); // as if its fdatasync failed: finish_sync is never called
    let again = store.start_sync().expect("start").expect("the written records still need a sync");
    again.run().expect("synced");
    store.finish_sync().expect("finish");
    assert!(store.start_sync().expect("start").is_none(), "nothing left to sync");
}

/// The messages of `err` and of each error in its cause chain, joined by `: `.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

#[test]
fn an_io_error_prints_its_cause_once_in_the_chain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    fs::create_dir(store.mailbox_path(&bob)).expect("a directory where the mailbox should be");
    let err = store.load(&bob).expect_err("a directory is not a mailbox");
    let cause = std::error::Error::source(&err).expect("the io error is the source").to_string();
    let printed = chain(&err);
    assert_eq!(printed.matches(&cause).count(), 1, "{printed}");
    assert!(printed.starts_with("read "), "{printed}");
    assert!(!err.to_string().contains(&cause), "the top level says only what it adds: {err}");
}

#[test]
fn a_full_disk_is_recognised() {
    let full = |source| StoreError::Io { op: "write", path: "journal".into(), source };
    assert!(full(std::io::Error::from(std::io::ErrorKind::StorageFull)).is_no_space());
    assert!(full(std::io::Error::from_raw_os_error(28)).is_no_space(), "ENOSPC");
    assert!(!full(std::io::Error::from(std::io::ErrorKind::PermissionDenied)).is_no_space());
    let mailbox = StoreError::MailboxFull { name: name("bob"), limit: "3 messages".into() };
    assert!(!mailbox.is_no_space(), "a full mailbox is not a full disk");
}

/// `msg(i)` as a retransmission saved at another time: same id, another record line.
fn again(i: u32) -> StoredMessage {
    StoredMessage { at: DateTime::from_timestamp(1_900_000_000, 0).expect("valid time"), ..msg(i) }
}

/// Same id twice before a sync, then after it: stored once, and the copies count nothing.
fn stores_each_id_once(store: &mut impl Store) {
    let bob = name("bob");
    assert_eq!(store.append_once(&bob, &msg(1)).expect("append"), Appended::Stored);
    assert_eq!(store.append_once(&bob, &again(1)).expect("append"), Appended::Duplicate, "pending");
    store.append(&bob, &msg(1)).expect("a duplicate is no error");
    store.sync().expect("sync");
    assert_eq!(store.append_once(&bob, &again(1)).expect("append"), Appended::Duplicate, "durable");
    let different = StoredMessage { id: chat_proto::MsgId(2), ..msg(1) };
    assert_eq!(store.append_once(&bob, &different).expect("append"), Appended::Stored, "same text, other id");
    store.sync().expect("sync");
    assert_eq!(store.load(&bob).expect("load"), vec![msg(1), different]);
    assert_eq!(store.usage(&bob).expect("usage"), Usage { count: 2, bytes: 2 * line_len(1) });
    // The same id in another mailbox is another message.
    assert_eq!(store.append_once(&name("carol"), &msg(1)).expect("append"), Appended::Stored);
    // A full mailbox still takes no copy, and a duplicate of a full mailbox is no error.
    for i in 3..5 {
        store.append(&bob, &msg(i)).expect("append");
    }
    assert!(store.append(&bob, &msg(5)).is_err(), "full at four");
    assert_eq!(store.append_once(&bob, &again(4)).expect("append"), Appended::Duplicate);
    // Removed messages leave the set with their records.
    store.remove_first(&bob, 1).expect("remove");
    assert_eq!(store.append_once(&bob, &again(2)).expect("append"), Appended::Duplicate);
    assert_eq!(store.append_once(&bob, &msg(5)).expect("room again"), Appended::Stored);
}

#[test]
fn a_message_is_stored_once_per_id() {
    let limits = Limits { max_messages: 4, ..Limits::default() };
    let tmp = tempfile::tempdir().expect("tempdir");
    stores_each_id_once(&mut FileStore::open(tmp.path(), limits).expect("open"));
    stores_each_id_once(&mut MemStore::new(limits));
}

#[test]
fn a_retransmitted_save_after_a_restart_is_stored_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..60);
    store.sync().expect("sync");
    drop(store); // the journal is not emptied: the restart replays it
    let mut store = open(tmp.path());
    for i in 54..60 {
        assert_eq!(store.append_once(&bob, &again(i)).expect("append"), Appended::Duplicate, "{i}");
    }
    store.sync().expect("sync");
    assert_eq!(store.usage(&bob).expect("usage").count, 60);
    drop(store);
    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), msgs(0..60), "60 records for 60 messages");
    assert_eq!(store.append_once(&bob, &again(0)).expect("append"), Appended::Duplicate, "after a load too");
}

/// Every message of `to`'s mailbox, read one by one through read jobs.
fn read_all(store: &mut impl Store, to: &Name) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    while let Some(job) = store.read_job(to, out.len()).expect("read job") {
        out.push(job.run().expect("read").message().expect("still stored"));
    }
    out
}

/// The jobs give what the blocking calls give: learning a mailbox, reading it by index (records
/// written out or not), and removing from it while appends go on.
fn jobs_match_the_blocking_path(store: &mut impl Store, fresh: impl Fn() -> Box<dyn Store>) {
    let bob = name("bob");
    append_all(store, &bob, 0..5);
    store.checkpoint().expect("checkpoint: the journal is empty for the other store below");
    let mut other = fresh();
    let scan = other.open_job(&bob).run().expect("scan");
    other.install(&bob, scan);
    assert_eq!(other.known_usage(&bob), Some(store.usage(&bob).expect("usage")));
    assert_eq!(other.id_at(&bob, 4), Some(msg(4).id));
    assert_eq!(other.id_at(&bob, 5), None);
    append_all(store, &bob, 5..7); // not written out yet: read from memory
    assert_eq!(read_all(store, &bob), msgs(0..7));
    assert_eq!(store.load(&bob).expect("load"), msgs(0..7));
    assert!(store.read_job(&bob, 7).expect("read job").is_none(), "past the end");

    let job = store.remove_first_job(&bob, 2).expect("remove job");
    append_all(store, &bob, 7..9); // while the job is out
    for i in 7..9 {
        let job = store.read_job(&bob, i).expect("the new appends are read from memory meanwhile");
        assert_eq!(
            job.map(|job| job.run().expect("read").message().expect("still stored")),
            Some(msg(u32::try_from(i).expect("small")))
        );
    }
    let done = std::thread::spawn(move || job.run()).join().expect("the job's thread");
    store.finish_remove(&bob, done).expect("removed");
    assert_eq!(read_all(store, &bob), msgs(2..9));
    assert_eq!(store.load(&bob).expect("load"), msgs(2..9));
    assert_eq!(store.id_at(&bob, 0), Some(msg(2).id));
    let usage = store.usage(&bob).expect("usage");
    assert_eq!(usage, Usage { count: 7, bytes: (2..9).map(line_len).sum() });
    store.sync().expect("sync");
    assert_eq!(read_all(store, &bob), msgs(2..9), "after the sync, from the file");
    store.remove_first(&bob, 100).expect("remove all");
    assert!(store.read_job(&bob, 0).expect("read job").is_none());
    assert_eq!(store.usage(&bob).expect("usage"), Usage::default());
}

#[test]
fn jobs_match_the_blocking_path_on_both_stores() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let fresh = move || -> Box<dyn Store> { Box::new(open(&dir)) };
    jobs_match_the_blocking_path(&mut open(tmp.path()), fresh);
    let mut mem = MemStore::new(Limits::default());
    append_all(&mut mem, &name("bob"), 0..5);
    let shared = std::cell::RefCell::new(Some(mem));
    let fresh = move || -> Box<dyn Store> { Box::new(shared.borrow_mut().take().expect("one copy")) };
    jobs_match_the_blocking_path(&mut MemStore::new(Limits::default()), fresh);
}

#[test]
fn a_removal_survives_a_restart_and_is_not_brought_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bob, carol) = (name("bob"), name("carol"));
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..4);
    append_all(&mut store, &carol, 10..12);
    store.sync().expect("sync");
    let job = store.remove_first_job(&bob, 3).expect("remove job");
    assert!(matches!(store.start_sync(), Err(StoreError::Busy)), "no other disk work while it is out");
    assert!(matches!(store.remove_first_job(&carol, 1), Err(StoreError::Busy)));
    assert!(matches!(store.load(&bob), Err(StoreError::Busy)));
    assert!(matches!(store.read_job(&bob, 3), Err(StoreError::Busy)), "its records move");
    assert!(store.read_job(&carol, 1).expect("read job").is_some(), "other mailboxes are read as usual");
    store.append(&carol, &msg(12)).expect("appends go on");
    let done = job.run();
    assert_eq!(fs::metadata(tmp.path().join("journal")).expect("journal").len(), 0, "checkpointed");
    store.finish_remove(&bob, done).expect("finish");
    store.sync().expect("the append after it is synced");
    drop(store);
    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), msgs(3..4));
    assert_eq!(store.load(&carol).expect("load"), msgs(10..13));
}

#[test]
fn a_job_whose_file_vanished_gives_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..3);
    store.sync().expect("sync");
    let read = store.read_job(&bob, 1).expect("read job").expect("a message");
    let remove = store.remove_first_job(&bob, 1).expect("remove job");
    fs::remove_file(store.mailbox_path(&bob)).expect("vanish");
    let err = read.run().expect_err("no file");
    assert!(matches!(&err, StoreError::Io { op: "open", source, .. } if source.kind() == std::io::ErrorKind::NotFound));
    assert!(err.to_string().starts_with("open "), "{err}");
    let done = remove.run();
    assert!(matches!(&done, Err(StoreError::Io { op: "open", .. })), "{done:?}");
    assert!(store.finish_remove(&bob, done).is_err(), "the job's error is given back");
    assert_eq!(store.usage(&bob).expect("usage"), Usage::default(), "learnt again: the file is gone");
    store.append(&bob, &msg(5)).expect("the store goes on");
    store.sync().expect("sync");
    assert_eq!(read_all(&mut store, &bob), msgs(5..6));

    // A mailbox that cannot be read gives the open job an error, not a panic.
    let carol = name("carol");
    fs::create_dir(store.mailbox_path(&carol)).expect("a directory in the way");
    assert!(matches!(store.open_job(&carol).run(), Err(StoreError::Io { op: "read", .. })));
    // A read whose file was replaced under it says so.
    let read = store.read_job(&bob, 0).expect("read job").expect("a message");
    fs::write(store.mailbox_path(&bob), record::encode(&msg(6)).expect("encode")).expect("replace");
    assert!(matches!(read.run(), Err(StoreError::Changed { offset: 0, .. })));
}

#[test]
fn jobs_are_send() {
    fn send<T: Send + 'static>() {}
    send::<crate::OpenJob>();
    send::<crate::MailboxScan>();
    send::<crate::ReadJob>();
    send::<crate::RemoveJob>();
    send::<crate::Removed>();
    send::<crate::CheckpointJob>();
    send::<crate::Checkpointed>();
    send::<crate::SyncJob>();
}

#[test]
fn an_open_job_teaches_the_store_so_later_calls_stay_off_the_disk() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..3);
    store.checkpoint().expect("checkpoint");
    drop(store);
    let mut store = open(tmp.path());
    assert_eq!(store.known_usage(&bob), None, "not learnt yet");
    let job = store.open_job(&bob);
    let scan = std::thread::spawn(move || job.run()).join().expect("the job's thread").expect("scan");
    store.install(&bob, scan);
    assert_eq!(store.known_usage(&bob), Some(Usage { count: 3, bytes: (0..3).map(line_len).sum() }));
    // From memory now: even a vanished file does not change what the store says.
    let path = store.mailbox_path(&bob);
    let kept = fs::read(&path).expect("read");
    fs::remove_file(&path).expect("vanish");
    assert_eq!(store.usage(&bob).expect("usage").count, 3);
    assert_eq!(store.append_once(&bob, &again(2)).expect("append"), Appended::Duplicate);
    fs::write(&path, kept).expect("put back");
    assert!(store.open_job(&bob).run().expect("nothing to do").mailbox.is_none(), "known: no scan");
    // A scan begun before an eviction is not installed: it may miss what was written meanwhile.
    let carol = name("carol");
    let stale = store.open_job(&carol).run().expect("scan of no file");
    store.append(&carol, &msg(10)).expect("append");
    store.sync().expect("sync");
    store.evict(&carol);
    store.install(&carol, stale);
    assert_eq!(store.known_usage(&carol), None, "learnt again on its next use");
    assert_eq!(store.usage(&carol).expect("usage").count, 1);
    // An older scan does not replace what the store learnt since.
    let stale = open(tmp.path()).open_job(&bob).run().expect("scan");
    store.append(&bob, &msg(3)).expect("append");
    store.install(&bob, stale);
    assert_eq!(store.usage(&bob).expect("usage").count, 4);
    // Evicted, it is learnt again from the file, appends not written out excepted.
    store.evict(&bob);
    assert_eq!(store.known_usage(&bob).map(|u| u.count), Some(4), "pending appends keep it");
    store.sync().expect("sync");
    store.evict(&bob);
    assert_eq!(store.known_usage(&bob), None);
    assert_eq!(store.usage(&bob).expect("usage").count, 4);
    assert_eq!(read_all(&mut store, &bob), msgs(0..4));
}

#[test]
fn a_checkpoint_job_runs_off_the_thread_while_appends_go_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bob, carol) = (name("bob"), name("carol"));
    let journal = tmp.path().join("journal");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..3);
    store.sync().expect("sync");
    assert!(!store.checkpoint_due(), "a small journal waits");
    assert!(fs::metadata(&journal).expect("journal").len() > 0);
    let job = store.checkpoint_job().expect("checkpoint job");
    assert!(matches!(store.start_sync(), Err(StoreError::Busy)), "no other disk work while it is out");
    assert!(matches!(store.checkpoint_job(), Err(StoreError::Busy)));
    store.append(&carol, &msg(10)).expect("appends go on");
    store.append(&bob, &msg(3)).expect("appends go on");
    let done = std::thread::spawn(move || job.run()).join().expect("the job's thread");
    assert_eq!(fs::metadata(&journal).expect("journal").len(), 0, "emptied");
    store.finish_checkpoint(done).expect("finish");
    assert!(!store.mailbox_path(&carol).exists(), "the appends during it wait for the next sync");
    store.sync().expect("sync");
    assert!(fs::metadata(&journal).expect("journal").len() > 0, "and their journal lines with it");
    drop(store);
    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), msgs(0..4));
    assert_eq!(store.load(&carol).expect("load"), msgs(10..11));
}

#[test]
fn a_big_journal_makes_a_checkpoint_due() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = open(tmp.path());
    let big = |i: u32| StoredMessage { body: Text::new("x".repeat(30_000)).expect("text").into(), ..msg(i) };
    let mut i = 0;
    while !store.checkpoint_due() {
        store.append(&name(&format!("n{}", i % 7)), &big(i)).expect("append");
        if let Some(job) = store.start_sync().expect("start") {
            job.run().expect("synced");
        }
        store.sync_done();
        i += 1;
        assert!(i < 1000, "due past 8 MiB");
    }
    let job = store.checkpoint_job().expect("checkpoint job");
    let done = job.run();
    store.finish_checkpoint(done).expect("finish");
    assert!(!store.checkpoint_due());
    assert_eq!(fs::metadata(tmp.path().join("journal")).expect("journal").len(), 0);
    drop(store);
    assert_eq!(open(tmp.path()).usage(&name("n0")).expect("usage").count, i.div_ceil(7) as usize);
}

#[test]
fn review_a_retransmission_after_a_failed_sync_is_written_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..1);
    store.sync().expect("sync");
    let journal = tmp.path().join("journal");
    let mbox = store.mailbox_path(&bob);
    let (j0, m0) = (fs::metadata(&journal).expect("j").len(), fs::metadata(&mbox).expect("m").len());
    store.append(&bob, &msg(1)).expect("append");
    let lost = store.start_sync().expect("start").expect("a job");
    drop(lost); // its fdatasync failed: the server answers nothing and forgets the request
    // What the failed sync wrote never reached the disk.
    fs::OpenOptions::new().write(true).open(&journal).expect("j").set_len(j0).expect("cut");
    fs::OpenOptions::new().write(true).open(&mbox).expect("m").set_len(m0).expect("cut");
    store.append_once(&bob, &again(1)).expect("append"); // the retransmission
    store.sync().expect("sync"); // succeeds: the server ACKs now
    drop(store);
    assert_eq!(open(tmp.path()).load(&bob).expect("load").len(), 2, "the ACKed message survives");
}

#[test]
fn review_a_duplicate_of_a_record_never_synced_is_not_acked_without_a_sync() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    store.append(&bob, &msg(0)).expect("append");
    let never_run = store.start_sync().expect("start").expect("a job");
    drop(never_run);
    drop(store);
    fs::write(tmp.path().join("journal"), b"").expect("empty journal"); // killed before the journal write
    let mut store = open(tmp.path());
    // The scan that finds the record syncs the mailbox file before counting it: the duplicate
    // rests on a synced copy, so it may be ACKed without another sync.
    assert_eq!(store.append_once(&bob, &again(0)).expect("append"), Appended::Duplicate);
    assert_eq!(store.durable_count(&bob), Some(1), "the open scan synced the record it found");
    assert!(store.start_sync().expect("start").is_none());
    // Through an open job too (the scan a server runs off its event loop).
    drop(store);
    let mut store = open(tmp.path());
    let scan = store.open_job(&bob).run().expect("scan");
    store.install(&bob, scan);
    assert_eq!(store.durable_count(&bob), Some(1), "the open job synced the record it found");
    assert_eq!(store.append_once(&bob, &again(0)).expect("append"), Appended::Duplicate);
}

#[test]
fn a_duplicate_of_a_record_whose_sync_is_still_running_is_stored_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    store.append(&bob, &msg(0)).expect("append");
    let running = store.start_sync().expect("start").expect("a job");
    assert_eq!(store.durable_count(&bob), Some(0));
    // Its sync may yet fail: the retransmission's ACK must not rest on it.
    assert_eq!(store.append_once(&bob, &again(0)).expect("append"), Appended::Stored);
    running.run().expect("synced");
    store.finish_sync().expect("finish");
    assert_eq!(store.durable_count(&bob), Some(1), "covered by the sync that ran");
    store.sync().expect("sync");
    assert_eq!(store.durable_count(&bob), Some(2));
    assert_eq!(store.append_once(&bob, &again(0)).expect("append"), Appended::Duplicate, "durable now");
}

#[test]
fn after_a_failed_sync_its_records_are_durable_only_once_a_checkpoint_synced_their_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..2);
    let lost = store.start_sync().expect("start").expect("a job");
    drop(lost);
    store.append(&bob, &msg(2)).expect("append");
    store.sync().expect("a later sync succeeds");
    assert_eq!(store.durable_count(&bob), Some(0), "the later sync does not vouch for the failed one's");
    assert_eq!(store.append_once(&bob, &again(2)).expect("append"), Appended::Stored, "nor for its own");
    store.checkpoint().expect("checkpoint");
    assert_eq!(store.durable_count(&bob), Some(4), "the mailbox file itself was synced");
    assert_eq!(store.append_once(&bob, &again(0)).expect("append"), Appended::Duplicate);
    assert_eq!(store.load(&bob).expect("load").len(), 4);
}

#[test]
fn a_removal_keeps_what_is_known_durable_right() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..4);
    let job = store.start_sync().expect("start").expect("a job");
    job.run().expect("synced");
    // A removal before the sync is reported, with an append made while the removal is out.
    let removal = store.remove_first_job(&bob, 2).expect("job");
    store.append(&bob, &msg(4)).expect("append");
    let done = removal.run();
    store.finish_remove(&bob, done).expect("removed");
    store.sync_done();
    assert_eq!(store.durable_count(&bob), Some(2), "the rewritten file is synced, the append is not");
    assert_eq!(store.append_once(&bob, &again(4)).expect("append"), Appended::Duplicate, "the next sync covers it");
    let covering = store.start_sync().expect("start").expect("a job");
    assert_eq!(store.append_once(&bob, &again(4)).expect("append"), Appended::Stored, "its sync is out");
    covering.run().expect("synced");
    store.finish_sync().expect("finish");
    assert_eq!(store.durable_count(&bob), Some(3));
}

/// A sync dropped unreported (failed) leaves its records unfit for a duplicate to rest on;
/// records appended since, not handed to a sync, are fit.
fn a_failed_sync_is_not_trusted(store: &mut impl Store) {
    let bob = name("bob");
    store.append(&bob, &msg(0)).expect("append");
    store.sync().expect("sync");
    store.append(&bob, &msg(1)).expect("append");
    drop(store.start_sync().expect("start").expect("a job"));
    assert_eq!(store.append_once(&bob, &again(0)).expect("append"), Appended::Duplicate, "synced");
    assert_eq!(store.append_once(&bob, &again(1)).expect("append"), Appended::Stored, "its sync failed");
    assert_eq!(store.append_once(&bob, &msg(1)).expect("append"), Appended::Duplicate, "the next sync covers it");
    store.sync().expect("sync");
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(1), again(1)]);
}

#[test]
fn a_failed_sync_is_not_trusted_by_either_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    a_failed_sync_is_not_trusted(&mut open(tmp.path()));
    a_failed_sync_is_not_trusted(&mut MemStore::new(Limits::default()));
}

/// `msg(i)` from another sender: the same id, another message.
fn from_carol(i: u32) -> StoredMessage {
    StoredMessage { from: name("carol"), ..msg(i) }
}

fn an_id_used_by_another_sender_is_no_duplicate(store: &mut impl Store) {
    let bob = name("bob");
    assert_eq!(store.append_once(&bob, &msg(1)).expect("append"), Appended::Stored);
    assert_eq!(store.append_once(&bob, &from_carol(1)).expect("append"), Appended::Stored, "another sender");
    assert_eq!(store.append_once(&bob, &again(1)).expect("append"), Appended::Duplicate, "the same sender");
    store.sync().expect("sync");
    assert_eq!(store.load(&bob).expect("load"), vec![msg(1), from_carol(1)]);
}

#[test]
fn review_an_id_used_by_another_sender_is_no_duplicate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    an_id_used_by_another_sender_is_no_duplicate(&mut open(tmp.path()));
    an_id_used_by_another_sender_is_no_duplicate(&mut MemStore::new(Limits::default()));
    // And after a restart, when the store learns the mailbox from its file.
    let bob = name("bob");
    drop(open(tmp.path()));
    let mut store = open(tmp.path());
    assert_eq!(store.append_once(&bob, &again(1)).expect("append"), Appended::Duplicate);
    let squat = StoredMessage { id: chat_proto::MsgId(7), ..from_carol(1) };
    assert_eq!(store.append_once(&bob, &squat).expect("append"), Appended::Stored);
    let alice = StoredMessage { id: chat_proto::MsgId(7), ..msg(1) };
    assert_eq!(store.append_once(&bob, &alice).expect("append"), Appended::Stored, "alice's id 7 is hers");
}

fn bytes(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_default()
}

#[test]
fn a_batch_whose_sync_failed_for_lack_of_space_is_cut_from_the_files_and_later_appends_stay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bob, carol) = (name("bob"), name("carol"));
    let journal = tmp.path().join("journal");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..2);
    append_all(&mut store, &carol, 10..11);
    store.sync().expect("sync");
    let before = (bytes(&store.mailbox_path(&bob)), bytes(&store.mailbox_path(&carol)), bytes(&journal));
    append_all(&mut store, &bob, 2..4);
    append_all(&mut store, &carol, 11..12);
    let job = store.start_sync().expect("start").expect("a job");
    // The records reached the page cache; the job's fdatasync fails (ENOSPC) while a later
    // append, of the next batch, comes in.
    drop(job);
    append_all(&mut store, &bob, 4..5);
    assert!(!store.holds_durable(&bob, &msg(2)) && store.holds_durable(&bob, &msg(1)));
    let discarded = store.discard_failed_batch();
    assert!(discarded.error.is_none(), "{:?}", discarded.error);
    let mut lost = discarded.mailboxes;
    lost.sort();
    assert_eq!(lost, vec![(bob.clone(), 2), (carol.clone(), 1)]);
    let after = (bytes(&store.mailbox_path(&bob)), bytes(&store.mailbox_path(&carol)), bytes(&journal));
    assert!(after == before, "the mailbox files and the journal are as before the batch");
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(1), msg(4)], "the later append stays");
    assert_eq!(store.usage(&bob).expect("usage"), Usage { count: 3, bytes: line_len(0) + line_len(1) + line_len(4) });
    assert_eq!(store.id_at(&bob, 2), Some(msg(4).id));
    assert_eq!(store.load(&carol).expect("load"), msgs(10..11));
    assert!(store.checkpoint_due(), "the cuts are made durable by a checkpoint");
    // The disk has room again: the later append is synced, and a retransmission of a message
    // of the dropped batch is stored (once) and durable.
    assert_eq!(store.append_once(&bob, &again(2)).expect("append"), Appended::Stored);
    store.sync().expect("sync");
    assert_eq!(store.append_once(&bob, &again(2)).expect("append"), Appended::Duplicate);
    assert!(store.holds_durable(&bob, &msg(2)));
    store.sync().expect("sync");
    assert_eq!(fs::metadata(&journal).expect("journal").len(), 0, "the checkpoint ran");
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(1), msg(4), again(2)]);
    drop(store);
    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(1), msg(4), again(2)]);
    assert_eq!(store.load(&carol).expect("load"), msgs(10..11));
}

#[test]
fn a_restart_after_a_discarded_batch_does_not_replay_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..1);
    store.sync().expect("sync");
    append_all(&mut store, &bob, 1..3);
    drop(store.start_sync().expect("start").expect("a job")); // its fdatasync failed: ENOSPC
    assert_eq!(store.discard_failed_batch().mailboxes, vec![(bob.clone(), 2)]);
    // Killed before anything else: the journal holds nothing of the batch to replay, and the
    // mailbox file does not hold it either.
    drop(store);
    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), msgs(0..1));
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), msgs(0..1));
}

#[test]
fn a_batch_whose_sync_failed_as_it_started_is_dropped_from_memory_the_files_and_the_journal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bob, carol) = (name("bob"), name("carol"));
    let journal = tmp.path().join("journal");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..1);
    store.sync().expect("sync");
    let before = (bytes(&store.mailbox_path(&bob)), bytes(&journal));
    append_all(&mut store, &bob, 1..3);
    append_all(&mut store, &carol, 10..11);
    // Carol's mailbox cannot be written out: the sync fails as it starts (bob's records may
    // have been written out already).
    fs::create_dir(store.mailbox_path(&carol)).expect("in the way");
    assert!(store.start_sync().is_err());
    let mut lost = store.discard_failed_batch().mailboxes;
    lost.sort();
    assert_eq!(lost, vec![(bob.clone(), 2), (carol.clone(), 1)]);
    fs::remove_dir(store.mailbox_path(&carol)).expect("out of the way");
    assert!(before == (bytes(&store.mailbox_path(&bob)), bytes(&journal)), "as before the batch");
    assert_eq!(store.load(&bob).expect("load"), msgs(0..1));
    assert_eq!(store.load(&carol).expect("load"), vec![]);
    store.sync().expect("sync");
    append_all(&mut store, &bob, 3..4);
    store.sync().expect("sync");
    drop(store);
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), vec![msg(0), msg(3)]);
    assert_eq!(open(tmp.path()).load(&carol).expect("load"), vec![]);
}

#[test]
fn a_mem_store_discards_a_failed_batch_as_a_file_store_does() {
    let bob = name("bob");
    let mut store = MemStore::new(Limits::default());
    append_all(&mut store, &bob, 0..2);
    store.sync().expect("sync");
    append_all(&mut store, &bob, 2..4);
    drop(store.start_sync().expect("start").expect("a job"));
    append_all(&mut store, &bob, 4..5);
    assert_eq!(store.discard_failed_batch().mailboxes, vec![(bob.clone(), 2)]);
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(1), msg(4)]);
    assert!(store.holds_durable(&bob, &msg(1)) && !store.holds_durable(&bob, &msg(4)));
    // A sync that fails as it starts: its batch is every append not handed to a sync.
    append_all(&mut store, &bob, 5..6);
    assert_eq!(store.discard_failed_batch().mailboxes, vec![(bob.clone(), 2)]);
    assert_eq!(store.load(&bob).expect("load"), msgs(0..2));
    assert_eq!(store.append_once(&bob, &again(4)).expect("append"), Appended::Stored);
    store.sync().expect("sync");
    assert!(store.holds_durable(&bob, &msg(4)));
}

#[test]
fn a_record_a_discard_may_drop_is_never_counted_durable_by_a_rescan() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..1);
    drop(store.start_sync().expect("start").expect("a job")); // its fdatasync fails: ENOSPC
    store.evict(&bob); // refused: the sync out covers bob
    // Had bob been evicted, this would scan (and sync) the file and count the record durable.
    assert_eq!(store.load(&bob).expect("load"), msgs(0..1));
    assert!(!store.holds_durable(&bob, &msg(0)), "not durable, so a duplicate save is not ACKed");
    let _ = store.discard_failed_batch();
    assert!(!store.holds_durable(&bob, &msg(0)));
    assert_eq!(store.load(&bob).expect("load"), vec![], "the refused batch is gone");
}

#[test]
fn a_batch_after_a_failed_sync_drops_the_first_failed_batch_too() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..1);
    drop(store.start_sync().expect("start").expect("a job")); // EIO: no discard, appends stay
    assert_eq!(store.append_once(&bob, &msg(0)).expect("append"), Appended::Stored); // retransmission
    drop(store.start_sync().expect("start").expect("a job")); // ENOSPC
    let _ = store.discard_failed_batch();
    assert_eq!(store.load(&bob).expect("load"), vec![], "a refused message stays in the mailbox");
}

/// Syncs that failed (not for lack of space) before one that fails for lack of space: their
/// records go with its batch; after a sync that succeeded, only its own batch goes.
fn drops_the_lost_batches_with_the_next_discarded_one(store: &mut impl Store) {
    let bob = name("bob");
    append_all(store, &bob, 0..1);
    store.sync().expect("sync");
    append_all(store, &bob, 1..2);
    drop(store.start_sync().expect("start").expect("a job")); // EIO
    append_all(store, &bob, 2..3);
    drop(store.start_sync().expect("start").expect("a job")); // EIO again
    assert_eq!(store.append_once(&bob, &msg(1)).expect("append"), Appended::Stored); // retransmission
    drop(store.start_sync().expect("start").expect("a job")); // ENOSPC
    append_all(store, &bob, 3..4); // appended while that sync ran: the next batch's
    assert_eq!(store.discard_failed_batch().mailboxes, vec![(bob.clone(), 3)]);
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(3)]);
    assert!(store.holds_durable(&bob, &msg(0)), "a durable record is never dropped");
    // A sync that succeeded after a failed one: the failed one's records stay.
    drop(store.start_sync().expect("start").expect("a job")); // EIO
    append_all(store, &bob, 4..5);
    store.sync().expect("sync");
    append_all(store, &bob, 5..6);
    drop(store.start_sync().expect("start").expect("a job")); // ENOSPC
    assert_eq!(store.discard_failed_batch().mailboxes, vec![(bob.clone(), 1)]);
    assert_eq!(store.load(&bob).expect("load"), vec![msg(0), msg(3), msg(4)]);
}

#[test]
fn lost_batches_are_dropped_with_the_next_discarded_one_on_both_stores() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drops_the_lost_batches_with_the_next_discarded_one(&mut open(tmp.path()));
    drops_the_lost_batches_with_the_next_discarded_one(&mut MemStore::new(Limits::default()));
}

#[test]
fn a_mem_store_drops_the_first_failed_batch_with_the_next_discarded_one() {
    let bob = name("bob");
    let mut store = MemStore::new(Limits::default());
    append_all(&mut store, &bob, 0..1);
    drop(store.start_sync().expect("start").expect("a job")); // EIO
    assert_eq!(store.append_once(&bob, &msg(0)).expect("append"), Appended::Stored); // retransmission
    drop(store.start_sync().expect("start").expect("a job")); // ENOSPC
    let _ = store.discard_failed_batch();
    assert_eq!(store.load(&bob).expect("load"), vec![], "a refused message stays in the mailbox");
}

#[test]
fn a_restart_does_not_bring_back_a_lost_batch_dropped_with_a_discarded_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..1);
    store.sync().expect("sync");
    append_all(&mut store, &bob, 1..2);
    drop(store.start_sync().expect("start").expect("a job")); // EIO
    append_all(&mut store, &bob, 2..3);
    drop(store.start_sync().expect("start").expect("a job")); // ENOSPC
    let discarded = store.discard_failed_batch();
    assert!(discarded.error.is_none(), "{:?}", discarded.error);
    drop(store);
    let mut store = open(tmp.path());
    assert_eq!(store.load(&bob).expect("load"), msgs(0..1), "the journal does not replay the lost batch");
}

#[test]
fn a_lost_batch_made_durable_by_a_checkpoint_is_not_dropped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = name("bob");
    let mut store = open(tmp.path());
    append_all(&mut store, &bob, 0..1);
    drop(store.start_sync().expect("start").expect("a job")); // EIO
    store.checkpoint().expect("checkpoint"); // syncs bob's file: its record is durable
    assert!(store.holds_durable(&bob, &msg(0)));
    append_all(&mut store, &bob, 1..2);
    drop(store.start_sync().expect("start").expect("a job")); // ENOSPC
    assert_eq!(store.discard_failed_batch().mailboxes, vec![(bob.clone(), 1)]);
    assert_eq!(store.load(&bob).expect("load"), msgs(0..1));
    drop(store);
    assert_eq!(open(tmp.path()).load(&bob).expect("load"), msgs(0..1));
}

fn owed(i: u32, members: &[&str]) -> crate::OwedChannel {
    crate::OwedChannel { msg: msg(i), members: members.iter().map(|m| name(m)).collect() }
}

#[test]
fn a_channel_message_owed_is_durable_with_the_sync_and_back_after_a_crash_until_done() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = open(tmp.path());
    store.note_owed(&owed(1, &["bob", "carol"])).expect("note");
    store.note_owed(&owed(3, &["bob"])).expect("note");
    store.sync().expect("sync");
    drop(store); // a crash: no checkpoint, the journal holds the notes
    let mut store = open(tmp.path());
    assert_eq!(store.owed(), vec![owed(1, &["bob", "carol"]), owed(3, &["bob"])]);
    store.owed_done(&name("alice"), msg(1).id);
    assert_eq!(store.owed(), vec![owed(3, &["bob"])]);
    store.sync().expect("sync");
    drop(store);
    assert_eq!(open(tmp.path()).owed(), vec![owed(3, &["bob"])], "the done is durable with its sync");
}

#[test]
fn a_checkpoint_that_empties_the_journal_keeps_the_messages_owed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = open(tmp.path());
    store.note_owed(&owed(1, &["bob"])).expect("note");
    store.note_owed(&owed(3, &["carol"])).expect("note");
    store.sync().expect("sync");
    store.owed_done(&name("alice"), msg(3).id); // not synced yet: kept by the checkpoint
    store.checkpoint().expect("checkpoint");
    assert_eq!(fs::metadata(tmp.path().join("journal")).expect("journal").len(), 0);
    drop(store);
    let mut store = open(tmp.path());
    assert_eq!(store.owed(), vec![owed(1, &["bob"])], "the done went with the checkpoint's sync");
    store.owed_done(&name("alice"), msg(1).id);
    store.checkpoint().expect("checkpoint");
    drop(store);
    assert!(open(tmp.path()).owed().is_empty());
    assert!(!tmp.path().join("channel.owed").exists(), "nothing owed: no file");
}

#[test]
fn a_note_not_synced_is_not_back_after_a_crash_and_mailboxes_ignore_the_notes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut store = open(tmp.path());
    store.append(&name("bob"), &msg(0)).expect("append");
    store.note_owed(&owed(1, &["bob"])).expect("note");
    store.sync().expect("sync");
    store.note_owed(&owed(3, &["bob"])).expect("note"); // its sync never ran: never ACKed
    drop(store);
    let mut store = open(tmp.path());
    assert_eq!(store.owed(), vec![owed(1, &["bob"])]);
    assert_eq!(store.load(&name("bob")).expect("load"), vec![msg(0)], "a note is no mailbox record");
}
