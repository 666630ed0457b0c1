//! One mailbox record per line: `crc32-hex SP json LF`, and a reader that walks a file's lines.
//!
//! This module owns the byte format only; it must not open files or decide what to skip.

use std::io::{self, BufRead, Read as _};

use chat_proto::StoredMessage;

/// Longest line the reader accepts; a 32 KiB text escapes to well under this.
const MAX_LINE: u64 = 256 * 1024;

/// The full line for `msg`, newline included.
///
/// # Errors
/// The serializer's error; it does not happen for a valid [`StoredMessage`].
pub(crate) fn encode(msg: &StoredMessage) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(msg)?;
    let mut line = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

/// Decodes one line (with or without its newline), checking its checksum.
///
/// # Errors
/// Why the line is not a record.
pub(crate) fn decode(line: &[u8]) -> Result<StoredMessage, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.len() < 9 || line[8] != b' ' {
        return Err("no checksum".into());
    }
    let (hex, json) = (&line[..8], &line[9..]);
    let crc = std::str::from_utf8(hex)
        .ok()
        .filter(|h| h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("bad checksum field")?;
    if crc != crc32fast::hash(json) {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("bad record: {e}"))
}

/// One line of a mailbox file.
pub(crate) enum Line {
    /// A complete line that holds a valid record.
    Record(StoredMessage),
    /// A complete line that does not; the reason.
    Corrupt(String),
    /// The last bytes of the file, not ended by a newline: a write cut short.
    Torn,
}

/// Walks the lines of a mailbox file without holding more than one line in memory.
pub(crate) struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    /// 1-based number of the line last returned.
    pub(crate) number: usize,
    /// Offset just past the last complete line returned.
    pub(crate) end: u64,
}

impl<R: BufRead> Lines<R> {
    /// Starts at the beginning of `reader`.
    pub(crate) fn new(reader: R) -> Self {
        Self { reader, buf: Vec::new(), number: 0, end: 0 }
    }

    /// The reader, to do more with the file once its lines are read.
    pub(crate) fn into_inner(self) -> R {
        self.reader
    }

    /// The bytes of the line last returned (complete lines end with `\n`).
    pub(crate) fn raw(&self) -> &[u8] {
        &self.buf
    }

    /// The next line, or `None` at the end of the file.
    ///
    /// # Errors
    /// A read error.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line>> {
        self.buf.clear();
        let mut total: u64 = 0;
        let mut too_long = false;
        loop {
            let room = if too_long { MAX_LINE } else { MAX_LINE + 1 - total };
            if too_long {
                self.buf.clear();
            }
            let n = (&mut self.reader).take(room).read_until(b'\n', &mut self.buf)?;
            total += n as u64;
            if n == 0 || self.buf.last() == Some(&b'\n') {
                break;
            }
            if total > MAX_LINE {
                too_long = true;
            }
        }
        if total == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.buf.last() != Some(&b'\n') {
            return Ok(Some(Line::Torn));
        }
        self.end += total;
        if too_long {
            self.buf.clear();
            return Ok(Some(Line::Corrupt("line too long".into())));
        }
        Ok(Some(match decode(&self.buf) {
            Ok(msg) => Line::Record(msg),
            Err(why) => Line::Corrupt(why),
        }))
    }
}
