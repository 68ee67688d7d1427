//! SMTP replies (RFC 5321 §4.2): multiline framing, reply codes, enhanced status codes
//! (RFC 3463 / RFC 2034). The decoder frames first (finds line ends with a hard limit), then
//! parses; deviations become findings and parsing continues where the meaning is still clear.

use std::fmt;

use thiserror::Error;

use crate::finding::{
    Finding, SMTP_REPLY_CODE_MISMATCH, SMTP_REPLY_ENHANCED_CODE_MISMATCH, SMTP_REPLY_MISSING_CRLF,
    SMTP_REPLY_SYNTAX, SMTP_REPLY_TOO_LONG,
};
use crate::transcript::Direction;

/// Result of a decoder: a complete value and how many bytes it used, or a need for more bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A value was decoded from the first `consumed` bytes.
    Complete {
        /// The value.
        value: T,
        /// Bytes of input used.
        consumed: usize,
    },
    /// More input is needed; nothing is wrong yet.
    Incomplete,
}

/// Limits on what a server may send. Defaults are generous: RFC 5321's 512-octet reply line
/// is only a finding, the hard limits stop a hostile or broken peer from eating memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest reply line accepted, line end included.
    pub max_line: usize,
    /// Most lines in one multiline reply.
    pub max_lines: usize,
    /// Most bytes a server may send in one session (a reply stream is small; anything near
    /// this is a broken or hostile peer).
    pub max_session_bytes: u64,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            max_line: 16 * 1024,
            max_lines: 1000,
            max_session_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Errors that stop reply decoding (the session cannot go on).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ReplyError {
    /// A line grew past [`ReplyLimits::max_line`] without a line end.
    #[error("reply line longer than {limit} octets without a line end")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// A multiline reply went on past [`ReplyLimits::max_lines`].
    #[error("multiline reply with more than {limit} lines")]
    TooManyLines {
        /// The limit.
        limit: usize,
    },
}

/// An enhanced mail system status code, `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// Subject, 0–999.
    pub subject: u16,
    /// Detail, 0–999.
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl EnhancedCode {
    /// Parses `class.subject.detail` at the start of `text`; returns the code and its length.
    pub fn parse_prefix(text: &[u8]) -> Option<(EnhancedCode, usize)> {
        let end = text
            .iter()
            .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .unwrap_or(text.len());
        let word = std::str::from_utf8(&text[..end]).ok()?;
        let mut parts = word.split('.');
        let (c, s, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || c.len() != 1
            || !(1..=3).contains(&s.len())
            || !(1..=3).contains(&d.len())
        {
            return None;
        }
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(c) || !all_digits(s) || !all_digits(d) {
            return None;
        }
        let class = c.parse().ok()?;
        if !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some((
            EnhancedCode {
                class,
                subject: s.parse().ok()?,
                detail: d.parse().ok()?,
            },
            end,
        ))
    }
}

/// How a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// CRLF, as required.
    CrLf,
    /// A bare LF.
    Lf,
}

/// One line of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    /// The reply code this line carried (may differ from the reply's: a finding).
    pub code: u16,
    /// The text after the code and separator, without the line end.
    pub text: Vec<u8>,
    /// Offset of the line within the decoded input.
    pub offset: usize,
    /// How the line ended.
    pub ending: LineEnding,
}

/// A complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply code of the first line.
    pub code: u16,
    /// The enhanced status code of the first line, if it carries one.
    pub enhanced: Option<EnhancedCode>,
    /// Every line.
    pub lines: Vec<ReplyLine>,
}

impl Reply {
    /// First digit of the code: 2 positive, 3 intermediate, 4 transient, 5 permanent.
    pub fn class(&self) -> u8 {
        (self.code / 100) as u8
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        self.class() == 2
    }

    /// The text of all lines joined with a space, lossily decoded, enhanced code included.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&String::from_utf8_lossy(&l.text));
        }
        s
    }

    /// `code text` of the first line, for one-line summaries.
    pub fn summary(&self) -> String {
        let first = self
            .lines
            .first()
            .map(|l| String::from_utf8_lossy(&l.text).into_owned())
            .unwrap_or_default();
        if self.lines.len() > 1 {
            format!("{} {} (+{} lines)", self.code, first, self.lines.len() - 1)
        } else {
            format!("{} {}", self.code, first)
        }
    }
}

/// A decoded reply and the findings about how it was written. Finding offsets are relative
/// to the start of the input given to [`decode_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedReply {
    /// The reply.
    pub reply: Reply,
    /// Deviations seen while decoding.
    pub findings: Vec<Finding>,
    /// Lines that were not reply lines at all (skipped), with their offsets.
    pub garbage: Vec<(usize, Vec<u8>)>,
}

/// Decodes one reply from the start of `input`.
///
/// Lines that do not start with three digits are skipped with a `smtp.reply.syntax` finding
/// (a broken server can still be diagnosed). Bare LF line ends are accepted with a finding.
pub fn decode_reply(
    input: &[u8],
    limits: &ReplyLimits,
) -> Result<Decoded<DecodedReply>, ReplyError> {
    let mut pos = 0;
    let mut lines: Vec<ReplyLine> = Vec::new();
    let mut findings = Vec::new();
    let mut garbage = Vec::new();
    loop {
        let rest = &input[pos..];
        let Some(lf) = rest.iter().take(limits.max_line).position(|&b| b == b'\n') else {
            if rest.len() >= limits.max_line {
                return Err(ReplyError::LineTooLong {
                    limit: limits.max_line,
                });
            }
            return Ok(Decoded::Incomplete);
        };
        let line_start = pos;
        let raw = &rest[..lf];
        pos += lf + 1;
        let (content, ending) = match raw.strip_suffix(b"\r") {
            Some(c) => (c, LineEnding::CrLf),
            None => (raw, LineEnding::Lf),
        };
        let finding_at = |f: Finding| f.at(Direction::ServerToClient, line_start as u64);
        if lf + 1 > 512 {
            findings.push(finding_at(Finding::new(
                SMTP_REPLY_TOO_LONG,
                format!("{} octets", lf + 1),
            )));
        }
        let parsed = parse_line(content);
        let Some((code, last, text)) = parsed else {
            findings.push(finding_at(Finding::new(
                SMTP_REPLY_SYNTAX,
                format!(
                    "not a reply line: {:?}",
                    crate::escape::escape(&content[..content.len().min(80)])
                ),
            )));
            garbage.push((line_start, raw.to_vec()));
            if lines.is_empty() {
                // Nothing of a reply yet: hand the garbage line back on its own, consumed, so
                // a peer that streams junk is dealt with line by line (never re-scanned).
                return Ok(Decoded::Complete {
                    value: DecodedReply {
                        reply: Reply {
                            code: 0,
                            enhanced: None,
                            lines,
                        },
                        findings,
                        garbage,
                    },
                    consumed: pos,
                });
            }
            if lines.len() + garbage.len() >= limits.max_lines {
                return Err(ReplyError::TooManyLines {
                    limit: limits.max_lines,
                });
            }
            continue;
        };
        if ending == LineEnding::Lf {
            findings.push(finding_at(Finding::new(
                SMTP_REPLY_MISSING_CRLF,
                format!("reply line {code} ends in a bare LF"),
            )));
        }
        if let Some(first) = lines.first().filter(|f| f.code != code) {
            findings.push(finding_at(Finding::new(
                SMTP_REPLY_CODE_MISMATCH,
                format!(
                    "line {} carries {} in a {} reply",
                    lines.len() + 1,
                    code,
                    first.code
                ),
            )));
        }
        lines.push(ReplyLine {
            code,
            text: text.to_vec(),
            offset: line_start,
            ending,
        });
        if last {
            break;
        }
        if lines.len() >= limits.max_lines {
            return Err(ReplyError::TooManyLines {
                limit: limits.max_lines,
            });
        }
    }
    let code = lines[0].code;
    let enhanced = EnhancedCode::parse_prefix(&lines[0].text).map(|(e, _)| e);
    if let Some(e) = enhanced.filter(|e| u16::from(e.class) != code / 100) {
        findings.push(
            Finding::new(
                SMTP_REPLY_ENHANCED_CODE_MISMATCH,
                format!("reply code {code} with enhanced status code {e}"),
            )
            .at(Direction::ServerToClient, lines[0].offset as u64),
        );
    }
    Ok(Decoded::Complete {
        value: DecodedReply {
            reply: Reply {
                code,
                enhanced,
                lines,
            },
            findings,
            garbage,
        },
        consumed: pos,
    })
}

/// `NNN[ -]text` or `NNN` → (code, is-last, text).
fn parse_line(content: &[u8]) -> Option<(u16, bool, &[u8])> {
    if content.len() < 3 || !content[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !(b'2'..=b'5').contains(&content[0]) {
        return None;
    }
    let code = u16::from(content[0] - b'0') * 100
        + u16::from(content[1] - b'0') * 10
        + u16::from(content[2] - b'0');
    match content.get(3) {
        None => Some((code, true, &[])),
        Some(b' ') => Some((code, true, &content[4..])),
        Some(b'-') => Some((code, false, &content[4..])),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> DecodedReply {
        match decode_reply(input, &ReplyLimits::default()) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(consumed, input.len());
                value
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn single_and_multiline() {
        let d = decode_all(b"250-mail.example.net Hello\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n");
        assert_eq!(d.reply.code, 250);
        assert_eq!(d.reply.lines.len(), 3);
        assert_eq!(d.reply.lines[2].text, b"8BITMIME");
        assert!(d.findings.is_empty());
        let d = decode_all(b"550 5.5.2 Error: bare <LF> received\r\n");
        assert_eq!(
            d.reply.enhanced,
            Some(EnhancedCode {
                class: 5,
                subject: 5,
                detail: 2
            })
        );
        assert_eq!(d.reply.summary(), "550 5.5.2 Error: bare <LF> received");
        let d = decode_all(b"250\r\n");
        assert_eq!(d.reply.lines[0].text, b"");
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let l = ReplyLimits::default();
        assert_eq!(decode_reply(b"250-a\r\n250 b", &l), Ok(Decoded::Incomplete));
        assert_eq!(decode_reply(b"", &l), Ok(Decoded::Incomplete));
        assert_eq!(decode_reply(b"25", &l), Ok(Decoded::Incomplete));
    }

    #[test]
    fn deviations_are_findings() {
        let d = decode_all(b"250-a\n251 b\r\n");
        let ids: Vec<_> = d.findings.iter().map(|f| (f.kind.id, f.offset)).collect();
        assert_eq!(
            ids,
            vec![
                ("smtp.reply.missing-crlf", Some(0)),
                ("smtp.reply.code-mismatch", Some(6))
            ]
        );
        let d = decode_all(b"250 4.7.1 odd\r\n");
        assert_eq!(d.findings[0].kind.id, "smtp.reply.enhanced-code-mismatch");
        // A junk line before any reply comes back alone, consumed, with its finding.
        let input = b"hello there\r\n220 ok\r\n";
        match decode_reply(input, &ReplyLimits::default()) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(consumed, 13);
                assert!(value.reply.lines.is_empty());
                assert_eq!(value.findings[0].kind.id, "smtp.reply.syntax");
            }
            other => panic!("{other:?}"),
        }
        // Inside a multiline reply it is skipped and the reply goes on.
        let d = decode_all(b"250-a\r\njunk\r\n250 b\r\n");
        assert_eq!(d.reply.lines.len(), 2);
        assert_eq!(d.garbage.len(), 1);
    }

    #[test]
    fn limits() {
        let l = ReplyLimits {
            max_line: 16,
            max_lines: 2,
            ..ReplyLimits::default()
        };
        assert_eq!(
            decode_reply(&[b'2'; 40], &l),
            Err(ReplyError::LineTooLong { limit: 16 })
        );
        assert_eq!(
            decode_reply(b"250-a\r\n250-b\r\n250 c\r\n", &l),
            Err(ReplyError::TooManyLines { limit: 2 })
        );
    }

    #[test]
    fn enhanced_code_parsing() {
        assert_eq!(
            EnhancedCode::parse_prefix(b"2.0.0 Ok"),
            Some((
                EnhancedCode {
                    class: 2,
                    subject: 0,
                    detail: 0
                },
                5
            ))
        );
        assert_eq!(
            EnhancedCode::parse_prefix(b"5.7.26 x").map(|e| e.0.to_string()),
            Some("5.7.26".into())
        );
        assert_eq!(EnhancedCode::parse_prefix(b"3.0.0 x"), None);
        assert_eq!(EnhancedCode::parse_prefix(b"2.0 x"), None);
        assert_eq!(EnhancedCode::parse_prefix(b"2.0.0.1 x"), None);
        assert_eq!(EnhancedCode::parse_prefix(b"mail.example.net"), None);
    }
}
