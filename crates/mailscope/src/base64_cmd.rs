//! `mailscope base64 encode|decode`: binary-safe base64 (RFC 4648), the tool seed 001 wished
//! for after `nkf -MB` turned a zip file into something else. Bytes in, bytes out: nothing is
//! converted, decoded text is not assumed to be text, and a decoding error says where.
//!
//! The codec lives here rather than coming from the `base64` crate because the command wants
//! what that crate does not give: whitespace anywhere, and errors with line and column.
//! `sasl_cmd` uses it for the AUTH payloads too.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{Engine as _, alphabet};
use clap::{Args, Subcommand};

use crate::ExitCode;
use crate::cli::GlobalArgs;

pub const BASE64_EXAMPLES: &str = "\
Examples:
  mailscope base64 encode attachment.zip > attachment.b64
  mailscope base64 decode attachment.b64 > copy.zip && cmp attachment.zip copy.zip
  printf 'user\\0user\\0password' | mailscope base64 encode
  echo 'VXNlcm5hbWU6' | mailscope base64 decode
  mailscope base64 encode --url --no-pad token.bin

Exit status: 0 on success, 1 on invalid input (the error names line, column and byte offset)
or an unreadable file.";

const ENCODE_EXAMPLES: &str = "\
Examples:
  mailscope base64 encode attachment.zip > attachment.b64
  mailscope base64 encode --wrap 0 key.der
  printf 'user\\0user\\0password' | mailscope base64 encode
  mailscope base64 encode --url --no-pad token.bin";

const DECODE_EXAMPLES: &str = "\
Examples:
  mailscope base64 decode attachment.b64 > attachment.zip
  echo 'VXNlcm5hbWU6' | mailscope base64 decode
  mailscope base64 decode --url jwt-part.txt

Whitespace and line breaks anywhere are skipped and missing padding is accepted. Anything else
that is not base64 is an error that names its line, column and byte offset.";

#[derive(Debug, Args)]
pub struct Base64Args {
    #[command(subcommand)]
    pub command: Base64Command,
}

#[derive(Debug, Subcommand)]
pub enum Base64Command {
    /// Encode a file (or stdin) byte for byte.
    #[command(after_help = ENCODE_EXAMPLES)]
    Encode(EncodeArgs),
    /// Decode base64 back to the exact bytes.
    #[command(after_help = DECODE_EXAMPLES)]
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// File to encode; - or nothing for stdin.
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,
    /// Characters per output line; 0 for one line (76 is the MIME limit).
    #[arg(short, long, default_value_t = 76, value_name = "N")]
    pub wrap: usize,
    /// The URL- and filename-safe alphabet (- and _ instead of + and /, RFC 4648 §5).
    #[arg(long)]
    pub url: bool,
    /// Leave out the trailing = padding.
    #[arg(long)]
    pub no_pad: bool,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// File to decode; - or nothing for stdin.
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,
    /// The URL- and filename-safe alphabet (- and _ instead of + and /, RFC 4648 §5).
    #[arg(long)]
    pub url: bool,
}

/// Runs `mailscope base64`.
pub fn run(global: &GlobalArgs, args: &Base64Args) -> Result<ExitCode> {
    crate::completions::reject_json(global, "base64")?;
    crate::completions::quiet_on_closed_pipe(match &args.command {
        Base64Command::Encode(a) => encode_cmd(a),
        Base64Command::Decode(a) => decode_cmd(a),
    })
}

fn encode_cmd(args: &EncodeArgs) -> Result<ExitCode> {
    let input = read_input(args.input.as_ref())?;
    let alphabet = if args.url {
        Alphabet::UrlSafe
    } else {
        Alphabet::Standard
    };
    let text = encode(&input, alphabet, !args.no_pad);
    let mut out = Vec::with_capacity(text.len() + text.len() / args.wrap.max(1) + 1);
    if args.wrap == 0 {
        out.extend_from_slice(text.as_bytes());
    } else {
        for line in text.as_bytes().chunks(args.wrap) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.pop();
    }
    if !out.is_empty() {
        out.push(b'\n');
    }
    crate::completions::write_stdout(&out)?;
    Ok(ExitCode(0))
}

fn decode_cmd(args: &DecodeArgs) -> Result<ExitCode> {
    let input = read_input(args.input.as_ref())?;
    let alphabet = if args.url {
        Alphabet::UrlSafe
    } else {
        Alphabet::Standard
    };
    let decoded = decode(&input, alphabet).map_err(|e| {
        let name = match &args.input {
            Some(p) if p.as_os_str() != "-" => p.display().to_string(),
            _ => "stdin".into(),
        };
        anyhow::Error::new(crate::UsageError(format!("{name}: {e}")))
    })?;
    crate::completions::write_stdout(&decoded)?;
    Ok(ExitCode(0))
}

/// The whole input, from a file or stdin (`-` or nothing).
pub fn read_input(path: Option<&PathBuf>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    match path {
        Some(p) if p.as_os_str() != "-" => {
            bytes = std::fs::read(p).map_err(|e| {
                anyhow::Error::new(crate::UsageError(format!(
                    "cannot read {}: {e}",
                    p.display()
                )))
            })?;
        }
        _ => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .context("reading stdin")?;
        }
    }
    Ok(bytes)
}

/// Which 64 characters stand for the sextets 62 and 63.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// `+` and `/` (RFC 4648 §4): MIME, SMTP AUTH, IMAP.
    Standard,
    /// `-` and `_` (RFC 4648 §5): URLs, JWTs.
    UrlSafe,
}

impl Alphabet {
    fn engine(self, pad: bool) -> GeneralPurpose {
        let config = GeneralPurposeConfig::new()
            .with_encode_padding(pad)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true);
        match self {
            Alphabet::Standard => GeneralPurpose::new(&alphabet::STANDARD, config),
            Alphabet::UrlSafe => GeneralPurpose::new(&alphabet::URL_SAFE, config),
        }
    }

    fn other(self) -> Alphabet {
        match self {
            Alphabet::Standard => Alphabet::UrlSafe,
            Alphabet::UrlSafe => Alphabet::Standard,
        }
    }

    fn contains(self, c: u8) -> bool {
        c.is_ascii_alphanumeric()
            || match self {
                Alphabet::Standard => c == b'+' || c == b'/',
                Alphabet::UrlSafe => c == b'-' || c == b'_',
            }
    }
}

/// Encodes `bytes` on one line.
pub fn encode(bytes: &[u8], alphabet: Alphabet, pad: bool) -> String {
    alphabet.engine(pad).encode(bytes)
}

/// Why base64 text could not be decoded, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the input.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in bytes).
    pub column: usize,
    pub kind: DecodeErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// A byte that is neither in the alphabet, nor `=`, nor whitespace.
    InvalidByte { byte: u8, other_alphabet: bool },
    /// Base64 after the `=` padding (two encodings glued together?).
    DataAfterPadding,
    /// `=` where padding cannot be (too many, or at the start of a group).
    MisplacedPadding,
    /// The text ends one character into a 4-character group: a character is missing.
    Truncated,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            DecodeErrorKind::InvalidByte {
                byte,
                other_alphabet,
            } => {
                let shown = if byte.is_ascii_graphic() {
                    format!("'{}' (0x{byte:02x})", *byte as char)
                } else {
                    format!("byte 0x{byte:02x}")
                };
                write!(f, "invalid base64 character {shown}")?;
                if *other_alphabet {
                    let hint = if matches!(byte, b'-' | b'_') {
                        "looks like the URL-safe alphabet: add --url"
                    } else {
                        "looks like the standard alphabet: drop --url"
                    };
                    write!(f, " ({hint})")?;
                }
            }
            DecodeErrorKind::DataAfterPadding => {
                f.write_str("base64 continues after the = padding (two encodings glued together?)")?
            }
            DecodeErrorKind::MisplacedPadding => f.write_str("= padding where none can be")?,
            DecodeErrorKind::Truncated => f.write_str(
                "the text ends one character into a 4-character group (a character is missing)",
            )?,
        }
        write!(
            f,
            " at line {}, column {} (byte offset {})",
            self.line, self.column, self.offset
        )
    }
}

impl std::error::Error for DecodeError {}

/// Decodes base64 (the `base64` crate), skipping ASCII whitespace anywhere and accepting
/// missing padding; unused low bits in the last character are ignored, as RFC 4648 §3.5
/// allows decoders to. Errors point at the offending byte of the original text.
pub fn decode(text: &[u8], alphabet: Alphabet) -> Result<Vec<u8>, DecodeError> {
    // The crate wants contiguous base64: strip whitespace, remembering where each kept byte
    // was, so an error can name the line and column the user sees.
    let mut kept = Vec::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len());
    for (i, &c) in text.iter().enumerate() {
        if !matches!(c, b'\n' | b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c') {
            kept.push(c);
            origin.push(i);
        }
    }
    let at = |kept_index: usize, kind: DecodeErrorKind| {
        let offset = origin.get(kept_index).copied().unwrap_or(text.len());
        let line_start = text[..offset]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let line = 1 + text[..offset].iter().filter(|&&b| b == b'\n').count();
        DecodeError {
            offset,
            line,
            column: offset - line_start + 1,
            kind,
        }
    };
    // Padding may only close the data: `=` followed by more data is two encodings glued.
    if let Some(first_pad) = kept.iter().position(|&c| c == b'=') {
        if let Some(extra) = kept[first_pad..].iter().position(|&c| c != b'=') {
            let idx = first_pad + extra;
            let c = kept[idx];
            let kind = if alphabet.contains(c) {
                DecodeErrorKind::DataAfterPadding
            } else {
                DecodeErrorKind::InvalidByte {
                    byte: c,
                    other_alphabet: alphabet.other().contains(c),
                }
            };
            return Err(at(idx, kind));
        }
        let data = first_pad;
        let pads = kept.len() - first_pad;
        if data % 4 < 2 || data % 4 + pads > 4 {
            return Err(at(
                first_pad + (if data % 4 < 2 { 0 } else { 4 - data % 4 }),
                DecodeErrorKind::MisplacedPadding,
            ));
        }
    }
    alphabet.engine(true).decode(&kept).map_err(|e| match e {
        base64::DecodeError::InvalidByte(idx, byte) => at(
            idx,
            if byte == b'=' {
                DecodeErrorKind::MisplacedPadding
            } else {
                DecodeErrorKind::InvalidByte {
                    byte,
                    other_alphabet: alphabet.other().contains(byte),
                }
            },
        ),
        base64::DecodeError::InvalidLength(_) => {
            let last = kept.len().saturating_sub(1);
            let mut err = at(last, DecodeErrorKind::Truncated);
            // Point just past the last character, where one is missing.
            err.offset += 1;
            err.column += 1;
            err
        }
        base64::DecodeError::InvalidLastSymbol { offset, .. } => {
            at(offset, DecodeErrorKind::MisplacedPadding)
        }
        base64::DecodeError::InvalidPadding => at(
            kept.len().saturating_sub(1),
            DecodeErrorKind::MisplacedPadding,
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rfc_4648_vectors() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in vectors {
            assert_eq!(encode(plain, Alphabet::Standard, true), coded);
            assert_eq!(decode(coded.as_bytes(), Alphabet::Standard).unwrap(), plain);
            let bare = coded.trim_end_matches('=');
            assert_eq!(encode(plain, Alphabet::Standard, false), bare);
            assert_eq!(decode(bare.as_bytes(), Alphabet::Standard).unwrap(), plain);
        }
    }

    #[test]
    fn alphabets() {
        let bytes = [0xfb, 0xff, 0xbf];
        assert_eq!(encode(&bytes, Alphabet::Standard, true), "+/+/");
        assert_eq!(encode(&bytes, Alphabet::UrlSafe, true), "-_-_");
        assert_eq!(decode(b"-_-_", Alphabet::UrlSafe).unwrap(), bytes);
        let e = decode(b"-_-_", Alphabet::Standard).unwrap_err();
        assert!(e.to_string().contains("add --url"), "{e}");
        let e = decode(b"+/+/", Alphabet::UrlSafe).unwrap_err();
        assert!(e.to_string().contains("drop --url"), "{e}");
    }

    #[test]
    fn whitespace_and_positions() {
        assert_eq!(
            decode(b" Zm9v\r\nYmFy \n\t", Alphabet::Standard).unwrap(),
            b"foobar"
        );
        let e = decode(b"Zm9v\nYm!y", Alphabet::Standard).unwrap_err();
        assert_eq!((e.line, e.column, e.offset), (2, 3, 7));
        assert_eq!(
            e.to_string(),
            "invalid base64 character '!' (0x21) at line 2, column 3 (byte offset 7)"
        );
        let e = decode(b"Zg==Zg==", Alphabet::Standard).unwrap_err();
        assert_eq!((e.kind, e.offset), (DecodeErrorKind::DataAfterPadding, 4));
        for bad in ["=", "Z=", "Zg===", "Zm9v="] {
            assert_eq!(
                decode(bad.as_bytes(), Alphabet::Standard).unwrap_err().kind,
                DecodeErrorKind::MisplacedPadding,
                "{bad}"
            );
        }
        let e = decode(b"Zm9vY\n", Alphabet::Standard).unwrap_err();
        assert_eq!(
            (e.kind, e.line, e.column),
            (DecodeErrorKind::Truncated, 1, 6)
        );
        let e = decode(b"\xff", Alphabet::Standard).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid base64 character byte 0xff")
        );
    }

    #[test]
    fn every_length_and_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            for alphabet in [Alphabet::Standard, Alphabet::UrlSafe] {
                for pad in [true, false] {
                    let text = encode(&all[..len], alphabet, pad);
                    assert_eq!(decode(text.as_bytes(), alphabet).unwrap(), &all[..len]);
                }
            }
        }
    }
}
