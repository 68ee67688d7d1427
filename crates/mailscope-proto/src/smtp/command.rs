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
    /// `BDAT size [LAST]` (RFC 3030); the chunk's bytes follow the line and are not part of
    /// the command.
    Bdat {
        /// Chunk size in octets.
        size: usize,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `XCLIENT name=value ...` (Postfix); the values are written as given, so they must
    /// already be xtext ([`xtext`]).
    Xclient(Vec<(String, String)>),
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
            Command::Bdat { .. } => "BDAT",
            Command::Xclient(_) => "XCLIENT",
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
            Command::Bdat { size, last } => {
                push(&format!("BDAT {size}"));
                if *last {
                    push(" LAST");
                }
            }
            Command::Xclient(attrs) => {
                push("XCLIENT");
                for (name, value) in attrs {
                    push(&format!(" {name}={value}"));
                }
            }
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

/// RFC 3461 §4 xtext: every octet outside `!`..`~`, and `+` and `=`, becomes `+` and two
/// upper-case hex digits. Used for ENVID, ORCPT and XCLIENT values.
pub fn xtext(value: &[u8]) -> String {
    let mut s = String::with_capacity(value.len());
    for &b in value {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("+{b:02X}"));
        }
    }
    s
}

/// The ORCPT value for an address (RFC 3461 §4.2): `rfc822;` and the xtext of an ASCII
/// address, or, for an internationalised one, `utf-8;` and RFC 6533's utf-8-addr-unitext
/// (UTF-8 kept; `+`, `=`, `\` and controls as `\x{HH}`), which needs SMTPUTF8 anyway.
pub fn orcpt(address: &str) -> String {
    if address.is_ascii() {
        return format!("rfc822;{}", xtext(address.as_bytes()));
    }
    let mut s = String::from("utf-8;");
    for c in address.chars() {
        if c.is_ascii() && (!('!'..='~').contains(&c) || matches!(c, '+' | '=' | '\\')) {
            s.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        } else {
            s.push(c);
        }
    }
    s
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
        assert_eq!(
            Command::Bdat {
                size: 86,
                last: false
            }
            .to_bytes(),
            b"BDAT 86\r\n"
        );
        assert_eq!(
            Command::Bdat {
                size: 0,
                last: true
            }
            .to_bytes(),
            b"BDAT 0 LAST\r\n"
        );
        assert_eq!(
            Command::Xclient(vec![
                ("NAME".into(), "spike.porcupine.org".into()),
                ("ADDR".into(), "168.100.189.2".into()),
            ])
            .to_bytes(),
            b"XCLIENT NAME=spike.porcupine.org ADDR=168.100.189.2\r\n"
        );
    }

    #[test]
    fn xtext_and_orcpt_follow_rfc_3461_and_6533() {
        // RFC 3461 §4: "+" and "=" and everything outside "!".."~" are hex-escaped.
        assert_eq!(xtext(b"a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext(b"Bob@Example.COM"), "Bob@Example.COM");
        assert_eq!(xtext("é".as_bytes()), "+C3+A9");
        assert_eq!(xtext(b"[UNAVAILABLE]"), "[UNAVAILABLE]");
        assert_eq!(
            orcpt("bob+tag@example.test"),
            "rfc822;bob+2Btag@example.test"
        );
        // RFC 6533 §3: UTF-8 kept, the three specials as \x{..}.
        assert_eq!(
            orcpt("jöe+1@exämple.test"),
            "utf-8;jöe\\x{2B}1@exämple.test"
        );
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
