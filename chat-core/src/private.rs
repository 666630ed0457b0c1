//! Files and directories only their owner can read: every file ChatApp writes in its data
//! directory is made mode 0600, and every directory it makes 0700 (on Unix; elsewhere the
//! platform's defaults). The one place that says so, so no writer forgets it.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::path::Path;

/// Open options whose files, when created, are readable and writable by their owner only.
pub fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates `dir` and its missing parents, each readable by its owner only; an existing
/// directory is left as it is.
///
/// # Errors
/// The [`io::Error`] of a directory that cannot be made.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `bytes` to a new or truncated private file at `path`.
///
/// # Errors
/// The [`io::Error`] of the open or the write.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    io::Write::write_all(&mut file_options().write(true).create(true).truncate(true).open(path)?, bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn files_and_directories_made_here_are_the_owners_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a").join("b");
        create_dir_all(&dir).expect("dirs");
        assert_eq!((mode(&tmp.path().join("a")), mode(&dir)), (0o700, 0o700));
        write(&dir.join("f"), b"x").expect("write");
        file_options().append(true).create(true).open(dir.join("g")).expect("open");
        assert_eq!((mode(&dir.join("f")), mode(&dir.join("g"))), (0o600, 0o600));
    }
}
