//! The commit journal: one file that every append also goes to, so that one `fdatasync` of it
//! makes a whole batch of saves durable, however many mailboxes they went to.
//!
//! A journal line is the mailbox's file stem, a space, and the record line exactly as it went
//! into the mailbox. The mailbox files themselves are synced only at a checkpoint, after which
//! the journal is emptied. Opening the store replays a non-empty journal: a record missing from
//! its mailbox (a crash of the machine lost it from the page cache) is appended again; one
//! already there is left alone. After a failed write the file is cut back to its length before
//! it, so that a partial line never merges with the next into one the replay skips; a batch
//! dropped for lack of space is cut off the same way, so that the replay cannot bring it back.
//! This module owns the journal file and the replay; it must not keep mailbox contents in memory
//! beyond the one mailbox being replayed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use crate::owed::{self, Owed};
use crate::record::{self, Line, Lines};
use crate::{StoreError, SyncJob};

/// The journal is emptied (after syncing the mailboxes) once it grows past this.
pub(crate) const CHECKPOINT_BYTES: u64 = 8 << 20;

/// The journal file and what has been written to it since the last sync.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    len: u64,
    /// Set when a write failed: the file's length before it. The file may end in part of a
    /// line, cut off before the next write, so that it does not merge with the next line into
    /// one that the replay skips.
    torn_at: Option<u64>,
    /// Written since the last sync that is known to have succeeded.
    unsynced: bool,
    /// The lines written since the last sync known to have succeeded (the last write's, and
    /// those of earlier writes whose syncs failed): where they start in the file and how many
    /// bytes they are (for [`Journal::discard_written`]).
    last_write: Option<(u64, u64)>,
}

impl Journal {
    /// Opens (or creates) `dir/journal`, replaying what it holds into the mailboxes of `dir`
    /// and its channel notes and dones into `owed` (whose file is written before the journal is
    /// emptied).
    pub(crate) fn open(dir: &Path, owed: &mut Owed) -> Result<Self, StoreError> {
        let path = dir.join("journal");
        let file = chat_core::private::file_options()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(StoreError::io("open", &path))?;
        let mut journal =
            Self { path, file, pending: Vec::new(), len: 0, torn_at: None, unsynced: false, last_write: None };
        if journal.file.metadata().map_err(StoreError::io("stat", &journal.path))?.len() > 0 {
            journal.replay(dir, owed)?;
        }
        Ok(journal)
    }

    /// Notes `line`, appended to the mailbox `stem`; durable once a job from [`Journal::write`]
    /// has run.
    pub(crate) fn note(&mut self, stem: &str, line: &[u8]) {
        self.pending.extend_from_slice(stem.as_bytes());
        self.pending.push(b' ');
        self.pending.extend_from_slice(line);
    }

    /// Writes what was noted, and returns the sync that makes it durable: `None` when nothing
    /// was written since the last sync that succeeded (see [`Journal::synced`]).
    pub(crate) fn write(&mut self) -> Result<Option<SyncJob>, StoreError> {
        if !self.pending.is_empty() {
            let mut before = self.file.metadata().map_err(StoreError::io("stat", &self.path))?.len();
            if let Some(end) = self.torn_at.take().filter(|end| *end < before) {
                self.file.set_len(end).map_err(StoreError::io("truncate", &self.path))?;
                before = end;
            }
            if let Err(e) = self.file.write_all(&self.pending) {
                self.torn_at = Some(before);
                return Err(StoreError::io("write", &self.path)(e));
            }
            self.len += self.pending.len() as u64;
            let bytes = self.pending.len() as u64;
            // After a failed sync, the lines of the writes since the last good one go together.
            self.last_write =
                Some(self.last_write.map_or((before, bytes), |(start, earlier)| (start, earlier + bytes)));
            self.pending.clear();
            self.unsynced = true;
        }
        if !self.unsynced {
            return Ok(None);
        }
        let file = self.file.try_clone().map_err(StoreError::io("open", &self.path))?;
        Ok(Some(SyncJob::sync_data(file, self.path.clone())))
    }

    /// The last job from [`Journal::write`] ran successfully.
    pub(crate) fn synced(&mut self) {
        self.unsynced = false;
        self.last_write = None;
    }

    /// The sync of the last write failed and its batch is dropped, with those of the syncs that
    /// failed since the last one that succeeded: the file is cut back to its length before
    /// their writes (so a replay cannot bring the batch back; the cut is made
    /// durable by the next sync). Lines noted since stay, for the next write.
    pub(crate) fn discard_written(&mut self) -> Result<(), StoreError> {
        let Some((start, bytes)) = self.last_write.take() else { return Ok(()) };
        self.file.set_len(start).map_err(StoreError::io("truncate", &self.path))?;
        self.len = self.len.saturating_sub(bytes);
        self.torn_at = None;
        self.unsynced = true;
        Ok(())
    }

    /// The batch whose lines were noted (not written, or written in part: a failed write) is
    /// dropped: the lines are forgotten and a torn tail cut off.
    pub(crate) fn discard_pending(&mut self) -> Result<(), StoreError> {
        self.pending.clear();
        if let Some(end) = self.torn_at.take() {
            self.file.set_len(end).map_err(StoreError::io("truncate", &self.path))?;
            self.unsynced = true;
        }
        Ok(())
    }

    /// Whether the journal has grown enough to be emptied by a checkpoint.
    pub(crate) fn checkpoint_due(&self) -> bool {
        self.len > CHECKPOINT_BYTES
    }

    /// A handle on the file, for a job that empties it (see [`Journal::emptied`]).
    pub(crate) fn handle(&self) -> Result<(File, PathBuf), StoreError> {
        let file = self.file.try_clone().map_err(StoreError::io("open", &self.path))?;
        Ok((file, self.path.clone()))
    }

    /// A job emptied the file (after syncing every mailbox it speaks of), with nothing written
    /// to it meanwhile.
    pub(crate) fn emptied(&mut self) {
        self.len = 0;
        self.unsynced = false;
        self.last_write = None;
    }

    /// Empties the journal: the caller has synced every mailbox it speaks of.
    pub(crate) fn clear(&mut self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(StoreError::io("truncate", &self.path))?;
        self.file.sync_data().map_err(StoreError::io("sync", &self.path))?;
        self.len = 0;
        self.unsynced = false;
        self.last_write = None;
        Ok(())
    }

    /// Puts every journalled record that its mailbox lacks back at the mailbox's end, syncs
    /// the mailboxes, and empties the journal.
    fn replay(&mut self, dir: &Path, owed: &mut Owed) -> Result<(), StoreError> {
        let mut by_box: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let mut order = Vec::new();
        let reader = BufReader::new(File::open(&self.path).map_err(StoreError::io("open", &self.path))?);
        for line in reader.split(b'\n') {
            let line = line.map_err(StoreError::io("read", &self.path))?;
            let Some(space) = line.iter().position(|b| *b == b' ') else { continue };
            let (stem, record_line) = (&line[..space], &line[space + 1..]);
            let stem = String::from_utf8_lossy(stem).into_owned();
            if stem == owed::NOTE_STEM || stem == owed::DONE_STEM {
                owed.replay(&stem, record_line);
                continue;
            }
            if stem.is_empty() || stem.contains(['/', '\\', '.']) || record::decode(record_line).is_err() {
                tracing::warn!(path = %self.path.display(), "skipping a torn or corrupt journal line");
                continue;
            }
            let mut full = record_line.to_vec();
            full.push(b'\n');
            if !by_box.contains_key(&stem) {
                order.push(stem.clone());
            }
            by_box.entry(stem).or_default().push(full);
        }
        let mut restored = 0;
        for stem in order {
            let lines = by_box.remove(&stem).unwrap_or_default();
            restored += restore(&dir.join(format!("{stem}.mbox")), &lines)?;
        }
        owed.save_replayed(dir)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io("sync directory", dir))?;
        if restored > 0 {
            tracing::warn!(restored, "journal replayed: records missing from their mailboxes were restored");
        }
        self.clear()
    }
}

/// Appends to the mailbox at `path` those of `lines` it does not hold, after cutting off a
/// torn tail, and syncs it. Returns how many were appended.
fn restore(path: &Path, lines: &[Vec<u8>]) -> Result<usize, StoreError> {
    let mut present = HashSet::new();
    let mut end = 0;
    match File::open(path) {
        Ok(f) => {
            let mut reader = Lines::new(BufReader::new(f));
            while let Some(line) = reader.next_line().map_err(StoreError::io("read", path))? {
                if let Line::Record(_) = line {
                    present.insert(reader.raw().to_vec());
                }
                end = reader.end;
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("open", path)(e)),
    }
    let missing: Vec<&Vec<u8>> = lines.iter().filter(|l| !present.contains(*l)).collect();
    let mut file = chat_core::private::file_options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(StoreError::io("open", path))?;
    file.set_len(end).map_err(StoreError::io("truncate", path))?;
    for line in &missing {
        file.write_all(line).map_err(StoreError::io("write", path))?;
    }
    file.sync_data().map_err(StoreError::io("sync", path))?;
    Ok(missing.len())
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write as _;

    use chat_proto::{MsgId, Name, Origin, StoredMessage, Text};

    use super::Journal;
    use crate::mailbox;
    use crate::owed::Owed;
    use crate::record;

    fn line(i: u64) -> Vec<u8> {
        let msg = StoredMessage {
            id: MsgId(i),
            from: Name::new("alice").expect("name"),
            origin: Origin::Direct,
            at: chrono::DateTime::UNIX_EPOCH,
            body: Text::new(format!("number {i}")).expect("text").into(),
        };
        record::encode(&msg).expect("encodes")
    }

    #[test]
    fn after_a_failed_write_the_next_write_starts_on_a_line_of_its_own() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(tmp.path(), &mut Owed::default()).expect("open");
        journal.note("bob", &line(0));
        let _job = journal.write().expect("write");
        // A write cut short (ENOSPC): part of a line reached the file, and the write failed.
        let good = fs::metadata(tmp.path().join("journal")).expect("meta").len();
        let mut file = OpenOptions::new().append(true).open(tmp.path().join("journal")).expect("open");
        file.write_all(&b"bob "[..]).and_then(|()| file.write_all(&line(1)[..10])).expect("partial");
        journal.torn_at = Some(good);
        journal.note("bob", &line(2));
        let _job = journal.write().expect("write");
        drop(journal);
        // The replay (the mailbox was lost) brings back every line the journal holds whole.
        drop(Journal::open(tmp.path(), &mut Owed::default()).expect("replay"));
        let mbox = mailbox::scan(&tmp.path().join("bob.mbox"), |_| {}).expect("scan");
        let ids: Vec<u64> = mbox.records().iter().map(|r| r.id.0).collect();
        assert_eq!(ids, vec![0, 2], "the line after the failed write is not merged into a corrupt one");
    }
}
