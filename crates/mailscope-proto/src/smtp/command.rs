//! SMTP command encoders (RFC 5321 §4.1) and the command-line lints.
//!
//! Encoders write exactly the bytes of one command, CRLF included, into a buffer; they never
//! touch a stream. Arguments are written as given: checking what a user asked for is the
//! lints' job, not the encoder's, so a test can still send a broken command on purpose.

use crate::finding::{
    Finding, SMTP_COMMAND_BARE_CR, SMTP_COMMAND_BARE_LF, SMTP_COMMAND_NUL, SMTP_COMMAND_TOO_LONG,
};
use crate::transcript::Direction;

/// An SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `LHLO domain` (LMTP, RFC 2033).
    Lhlo(String),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954); the response is already base64
    /// (`=` for an empty one).
    Auth {
        /// Mechanism name.
        mechanism: String,
        /// Base64 initial response.
        initial_response: Option<String>,
    },
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// Reverse path without brackets (empty for the null sender).
        from: String,
        /// ESMTP parameters, e.g. `BODY=8BITMIME`.
        params: Vec<String>,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// Forward path without brackets.
        to: String,
        /// ESMTP parameters.
        params: Vec<String>,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
}

impl Command {
    /// The verb, for summaries and latency tables.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Lhlo(_) => "LHLO",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
        }
    }

    /// Appends the command line, CRLF included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut push = |s: &str| out.extend_from_slice(s.as_bytes());
        match self {
            Command::Ehlo(d) => push(&format!("EHLO {d}")),
            Command::Helo(d) => push(&format!("HELO {d}")),
            Command::Lhlo(d) => push(&format!("LHLO {d}")),
            Command::StartTls => push("STARTTLS"),
            Command::Auth {
                mechanism,
                initial_response,
            } => match initial_response {
                Some(r) => push(&format!("AUTH {mechanism} {r}")),
                None => push(&format!("AUTH {mechanism}")),
            },
            Command::Mail { from, params } => {
                push(&format!("MAIL FROM:<{from}>"));
                for p in params {
                    push(&format!(" {p}"));
                }
            }
            Command::Rcpt { to, params } => {
                push(&format!("RCPT TO:<{to}>"));
                for p in params {
                    push(&format!(" {p}"));
                }
            }
            Command::Data => push("DATA"),
            Command::Rset => push("RSET"),
            Command::Noop => push("NOOP"),
            Command::Quit => push("QUIT"),
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The encoded command line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

/// Lints one command line as it crossed (line end included). Offsets in the findings are
/// `base` plus the position in `line`; `direction` says who sent it.
pub fn lint_command_line(line: &[u8], base: u64, direction: Direction) -> Vec<Finding> {
    let mut findings = Vec::new();
    let at = |f: Finding, i: usize| f.at(direction, base + i as u64);
    if line.len() > 512 {
        findings.push(at(
            Finding::new(
                SMTP_COMMAND_TOO_LONG,
                format!("{} octets including the line end", line.len()),
            ),
            0,
        ));
    }
    for (i, &b) in line.iter().enumerate() {
        match b {
            b'\n' if i == 0 || line[i - 1] != b'\r' => {
                findings.push(at(
                    Finding::new(SMTP_COMMAND_BARE_LF, "command line ends in a bare LF"),
                    i,
                ));
            }
            b'\r' if line.get(i + 1) != Some(&b'\n') => {
                findings.push(at(
                    Finding::new(SMTP_COMMAND_BARE_CR, "CR not followed by LF in a command"),
                    i,
                ));
            }
            0 => findings.push(at(
                Finding::new(SMTP_COMMAND_NUL, "NUL octet in a command"),
                i,
            )),
            _ => {}
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_exact_lines() {
        assert_eq!(
            Command::Ehlo("client.example".into()).to_bytes(),
            b"EHLO client.example\r\n"
        );
        assert_eq!(
            Command::Mail {
                from: "a@example.test".into(),
                params: vec!["BODY=8BITMIME".into()]
            }
            .to_bytes(),
            b"MAIL FROM:<a@example.test> BODY=8BITMIME\r\n"
        );
        assert_eq!(
            Command::Mail {
                from: String::new(),
                params: vec![]
            }
            .to_bytes(),
            b"MAIL FROM:<>\r\n"
        );
        assert_eq!(
            Command::Rcpt {
                to: "b@example.test".into(),
                params: vec![]
            }
            .to_bytes(),
            b"RCPT TO:<b@example.test>\r\n"
        );
        assert_eq!(
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial_response: Some("dGVzdAB0ZXN0AHRlc3RwYXNz".into())
            }
            .to_bytes(),
            b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3RwYXNz\r\n"
        );
        assert_eq!(Command::Quit.to_bytes(), b"QUIT\r\n");
    }

    #[test]
    fn lints_find_deviations_at_offsets() {
        let f = lint_command_line(b"EHLO a\rb\n", 100, Direction::ClientToServer);
        let got: Vec<_> = f.iter().map(|f| (f.kind.id, f.offset)).collect();
        assert_eq!(
            got,
            vec![
                ("smtp.command.bare-cr", Some(106)),
                ("smtp.command.bare-lf", Some(108))
            ]
        );
        assert!(lint_command_line(b"NOOP\r\n", 0, Direction::ClientToServer).is_empty());
        assert_eq!(
            lint_command_line(&[b'a'; 600], 0, Direction::ClientToServer)[0]
                .kind
                .id,
            "smtp.command.line-too-long"
        );
    }
}
