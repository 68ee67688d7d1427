//! The one escape grammar for showing bytes as text (design.md, "Output"):
//! `\r \n \t \0 \\ \xHH`, every other printable ASCII byte as itself.
//!
//! [`escape`] and [`unescape`] are inverse: `unescape(&escape(b)) == b` for all bytes.

use thiserror::Error;

/// Appends the escaped form of `bytes` to `out`.
pub fn escape_into(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\x");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
}

/// The escaped form of `bytes`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + bytes.len() / 8);
    escape_into(bytes, &mut s);
    s
}

/// Escapes everything except LF, which is kept as a real line break after its `\n`
/// (so a multi-line reply stays readable while every CR and LF is still visible).
pub fn escape_lines(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 16);
    for (i, piece) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if i > 0 {
            s.push('\n');
        }
        escape_into(piece, &mut s);
    }
    s
}

/// Errors from [`unescape`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UnescapeError {
    /// A backslash at the very end of the text.
    #[error("dangling backslash at offset {0}")]
    Dangling(usize),
    /// `\` followed by a character that is not one of `r n t 0 \ x`.
    #[error("unknown escape `\\{1}` at offset {0}")]
    Unknown(usize, char),
    /// `\x` not followed by two hex digits.
    #[error("bad \\x escape at offset {0}: need two hex digits")]
    BadHex(usize),
    /// A character outside printable ASCII that should have been escaped.
    #[error("character {1:?} at offset {0} must be written as an escape")]
    Unescaped(usize, char),
}

/// Parses the escape grammar back into bytes. Real line breaks are ignored only when
/// `allow_newlines` is set (for text written with [`escape_lines`]).
pub fn unescape(text: &str, allow_newlines: bool) -> Result<Vec<u8>, UnescapeError> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    return Err(UnescapeError::Dangling(i));
                };
                match e {
                    'r' => out.push(b'\r'),
                    'n' => out.push(b'\n'),
                    't' => out.push(b'\t'),
                    '0' => out.push(0),
                    '\\' => out.push(b'\\'),
                    'x' => {
                        let hi = chars.next().and_then(|(_, h)| h.to_digit(16));
                        let lo = chars.next().and_then(|(_, h)| h.to_digit(16));
                        match (hi, lo) {
                            // Two hex digits are below 256 by construction.
                            (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                            _ => return Err(UnescapeError::BadHex(i)),
                        }
                    }
                    other => return Err(UnescapeError::Unknown(i, other)),
                }
            }
            '\n' | '\r' if allow_newlines => {}
            ' '..='~' => out.push(c as u8),
            other => return Err(UnescapeError::Unescaped(i, other)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_answers() {
        assert_eq!(escape(b"EHLO a\r\n"), "EHLO a\\r\\n");
        assert_eq!(escape(b"a\nb\0\\\xff\t"), "a\\nb\\0\\\\\\xff\\t");
        assert_eq!(
            escape_lines(b"250-a\r\n250 b\r\n"),
            "250-a\\r\\n\n250 b\\r\\n"
        );
        assert_eq!(unescape("x\\r\\n\\x41", false), Ok(b"x\r\nA".to_vec()));
        assert_eq!(unescape("a\\q", false), Err(UnescapeError::Unknown(1, 'q')));
        assert_eq!(unescape("a\\x4", false), Err(UnescapeError::BadHex(1)));
        assert_eq!(unescape("a\\", false), Err(UnescapeError::Dangling(1)));
        assert_eq!(unescape("é", false), Err(UnescapeError::Unescaped(0, 'é')));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            prop_assert_eq!(unescape(&escape(&bytes), false).unwrap(), bytes.clone());
            prop_assert_eq!(unescape(&escape_lines(&bytes), true).unwrap(), bytes);
        }
    }
}
