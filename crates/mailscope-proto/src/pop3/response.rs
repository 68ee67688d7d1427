//! POP3 responses (RFC 1939 §3, RFC 2449 §8): a status line starting `+OK` or `-ERR`,
//! optionally followed (for multi-line commands) by dot-stuffed lines ending in a line of a
//! lone `.`. The decoder frames lines with limits before it parses anything, keeps every
//! byte, and reports deviations as [`Deviation`]s instead of failing.

/// `+OK` or `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `+OK`.
    Ok,
    /// `-ERR`.
    Err,
}

impl Status {
    /// The indicator as sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "+OK",
            Status::Err => "-ERR",
        }
    }
}

/// Limits applied while framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// A status line longer than this (including CRLF) is a finding (RFC 2449 §4: 512).
    pub status_line_warn: usize,
    /// Hard limit for one line; longer lines end the session.
    pub max_line: usize,
    /// Hard limit for one whole response (a multi-line body included).
    pub max_response: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        Self {
            status_line_warn: 512,
            max_line: 64 * 1024,
            max_response: 256 * 1024 * 1024,
        }
    }
}

/// An RFC 2449 extended response code, e.g. `[IN-USE]`, `[SYS/TEMP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseCode {
    /// The code, e.g. `SYS/TEMP`, as sent.
    pub code: String,
}

impl ResponseCode {
    /// What the code means (RFC 2449 §8.1, RFC 3206), if known.
    pub fn meaning(&self) -> Option<&'static str> {
        let c = self.code.to_ascii_uppercase();
        Some(match c.as_str() {
            "IN-USE" => "the mailbox is locked by another session",
            "LOGIN-DELAY" => "the user logged in too recently; wait the LOGIN-DELAY seconds",
            "SYS/TEMP" => "a temporary system problem; try again later",
            "SYS/PERM" => "a permanent system problem; retrying will not help",
            "AUTH" => "the credentials were refused (not a system problem)",
            _ => return None,
        })
    }
}

/// A deviation the decoder saw, with the offset (within the input it was given) of the
/// line it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deviation {
    /// The status line does not start with `+OK` or `-ERR`.
    BadStatus,
    /// A status line or the terminating `.` line ends with LF alone.
    MissingCrlf,
    /// A line of a multi-line body ends with LF alone.
    BareLfInBody,
    /// The status line is longer than [`ResponseLimits::status_line_warn`].
    StatusLineTooLong(usize),
}

/// One complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `+OK` / `-ERR`; `None` when the status line carries neither.
    pub status: Option<Status>,
    /// The status line after the indicator and one blank, without the line end.
    pub text: Vec<u8>,
    /// RFC 2449 response code, if the text starts with `[...]`.
    pub code: Option<ResponseCode>,
    /// For multi-line responses: the body with dot-stuffing removed, line ends as sent, the
    /// terminating line excluded.
    pub body: Option<Vec<u8>>,
    /// Deviations, with offsets relative to the start of the response.
    pub deviations: Vec<(usize, Deviation)>,
}

/// What [`ResponseDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A response, and how many input bytes it took.
    Complete {
        /// The response.
        value: Response,
        /// Bytes consumed.
        consumed: usize,
    },
    /// More bytes are needed.
    Incomplete,
    /// A hard limit was exceeded; the session cannot go on.
    TooLong {
        /// Which limit, for the message.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

/// Incremental decoder for one response. Give it the same (growing) buffer until it says
/// `Complete`; it remembers how far it got so large bodies are scanned once.
#[derive(Debug, Clone, Default)]
pub struct ResponseDecoder {
    limits: ResponseLimits,
    /// Bytes of the buffer already framed.
    pos: usize,
    status: Option<Option<Status>>,
    text: Vec<u8>,
    body: Vec<u8>,
    deviations: Vec<(usize, Deviation)>,
}

impl ResponseDecoder {
    /// A decoder with these limits.
    pub fn new(limits: ResponseLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Forgets any partial response.
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// Decodes from `buf` (which starts at the response's first byte). `multiline`: whether
    /// a `+OK` status line is followed by a dot-terminated body (RFC 1939 §3).
    pub fn decode(&mut self, buf: &[u8], multiline: bool) -> Decoded {
        loop {
            let rest = &buf[self.pos.min(buf.len())..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > self.limits.max_line {
                    return Decoded::TooLong {
                        what: "line",
                        limit: self.limits.max_line,
                    };
                }
                return Decoded::Incomplete;
            };
            let line_start = self.pos;
            let line = &rest[..=nl];
            if line.len() > self.limits.max_line {
                return Decoded::TooLong {
                    what: "line",
                    limit: self.limits.max_line,
                };
            }
            self.pos += line.len();
            if self.pos > self.limits.max_response {
                return Decoded::TooLong {
                    what: "response",
                    limit: self.limits.max_response,
                };
            }
            let crlf = line.len() >= 2 && line[line.len() - 2] == b'\r';
            let content = &line[..line.len() - if crlf { 2 } else { 1 }];
            match self.status {
                None => {
                    if !crlf {
                        self.deviations.push((line_start, Deviation::MissingCrlf));
                    }
                    if line.len() > self.limits.status_line_warn {
                        self.deviations
                            .push((line_start, Deviation::StatusLineTooLong(line.len())));
                    }
                    let (status, text) = parse_status(content);
                    if status.is_none() {
                        self.deviations.push((line_start, Deviation::BadStatus));
                    }
                    self.text = text.to_vec();
                    self.status = Some(status);
                    if !(multiline && status == Some(Status::Ok)) {
                        return self.finish(None);
                    }
                }
                Some(_) => {
                    if content == b"." {
                        if !crlf {
                            self.deviations.push((line_start, Deviation::MissingCrlf));
                        }
                        let body = std::mem::take(&mut self.body);
                        return self.finish(Some(body));
                    }
                    if !crlf {
                        self.deviations.push((line_start, Deviation::BareLfInBody));
                    }
                    // Dot-unstuffing: a leading dot is removed (RFC 1939 §3).
                    let unstuffed = line.strip_prefix(b".").unwrap_or(line);
                    self.body.extend_from_slice(unstuffed);
                }
            }
        }
    }

    fn finish(&mut self, body: Option<Vec<u8>>) -> Decoded {
        let consumed = self.pos;
        let status = self.status.flatten();
        let text = std::mem::take(&mut self.text);
        let code = parse_code(&text);
        let deviations = std::mem::take(&mut self.deviations);
        self.reset();
        Decoded::Complete {
            value: Response {
                status,
                text,
                code,
                body,
                deviations,
            },
            consumed,
        }
    }
}

/// Splits a status line into its indicator and the text after one blank. The indicator is
/// matched case-sensitively, as RFC 1939 §3 writes it; `+ok` is a deviation.
fn parse_status(line: &[u8]) -> (Option<Status>, &[u8]) {
    for (ind, st) in [(&b"+OK"[..], Status::Ok), (&b"-ERR"[..], Status::Err)] {
        if let Some(rest) = line.strip_prefix(ind) {
            if rest.is_empty() {
                return (Some(st), rest);
            }
            if rest[0] == b' ' {
                return (Some(st), &rest[1..]);
            }
        }
    }
    (None, line)
}

/// RFC 2449 §8: `[CODE/SUB]` at the start of the text.
fn parse_code(text: &[u8]) -> Option<ResponseCode> {
    let inner = text.strip_prefix(b"[")?;
    let end = inner.iter().position(|&b| b == b']')?;
    let code = &inner[..end];
    if code.is_empty()
        || !code
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'/')
    {
        return None;
    }
    Some(ResponseCode {
        code: String::from_utf8_lossy(code).into_owned(),
    })
}

/// The APOP timestamp in a greeting (RFC 1939 §7): the first `<...>` containing `@`.
pub fn apop_timestamp(greeting_text: &[u8]) -> Option<String> {
    let start = greeting_text.iter().position(|&b| b == b'<')?;
    let len = greeting_text[start..].iter().position(|&b| b == b'>')?;
    let ts = &greeting_text[start..=start + len];
    (ts.contains(&b'@') && ts.iter().all(|b| b.is_ascii_graphic()))
        .then(|| String::from_utf8_lossy(ts).into_owned())
}

/// Parses `+OK nn mm` of STAT (RFC 1939 §5): message count and octets.
pub fn parse_stat(text: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(text).ok()?;
    let mut it = s.split_ascii_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Parses a LIST or UIDL body: lines `n value`.
pub fn parse_listing(body: &[u8]) -> Vec<(u32, String)> {
    body.split(|&b| b == b'\n')
        .filter_map(|l| {
            let s = std::str::from_utf8(l).ok()?.trim_end_matches('\r');
            let (n, v) = s.split_once(' ')?;
            Some((n.parse().ok()?, v.trim().to_string()))
        })
        .collect()
}

/// Parses a CAPA body (RFC 2449 §5): one capability per line, keyword first.
pub fn parse_capa(body: &[u8]) -> Vec<String> {
    body.split(|&b| b == b'\n')
        .map(|l| {
            String::from_utf8_lossy(l)
                .trim_end_matches('\r')
                .trim()
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect()
}
