//! One mailbox file as the store knows it: [`Mailbox`], its index (usage, each record's message
//! id and offset), built by [`scan`] and kept exact by the store's writes, and [`write_rest`],
//! the rewrite that drops a mailbox's first records.
//!
//! This module reads and writes the files it is handed; it must not decide when (that is the
//! store's), nor hold more than one record's line in memory.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Write as _};
use std::path::Path;

use chat_proto::{MsgId, Name, StoredMessage};

use crate::record::{Line, Lines};
use crate::{StoreError, Usage};

/// What the store knows about one mailbox file, from its last full scan and the writes since.
///
/// It costs 16 bytes per stored message (its id and where its line starts), so that an append
/// can refuse an id already stored and a read can go straight to one record.
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
    /// Each readable record, oldest first: its message's id and the offset of its line. An
    /// offset at or past `written` is a record not written out yet, at `offset - written` in
    /// the store's unwritten bytes for this mailbox.
    pub(crate) records: Vec<(MsgId, u64)>,
}

impl Mailbox {
    /// Whether a record of message `id` is stored (written out or not).
    pub(crate) fn holds(&self, id: MsgId) -> bool {
        self.records.iter().any(|(stored, _)| *stored == id)
    }

    /// Notes a record of `len` bytes for `id`, `pending` bytes after the written end.
    pub(crate) fn push(&mut self, id: MsgId, len: u64, pending: u64) {
        self.usage.count += 1;
        self.usage.bytes += len;
        self.records.push((id, self.written + pending));
    }

    /// The records not written out were written at `at` (where they were planned at
    /// `self.written`), `len` bytes in all.
    pub(crate) fn written_at(&mut self, at: u64, len: u64) {
        let planned = self.written;
        for (_, offset) in self.records.iter_mut().rev().take_while(|(_, offset)| *offset >= planned) {
            *offset = *offset - planned + at;
        }
        self.written = at + len;
    }
}

/// Reads the mailbox at `path`, passing each readable record to `each`, and returns its state.
/// Skipped lines are logged.
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
                mb.records.push((msg.id, lines.end - len));
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
    let out = File::create(tmp).map_err(StoreError::io("create", tmp))?;
    let mut out = BufWriter::new(out);
    let mut lines = Lines::new(BufReader::new(file));
    let (mut seen, mut kept) = (0, Mailbox { exists: true, ..Mailbox::default() });
    while let Some(line) = lines.next_line().map_err(StoreError::io("read", path))? {
        if let Line::Record(msg) = line {
            seen += 1;
            if seen > n {
                out.write_all(lines.raw()).map_err(StoreError::io("write", tmp))?;
                kept.push(msg.id, lines.raw().len() as u64, 0);
                kept.written += lines.raw().len() as u64;
            }
        }
    }
    let out = out.into_inner().map_err(|e| StoreError::io("write", tmp)(e.into_error()))?;
    out.sync_data().map_err(StoreError::io("sync", tmp))?;
    Ok(kept)
}
