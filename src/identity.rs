//! The long-term key pair kept in the data directory: read if an earlier run made it, else made
//! now and written (mode 0600, in a directory of mode 0700 when it is created here) before
//! anything is sent, so a process that could not keep its identity never uses one.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chat_proto::{KeyError, KeyPair};

/// Why the key pair could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file exists but cannot be read.
    #[error("cannot read the key file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The key file holds no key.
    #[error("the key file {path} holds no key")]
    Bad {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A new key pair could not be written.
    #[error("cannot keep the identity in {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The OS gives no randomness for a new key.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// The key pair in `path`, made and kept there first if there is none.
///
/// # Errors
/// [`IdentityError`]: the file cannot be read or holds no key, or a new key cannot be written
/// durably (the directory is not writable, the disk is full) or made.
pub fn load_or_create(path: &Path) -> Result<KeyPair, IdentityError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return KeyPair::from_file_text(&text)
                .map_err(|source| IdentityError::Bad { path: path.to_owned(), source });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(IdentityError::Read { path: path.to_owned(), source }),
    }
    let pair = KeyPair::generate().map_err(|e| IdentityError::Random(e.to_string()))?;
    write_new(path, &pair.to_file_text()).map_err(|source| IdentityError::Write { path: path.to_owned(), source })?;
    Ok(pair)
}

/// Writes `text` to a new file at `path` that only this user can read, through a temporary
/// file renamed over it, synced with its directory: a crash leaves the whole file or none.
fn write_new(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    chat_core::private::create_dir_all(dir)?;
    let tmp = path.with_extension("key.tmp");
    let mut file = chat_core::private::file_options().write(true).create(true).truncate(true).open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_then_read_back_and_only_its_owner_can_read_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("new").join("alice.key");
        let first = load_or_create(&path).expect("made");
        assert_eq!(load_or_create(&path).expect("read").public(), first.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().expect("dir")), 0o700);
        }
    }

    #[test]
    fn a_bad_or_unwritable_key_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bob.key");
        std::fs::write(&path, "not a key").expect("write");
        let err = load_or_create(&path).expect_err("bad");
        assert_eq!(
            chat_core::report(&err),
            format!("the key file {} holds no key: a key is 64 hex digits", path.display())
        );
        let err = load_or_create(Path::new("/proc/nope/carol.key")).expect_err("not writable");
        assert!(matches!(err, IdentityError::Write { .. }), "{err:?}");
    }
}
