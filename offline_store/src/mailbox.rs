//! One mailbox file as the store knows it: [`Mailbox`], its index (usage, each record's sender
//! and id and offset, how much of it is durable), built by [`scan`] and kept exact by the store's
//! writes, and [`write_rest`], the rewrite that drops a mailbox's first records.
//!
//! This module reads and writes the files it is handed; it must not decide when (that is the
//! store's), nor hold more than one record's line in memory.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Write as _};
use std::path::Path;

use chat_core::Key;
use chat_proto::{MsgId, Name, StoredMessage};

use crate::durable::Durability;
use crate::record::{Line, Lines};
use crate::{StoreError, Usage};

/// The key of the record keys: a domain separator, not a secret.
const RECORD_KEY: Key = Key::fixed(*b"offline_store record key v1....\0");

/// What tells two stored messages apart: message ids are unique per sender only, so a record is
/// known by a hash of its sender and its id (8 bytes, where the sender's name takes up to 40).
pub(crate) fn record_key(msg: &StoredMessage) -> u64 {
    RECORD_KEY.hash64(&[msg.from.as_str().as_bytes(), &msg.id.0.to_le_bytes()])
}

/// One record of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Its message's id, for [`crate::Store::id_at`] and to check a read.
    pub(crate) id: MsgId,
    /// Its [`record_key`].
    pub(crate) key: u64,
    /// The offset of its line in the file (see [`Mailbox::records`]).
    pub(crate) at: u64,
}

impl Record {
    fn of(msg: &StoredMessage, at: u64) -> Self {
        Self { id: msg.id, key: record_key(msg), at }
    }
}

/// What the store knows about one mailbox file, from its last full scan and the writes since.
///
/// It costs about 48 bytes per stored message (its id, its sender-and-id key and where its line
/// starts, and the key's place in a hash index), so that an append can refuse a message already
/// stored without a scan, and a read can go straight to one record.
#[derive(Clone, Debug, Default)]
pub(crate) struct Mailbox {
    /// Readable records and their bytes.
    pub(crate) usage: Usage,
    /// Whether the file exists.
    pub(crate) exists: bool,
    /// Set when the file ends in a torn record: the offset just past its last complete line,
    /// to cut the file back to before the next append.
    pub(crate) torn_at: Option<u64>,
    /// Where the next record written out will start: the file's length, a torn tail cut off.
    pub(crate) written: u64,
    /// Each readable record, oldest first. An offset at or past `written` is a record not
    /// written out yet, at `offset - written` in the store's unwritten bytes for this mailbox.
    records: Vec<Record>,
    /// The place in `records` of the first record with each key.
    first: HashMap<u64, usize>,
    /// Which records are known durable.
    pub(crate) durability: Durability,
}

impl Mailbox {
    /// Whether a record of `msg` (same sender, same id) is stored, written out or not, where a
    /// duplicate of it may rest: it is durable, or the next sync covers it.
    pub(crate) fn holds(&self, msg: &StoredMessage) -> bool {
        let (key, len) = (record_key(msg), self.records.len());
        let Some(&first) = self.first.get(&key) else { return false };
        // Usually the first copy is the only one, and it settles; later copies exist only where
        // an earlier one's sync was not known to succeed.
        let copy = |(k, r): (usize, &Record)| r.key == key && r.id == msg.id && self.durability.settles(first + k, len);
        self.records.get(first..).is_some_and(|rest| rest.iter().enumerate().any(copy))
    }

    /// Whether a record of `msg` (same sender, same id) is stored and known durable.
    pub(crate) fn holds_durable(&self, msg: &StoredMessage) -> bool {
        let key = record_key(msg);
        let Some(&first) = self.first.get(&key) else { return false };
        let copy = |(k, r): (usize, &Record)| r.key == key && r.id == msg.id && self.durability.is_durable(first + k);
        self.records.get(first..).is_some_and(|rest| rest.iter().enumerate().any(copy))
    }

    /// Drops the records `from..to` (a failed batch's, none known durable): those written out
    /// are the file's last ones, those not written out are the first of `unwritten` (the
    /// store's bytes for this mailbox, cut here). The records after them (not written out) stay.
    /// Returns the length to cut the file back to, `None` when there was nothing to drop.
    pub(crate) fn discard(&mut self, from: usize, to: usize, unwritten: &mut Vec<u8>) -> Option<u64> {
        let len = self.records.len();
        let to = to.min(len);
        if from >= to {
            return None;
        }
        let written = self.written;
        let cut = self.records[from].at.min(written);
        let in_memory = |r: &Record| usize::try_from(r.at - written).unwrap_or(usize::MAX);
        let end = self.records.get(to).filter(|r| r.at >= written).map_or(unwritten.len(), in_memory);
        let start = self.records[from..to].iter().find(|r| r.at >= written).map_or(end, in_memory);
        let (start, end) = (start.min(unwritten.len()), end.min(unwritten.len()));
        unwritten.drain(start..end);
        let dropped_in_memory = (end - start) as u64;
        for r in &mut self.records[to..] {
            r.at = (r.at.saturating_sub(written).saturating_sub(dropped_in_memory)) + cut;
        }
        self.records.drain(from..to);
        self.first.clear();
        for (i, r) in self.records.iter().enumerate() {
            self.first.entry(r.key).or_insert(i);
        }
        self.usage.count -= to - from;
        self.usage.bytes = self.usage.bytes.saturating_sub(written - cut + dropped_in_memory);
        self.written = cut;
        self.torn_at = None;
        self.durability.discarded(from, to, len);
        Some(cut)
    }

    /// The records, oldest first.
    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }

    /// Adds `r` at the end of the index.
    pub(crate) fn note(&mut self, r: Record) {
        self.first.entry(r.key).or_insert(self.records.len());
        self.records.push(r);
    }

    /// Notes a record of `len` bytes for `msg`, `pending` bytes after the written end.
    pub(crate) fn push(&mut self, msg: &StoredMessage, len: u64, pending: u64) {
        self.usage.count += 1;
        self.usage.bytes += len;
        self.note(Record::of(msg, self.written + pending));
        self.durability.pushed();
    }

    /// The records not written out were written at `at` (where they were planned at
    /// `self.written`), `len` bytes in all.
    pub(crate) fn written_at(&mut self, at: u64, len: u64) {
        let planned = self.written;
        for r in self.records.iter_mut().rev().take_while(|r| r.at >= planned) {
            r.at = r.at - planned + at;
        }
        self.written = at + len;
    }

    /// How many of the records are written out (to the page cache at least).
    pub(crate) fn written_count(&self) -> usize {
        self.records.partition_point(|r| r.at < self.written)
    }
}

/// Reads the mailbox at `path`, passing each readable record to `each`, then syncs the file
/// (`fdatasync`), and returns its state. So every record found is durable: one written by an
/// earlier run that was killed before its sync is made durable here, before a duplicate may
/// rest on it. If the sync fails, the records are not counted durable (a duplicate of one is
/// stored again). Skipped lines are logged.
pub(crate) fn scan(path: &Path, mut each: impl FnMut(StoredMessage)) -> Result<Mailbox, StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Mailbox::default()),
        Err(e) => return Err(StoreError::io("open", path)(e)),
    };
    let mut mb = Mailbox { exists: true, ..Mailbox::default() };
    let mut lines = Lines::new(BufReader::new(file));
    while let Some(line) = lines.next_line().map_err(StoreError::io("read", path))? {
        match line {
            Line::Record(msg) => {
                let len = lines.raw().len() as u64;
                mb.usage.count += 1;
                mb.usage.bytes += len;
                mb.note(Record::of(&msg, lines.end - len));
                each(msg);
            }
            Line::Corrupt(why) => {
                tracing::warn!(path = %path.display(), line = lines.number, "skipping corrupt record: {why}");
            }
            Line::Torn => {
                tracing::warn!(path = %path.display(), line = lines.number, "skipping torn last record");
                mb.torn_at = Some(lines.end);
            }
        }
    }
    mb.written = lines.end;
    match lines.into_inner().get_ref().sync_data() {
        Ok(()) => mb.durability = Durability::synced(mb.records.len()),
        Err(e) => tracing::warn!(path = %path.display(), "mailbox sync after a scan failed: {e}"),
    }
    Ok(mb)
}

/// The cached state of the mailbox at `path`, scanning the file the first time.
pub(crate) fn cached<'a>(
    boxes: &'a mut HashMap<Name, Mailbox>,
    name: &Name,
    path: &Path,
) -> Result<&'a mut Mailbox, StoreError> {
    Ok(match boxes.entry(name.clone()) {
        Entry::Occupied(known) => known.into_mut(),
        Entry::Vacant(slot) => slot.insert(scan(path, |_| {})?),
    })
}

/// Writes the records of the mailbox at `path` after its first `n` readable ones to `tmp`, syncs
/// it, and returns the state of the mailbox it holds.
pub(crate) fn write_rest(path: &Path, n: usize, tmp: &Path) -> Result<Mailbox, StoreError> {
    let file = File::open(path).map_err(StoreError::io("open", path))?;
    let out = chat_core::private::file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(StoreError::io("create", tmp))?;
    let mut out = BufWriter::new(out);
    let mut lines = Lines::new(BufReader::new(file));
    let (mut seen, mut kept) = (0, Mailbox { exists: true, ..Mailbox::default() });
    while let Some(line) = lines.next_line().map_err(StoreError::io("read", path))? {
        if let Line::Record(msg) = line {
            seen += 1;
            if seen > n {
                out.write_all(lines.raw()).map_err(StoreError::io("write", tmp))?;
                kept.push(&msg, lines.raw().len() as u64, 0);
                kept.written += lines.raw().len() as u64;
            }
        }
    }
    let out = out.into_inner().map_err(|e| StoreError::io("write", tmp)(e.into_error()))?;
    out.sync_data().map_err(StoreError::io("sync", tmp))?;
    kept.durability = Durability::synced(kept.records.len());
    Ok(kept)
}
