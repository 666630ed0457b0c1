//! The client table on disk, so that a restarted server still knows who exists, where they
//! were, the hashes of their secrets (never a secret: a table written before hashes is read,
//! its secrets hashed as they are read), and who is offline with messages waiting. Both files are
//! mode 0600.
//!
//! Two files: `clients.json`, the whole table at some version, and `clients.log`, one line per
//! batch of changes after it (the changed rows, with the version they give). Each batch costs an
//! append of what changed; when the log outgrows the table it is folded into a new
//! `clients.json` (written to a temporary file and renamed over the old one). Loading reads the
//! table and applies the log lines newer than it; a torn last line is skipped. Not fsynced: a
//! process crash loses nothing, a power loss may bring back an older table (stored messages are
//! fsynced on their own).

use std::fs;
use std::io::{self, BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};

use crate::SavedTable;
use crate::error::ServerError;

/// Where the table is kept.
#[derive(Debug, Clone)]
pub struct TableFile {
    path: PathBuf,
    log: PathBuf,
}

impl TableFile {
    /// The table files in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join("clients.json"), log: dir.join("clients.log") }
    }

    /// The table saved last (with the changes logged after it), or `None` if there is none. A
    /// table file that cannot be read is logged and set aside as `clients.json.bad`.
    ///
    /// # Errors
    /// [`ServerError::TableFile`]: reading a file failed for another reason than its absence.
    pub fn load(&self) -> Result<Option<SavedTable>, ServerError> {
        let mut table = self.load_whole()?;
        let log = match fs::File::open(&self.log) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(table),
            Err(e) => return Err(ServerError::table("open", &self.log)(e)),
        };
        for line in BufReader::new(log).split(b'\n') {
            let line = line.map_err(ServerError::table("read", &self.log))?;
            let changes: SavedTable = match serde_json::from_slice(&line) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("skipping a torn or bad line of {}: {e}", self.log.display());
                    continue;
                }
            };
            let whole = table.get_or_insert_with(|| SavedTable { version: 0, clients: Vec::new() });
            whole.apply(changes);
        }
        Ok(table)
    }

    fn load_whole(&self) -> Result<Option<SavedTable>, ServerError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ServerError::table("read", &self.path)(e)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(table) => Ok(Some(table)),
            Err(e) => {
                let bad = self.path.with_extension("json.bad");
                tracing::error!("{} is not a client table ({e}); moved to {}", self.path.display(), bad.display());
                fs::rename(&self.path, bad).map_err(ServerError::table("set aside", &self.path))?;
                Ok(None)
            }
        }
    }

    /// Replaces the saved table with `table` and empties the log.
    ///
    /// # Errors
    /// [`ServerError::TableFile`]: writing, renaming or truncating failed.
    pub fn save(&self, table: &SavedTable) -> Result<(), ServerError> {
        let tmp = self.path.with_extension("json.tmp");
        let json = serde_json::to_vec(table).map_err(io::Error::other).map_err(ServerError::table("encode", &tmp))?;
        chat_core::private::write(&tmp, &json).map_err(ServerError::table("write", &tmp))?;
        fs::rename(&tmp, &self.path).map_err(ServerError::table("rename", &tmp))?;
        match fs::File::options().write(true).open(&self.log) {
            Ok(f) => f.set_len(0).map_err(ServerError::table("truncate", &self.log)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ServerError::table("open", &self.log)(e)),
        }
    }

    /// Appends a batch of changes: the rows that changed, and the version they give.
    ///
    /// # Errors
    /// [`ServerError::TableFile`]: writing failed.
    pub fn append(&self, changes: &SavedTable) -> Result<(), ServerError> {
        let mut line =
            serde_json::to_vec(changes).map_err(io::Error::other).map_err(ServerError::table("encode", &self.log))?;
        line.push(b'\n');
        chat_core::private::file_options()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut f| f.write_all(&line))
            .map_err(ServerError::table("append to", &self.log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_table_loads_back_and_garbage_is_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = TableFile::new(dir.path());
        assert_eq!(file.load().expect("load"), None);
        let json = r#"{"version":42,"clients":[{"name":"bob","addr":"127.0.0.1:5002","online":false,"secret":"0123456789abcdef0123456789abcdef"}]}"#;
        let table: SavedTable = serde_json::from_str(json).expect("a saved table");
        file.save(&table).expect("save");
        assert_eq!(file.load().expect("load"), Some(table.clone()));
        let row = |online| {
            format!(
                r#"{{"name":"bob","addr":"127.0.0.1:5003","online":{online},"secret":"0123456789abcdef0123456789abcdef"}}"#
            )
        };
        let change = |version, online| {
            serde_json::from_str::<SavedTable>(&format!(r#"{{"version":{version},"clients":[{}]}}"#, row(online)))
                .expect("changes")
        };
        file.append(&change(43, true)).expect("append");
        file.append(&change(44, false)).expect("append");
        fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("clients.log"))
            .and_then(|mut f| f.write_all(b"{\"version\":45,"))
            .expect("torn");
        let loaded = file.load().expect("load").expect("a table");
        assert_eq!(loaded.version, 44, "the log applies, its torn last line does not");
        assert_eq!(loaded, {
            let mut t = table.clone();
            t.apply(change(44, false));
            t
        });
        file.save(&loaded).expect("fold the log in");
        assert_eq!(fs::metadata(dir.path().join("clients.log")).expect("log").len(), 0);
        assert_eq!(file.load().expect("load"), Some(loaded));
        #[cfg(unix)]
        for file in ["clients.json", "clients.log"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(file)).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file} is the server's alone");
        }
        fs::write(dir.path().join("clients.json"), b"{not json").expect("write");
        assert_eq!(file.load().expect("load"), None);
        assert!(dir.path().join("clients.json.bad").exists());
    }
}
