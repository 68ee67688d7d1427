//! IMAP response framing: where one server response ends, with its literals (`{n}`, `{n+}`,
//! `~{n}`), under limits, before any grammar is applied. A response is a line that may end
//! with a literal announcement; the literal's octets follow and the line goes on after them.

/// Limits for framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Longest line segment (between literals), CRLF included.
    pub max_line: usize,
    /// Largest single literal.
    pub max_literal: u64,
    /// Largest response, literals included.
    pub max_response: u64,
}

impl Default for FrameLimits {
    /// 64 KiB lines, 256 MiB literals and responses.
    fn default() -> Self {
        Self {
            max_line: 64 * 1024,
            max_literal: 256 * 1024 * 1024,
            max_response: 256 * 1024 * 1024,
        }
    }
}

/// One framed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Octets of the whole response (CRLF included).
    pub consumed: usize,
    /// Each literal's data: (start, length) within the response.
    pub literals: Vec<(usize, usize)>,
    /// Literals whose announced length does not fit what follows them (index into
    /// `literals`).
    pub suspicious_literals: Vec<usize>,
    /// Line ends that were a bare LF (offsets within the response).
    pub bare_lf: Vec<usize>,
}

/// Result of framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// One response.
    Complete(Frame),
    /// More input needed (never an error).
    Incomplete,
    /// A limit was exceeded: the stream cannot be followed safely.
    TooLong(String),
}

/// Frames the first response in `input`.
pub fn frame_response(input: &[u8], limits: FrameLimits) -> Framed {
    let mut pos = 0usize;
    let mut frame = Frame {
        consumed: 0,
        literals: Vec::new(),
        suspicious_literals: Vec::new(),
        bare_lf: Vec::new(),
    };
    loop {
        let rest = &input[pos..];
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > limits.max_line {
                return Framed::TooLong(format!(
                    "a response line is longer than {} octets",
                    limits.max_line
                ));
            }
            return Framed::Incomplete;
        };
        if lf + 1 > limits.max_line {
            return Framed::TooLong(format!(
                "a response line is longer than {} octets",
                limits.max_line
            ));
        }
        let line_end = if lf > 0 && rest[lf - 1] == b'\r' {
            lf - 1
        } else {
            frame.bare_lf.push(pos + lf);
            lf
        };
        let line = &rest[..line_end];
        let after = pos + lf + 1;
        match literal_announcement(line) {
            None => {
                frame.consumed = after;
                return Framed::Complete(frame);
            }
            Some(n) => {
                if n > limits.max_literal {
                    return Framed::TooLong(format!(
                        "a literal of {n} octets exceeds the {}-octet limit",
                        limits.max_literal
                    ));
                }
                if after as u64 + n > limits.max_response {
                    return Framed::TooLong(format!(
                        "a response exceeds the {}-octet limit",
                        limits.max_response
                    ));
                }
                let n = n as usize;
                if input.len() < after + n + 1 {
                    return Framed::Incomplete;
                }
                frame.literals.push((after, n));
                // After a literal the line goes on with a space, `)`, `]` or the line end;
                // anything else means the count was wrong.
                let next = input[after + n];
                if !matches!(next, b' ' | b')' | b']' | b'\r' | b'\n') {
                    frame.suspicious_literals.push(frame.literals.len() - 1);
                }
                pos = after + n;
            }
        }
    }
}

/// The octet count of a literal announced at the end of `line` (`{n}`, `{n+}`, `{n-}`,
/// `~{n}`), if any.
pub fn literal_announcement(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let mut digits = &body[open + 1..];
    if let Some(d) = digits
        .strip_suffix(b"+")
        .or_else(|| digits.strip_suffix(b"-"))
    {
        digits = d;
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line() {
        let Framed::Complete(f) = frame_response(b"* OK ready\r\nrest", FrameLimits::default())
        else {
            panic!()
        };
        assert_eq!(f.consumed, 12);
        assert!(f.literals.is_empty());
    }

    #[test]
    fn literal() {
        let input = b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n";
        let Framed::Complete(f) = frame_response(input, FrameLimits::default()) else {
            panic!()
        };
        assert_eq!(f.consumed, input.len());
        assert_eq!(f.literals, vec![(23, 5)]);
        assert!(f.suspicious_literals.is_empty());
        for cut in 0..input.len() {
            assert_eq!(
                frame_response(&input[..cut], FrameLimits::default()),
                Framed::Incomplete
            );
        }
    }

    #[test]
    fn lying_literal() {
        let input = b"* 1 FETCH (BODY[] {3}\r\nhello)\r\n";
        let Framed::Complete(f) = frame_response(input, FrameLimits::default()) else {
            panic!()
        };
        assert_eq!(f.suspicious_literals, vec![0]);
    }

    #[test]
    fn limits() {
        let l = FrameLimits {
            max_line: 8,
            max_literal: 4,
            max_response: 100,
        };
        assert!(matches!(
            frame_response(b"123456789", l),
            Framed::TooLong(_)
        ));
        assert!(matches!(
            frame_response(b"* {5}\r\n", l),
            Framed::TooLong(_)
        ));
    }
}
