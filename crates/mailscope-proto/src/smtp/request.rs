//! The server's command parser (RFC 5321 §4.1 and the extensions a sink meets): frames one
//! command line with a hard limit, then parses it into a [`Request`]. Like
//! [`decode_reply`](crate::smtp::reply::decode_reply) it frames before it parses, never
//! treats incomplete input as an error, and reports every deviation as a finding while going
//! on wherever the meaning is still clear (a bare LF line end, `MAIL FROM: <a>`, a missing
//! pair of angle brackets). Only a line over the hard limit stops decoding: the caller answers
//! `500 5.5.2` and discards up to the next LF.
//!
//! The parser is shared: the sink's server machine uses it, and so can anything that watches
//! a client (proxy, capture analyzer), since the findings are about the client's bytes.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::finding::{
    Finding, SMTP_CLIENT_ADDRESS_SYNTAX, SMTP_CLIENT_COMMAND_SYNTAX, SMTP_CLIENT_HELO_SYNTAX,
    SMTP_CLIENT_SPACE_AFTER_COLON, SMTP_CLIENT_UNKNOWN_COMMAND, SMTP_COMMAND_TOO_LONG,
};
use crate::secret::Secret;
use crate::smtp::command::lint_command_line;
use crate::smtp::reply::{Decoded, LineEnding};
use crate::transcript::Direction;

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, CRLF included. Longer lines
/// are a finding, not a refusal, up to [`RequestLimits::max_line`].
pub const RFC_MAX_COMMAND_LINE: usize = 512;

/// RFC 4954 §4: an AUTH line (command with initial response, or a response to a challenge)
/// may be up to 12288 octets; the 512-octet limit does not apply to it.
pub const RFC_MAX_AUTH_LINE: usize = 12288;

/// Limits on what a client may send as one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest command line accepted, line end included (default 4096). Over it the caller
    /// answers `500 5.5.2` and discards up to the next LF.
    pub max_line: usize,
    /// Longest AUTH response line accepted, line end included (default 16 KiB, above RFC
    /// 4954's 12288 so a conforming client never hits it).
    pub max_auth_line: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_line: 4096,
            max_auth_line: 16 * 1024,
        }
    }
}

/// Errors that stop decoding of the current line.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RequestError {
    /// The line grew past the limit without an LF.
    #[error("command line longer than {limit} octets without a line end")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
}

/// `BODY=` values (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `7BIT`.
    SevenBit,
    /// `8BITMIME`.
    EightBitMime,
    /// `BINARYMIME` (needs BDAT).
    BinaryMime,
}

impl Body {
    /// The keyword value.
    pub fn as_str(self) -> &'static str {
        match self {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
            Body::BinaryMime => "BINARYMIME",
        }
    }
}

/// `RET=` (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `FULL`.
    Full,
    /// `HDRS`.
    Hdrs,
}

/// `NOTIFY=` (RFC 3461 §4.1): all false means `NEVER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Notify {
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

/// One ESMTP parameter of MAIL or RCPT. Known keywords are parsed; unknown ones are kept as
/// sent so nothing the client said is lost.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EsmtpParam {
    /// `SIZE=n` (RFC 1870).
    Size(u64),
    /// `BODY=` (RFC 6152, RFC 3030).
    Body(Body),
    /// `SMTPUTF8` (RFC 6531).
    SmtpUtf8,
    /// `RET=` (RFC 3461).
    Ret(Ret),
    /// `ENVID=xtext` (RFC 3461), as sent.
    EnvId(String),
    /// `NOTIFY=` (RFC 3461; RCPT only).
    Notify(Notify),
    /// `ORCPT=addr-type;xtext` (RFC 3461; RCPT only), as sent.
    Orcpt(String),
    /// `AUTH=mailbox` or `AUTH=<>` (RFC 4954 §5), as sent.
    Auth(String),
    /// `REQUIRETLS` (RFC 8689).
    RequireTls,
    /// Anything else, as sent.
    Unknown {
        /// The keyword as sent.
        keyword: String,
        /// The value, if `=` was present.
        value: Option<String>,
    },
}

impl EsmtpParam {
    /// The keyword, upper-cased for known parameters, as sent for unknown ones.
    pub fn keyword(&self) -> &str {
        match self {
            EsmtpParam::Size(_) => "SIZE",
            EsmtpParam::Body(_) => "BODY",
            EsmtpParam::SmtpUtf8 => "SMTPUTF8",
            EsmtpParam::Ret(_) => "RET",
            EsmtpParam::EnvId(_) => "ENVID",
            EsmtpParam::Notify(_) => "NOTIFY",
            EsmtpParam::Orcpt(_) => "ORCPT",
            EsmtpParam::Auth(_) => "AUTH",
            EsmtpParam::RequireTls => "REQUIRETLS",
            EsmtpParam::Unknown { keyword, .. } => keyword,
        }
    }
}

impl fmt::Display for EsmtpParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EsmtpParam::Size(n) => write!(f, "SIZE={n}"),
            EsmtpParam::Body(b) => write!(f, "BODY={}", b.as_str()),
            EsmtpParam::SmtpUtf8 => f.write_str("SMTPUTF8"),
            EsmtpParam::Ret(Ret::Full) => f.write_str("RET=FULL"),
            EsmtpParam::Ret(Ret::Hdrs) => f.write_str("RET=HDRS"),
            EsmtpParam::EnvId(v) => write!(f, "ENVID={v}"),
            EsmtpParam::Notify(n) => {
                let mut parts = Vec::new();
                if n.success {
                    parts.push("SUCCESS");
                }
                if n.failure {
                    parts.push("FAILURE");
                }
                if n.delay {
                    parts.push("DELAY");
                }
                if parts.is_empty() {
                    parts.push("NEVER");
                }
                write!(f, "NOTIFY={}", parts.join(","))
            }
            EsmtpParam::Orcpt(v) => write!(f, "ORCPT={v}"),
            EsmtpParam::Auth(v) => write!(f, "AUTH={v}"),
            EsmtpParam::RequireTls => f.write_str("REQUIRETLS"),
            EsmtpParam::Unknown {
                keyword,
                value: Some(v),
            } => write!(f, "{keyword}={v}"),
            EsmtpParam::Unknown {
                keyword,
                value: None,
            } => f.write_str(keyword),
        }
    }
}

/// A reverse or forward path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Path {
    /// The mailbox as sent, without angle brackets and source route; empty for the null
    /// reverse path `<>`.
    pub address: String,
    /// Whether it was inside angle brackets (it must be).
    pub bracketed: bool,
    /// An obsolete source route (`@a,@b:`) that was dropped, as RFC 5321 §4.1.1.3 says.
    pub source_route: Option<String>,
}

impl Path {
    /// The null reverse path `<>`.
    pub fn is_null(&self) -> bool {
        self.address.is_empty()
    }

    /// Whether the address has octets above 127 (needs SMTPUTF8).
    pub fn is_non_ascii(&self) -> bool {
        !self.address.is_ascii()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.address)
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `LHLO domain` (LMTP, RFC 2033).
    Lhlo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse path.
        from: Path,
        /// ESMTP parameters, in order.
        params: Vec<EsmtpParam>,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The forward path.
        to: Path,
        /// ESMTP parameters, in order.
        params: Vec<EsmtpParam>,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Octets of the chunk that follows the command line.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy(String),
    /// `EXPN string`.
    Expn(String),
    /// `HELP [string]`.
    Help(Option<String>),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954). The response is still base64 (`=`
    /// for an empty one) and secret.
    Auth {
        /// The mechanism name as sent.
        mechanism: String,
        /// The initial response, base64.
        initial_response: Option<Secret<String>>,
    },
    /// `XCLIENT ...` (Postfix): recognised, arguments kept, not acted on.
    Xclient(String),
    /// A verb nobody defines.
    Unknown {
        /// The verb as sent (lossily decoded, at most 64 characters).
        verb: String,
    },
    /// A known verb whose arguments cannot be used.
    Invalid {
        /// The verb.
        verb: &'static str,
        /// What is wrong, for the reply text and the finding.
        reason: String,
        /// Whether the problem is the address (`501 5.1.7` / `501 5.1.3`) rather than the
        /// syntax in general (`501 5.5.4`).
        bad_address: bool,
    },
}

impl Request {
    /// The verb, upper case (`"UNKNOWN"` for an unknown one).
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Ehlo(_) => "EHLO",
            Request::Helo(_) => "HELO",
            Request::Lhlo(_) => "LHLO",
            Request::Mail { .. } => "MAIL",
            Request::Rcpt { .. } => "RCPT",
            Request::Data => "DATA",
            Request::Bdat { .. } => "BDAT",
            Request::Rset => "RSET",
            Request::Noop => "NOOP",
            Request::Quit => "QUIT",
            Request::Vrfy(_) => "VRFY",
            Request::Expn(_) => "EXPN",
            Request::Help(_) => "HELP",
            Request::StartTls => "STARTTLS",
            Request::Auth { .. } => "AUTH",
            Request::Xclient(_) => "XCLIENT",
            Request::Unknown { .. } => "UNKNOWN",
            Request::Invalid { verb, .. } => verb,
        }
    }
}

/// A decoded command line and the findings about how it was written. Finding offsets are
/// relative to the start of the input given to [`decode_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRequest {
    /// The command.
    pub request: Request,
    /// How the line ended.
    pub ending: LineEnding,
    /// Deviations seen while decoding.
    pub findings: Vec<Finding>,
}

/// Frames one line (up to and including its LF) from the start of `input` with the limit
/// `max`. `Ok(None)` means no LF yet.
pub fn frame_line(input: &[u8], max: usize) -> Result<Option<usize>, RequestError> {
    match input.iter().take(max).position(|&b| b == b'\n') {
        Some(i) => Ok(Some(i + 1)),
        None if input.len() >= max => Err(RequestError::LineTooLong { limit: max }),
        None => Ok(None),
    }
}

/// The line without its line end (CRLF or bare LF).
pub fn strip_line_end(line: &[u8]) -> (&[u8], LineEnding) {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    match body.strip_suffix(b"\r") {
        Some(b) => (b, LineEnding::CrLf),
        None => (body, LineEnding::Lf),
    }
}

/// Decodes one command line from the start of `input`.
pub fn decode_command(
    input: &[u8],
    limits: &RequestLimits,
) -> Result<Decoded<DecodedRequest>, RequestError> {
    // AUTH lines may be longer than others (RFC 4954 §4): frame with the AUTH limit when the
    // line starts with the verb.
    let is_auth = input.len() >= 5 && input[..5].eq_ignore_ascii_case(b"AUTH ");
    let max = if is_auth {
        limits.max_line.max(limits.max_auth_line)
    } else {
        limits.max_line
    };
    let Some(len) = frame_line(input, max)? else {
        return Ok(Decoded::Incomplete);
    };
    let line = &input[..len];
    let mut findings: Vec<Finding> = lint_command_line(line, 0, Direction::ClientToServer)
        .into_iter()
        .filter(|f| !(is_auth && f.kind == SMTP_COMMAND_TOO_LONG && len <= RFC_MAX_AUTH_LINE))
        .collect();
    let (content, ending) = strip_line_end(line);
    let request = parse_line(content, &mut findings);
    Ok(Decoded::Complete {
        value: DecodedRequest {
            request,
            ending,
            findings,
        },
        consumed: len,
    })
}

fn at0(f: Finding) -> Finding {
    f.at(Direction::ClientToServer, 0)
}

fn parse_line(content: &[u8], findings: &mut Vec<Finding>) -> Request {
    let (verb, rest) = match content.iter().position(|&b| b == b' ') {
        Some(i) => (&content[..i], &content[i + 1..]),
        None => (content, &content[content.len()..]),
    };
    let upper = verb.to_ascii_uppercase();
    let text = String::from_utf8_lossy(rest);
    // Trailing blanks are tolerated (many servers do) but noted.
    let trimmed = text.trim_end_matches([' ', '\t']);
    let args = trimmed.trim_start_matches([' ', '\t']);
    let note_blanks = |findings: &mut Vec<Finding>, verb: &str| {
        if content.ends_with(b" ") || content.ends_with(b"\t") {
            findings.push(at0(Finding::new(
                SMTP_CLIENT_COMMAND_SYNTAX,
                format!("{verb}: trailing blanks"),
            )));
        }
        if !args.is_empty() && args.len() != trimmed.len() {
            findings.push(at0(Finding::new(
                SMTP_CLIENT_COMMAND_SYNTAX,
                format!("{verb}: more than one blank after the verb"),
            )));
        }
    };
    let no_args = |verb: &'static str, findings: &mut Vec<Finding>, req: Request| {
        if args.is_empty() {
            note_blanks(findings, verb);
            req
        } else {
            findings.push(at0(Finding::new(
                SMTP_CLIENT_COMMAND_SYNTAX,
                format!("{verb}: takes no arguments"),
            )));
            Request::Invalid {
                verb,
                reason: format!("{verb} takes no arguments"),
                bad_address: false,
            }
        }
    };
    match upper.as_slice() {
        b"EHLO" | b"HELO" | b"LHLO" => {
            let v = match upper.as_slice() {
                b"EHLO" => "EHLO",
                b"HELO" => "HELO",
                _ => "LHLO",
            };
            if args.is_empty() {
                return invalid(findings, v, format!("{v} needs a domain"), false);
            }
            note_blanks(findings, v);
            if let Err(why) = check_helo(args) {
                findings.push(at0(Finding::new(
                    SMTP_CLIENT_HELO_SYNTAX,
                    format!("{v} {}: {why}", quote(args)),
                )));
            }
            let d = args.to_string();
            match v {
                "EHLO" => Request::Ehlo(d),
                "HELO" => Request::Helo(d),
                _ => Request::Lhlo(d),
            }
        }
        b"MAIL" | b"RCPT" => {
            let mail = upper.as_slice() == b"MAIL";
            let (v, prefix) = if mail {
                ("MAIL", "FROM:")
            } else {
                ("RCPT", "TO:")
            };
            let Ok(rest) = std::str::from_utf8(rest) else {
                return invalid(findings, v, "the command is not UTF-8".into(), true);
            };
            if rest.len() < prefix.len() || !rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
                return invalid(
                    findings,
                    v,
                    format!("expected \"{v} {prefix}<address>\""),
                    false,
                );
            }
            let after = &rest[prefix.len()..];
            let path_text = after.trim_start_matches([' ', '\t']);
            if path_text.len() != after.len() {
                findings.push(at0(Finding::new(
                    SMTP_CLIENT_SPACE_AFTER_COLON,
                    format!("{v} {prefix} followed by a blank before the address"),
                )));
            }
            let parsed = match parse_path(path_text, mail) {
                Ok(p) => p,
                Err(why) => return invalid(findings, v, why, true),
            };
            for issue in &parsed.issues {
                findings.push(at0(Finding::new(
                    SMTP_CLIENT_ADDRESS_SYNTAX,
                    format!("{v} {}: {issue}", quote(parsed.shown)),
                )));
            }
            let mut params = Vec::new();
            let params_text = parsed.rest.trim_end_matches([' ', '\t']);
            if params_text.len() != parsed.rest.len() {
                findings.push(at0(Finding::new(
                    SMTP_CLIENT_COMMAND_SYNTAX,
                    format!("{v}: trailing blanks"),
                )));
            }
            for word in params_text.split([' ', '\t']).filter(|w| !w.is_empty()) {
                match parse_param(word) {
                    Ok(p) => {
                        if params
                            .iter()
                            .any(|q: &EsmtpParam| q.keyword().eq_ignore_ascii_case(p.keyword()))
                        {
                            return invalid(
                                findings,
                                v,
                                format!("parameter {} given twice", p.keyword()),
                                false,
                            );
                        }
                        params.push(p)
                    }
                    Err(why) => return invalid(findings, v, why, false),
                }
            }
            if mail {
                Request::Mail {
                    from: parsed.path,
                    params,
                }
            } else {
                Request::Rcpt {
                    to: parsed.path,
                    params,
                }
            }
        }
        b"DATA" => no_args("DATA", findings, Request::Data),
        b"RSET" => no_args("RSET", findings, Request::Rset),
        b"QUIT" => no_args("QUIT", findings, Request::Quit),
        b"STARTTLS" => no_args("STARTTLS", findings, Request::StartTls),
        b"NOOP" => Request::Noop,
        b"HELP" => Request::Help((!args.is_empty()).then(|| args.to_string())),
        b"VRFY" | b"EXPN" => {
            let v = if upper.as_slice() == b"VRFY" {
                "VRFY"
            } else {
                "EXPN"
            };
            if args.is_empty() {
                return invalid(findings, v, format!("{v} needs an argument"), false);
            }
            if v == "VRFY" {
                Request::Vrfy(args.to_string())
            } else {
                Request::Expn(args.to_string())
            }
        }
        b"BDAT" => {
            let mut words = args.split([' ', '\t']).filter(|w| !w.is_empty());
            let size = words
                .next()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()));
            let size = size.and_then(|s| s.parse::<u64>().ok());
            let Some(size) = size else {
                return invalid(
                    findings,
                    "BDAT",
                    "expected \"BDAT size [LAST]\"".into(),
                    false,
                );
            };
            let last = match words.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                Some(w) => {
                    return invalid(findings, "BDAT", format!("unexpected {}", quote(w)), false);
                }
            };
            if words.next().is_some() {
                return invalid(findings, "BDAT", "too many arguments".into(), false);
            }
            note_blanks(findings, "BDAT");
            Request::Bdat { size, last }
        }
        b"AUTH" => {
            let mut words = args.split(' ');
            let mechanism = words.next().unwrap_or_default();
            if mechanism.is_empty() {
                return invalid(
                    findings,
                    "AUTH",
                    "expected \"AUTH mechanism [initial-response]\"".into(),
                    false,
                );
            }
            let initial = words.next();
            if words.next().is_some() || initial == Some("") {
                return invalid(
                    findings,
                    "AUTH",
                    "expected \"AUTH mechanism [initial-response]\"".into(),
                    false,
                );
            }
            note_blanks(findings, "AUTH");
            Request::Auth {
                mechanism: mechanism.to_string(),
                initial_response: initial.map(|s| Secret::new(s.to_string())),
            }
        }
        b"XCLIENT" => Request::Xclient(args.to_string()),
        _ => {
            let shown: String = String::from_utf8_lossy(verb).chars().take(64).collect();
            findings.push(at0(Finding::new(
                SMTP_CLIENT_UNKNOWN_COMMAND,
                format!("unknown command {}", quote(&shown)),
            )));
            Request::Unknown { verb: shown }
        }
    }
}

fn invalid(
    findings: &mut Vec<Finding>,
    verb: &'static str,
    reason: String,
    bad_address: bool,
) -> Request {
    findings.push(at0(Finding::new(
        if bad_address {
            SMTP_CLIENT_ADDRESS_SYNTAX
        } else {
            SMTP_CLIENT_COMMAND_SYNTAX
        },
        format!("{verb}: {reason}"),
    )));
    Request::Invalid {
        verb,
        reason,
        bad_address,
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", crate::escape::escape(s.as_bytes()))
}

struct ParsedPath<'a> {
    path: Path,
    /// The path as it appeared, for findings.
    shown: &'a str,
    rest: &'a str,
    issues: Vec<String>,
}

/// Parses `<path>` (or a bare address, with an issue) at the start of `text`.
fn parse_path(text: &str, reverse: bool) -> Result<ParsedPath<'_>, String> {
    let mut issues = Vec::new();
    let (inner, shown, rest, bracketed) = if let Some(after) = text.strip_prefix('<') {
        let close = find_close(after).ok_or("no closing \">\" after \"<\"")?;
        let rest = &after[close + 1..];
        if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            return Err(format!("unexpected text after \">\": {}", quote(rest)));
        }
        (&after[..close], &text[..close + 2], rest, true)
    } else {
        let end = text.find([' ', '\t']).unwrap_or(text.len());
        if end == 0 {
            return Err("no address".into());
        }
        issues.push("the address is not in angle brackets".into());
        (&text[..end], &text[..end], &text[end..], false)
    };
    let mut address = inner;
    let mut source_route = None;
    if address.starts_with('@') {
        match address.find(':') {
            Some(i) => {
                source_route = Some(address[..=i].to_string());
                issues.push("obsolete source route (ignored)".into());
                address = &address[i + 1..];
            }
            None => return Err("source route without \":\"".into()),
        }
    }
    if address.is_empty() {
        if !reverse {
            return Err("empty recipient address".into());
        }
    } else if reverse || !address.eq_ignore_ascii_case("postmaster") {
        issues.extend(check_mailbox(address));
    }
    Ok(ParsedPath {
        path: Path {
            address: address.to_string(),
            bracketed,
            source_route,
        },
        shown,
        rest,
        issues,
    })
}

/// Index of the `>` closing a path, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// RFC 5321 §4.1.2 `Mailbox`: what is wrong with it, if anything (UTF-8 is accepted here;
/// whether SMTPUTF8 was declared is the caller's business).
pub fn check_mailbox(address: &str) -> Vec<String> {
    let mut issues = Vec::new();
    // The domain follows the last "@" outside a quoted local part.
    let (local, domain) = if address.starts_with('"') {
        match find_quote_end(address) {
            Some(end) => match address[end + 1..].strip_prefix('@') {
                Some(d) => (&address[..=end], Some(d)),
                None if end + 1 == address.len() => (address, None),
                None => {
                    issues.push("text after the quoted local part".into());
                    return issues;
                }
            },
            None => {
                issues.push("unterminated quoted local part".into());
                return issues;
            }
        }
    } else {
        match address.rsplit_once('@') {
            Some((l, d)) => (l, Some(d)),
            None => (address, None),
        }
    };
    if local.is_empty() {
        issues.push("empty local part".into());
    } else if local.starts_with('"') {
        let inner = &local[1..local.len() - 1];
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if chars.next().is_none_or(|e| !(' '..='~').contains(&e)) {
                    issues.push("bad quoted pair in the local part".into());
                    break;
                }
            } else if c.is_ascii_control() {
                issues.push("control character in the quoted local part".into());
                break;
            }
        }
    } else {
        if local.split('.').any(str::is_empty) {
            issues.push("leading, trailing or double dot in the local part".into());
        }
        if let Some(c) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
            let what = match c {
                ' ' | '\t' => "a blank".to_string(),
                c => quote(&c.to_string()),
            };
            issues.push(format!("{what} in an unquoted local part"));
        }
    }
    if local.len() > 64 {
        issues.push(format!(
            "local part of {} octets (RFC 5321 §4.5.3.1.1 allows 64)",
            local.len()
        ));
    }
    match domain {
        None => issues.push("no \"@domain\"".into()),
        Some(d) => {
            if let Err(why) = check_domain_or_literal(d) {
                issues.push(why);
            }
        }
    }
    issues
}

fn find_quote_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'"' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The argument of EHLO/HELO/LHLO: a domain or an address literal.
fn check_helo(arg: &str) -> Result<(), String> {
    check_domain_or_literal(arg)
}

fn check_domain_or_literal(d: &str) -> Result<(), String> {
    if let Some(inner) = d.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err("address literal without \"]\"".into());
        };
        if let Some(v6) = inner
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("IPv6:"))
            .map(|_| &inner[5..])
        {
            return v6
                .parse::<Ipv6Addr>()
                .map(|_| ())
                .map_err(|_| format!("bad IPv6 address literal {}", quote(d)));
        }
        if inner.parse::<Ipv4Addr>().is_ok() {
            return Ok(());
        }
        // General-address-literal: Standardized-tag ":" dcontent.
        return match inner.split_once(':') {
            Some((tag, content))
                if !tag.is_empty()
                    && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !content.is_empty()
                    && content
                        .chars()
                        .all(|c| ('!'..='~').contains(&c) && !"[]\\".contains(c)) =>
            {
                Ok(())
            }
            _ => Err(format!("bad address literal {}", quote(d))),
        };
    }
    check_domain(d)
}

/// RFC 5321 §4.1.2 `Domain` (U-labels accepted).
pub fn check_domain(d: &str) -> Result<(), String> {
    if d.is_empty() {
        return Err("empty domain".into());
    }
    if d.len() > 255 {
        return Err(format!("domain of {} octets (at most 255)", d.len()));
    }
    for label in d.split('.') {
        if label.is_empty() {
            return Err(format!("empty label in domain {}", quote(d)));
        }
        if label.len() > 63 {
            return Err(format!(
                "label of {} octets in domain {}",
                label.len(),
                quote(d)
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii()))
        {
            return Err(format!(
                "{} in domain {}",
                match c {
                    ' ' | '\t' => "a blank".to_string(),
                    c => quote(&c.to_string()),
                },
                quote(d)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "label starting or ending with \"-\" in {}",
                quote(d)
            ));
        }
    }
    Ok(())
}

fn parse_param(word: &str) -> Result<EsmtpParam, String> {
    let (keyword, value) = match word.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (word, None),
    };
    if keyword.is_empty()
        || !keyword
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || keyword.starts_with('-')
    {
        return Err(format!("bad parameter {}", quote(word)));
    }
    let upper = keyword.to_ascii_uppercase();
    let need = |v: Option<&str>| -> Result<String, String> {
        match v {
            Some(v) if !v.is_empty() => {
                if v.chars()
                    .any(|c| c.is_ascii_control() || c == ' ' || c == '=')
                {
                    Err(format!("bad value in {}", quote(word)))
                } else {
                    Ok(v.to_string())
                }
            }
            _ => Err(format!("{upper} needs a value")),
        }
    };
    let none = |p: EsmtpParam| {
        if value.is_some() {
            Err(format!("{upper} takes no value"))
        } else {
            Ok(p)
        }
    };
    match upper.as_str() {
        "SIZE" => {
            let v = need(value)?;
            if !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 20 {
                return Err(format!("bad SIZE value {}", quote(&v)));
            }
            v.parse()
                .map(EsmtpParam::Size)
                .map_err(|_| format!("bad SIZE value {}", quote(&v)))
        }
        "BODY" => {
            let v = need(value)?;
            match v.to_ascii_uppercase().as_str() {
                "7BIT" => Ok(EsmtpParam::Body(Body::SevenBit)),
                "8BITMIME" => Ok(EsmtpParam::Body(Body::EightBitMime)),
                "BINARYMIME" => Ok(EsmtpParam::Body(Body::BinaryMime)),
                _ => Err(format!("bad BODY value {}", quote(&v))),
            }
        }
        "SMTPUTF8" => none(EsmtpParam::SmtpUtf8),
        "REQUIRETLS" => none(EsmtpParam::RequireTls),
        "RET" => {
            let v = need(value)?;
            match v.to_ascii_uppercase().as_str() {
                "FULL" => Ok(EsmtpParam::Ret(Ret::Full)),
                "HDRS" => Ok(EsmtpParam::Ret(Ret::Hdrs)),
                _ => Err(format!("bad RET value {}", quote(&v))),
            }
        }
        "ENVID" => need(value).map(EsmtpParam::EnvId),
        "ORCPT" => {
            let v = need(value)?;
            if !v.contains(';') {
                return Err(format!(
                    "ORCPT needs \"addr-type;address\", got {}",
                    quote(&v)
                ));
            }
            Ok(EsmtpParam::Orcpt(v))
        }
        "AUTH" => need(value).map(EsmtpParam::Auth),
        "NOTIFY" => {
            let v = need(value)?;
            let mut n = Notify::default();
            let mut never = false;
            for part in v.split(',') {
                match part.to_ascii_uppercase().as_str() {
                    "NEVER" => never = true,
                    "SUCCESS" => n.success = true,
                    "FAILURE" => n.failure = true,
                    "DELAY" => n.delay = true,
                    _ => return Err(format!("bad NOTIFY value {}", quote(&v))),
                }
            }
            if never && (n.success || n.failure || n.delay) {
                return Err("NOTIFY=NEVER cannot be combined".into());
            }
            Ok(EsmtpParam::Notify(n))
        }
        _ => Ok(EsmtpParam::Unknown {
            keyword: keyword.to_string(),
            value: value.map(str::to_string),
        }),
    }
}

/// One AUTH response line (the client's answer to a `334` challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResponse {
    /// The line without its line end (base64, `*` to cancel, or empty).
    pub text: Vec<u8>,
    /// Deviations (offsets relative to the line start).
    pub findings: Vec<Finding>,
}

/// Decodes one AUTH response line (the client's answer to a `334` challenge): the text
/// without its line end, and findings (bare LF, bare CR, NUL; the 512-octet rule does not
/// apply). Over [`RequestLimits::max_auth_line`] it is an error like an over-long command.
pub fn decode_auth_response(
    input: &[u8],
    limits: &RequestLimits,
) -> Result<Decoded<AuthResponse>, RequestError> {
    let max = limits.max_auth_line.max(limits.max_line);
    let Some(len) = frame_line(input, max)? else {
        return Ok(Decoded::Incomplete);
    };
    let line = &input[..len];
    let findings = lint_command_line(line, 0, Direction::ClientToServer)
        .into_iter()
        .filter(|f| f.kind != SMTP_COMMAND_TOO_LONG || len > RFC_MAX_AUTH_LINE)
        .collect();
    let (content, _) = strip_line_end(line);
    Ok(Decoded::Complete {
        value: AuthResponse {
            text: content.to_vec(),
            findings,
        },
        consumed: len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(line: &[u8]) -> DecodedRequest {
        match decode_command(line, &RequestLimits::default()) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(consumed, line.len(), "{line:?}");
                value
            }
            other => panic!("{other:?}"),
        }
    }

    fn ids(d: &DecodedRequest) -> Vec<&'static str> {
        d.findings.iter().map(|f| f.kind.id).collect()
    }

    #[test]
    fn verbs_are_case_insensitive_and_parsed() {
        assert_eq!(
            dec(b"ehlo client.example\r\n").request,
            Request::Ehlo("client.example".into())
        );
        assert_eq!(
            dec(b"HeLo [192.0.2.1]\r\n").request,
            Request::Helo("[192.0.2.1]".into())
        );
        assert_eq!(dec(b"LHLO x\r\n").request, Request::Lhlo("x".into()));
        assert_eq!(dec(b"data\r\n").request, Request::Data);
        assert_eq!(dec(b"RSET\r\n").request, Request::Rset);
        assert_eq!(dec(b"NOOP anything\r\n").request, Request::Noop);
        assert_eq!(dec(b"QUIT\r\n").request, Request::Quit);
        assert_eq!(dec(b"STARTTLS\r\n").request, Request::StartTls);
        assert_eq!(dec(b"VRFY bob\r\n").request, Request::Vrfy("bob".into()));
        assert_eq!(dec(b"EXPN list\r\n").request, Request::Expn("list".into()));
        assert_eq!(dec(b"HELP\r\n").request, Request::Help(None));
        assert_eq!(
            dec(b"XCLIENT ADDR=1.2.3.4\r\n").request,
            Request::Xclient("ADDR=1.2.3.4".into())
        );
        assert_eq!(
            dec(b"BDAT 1000 last\r\n").request,
            Request::Bdat {
                size: 1000,
                last: true
            }
        );
        assert_eq!(
            dec(b"BDAT 0\r\n").request,
            Request::Bdat {
                size: 0,
                last: false
            }
        );
        match dec(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n").request {
            Request::Auth {
                mechanism,
                initial_response: Some(r),
            } => {
                assert_eq!(mechanism, "PLAIN");
                assert_eq!(r.expose(), "AGFsaWNlAHNlY3JldA==");
            }
            other => panic!("{other:?}"),
        }
        let d = dec(b"FOO bar\r\n");
        assert_eq!(d.request, Request::Unknown { verb: "FOO".into() });
        assert_eq!(ids(&d), vec!["smtp.client.unknown-command"]);
    }

    #[test]
    fn mail_and_rcpt_with_params() {
        let d = dec(b"MAIL FROM:<a@example.test> SIZE=1000 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=x+2B AUTH=<> X-FOO=bar X-FLAG\r\n");
        assert!(d.findings.is_empty(), "{:?}", d.findings);
        match d.request {
            Request::Mail { from, params } => {
                assert_eq!(from.address, "a@example.test");
                assert!(from.bracketed);
                assert_eq!(
                    params,
                    vec![
                        EsmtpParam::Size(1000),
                        EsmtpParam::Body(Body::EightBitMime),
                        EsmtpParam::SmtpUtf8,
                        EsmtpParam::Ret(Ret::Hdrs),
                        EsmtpParam::EnvId("x+2B".into()),
                        EsmtpParam::Auth("<>".into()),
                        EsmtpParam::Unknown {
                            keyword: "X-FOO".into(),
                            value: Some("bar".into())
                        },
                        EsmtpParam::Unknown {
                            keyword: "X-FLAG".into(),
                            value: None
                        },
                    ]
                );
                let shown: Vec<String> = params.iter().map(ToString::to_string).collect();
                assert_eq!(shown[1], "BODY=8BITMIME");
            }
            other => panic!("{other:?}"),
        }
        match dec(
            b"RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.test\r\n",
        )
        .request
        {
            Request::Rcpt { to, params } => {
                assert_eq!(to.address, "b@example.test");
                assert_eq!(params[0].to_string(), "NOTIFY=SUCCESS,FAILURE");
                assert_eq!(params[1], EsmtpParam::Orcpt("rfc822;b@example.test".into()));
            }
            other => panic!("{other:?}"),
        }
        match dec(b"MAIL FROM:<>\r\n").request {
            Request::Mail { from, params } => assert!(from.is_null() && params.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            dec(b"RCPT TO:<Postmaster>\r\n").request,
            Request::Rcpt { .. }
        ));
        assert!(dec(b"RCPT TO:<Postmaster>\r\n").findings.is_empty());
    }

    #[test]
    fn tolerated_deviations_are_findings() {
        let d = dec(b"MAIL FROM: <a@example.test>\r\n");
        assert!(matches!(d.request, Request::Mail { .. }));
        assert_eq!(ids(&d), vec!["smtp.client.space-after-colon"]);
        let d = dec(b"MAIL FROM:a@example.test\n");
        assert_eq!(
            ids(&d),
            vec!["smtp.command.bare-lf", "smtp.client.address-syntax"]
        );
        assert_eq!(d.ending, LineEnding::Lf);
        let d = dec(b"RCPT TO:<a b@example.test>\r\n");
        assert!(matches!(d.request, Request::Rcpt { .. }));
        assert_eq!(ids(&d), vec!["smtp.client.address-syntax"]);
        assert!(
            d.findings[0].detail.contains("blank"),
            "{}",
            d.findings[0].detail
        );
        let d = dec(b"RCPT TO:<b@exa_mple..test>\r\n");
        assert_eq!(ids(&d), vec!["smtp.client.address-syntax"]);
        let d = dec(b"RCPT TO:<@relay.test:b@example.test>\r\n");
        match &d.request {
            Request::Rcpt { to, .. } => {
                assert_eq!(to.address, "b@example.test");
                assert_eq!(to.source_route.as_deref(), Some("@relay.test:"));
            }
            other => panic!("{other:?}"),
        }
        let d = dec(b"EHLO my_host\r\n");
        assert_eq!(ids(&d), vec!["smtp.client.helo-syntax"]);
        let d = dec(b"DATA \r\n");
        assert_eq!(d.request, Request::Data);
        assert_eq!(ids(&d), vec!["smtp.client.command-syntax"]);
        let d = dec(b"RCPT TO:<\"a b\"@[IPv6:2001:db8::1]>\r\n");
        assert!(d.findings.is_empty(), "{:?}", d.findings);
        let d = dec("RCPT TO:<jöran@bücher.example>\r\n".as_bytes());
        assert!(d.findings.is_empty(), "{:?}", d.findings);
    }

    #[test]
    fn unusable_commands_are_invalid() {
        for (line, bad_address) in [
            (&b"MAIL FROM:<a@example.test\r\n"[..], true),
            (b"MAIL TO:<a@example.test>\r\n", false),
            (b"MAIL FROM:<a@b.test> SIZE=abc\r\n", false),
            (b"MAIL FROM:<a@b.test> BODY=9BIT\r\n", false),
            (b"MAIL FROM:<a@b.test> SIZE=1 SIZE=2\r\n", false),
            (b"RCPT TO:<>\r\n", true),
            (b"RCPT TO:\r\n", true),
            (b"RCPT TO:<a@b.test> NOTIFY=NEVER,DELAY\r\n", false),
            (b"DATA now\r\n", false),
            (b"BDAT x\r\n", false),
            (b"BDAT 10 FIRST\r\n", false),
            (b"EHLO\r\n", false),
            (b"AUTH\r\n", false),
            (b"AUTH PLAIN a b\r\n", false),
            (b"VRFY\r\n", false),
        ] {
            let d = dec(line);
            match &d.request {
                Request::Invalid { bad_address: b, .. } => {
                    assert_eq!(*b, bad_address, "{:?}", String::from_utf8_lossy(line))
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
            }
            assert_eq!(d.findings.len(), 1, "{:?}", d.findings);
        }
    }

    #[test]
    fn framing_and_limits() {
        let l = RequestLimits::default();
        assert_eq!(decode_command(b"EHLO x", &l), Ok(Decoded::Incomplete));
        assert_eq!(decode_command(b"", &l), Ok(Decoded::Incomplete));
        let long = vec![b'a'; 5000];
        assert_eq!(
            decode_command(&long, &l),
            Err(RequestError::LineTooLong { limit: 4096 })
        );
        let mut line = b"NOOP ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 600));
        line.extend_from_slice(b"\r\n");
        assert_eq!(ids(&dec(&line)), vec!["smtp.command.line-too-long"]);
        // AUTH lines may be long (RFC 4954).
        let mut line = b"AUTH PLAIN ".to_vec();
        line.extend(std::iter::repeat_n(b'A', 6000));
        line.extend_from_slice(b"\r\n");
        let d = dec(&line);
        assert!(d.findings.is_empty());
        // Two commands: only the first is consumed.
        match decode_command(b"RSET\r\nQUIT\r\n", &l) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(consumed, 6);
                assert_eq!(value.request, Request::Rset);
            }
            other => panic!("{other:?}"),
        }
        match decode_auth_response(b"dGVzdA==\r\nrest", &l) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(consumed, 10);
                assert_eq!(value.text, b"dGVzdA==");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_never_panics() {
        for line in [
            &b"\xff\xfe\r\n"[..],
            b"MAIL FROM:<\xff>\r\n",
            b"MAIL\r\n",
            b"MAIL FROM:<\"unterminated>\r\n",
            b"RCPT TO:<\"a\\\r\n",
            b"RCPT TO:<[1.2.3]>\r\n",
            b"RCPT TO:<a@[>\r\n",
            b"\r\n",
            b"\n",
            b" \r\n",
            b"MAIL FROM:<@>\r\n",
        ] {
            let _ = decode_command(line, &RequestLimits::default());
        }
    }
}
