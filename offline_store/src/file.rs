//! [`FileStore`]: mailboxes as append-only files in one directory, with group commit through
//! a journal (see `journal.rs`): a sync is one `fdatasync` of the journal, whatever the number
//! of mailboxes written; the mailboxes are synced at checkpoints.
//!
//! This module owns the files: opening, appending, syncing, rewriting and removing them, and
//! the in-memory index of each mailbox (usage, and each record's message id and offset: 16 bytes
//! a message). It must not hold whole mailboxes in memory, nor keep more than [`OPEN_HANDLES`]
//! file handles open.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use chat_proto::{MsgId, Name, StoredMessage};

use crate::journal::Journal;
use crate::record::{self, Line, Lines};
use crate::{Appended, Limits, Store, StoreError, SyncJob, Usage, file_name};

/// At most this many mailbox files stay open between syncs (the busiest ones are reopened less).
pub(crate) const OPEN_HANDLES: usize = 64;

/// What the store knows about one mailbox file, from its last full scan and the writes since.
///
/// It costs 16 bytes per stored message (its id and where its line starts), so that an append
/// can refuse an id already stored and a read can go straight to one record.
#[derive(Clone, Debug, Default)]
struct Mailbox {
    /// Readable records and their bytes.
    usage: Usage,
    /// Whether the file exists.
    exists: bool,
    /// Set when the file ends in a torn record: the offset just past its last complete line,
    /// to cut the file back to before the next append.
    torn_at: Option<u64>,
    /// Where the next record written out will start: the file's length, a torn tail cut off.
    written: u64,
    /// Each readable record, oldest first: its message's id and the offset of its line. An
    /// offset at or past `written` is a record not written out yet, at `offset - written` in
    /// the store's unwritten bytes for this mailbox.
    records: Vec<(MsgId, u64)>,
}

impl Mailbox {
    /// Whether a record of message `id` is stored (written out or not).
    fn holds(&self, id: MsgId) -> bool {
        self.records.iter().any(|(stored, _)| *stored == id)
    }

    /// Notes a record of `len` bytes for `id`, `pending` bytes after the written end.
    fn push(&mut self, id: MsgId, len: u64, pending: u64) {
        self.usage.count += 1;
        self.usage.bytes += len;
        self.records.push((id, self.written + pending));
    }

    /// The records not written out were written at `at` (where they were planned at
    /// `self.written`), `len` bytes in all.
    fn written_at(&mut self, at: u64, len: u64) {
        let planned = self.written;
        for (_, offset) in self.records.iter_mut().rev().take_while(|(_, offset)| *offset >= planned) {
            *offset = *offset - planned + at;
        }
        self.written = at + len;
    }
}

/// Reads the mailbox at `path`, passing each readable record to `each`, and returns its state.
/// Skipped lines are logged.
fn scan(path: &Path, mut each: impl FnMut(StoredMessage)) -> Result<Mailbox, StoreError> {
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
fn cached<'a>(boxes: &'a mut HashMap<Name, Mailbox>, name: &Name, path: &Path) -> Result<&'a mut Mailbox, StoreError> {
    Ok(match boxes.entry(name.clone()) {
        Entry::Occupied(known) => known.into_mut(),
        Entry::Vacant(slot) => slot.insert(scan(path, |_| {})?),
    })
}

/// Mailboxes stored as one `<file_name>.mbox` file per recipient in a directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    limits: Limits,
    /// Usage cache, filled by the first scan of each mailbox and kept exact after.
    boxes: HashMap<Name, Mailbox>,
    /// Open handles of mailboxes appended to lately (at most [`OPEN_HANDLES`]).
    dirty: HashMap<Name, File>,
    /// Records appended since the last sync, per mailbox: written out with one `write` each
    /// when the next sync starts, or before the mailbox is read.
    unwritten: HashMap<Name, Vec<u8>>,
    /// Mailboxes written since the last checkpoint: synced at the next one.
    unsynced: HashSet<Name>,
    /// A mailbox file was created since the last checkpoint: the directory needs a sync too.
    dir_dirty: bool,
    journal: Journal,
}

impl FileStore {
    /// Opens the store in `dir`, creating the directory (and its parents) if missing, and
    /// replaying its journal if the last run did not end with a checkpoint.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory cannot be created or the journal replayed.
    pub fn open(dir: impl Into<PathBuf>, limits: Limits) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        let journal = Journal::open(&dir)?;
        let (boxes, dirty, unwritten, unsynced) = (HashMap::new(), HashMap::new(), HashMap::new(), HashSet::new());
        Ok(Self { dir, limits, boxes, dirty, unwritten, unsynced, dir_dirty: false, journal })
    }

    /// The directory holding the mailboxes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `name`'s mailbox file (which may not exist): always directly in [`Self::dir`].
    pub fn mailbox_path(&self, name: &Name) -> PathBuf {
        self.dir.join(format!("{}.mbox", file_name(name)))
    }

    /// How many file handles are open (those of files appended to since the last sync).
    #[cfg(test)]
    pub(crate) fn open_handles(&self) -> usize {
        self.dirty.len()
    }

    /// Writes out the records appended to `name`'s mailbox since the last sync. If that fails
    /// they stay in memory for the next try: none of them is acknowledged before a sync that
    /// wrote them out.
    fn write_out(&mut self, name: &Name) -> Result<(), StoreError> {
        let Some(bytes) = self.unwritten.remove(name) else { return Ok(()) };
        let written = self.write_records(name, &bytes);
        if written.is_err() {
            self.unwritten.insert(name.clone(), bytes);
        }
        written
    }

    fn write_records(&mut self, name: &Name, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.mailbox_path(name);
        let mb = cached(&mut self.boxes, name, &path)?;
        let file = match self.dirty.entry(name.clone()) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => {
                // Opened once per sync, a torn tail cut off first.
                let file =
                    OpenOptions::new().append(true).create(true).open(&path).map_err(StoreError::io("open", &path))?;
                if let Some(end) = mb.torn_at {
                    file.set_len(end).map_err(StoreError::io("truncate", &path))?;
                    mb.torn_at = None;
                }
                if !mb.exists {
                    self.dir_dirty = true;
                    mb.exists = true;
                }
                slot.insert(file)
            }
        };
        let before = file.metadata().map_err(StoreError::io("stat", &path))?.len();
        let written = file.write_all(bytes).map_err(StoreError::io("write", &path));
        if written.is_err() {
            // The file may now end in part of a record: cut it back before the next write.
            mb.torn_at = Some(before);
            self.dirty.remove(name);
        } else {
            mb.written_at(before, bytes.len() as u64);
        }
        written
    }

    /// Syncs the store's directory, so created, renamed and removed files stay so.
    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(StoreError::io("sync directory", &self.dir))
    }
}

/// Writes the records of the mailbox at `path` after its first `n` readable ones to `tmp`, syncs
/// it, and returns the state of the mailbox it holds.
fn write_rest(path: &Path, n: usize, tmp: &Path) -> Result<Mailbox, StoreError> {
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

impl Store for FileStore {
    fn append_once(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError> {
        let line = record::encode(msg).map_err(|e| StoreError::io("encode", self.mailbox_path(to))(e.into()))?;
        let path = self.mailbox_path(to);
        let pending = self.unwritten.get(to).map_or(0, |bytes| bytes.len() as u64);
        let mb = cached(&mut self.boxes, to, &path)?;
        if mb.holds(msg.id) {
            return Ok(Appended::Duplicate);
        }
        self.limits.check(to, mb.usage, line.len() as u64)?;
        mb.push(msg.id, line.len() as u64, pending);
        self.journal.note(&file_name(to), &line);
        match self.unwritten.get_mut(to) {
            Some(bytes) => bytes.extend_from_slice(&line),
            None => {
                self.unwritten.insert(to.clone(), line);
                self.unsynced.insert(to.clone());
            }
        }
        Ok(Appended::Stored)
    }

    fn start_sync(&mut self) -> Result<Option<SyncJob>, StoreError> {
        // The mailbox writes go to the page cache; the journal makes them durable.
        let names: Vec<Name> = self.unwritten.keys().cloned().collect();
        for name in &names {
            self.write_out(name)?;
        }
        if self.dirty.len() > OPEN_HANDLES {
            self.dirty.clear();
        }
        self.journal.write()
    }

    fn finish_sync(&mut self) -> Result<(), StoreError> {
        self.journal.synced();
        if self.journal.checkpoint_due() {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        if let Some(job) = self.start_sync()? {
            job.run()?;
            self.journal.synced();
        }
        let names: Vec<Name> = self.unsynced.iter().cloned().collect();
        for name in names {
            let path = self.mailbox_path(&name);
            match File::open(&path).and_then(|f| f.sync_data()) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(StoreError::io("sync", path)(e)),
                _ => self.unsynced.remove(&name),
            };
        }
        if self.dir_dirty {
            self.sync_dir()?;
            self.dir_dirty = false;
        }
        self.journal.clear()
    }

    fn load(&mut self, to: &Name) -> Result<Vec<StoredMessage>, StoreError> {
        self.write_out(to)?;
        let mut out = Vec::new();
        let mb = scan(&self.mailbox_path(to), |msg| out.push(msg))?;
        self.boxes.insert(to.clone(), mb);
        Ok(out)
    }

    fn remove_first(&mut self, to: &Name, n: usize) -> Result<(), StoreError> {
        self.write_out(to)?;
        let path = self.mailbox_path(to);
        let (exists, count) = cached(&mut self.boxes, to, &path).map(|mb| (mb.exists, mb.usage.count))?;
        if n == 0 || !exists {
            return Ok(());
        }
        // No journal line may bring back what is removed here.
        self.checkpoint()?;
        // The file is replaced: appends since the last sync are copied (or removed) with it.
        self.dirty.remove(to);
        let kept = if n >= count {
            Mailbox::default()
        } else {
            let tmp = self.dir.join(format!("{}.tmp", file_name(to)));
            let kept = write_rest(&path, n, &tmp);
            let kept = kept.and_then(|kept| {
                fs::rename(&tmp, &path).map_err(StoreError::io("rename", &tmp))?;
                Ok(kept)
            });
            if kept.is_err() {
                let _ = fs::remove_file(&tmp);
                self.boxes.remove(to);
            }
            kept?
        };
        if kept.usage.count == 0 {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    self.boxes.remove(to);
                    return Err(StoreError::io("remove", path)(e));
                }
                _ => {}
            }
        }
        self.boxes.insert(to.clone(), Mailbox { exists: kept.usage.count > 0, ..kept });
        self.sync_dir()
    }

    fn usage(&mut self, to: &Name) -> Result<Usage, StoreError> {
        let path = self.mailbox_path(to);
        Ok(cached(&mut self.boxes, to, &path)?.usage)
    }
}
