//! The client table on disk, so that a restarted server still knows who exists, where they
//! were, and who is offline with messages waiting.
//!
//! Written whole to a temporary file and renamed over the old one: a crash leaves the old
//! table or the new one, never half of one. Not fsynced: a process crash loses nothing, a
//! power loss may bring back an older table (stored messages are fsynced on their own).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::SavedTable;

/// Where the table is kept.
#[derive(Debug, Clone)]
pub struct TableFile {
    path: PathBuf,
}

impl TableFile {
    /// The table file in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join("clients.json") }
    }

    /// The table saved last, or `None` if there is none. A file that cannot be read as a table
    /// is logged and set aside as `clients.json.bad`, and the server starts empty.
    ///
    /// # Errors
    /// Reading the file failed for another reason than its absence.
    pub fn load(&self) -> io::Result<Option<SavedTable>> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match serde_json::from_slice(&bytes) {
            Ok(table) => Ok(Some(table)),
            Err(e) => {
                let bad = self.path.with_extension("json.bad");
                tracing::error!("{} is not a client table ({e}); moved to {}", self.path.display(), bad.display());
                fs::rename(&self.path, bad)?;
                Ok(None)
            }
        }
    }

    /// Replaces the saved table with `table`.
    ///
    /// # Errors
    /// Writing or renaming failed.
    pub fn save(&self, table: &SavedTable) -> io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(table).map_err(io::Error::other)?)?;
        fs::rename(&tmp, &self.path)
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
        assert_eq!(file.load().expect("load"), Some(table));
        fs::write(dir.path().join("clients.json"), b"{not json").expect("write");
        assert_eq!(file.load().expect("load"), None);
        assert!(dir.path().join("clients.json.bad").exists());
    }
}
