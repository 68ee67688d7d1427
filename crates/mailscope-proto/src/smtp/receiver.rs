//! Receiving message content: the DATA receiver (RFC 5321 §4.5.2, §4.1.1.4) and the BDAT
//! chunk receiver (RFC 3030), both writing into a [`MessageBuffer`].
//!
//! The DATA receiver ends the message **only** at `<CRLF>.<CRLF>` (or `.<CRLF>` as the very
//! first line), removes the first dot of every other line that starts with one, and reports
//! every sequence another server might take as the end of data — `\n.\n`, `\r.\r`,
//! `\n.\r\n`, `\r\n.\n`, `\r.\r\n`, `\n.\r`, `\r\n.\r` and the like — as an
//! `smtp.data.smuggling` finding, without ending the message there. Line-level lints (bare
//! LF, bare CR, NUL, long lines, 8-bit without BODY=8BITMIME) are the shared
//! [`lint_data`](crate::smtp::data::lint_data), run over the received content with offsets
//! mapped back to the client's byte stream.
//!
//! Both receivers take bytes as they come, cut anywhere; the result does not depend on where.

use crate::finding::{
    Finding, MESSAGE_MISSING_DATE, MESSAGE_MISSING_FROM, MESSAGE_MISSING_MESSAGE_ID,
    SMTP_DATA_SMUGGLING, SMTP_DATA_UNSTUFFED_DOT,
};
use crate::smtp::data::{MAX_FINDINGS_PER_KIND, lint_data};
use crate::transcript::Direction;

/// How the server treats a bare LF in DATA, imitating strict servers so a sender can be
/// tested against them without having one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strict {
    /// Accept it (with a finding), as most servers do.
    #[default]
    Off,
    /// Stock qmail-smtpd: at the first bare LF answer
    /// `451 See http://pobox.com/~djb/docs/smtplf.html.` and close.
    Qmail,
    /// Postfix with `smtpd_forbid_bare_newline`: read to the end of data, then answer
    /// `550 5.5.2 Error: bare <LF> received`.
    Postfix,
    /// Close the connection in the middle of DATA without a word at the first bare LF (the
    /// crashing server of seed 000).
    Drop,
}

impl Strict {
    /// The name used by `--strict`.
    pub fn name(self) -> &'static str {
        match self {
            Strict::Off => "off",
            Strict::Qmail => "qmail",
            Strict::Postfix => "postfix",
            Strict::Drop => "drop",
        }
    }

    /// Parses a `--strict` value.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "off" | "none" => Strict::Off,
            "qmail" => Strict::Qmail,
            "postfix" => Strict::Postfix,
            "drop" => Strict::Drop,
            _ => return None,
        })
    }

    /// Whether the receiver must stop at the first bare LF.
    pub fn stops_at_bare_lf(self) -> bool {
        matches!(self, Strict::Qmail | Strict::Drop)
    }
}

/// Message content as it arrives, with a size limit and a map from content positions back to
/// offsets in the client's byte stream (dot-unstuffing and BDAT command lines make the two
/// differ).
#[derive(Debug, Clone)]
pub struct MessageBuffer {
    content: Vec<u8>,
    size: u64,
    max_size: u64,
    overflow: bool,
    /// `(content position, stream offset)` at every discontinuity, ascending.
    map: Vec<(usize, u64)>,
    first_offset: Option<u64>,
}

impl MessageBuffer {
    /// An empty buffer that stores at most `max_size` octets of content.
    pub fn new(max_size: u64) -> Self {
        Self {
            content: Vec::new(),
            size: 0,
            max_size,
            overflow: false,
            map: Vec::new(),
            first_offset: None,
        }
    }

    /// Appends content that crossed at stream offset `offset`.
    pub fn push(&mut self, bytes: &[u8], offset: u64) {
        if bytes.is_empty() {
            return;
        }
        self.first_offset.get_or_insert(offset);
        self.size += bytes.len() as u64;
        if self.overflow {
            return;
        }
        if self.size > self.max_size {
            // Over the limit: keep reading to the end, stop storing.
            self.overflow = true;
            return;
        }
        let pos = self.content.len();
        let expected = self.map.last().map(|&(p, o)| o + (pos - p) as u64);
        if expected != Some(offset) {
            self.map.push((pos, offset));
        }
        self.content.extend_from_slice(bytes);
    }

    /// Octets of content received so far (stored or not).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the size limit was passed.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The stream offset of content position `pos` (as far as it was stored).
    pub fn stream_offset(&self, pos: usize) -> Option<u64> {
        let i = self.map.partition_point(|&(p, _)| p <= pos);
        let (p, o) = *self.map.get(i.checked_sub(1)?)?;
        Some(o + (pos - p) as u64)
    }

    /// Ends the message: runs the line lints over the stored content (unless `lint` is off,
    /// for BINARYMIME) and hands everything over. `findings` are the receiver's own.
    pub fn finish(
        self,
        mut findings: Vec<Finding>,
        eight_bit_declared: bool,
        lint: bool,
        first_bare_lf: Option<u64>,
    ) -> ReceivedData {
        if lint {
            for mut f in lint_data(
                &self.content,
                0,
                Direction::ClientToServer,
                eight_bit_declared,
            ) {
                // Dot-stuffing is judged on the wire by the DATA receiver; in the unstuffed
                // content a leading dot is ordinary text.
                if f.kind == SMTP_DATA_UNSTUFFED_DOT {
                    continue;
                }
                f.offset = f
                    .offset
                    .and_then(|o| usize::try_from(o).ok())
                    .and_then(|p| self.stream_offset(p));
                findings.push(f);
            }
        }
        ReceivedData {
            content_offset: self.first_offset,
            size: self.size,
            overflow: self.overflow,
            content: self.content,
            first_bare_lf,
            findings,
        }
    }
}

/// A finished message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedData {
    /// The content, exactly (after dot-unstuffing for DATA); only the stored part if the
    /// size limit was passed.
    pub content: Vec<u8>,
    /// Stream offset of the first content octet (`None` for empty content).
    pub content_offset: Option<u64>,
    /// Octets of content received, stored or not.
    pub size: u64,
    /// Whether the size limit was passed (the message must be refused with 552 5.3.4).
    pub overflow: bool,
    /// Stream offset of the first bare LF, if any (for `Strict::Postfix`).
    pub first_bare_lf: Option<u64>,
    /// Findings with stream offsets.
    pub findings: Vec<Finding>,
}

/// Where the loose line-end tracker stands: what ended the previous "line" in the widest
/// sense (CRLF, LF or CR), so a dot after it can be recognised as an end-of-data lookalike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eol {
    /// The start of the data.
    Start,
    CrLf,
    Lf,
    Cr,
}

impl Eol {
    /// A real line start, where a dot is the terminator or stuffing.
    fn strict(self) -> bool {
        matches!(self, Eol::Start | Eol::CrLf)
    }

    fn text(self) -> &'static str {
        match self {
            Eol::Start => "",
            Eol::CrLf => "\\r\\n",
            Eol::Lf => "\\n",
            Eol::Cr => "\\r",
        }
    }

    fn len(self) -> u64 {
        match self {
            Eol::Start => 0,
            Eol::CrLf => 2,
            Eol::Lf | Eol::Cr => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Inside a line.
    Mid,
    /// After a CR that may start a CRLF.
    PendCr,
    /// Right after a line end of some kind.
    Eol(Eol),
    /// After a dot that followed a line end. At a real line start the dot is withheld.
    Dot(Eol),
    /// After dot and CR. At a real line start both are withheld.
    DotCr(Eol),
}

/// What [`DataReceiver::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// Everything was consumed; the message goes on.
    NeedMore,
    /// The end of data: the first `consumed` bytes of the input belong to the message,
    /// terminator included. The rest is the next command.
    Complete {
        /// Bytes of this input used.
        consumed: usize,
    },
    /// A bare LF while [`Strict::stops_at_bare_lf`]: `consumed` bytes up to and including
    /// it were used. The caller answers (or not) and closes.
    BareLf {
        /// Bytes of this input used.
        consumed: usize,
        /// Stream offset of the LF.
        offset: u64,
    },
}

/// The DATA receiver: frames the content after the 354 reply exactly as RFC 5321 says.
#[derive(Debug, Clone)]
pub struct DataReceiver {
    buf: MessageBuffer,
    start: u64,
    scan: Scan,
    /// Stream offset of the next byte fed.
    offset: u64,
    /// Stream offset of the pending dot (in `Dot`/`DotCr`).
    dot_at: u64,
    stop_at_bare_lf: bool,
    first_bare_lf: Option<u64>,
    smuggling: Vec<Finding>,
    smuggling_total: usize,
    unstuffed: Vec<Finding>,
    unstuffed_total: usize,
    line: usize,
    done: bool,
}

impl DataReceiver {
    /// A receiver for content starting at stream offset `offset`, storing at most `max_size`
    /// octets, stopping at the first bare LF if `strict` says so.
    pub fn new(offset: u64, max_size: u64, strict: Strict) -> Self {
        Self {
            buf: MessageBuffer::new(max_size),
            start: offset,
            scan: Scan::Eol(Eol::Start),
            offset,
            dot_at: 0,
            stop_at_bare_lf: strict.stops_at_bare_lf(),
            first_bare_lf: None,
            smuggling: Vec::new(),
            smuggling_total: 0,
            unstuffed: Vec::new(),
            unstuffed_total: 0,
            line: 1,
            done: false,
        }
    }

    /// Stream offset of the first byte after the 354 reply (where the content starts).
    pub fn start_offset(&self) -> u64 {
        self.start
    }

    /// Octets of content so far.
    pub fn size(&self) -> u64 {
        self.buf.size()
    }

    /// Feeds bytes; see [`DataProgress`]. After `Complete` or `BareLf`, feeding does nothing.
    pub fn feed(&mut self, input: &[u8]) -> DataProgress {
        if self.done {
            return DataProgress::Complete { consumed: 0 };
        }
        let mut i = 0;
        // Content bytes not yet pushed: input[run_start..i] is a contiguous run.
        let mut run_start = 0;
        let base = self.offset;
        macro_rules! flush {
            ($end:expr) => {{
                let end = $end;
                if end > run_start {
                    self.buf
                        .push(&input[run_start..end], base + run_start as u64);
                }
            }};
        }
        while i < input.len() {
            let b = input[i];
            let at = base + i as u64;
            match self.scan {
                Scan::Mid => {
                    // Fast path: the rest of the line is plain content.
                    match input[i..].iter().position(|&c| c == b'\r' || c == b'\n') {
                        None => {
                            i = input.len();
                            continue;
                        }
                        Some(n) => {
                            i += n;
                            if input[i] == b'\r' {
                                self.scan = Scan::PendCr;
                            } else {
                                self.line += 1;
                                self.scan = Scan::Eol(Eol::Lf);
                                if let Some(p) = self.bare_lf(base + i as u64) {
                                    flush!(i + 1);
                                    return self.stop(p, i + 1);
                                }
                            }
                            i += 1;
                            continue;
                        }
                    }
                }
                Scan::PendCr => match b {
                    b'\n' => {
                        self.line += 1;
                        self.scan = Scan::Eol(Eol::CrLf);
                    }
                    b'\r' => self.scan = Scan::PendCr,
                    b'.' => {
                        self.dot_at = at;
                        self.scan = Scan::Dot(Eol::Cr);
                    }
                    _ => self.scan = Scan::Mid,
                },
                Scan::Eol(e) => match b {
                    b'.' => {
                        self.dot_at = at;
                        if e.strict() {
                            // Withheld: the terminator or a stuffing dot.
                            flush!(i);
                            run_start = i + 1;
                        }
                        self.scan = Scan::Dot(e);
                    }
                    b'\r' => self.scan = Scan::PendCr,
                    b'\n' => {
                        self.line += 1;
                        self.scan = Scan::Eol(Eol::Lf);
                        if let Some(p) = self.bare_lf(at) {
                            flush!(i + 1);
                            return self.stop(p, i + 1);
                        }
                    }
                    _ => self.scan = Scan::Mid,
                },
                Scan::Dot(e) => match b {
                    b'\r' => {
                        if e.strict() {
                            // Withheld too: `.\r\n` here ends the data.
                            run_start = i + 1;
                        }
                        self.scan = Scan::DotCr(e);
                    }
                    b'\n' => {
                        self.lookalike(e, "\\n");
                        self.line += 1;
                        self.scan = Scan::Eol(Eol::Lf);
                        if let Some(p) = self.bare_lf(at) {
                            flush!(i + 1);
                            return self.stop(p, i + 1);
                        }
                    }
                    _ => {
                        if e.strict() && b != b'.' {
                            self.unstuffed_dot();
                        }
                        self.scan = Scan::Mid;
                        // b is plain content: the fast path takes it with the rest.
                        continue;
                    }
                },
                Scan::DotCr(e) => {
                    if b == b'\n' {
                        if e.strict() {
                            flush!(run_start);
                            self.done = true;
                            self.offset = at + 1;
                            return DataProgress::Complete { consumed: i + 1 };
                        }
                        self.lookalike(e, "\\r\\n");
                        self.line += 1;
                        self.scan = Scan::Eol(Eol::CrLf);
                    } else {
                        self.lookalike(e, "\\r");
                        if e.strict() {
                            // The dot was a (bare-CR) line's stuffing dot; the CR is content.
                            self.buf.push(b"\r", at - 1);
                            run_start = i;
                        }
                        // The CR was a loose line end; look at b from there.
                        self.scan = Scan::PendCr;
                        continue;
                    }
                }
            }
            i += 1;
        }
        // Bytes withheld at a real line start stay out of the run until resolved.
        let end = match self.scan {
            Scan::Dot(e) | Scan::DotCr(e) if e.strict() => run_start.min(input.len()),
            _ => input.len(),
        };
        flush!(end);
        self.offset = base + input.len() as u64;
        DataProgress::NeedMore
    }

    fn bare_lf(&mut self, offset: u64) -> Option<u64> {
        self.first_bare_lf.get_or_insert(offset);
        self.stop_at_bare_lf.then_some(offset)
    }

    fn stop(&mut self, offset: u64, consumed: usize) -> DataProgress {
        self.done = true;
        self.offset += consumed as u64;
        DataProgress::BareLf { consumed, offset }
    }

    fn lookalike(&mut self, prefix: Eol, suffix: &str) {
        self.smuggling_total += 1;
        if self.smuggling.len() < MAX_FINDINGS_PER_KIND {
            let start = self.dot_at - prefix.len();
            let at_start = if prefix == Eol::Start {
                " at the start of the data"
            } else {
                ""
            };
            let seq = format!("{}.{suffix}", prefix.text());
            self.smuggling.push(
                Finding::new(
                    SMTP_DATA_SMUGGLING,
                    format!(
                        "{seq}{at_start} (line {}): some servers end the data here; it is message text",
                        self.line
                    ),
                )
                .at(Direction::ClientToServer, start),
            );
        }
    }

    fn unstuffed_dot(&mut self) {
        self.unstuffed_total += 1;
        if self.unstuffed.len() < MAX_FINDINGS_PER_KIND {
            self.unstuffed.push(
                Finding::new(
                    SMTP_DATA_UNSTUFFED_DOT,
                    format!(
                        "line {} starts with a single dot, which the server removes (the client did not dot-stuff)",
                        self.line
                    ),
                )
                .at(Direction::ClientToServer, self.dot_at),
            );
        }
    }

    /// Whether the end of data (or a stopping bare LF) was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Ends the message (normally after `Complete`): lints and hands the content over.
    pub fn finish(mut self, eight_bit_declared: bool) -> ReceivedData {
        let mut findings = Vec::new();
        for (mut list, total, kind) in [
            (
                std::mem::take(&mut self.smuggling),
                self.smuggling_total,
                SMTP_DATA_SMUGGLING,
            ),
            (
                std::mem::take(&mut self.unstuffed),
                self.unstuffed_total,
                SMTP_DATA_UNSTUFFED_DOT,
            ),
        ] {
            if total > list.len() {
                let more = total - list.len();
                list.push(Finding::new(
                    kind,
                    format!("{more} more not listed ({total} in all)"),
                ));
            }
            findings.append(&mut list);
        }
        self.buf
            .finish(findings, eight_bit_declared, true, self.first_bare_lf)
    }
}

/// What [`BdatReceiver::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BdatProgress {
    /// Everything was consumed; more chunk bytes are due.
    NeedMore,
    /// The chunk is complete after `consumed` bytes of this input.
    Complete {
        /// Bytes of this input used.
        consumed: usize,
    },
}

/// One BDAT chunk: exactly `size` octets after the command line, no stuffing, no
/// terminator (RFC 3030 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BdatReceiver {
    remaining: u64,
    offset: u64,
}

impl BdatReceiver {
    /// A chunk of `size` octets starting at stream offset `offset`.
    pub fn new(size: u64, offset: u64) -> Self {
        Self {
            remaining: size,
            offset,
        }
    }

    /// Octets still due.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Feeds bytes into `buf` (or drops them if `buf` is `None`, for a refused chunk that
    /// must still be read).
    pub fn feed(&mut self, input: &[u8], buf: Option<&mut MessageBuffer>) -> BdatProgress {
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        if let Some(buf) = buf {
            buf.push(&input[..n], self.offset);
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        if self.remaining == 0 {
            BdatProgress::Complete { consumed: n }
        } else {
            BdatProgress::NeedMore
        }
    }
}

/// Checks the header block (up to the first empty line) for the fields RFC 5322 requires or
/// recommends: Date, From, Message-ID. Findings point at `offset` (the content's start).
pub fn lint_headers(content: &[u8], offset: Option<u64>) -> Vec<Finding> {
    let (mut date, mut from, mut message_id) = (false, false, false);
    for line in content.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue; // folded continuation
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            break; // not a header field: the header block ended without an empty line
        };
        let name = line[..colon].trim_ascii_end();
        date |= name.eq_ignore_ascii_case(b"Date");
        from |= name.eq_ignore_ascii_case(b"From");
        message_id |= name.eq_ignore_ascii_case(b"Message-ID");
    }
    let mut out = Vec::new();
    for (present, kind, name) in [
        (date, MESSAGE_MISSING_DATE, "Date"),
        (from, MESSAGE_MISSING_FROM, "From"),
        (message_id, MESSAGE_MISSING_MESSAGE_ID, "Message-ID"),
    ] {
        if !present {
            let f = Finding::new(kind, format!("no {name}: field in the header"));
            out.push(match offset {
                Some(o) => f.at(Direction::ClientToServer, o),
                None => f,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `chunk`; returns the data, the bytes consumed in all, and
    /// whether it ended.
    fn receive(wire: &[u8], chunk: usize, strict: Strict) -> (ReceivedData, usize, DataProgress) {
        let mut r = DataReceiver::new(100, 1 << 20, strict);
        let mut used = 0;
        let mut last = DataProgress::NeedMore;
        for piece in wire.chunks(chunk.max(1)) {
            last = r.feed(piece);
            match last {
                DataProgress::NeedMore => used += piece.len(),
                DataProgress::Complete { consumed } | DataProgress::BareLf { consumed, .. } => {
                    used += consumed;
                    break;
                }
            }
        }
        (r.finish(false), used, last)
    }

    fn ids(d: &ReceivedData) -> Vec<(&'static str, Option<u64>)> {
        d.findings.iter().map(|f| (f.kind.id, f.offset)).collect()
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf_and_unstuffs() {
        let wire = b"Subject: x\r\n\r\n..dot\r\n...two\r\nend\r\n.\r\nQUIT\r\n";
        for chunk in [1, 2, 3, 5, 100] {
            let (d, used, last) = receive(wire, chunk, Strict::Off);
            assert!(matches!(last, DataProgress::Complete { .. }), "{chunk}");
            assert_eq!(used, wire.len() - 6, "{chunk}");
            assert_eq!(
                d.content, b"Subject: x\r\n\r\n.dot\r\n..two\r\nend\r\n",
                "{chunk}"
            );
            assert!(d.findings.is_empty(), "{:?}", d.findings);
            assert_eq!(d.content_offset, Some(100));
        }
        let (d, used, _) = receive(b".\r\n", 1, Strict::Off);
        assert_eq!((d.content.as_slice(), used), (&b""[..], 3));
        assert_eq!(d.content_offset, None);
    }

    #[test]
    fn every_smuggling_variant_is_reported_and_does_not_end_the_data() {
        let cases: [(&[u8], &str); 9] = [
            (b"a\n.\nb", "\\n.\\n"),
            (b"a\r.\rb", "\\r.\\r"),
            (b"a\n.\r\nb", "\\n.\\r\\n"),
            (b"a\r\n.\nb", "\\r\\n.\\n"),
            (b"a\r.\r\nb", "\\r.\\r\\n"),
            (b"a\n.\rb", "\\n.\\r"),
            (b"a\r\n.\rb", "\\r\\n.\\r"),
            (b"a\r.\nb", "\\r.\\n"),
            (b".\nb", ".\\n"),
        ];
        for (body, seq) in cases {
            let mut wire = body.to_vec();
            wire.extend_from_slice(b"\r\n.\r\n");
            for chunk in [1, 2, 3, 64] {
                let (d, used, last) = receive(&wire, chunk, Strict::Off);
                assert!(matches!(last, DataProgress::Complete { .. }));
                assert_eq!(used, wire.len(), "{seq} did not run to the real end");
                let smug: Vec<_> = d
                    .findings
                    .iter()
                    .filter(|f| f.kind.id == "smtp.data.smuggling")
                    .collect();
                assert_eq!(smug.len(), 1, "{seq} chunk {chunk}: {:?}", d.findings);
                assert!(smug[0].detail.starts_with(seq), "{seq}: {}", smug[0].detail);
                let start = if body.starts_with(b".") { 100 } else { 101 };
                assert_eq!(smug[0].offset, Some(start), "{seq}");
                assert!(d.content.ends_with(b"b\r\n"));
            }
        }
        // Text kept exactly where the dot is not at a real line start.
        let (d, _, _) = receive(b"a\n.\nb\r\n.\r\n", 1, Strict::Off);
        assert_eq!(d.content, b"a\n.\nb\r\n");
        // At a real line start the dot of a lookalike is a stuffing dot (removed).
        let (d, _, _) = receive(b"a\r\n.\nb\r\n.\r\n", 1, Strict::Off);
        assert_eq!(d.content, b"a\r\n\nb\r\n");
        let (d, _, _) = receive(b"a\r\n.\rb\r\n.\r\n", 1, Strict::Off);
        assert_eq!(d.content, b"a\r\n\rb\r\n");
    }

    #[test]
    fn unstuffed_dots_and_lints_point_at_wire_offsets() {
        let wire = b"x\r\n.y\r\n..z\nq\r\n.\r\n";
        let (d, _, _) = receive(wire, 1, Strict::Off);
        assert_eq!(d.content, b"x\r\ny\r\n.z\nq\r\n");
        assert_eq!(
            ids(&d),
            vec![
                ("smtp.data.unstuffed-dot", Some(103)),
                ("smtp.data.bare-lf", Some(110)),
            ]
        );
        assert_eq!(wire[10], b'\n');
        assert_eq!(d.first_bare_lf, Some(110));
    }

    #[test]
    fn strict_modes_stop_at_the_first_bare_lf() {
        for strict in [Strict::Qmail, Strict::Drop] {
            let (_, used, last) = receive(b"ab\ncd\r\n.\r\n", 1, strict);
            assert_eq!(
                last,
                DataProgress::BareLf {
                    consumed: 1,
                    offset: 102
                }
            );
            assert_eq!(used, 3);
        }
        let (d, _, last) = receive(b"ab\ncd\r\n.\r\n", 4, Strict::Postfix);
        assert!(matches!(last, DataProgress::Complete { .. }));
        assert_eq!(d.first_bare_lf, Some(102));
    }

    #[test]
    fn size_limit_stops_storing_but_reads_to_the_end() {
        let mut r = DataReceiver::new(0, 10, Strict::Off);
        let wire = b"0123456789abcdef\r\n.\r\nNOOP\r\n";
        assert_eq!(r.feed(wire), DataProgress::Complete { consumed: 21 });
        let d = r.finish(false);
        assert!(d.overflow);
        assert_eq!(d.size, 18);
        assert!(d.content.len() <= 10);
    }

    #[test]
    fn bdat_chunks_are_exact() {
        let mut buf = MessageBuffer::new(100);
        let mut c = BdatReceiver::new(5, 10);
        assert_eq!(c.feed(b"ab", Some(&mut buf)), BdatProgress::NeedMore);
        assert_eq!(
            c.feed(b"cdeBDAT", Some(&mut buf)),
            BdatProgress::Complete { consumed: 3 }
        );
        let mut c = BdatReceiver::new(3, 30);
        assert_eq!(
            c.feed(b"f\ng", Some(&mut buf)),
            BdatProgress::Complete { consumed: 3 }
        );
        let mut c = BdatReceiver::new(0, 40);
        assert_eq!(
            c.feed(b"", Some(&mut buf)),
            BdatProgress::Complete { consumed: 0 }
        );
        assert_eq!(buf.stream_offset(0), Some(10));
        assert_eq!(buf.stream_offset(5), Some(30));
        let d = buf.finish(Vec::new(), false, true, None);
        assert_eq!(d.content, b"abcdef\ng");
        assert_eq!(
            d.findings
                .iter()
                .map(|f| (f.kind.id, f.offset))
                .collect::<Vec<_>>(),
            vec![("smtp.data.bare-lf", Some(31))]
        );
    }

    #[test]
    fn header_lint() {
        let ok = b"From: a@b\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nDate: no\r\n";
        assert!(lint_headers(ok, Some(0)).is_empty());
        let f = lint_headers(b"Subject: x\r\n\r\nFrom: body\r\n", Some(7));
        let got: Vec<_> = f.iter().map(|f| (f.kind.id, f.offset)).collect();
        assert_eq!(
            got,
            vec![
                ("message.missing-date", Some(7)),
                ("message.missing-from", Some(7)),
                ("message.missing-message-id", Some(7)),
            ]
        );
        assert_eq!(lint_headers(b"", None).len(), 3);
    }
}
