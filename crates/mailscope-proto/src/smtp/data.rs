//! The DATA section (RFC 5321 §4.5.2, §2.3.8): preparing message bytes for sending —
//! normalised and dot-stuffed, or raw — and linting them as they cross.

use crate::finding::{
    Finding, SMTP_DATA_8BIT_WITHOUT_8BITMIME, SMTP_DATA_BARE_CR, SMTP_DATA_BARE_LF,
    SMTP_DATA_LINE_TOO_LONG, SMTP_DATA_NUL, SMTP_DATA_UNSTUFFED_DOT,
};
use crate::transcript::Direction;

/// How the end of data was marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminator {
    /// `\r\n.\r\n` was appended (the content did not end in CRLF).
    CrLfDotCrLf,
    /// `.\r\n` was appended (the content already ended in CRLF).
    DotCrLf,
}

impl Terminator {
    /// The bytes.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Terminator::CrLfDotCrLf => b"\r\n.\r\n",
            Terminator::DotCrLf => b".\r\n",
        }
    }
}

/// Message bytes ready for the DATA phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedData {
    /// Everything to send after the 354 reply, terminator included.
    pub bytes: Vec<u8>,
    /// Length of the content before the terminator.
    pub content_len: usize,
    /// The terminator that was appended.
    pub terminator: Terminator,
    /// Whether the content went out exactly as given.
    pub raw: bool,
}

impl PreparedData {
    /// The content part (without the terminator).
    pub fn content(&self) -> &[u8] {
        &self.bytes[..self.content_len]
    }

    /// The message without dot-stuffing: what BDAT sends (RFC 3030 has no stuffing) and what
    /// SIZE counts. A raw message is its content exactly as given; a normalised one loses the
    /// dot [`prepare_normalized`] doubled at the start of each line.
    pub fn unstuffed(&self) -> Vec<u8> {
        let content = self.content();
        if self.raw {
            return content.to_vec();
        }
        let mut out = Vec::with_capacity(content.len());
        let mut at_line_start = true;
        for (i, &b) in content.iter().enumerate() {
            // Only a doubled dot was stuffed; a lone one cannot occur in normalised content.
            let stuffed = at_line_start && b == b'.' && content.get(i + 1) == Some(&b'.');
            if !stuffed {
                out.push(b);
            }
            at_line_start = !stuffed && b == b'\n';
        }
        out
    }

    /// The message size as RFC 1870 §3 defines it for `SIZE=`: octets including CRLFs, without
    /// the terminating dot and without doubled (stuffing) dots.
    pub fn message_size(&self) -> usize {
        if self.raw {
            return self.content_len;
        }
        let content = self.content();
        let stuffed = content
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'.' && (i == 0 || content[i - 1] == b'\n'))
            .count();
        self.content_len - stuffed
    }
}

/// Normalises every line end (CRLF, bare LF, bare CR) to CRLF, doubles a leading dot on each
/// line, makes sure the content ends in CRLF and appends `.\r\n`.
pub fn prepare_normalized(message: &[u8]) -> PreparedData {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 8);
    let mut at_line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    let content_len = out.len();
    out.extend_from_slice(b".\r\n");
    PreparedData {
        bytes: out,
        content_len,
        terminator: Terminator::DotCrLf,
        raw: false,
    }
}

/// Keeps the bytes exactly (bare LFs and lone dots included) and appends `\r\n.\r\n`, or
/// only `.\r\n` if they already end in CRLF (seed 000: replaying captured bytes).
pub fn prepare_raw(message: &[u8]) -> PreparedData {
    let terminator = if message.ends_with(b"\r\n") {
        Terminator::DotCrLf
    } else {
        Terminator::CrLfDotCrLf
    };
    let mut bytes = Vec::with_capacity(message.len() + 5);
    bytes.extend_from_slice(message);
    bytes.extend_from_slice(terminator.bytes());
    PreparedData {
        bytes,
        content_len: message.len(),
        terminator,
        raw: true,
    }
}

/// Whether any octet is above 127.
pub fn has_8bit(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b >= 0x80)
}

/// At most this many findings of one kind are reported one by one; the rest are counted in a
/// final summary finding, so a 100 MB file of bare LFs stays readable.
pub const MAX_FINDINGS_PER_KIND: usize = 20;

/// Lints DATA content (without the terminator) as it crossed. `base` is the stream offset of
/// the content's first byte; `eight_bit_declared` says whether BODY=8BITMIME (or BINARYMIME)
/// was given and offered.
pub fn lint_data(
    content: &[u8],
    base: u64,
    direction: Direction,
    eight_bit_declared: bool,
) -> Vec<Finding> {
    let mut lf = Counter::new(SMTP_DATA_BARE_LF);
    let mut cr = Counter::new(SMTP_DATA_BARE_CR);
    let mut nul = Counter::new(SMTP_DATA_NUL);
    let mut long = Counter::new(SMTP_DATA_LINE_TOO_LONG);
    let mut dots = Counter::new(SMTP_DATA_UNSTUFFED_DOT);
    let mut first_8bit = None;
    let mut line_no = 1usize;
    let mut line_start = 0usize;
    let at = |i: usize| (direction, base + i as u64);
    for (i, &b) in content.iter().enumerate() {
        match b {
            b'\n' => {
                if i == 0 || content[i - 1] != b'\r' {
                    lf.add(at(i), || format!("bare LF ending line {line_no}"));
                }
                let len = i - line_start - usize::from(i > line_start && content[i - 1] == b'\r');
                if len > 998 {
                    long.add(at(line_start), || format!("line {line_no} is {len} octets"));
                }
                line_no += 1;
                line_start = i + 1;
            }
            b'\r' if content.get(i + 1) != Some(&b'\n') => {
                cr.add(at(i), || format!("bare CR in line {line_no}"))
            }
            0 => nul.add(at(i), || format!("NUL in line {line_no}")),
            // With a normalised send every leading dot is doubled, so only a single dot at
            // line start that is not followed by another dot is suspicious.
            b'.' if i == line_start && content.get(i + 1) != Some(&b'.') => {
                dots.add(at(i), || format!("line {line_no} starts with a single dot"));
            }
            0x80.. if first_8bit.is_none() => first_8bit = Some(i),
            _ => {}
        }
    }
    let tail = content.len() - line_start;
    if tail > 998 {
        long.add(at(line_start), || {
            format!("line {line_no} is {tail} octets")
        });
    }
    let mut out = Vec::new();
    for c in [lf, cr, nul, long, dots] {
        c.finish(&mut out);
    }
    if let (Some(i), false) = (first_8bit, eight_bit_declared) {
        out.push(
            Finding::new(
                SMTP_DATA_8BIT_WITHOUT_8BITMIME,
                "first octet above 127 here",
            )
            .at(direction, base + i as u64),
        );
    }
    out
}

struct Counter {
    kind: &'static crate::finding::FindingKind,
    findings: Vec<Finding>,
    total: usize,
}

impl Counter {
    fn new(kind: &'static crate::finding::FindingKind) -> Self {
        Self {
            kind,
            findings: Vec::new(),
            total: 0,
        }
    }

    fn add(&mut self, (direction, offset): (Direction, u64), detail: impl FnOnce() -> String) {
        self.total += 1;
        if self.findings.len() < MAX_FINDINGS_PER_KIND {
            self.findings
                .push(Finding::new(self.kind, detail()).at(direction, offset));
        }
    }

    fn finish(mut self, out: &mut Vec<Finding>) {
        if self.total > self.findings.len() {
            let more = self.total - self.findings.len();
            self.findings.push(Finding::new(
                self.kind,
                format!("{more} more not listed ({} in all)", self.total),
            ));
        }
        out.append(&mut self.findings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_dot_stuffs_and_fixes_line_ends() {
        let p = prepare_normalized(b"Subject: x\n\n.hidden\r\nlone\r.\nend");
        assert_eq!(
            p.bytes,
            b"Subject: x\r\n\r\n..hidden\r\nlone\r\n..\r\nend\r\n.\r\n"
        );
        assert_eq!(
            p.content(),
            b"Subject: x\r\n\r\n..hidden\r\nlone\r\n..\r\nend\r\n"
        );
        assert!(lint_data(p.content(), 0, Direction::ClientToServer, false).is_empty());
        assert_eq!(prepare_normalized(b"").bytes, b".\r\n");
        assert_eq!(prepare_normalized(b"a\r\n").bytes, b"a\r\n.\r\n");
    }

    #[test]
    fn unstuffed_inverts_dot_stuffing_and_sizes_follow_rfc_1870() {
        let original = b"Subject: x\r\n\r\n.hidden\r\n..two\r\n.\r\nend\r\n";
        let p = prepare_normalized(original);
        assert_eq!(
            p.content(),
            b"Subject: x\r\n\r\n..hidden\r\n...two\r\n..\r\nend\r\n"
        );
        assert_eq!(p.unstuffed(), original);
        assert_eq!(p.message_size(), original.len());
        assert_eq!(prepare_normalized(b"").message_size(), 0);
        let r = prepare_raw(b"a\n.\nb");
        assert_eq!(r.unstuffed(), b"a\n.\nb");
        assert_eq!(r.message_size(), 5);
    }

    #[test]
    fn raw_keeps_bytes_and_picks_terminator() {
        let p = prepare_raw(b"Subject: x\n\nbody\n.\nmore");
        assert_eq!(p.bytes, b"Subject: x\n\nbody\n.\nmore\r\n.\r\n");
        assert_eq!(p.terminator, Terminator::CrLfDotCrLf);
        let p = prepare_raw(b"a\r\n");
        assert_eq!(p.bytes, b"a\r\n.\r\n");
        assert_eq!(p.terminator, Terminator::DotCrLf);
    }

    #[test]
    fn lint_reports_each_deviation_at_its_offset() {
        let f = lint_data(
            b"Subject: x\n\nbody\r\n.\r\nx\ry\0\xe9",
            1000,
            Direction::ClientToServer,
            false,
        );
        let got: Vec<_> = f.iter().map(|f| (f.kind.id, f.offset)).collect();
        assert_eq!(
            got,
            vec![
                ("smtp.data.bare-lf", Some(1010)),
                ("smtp.data.bare-lf", Some(1011)),
                ("smtp.data.bare-cr", Some(1022)),
                ("smtp.data.nul", Some(1024)),
                ("smtp.data.unstuffed-dot", Some(1018)),
                ("smtp.data.8bit-without-8bitmime", Some(1025)),
            ]
        );
        assert!(lint_data(b"\xe9\r\n", 0, Direction::ClientToServer, true).is_empty());
    }

    #[test]
    fn long_lines_and_caps() {
        let mut m = vec![b'a'; 999];
        m.extend_from_slice(b"\r\nshort\r\n");
        let f = lint_data(&m, 0, Direction::ClientToServer, false);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind.id, "smtp.data.line-too-long");
        assert!(lint_data(&[b'a'; 998], 0, Direction::ClientToServer, false).is_empty());
        let many = b"x\n".repeat(100);
        let f = lint_data(&many, 0, Direction::ClientToServer, false);
        assert_eq!(f.len(), MAX_FINDINGS_PER_KIND + 1);
        assert!(
            f.last()
                .is_some_and(|f| f.detail.contains("80 more") && f.offset.is_none())
        );
    }
}
