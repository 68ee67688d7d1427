//! XOAUTH2 (Google's, also spoken by Microsoft 365 and others) and OAUTHBEARER (RFC 7628):
//! the client's initial response, the parsers of both sides' messages, and the explanations
//! `mailscope sasl decode` prints.
//!
//! Both are one-message mechanisms: the client sends the token in its initial response and
//! the server either reports success or sends one challenge with a JSON error, which the
//! client must acknowledge before the server reports failure (an empty response for XOAUTH2,
//! a single `0x01` for OAUTHBEARER, RFC 7628 §3.2.3).
//!
//! The session machines speak them as [`Mechanism::XOauth2`](super::Mechanism::XOauth2) and
//! [`Mechanism::OAuthBearer`](super::Mechanism::OAuthBearer) with these builders and parsers:
//! the client's [`Credentials::password`](super::Credentials::password) is the token, and the
//! server checks a token against what its [`PasswordLookup`](super::PasswordLookup) returns
//! for the user (mailscope's sink treats a users file's password as the expected token).

use super::{ClientMessage, MAX_MESSAGE_LEN, MAX_NAME_LEN, SaslError, quote, scram};
use crate::secret::Secret;
use crate::transcript::Direction;

/// The separator of RFC 7628's key/value pairs (`kvsep`), shown as `^A` in the specs.
const KVSEP: u8 = 0x01;

/// One of the two OAuth 2.0 SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OAuthMechanism {
    /// `XOAUTH2`: `user=USER ^A auth=Bearer TOKEN ^A ^A` (Google's documentation).
    XOAuth2,
    /// `OAUTHBEARER` (RFC 7628): a GS2 header, then `host=`, `port=`, `auth=` pairs.
    OAuthBearer,
}

impl OAuthMechanism {
    /// Both mechanisms; OAUTHBEARER first because it is the standard one.
    pub const ALL: &[OAuthMechanism] = &[OAuthMechanism::OAuthBearer, OAuthMechanism::XOAuth2];

    /// The registered name, as sent in `AUTH <name>`.
    pub const fn name(self) -> &'static str {
        match self {
            OAuthMechanism::XOAuth2 => "XOAUTH2",
            OAuthMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Parses a mechanism name case-insensitively.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }

    /// What the client sends after the server's error challenge so that the server can end
    /// the exchange: nothing for XOAUTH2 (Google: "an empty response"), a single `0x01` for
    /// OAUTHBEARER (RFC 7628 §3.2.3).
    pub const fn error_acknowledgement(self) -> &'static [u8] {
        match self {
            OAuthMechanism::XOAuth2 => b"",
            OAuthMechanism::OAuthBearer => b"\x01",
        }
    }
}

impl std::fmt::Display for OAuthMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the client connected, for OAUTHBEARER's optional `host` and `port` keys
/// (RFC 7628 §3.1; servers should check them against their own name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthTarget {
    /// The host name the client connected to.
    pub host: Option<String>,
    /// The port the client connected to.
    pub port: Option<u16>,
}

/// The XOAUTH2 initial response: `user=USER ^A auth=Bearer TOKEN ^A ^A`.
///
/// Fails on an empty or over-long user, a user or token with control characters, or a token
/// with characters outside visible ASCII (a bearer token never has them; a space or line end
/// is a copy-and-paste accident).
pub fn xoauth2_initial_response(
    user: &str,
    token: &Secret<String>,
) -> Result<ClientMessage, SaslError> {
    check_user(user)?;
    let token = check_token(token)?;
    let mut bytes = format!("user={user}").into_bytes();
    bytes.push(KVSEP);
    bytes.extend_from_slice(format!("auth=Bearer {token}").as_bytes());
    bytes.extend_from_slice(&[KVSEP, KVSEP]);
    Ok(ClientMessage::new(
        bytes,
        format!(
            "user={}, {}-byte bearer token",
            quote(user.as_bytes()),
            token.len()
        ),
    ))
}

/// The OAUTHBEARER initial response (RFC 7628 §3.1):
/// `n,a=USER, ^A host=HOST ^A port=PORT ^A auth=Bearer TOKEN ^A ^A`, where the user is the
/// GS2 authzid (`,` and `=` escaped as in SCRAM) and host and port are left out if `None`.
pub fn oauthbearer_initial_response(
    user: &str,
    target: &OAuthTarget,
    token: &Secret<String>,
) -> Result<ClientMessage, SaslError> {
    check_user(user)?;
    let token = check_token(token)?;
    let mut bytes = format!("n,a={},", scram::escape_saslname(user)).into_bytes();
    bytes.push(KVSEP);
    if let Some(host) = &target.host {
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SaslError::InvalidParameter(
                "the OAUTHBEARER host must be non-empty visible ASCII",
            ));
        }
        bytes.extend_from_slice(format!("host={host}").as_bytes());
        bytes.push(KVSEP);
    }
    if let Some(port) = target.port {
        bytes.extend_from_slice(format!("port={port}").as_bytes());
        bytes.push(KVSEP);
    }
    bytes.extend_from_slice(format!("auth=Bearer {token}").as_bytes());
    bytes.extend_from_slice(&[KVSEP, KVSEP]);
    Ok(ClientMessage::new(
        bytes,
        format!(
            "authzid={}, {}-byte bearer token",
            quote(user.as_bytes()),
            token.len()
        ),
    ))
}

fn check_user(user: &str) -> Result<(), SaslError> {
    if user.is_empty() || user.len() > MAX_NAME_LEN {
        return Err(SaslError::InvalidCredentials(
            "the user must be 1 to 1024 bytes",
        ));
    }
    if user.chars().any(char::is_control) {
        return Err(SaslError::InvalidCredentials(
            "the user cannot contain control characters",
        ));
    }
    Ok(())
}

fn check_token(token: &Secret<String>) -> Result<&str, SaslError> {
    let token = token.expose().as_str();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SaslError::InvalidCredentials(
            "the token must be non-empty visible ASCII (no spaces or line ends)",
        ));
    }
    Ok(token)
}

/// A client message of either mechanism, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthClientMessage {
    /// The initial response with the token.
    Initial(OAuthInitialResponse),
    /// The acknowledgement of an error challenge (empty for XOAUTH2, `0x01` for
    /// OAUTHBEARER); the server then fails the exchange.
    ErrorAcknowledgement,
}

/// Key/value pairs as sent, values secret (one of them is the token).
pub type Pairs = Vec<(String, Secret<Vec<u8>>)>;

/// An initial response, parsed. Key/value pairs are kept in order and as sent; the `auth`
/// value is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthInitialResponse {
    /// The GS2 header as sent (`n,a=user@example.com,`); `None` for XOAUTH2.
    pub gs2_header: Option<String>,
    /// The GS2 channel-binding flag: `n`, `y` or `p=NAME`; `None` for XOAUTH2.
    pub gs2_flag: Option<String>,
    /// The user: XOAUTH2's `user=`, or OAUTHBEARER's GS2 authzid (unescaped).
    pub user: Option<String>,
    /// The key/value pairs in order, `user` (XOAUTH2) and `auth` included.
    pub pairs: Pairs,
}

impl OAuthInitialResponse {
    /// The value of the first pair named `key` (case-sensitive, as RFC 7628's keys are).
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.expose().as_slice())
    }

    /// The bearer token from `auth=Bearer TOKEN` (the scheme name is case-insensitive,
    /// RFC 7628 §4); `None` if there is no `auth` or it is another scheme.
    pub fn bearer_token(&self) -> Option<Secret<Vec<u8>>> {
        let auth = self.get("auth")?;
        let (scheme, token) = split_scheme(auth);
        scheme
            .eq_ignore_ascii_case(b"bearer")
            .then(|| Secret::new(token.to_vec()))
    }
}

/// `Bearer xyz` → (`Bearer`, `xyz`).
fn split_scheme(auth: &[u8]) -> (&[u8], &[u8]) {
    match auth.iter().position(|&b| b == b' ') {
        Some(at) => (&auth[..at], &auth[at + 1..]),
        None => (auth, &[]),
    }
}

/// Parses a client message of `mech`. Deviations from the grammar are errors
/// ([`SaslError::Malformed`]) that say what is wrong.
pub fn parse_client_message(
    mech: OAuthMechanism,
    bytes: &[u8],
) -> Result<OAuthClientMessage, SaslError> {
    let malformed = |m: String| SaslError::Malformed(m);
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(SaslError::TooLarge(bytes.len()));
    }
    if bytes == mech.error_acknowledgement() {
        return Ok(OAuthClientMessage::ErrorAcknowledgement);
    }
    let (gs2, pairs_text) = match mech {
        OAuthMechanism::XOAuth2 => (None, bytes),
        OAuthMechanism::OAuthBearer => {
            let Some(end) = bytes.iter().position(|&b| b == KVSEP) else {
                return Err(malformed(
                    "no ^A (0x01) after the GS2 header; expected \"n,a=USER,^A...\"".into(),
                ));
            };
            let header = std::str::from_utf8(&bytes[..end])
                .map_err(|_| malformed("the GS2 header is not UTF-8".into()))?;
            let gs2 = scram::parse_gs2(header).map_err(malformed)?;
            if !gs2.rest.is_empty() {
                return Err(malformed(format!(
                    "unexpected {} after the GS2 header",
                    quote(gs2.rest.as_bytes())
                )));
            }
            let flag = header.split(',').next().unwrap_or_default().to_owned();
            (
                Some((header.to_owned(), flag, gs2.authzid)),
                &bytes[end + 1..],
            )
        }
    };
    let pairs = parse_pairs(pairs_text).map_err(malformed)?;
    let user = match (&gs2, mech) {
        (Some((_, _, authzid)), _) => authzid.clone(),
        (None, _) => match pairs.iter().find(|(k, _)| k == "user") {
            Some((_, v)) => Some(
                String::from_utf8(v.expose().clone())
                    .map_err(|_| malformed("the user is not UTF-8".into()))?,
            ),
            None => None,
        },
    };
    if mech == OAuthMechanism::XOAuth2 && user.is_none() {
        return Err(malformed("no user= pair".into()));
    }
    if !pairs.iter().any(|(k, _)| k == "auth") {
        return Err(malformed("no auth= pair, which RFC 7628 requires".into()));
    }
    let (gs2_header, gs2_flag) = match gs2 {
        Some((header, flag, _)) => (Some(header), Some(flag)),
        None => (None, None),
    };
    Ok(OAuthClientMessage::Initial(OAuthInitialResponse {
        gs2_header,
        gs2_flag,
        user,
        pairs,
    }))
}

/// `key=value ^A ... ^A` followed by the final `^A` (RFC 7628 §3.1: `*kvpair kvsep`, where
/// `kvpair = key "=" value kvsep`, `key = 1*ALPHA`).
fn parse_pairs(mut text: &[u8]) -> Result<Pairs, String> {
    let mut pairs = Vec::new();
    loop {
        match text {
            [] => return Err("missing the final ^A (0x01) that ends the message".into()),
            [KVSEP] => return Ok(pairs),
            [KVSEP, rest @ ..] => {
                return Err(format!(
                    "{} after the final ^A (0x01)",
                    quote(&rest[..rest.len().min(40)])
                ));
            }
            _ => {}
        }
        let Some(end) = text.iter().position(|&b| b == KVSEP) else {
            return Err(format!(
                "{} is not followed by ^A (0x01)",
                quote(&text[..text.len().min(40)])
            ));
        };
        let pair = &text[..end];
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            return Err(format!("{} is not a key=value pair", quote(pair)));
        };
        let key = &pair[..eq];
        if key.is_empty() || !key.iter().all(u8::is_ascii_alphabetic) {
            return Err(format!("key {} is not made of letters", quote(key)));
        }
        // Only ASCII letters passed the check above, so this is plain ASCII.
        let key = String::from_utf8_lossy(key).into_owned();
        pairs.push((key, Secret::new(pair[eq + 1..].to_vec())));
        text = &text[end + 1..];
    }
}

/// The server's error challenge (RFC 7628 §3.2.2; Google's XOAUTH2 has the same shape), a
/// JSON object. Members are kept in order with their values as text: strings unescaped,
/// anything else (numbers, `true`, nested objects) as it appeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthServerError {
    /// The members, in order.
    pub members: Vec<(String, String)>,
}

impl OAuthServerError {
    /// The value of member `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the server's error challenge; fails if it is not a JSON object.
pub fn parse_server_error(bytes: &[u8]) -> Result<OAuthServerError, SaslError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| SaslError::Malformed("the error challenge is not UTF-8".into()))?;
    json::object(text)
        .map(|members| OAuthServerError { members })
        .map_err(|e| SaslError::Malformed(format!("the error challenge is not a JSON object: {e}")))
}

/// Explains one raw (base64-decoded) message of `mech` sent in `direction`, in the style of
/// [`super::explain()`]: a title line, then one indented line per field. The token is shown
/// only if `show_secrets`. Never fails: malformed input is explained as such.
pub fn explain_oauth(
    mech: OAuthMechanism,
    direction: Direction,
    bytes: &[u8],
    show_secrets: bool,
) -> String {
    let lines = match direction {
        Direction::ClientToServer => explain_client(mech, bytes, show_secrets),
        Direction::ServerToClient => explain_server(mech, bytes),
    };
    lines.join("\n")
}

fn explain_client(mech: OAuthMechanism, bytes: &[u8], show: bool) -> Vec<String> {
    let grammar = match mech {
        OAuthMechanism::XOAuth2 => "Google: user=USER ^A auth=Bearer TOKEN ^A ^A",
        OAuthMechanism::OAuthBearer => {
            "RFC 7628: GS2 header ^A host=HOST ^A port=PORT ^A auth=Bearer TOKEN ^A ^A"
        }
    };
    let message = match parse_client_message(mech, bytes) {
        Ok(m) => m,
        Err(e) => {
            let reason = match e {
                SaslError::Malformed(m) => m,
                other => other.to_string(),
            };
            return vec![format!(
                "{mech} initial response, malformed ({grammar}): {reason}"
            )];
        }
    };
    let response = match message {
        OAuthClientMessage::ErrorAcknowledgement => {
            let what = match mech {
                OAuthMechanism::XOAuth2 => "empty response",
                OAuthMechanism::OAuthBearer => "dummy response ^A (0x01, RFC 7628 §3.2.3)",
            };
            return vec![format!(
                "{mech} {what}: acknowledges the server's error; the server now fails the exchange"
            )];
        }
        OAuthClientMessage::Initial(r) => r,
    };
    let mut lines = vec![format!("{mech} initial response ({grammar})")];
    if let (Some(header), Some(flag)) = (&response.gs2_header, &response.gs2_flag) {
        let flag = match flag.as_str() {
            "n" => "no channel binding",
            "y" => "client supports channel binding, but thinks the server does not",
            _ => "channel binding requested, which OAUTHBEARER does not define",
        };
        let authzid = match &response.user {
            Some(user) => format!(", authzid {}", quote(user.as_bytes())),
            None => ", no authzid (RFC 7628 allows leaving it out; many servers need it)".into(),
        };
        lines.push(format!(
            "  gs2 header {}: {flag}{authzid}",
            quote(header.as_bytes())
        ));
    }
    for (key, value) in &response.pairs {
        let value = value.expose();
        let line = match key.as_str() {
            "user" => format!("user: {}", quote(value)),
            "host" => format!(
                "host: {} (the server should check it is its own name)",
                quote(value)
            ),
            "port" => match std::str::from_utf8(value)
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
            {
                Some(p) if !value.starts_with(b"0") => format!("port: {p}"),
                _ => format!("port: {}, not a port number", quote(value)),
            },
            "auth" => auth_line(value, show),
            "mthd" | "path" | "post" | "qs" => {
                format!("{key}: {} (reserved by RFC 7628 §3.1.1)", quote(value))
            }
            _ => format!("{key}: {} (unknown key; servers ignore it)", quote(value)),
        };
        lines.push(format!("  {line}"));
    }
    lines
}

fn auth_line(value: &[u8], show: bool) -> String {
    if value.is_empty() {
        return "auth: empty: asks the server which scope it needs (RFC 7628 §4.3)".into();
    }
    let (scheme, token) = split_scheme(value);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        let shown = if show {
            quote(value)
        } else {
            format!("{} bytes, hidden", value.len())
        };
        return format!("auth: scheme {}, not Bearer: {shown}", quote(scheme));
    }
    let shown = if show {
        quote(token)
    } else {
        format!("{} bytes, hidden", token.len())
    };
    let note = if token.is_empty() {
        ", empty"
    } else if !is_b64token(token) {
        ", not a valid RFC 6750 token (letters, digits, -._~+/ and trailing =)"
    } else if token.starts_with(b"ya29.") {
        ", a Google access token"
    } else if token.starts_with(b"eyJ") {
        ", a JWT (Microsoft and others)"
    } else {
        ""
    };
    format!("auth: Bearer token {shown}{note}")
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && token[..body_len]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn explain_server(mech: OAuthMechanism, bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return vec![format!(
            "{mech} challenge: empty (the server asks for the initial response)"
        )];
    }
    let error = match parse_server_error(bytes) {
        Ok(e) => e,
        Err(_) => {
            return vec![format!(
                "{mech} challenge {}: not the JSON error object the mechanism defines",
                quote(bytes)
            )];
        }
    };
    let ack = match mech {
        OAuthMechanism::XOAuth2 => "an empty line",
        OAuthMechanism::OAuthBearer => "AQ== (base64 of ^A)",
    };
    let mut lines = vec![format!(
        "{mech} error challenge (JSON): the token was refused; the client answers with {ack}, then the server fails the exchange"
    )];
    for (name, value) in &error.members {
        let meaning = match (name.as_str(), value.as_str()) {
            ("status", "invalid_token" | "401") => {
                ": the token is expired, revoked or not for this server; get a new one"
            }
            ("status", "insufficient_scope") => ": the token lacks the scope the server needs",
            ("status", "invalid_request" | "400") => {
                ": the request was malformed (user, host or port wrong?)"
            }
            ("status", _) => "",
            ("scope", _) => ": the scope a token for this server needs",
            ("schemes", _) => ": the token types the server accepts",
            ("openid-configuration", _) => ": where to discover the authorization server",
            _ => "",
        };
        lines.push(format!("  {name}: {}{meaning}", quote(value.as_bytes())));
    }
    if error.get("status").is_none() {
        lines.push("  note: no \"status\" member, which RFC 7628 §3.2.2 requires".into());
    }
    lines
}

/// Just enough JSON (RFC 8259) for the flat error object: an object whose member values are
/// kept as text.
mod json {
    pub(super) fn object(text: &str) -> Result<Vec<(String, String)>, String> {
        let mut p = Parser { text, at: 0 };
        p.ws();
        p.expect(b'{')?;
        let mut members = Vec::new();
        p.ws();
        if p.peek() == Some(b'}') {
            p.at += 1;
        } else {
            loop {
                p.ws();
                let name = p.string()?;
                p.ws();
                p.expect(b':')?;
                p.ws();
                let value = p.value(0)?;
                members.push((name, value));
                p.ws();
                match p.peek() {
                    Some(b',') => p.at += 1,
                    Some(b'}') => {
                        p.at += 1;
                        break;
                    }
                    _ => return Err(p.error("expected , or }")),
                }
            }
        }
        p.ws();
        if p.at != text.len() {
            return Err(p.error("text after the object"));
        }
        Ok(members)
    }

    struct Parser<'a> {
        text: &'a str,
        at: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.at).copied()
        }

        fn error(&self, what: &str) -> String {
            format!("{what} at byte {}", self.at)
        }

        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                self.at += 1;
            }
        }

        fn expect(&mut self, b: u8) -> Result<(), String> {
            if self.peek() == Some(b) {
                self.at += 1;
                Ok(())
            } else {
                Err(self.error(&format!("expected {:?}", b as char)))
            }
        }

        /// A value as text: strings unescaped, everything else as written.
        fn value(&mut self, depth: usize) -> Result<String, String> {
            // Nesting is bounded so a hostile challenge cannot exhaust the stack.
            if depth > 32 {
                return Err(self.error("nested too deeply"));
            }
            let start = self.at;
            match self.peek() {
                Some(b'"') => return self.string(),
                Some(open @ (b'{' | b'[')) => {
                    let close = if open == b'{' { b'}' } else { b']' };
                    self.at += 1;
                    self.ws();
                    if self.peek() == Some(close) {
                        self.at += 1;
                    } else {
                        loop {
                            self.ws();
                            if open == b'{' {
                                self.string()?;
                                self.ws();
                                self.expect(b':')?;
                                self.ws();
                            }
                            self.value(depth + 1)?;
                            self.ws();
                            match self.peek() {
                                Some(b',') => self.at += 1,
                                Some(c) if c == close => {
                                    self.at += 1;
                                    break;
                                }
                                _ => return Err(self.error("unterminated object or array")),
                            }
                        }
                    }
                }
                Some(b'-' | b'0'..=b'9') => {
                    while matches!(
                        self.peek(),
                        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    ) {
                        self.at += 1;
                    }
                }
                _ => {
                    let rest = &self.text[self.at..];
                    let word = ["true", "false", "null"]
                        .into_iter()
                        .find(|w| rest.starts_with(w))
                        .ok_or_else(|| self.error("expected a value"))?;
                    self.at += word.len();
                }
            }
            Ok(self.text[start..self.at].to_owned())
        }

        fn string(&mut self) -> Result<String, String> {
            self.expect(b'"')?;
            let mut out = String::new();
            loop {
                let rest = &self.text[self.at..];
                let Some(c) = rest.chars().next() else {
                    return Err(self.error("unterminated string"));
                };
                self.at += c.len_utf8();
                match c {
                    '"' => return Ok(out),
                    '\\' => {
                        let e = self
                            .peek()
                            .ok_or_else(|| self.error("dangling backslash"))?;
                        self.at += 1;
                        out.push(match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => self.unicode()?,
                            _ => return Err(self.error("unknown escape")),
                        });
                    }
                    c if u32::from(c) < 0x20 => {
                        return Err(self.error("control character in a string"));
                    }
                    c => out.push(c),
                }
            }
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let digits = self
                .text
                .get(self.at..self.at + 4)
                .ok_or_else(|| self.error("short \\u escape"))?;
            let v = u32::from_str_radix(digits, 16).map_err(|_| self.error("bad \\u escape"))?;
            self.at += 4;
            Ok(v)
        }

        fn unicode(&mut self) -> Result<char, String> {
            let high = self.hex4()?;
            let code = if (0xd800..0xdc00).contains(&high) {
                if !self.text[self.at..].starts_with("\\u") {
                    return Err(self.error("lone surrogate"));
                }
                self.at += 2;
                let low = self.hex4()?;
                if !(0xdc00..0xe000).contains(&low) {
                    return Err(self.error("bad surrogate pair"));
                }
                0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
            } else {
                high
            };
            char::from_u32(code).ok_or_else(|| self.error("invalid code point"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use base64::{Engine, engine::general_purpose::STANDARD as B64};

    use super::*;

    /// RFC 7628 §4.1, the IMAP example's initial client response.
    const RFC7628_IMAP: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";
    /// RFC 7628 §4.1, the same credential in SMTP (port 587).
    const RFC7628_SMTP: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";
    const RFC7628_TOKEN: &str = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";
    /// RFC 7628 §4.3: a failed exchange; the client sends an empty `auth=` to learn the scope.
    const RFC7628_EMPTY_AUTH: &str =
        "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9AQE=";
    /// RFC 7628 §4.3: the server's error (the second form of the example, complete URL).
    const RFC7628_ERROR: &str = "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=";
    /// RFC 7628 §4.4: the SMTP failure example, whose initial response is itself malformed
    /// (`n,user=...` where the GS2 header needs `n,a=...`).
    const RFC7628_SMTP_BROKEN: &str = "bix1c2VyPXNvbWV1c2VyQGV4YW1wbGUuY29tLAFhdXRoPUJlYXJlciB2RjlkZnQ0cW1UYzJOdmIzUmxja0JoZEhSaGRtbHpkR0V1WTI5dENnPT0BAQ==";
    const RFC7628_SMTP_ERROR: &str = "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NoZW1lcyI6ImJlYXJlciBtYWMiLCJzY29wZSI6Imh0dHBzOi8vbWFpbC5leGFtcGxlLmNvbS8ifQ==";

    /// Google's XOAUTH2 documentation (developers.google.com/workspace/gmail/imap/xoauth2-protocol).
    const GOOGLE_INITIAL: &str = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";
    const GOOGLE_TOKEN: &str = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";
    /// Google's error challenge (its base64 says "bearer mac", though the prose shows "bearer").
    const GOOGLE_ERROR: &str = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0cHM6Ly9tYWlsLmdvb2dsZS5jb20vIn0K";

    fn token(t: &str) -> Secret<String> {
        Secret::new(t.to_owned())
    }

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    #[test]
    fn oauthbearer_builds_the_rfc_7628_examples() {
        for (port, expected) in [(143, RFC7628_IMAP), (587, RFC7628_SMTP)] {
            let target = OAuthTarget {
                host: Some("server.example.com".into()),
                port: Some(port),
            };
            let m =
                oauthbearer_initial_response("user@example.com", &target, &token(RFC7628_TOKEN))
                    .unwrap();
            assert_eq!(B64.encode(m.bytes.expose()), expected);
            assert_eq!(
                m.redacted,
                "authzid=\"user@example.com\", 42-byte bearer token"
            );
        }
    }

    #[test]
    fn oauthbearer_without_host_and_port_and_with_escaped_user() {
        let m =
            oauthbearer_initial_response("a,b=c", &OAuthTarget::default(), &token("t")).unwrap();
        assert_eq!(m.bytes.expose(), b"n,a=a=2Cb=3Dc,\x01auth=Bearer t\x01\x01");
        let OAuthClientMessage::Initial(r) =
            parse_client_message(OAuthMechanism::OAuthBearer, m.bytes.expose()).unwrap()
        else {
            panic!("not an initial response");
        };
        assert_eq!(r.user.as_deref(), Some("a,b=c"));
    }

    #[test]
    fn xoauth2_builds_googles_example() {
        let m = xoauth2_initial_response("someuser@example.com", &token(GOOGLE_TOKEN)).unwrap();
        assert_eq!(B64.encode(m.bytes.expose()), GOOGLE_INITIAL);
        assert!(!m.redacted.contains(GOOGLE_TOKEN));
    }

    #[test]
    fn builders_refuse_what_cannot_be_sent() {
        let t = token("tok");
        assert!(xoauth2_initial_response("", &t).is_err());
        assert!(xoauth2_initial_response("a\x01b", &t).is_err());
        for bad in ["", "to ken", "tok\n", "tok\x01"] {
            assert!(
                xoauth2_initial_response("u", &token(bad)).is_err(),
                "{bad:?}"
            );
        }
        let bad_host = OAuthTarget {
            host: Some("a b".into()),
            port: None,
        };
        assert!(oauthbearer_initial_response("u", &bad_host, &t).is_err());
    }

    #[test]
    fn parses_the_published_initial_responses() {
        let OAuthClientMessage::Initial(r) =
            parse_client_message(OAuthMechanism::OAuthBearer, &b64(RFC7628_IMAP)).unwrap()
        else {
            panic!("not an initial response");
        };
        assert_eq!(r.gs2_header.as_deref(), Some("n,a=user@example.com,"));
        assert_eq!(r.gs2_flag.as_deref(), Some("n"));
        assert_eq!(r.user.as_deref(), Some("user@example.com"));
        assert_eq!(r.get("host"), Some(&b"server.example.com"[..]));
        assert_eq!(r.get("port"), Some(&b"143"[..]));
        assert_eq!(
            r.bearer_token().unwrap().expose().as_slice(),
            RFC7628_TOKEN.as_bytes()
        );

        let OAuthClientMessage::Initial(r) =
            parse_client_message(OAuthMechanism::XOAuth2, &b64(GOOGLE_INITIAL)).unwrap()
        else {
            panic!("not an initial response");
        };
        assert_eq!(r.user.as_deref(), Some("someuser@example.com"));
        assert_eq!(
            r.bearer_token().unwrap().expose().as_slice(),
            GOOGLE_TOKEN.as_bytes()
        );
    }

    #[test]
    fn acknowledgements_and_malformed_messages() {
        assert_eq!(
            parse_client_message(OAuthMechanism::OAuthBearer, b"\x01").unwrap(),
            OAuthClientMessage::ErrorAcknowledgement
        );
        assert_eq!(
            parse_client_message(OAuthMechanism::XOAuth2, b"").unwrap(),
            OAuthClientMessage::ErrorAcknowledgement
        );
        let broken: &[&[u8]] = &[
            b"n,a=u,\x01auth=Bearer t\x01",         // final ^A missing
            b"n,a=u,\x01auth=Bearer t\x01\x01junk", // text after the end
            b"n,a=u,auth=Bearer t\x01\x01",         // no ^A after the header
            b"n,a=u,\x01host=x\x01\x01",            // no auth
            b"n,a=u,\x01ho st=x\x01auth=\x01\x01",  // key with a space
            b"x,a=u,\x01auth=Bearer t\x01\x01",     // bad GS2 flag
        ];
        for bytes in broken {
            assert!(
                parse_client_message(OAuthMechanism::OAuthBearer, bytes).is_err(),
                "{bytes:?}"
            );
        }
        assert!(parse_client_message(OAuthMechanism::XOAuth2, b"auth=Bearer t\x01\x01").is_err());
        // RFC 7628 §4.4's own example does not follow §3.1's grammar.
        let e = parse_client_message(OAuthMechanism::OAuthBearer, &b64(RFC7628_SMTP_BROKEN));
        assert!(matches!(e, Err(SaslError::Malformed(m)) if m.contains("authzid")));
    }

    #[test]
    fn explains_the_client_side_and_hides_the_token() {
        let text = explain_oauth(
            OAuthMechanism::OAuthBearer,
            Direction::ClientToServer,
            &b64(RFC7628_IMAP),
            false,
        );
        assert_eq!(
            text,
            "OAUTHBEARER initial response (RFC 7628: GS2 header ^A host=HOST ^A port=PORT ^A auth=Bearer TOKEN ^A ^A)\n  \
             gs2 header \"n,a=user@example.com,\": no channel binding, authzid \"user@example.com\"\n  \
             host: \"server.example.com\" (the server should check it is its own name)\n  \
             port: 143\n  \
             auth: Bearer token 42 bytes, hidden"
        );
        let shown = explain_oauth(
            OAuthMechanism::XOAuth2,
            Direction::ClientToServer,
            &b64(GOOGLE_INITIAL),
            true,
        );
        assert!(shown.contains(GOOGLE_TOKEN), "{shown}");
        assert!(shown.contains("a Google access token"), "{shown}");
        let hidden = explain_oauth(
            OAuthMechanism::XOAuth2,
            Direction::ClientToServer,
            &b64(GOOGLE_INITIAL),
            false,
        );
        assert!(!hidden.contains("vF9dft4"), "{hidden}");
        let empty = explain_oauth(
            OAuthMechanism::OAuthBearer,
            Direction::ClientToServer,
            &b64(RFC7628_EMPTY_AUTH),
            false,
        );
        assert!(
            empty.contains("auth: empty: asks the server which scope"),
            "{empty}"
        );
        let broken = explain_oauth(
            OAuthMechanism::OAuthBearer,
            Direction::ClientToServer,
            &b64(RFC7628_SMTP_BROKEN),
            false,
        );
        assert!(
            broken.starts_with("OAUTHBEARER initial response, malformed"),
            "{broken}"
        );
        assert!(!broken.contains("vF9dft4"), "{broken}");
        let ack = explain_oauth(
            OAuthMechanism::OAuthBearer,
            Direction::ClientToServer,
            b"\x01",
            false,
        );
        assert!(ack.contains("dummy response"), "{ack}");
    }

    #[test]
    fn explains_the_published_error_challenges() {
        let e = parse_server_error(&b64(RFC7628_ERROR)).unwrap();
        assert_eq!(e.get("status"), Some("invalid_token"));
        assert_eq!(e.get("scope"), Some("example_scope"));
        assert_eq!(
            e.get("openid-configuration"),
            Some("https://example.com/.well-known/openid-configuration")
        );
        let e = parse_server_error(&b64(RFC7628_SMTP_ERROR)).unwrap();
        assert_eq!(e.get("schemes"), Some("bearer mac"));
        let e = parse_server_error(&b64(GOOGLE_ERROR)).unwrap();
        assert_eq!(
            e.members,
            [
                ("status".to_owned(), "401".to_owned()),
                ("schemes".to_owned(), "bearer mac".to_owned()),
                ("scope".to_owned(), "https://mail.google.com/".to_owned()),
            ]
        );
        let text = explain_oauth(
            OAuthMechanism::XOAuth2,
            Direction::ServerToClient,
            &b64(GOOGLE_ERROR),
            false,
        );
        assert!(text.starts_with("XOAUTH2 error challenge (JSON)"), "{text}");
        assert!(text.contains("an empty line"), "{text}");
        assert!(
            text.contains("status: \"401\": the token is expired"),
            "{text}"
        );
        let text = explain_oauth(
            OAuthMechanism::OAuthBearer,
            Direction::ServerToClient,
            b"",
            false,
        );
        assert!(text.contains("empty"), "{text}");
        let text = explain_oauth(
            OAuthMechanism::OAuthBearer,
            Direction::ServerToClient,
            b"not json",
            false,
        );
        assert!(text.contains("not the JSON error object"), "{text}");
    }

    #[test]
    fn json_subset() {
        let m = json::object(
            r#" {"a": "x\"\u00e9\ud83d\ude00", "b": 12.5e3, "c": [1, {"d": null}], "e": true} "#,
        )
        .unwrap();
        assert_eq!(
            m,
            [
                ("a".to_owned(), "x\"é😀".to_owned()),
                ("b".to_owned(), "12.5e3".to_owned()),
                ("c".to_owned(), "[1, {\"d\": null}]".to_owned()),
                ("e".to_owned(), "true".to_owned()),
            ]
        );
        assert_eq!(json::object("{}").unwrap(), []);
        for bad in [
            "",
            "[]",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{} x",
            "{\"a\":\"\\ud800\"}",
        ] {
            assert!(json::object(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(json::object(&deep).is_err());
    }

    #[test]
    fn no_input_panics() {
        // A cheap sweep over short byte strings built from the grammar's interesting bytes.
        let alphabet: &[u8] = b"\x01,=na u\"{}:";
        let mut input = Vec::new();
        for n in 0..5000u32 {
            input.clear();
            let mut k = n;
            while k > 0 {
                input.push(alphabet[(k % alphabet.len() as u32) as usize]);
                k /= alphabet.len() as u32;
            }
            for mech in OAuthMechanism::ALL {
                for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                    let _ = explain_oauth(*mech, dir, &input, false);
                }
            }
        }
    }
}
