//! The transcript: every byte each side sent, in order, with stream offsets, the caller's
//! timestamps and whether it crossed inside TLS. Rendering follows design.md: direction marks
//! by role, one escape grammar, secrets replaced at render time only (offsets keep pointing at
//! the real bytes).

use std::fmt;

use crate::escape::escape_into;

/// Which side sent some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// From the client (the side that connected) to the server.
    ClientToServer,
    /// From the server to the client.
    ServerToClient,
}

impl Direction {
    /// `"client"` or `"server"`: who sent the bytes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "server",
        }
    }

    const fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// A point in time supplied by the caller: microseconds since an epoch the caller chooses
/// (the drivers use the Unix epoch). The core never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Microseconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn micros_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A byte range of a chunk that is secret, and what to show instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// Start within the chunk's bytes.
    pub start: usize,
    /// End (exclusive) within the chunk's bytes.
    pub end: usize,
    /// Structure-keeping replacement, e.g. `<redacted: authcid="alice", 8-byte password>`.
    pub replacement: String,
}

/// Bytes that crossed in one direction at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Who sent them.
    pub direction: Direction,
    /// Offset of the first byte in this direction's stream (plaintext and TLS together:
    /// the application bytes, not TLS records).
    pub offset: u64,
    /// When they were sent or received.
    pub at: Timestamp,
    /// Whether they crossed inside TLS.
    pub tls: bool,
    /// The bytes, exactly.
    pub bytes: Vec<u8>,
    /// Secret ranges. Sorted, non-overlapping.
    pub redactions: Vec<Redaction>,
    /// When the bytes are not kept (message content stored elsewhere, or the transcript's
    /// cap reached): how many there were and why. `bytes` is then empty, and offsets still
    /// count them.
    pub elided: Option<(u64, String)>,
}

impl Chunk {
    /// How many bytes crossed in this chunk (kept or elided).
    pub fn len(&self) -> u64 {
        match &self.elided {
            Some((n, _)) => *n,
            None => self.bytes.len() as u64,
        }
    }

    /// Whether the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every byte of a session, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    chunks: Vec<Chunk>,
    next_offset: [u64; 2],
    /// Bytes kept in chunks (not elided).
    kept: u64,
    /// Most bytes to keep; later chunks are elided (length only). `None`: keep everything.
    keep_limit: Option<u64>,
    /// Whether the limit elided something.
    capped: bool,
}

impl Transcript {
    /// An empty transcript.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records bytes; returns the stream offset of their first byte.
    pub fn record(&mut self, direction: Direction, at: Timestamp, tls: bool, bytes: &[u8]) -> u64 {
        self.record_redacted(direction, at, tls, bytes, Vec::new())
    }

    /// Records bytes with secret ranges; returns the stream offset of their first byte.
    pub fn record_redacted(
        &mut self,
        direction: Direction,
        at: Timestamp,
        tls: bool,
        bytes: &[u8],
        mut redactions: Vec<Redaction>,
    ) -> u64 {
        let offset = self.next_offset[direction.index()];
        self.next_offset[direction.index()] += bytes.len() as u64;
        redactions.retain(|r| r.start <= r.end && r.end <= bytes.len());
        redactions.sort_by_key(|r| r.start);
        if bytes.is_empty() {
            return offset;
        }
        if self
            .keep_limit
            .is_some_and(|max| self.kept + bytes.len() as u64 > max)
        {
            self.capped = true;
            self.chunks.push(Chunk {
                direction,
                offset,
                at,
                tls,
                bytes: Vec::new(),
                redactions: Vec::new(),
                elided: Some((bytes.len() as u64, "transcript size limit reached".into())),
            });
            return offset;
        }
        self.kept += bytes.len() as u64;
        self.chunks.push(Chunk {
            direction,
            offset,
            at,
            tls,
            bytes: bytes.to_vec(),
            redactions,
            elided: None,
        });
        offset
    }

    /// Keeps at most `max` bytes; chunks after that are recorded by length only (a long or
    /// hostile session cannot eat memory through its transcript).
    pub fn set_keep_limit(&mut self, max: Option<u64>) {
        self.keep_limit = max;
    }

    /// Whether the keep limit elided any bytes.
    pub fn capped(&self) -> bool {
        self.capped
    }

    /// Bytes currently kept in memory.
    pub fn kept_bytes(&self) -> u64 {
        self.kept
    }

    /// Drops the bytes of `direction`'s stream in `start..end` (message content that is
    /// stored elsewhere), keeping offsets, lengths and `label` in their place. Chunks that
    /// straddle a boundary are split so bytes outside the range stay.
    pub fn elide(&mut self, direction: Direction, start: u64, end: u64, label: &str) {
        if start >= end {
            return;
        }
        // Chunks are in time order: everything before the last chunk of `direction` that ends
        // at or before `start` is untouched. Only the tail is rebuilt, so eliding each
        // message of a long session costs what the message costs, not the session.
        let keep_until = self
            .chunks
            .iter()
            .rposition(|c| c.direction == direction && c.offset + c.len() <= start)
            .map_or(0, |i| i + 1);
        let tail = self.chunks.split_off(keep_until);
        let mut out = Vec::with_capacity(tail.len() + 2);
        for c in tail {
            let (cs, ce) = (c.offset, c.offset + c.len());
            if c.direction != direction || c.elided.is_some() || ce <= start || cs >= end {
                out.push(c);
                continue;
            }
            let (from, to) = (start.max(cs), end.min(ce));
            let (a, b) = ((from - cs) as usize, (to - cs) as usize);
            let keep = |range: std::ops::Range<usize>, offset: u64| Chunk {
                direction: c.direction,
                offset,
                at: c.at,
                tls: c.tls,
                bytes: c.bytes[range.clone()].to_vec(),
                redactions: c
                    .redactions
                    .iter()
                    .filter(|r| r.start >= range.start && r.end <= range.end)
                    .map(|r| Redaction {
                        start: r.start - range.start,
                        end: r.end - range.start,
                        replacement: r.replacement.clone(),
                    })
                    .collect(),
                elided: None,
            };
            if a > 0 {
                out.push(keep(0..a, cs));
            }
            self.kept = self.kept.saturating_sub((b - a) as u64);
            out.push(Chunk {
                direction: c.direction,
                offset: from,
                at: c.at,
                tls: c.tls,
                bytes: Vec::new(),
                redactions: Vec::new(),
                elided: Some((to - from, label.to_string())),
            });
            if b < c.bytes.len() {
                out.push(keep(b..c.bytes.len(), to));
            }
        }
        // Neighbouring elided pieces of one range read better as one.
        let mut merged: Vec<Chunk> = Vec::with_capacity(out.len());
        for c in out {
            if let (Some(last), Some((n, l))) = (merged.last_mut(), &c.elided)
                && last.direction == c.direction
                && last.offset + last.len() == c.offset
                && last.elided.as_ref().is_some_and(|(_, ll)| ll == l)
            {
                if let Some((m, _)) = last.elided.as_mut() {
                    *m += n;
                }
                continue;
            }
            merged.push(c);
        }
        self.chunks.extend(merged);
    }

    /// The chunks, in the order they were recorded.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// How many bytes have crossed in `direction`.
    pub fn len(&self, direction: Direction) -> u64 {
        self.next_offset[direction.index()]
    }

    /// Whether nothing crossed at all.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// All bytes one side sent, concatenated (the stream that offsets refer to); elided
    /// ranges are missing, so offsets only match while nothing was elided.
    pub fn stream(&self, direction: Direction) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len(direction) as usize);
        for c in self.chunks.iter().filter(|c| c.direction == direction) {
            out.extend_from_slice(&c.bytes);
        }
        out
    }
}

/// Who is printing, which fixes the direction marks (design.md, "Output").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// mailscope is the client: ` -> ` for what it sent, `<-  ` for what it received.
    Client,
    /// mailscope is the server: ` -> ` for its replies, `<-  ` for the client's bytes.
    Server,
    /// mailscope watches (proxy, capture): `C: ` and `S: `.
    Observer,
}

/// The mark printed before a line.
pub fn direction_mark(role: Role, direction: Direction, tls: bool) -> &'static str {
    use Direction::*;
    match (role, direction, tls) {
        (Role::Client, ClientToServer, false) | (Role::Server, ServerToClient, false) => " -> ",
        (Role::Client, ClientToServer, true) | (Role::Server, ServerToClient, true) => " ~> ",
        (Role::Client, ServerToClient, false) | (Role::Server, ClientToServer, false) => "<-  ",
        (Role::Client, ServerToClient, true) | (Role::Server, ClientToServer, true) => "<~  ",
        (Role::Observer, ClientToServer, false) => "C: ",
        (Role::Observer, ClientToServer, true) => "C~ ",
        (Role::Observer, ServerToClient, false) => "S: ",
        (Role::Observer, ServerToClient, true) => "S~ ",
    }
}

/// How line content is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Show every CR and LF as an escape (otherwise a normal CRLF line end is implied and only
    /// deviations — bare LF, bare CR, a missing line end — are shown).
    pub escape_all: bool,
    /// Show secrets instead of their redacted summary.
    pub show_secrets: bool,
}

/// One rendered transcript line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedLine {
    /// Direction of the bytes.
    pub direction: Direction,
    /// Stream offset of the line's first byte.
    pub offset: u64,
    /// Whether inside TLS.
    pub tls: bool,
    /// Timestamp of the chunk.
    pub at: Timestamp,
    /// The text after the mark.
    pub text: String,
}

/// Renders one chunk as lines of text (without marks), applying redactions and escapes.
pub fn render_chunk(chunk: &Chunk, opts: RenderOptions) -> Vec<RenderedLine> {
    if let Some((n, why)) = &chunk.elided {
        return vec![RenderedLine {
            direction: chunk.direction,
            offset: chunk.offset,
            tls: chunk.tls,
            at: chunk.at,
            text: format!("<{n} octets not kept: {why}>"),
        }];
    }
    let mut lines = Vec::new();
    let bytes = &chunk.bytes;
    let mut start = 0;
    while start < bytes.len() {
        let end = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start + i + 1,
            None => bytes.len(),
        };
        let mut text = String::with_capacity(end - start + 8);
        render_span(chunk, start, end, opts, &mut text);
        lines.push(RenderedLine {
            direction: chunk.direction,
            offset: chunk.offset + start as u64,
            tls: chunk.tls,
            at: chunk.at,
            text,
        });
        start = end;
    }
    lines
}

fn render_span(chunk: &Chunk, start: usize, end: usize, opts: RenderOptions, out: &mut String) {
    let line = &chunk.bytes[start..end];
    // The line end that is implied rather than shown.
    let implied = if opts.escape_all {
        0
    } else if line.ends_with(b"\r\n") {
        2
    } else {
        0
    };
    let body_end = end - implied;
    let mut pos = start;
    for r in &chunk.redactions {
        if opts.show_secrets || r.end <= start || r.start >= body_end {
            continue;
        }
        let rs = r.start.max(start);
        if rs > pos {
            escape_into(&chunk.bytes[pos..rs], out);
        }
        if r.start >= start {
            out.push_str(&r.replacement);
        }
        pos = r.end.min(body_end);
    }
    if pos < body_end {
        escape_into(&chunk.bytes[pos..body_end], out);
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opts = RenderOptions {
            escape_all: false,
            show_secrets: false,
        };
        for c in &self.chunks {
            for l in render_chunk(c, opts) {
                writeln!(
                    f,
                    "{}{}",
                    direction_mark(Role::Observer, c.direction, c.tls),
                    l.text
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_per_direction() {
        let mut t = Transcript::new();
        assert_eq!(
            t.record(
                Direction::ServerToClient,
                Timestamp(1),
                false,
                b"220 hi\r\n"
            ),
            0
        );
        assert_eq!(
            t.record(
                Direction::ClientToServer,
                Timestamp(2),
                false,
                b"EHLO x\r\n"
            ),
            0
        );
        assert_eq!(
            t.record(
                Direction::ServerToClient,
                Timestamp(3),
                false,
                b"250 ok\r\n"
            ),
            8
        );
        assert_eq!(t.stream(Direction::ServerToClient), b"220 hi\r\n250 ok\r\n");
        assert_eq!(t.len(Direction::ClientToServer), 8);
    }

    #[test]
    fn rendering_shows_only_deviations_by_default() {
        let mut t = Transcript::new();
        t.record(
            Direction::ClientToServer,
            Timestamp(0),
            false,
            b"a\r\nb\nc\rd\r\ne",
        );
        let c = &t.chunks()[0];
        let texts: Vec<_> = render_chunk(
            c,
            RenderOptions {
                escape_all: false,
                show_secrets: false,
            },
        )
        .into_iter()
        .map(|l| (l.offset, l.text))
        .collect();
        assert_eq!(
            texts,
            vec![
                (0, "a".into()),
                (3, "b\\n".into()),
                (5, "c\\rd".into()),
                (10, "e".into())
            ]
        );
        let all: Vec<_> = render_chunk(
            c,
            RenderOptions {
                escape_all: true,
                show_secrets: false,
            },
        )
        .into_iter()
        .map(|l| l.text)
        .collect();
        assert_eq!(all, vec!["a\\r\\n", "b\\n", "c\\rd\\r\\n", "e"]);
    }

    #[test]
    fn redaction_keeps_structure_and_offsets() {
        let mut t = Transcript::new();
        let bytes = b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n";
        t.record_redacted(
            Direction::ClientToServer,
            Timestamp(0),
            true,
            bytes,
            vec![Redaction {
                start: 11,
                end: 31,
                replacement: "<redacted: authcid=\"alice\", 6-byte password>".into(),
            }],
        );
        let c = &t.chunks()[0];
        let hidden = render_chunk(
            c,
            RenderOptions {
                escape_all: false,
                show_secrets: false,
            },
        );
        assert_eq!(
            hidden[0].text,
            "AUTH PLAIN <redacted: authcid=\"alice\", 6-byte password>"
        );
        let shown = render_chunk(
            c,
            RenderOptions {
                escape_all: true,
                show_secrets: true,
            },
        );
        assert_eq!(shown[0].text, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\\r\\n");
        assert_eq!(direction_mark(Role::Client, c.direction, c.tls), " ~> ");
    }
}

#[cfg(test)]
mod elision_tests {
    use super::*;

    #[test]
    fn elide_splits_chunks_and_keeps_offsets() {
        let mut t = Transcript::new();
        t.record(
            Direction::ClientToServer,
            Timestamp(1),
            false,
            b"DATA\r\nhello ",
        );
        t.record(
            Direction::ServerToClient,
            Timestamp(2),
            false,
            b"354 go\r\n",
        );
        t.record(
            Direction::ClientToServer,
            Timestamp(3),
            false,
            b"world\r\n.\r\nQUIT\r\n",
        );
        let before = t.kept_bytes();
        // Elide "hello world\r\n" (client offsets 6..19).
        t.elide(
            Direction::ClientToServer,
            6,
            19,
            "message content (13 octets, stored)",
        );
        assert_eq!(t.kept_bytes(), before - 13);
        let client: Vec<_> = t
            .chunks()
            .iter()
            .filter(|c| c.direction == Direction::ClientToServer)
            .collect();
        assert_eq!(client[0].bytes, b"DATA\r\n");
        assert_eq!((client[1].offset, client[1].len()), (6, 6));
        assert_eq!((client[2].offset, client[2].len()), (12, 7));
        assert_eq!(client[3].bytes, b".\r\nQUIT\r\n");
        assert_eq!(client[3].offset, 19);
        let text = render_chunk(
            client[1],
            RenderOptions {
                escape_all: false,
                show_secrets: false,
            },
        );
        assert_eq!(
            text[0].text,
            "<6 octets not kept: message content (13 octets, stored)>"
        );
        assert_eq!(t.len(Direction::ClientToServer), 28);
    }

    #[test]
    fn keep_limit_records_lengths_only() {
        let mut t = Transcript::new();
        t.set_keep_limit(Some(10));
        t.record(Direction::ClientToServer, Timestamp(1), false, b"12345678");
        assert!(!t.capped());
        assert_eq!(
            t.record(Direction::ClientToServer, Timestamp(2), false, b"abcdef"),
            8
        );
        assert!(t.capped());
        assert_eq!(t.kept_bytes(), 8);
        assert_eq!(t.len(Direction::ClientToServer), 14);
        assert_eq!(t.chunks()[1].len(), 6);
    }
}
