//! Channel messages still owed to online members: what a server must deliver again after a
//! restart, because it had acknowledged the message to its sender while copies were on their
//! way (see [`crate::Store::note_owed`]).
//!
//! A file store keeps them in two places: each note, and each "done" once every member was
//! served, is a journal line (so a note is durable with the sync that holds its sender's ACK, at
//! the cost of one line per message, not per member), and a checkpoint, which empties the
//! journal, first writes the messages still owed to `channel.owed` (written aside, synced,
//! renamed). Opening the store reads that file, applies the journal's notes and dones, and
//! writes the result back before the journal is emptied. This module owns the record format,
//! the set in memory and that file; it must not decide who is owed what.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use chat_proto::{MsgId, Name, StoredMessage};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The journal stem of a note; `file_name` never gives `#`, so no mailbox has it.
pub(crate) const NOTE_STEM: &str = "#owed";
/// The journal stem of a done.
pub(crate) const DONE_STEM: &str = "#done";
/// The file the messages still owed are kept in across checkpoints.
const FILE: &str = "channel.owed";

/// A channel message whose online members had not all been served when it was noted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedChannel {
    /// The message, as a member's stored copy would be.
    pub msg: StoredMessage,
    /// The members that were to get it live.
    pub members: Vec<Name>,
}

/// Which message a done is for: its sender and its (channel) id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Key {
    from: Name,
    id: MsgId,
}

impl Key {
    fn of(msg: &StoredMessage) -> Self {
        Self { from: msg.from.clone(), id: msg.id }
    }
}

/// The line of a note (or of the file's record), newline included: `crc32-hex SP json LF`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(value)?;
    let mut line = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

fn decode<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Option<T> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (hex, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    (crc == crc32fast::hash(json)).then(|| serde_json::from_slice(json).ok()).flatten()
}

/// The messages owed, in memory, with their lines (for the file).
#[derive(Debug, Default)]
pub(crate) struct Owed {
    live: BTreeMap<Key, (OwedChannel, Vec<u8>)>,
    /// Done, but the done's journal line is not known durable yet: still written to the file.
    finishing: Vec<Vec<u8>>,
    /// The same, handed to the sync that is out.
    finishing_out: Vec<Vec<u8>>,
    /// The file exists (or may: a checkpoint that failed).
    on_disk: bool,
    /// The journal replayed notes or dones: the file is written before it is emptied.
    replayed: bool,
}

impl Owed {
    /// The messages owed as `dir`'s file holds them.
    pub(crate) fn load(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        let mut owed = Self::default();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(owed),
            Err(e) => return Err(StoreError::io("read", &path)(e)),
        };
        owed.on_disk = true;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            match decode::<OwedChannel>(line) {
                Some(o) => {
                    owed.live.insert(Key::of(&o.msg), (o, line.to_vec()));
                }
                None => tracing::warn!(path = %path.display(), "skipping a torn or corrupt owed channel record"),
            }
        }
        Ok(owed)
    }

    /// A journal line of stem `stem` (a note or a done), replayed at open.
    pub(crate) fn replay(&mut self, stem: &str, line: &[u8]) {
        self.replayed = true;
        let mut full = line.to_vec();
        full.push(b'\n');
        if stem == NOTE_STEM {
            if let Some(o) = decode::<OwedChannel>(&full) {
                self.live.insert(Key::of(&o.msg), (o, full));
                return;
            }
        } else if let Some(key) = decode::<Key>(&full) {
            self.live.remove(&key);
            return;
        }
        tracing::warn!("skipping a torn or corrupt owed channel line of the journal");
    }

    /// Writes the file if the journal replayed something (before the journal is emptied).
    pub(crate) fn save_replayed(&mut self, dir: &Path) -> Result<(), StoreError> {
        if std::mem::take(&mut self.replayed) {
            self.plan(dir).run()?;
        }
        Ok(())
    }

    /// `owed` is owed: returns its journal line.
    pub(crate) fn note(&mut self, owed: &OwedChannel) -> Result<Vec<u8>, StoreError> {
        let line = encode(owed).map_err(|e| StoreError::io("encode", FILE)(e.into()))?;
        self.live.insert(Key::of(&owed.msg), (owed.clone(), line.clone()));
        Ok(line)
    }

    /// Message `id` of `from` is owed to no one now: returns the done's journal line, if it was
    /// owed.
    pub(crate) fn done(&mut self, from: &Name, id: MsgId) -> Option<Vec<u8>> {
        let key = Key { from: from.clone(), id };
        let (_, line) = self.live.remove(&key)?;
        self.finishing.push(line);
        encode(&key).ok()
    }

    /// A sync starts; `failed_before`: the one before never succeeded.
    pub(crate) fn sync_started(&mut self, failed_before: bool) {
        if !failed_before {
            self.finishing_out.clear();
        }
        self.finishing_out.append(&mut self.finishing);
    }

    /// The sync out succeeded: its dones are durable.
    pub(crate) fn synced(&mut self) {
        self.finishing_out.clear();
    }

    /// The messages owed now.
    pub(crate) fn all(&self) -> Vec<OwedChannel> {
        self.live.values().map(|(o, _)| o.clone()).collect()
    }

    /// What a checkpoint writes to the file: every message owed and those whose done is not
    /// known durable. `None` when there is nothing to write and no file.
    pub(crate) fn checkpoint(&mut self, dir: &Path) -> Option<OwedPlan> {
        let plan = self.plan(dir);
        // A checkpoint that fails may leave the file: it is written again by the next one.
        let wrote = self.on_disk || !plan.bytes.is_empty();
        self.on_disk = !plan.bytes.is_empty();
        wrote.then_some(plan)
    }

    /// A checkpoint failed: the file may hold anything it held before.
    pub(crate) fn checkpoint_failed(&mut self) {
        self.on_disk = true;
    }

    fn plan(&self, dir: &Path) -> OwedPlan {
        let mut bytes = Vec::new();
        for line in self.live.values().map(|(_, l)| l).chain(&self.finishing).chain(&self.finishing_out) {
            bytes.extend_from_slice(line);
        }
        OwedPlan { path: dir.join(FILE), bytes }
    }
}

/// The file's next contents, written by a checkpoint before it empties the journal.
#[derive(Debug)]
pub(crate) struct OwedPlan {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl OwedPlan {
    /// Writes the file aside, syncs and renames it (or removes it when nothing is owed); the
    /// caller syncs the directory after.
    pub(crate) fn run(&self) -> Result<(), StoreError> {
        if self.bytes.is_empty() {
            return match fs::remove_file(&self.path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::io("remove", &self.path)(e)),
                _ => Ok(()),
            };
        }
        // Mailbox stems have no `.`: no rewrite of a mailbox uses this name.
        let tmp = self.path.with_extension("owed.tmp");
        let mut file: File = chat_core::private::file_options()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(StoreError::io("open", &tmp))?;
        file.write_all(&self.bytes).map_err(StoreError::io("write", &tmp))?;
        file.sync_data().map_err(StoreError::io("sync", &tmp))?;
        fs::rename(&tmp, &self.path).map_err(StoreError::io("rename", &self.path))
    }
}
