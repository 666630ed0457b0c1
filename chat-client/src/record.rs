//! The file that keeps the inbox's record of what this client has shown (`<stem>.shown` in the
//! data directory, beside `<stem>.key`), so that a restarted client never shows a message again:
//! read once at start, appended to as messages are shown, rewritten smaller (compacted) when it
//! has grown past twice the record's bound. Made private (0600) like every file of the client.
//!
//! It owns the path and how much the file holds; what a line means is [`crate::inbox`]'s. A
//! damaged file is a warning, never an error: its good lines still count, and the damaged
//! original is kept beside it (`.damaged`) before the file is rewritten.
//!
//! Appends are plain `write`s, without `fsync`: what a process wrote is in the kernel's page
//! cache and survives that process being killed at any moment, the failure this record is for.
//! Only a crash of the whole machine could lose the last lines, and then the sender's own
//! retransmissions are long gone too.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::inbox::{Inbox, Shown};

/// The record's file, open for appending.
#[derive(Debug)]
pub(crate) struct ShownFile {
    path: PathBuf,
    file: Option<File>,
    /// How many lines the file holds (about: it is compacted past twice the bound).
    lines: usize,
    capacity: usize,
    /// The file could not be read at start: it is appended to but never rewritten, so that
    /// nothing in it is lost.
    keep_as_is: bool,
    /// A write failed and the user was told: not told again.
    failed: bool,
}

/// Reads the record kept at `path` (none yet: an empty one), bounded to `capacity` entries.
/// Returns it, the file to append to, and a warning for the user if the file could not be read
/// or was damaged (the messages it no longer names may show again).
pub(crate) fn load(path: &Path, capacity: usize) -> (Inbox, ShownFile, Option<String>) {
    let mut file =
        ShownFile { path: path.to_owned(), file: None, lines: 0, capacity, keep_as_is: false, failed: false };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (Inbox::with_capacity(capacity), file, None),
        Err(e) => {
            file.keep_as_is = true;
            let warning = format!(
                "Cannot read the record of shown messages {}: {e}. Messages shown before may show again.",
                path.display()
            );
            return (Inbox::with_capacity(capacity), file, Some(warning));
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let (inbox, damaged) = Inbox::parse(&text, capacity);
    let mut warning = None;
    if damaged > 0 {
        let aside = damaged_path(path);
        let kept = std::fs::copy(path, &aside)
            .map_or_else(|e| format!("not kept: {e}"), |_| format!("kept in {}", aside.display()));
        warning = Some(format!(
            "The record of shown messages {} had {damaged} damaged line(s), skipped ({kept}); a message shown before may show again.",
            path.display()
        ));
    }
    let lines = text.lines().count();
    if damaged > 0 || lines > inbox.len() || !text.is_empty() && !text.ends_with('\n') {
        file.compact(&inbox);
    } else {
        file.lines = lines;
    }
    (inbox, file, warning)
}

fn damaged_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".damaged");
    PathBuf::from(name)
}

impl ShownFile {
    /// Appends `shown`, the message whose line was just printed; past twice the bound,
    /// rewrites the file from `inbox`. A problem is returned once, for the user to be told;
    /// later ones are only logged.
    pub(crate) fn append(&mut self, shown: &Shown, inbox: &Inbox) -> Option<String> {
        // One write for the line: a kill leaves it whole, or cut short (skipped at the next
        // load, its message shown again).
        let result = self.open().and_then(|f| f.write_all(format!("{shown}\n").as_bytes()));
        self.lines += 1;
        if let Err(e) = result {
            self.file = None;
            return self.told(format!("Cannot keep the record of shown messages in {}: {e}.", self.path.display()));
        }
        if self.lines > 2 * self.capacity {
            return self.compact(inbox);
        }
        None
    }

    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                chat_core::private::create_dir_all(dir)?;
            }
            self.file = Some(chat_core::private::file_options().append(true).create(true).open(&self.path)?);
        }
        self.file.as_mut().ok_or_else(|| io::Error::other("no file"))
    }

    /// Rewrites the file with `inbox`'s record only (through a new file renamed over it, so a
    /// kill midway leaves the old one whole).
    fn compact(&mut self, inbox: &Inbox) -> Option<String> {
        if self.keep_as_is {
            return None;
        }
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let result =
            chat_core::private::write(&tmp, inbox.lines().as_bytes()).and_then(|()| std::fs::rename(&tmp, &self.path));
        self.file = None;
        match result {
            Ok(()) => {
                self.lines = inbox.len();
                None
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.told(format!("Cannot compact the record of shown messages {}: {e}.", self.path.display()))
            }
        }
    }

    fn told(&mut self, problem: String) -> Option<String> {
        tracing::warn!("{problem}");
        (!std::mem::replace(&mut self.failed, true)).then_some(problem)
    }
}

#[cfg(test)]
mod tests {
    use chat_proto::{MsgId, Name};

    use super::*;

    fn chat(i: u64) -> Shown {
        Shown::Chat(Name::new("bob").expect("name"), MsgId(i))
    }

    /// Shows `ids` through `inbox` and appends each, as the driver does.
    fn show(inbox: &mut Inbox, file: &mut ShownFile, ids: std::ops::Range<u64>) {
        for i in ids {
            assert!(inbox.first(chat(i)));
            assert_eq!(file.append(&chat(i), inbox), None);
        }
    }

    #[test]
    fn the_record_survives_a_restart_in_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join("bob.shown");
        let (mut inbox, mut file, warning) = load(&path, 100);
        assert_eq!((inbox.len(), warning), (0, None), "no file yet");
        show(&mut inbox, &mut file, 0..3);
        show(&mut inbox, &mut file, 3..5);

        let (mut again, _, warning) = load(&path, 100);
        assert_eq!(warning, None);
        assert_eq!(again.len(), 5);
        assert!(!again.first_chat(&Name::new("bob").expect("name"), MsgId(4)), "shown before the restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_file_is_compacted_past_twice_the_bound_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bob.shown");
        let (mut inbox, mut file, _) = load(&path, 10);
        for start in (0..95).step_by(5) {
            show(&mut inbox, &mut file, start..start + 5);
            let lines = std::fs::read_to_string(&path).expect("read").lines().count();
            assert!(lines <= 20, "{lines} lines after {}", start + 5);
        }
        let (mut again, _, warning) = load(&path, 10);
        assert_eq!((again.len(), warning), (10, None));
        assert!(!again.first_chat(&Name::new("bob").expect("name"), MsgId(94)));
        assert!(again.first_chat(&Name::new("bob").expect("name"), MsgId(84)), "older than the bound");
    }

    #[test]
    fn a_damaged_file_is_a_warning_its_good_lines_count_and_the_original_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bob.shown");
        let damaged = format!("{}\n\u{fffd}garbage\n{}\nd bob 00000000", chat(1), chat(2));
        std::fs::write(&path, [damaged.as_bytes(), b"\xff\n"].concat()).expect("write");
        let (mut inbox, mut file, warning) = load(&path, 100);
        let warning = warning.expect("a warning");
        assert!(warning.contains("2 damaged line(s)") && warning.contains("bob.shown.damaged"), "{warning}");
        assert_eq!(inbox.len(), 2, "the good lines count");
        let aside = std::fs::read(dir.path().join("bob.shown.damaged")).expect("the original, kept");
        assert!(aside.ends_with(b"00000000\xff\n"));
        show(&mut inbox, &mut file, 3..4);
        let (again, _, warning) = load(&path, 100);
        assert_eq!((again.len(), warning), (3, None), "rewritten clean, then appended to");
    }

    #[test]
    fn a_last_line_cut_short_is_dropped_before_the_next_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bob.shown");
        std::fs::write(&path, format!("{}\nd bob 000", chat(1))).expect("write");
        let (mut inbox, mut file, warning) = load(&path, 100);
        assert!(warning.is_some());
        show(&mut inbox, &mut file, 7..8);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("{}\n{}\n", chat(1), chat(7)), "no new line glued to the cut one");
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_file_is_a_warning_and_is_never_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bob.shown");
        std::fs::create_dir(&path).expect("a directory where the file should be");
        let (mut inbox, mut file, warning) = load(&path, 1);
        let warning = warning.expect("a warning");
        assert!(warning.starts_with("Cannot read the record of shown messages"), "{warning}");
        let bob = Name::new("bob").expect("name");
        assert!(inbox.first_chat(&bob, MsgId(1)));
        let problem = file.append(&chat(1), &inbox).expect("told once");
        assert!(problem.starts_with("Cannot keep the record"), "{problem}");
        assert!(inbox.first_chat(&bob, MsgId(2)));
        assert_eq!(file.append(&chat(2), &inbox), None, "not told again");
        assert!(path.is_dir(), "left as it was");
    }
}
