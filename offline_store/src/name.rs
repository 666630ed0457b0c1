//! The safe file name of a mailbox: a name can never reach outside the store's directory.

use std::fmt::Write as _;

use chat_proto::Name;

/// Longest `%XX` form kept; longer ones use the base32 form, so the file name (stem plus
/// `.mbox` or `.tmp`) stays well under the usual 255-byte limit.
const MAX_PERCENT_FORM: usize = 200;

/// Marks the base32 form; `%XX` forms never contain it.
const BASE32_MARK: char = '=';

/// The file name stem of `name`'s mailbox (the file is this plus `.mbox`).
///
/// Bytes `a-z`, `0-9`, `_` and `-` stay as they are; every other byte of the UTF-8 name
/// (uppercase letters, `.`, `/`, `\`, `%`, non-ASCII, ...) becomes `%XX` in uppercase hex. So no
/// name gives `..` or a path separator, and two names never share a file even on a
/// case-insensitive file system (`Bob` is `%42ob`).
///
/// `%XX` triples non-ASCII bytes: a 32-character name of 3- or 4-byte characters would give
/// up to 384 bytes, past the 255-byte file name limit. When that form is longer than 200
/// bytes, the stem is instead `=` followed by the name's UTF-8 bytes in lowercase base32
/// (RFC 4648 alphabet, no padding): at most 206 bytes, still one-to-one, and never equal to
/// a `%XX` form, which cannot contain `=`.
pub fn file_name(name: &Name) -> String {
    let bytes = name.as_str().as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.len() > MAX_PERCENT_FORM {
        out = base32_form(bytes);
    }
    out
}

/// `=` and `bytes` in lowercase unpadded base32.
fn base32_form(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(1 + bytes.len() * 8 / 5 + 1);
    out.push(BASE32_MARK);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base32_form;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (raw, want) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32_form(raw.as_bytes()), format!("={want}"), "{raw}");
        }
    }
}
