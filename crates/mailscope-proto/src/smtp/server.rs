//! The SMTP server state machine (the sink's core), sans-IO: greeting → EHLO/HELO/LHLO →
//! STARTTLS → EHLO again → AUTH → MAIL → RCPT… → DATA or BDAT… → QUIT. It accepts any
//! recipient and never relays; refusals come from limits, protocol errors, strict modes and
//! the caller's [`ReplyPolicy`] (fault injection).
//!
//! Call order (the driver's contract, as for [`crate::smtp::client::Client`]):
//! 1. [`Server::new`], then [`Server::start`] once the connection is accepted (after the TLS
//!    handshake for implicit TLS): the greeting is queued (or scheduled, with a greet pause).
//! 2. Loop: write what [`Server::poll_transmit`] gives; feed every received byte to
//!    [`Server::handle_input`] and the end of the stream to [`Server::handle_eof`]; drain
//!    [`Server::poll_event`]. On [`Event::StartTlsRequested`], first feed every plaintext
//!    byte already read (the machine discards and reports them: nothing pipelined after
//!    STARTTLS is ever executed), write the pending `220`, do the handshake, then call
//!    [`Server::handle_tls_established_with`] (with what the TLS layer knows: channel binding
//!    data, the client certificate) or [`Server::handle_tls_failed`]. For implicit TLS, give
//!    the same facts to [`Server::set_tls_facts`] before [`Server::start`]. When
//!    [`Server::poll_timeout`]'s deadline passes, call [`Server::handle_timeout`] (a delayed
//!    reply is released that way). Read only while [`Server::wants_input`], and no faster
//!    than [`Server::read_rate_limit`] when it gives a rate (both are fault injection).
//! 3. With [`ServerOptions::confirm_storage`], on [`Event::MessageReceived`] store the
//!    message and call [`Server::handle_message_stored`]: the reply to the final dot is held
//!    until then, so a `250` is never sent for a message that is not on disk.
//! 4. Close the connection once [`Event::Closed`] has been polled and nothing is left to
//!    transmit.
//!
//! Pipelining is judged by the only evidence a machine has: a command processed while the
//! reply to the previous one has not been taken by `poll_transmit` yet was sent before the
//! client could have seen that reply.
//!
//! The machine owns the [`Transcript`]: every client byte is recorded as it is consumed (AUTH
//! payloads with [`Redaction`]s that keep their structure), every reply as it is queued.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, STANDARD_NO_PAD as B64_NO_PAD};

use crate::finding::{
    Finding, SMTP_AUTH_USED_WITHOUT_TLS, SMTP_CLIENT_ADDRESS_SYNTAX, SMTP_CLIENT_BAD_SEQUENCE,
    SMTP_CLIENT_COMMAND_BEFORE_EHLO, SMTP_CLIENT_COMMAND_SYNTAX, SMTP_CLIENT_EXTENSION_NOT_OFFERED,
    SMTP_CLIENT_LIMIT_EXCEEDED, SMTP_CLIENT_NO_QUIT, SMTP_CLIENT_PIPELINING_AFTER_SYNC,
    SMTP_CLIENT_PIPELINING_WITHOUT_EXTENSION, SMTP_CLIENT_PREGREET, SMTP_CLIENT_STARTTLS_PIPELINED,
    SMTP_COMMAND_TOO_LONG,
};
use crate::sasl::{ChannelBindingData, Mechanism, PasswordLookup, ServerSession, ServerStep};
use crate::secret::Secret;
use crate::smtp::client::MAX_FINDINGS_PER_KIND;
use crate::smtp::receiver::{
    BdatProgress, BdatReceiver, DataProgress, DataReceiver, MessageBuffer, ReceivedData, Strict,
    lint_headers,
};
use crate::smtp::reply::{Decoded, EnhancedCode};
use crate::smtp::request::{
    AuthResponse, Body, DecodedRequest, EsmtpParam, Path, Request, RequestError, RequestLimits,
    decode_auth_response, decode_command, strip_line_end,
};
use crate::transcript::{Direction, Redaction, Timestamp, Transcript};

/// With [`AuthCheck::AcceptAny`], the password every SCRAM user has. SCRAM clients check
/// that the server knows their password, so a server that accepts anything cannot accept
/// any SCRAM password; this one is documented instead.
pub const ACCEPT_ANY_SCRAM_PASSWORD: &str = "mailscope";

/// The ESMTP extensions the server can offer; each can be turned off (`--no-ext NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870), with [`ServerLimits::max_message_size`].
    pub size: bool,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034): off also drops the codes from replies.
    pub enhanced_status_codes: bool,
    /// CHUNKING (BDAT, RFC 3030).
    pub chunking: bool,
    /// BINARYMIME (RFC 3030); needs CHUNKING. Off by default.
    pub binarymime: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// STARTTLS (RFC 3207), offered before TLS only.
    pub starttls: bool,
    /// AUTH (RFC 4954), offered only inside TLS unless
    /// [`ServerOptions::insecure_auth_plaintext`].
    pub auth: bool,
}

impl Default for Extensions {
    fn default() -> Self {
        Self {
            pipelining: true,
            size: true,
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            chunking: true,
            binarymime: false,
            dsn: true,
            starttls: true,
            auth: true,
        }
    }
}

impl Extensions {
    /// The names [`Extensions::set`] knows.
    pub const NAMES: &[&str] = &[
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "BINARYMIME",
        "DSN",
        "STARTTLS",
        "AUTH",
    ];

    /// Turns an extension on or off by keyword (case-insensitive); false if unknown.
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        let flag = match name.to_ascii_uppercase().as_str() {
            "PIPELINING" => &mut self.pipelining,
            "SIZE" => &mut self.size,
            "8BITMIME" => &mut self.eight_bit_mime,
            "SMTPUTF8" => &mut self.smtputf8,
            "ENHANCEDSTATUSCODES" => &mut self.enhanced_status_codes,
            "CHUNKING" => &mut self.chunking,
            "BINARYMIME" => &mut self.binarymime,
            "DSN" => &mut self.dsn,
            "STARTTLS" => &mut self.starttls,
            "AUTH" => &mut self.auth,
            _ => return false,
        };
        *flag = on;
        true
    }
}

/// Limits. The defaults are documented here and in the sink's help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Command line limits (default 4096 octets; AUTH lines 16 KiB).
    pub request: RequestLimits,
    /// Recipients per message (default 1000; RFC 5321 §4.5.3.1.8 asks for at least 100).
    /// More get `452 4.5.3`.
    pub max_recipients: usize,
    /// Message size in octets (default 50 MiB), advertised with SIZE; more gets `552 5.3.4`.
    pub max_message_size: u64,
    /// Commands per session (default 100 000); then `421 4.7.0` and close.
    pub max_commands: u64,
    /// Refused commands (unknown, bad syntax, bad sequence, failed AUTH) per session
    /// (default 20, as Postfix's `smtpd_hard_error_limit`); then `421 4.7.0` and close.
    pub max_errors: u32,
    /// Microseconds without input before `421 4.4.2` and close (default 300 s, RFC 5321
    /// §4.5.3.2.7).
    pub idle_timeout_us: u64,
    /// Microseconds a session may last (default 1 hour); `None` for no limit.
    pub session_timeout_us: Option<u64>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            request: RequestLimits::default(),
            max_recipients: 1000,
            max_message_size: 50 * 1024 * 1024,
            max_commands: 100_000,
            max_errors: 20,
            idle_timeout_us: 300_000_000,
            session_timeout_us: Some(3_600_000_000),
        }
    }
}

/// How AUTH checks credentials.
#[derive(Clone)]
pub enum AuthCheck {
    /// Against passwords from the caller (e.g. a Dovecot passwd-file). XOAUTH2 and
    /// OAUTHBEARER expect the user's password as the bearer token; EXTERNAL needs the client
    /// certificate's identity to be a user (its password is not used).
    Lookup(Arc<dyn PasswordLookup + Send + Sync>),
    /// A test server that does not get in the way: PLAIN, LOGIN and CRAM-MD5 accept any
    /// well-formed credentials, XOAUTH2 and OAUTHBEARER any token, EXTERNAL any verified
    /// client certificate; SCRAM (`-PLUS` too) accepts any user with this password (see
    /// [`ACCEPT_ANY_SCRAM_PASSWORD`]).
    AcceptAny {
        /// The password of every SCRAM user.
        scram_password: Secret<String>,
    },
}

impl Default for AuthCheck {
    fn default() -> Self {
        AuthCheck::AcceptAny {
            scram_password: Secret::new(ACCEPT_ANY_SCRAM_PASSWORD.to_string()),
        }
    }
}

impl fmt::Debug for AuthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthCheck::Lookup(_) => f.write_str("Lookup(..)"),
            AuthCheck::AcceptAny { .. } => f.write_str("AcceptAny"),
        }
    }
}

/// A TLS client certificate that the TLS layer verified (against the CA the server was
/// told to trust for clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject, as text (`CN=alice, O=Example`).
    pub subject: String,
    /// The identity it establishes for AUTH EXTERNAL: the subject's common name, or else the
    /// first subject alternative name.
    pub identity: String,
}

/// What the TLS layer knows about the connection, for AUTH: the `-PLUS` SCRAMs need channel
/// binding data and EXTERNAL a verified client certificate. Both are offered only when
/// present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// Channel binding data of this connection (empty: none, and no `-PLUS` offered).
    pub channel_binding: ChannelBindingData,
    /// The client's verified certificate, if it presented one.
    pub client_certificate: Option<ClientCertificate>,
}

/// Everything the machine needs to know up front.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The server's name, in the greeting, EHLO reply and CRAM-MD5 challenges.
    pub hostname: String,
    /// Greeting text after the hostname (default `ESMTP mailscope`, or `LMTP mailscope`).
    pub banner: Option<String>,
    /// Speak LMTP (RFC 2033): LHLO instead of EHLO/HELO, one reply per recipient after the
    /// final dot.
    pub lmtp: bool,
    /// The connection starts inside TLS (port 465); STARTTLS is not offered.
    pub implicit_tls: bool,
    /// What to offer.
    pub extensions: Extensions,
    /// AUTH mechanisms offered, in the order listed. The SCRAM `-PLUS` mechanisms are
    /// offered only inside TLS with channel binding data, EXTERNAL only when the client
    /// presented a verified certificate ([`TlsFacts`]).
    pub auth_mechanisms: Vec<Mechanism>,
    /// How credentials are checked.
    pub auth: AuthCheck,
    /// Offer and accept AUTH without TLS (a footgun: passwords in the clear).
    pub insecure_auth_plaintext: bool,
    /// Refuse MAIL before AUTH with `530 5.7.0`.
    pub auth_required: bool,
    /// Random, printable ASCII without `,`, supplied by the caller (the core has no
    /// randomness): each AUTH attempt's SASL nonce is this plus a counter.
    pub auth_nonce: String,
    /// Limits.
    pub limits: ServerLimits,
    /// How a bare LF in DATA is treated.
    pub strict: Strict,
    /// Hold the reply to the final dot until [`Server::handle_message_stored`].
    pub confirm_storage: bool,
    /// Names this session in queue ids (`queued as <session_id>.<n>`) when storage is not
    /// confirmed.
    pub session_id: String,
    /// Microseconds to wait before the greeting; a client that talks in that time is a
    /// pregreeter (0: greet at once).
    pub greet_pause_us: u64,
}

impl ServerOptions {
    /// Defaults for a server called `hostname`.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            banner: None,
            lmtp: false,
            implicit_tls: false,
            extensions: Extensions::default(),
            auth_mechanisms: vec![
                Mechanism::Plain,
                Mechanism::Login,
                Mechanism::CramMd5,
                Mechanism::ScramSha1,
                Mechanism::ScramSha256,
                Mechanism::ScramSha1Plus,
                Mechanism::ScramSha256Plus,
                Mechanism::XOauth2,
                Mechanism::OAuthBearer,
                Mechanism::External,
            ],
            auth: AuthCheck::default(),
            insecure_auth_plaintext: false,
            auth_required: false,
            auth_nonce: "mailscope".into(),
            limits: ServerLimits::default(),
            strict: Strict::Off,
            confirm_storage: false,
            session_id: "S".into(),
            greet_pause_us: 0,
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self::new("localhost")
    }
}

/// A reply the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    /// The reply code.
    pub code: u16,
    /// The enhanced status code (left out when ENHANCEDSTATUSCODES is off).
    pub enhanced: Option<EnhancedCode>,
    /// The text lines (at least one; CR and LF inside are not allowed and are split off).
    pub lines: Vec<String>,
}

impl ServerReply {
    /// A one-line reply; `enhanced` is `"x.y.z"` or `""` for none.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Self {
        Self::multiline(code, enhanced, vec![text.into()])
    }

    /// A reply of several lines.
    pub fn multiline(code: u16, enhanced: &str, lines: Vec<String>) -> Self {
        let enhanced = EnhancedCode::parse_prefix(enhanced.as_bytes()).map(|(e, _)| e);
        let mut clean: Vec<String> = lines
            .iter()
            .flat_map(|l| l.split(['\r', '\n']))
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if clean.is_empty() {
            clean.push(String::new());
        }
        Self {
            code,
            enhanced,
            lines: clean,
        }
    }

    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The bytes, CRLF included.
    pub fn encode(&self, with_enhanced: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i + 1 < n { '-' } else { ' ' };
            let mut text = String::new();
            if let (Some(e), true) = (self.enhanced, with_enhanced) {
                text.push_str(&e.to_string());
                if !line.is_empty() {
                    text.push(' ');
                }
            }
            text.push_str(line);
            if text.is_empty() && self.code != 334 {
                out.extend_from_slice(
                    format!("{}{}", self.code, if sep == '-' { "-" } else { "" }).as_bytes(),
                );
            } else {
                out.extend_from_slice(format!("{}{sep}{text}", self.code).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// `code [enhanced] first line`, for notes.
    pub fn summary(&self) -> String {
        let first = self.lines.first().map(String::as_str).unwrap_or("");
        match self.enhanced {
            Some(e) => format!("{} {e} {first}", self.code),
            None => format!("{} {first}", self.code),
        }
    }
}

/// Where in the session a reply is due: what a [`ReplyPolicy`] matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyStage {
    /// The greeting.
    Connect,
    /// EHLO, HELO or LHLO.
    Helo,
    /// STARTTLS.
    StartTls,
    /// The final reply to AUTH (235 or 535; not the 334 challenges).
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// The reply to the DATA command (354).
    Data,
    /// The reply after the final dot or BDAT LAST (in LMTP, once per recipient).
    EndOfData,
    /// A BDAT chunk that is not the last.
    Bdat,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// VRFY.
    Vrfy,
    /// QUIT.
    Quit,
    /// Anything else (HELP, EXPN, unknown commands, errors).
    Other,
}

impl ReplyStage {
    /// Every stage.
    pub const ALL: [ReplyStage; 14] = [
        ReplyStage::Connect,
        ReplyStage::Helo,
        ReplyStage::StartTls,
        ReplyStage::Auth,
        ReplyStage::Mail,
        ReplyStage::Rcpt,
        ReplyStage::Data,
        ReplyStage::EndOfData,
        ReplyStage::Bdat,
        ReplyStage::Rset,
        ReplyStage::Noop,
        ReplyStage::Vrfy,
        ReplyStage::Quit,
        ReplyStage::Other,
    ];

    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            ReplyStage::Connect => "connect",
            ReplyStage::Helo => "ehlo",
            ReplyStage::StartTls => "starttls",
            ReplyStage::Auth => "auth",
            ReplyStage::Mail => "mail",
            ReplyStage::Rcpt => "rcpt",
            ReplyStage::Data => "data",
            ReplyStage::EndOfData => "end-of-data",
            ReplyStage::Bdat => "bdat",
            ReplyStage::Rset => "rset",
            ReplyStage::Noop => "noop",
            ReplyStage::Vrfy => "vrfy",
            ReplyStage::Quit => "quit",
            ReplyStage::Other => "other",
        }
    }

    /// Parses a name (with `helo`/`lhlo` and `dot` as synonyms).
    pub fn from_name(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        match s.as_str() {
            "helo" | "lhlo" => Some(ReplyStage::Helo),
            "dot" => Some(ReplyStage::EndOfData),
            _ => Self::ALL.into_iter().find(|st| st.name() == s),
        }
    }
}

/// What a reply is about, for a [`ReplyPolicy`].
#[derive(Debug, Clone, Copy)]
pub struct ReplyContext<'a> {
    /// The stage.
    pub stage: ReplyStage,
    /// How many times this stage has been reached in this session, this one included.
    pub occurrence: u32,
    /// The message the transaction would become, 1-based in this session.
    pub message: u64,
    /// The stage's argument: the sender (MAIL), recipient (RCPT, LMTP end of data), EHLO
    /// domain, AUTH mechanism.
    pub argument: Option<&'a str>,
    /// The transaction's sender (the MAIL FROM address; at MAIL, the one being decided on;
    /// `""` for the null reverse-path), if a transaction is open.
    pub sender: Option<&'a str>,
    /// The recipients accepted so far in the transaction (at RCPT, not yet the one being
    /// decided on).
    pub recipients: &'a [Recipient],
    /// The time the machine was last given.
    pub now: Timestamp,
    /// The reply the machine would send.
    pub reply: &'a ServerReply,
}

/// What to do instead of the machine's reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ReplyAction {
    /// Send the machine's reply.
    #[default]
    Default,
    /// Send this reply instead (a `421` also closes).
    Reply(ServerReply),
    /// Send this reply, then close.
    ReplyAndClose(ServerReply),
    /// Close without a reply.
    Disconnect,
    /// At the end of data only, when the machine would accept the message: send its positive
    /// reply but drop the message (no [`Event::MessageReceived`]: nothing is stored). Has no
    /// effect elsewhere (noted).
    AcceptButDrop,
    /// At DATA only, when the machine would send 354: send it, then close without a word
    /// after `after_octets` octets of message content (or at the end of data, if that comes
    /// first), like a server that crashes while reading a message. Elsewhere: [`Self::Disconnect`].
    DisconnectInData {
        /// Content octets read before closing (0: close right after the 354).
        after_octets: u64,
    },
    /// An action with effects around it: a delay, a read throttle, a label for the note.
    With(Box<ReplyFault>),
}

/// [`ReplyAction::With`]: what to do and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplyFault {
    /// The reply decision itself.
    pub action: ReplyAction,
    /// Hold the reply (and everything after it) this many microseconds; the machine asks for
    /// the time through [`Server::poll_timeout`] and reads no commands meanwhile.
    pub delay_us: u64,
    /// Read the client's input at most this fast (bytes per second) until the next reply is
    /// decided; the driver asks [`Server::read_rate_limit`].
    pub throttle_bytes_per_second: Option<u64>,
    /// Who decided, for the note (e.g. `scenario rule 2`).
    pub label: Option<String>,
}

/// A hook consulted before each reply (the sink's scenario engine implements it). The
/// machine follows the reply actually sent where its default was positive: a refusal put
/// in place of `250` to MAIL means no transaction, in place of `250` after the final dot
/// means no message. Overriding a refusal with a positive reply changes only the text (the
/// machine cannot act on a command it could not accept). Every override is reported as an
/// [`Event::Note`], so an injected fault is never mistaken for a bug.
pub trait ReplyPolicy {
    /// Decides about one reply.
    fn decide(&mut self, ctx: &ReplyContext<'_>) -> ReplyAction;
}

/// One pre-programmed override: at `stage` (the `nth` time, or every time) do `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyOverride {
    /// The stage.
    pub stage: ReplyStage,
    /// Only the n-th time the stage is reached in a session (1-based); `None`: every time.
    pub nth: Option<u32>,
    /// Only when the stage's argument equals this (case-insensitive), e.g. a recipient.
    pub argument: Option<String>,
    /// What to do.
    pub action: ReplyAction,
}

/// A list of overrides; the first that matches applies. The simplest [`ReplyPolicy`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyOverrides(pub Vec<ReplyOverride>);

impl ReplyPolicy for ReplyOverrides {
    fn decide(&mut self, ctx: &ReplyContext<'_>) -> ReplyAction {
        self.0
            .iter()
            .find(|o| {
                o.stage == ctx.stage
                    && o.nth.is_none_or(|n| n == ctx.occurrence)
                    && o.argument
                        .as_deref()
                        .is_none_or(|a| ctx.argument.is_some_and(|x| x.eq_ignore_ascii_case(a)))
            })
            .map(|o| o.action.clone())
            .unwrap_or_default()
    }
}

/// Who authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The authentication identity.
    pub authcid: String,
    /// The authorization identity, if one was asked for.
    pub authzid: Option<String>,
}

/// One recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward path.
    pub to: Path,
    /// Its parameters.
    pub params: Vec<EsmtpParam>,
}

/// The envelope of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path (MAIL FROM).
    pub from: Path,
    /// MAIL FROM parameters.
    pub params: Vec<EsmtpParam>,
    /// Accepted recipients, in order.
    pub rcpts: Vec<Recipient>,
}

/// How the content came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// DATA (dot-stuffed, ended by `<CRLF>.<CRLF>`).
    Data,
    /// BDAT chunks.
    Bdat,
}

/// An accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// 1-based among the messages accepted in this session.
    pub index: u64,
    /// The envelope.
    pub envelope: Envelope,
    /// The content, exactly (after dot-unstuffing for DATA).
    pub content: Vec<u8>,
    /// Offset of the first content octet in the client's byte stream.
    pub content_offset: u64,
    /// DATA or BDAT.
    pub transfer: Transfer,
    /// Findings about this message: from MAIL FROM to the end of data.
    pub findings: Vec<Finding>,
    /// Who was authenticated, if anyone.
    pub auth: Option<AuthInfo>,
    /// Whether the message came inside TLS.
    pub tls: bool,
    /// The EHLO/HELO/LHLO name.
    pub helo: Option<String>,
}

/// Why the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// After QUIT and 221.
    Quit,
    /// The client closed its side.
    ClientClosed,
    /// No input for [`ServerLimits::idle_timeout_us`].
    IdleTimeout,
    /// The session lasted [`ServerLimits::session_timeout_us`].
    SessionTimeout,
    /// Too many refused commands.
    TooManyErrors,
    /// Too many commands.
    TooManyCommands,
    /// A strict mode closed at a bare LF.
    StrictBareLf(Strict),
    /// A [`ReplyPolicy`] (or a 421 it put in) closed it.
    Policy,
    /// The TLS handshake after STARTTLS failed.
    TlsFailed,
    /// The driver evicted this (idle) session to make room for a new connection.
    Evicted,
}

/// Most bytes of a session's transcript kept in memory, message content aside (which is
/// dropped from the transcript once delivered to the front end): a long or hostile session
/// cannot eat memory through it. Later bytes are recorded by length only, with a finding.
pub const TRANSCRIPT_KEEP_LIMIT: u64 = 4 * 1024 * 1024;

/// What happened, for the front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A command line was received (its bytes are in the transcript at `offset`).
    CommandReceived {
        /// The verb.
        command: &'static str,
        /// The parsed command (AUTH payloads stay secret).
        request: Request,
        /// Stream offset of its first byte.
        offset: u64,
    },
    /// A reply was queued.
    ReplySent {
        /// The verb answered (`"."` for the end of data, `None` for the greeting and
        /// replies that answer no command).
        command: Option<&'static str>,
        /// The reply.
        reply: ServerReply,
        /// Stream offset (server side) of its first byte.
        offset: u64,
    },
    /// The driver must now do the TLS handshake (after transmitting the 220).
    StartTlsRequested,
    /// AUTH succeeded.
    Authenticated {
        /// The mechanism.
        mechanism: Mechanism,
        /// The authentication identity.
        authcid: String,
        /// The authorization identity, if any.
        authzid: Option<String>,
    },
    /// AUTH failed (the client was told only "failed").
    AuthFailed {
        /// The mechanism, if known.
        mechanism: Option<Mechanism>,
        /// Why, for the operator.
        reason: String,
    },
    /// A message was accepted (with `confirm_storage`, store it and call
    /// [`Server::handle_message_stored`]).
    MessageReceived(Box<ReceivedMessage>),
    /// A deviation.
    FindingRaised(Finding),
    /// mailscope's own remark (`***` lines): strict modes, faults applied, caps.
    Note(String),
    /// The session is over; close once transmits are drained.
    Closed(CloseReason),
}

const GREETING: &str = "greeting";

/// Input buffered while a reply is held, at most (see [`Server::wants_input`]).
const HELD_INPUT_CAP: usize = 64 * 1024;

/// Commands that must end a pipelined group (RFC 2920 §3.1, RFC 4954 §4).
const SYNC_VERBS: &[&str] = &[
    "EHLO", "HELO", "LHLO", "DATA", "AUTH", "QUIT", "NOOP", "VRFY", "EXPN",
];

#[derive(Debug)]
enum Phase {
    NotStarted,
    GreetPause { until: Timestamp },
    Command,
    AuthResponse(Box<AuthExchange>),
    Data(Box<DataReceiver>),
    Bdat(BdatChunk),
    AwaitTls,
    AwaitStore(Box<PendingReplies>),
    Closed,
}

#[derive(Debug)]
struct BdatChunk {
    rx: BdatReceiver,
    /// Client-stream offset of the chunk's first octet.
    start: u64,
    last: bool,
    size: u64,
    refusal: Option<ServerReply>,
}

#[derive(Debug)]
struct AuthExchange {
    session: ServerSession,
    mechanism: Mechanism,
    /// Client messages so far (LOGIN: 0 is the username, 1 the password).
    client_messages: u32,
    /// SCRAM: server-final was sent as a challenge; success after the empty answer.
    pending_success: Option<(Option<String>, String)>,
}

#[derive(Debug)]
enum Decision {
    Reply {
        reply: ServerReply,
        close_after: bool,
        accepted: bool,
        replaced: bool,
        /// Accepted, but the message is not handed over ([`ReplyAction::AcceptButDrop`]).
        dropped: bool,
    },
    Disconnect,
}

/// Output held back by a delayed reply ([`ReplyFault::delay_us`]): replies, events and the
/// close, in order, released together when the deadline passes.
#[derive(Debug)]
struct Hold {
    until: Timestamp,
    ops: Vec<HeldOp>,
}

#[derive(Debug)]
enum HeldOp {
    Reply {
        verb: Option<&'static str>,
        reply: ServerReply,
        marker: &'static str,
    },
    Event(Event),
    Close(CloseReason),
}

#[derive(Debug)]
struct PendingReplies {
    decisions: Vec<Decision>,
}

#[derive(Debug)]
struct Transaction {
    from: Path,
    params: Vec<EsmtpParam>,
    rcpts: Vec<Recipient>,
    findings: Vec<Finding>,
    body: Option<Body>,
    smtputf8: bool,
    bdat: Option<MessageBuffer>,
    /// Client-stream ranges of the BDAT chunks received so far (elided from the transcript
    /// once the message is done, as DATA content is); at most [`MAX_ELIDED_CHUNKS`].
    bdat_ranges: Vec<(u64, u64)>,
}

/// Most BDAT chunks of one message whose bytes are dropped from the transcript; the bytes of
/// chunks beyond stay (and count against the transcript cap).
const MAX_ELIDED_CHUNKS: usize = 1_000;

impl Transaction {
    fn eight_bit_declared(&self) -> bool {
        matches!(self.body, Some(Body::EightBitMime | Body::BinaryMime)) || self.smtputf8
    }
}

#[derive(Debug, Clone)]
struct Hello {
    verb: &'static str,
    domain: String,
}

/// The SMTP server machine. See the module docs for the call order.
pub struct Server {
    opts: ServerOptions,
    policy: Option<Box<dyn ReplyPolicy + Send>>,
    phase: Phase,
    transcript: Transcript,
    /// Client-stream range of the last message's content, dropped from the transcript
    /// once the front end has seen it (the message itself is stored elsewhere).
    pending_elide: Vec<(u64, u64)>,
    /// Whether the transcript cap was reported.
    transcript_cap_reported: bool,
    input: Vec<u8>,
    /// Consumed prefix of `input`.
    pos: usize,
    outbuf: Vec<u8>,
    events: VecDeque<(usize, Event)>,
    now: Timestamp,
    started_at: Timestamp,
    last_input: Timestamp,
    tls: bool,
    /// Channel binding data and the client certificate, from the TLS layer.
    tls_facts: TlsFacts,
    upgraded: bool,
    hello: Option<Hello>,
    auth: Option<AuthInfo>,
    txn: Option<Transaction>,
    /// The command whose reply sits untransmitted in `outbuf`.
    unsent_reply_to: Option<&'static str>,
    /// After an over-long line: drop input up to the next LF.
    discarding_line: bool,
    /// The greeting was a 554: answer everything but QUIT with 503 (RFC 5321 §3.1).
    refusing: bool,
    quit_received: bool,
    pregreet_reported: bool,
    commands: u64,
    errors: u32,
    messages: u64,
    auth_attempts: u32,
    stage_counts: HashMap<ReplyStage, u32>,
    findings: Vec<Finding>,
    finding_counts: HashMap<&'static str, usize>,
    /// `findings.len()` when the current command started (its findings go to a new
    /// transaction).
    line_mark: usize,
    /// A delayed reply and everything after it, until its deadline.
    hold: Option<Hold>,
    /// Read throttle (bytes per second) set by the last reply decision.
    read_limit: Option<u64>,
    /// [`ReplyAction::DisconnectInData`] decided for the DATA command being answered.
    pending_cut: Option<u64>,
    /// Content octets left before closing in the middle of DATA.
    data_cut: Option<u64>,
    closed: bool,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("phase", &self.phase)
            .field("tls", &self.tls)
            .field("hello", &self.hello)
            .field("auth", &self.auth)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A machine for one session.
    pub fn new(opts: ServerOptions) -> Self {
        let tls = opts.implicit_tls;
        Self {
            opts,
            policy: None,
            phase: Phase::NotStarted,
            transcript: {
                let mut t = Transcript::new();
                t.set_keep_limit(Some(TRANSCRIPT_KEEP_LIMIT));
                t
            },
            pending_elide: Vec::new(),
            transcript_cap_reported: false,
            input: Vec::new(),
            pos: 0,
            outbuf: Vec::new(),
            events: VecDeque::new(),
            now: Timestamp(0),
            started_at: Timestamp(0),
            last_input: Timestamp(0),
            tls,
            tls_facts: TlsFacts::default(),
            upgraded: false,
            hello: None,
            auth: None,
            txn: None,
            unsent_reply_to: None,
            discarding_line: false,
            refusing: false,
            quit_received: false,
            pregreet_reported: false,
            commands: 0,
            errors: 0,
            messages: 0,
            auth_attempts: 0,
            stage_counts: HashMap::new(),
            findings: Vec::new(),
            finding_counts: HashMap::new(),
            line_mark: 0,
            hold: None,
            read_limit: None,
            pending_cut: None,
            data_cut: None,
            closed: false,
        }
    }

    /// Installs the hook consulted before each reply (fault injection).
    pub fn set_reply_policy(&mut self, policy: Box<dyn ReplyPolicy + Send>) {
        self.policy = Some(policy);
    }

    /// Replaces the base of the SASL nonces (for a driver that draws a fresh one per
    /// session after construction).
    pub fn set_auth_nonce(&mut self, nonce: impl Into<String>) {
        self.opts.auth_nonce = nonce.into();
    }

    /// The connection is up (for implicit TLS, the handshake done): greets, or starts the
    /// greet pause.
    pub fn start(&mut self, now: Timestamp) {
        self.now = now;
        if !matches!(self.phase, Phase::NotStarted) {
            return;
        }
        self.started_at = now;
        self.last_input = now;
        if self.opts.greet_pause_us > 0 {
            self.phase = Phase::GreetPause {
                until: Timestamp(now.0.saturating_add(self.opts.greet_pause_us)),
            };
            if self.pending_len() > 0 {
                self.report_pregreet();
            }
        } else {
            self.greet();
        }
    }

    /// Bytes from the client.
    pub fn handle_input(&mut self, now: Timestamp, bytes: &[u8]) {
        self.now = now;
        if bytes.is_empty() {
            return;
        }
        if self.closed {
            // Recorded, never acted on.
            self.transcript
                .record(Direction::ClientToServer, now, self.tls, bytes);
            return;
        }
        self.last_input = now;
        self.input.extend_from_slice(bytes);
        if matches!(self.phase, Phase::GreetPause { .. } | Phase::NotStarted) {
            if matches!(self.phase, Phase::GreetPause { .. }) {
                self.report_pregreet();
            }
            return;
        }
        self.process();
        self.compact();
    }

    /// The client closed its side.
    pub fn handle_eof(&mut self, now: Timestamp) {
        self.now = now;
        if self.closed {
            return;
        }
        self.abandon_hold("the client closed the connection while a reply was delayed");
        let n = self.pending_len();
        if n > 0 {
            self.consume(n, Vec::new());
            self.note(&format!(
                "{n} bytes at the end of the stream without a line end were not processed"
            ));
        }
        match &self.phase {
            Phase::Data(_) | Phase::Bdat(_) => self.note(
                "the client closed the connection in the middle of the message; it is discarded",
            ),
            Phase::AuthResponse(_) => self.note("the client closed the connection during AUTH"),
            _ => {}
        }
        if !self.quit_received {
            self.raise(
                Finding::new(
                    SMTP_CLIENT_NO_QUIT,
                    "the client closed the connection without QUIT",
                )
                .at(
                    Direction::ClientToServer,
                    self.transcript.len(Direction::ClientToServer),
                ),
            );
        }
        self.close(CloseReason::ClientClosed);
    }

    /// Implicit TLS: what the TLS layer knows about the connection (channel binding data,
    /// the client certificate). Call before [`Server::start`].
    pub fn set_tls_facts(&mut self, facts: TlsFacts) {
        self.tls_facts = facts;
    }

    /// What the TLS layer said about the connection.
    pub fn tls_facts(&self) -> &TlsFacts {
        &self.tls_facts
    }

    /// The TLS handshake after STARTTLS succeeded: everything known before is forgotten
    /// (RFC 3207 §4.2) and EHLO is required again. Without channel binding data or a client
    /// certificate; see [`Server::handle_tls_established_with`].
    pub fn handle_tls_established(&mut self, now: Timestamp) {
        self.handle_tls_established_with(now, TlsFacts::default());
    }

    /// The TLS handshake after STARTTLS succeeded, with what the TLS layer knows about the
    /// connection: channel binding data (the `-PLUS` SCRAMs are offered only with it) and
    /// the verified client certificate (EXTERNAL is offered only with one).
    pub fn handle_tls_established_with(&mut self, now: Timestamp, facts: TlsFacts) {
        self.now = now;
        if !matches!(self.phase, Phase::AwaitTls) {
            return;
        }
        self.tls_facts = facts;
        // Anything still buffered came in plaintext before the handshake.
        self.discard_plaintext();
        self.tls = true;
        self.upgraded = true;
        self.hello = None;
        self.auth = None;
        self.txn = None;
        self.last_input = now;
        self.phase = Phase::Command;
    }

    /// The TLS handshake failed; the connection is unusable.
    pub fn handle_tls_failed(&mut self, now: Timestamp, reason: &str) {
        self.now = now;
        self.note(&format!("TLS handshake failed: {reason}"));
        self.close(CloseReason::TlsFailed);
    }

    /// With [`ServerOptions::confirm_storage`]: the message of the last
    /// [`Event::MessageReceived`] was stored (`Ok(queue id)`) or could not be (`Err(why)`,
    /// answered `451 4.3.0`). Sends the held reply and goes on with pipelined input.
    pub fn handle_message_stored(&mut self, now: Timestamp, result: Result<String, String>) {
        self.now = now;
        let Phase::AwaitStore(pending) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return;
        };
        let mut decisions = pending.decisions;
        match result {
            Ok(id) => {
                for d in &mut decisions {
                    if let Decision::Reply {
                        reply,
                        replaced: false,
                        accepted: true,
                        ..
                    } = d
                    {
                        *reply = self.accepted_reply(&id);
                    }
                }
            }
            Err(why) => {
                self.note(&format!("storing the message failed: {why}"));
                decisions = vec![Decision::Reply {
                    reply: ServerReply::new(451, "4.3.0", "Error: queue file write error"),
                    close_after: false,
                    accepted: false,
                    replaced: false,
                    dropped: false,
                }];
            }
        }
        self.send_decisions(".", decisions);
        if !self.closed {
            self.process();
            self.compact();
        }
    }

    /// The driver needs this connection's slot (the connection limit is reached and this
    /// session is the one to go): answers `421 4.3.2` and closes.
    pub fn handle_evicted(&mut self, now: Timestamp) {
        self.now = now;
        if self.closed {
            return;
        }
        self.abandon_hold("evicted while a reply was delayed");
        let host = self.opts.hostname.clone();
        self.note("evicted: the connection limit was reached and this session was idle");
        self.send_reply(
            None,
            &ServerReply::new(
                421,
                "4.3.2",
                format!("{host} Error: too many connections; closing this idle session"),
            ),
        );
        self.close(CloseReason::Evicted);
    }

    /// Time passed: ends the greet pause, sends a delayed reply, or closes an idle or
    /// overlong session.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        if self.closed {
            return;
        }
        if let Some(h) = &self.hold {
            // The server is the slow one: no idle or session limit runs out meanwhile.
            if now >= h.until {
                self.release_hold();
                if !self.closed {
                    self.process();
                    self.compact();
                }
            }
            return;
        }
        if let Phase::GreetPause { until } = self.phase {
            if now >= until {
                self.greet();
                self.compact();
            }
            return;
        }
        let host = self.opts.hostname.clone();
        if self
            .opts
            .limits
            .session_timeout_us
            .is_some_and(|t| now.0 >= self.started_at.0.saturating_add(t))
        {
            self.send_reply(
                None,
                &ServerReply::new(
                    421,
                    "4.4.2",
                    format!("{host} Error: session time limit exceeded"),
                ),
            );
            self.close(CloseReason::SessionTimeout);
            return;
        }
        if self.idle_counts()
            && now.0
                >= self
                    .last_input
                    .0
                    .saturating_add(self.opts.limits.idle_timeout_us)
        {
            self.send_reply(
                None,
                &ServerReply::new(421, "4.4.2", format!("{host} Error: timeout exceeded")),
            );
            self.close(CloseReason::IdleTimeout);
        }
    }

    /// Appends bytes to send to `out`; returns whether anything was appended.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.outbuf.is_empty() {
            return false;
        }
        out.append(&mut self.outbuf);
        self.unsent_reply_to = None;
        true
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().map(|(_, e)| e)
    }

    /// The next event with the number of transcript chunks recorded when it happened.
    #[must_use]
    pub fn poll_event_positioned(&mut self) -> Option<(usize, Event)> {
        self.events.pop_front()
    }

    /// When [`Server::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.closed {
            return None;
        }
        if let Some(h) = &self.hold {
            return Some(h.until);
        }
        if let Phase::GreetPause { until } = self.phase {
            return Some(until);
        }
        if matches!(self.phase, Phase::NotStarted) {
            return None;
        }
        let session = self
            .opts
            .limits
            .session_timeout_us
            .map(|t| Timestamp(self.started_at.0.saturating_add(t)));
        let idle = self.idle_counts().then(|| {
            Timestamp(
                self.last_input
                    .0
                    .saturating_add(self.opts.limits.idle_timeout_us),
            )
        });
        match (session, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether bytes or events are waiting to be polled.
    pub fn has_pending_output(&self) -> bool {
        !self.outbuf.is_empty() || !self.events.is_empty()
    }

    /// Whether the reply to the final dot waits for [`Server::handle_message_stored`]
    /// ([`ServerOptions::confirm_storage`]).
    pub fn confirms_storage(&self) -> bool {
        self.opts.confirm_storage
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// How fast the driver should read the client's input now (bytes per second), when a
    /// [`ReplyFault::throttle_bytes_per_second`] is in force; `None`: as fast as it comes.
    pub fn read_rate_limit(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        self.read_limit
    }

    /// Whether a delayed reply is being held.
    pub fn is_holding_reply(&self) -> bool {
        self.hold.is_some()
    }

    /// Whether the driver should read more input now. While a reply is held nothing is
    /// processed, so only a little is taken (enough to notice a client that talks early or
    /// leaves); the rest waits in the kernel, as it does at any busy server.
    pub fn wants_input(&self) -> bool {
        !self.closed && (self.hold.is_none() || self.pending_len() < HELD_INPUT_CAP)
    }

    /// Every byte so far.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// Every finding so far (capped per kind).
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Whether the connection is inside TLS now.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Who authenticated, if anyone.
    pub fn auth(&self) -> Option<&AuthInfo> {
        self.auth.as_ref()
    }

    /// The EHLO/HELO/LHLO name, once given.
    pub fn helo_name(&self) -> Option<&str> {
        self.hello.as_ref().map(|h| h.domain.as_str())
    }

    /// Messages accepted so far.
    pub fn messages_accepted(&self) -> u64 {
        self.messages
    }

    // ---- input plumbing ----

    fn pending(&self) -> &[u8] {
        &self.input[self.pos..]
    }

    fn pending_len(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Records and drops the next `n` input bytes; returns their stream offset.
    fn consume(&mut self, n: usize, redactions: Vec<Redaction>) -> u64 {
        let bytes = &self.input[self.pos..self.pos + n];
        let offset = self.transcript.record_redacted(
            Direction::ClientToServer,
            self.now,
            self.tls,
            bytes,
            redactions,
        );
        self.pos += n;
        if self.transcript.capped() && !self.transcript_cap_reported {
            self.transcript_cap_reported = true;
            self.raise(
                Finding::new(
                    SMTP_CLIENT_LIMIT_EXCEEDED,
                    format!(
                        "the session's transcript passed {TRANSCRIPT_KEEP_LIMIT} octets (message content aside): later bytes are recorded by length only"
                    ),
                )
                .at(Direction::ClientToServer, offset),
            );
        }
        offset
    }

    /// Drops the last message's content from the transcript (see `pending_elide`).
    fn elide_last_content(&mut self) {
        for (start, end) in std::mem::take(&mut self.pending_elide) {
            let label = format!("message content, {} octets, stored separately", end - start);
            self.transcript
                .elide(Direction::ClientToServer, start, end, &label);
        }
    }

    fn stream_pos(&self) -> u64 {
        self.transcript.len(Direction::ClientToServer)
    }

    fn compact(&mut self) {
        if self.pos == self.input.len() {
            self.input.clear();
        } else if self.pos > 0 {
            self.input.drain(..self.pos);
        }
        self.pos = 0;
    }

    fn idle_counts(&self) -> bool {
        matches!(
            self.phase,
            Phase::Command | Phase::AuthResponse(_) | Phase::Data(_) | Phase::Bdat(_)
        )
    }

    fn process(&mut self) {
        // A held (delayed) reply stops command processing: input waits in the buffer.
        while !self.closed && self.hold.is_none() {
            let progressed = match self.phase {
                Phase::Command => self.step_command(),
                Phase::AuthResponse(_) => self.step_auth_response(),
                Phase::Data(_) => self.step_data(),
                Phase::Bdat(_) => self.step_bdat(),
                Phase::AwaitTls => {
                    self.discard_plaintext();
                    false
                }
                Phase::NotStarted
                | Phase::GreetPause { .. }
                | Phase::AwaitStore(_)
                | Phase::Closed => false,
            };
            if !progressed {
                break;
            }
        }
    }

    // ---- greeting ----

    fn greet(&mut self) {
        self.phase = Phase::Command;
        let banner = self.opts.banner.clone().unwrap_or_else(|| {
            if self.opts.lmtp {
                "LMTP mailscope".into()
            } else {
                "ESMTP mailscope".into()
            }
        });
        let default = ServerReply::new(220, "", format!("{} {banner}", self.opts.hostname));
        match self.decide(ReplyStage::Connect, None, default) {
            Decision::Reply {
                reply, close_after, ..
            } => {
                self.queue_reply(None, &reply, GREETING);
                if close_after {
                    self.close(CloseReason::Policy);
                    return;
                }
                if !reply.is_positive() {
                    self.refusing = true;
                }
            }
            Decision::Disconnect => {
                self.close(CloseReason::Policy);
                return;
            }
        }
        self.process();
    }

    fn report_pregreet(&mut self) {
        if self.pregreet_reported {
            return;
        }
        self.pregreet_reported = true;
        let n = self.pending_len();
        let preview = crate::escape::escape(&self.pending()[..n.min(60)]);
        let at = self.stream_pos();
        self.raise(
            Finding::new(
                SMTP_CLIENT_PREGREET,
                format!("the client sent {n} bytes before the greeting: {preview}"),
            )
            .at(Direction::ClientToServer, at),
        );
    }

    // ---- commands ----

    fn step_command(&mut self) -> bool {
        if self.pending_len() == 0 {
            return false;
        }
        if self.discarding_line {
            let data = self.pending();
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.consume(i + 1, Vec::new());
                    self.discarding_line = false;
                    return true;
                }
                None => {
                    let n = data.len();
                    self.consume(n, Vec::new());
                    return false;
                }
            }
        }
        let limits = self.opts.limits.request;
        match decode_command(self.pending(), &limits) {
            Ok(Decoded::Incomplete) => false,
            Ok(Decoded::Complete { value, consumed }) => {
                self.handle_command(value, consumed);
                true
            }
            Err(RequestError::LineTooLong { limit }) => {
                self.line_too_long(limit);
                true
            }
        }
    }

    fn line_too_long(&mut self, limit: usize) {
        self.discarding_line = true;
        let offset = self.stream_pos();
        self.raise(
            Finding::new(
                SMTP_COMMAND_TOO_LONG,
                format!(
                    "longer than the server's limit of {limit} octets: answered 500 5.5.2 and discarded up to the next LF"
                ),
            )
            .at(Direction::ClientToServer, offset),
        );
        self.raise(
            Finding::new(
                SMTP_CLIENT_LIMIT_EXCEEDED,
                format!("command line over {limit} octets"),
            )
            .at(Direction::ClientToServer, offset),
        );
        self.respond(
            None,
            ReplyStage::Other,
            None,
            ServerReply::new(500, "5.5.2", "Error: line too long"),
        );
        self.count_error();
    }

    fn handle_command(&mut self, decoded: DecodedRequest, consumed: usize) {
        let DecodedRequest {
            request, findings, ..
        } = decoded;
        let verb = request.verb();
        let redactions = match &request {
            Request::Auth {
                mechanism,
                initial_response: Some(_),
            } => {
                let line = &self.pending()[..consumed];
                auth_line_redaction(line, Mechanism::from_name(mechanism))
            }
            _ => Vec::new(),
        };
        self.line_mark = self.findings.len();
        let offset = self.consume(consumed, redactions);
        self.push_event(Event::CommandReceived {
            command: verb,
            request: request.clone(),
            offset,
        });
        self.check_pipelining(verb, offset);
        for mut f in findings {
            f.offset = f.offset.map(|o| o + offset);
            self.raise(f);
        }
        self.commands += 1;
        if self.commands > self.opts.limits.max_commands {
            let max = self.opts.limits.max_commands;
            self.raise(
                Finding::new(
                    SMTP_CLIENT_LIMIT_EXCEEDED,
                    format!("more than {max} commands in one session"),
                )
                .at(Direction::ClientToServer, offset),
            );
            let host = self.opts.hostname.clone();
            self.send_reply(
                Some(verb),
                &ServerReply::new(421, "4.7.0", format!("{host} Error: too many commands")),
            );
            self.close(CloseReason::TooManyCommands);
            return;
        }
        if self.refusing && !matches!(request, Request::Quit) {
            self.respond(
                Some(verb),
                ReplyStage::Other,
                None,
                ServerReply::new(503, "5.5.1", "Error: no SMTP service here; send QUIT"),
            );
            return;
        }
        self.dispatch(request, offset);
    }

    fn check_pipelining(&mut self, verb: &str, offset: u64) {
        let Some(prev) = self.unsent_reply_to else {
            return;
        };
        if prev == GREETING {
            if !self.pregreet_reported {
                self.pregreet_reported = true;
                self.raise(
                    Finding::new(
                        SMTP_CLIENT_PREGREET,
                        format!("{verb} sent before the greeting"),
                    )
                    .at(Direction::ClientToServer, offset),
                );
            }
        } else if SYNC_VERBS.contains(&prev) {
            self.raise(
                Finding::new(
                    SMTP_CLIENT_PIPELINING_AFTER_SYNC,
                    format!("{verb} sent before the reply to {prev}"),
                )
                .at(Direction::ClientToServer, offset),
            );
        } else if !self.pipelining_offered() {
            self.raise(
                Finding::new(
                    SMTP_CLIENT_PIPELINING_WITHOUT_EXTENSION,
                    format!("{verb} sent before the reply to {prev}, without PIPELINING"),
                )
                .at(Direction::ClientToServer, offset),
            );
        }
    }

    fn pipelining_offered(&self) -> bool {
        self.opts.extensions.pipelining && self.hello.as_ref().is_some_and(|h| h.verb != "HELO")
    }

    fn esmtp(&self) -> bool {
        self.hello.as_ref().is_some_and(|h| h.verb != "HELO")
    }

    fn dispatch(&mut self, request: Request, offset: u64) {
        self.elide_last_content();
        let verb = request.verb();
        match request {
            Request::Ehlo(d) => self.hello_cmd("EHLO", d),
            Request::Helo(d) => self.hello_cmd("HELO", d),
            Request::Lhlo(d) => self.hello_cmd("LHLO", d),
            Request::Mail { from, params } => self.mail(from, params, offset),
            Request::Rcpt { to, params } => self.rcpt(to, params, offset),
            Request::Data => self.data(offset),
            Request::Bdat { size, last } => self.bdat(size, last, offset),
            Request::Rset => {
                self.respond(
                    Some(verb),
                    ReplyStage::Rset,
                    None,
                    ServerReply::new(250, "2.0.0", "Ok"),
                );
                self.txn = None;
            }
            Request::Noop => {
                self.respond(
                    Some(verb),
                    ReplyStage::Noop,
                    None,
                    ServerReply::new(250, "2.0.0", "Ok"),
                );
            }
            Request::Quit => {
                self.quit_received = true;
                match self.decide(
                    ReplyStage::Quit,
                    None,
                    ServerReply::new(221, "2.0.0", "Bye"),
                ) {
                    Decision::Reply { reply, .. } => self.send_reply(Some(verb), &reply),
                    Decision::Disconnect => {}
                }
                self.close(CloseReason::Quit);
            }
            Request::Vrfy(arg) => {
                self.respond(
                    Some(verb),
                    ReplyStage::Vrfy,
                    Some(&arg),
                    ServerReply::new(
                        252,
                        "2.0.0",
                        "Cannot VRFY user, but will accept message and attempt delivery",
                    ),
                );
            }
            Request::Expn(_) => {
                self.respond(
                    Some(verb),
                    ReplyStage::Other,
                    None,
                    ServerReply::new(502, "5.5.1", "Error: EXPN not supported"),
                );
            }
            Request::Help(_) => {
                self.respond(
                    Some(verb),
                    ReplyStage::Other,
                    None,
                    ServerReply::new(214, "2.0.0", "mailscope sink: see RFC 5321"),
                );
            }
            Request::Xclient(_) => {
                self.respond(
                    Some(verb),
                    ReplyStage::Other,
                    None,
                    ServerReply::new(502, "5.5.1", "Error: XCLIENT not supported"),
                );
            }
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth_cmd(&mechanism, initial_response),
            Request::Unknown { .. } => {
                self.refuse(
                    verb,
                    ServerReply::new(500, "5.5.1", "Error: command not recognized"),
                );
            }
            Request::Invalid {
                verb,
                reason,
                bad_address,
            } => {
                let enhanced = match (bad_address, verb) {
                    (true, "MAIL") => "5.1.7",
                    (true, "RCPT") => "5.1.3",
                    _ => "5.5.4",
                };
                self.refuse(
                    verb,
                    ServerReply::new(501, enhanced, format!("Error: {reason}")),
                );
            }
        }
    }

    /// Answers a client error (through the policy) and counts it.
    fn refuse(&mut self, verb: &'static str, reply: ServerReply) {
        let stage = stage_of(verb);
        self.respond(Some(verb), stage, None, reply);
        self.count_error();
    }

    fn bad_sequence(&mut self, verb: &'static str, text: &str) {
        let offset = self.last_command_offset();
        self.raise(
            Finding::new(SMTP_CLIENT_BAD_SEQUENCE, format!("{verb}: {text}"))
                .at(Direction::ClientToServer, offset),
        );
        self.refuse(
            verb,
            ServerReply::new(503, "5.5.1", format!("Error: {text}")),
        );
    }

    /// Refuses a command that needs EHLO first.
    fn need_hello(&mut self, verb: &'static str) -> bool {
        if self.hello.is_some() {
            return false;
        }
        let offset = self.last_command_offset();
        let detail = if self.upgraded {
            format!("{verb} after STARTTLS without a new EHLO")
        } else {
            format!("{verb} before EHLO/HELO")
        };
        self.raise(
            Finding::new(SMTP_CLIENT_COMMAND_BEFORE_EHLO, detail)
                .at(Direction::ClientToServer, offset),
        );
        self.refuse(
            verb,
            ServerReply::new(503, "5.5.1", "Error: send HELO/EHLO first"),
        );
        true
    }

    fn last_command_offset(&self) -> u64 {
        self.transcript
            .chunks()
            .iter()
            .rev()
            .find(|c| c.direction == Direction::ClientToServer)
            .map(|c| c.offset)
            .unwrap_or(0)
    }

    fn not_offered(&mut self, what: String) {
        let offset = self.last_command_offset();
        self.raise(
            Finding::new(SMTP_CLIENT_EXTENSION_NOT_OFFERED, what)
                .at(Direction::ClientToServer, offset),
        );
    }

    fn hello_cmd(&mut self, verb: &'static str, domain: String) {
        if self.opts.lmtp != (verb == "LHLO") {
            let text = if self.opts.lmtp {
                "Error: this is LMTP; use LHLO"
            } else {
                "Error: LHLO is LMTP; use EHLO"
            };
            let offset = self.last_command_offset();
            self.raise(
                Finding::new(SMTP_CLIENT_BAD_SEQUENCE, format!("{verb}: {text}"))
                    .at(Direction::ClientToServer, offset),
            );
            self.refuse(verb, ServerReply::new(500, "5.5.1", text));
            return;
        }
        let host = self.opts.hostname.clone();
        let reply = if verb == "HELO" {
            ServerReply::new(250, "", host)
        } else {
            let mut lines = vec![host];
            lines.extend(self.extension_lines());
            ServerReply::multiline(250, "", lines)
        };
        if self.respond(Some(verb), ReplyStage::Helo, Some(&domain), reply) {
            self.hello = Some(Hello { verb, domain });
            self.txn = None;
        }
    }

    fn auth_offered(&self) -> bool {
        self.opts.extensions.auth
            && !self.advertised_mechanisms().is_empty()
            && (self.tls || self.opts.insecure_auth_plaintext)
    }

    /// The configured mechanisms this connection can serve: the `-PLUS` SCRAMs need channel
    /// binding data (inside TLS), EXTERNAL a verified client certificate.
    fn advertised_mechanisms(&self) -> Vec<Mechanism> {
        self.opts
            .auth_mechanisms
            .iter()
            .copied()
            .filter(|m| self.mechanism_usable(*m).is_ok())
            .collect()
    }

    /// Why a configured mechanism is not offered on this connection, if it is not.
    fn mechanism_usable(&self, m: Mechanism) -> Result<(), &'static str> {
        if m.is_scram_plus() && (!self.tls || self.tls_facts.channel_binding.is_empty()) {
            return Err("it needs TLS channel binding data, offered inside TLS only");
        }
        if m == Mechanism::External && (!self.tls || self.tls_facts.client_certificate.is_none()) {
            return Err(
                "it needs a verified TLS client certificate, and the client presented none",
            );
        }
        Ok(())
    }

    fn starttls_offered(&self) -> bool {
        self.opts.extensions.starttls && !self.tls && !self.opts.implicit_tls
    }

    fn extension_lines(&self) -> Vec<String> {
        let e = self.opts.extensions;
        let mut out = Vec::new();
        if e.pipelining {
            out.push("PIPELINING".into());
        }
        if e.size {
            out.push(format!("SIZE {}", self.opts.limits.max_message_size));
        }
        if self.starttls_offered() {
            out.push("STARTTLS".into());
        }
        if self.auth_offered() {
            let names: Vec<&str> = self
                .advertised_mechanisms()
                .iter()
                .map(|m| m.name())
                .collect();
            out.push(format!("AUTH {}", names.join(" ")));
        }
        if e.enhanced_status_codes {
            out.push("ENHANCEDSTATUSCODES".into());
        }
        if e.eight_bit_mime {
            out.push("8BITMIME".into());
        }
        if e.dsn {
            out.push("DSN".into());
        }
        if e.smtputf8 {
            out.push("SMTPUTF8".into());
        }
        if e.chunking {
            out.push("CHUNKING".into());
            if e.binarymime {
                out.push("BINARYMIME".into());
            }
        }
        out
    }

    // ---- STARTTLS ----

    fn starttls(&mut self) {
        let verb = "STARTTLS";
        if !self.opts.extensions.starttls || self.opts.implicit_tls {
            self.not_offered("STARTTLS is not offered".into());
            self.refuse(
                verb,
                ServerReply::new(502, "5.5.1", "Error: command not implemented"),
            );
            return;
        }
        if self.tls {
            self.bad_sequence(verb, "TLS already active");
            return;
        }
        if self.need_hello(verb) {
            return;
        }
        if !self.esmtp() {
            self.not_offered("STARTTLS after HELO (extensions are offered to EHLO only)".into());
        }
        if self.respond(
            Some(verb),
            ReplyStage::StartTls,
            None,
            ServerReply::new(220, "2.0.0", "Ready to start TLS"),
        ) {
            self.phase = Phase::AwaitTls;
            self.push_event(Event::StartTlsRequested);
            self.discard_plaintext();
        }
    }

    /// Drops every buffered plaintext byte after STARTTLS, with a finding: the injection
    /// bug class (CVE-2011-0411) is executing them after the handshake.
    fn discard_plaintext(&mut self) {
        let n = self.pending_len();
        if n == 0 {
            return;
        }
        let preview = crate::escape::escape(&self.pending()[..n.min(60)]);
        let offset = self.consume(n, Vec::new());
        self.raise(
            Finding::new(
                SMTP_CLIENT_STARTTLS_PIPELINED,
                format!("{n} plaintext bytes after STARTTLS discarded: {preview}"),
            )
            .at(Direction::ClientToServer, offset),
        );
    }

    // ---- AUTH ----

    fn auth_cmd(&mut self, mechanism: &str, initial: Option<Secret<String>>) {
        let verb = "AUTH";
        if !self.opts.extensions.auth || self.opts.auth_mechanisms.is_empty() {
            self.not_offered("AUTH is not offered".into());
            self.refuse(
                verb,
                ServerReply::new(502, "5.5.1", "Error: authentication not enabled"),
            );
            return;
        }
        if self.need_hello(verb) {
            return;
        }
        if !self.tls && !self.opts.insecure_auth_plaintext {
            self.not_offered("AUTH before STARTTLS (it is offered inside TLS only)".into());
            self.refuse(
                verb,
                ServerReply::new(
                    538,
                    "5.7.11",
                    "Encryption required for requested authentication mechanism",
                ),
            );
            return;
        }
        if self.auth.is_some() {
            self.bad_sequence(verb, "already authenticated");
            return;
        }
        if self.txn.is_some() {
            self.bad_sequence(verb, "AUTH is not allowed during a mail transaction");
            return;
        }
        let mech =
            Mechanism::from_name(mechanism).filter(|m| self.opts.auth_mechanisms.contains(m));
        let unusable = mech.and_then(|m| self.mechanism_usable(m).err());
        let Some(mech) = mech.filter(|_| unusable.is_none()) else {
            let why = unusable.map(|w| format!(": {w}")).unwrap_or_default();
            self.not_offered(format!("AUTH mechanism {mechanism:?} is not offered{why}"));
            self.refuse(
                verb,
                ServerReply::new(504, "5.5.4", "Unrecognized authentication type"),
            );
            return;
        };
        if !self.esmtp() {
            self.not_offered("AUTH after HELO (extensions are offered to EHLO only)".into());
        }
        if !self.tls {
            let offset = self.last_command_offset();
            self.raise(
                Finding::new(
                    SMTP_AUTH_USED_WITHOUT_TLS,
                    format!("the client used AUTH {} without TLS", mech.name()),
                )
                .at(Direction::ClientToServer, offset),
            );
        }
        self.auth_attempts += 1;
        let nonce = format!("{}{}", self.opts.auth_nonce, self.auth_attempts);
        let session = match ServerSession::new(mech, &nonce, &self.opts.hostname) {
            Ok(s) => {
                // Channel binding is supported here only where -PLUS is offered; then a
                // non-PLUS SCRAM client that says "y" is a downgrade.
                let plus_offered = self
                    .advertised_mechanisms()
                    .iter()
                    .any(|m| m.is_scram_plus());
                let binding = if plus_offered {
                    self.tls_facts.channel_binding.clone()
                } else {
                    ChannelBindingData::default()
                };
                let identity = self
                    .tls_facts
                    .client_certificate
                    .as_ref()
                    .filter(|_| self.tls)
                    .map(|c| c.identity.clone());
                s.with_channel_binding(binding)
                    .with_external_identity(identity)
            }
            Err(e) => {
                self.note(&format!("cannot start AUTH {}: {e}", mech.name()));
                self.respond(
                    Some(verb),
                    ReplyStage::Auth,
                    Some(mech.name()),
                    ServerReply::new(454, "4.7.0", "Temporary authentication failure"),
                );
                return;
            }
        };
        let mut ex = AuthExchange {
            session,
            mechanism: mech,
            client_messages: 0,
            pending_success: None,
        };
        let step = match initial {
            None => ex.session.start(),
            Some(ir) => match decode_b64(ir.expose().as_bytes()) {
                Some(data) => {
                    ex.client_messages += 1;
                    self.sasl_step(&mut ex, &data)
                }
                None => {
                    self.auth_syntax("the initial response is not base64");
                    return;
                }
            },
        };
        self.after_sasl_step(ex, step);
    }

    fn auth_syntax(&mut self, what: &str) {
        let offset = self.last_command_offset();
        self.raise(
            Finding::new(SMTP_CLIENT_COMMAND_SYNTAX, format!("AUTH: {what}"))
                .at(Direction::ClientToServer, offset),
        );
        self.phase = Phase::Command;
        self.refuse(
            "AUTH",
            ServerReply::new(501, "5.5.2", format!("Error: {what}")),
        );
    }

    fn sasl_step(&self, ex: &mut AuthExchange, data: &[u8]) -> ServerStep {
        match &self.opts.auth {
            AuthCheck::Lookup(lookup) => ex.session.step(data, lookup.as_ref()),
            AuthCheck::AcceptAny { scram_password } => match ex.mechanism {
                Mechanism::Plain => {
                    let given = data.split(|&b| b == 0).nth(2).unwrap_or_default();
                    let given = String::from_utf8_lossy(given).into_owned();
                    let echo = move |_: &str| Some(Secret::new(given.clone()));
                    ex.session.step(data, &echo)
                }
                Mechanism::Login => {
                    let given = String::from_utf8_lossy(data).into_owned();
                    let echo = move |_: &str| Some(Secret::new(given.clone()));
                    ex.session.step(data, &echo)
                }
                Mechanism::CramMd5 => cram_md5_any(data),
                Mechanism::ScramSha1
                | Mechanism::ScramSha256
                | Mechanism::ScramSha1Plus
                | Mechanism::ScramSha256Plus => {
                    let pw = scram_password.clone();
                    let fixed = move |_: &str| Some(pw.clone());
                    ex.session.step(data, &fixed)
                }
                Mechanism::XOauth2 | Mechanism::OAuthBearer => {
                    // Any token: the one sent is the one expected.
                    let given = crate::sasl::OAuthMechanism::of(ex.mechanism)
                        .and_then(|m| crate::sasl::oauth::parse_client_message(m, data).ok())
                        .and_then(|m| match m {
                            crate::sasl::oauth::OAuthClientMessage::Initial(r) => r.bearer_token(),
                            crate::sasl::oauth::OAuthClientMessage::ErrorAcknowledgement => None,
                        })
                        .map(|t| String::from_utf8_lossy(t.expose()).into_owned());
                    let echo = move |_: &str| given.clone().map(Secret::new);
                    ex.session.step(data, &echo)
                }
                Mechanism::External => {
                    let anyone = |_: &str| Some(Secret::new(String::new()));
                    ex.session.step(data, &anyone)
                }
            },
        }
    }

    fn after_sasl_step(&mut self, mut ex: AuthExchange, step: ServerStep) {
        match step {
            ServerStep::Challenge(c) => {
                if ex.mechanism.is_oauth() && !c.is_empty() {
                    self.note(&format!(
                        "AUTH {}: token refused; sending the RFC 7628 error challenge, the client must acknowledge it before the 535",
                        ex.mechanism.name()
                    ));
                }
                self.send_challenge(&c);
                self.phase = Phase::AuthResponse(Box::new(ex));
            }
            ServerStep::Success {
                authzid,
                authcid,
                additional_data: Some(data),
            } => {
                // SMTP cannot carry data with 235: send server-final as a challenge.
                self.send_challenge(&data);
                ex.pending_success = Some((authzid, authcid));
                self.phase = Phase::AuthResponse(Box::new(ex));
            }
            ServerStep::Success {
                authzid, authcid, ..
            } => {
                self.phase = Phase::Command;
                let binding = ex.session.channel_binding_used();
                self.auth_succeeded(ex.mechanism, authcid, authzid, binding);
            }
            ServerStep::Failure(f) => {
                self.phase = Phase::Command;
                self.auth_failed(Some(ex.mechanism), f.to_string());
            }
        }
    }

    fn send_challenge(&mut self, c: &[u8]) {
        let reply = ServerReply::new(334, "", B64.encode(c));
        self.send_reply(Some("AUTH"), &reply);
    }

    fn auth_succeeded(
        &mut self,
        mechanism: Mechanism,
        authcid: String,
        authzid: Option<String>,
        binding: Option<crate::sasl::ChannelBindingType>,
    ) {
        if self.respond(
            Some("AUTH"),
            ReplyStage::Auth,
            Some(mechanism.name()),
            ServerReply::new(235, "2.7.0", "Authentication successful"),
        ) {
            self.auth = Some(AuthInfo {
                mechanism,
                authcid: authcid.clone(),
                authzid: authzid.clone(),
            });
            if let Some(ty) = binding {
                self.note(&format!(
                    "AUTH {}: channel binding {ty} checked: the client sees the same TLS channel as the sink",
                    mechanism.name()
                ));
            }
            if mechanism == Mechanism::External {
                let subject = self
                    .tls_facts
                    .client_certificate
                    .as_ref()
                    .map(|c| c.subject.clone())
                    .unwrap_or_default();
                self.note(&format!(
                    "AUTH EXTERNAL as {} from the verified client certificate ({subject})",
                    quote(authcid.as_bytes())
                ));
            } else if matches!(self.opts.auth, AuthCheck::AcceptAny { .. }) {
                let how = if mechanism.is_scram() {
                    "any user with the fixed SCRAM password"
                } else if mechanism.is_oauth() {
                    "any bearer token"
                } else {
                    "any password"
                };
                self.note(&format!(
                    "AUTH {} for {} accepted without checking: no users file ({how})",
                    mechanism.name(),
                    quote(authcid.as_bytes())
                ));
            }
            self.push_event(Event::Authenticated {
                mechanism,
                authcid,
                authzid,
            });
        }
    }

    fn auth_failed(&mut self, mechanism: Option<Mechanism>, reason: String) {
        self.push_event(Event::AuthFailed { mechanism, reason });
        self.respond(
            Some("AUTH"),
            ReplyStage::Auth,
            mechanism.map(Mechanism::name),
            ServerReply::new(535, "5.7.8", "Error: authentication failed"),
        );
        self.count_error();
    }

    fn step_auth_response(&mut self) -> bool {
        if self.pending_len() == 0 {
            return false;
        }
        let limits = self.opts.limits.request;
        let (content, findings, consumed) = match decode_auth_response(self.pending(), &limits) {
            Ok(Decoded::Incomplete) => return false,
            Ok(Decoded::Complete {
                value:
                    AuthResponse {
                        text: content,
                        findings,
                    },
                consumed,
            }) => (content, findings, consumed),
            Err(RequestError::LineTooLong { limit }) => {
                self.phase = Phase::Command;
                self.line_too_long(limit);
                return true;
            }
        };
        let Phase::AuthResponse(mut ex) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return false;
        };
        let cancel = content.trim_ascii() == b"*";
        let redactions = if cancel || content.is_empty() {
            Vec::new()
        } else {
            let summary = if ex.pending_success.is_some() {
                format!("{} bytes", content.len())
            } else {
                sasl_summary(Some(ex.mechanism), ex.client_messages, &content)
            };
            vec![Redaction {
                start: 0,
                end: content.len(),
                replacement: format!("<redacted: {summary}>"),
            }]
        };
        let offset = self.consume(consumed, redactions);
        self.check_pipelining("AUTH response", offset);
        for mut f in findings {
            f.offset = f.offset.map(|o| o + offset);
            self.raise(f);
        }
        if cancel {
            // RFC 4954 §4: "*" cancels; the server answers 501.
            self.push_event(Event::AuthFailed {
                mechanism: Some(ex.mechanism),
                reason: "cancelled by the client (\"*\")".into(),
            });
            self.respond(
                Some("AUTH"),
                ReplyStage::Auth,
                Some(ex.mechanism.name()),
                ServerReply::new(501, "5.7.0", "Authentication aborted"),
            );
            return true;
        }
        if let Some((authzid, authcid)) = ex.pending_success.take() {
            if content.trim_ascii().is_empty() {
                let binding = ex.session.channel_binding_used();
                self.auth_succeeded(ex.mechanism, authcid, authzid, binding);
            } else {
                self.auth_failed(
                    Some(ex.mechanism),
                    "the answer to SCRAM server-final was not empty".into(),
                );
            }
            return true;
        }
        let Some(data) = decode_b64(&content) else {
            self.auth_syntax("the response is not base64");
            return true;
        };
        ex.client_messages += 1;
        let step = self.sasl_step(&mut ex, &data);
        self.after_sasl_step(*ex, step);
        true
    }

    // ---- transaction ----

    /// Checks MAIL/RCPT parameters against what is offered; `Err` is the refusal.
    fn check_params(
        &mut self,
        verb: &'static str,
        params: &[EsmtpParam],
    ) -> Result<(), ServerReply> {
        let e = self.opts.extensions;
        let mail = verb == "MAIL";
        for p in params {
            let (enabled, ext) = match p {
                EsmtpParam::Size(_) => (mail && e.size, "SIZE"),
                EsmtpParam::Body(Body::BinaryMime) => {
                    (mail && e.binarymime && e.chunking, "BINARYMIME")
                }
                EsmtpParam::Body(_) => (mail && e.eight_bit_mime, "8BITMIME"),
                EsmtpParam::SmtpUtf8 => (mail && e.smtputf8, "SMTPUTF8"),
                EsmtpParam::Ret(_) | EsmtpParam::EnvId(_) => (mail && e.dsn, "DSN"),
                EsmtpParam::Notify(_) | EsmtpParam::Orcpt(_) => (!mail && e.dsn, "DSN"),
                EsmtpParam::Auth(_) => (mail && e.auth, "AUTH"),
                EsmtpParam::RequireTls | EsmtpParam::Unknown { .. } => (false, ""),
            };
            if !enabled {
                let what = if ext.is_empty() {
                    format!("{verb} parameter {} is not supported", p.keyword())
                } else if (mail && matches!(p, EsmtpParam::Notify(_) | EsmtpParam::Orcpt(_)))
                    || (!mail && !matches!(p, EsmtpParam::Notify(_) | EsmtpParam::Orcpt(_)))
                {
                    format!("{} is not a {verb} parameter", p.keyword())
                } else {
                    format!(
                        "{verb} parameter {} needs {ext}, which is not offered",
                        p.keyword()
                    )
                };
                self.not_offered(what);
                return Err(ServerReply::new(
                    555,
                    "5.5.4",
                    format!("Error: unsupported parameter {}", p.keyword()),
                ));
            }
            if !self.esmtp() {
                self.not_offered(format!(
                    "{verb} parameter {} after HELO (extensions are offered to EHLO only)",
                    p.keyword()
                ));
            }
            if let EsmtpParam::Size(n) = p
                && *n > self.opts.limits.max_message_size
            {
                let max = self.opts.limits.max_message_size;
                let offset = self.last_command_offset();
                self.raise(
                    Finding::new(
                        SMTP_CLIENT_LIMIT_EXCEEDED,
                        format!("SIZE={n} declared, the limit is {max}"),
                    )
                    .at(Direction::ClientToServer, offset),
                );
                return Err(ServerReply::new(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                ));
            }
        }
        Ok(())
    }

    fn mail(&mut self, from: Path, params: Vec<EsmtpParam>, offset: u64) {
        let verb = "MAIL";
        if self.need_hello(verb) {
            return;
        }
        if self.opts.auth_required && self.auth.is_none() {
            self.refuse(
                verb,
                ServerReply::new(530, "5.7.0", "Authentication required"),
            );
            return;
        }
        if self.txn.is_some() {
            self.bad_sequence(verb, "nested MAIL command");
            return;
        }
        if let Err(reply) = self.check_params(verb, &params) {
            self.refuse(verb, reply);
            return;
        }
        let smtputf8 = params.contains(&EsmtpParam::SmtpUtf8);
        if from.is_non_ascii() && !smtputf8 {
            self.raise(
                Finding::new(
                    SMTP_CLIENT_ADDRESS_SYNTAX,
                    format!("MAIL FROM {from}: non-ASCII address without SMTPUTF8"),
                )
                .at(Direction::ClientToServer, offset),
            );
        }
        let body = params.iter().find_map(|p| match p {
            EsmtpParam::Body(b) => Some(*b),
            _ => None,
        });
        let arg = from.address.clone();
        if self.respond(
            Some(verb),
            ReplyStage::Mail,
            Some(&arg),
            ServerReply::new(250, "2.1.0", "Ok"),
        ) {
            let findings = self.findings[self.line_mark.min(self.findings.len())..].to_vec();
            self.txn = Some(Transaction {
                from,
                params,
                rcpts: Vec::new(),
                findings,
                body,
                smtputf8,
                bdat: None,
                bdat_ranges: Vec::new(),
            });
        }
    }

    fn rcpt(&mut self, to: Path, params: Vec<EsmtpParam>, offset: u64) {
        let verb = "RCPT";
        if self.need_hello(verb) {
            return;
        }
        let Some(txn) = &self.txn else {
            self.bad_sequence(verb, "need MAIL command");
            return;
        };
        if txn.bdat.is_some() {
            self.bad_sequence(verb, "RCPT after BDAT");
            return;
        }
        let count = txn.rcpts.len();
        let smtputf8 = txn.smtputf8;
        if let Err(reply) = self.check_params(verb, &params) {
            self.refuse(verb, reply);
            return;
        }
        if count >= self.opts.limits.max_recipients {
            let max = self.opts.limits.max_recipients;
            self.raise(
                Finding::new(
                    SMTP_CLIENT_LIMIT_EXCEEDED,
                    format!("more than {max} recipients in one message"),
                )
                .at(Direction::ClientToServer, offset),
            );
            self.respond(
                Some(verb),
                ReplyStage::Rcpt,
                Some(&to.address),
                ServerReply::new(452, "4.5.3", "Error: too many recipients"),
            );
            return;
        }
        if to.is_non_ascii() && !smtputf8 {
            self.raise(
                Finding::new(
                    SMTP_CLIENT_ADDRESS_SYNTAX,
                    format!("RCPT TO {to}: non-ASCII address without SMTPUTF8"),
                )
                .at(Direction::ClientToServer, offset),
            );
        }
        let arg = to.address.clone();
        if self.respond(
            Some(verb),
            ReplyStage::Rcpt,
            Some(&arg),
            ServerReply::new(250, "2.1.5", "Ok"),
        ) && let Some(txn) = &mut self.txn
        {
            txn.rcpts.push(Recipient { to, params });
        }
    }

    /// The transaction is ready for content, or the refusal was sent.
    fn ready_for_content(&mut self, verb: &'static str) -> bool {
        if self.need_hello(verb) {
            return false;
        }
        match &self.txn {
            None => {
                self.bad_sequence(verb, "need MAIL command");
                false
            }
            Some(t) if t.rcpts.is_empty() => {
                self.bad_sequence(verb, "need RCPT command");
                false
            }
            Some(_) => true,
        }
    }

    fn data(&mut self, _offset: u64) {
        let verb = "DATA";
        if !self.ready_for_content(verb) {
            return;
        }
        if self.txn.as_ref().is_some_and(|t| t.bdat.is_some()) {
            self.bad_sequence(verb, "DATA after BDAT");
            return;
        }
        if self
            .txn
            .as_ref()
            .is_some_and(|t| t.body == Some(Body::BinaryMime))
        {
            self.bad_sequence(verb, "BODY=BINARYMIME needs BDAT, not DATA");
            return;
        }
        let accepted = self.respond(
            Some(verb),
            ReplyStage::Data,
            None,
            ServerReply::new(354, "", "End data with <CR><LF>.<CR><LF>"),
        );
        let cut = self.pending_cut.take();
        if accepted {
            let start = self.stream_pos();
            self.phase = Phase::Data(Box::new(DataReceiver::new(
                start,
                self.opts.limits.max_message_size,
                self.opts.strict,
            )));
            self.data_cut = cut;
            if cut == Some(0) {
                self.cut_data(false);
            }
        }
    }

    /// [`ReplyAction::DisconnectInData`]: closes in the middle of the message (or at its
    /// end, if it was shorter), without a reply; the message is lost.
    fn cut_data(&mut self, at_end: bool) {
        let octets = self.stream_pos().saturating_sub(match &self.phase {
            Phase::Data(rx) => rx.start_offset(),
            _ => self.stream_pos(),
        });
        self.data_cut = None;
        self.txn = None;
        if at_end {
            self.note(&format!(
                "fault injected: the message ended after {octets} octets, before the cut; closing at the end of data without a reply (the message is discarded)"
            ));
        } else {
            self.note(&format!(
                "fault injected: closing in the middle of DATA after {octets} octets of message content, without a reply (the message is discarded)"
            ));
        }
        self.close(CloseReason::Policy);
    }

    fn step_data(&mut self) -> bool {
        if self.pending_len() == 0 {
            return false;
        }
        if self.unsent_reply_to == Some("DATA") {
            let offset = self.stream_pos();
            self.raise(
                Finding::new(
                    SMTP_CLIENT_PIPELINING_AFTER_SYNC,
                    "message content sent before the 354 reply to DATA",
                )
                .at(Direction::ClientToServer, offset),
            );
            // Once per message.
            self.unsent_reply_to = Some("DATA content");
        }
        // With a cut ahead, read no further than the cut.
        let take = match self.data_cut {
            Some(left) => self
                .pending_len()
                .min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => self.pending_len(),
        };
        let Phase::Data(rx) = &mut self.phase else {
            return false;
        };
        let progress = rx.feed(&self.input[self.pos..self.pos + take]);
        match progress {
            DataProgress::NeedMore => {
                self.consume(take, Vec::new());
                if let Some(left) = &mut self.data_cut {
                    *left = left.saturating_sub(take as u64);
                    if *left == 0 {
                        self.cut_data(false);
                    }
                }
                false
            }
            DataProgress::Complete { consumed } => {
                self.consume(consumed, Vec::new());
                if self.data_cut.is_some() {
                    self.cut_data(true);
                    return false;
                }
                let Phase::Data(rx) = std::mem::replace(&mut self.phase, Phase::Command) else {
                    return false;
                };
                let eight = self
                    .txn
                    .as_ref()
                    .is_some_and(Transaction::eight_bit_declared);
                let start = rx.start_offset();
                let data = rx.finish(eight);
                self.finish_message(data, Transfer::Data, start);
                true
            }
            DataProgress::BareLf { consumed, offset } => {
                self.consume(consumed, Vec::new());
                self.data_cut = None;
                let Phase::Data(rx) = std::mem::replace(&mut self.phase, Phase::Command) else {
                    return false;
                };
                let eight = self
                    .txn
                    .as_ref()
                    .is_some_and(Transaction::eight_bit_declared);
                for f in rx.finish(eight).findings {
                    self.raise(f);
                }
                self.txn = None;
                let strict = self.opts.strict;
                match strict {
                    Strict::Qmail => {
                        self.note(&format!(
                            "strict qmail: bare LF at offset {offset}; answering 451 and closing, as qmail-smtpd does"
                        ));
                        self.send_reply(
                            Some("DATA"),
                            &ServerReply::new(
                                451,
                                "",
                                "See http://pobox.com/~djb/docs/smtplf.html.",
                            ),
                        );
                    }
                    _ => {
                        self.note(&format!(
                            "strict drop: bare LF at offset {offset}; closing without a reply"
                        ));
                    }
                }
                self.close(CloseReason::StrictBareLf(strict));
                true
            }
        }
    }

    fn bdat(&mut self, size: u64, last: bool, _offset: u64) {
        let start = self.stream_pos();
        let mut refusal = None;
        if !self.opts.extensions.chunking {
            self.not_offered("BDAT without CHUNKING".into());
            refusal = Some(ServerReply::new(
                502,
                "5.5.1",
                "Error: command not implemented",
            ));
        } else if self.hello.is_none() {
            let detail = if self.upgraded {
                "BDAT after STARTTLS without a new EHLO"
            } else {
                "BDAT before EHLO/HELO"
            };
            let offset = self.last_command_offset();
            self.raise(
                Finding::new(SMTP_CLIENT_COMMAND_BEFORE_EHLO, detail)
                    .at(Direction::ClientToServer, offset),
            );
            refusal = Some(ServerReply::new(
                503,
                "5.5.1",
                "Error: send HELO/EHLO first",
            ));
        } else {
            let problem = match &self.txn {
                None => Some("need MAIL command"),
                Some(t) if t.rcpts.is_empty() => Some("need RCPT command"),
                _ => None,
            };
            if let Some(p) = problem {
                let offset = self.last_command_offset();
                self.raise(
                    Finding::new(SMTP_CLIENT_BAD_SEQUENCE, format!("BDAT: {p}"))
                        .at(Direction::ClientToServer, offset),
                );
                refusal = Some(ServerReply::new(503, "5.5.1", format!("Error: {p}")));
            } else if !self.esmtp() {
                self.not_offered("BDAT after HELO (extensions are offered to EHLO only)".into());
            }
        }
        if refusal.is_none()
            && let Some(t) = &mut self.txn
        {
            t.bdat
                .get_or_insert_with(|| MessageBuffer::new(self.opts.limits.max_message_size));
        }
        // The chunk follows the command line whatever the answer: read it, or its bytes
        // would be taken for commands (a smuggling vector of its own).
        self.phase = Phase::Bdat(BdatChunk {
            rx: BdatReceiver::new(size, start),
            start,
            last,
            size,
            refusal,
        });
        if size == 0 {
            self.step_bdat();
        }
    }

    fn step_bdat(&mut self) -> bool {
        let Phase::Bdat(chunk) = &mut self.phase else {
            return false;
        };
        if self.input.len() == self.pos && chunk.rx.remaining() > 0 {
            return false;
        }
        let buf = if chunk.refusal.is_none() {
            self.txn.as_mut().and_then(|t| t.bdat.as_mut())
        } else {
            None
        };
        let progress = chunk.rx.feed(&self.input[self.pos..], buf);
        match progress {
            BdatProgress::NeedMore => {
                let n = self.pending_len();
                self.consume(n, Vec::new());
                false
            }
            BdatProgress::Complete { consumed } => {
                self.consume(consumed, Vec::new());
                let Phase::Bdat(chunk) = std::mem::replace(&mut self.phase, Phase::Command) else {
                    return false;
                };
                self.chunk_done(chunk);
                true
            }
        }
    }

    fn chunk_done(&mut self, chunk: BdatChunk) {
        let verb = "BDAT";
        if let Some(reply) = chunk.refusal {
            // RFC 3030 §2: after a refused chunk the transaction has failed.
            if self.txn.as_ref().is_some_and(|t| t.bdat.is_some()) {
                self.txn = None;
            }
            self.refuse(verb, reply);
            return;
        }
        let overflow = self
            .txn
            .as_ref()
            .and_then(|t| t.bdat.as_ref())
            .is_some_and(MessageBuffer::overflowed);
        if overflow {
            let max = self.opts.limits.max_message_size;
            let offset = self.last_command_offset();
            self.raise(
                Finding::new(
                    SMTP_CLIENT_LIMIT_EXCEEDED,
                    format!("message over {max} octets"),
                )
                .at(Direction::ClientToServer, offset),
            );
            self.txn = None;
            let stage = if chunk.last {
                ReplyStage::EndOfData
            } else {
                ReplyStage::Bdat
            };
            self.respond(
                Some(verb),
                stage,
                None,
                ServerReply::new(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                ),
            );
            return;
        }
        if chunk.size > 0
            && let Some(t) = &mut self.txn
            && t.bdat_ranges.len() < MAX_ELIDED_CHUNKS
        {
            t.bdat_ranges.push((chunk.start, chunk.start + chunk.size));
        }
        if !chunk.last {
            let accepted = self.respond(
                Some(verb),
                ReplyStage::Bdat,
                None,
                ServerReply::new(250, "2.0.0", format!("Ok: {} octets received", chunk.size)),
            );
            if !accepted {
                self.txn = None;
            }
            return;
        }
        let Some(txn) = &mut self.txn else {
            return;
        };
        let binary = txn.body == Some(Body::BinaryMime);
        let eight = txn.eight_bit_declared();
        let Some(buf) = txn.bdat.take() else {
            return;
        };
        let ranges = std::mem::take(&mut txn.bdat_ranges);
        let start = buf.stream_offset(0).unwrap_or_else(|| self.stream_pos());
        let data = buf.finish(Vec::new(), eight, !binary, None);
        self.finish_message(data, Transfer::Bdat, start);
        // The chunks' bytes are stored with the message: the transcript keeps the BDAT lines
        // and a note of each chunk's size, as it does for DATA content.
        self.pending_elide.extend(ranges);
    }

    fn accepted_reply(&self, id: &str) -> ServerReply {
        if self.opts.lmtp {
            ServerReply::new(250, "2.1.5", format!("Ok: queued as {id}"))
        } else {
            ServerReply::new(250, "2.0.0", format!("Ok: queued as {id}"))
        }
    }

    /// The end of a message (final dot or BDAT LAST): lints, decides, reports, replies.
    fn finish_message(&mut self, data: ReceivedData, transfer: Transfer, start: u64) {
        let verb = if transfer == Transfer::Data {
            "."
        } else {
            "BDAT"
        };
        for f in &data.findings {
            self.raise(f.clone());
        }
        let content_offset = data.content_offset.unwrap_or(start);
        for f in lint_headers(&data.content, Some(content_offset)) {
            self.raise(f);
        }
        if transfer == Transfer::Data {
            // The wire bytes of the content end where the terminator's `.\r\n` starts (the
            // stream is right after it now); BDAT interleaves command lines, so it is kept.
            let end = self.stream_pos().saturating_sub(3);
            if end > content_offset {
                self.pending_elide.push((content_offset, end));
            }
        }
        let default = if data.overflow {
            let max = self.opts.limits.max_message_size;
            self.raise(
                Finding::new(
                    SMTP_CLIENT_LIMIT_EXCEEDED,
                    format!("message of {} octets, the limit is {max}", data.size),
                )
                .at(Direction::ClientToServer, content_offset),
            );
            ServerReply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            )
        } else if let (Strict::Postfix, Some(at), Transfer::Data) =
            (self.opts.strict, data.first_bare_lf, transfer)
        {
            self.note(&format!(
                "strict postfix: bare LF at offset {at}; refusing the message after the final dot"
            ));
            ServerReply::new(550, "5.5.2", "Error: bare <LF> received")
        } else {
            let id = format!("{}.{}", self.opts.session_id, self.messages + 1);
            self.accepted_reply(&id)
        };
        // The transaction stays in place while deciding: policies see its envelope.
        let Some(rcpts) = self.txn.as_ref().map(|t| t.rcpts.clone()) else {
            return;
        };
        let targets: Vec<Option<String>> = if self.opts.lmtp {
            rcpts.iter().map(|r| Some(r.to.address.clone())).collect()
        } else {
            vec![None]
        };
        let mut decisions = Vec::new();
        let mut accepted_rcpts = Vec::new();
        let mut dropped = false;
        for (i, t) in targets.iter().enumerate() {
            let d = self.decide(ReplyStage::EndOfData, t.as_deref(), default.clone());
            let disconnect = matches!(d, Decision::Disconnect);
            match d {
                Decision::Reply {
                    accepted: true,
                    dropped: false,
                    ..
                } => {
                    if self.opts.lmtp {
                        accepted_rcpts.push(rcpts[i].clone());
                    } else {
                        accepted_rcpts = rcpts.clone();
                    }
                }
                Decision::Reply { dropped: true, .. } => dropped = true,
                _ => {}
            }
            decisions.push(d);
            if disconnect {
                break;
            }
        }
        let Some(txn) = self.txn.take() else {
            return;
        };
        if accepted_rcpts.is_empty() && dropped {
            // The client was told it was accepted: it counts, though nothing is kept.
            self.messages += 1;
        }
        if !accepted_rcpts.is_empty() {
            self.messages += 1;
            // Findings raised since MAIL were collected by `raise`.
            let findings = txn.findings;
            let msg = ReceivedMessage {
                index: self.messages,
                envelope: Envelope {
                    from: txn.from,
                    params: txn.params,
                    rcpts: accepted_rcpts,
                },
                content: data.content,
                content_offset,
                transfer,
                findings,
                auth: self.auth.clone(),
                tls: self.tls,
                helo: self.hello.as_ref().map(|h| h.domain.clone()),
            };
            self.push_event(Event::MessageReceived(Box::new(msg)));
            if self.opts.confirm_storage {
                self.phase = Phase::AwaitStore(Box::new(PendingReplies { decisions }));
                return;
            }
        }
        self.send_decisions(verb, decisions);
    }

    fn send_decisions(&mut self, verb: &'static str, decisions: Vec<Decision>) {
        for d in decisions {
            match d {
                Decision::Reply {
                    reply, close_after, ..
                } => {
                    self.send_reply(Some(verb), &reply);
                    if close_after {
                        self.close(CloseReason::Policy);
                        return;
                    }
                }
                Decision::Disconnect => {
                    self.close(CloseReason::Policy);
                    return;
                }
            }
        }
    }

    // ---- replies ----

    fn decide(
        &mut self,
        stage: ReplyStage,
        argument: Option<&str>,
        default: ServerReply,
    ) -> Decision {
        let n = {
            let c = self.stage_counts.entry(stage).or_insert(0);
            *c += 1;
            *c
        };
        // A throttle lasts until the next reply is decided; a cut belongs to one DATA.
        self.read_limit = None;
        self.pending_cut = None;
        let sender = if stage == ReplyStage::Mail {
            argument
        } else {
            self.txn.as_ref().map(|t| t.from.address.as_str())
        };
        let recipients: &[Recipient] = self.txn.as_ref().map_or(&[], |t| t.rcpts.as_slice());
        let action = match self.policy.as_mut() {
            Some(p) => p.decide(&ReplyContext {
                stage,
                occurrence: n,
                message: self.messages + 1,
                argument,
                sender,
                recipients,
                now: self.now,
                reply: &default,
            }),
            None => ReplyAction::Default,
        };
        let mut action = action;
        let mut delay_us = 0u64;
        let mut throttle = None;
        let mut label = None;
        while let ReplyAction::With(fault) = action {
            let fault = *fault;
            delay_us = delay_us.max(fault.delay_us);
            throttle = throttle.or(fault.throttle_bytes_per_second);
            label = label.or(fault.label);
            action = fault.action;
        }
        let default_ok = default.is_positive();
        let default_summary = default.summary();
        let as_default = |default: ServerReply| Decision::Reply {
            close_after: default.code == 421,
            accepted: default_ok,
            reply: default,
            replaced: false,
            dropped: false,
        };
        let (decision, what) = match action {
            ReplyAction::Default | ReplyAction::With(_) => (as_default(default), None),
            ReplyAction::Reply(r) => {
                let what = format!("{} instead of {default_summary}", r.summary());
                (
                    Decision::Reply {
                        close_after: r.code == 421,
                        accepted: default_ok && r.is_positive(),
                        reply: r,
                        replaced: true,
                        dropped: false,
                    },
                    Some(what),
                )
            }
            ReplyAction::ReplyAndClose(r) => {
                let what = format!("{} and close, instead of {default_summary}", r.summary());
                (
                    Decision::Reply {
                        close_after: true,
                        accepted: false,
                        reply: r,
                        replaced: true,
                        dropped: false,
                    },
                    Some(what),
                )
            }
            ReplyAction::Disconnect => (
                Decision::Disconnect,
                Some(format!("disconnect instead of {default_summary}")),
            ),
            ReplyAction::AcceptButDrop if stage == ReplyStage::EndOfData && default_ok => (
                Decision::Reply {
                    close_after: false,
                    accepted: true,
                    reply: default,
                    replaced: false,
                    dropped: true,
                },
                Some(format!(
                    "{default_summary} sent, but the message is dropped: not stored (accept_but_drop)"
                )),
            ),
            ReplyAction::AcceptButDrop => (
                as_default(default),
                Some(format!(
                    "accept_but_drop has no effect here; {default_summary} sent as usual"
                )),
            ),
            ReplyAction::DisconnectInData { after_octets } if stage == ReplyStage::Data => {
                if default_ok {
                    self.pending_cut = Some(after_octets);
                    (
                        as_default(default),
                        Some(format!(
                            "{default_summary} sent, then the connection is closed without a reply after {after_octets} octets of message content"
                        )),
                    )
                } else {
                    (
                        as_default(default),
                        Some(format!(
                            "no message follows {default_summary}: nothing to cut, sent as usual"
                        )),
                    )
                }
            }
            ReplyAction::DisconnectInData { .. } => (
                Decision::Disconnect,
                Some(format!("disconnect instead of {default_summary}")),
            ),
        };
        let mut effects = Vec::new();
        if delay_us > 0 {
            effects.push(format!("delayed by {}", human_delay(delay_us)));
        }
        if let Some(bps) = throttle {
            let bps = bps.max(1);
            self.read_limit = Some(bps);
            effects.push(format!(
                "reading throttled to {bps} bytes/s until the next reply"
            ));
        }
        if what.is_some() || !effects.is_empty() {
            let mut text = what.unwrap_or_else(|| default_summary.clone());
            for e in &effects {
                text.push_str(", ");
                text.push_str(e);
            }
            let by = label.map(|l| format!(" ({l})")).unwrap_or_default();
            self.note(&format!(
                "fault injected at {} #{n}{by}: {text}",
                stage.name()
            ));
        }
        if delay_us > 0 {
            let until = Timestamp(self.now.0.saturating_add(delay_us));
            match &mut self.hold {
                Some(h) => h.until = h.until.max(until),
                None => {
                    self.hold = Some(Hold {
                        until,
                        ops: Vec::new(),
                    });
                }
            }
        }
        decision
    }

    /// Decides (through the policy) and sends; returns whether the command was accepted
    /// (and the session goes on).
    fn respond(
        &mut self,
        verb: Option<&'static str>,
        stage: ReplyStage,
        argument: Option<&str>,
        default: ServerReply,
    ) -> bool {
        match self.decide(stage, argument, default) {
            Decision::Reply {
                reply,
                close_after,
                accepted,
                ..
            } => {
                self.send_reply(verb, &reply);
                if close_after {
                    self.close(CloseReason::Policy);
                    return false;
                }
                accepted
            }
            Decision::Disconnect => {
                self.close(CloseReason::Policy);
                false
            }
        }
    }

    fn send_reply(&mut self, verb: Option<&'static str>, reply: &ServerReply) {
        self.queue_reply(verb, reply, verb.unwrap_or("the previous command"));
    }

    /// Queues a reply; `marker` names it for the pipelining judgement until it is polled.
    fn queue_reply(
        &mut self,
        verb: Option<&'static str>,
        reply: &ServerReply,
        marker: &'static str,
    ) {
        if self.closed || self.closing() {
            return;
        }
        if let Some(h) = &mut self.hold {
            h.ops.push(HeldOp::Reply {
                verb,
                reply: reply.clone(),
                marker,
            });
            return;
        }
        let bytes = reply.encode(self.opts.extensions.enhanced_status_codes);
        let offset = self
            .transcript
            .record(Direction::ServerToClient, self.now, self.tls, &bytes);
        self.outbuf.extend_from_slice(&bytes);
        self.unsent_reply_to = Some(marker);
        self.push_event(Event::ReplySent {
            command: verb,
            reply: reply.clone(),
            offset,
        });
    }

    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.opts.limits.max_errors && !self.closed && !self.closing() {
            let max = self.opts.limits.max_errors;
            let offset = self.last_command_offset();
            self.raise(
                Finding::new(
                    SMTP_CLIENT_LIMIT_EXCEEDED,
                    format!("{max} refused commands in one session"),
                )
                .at(Direction::ClientToServer, offset),
            );
            let host = self.opts.hostname.clone();
            self.send_reply(
                None,
                &ServerReply::new(421, "4.7.0", format!("{host} Error: too many errors")),
            );
            self.close(CloseReason::TooManyErrors);
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        if let Some(h) = &mut self.hold {
            // Closes when the held replies go out.
            if !h.ops.iter().any(|o| matches!(o, HeldOp::Close(_))) {
                h.ops.push(HeldOp::Close(reason));
            }
            return;
        }
        self.data_cut = None;
        self.pending_cut = None;
        self.read_limit = None;
        let mut over: Vec<_> = self
            .finding_counts
            .iter()
            .filter(|(_, n)| **n > MAX_FINDINGS_PER_KIND)
            .map(|(id, n)| format!("{id}: {} more not shown", n - MAX_FINDINGS_PER_KIND))
            .collect();
        over.sort();
        if !over.is_empty() {
            self.note(&format!(
                "findings capped at {MAX_FINDINGS_PER_KIND} per kind ({})",
                over.join("; ")
            ));
        }
        // Bytes received but never processed still belong in the transcript, so later
        // offsets keep pointing at the real stream.
        let n = self.pending_len();
        if n > 0 {
            self.consume(n, Vec::new());
        }
        self.compact();
        self.elide_last_content();
        self.closed = true;
        self.phase = Phase::Closed;
        self.push_event(Event::Closed(reason));
    }

    fn push_event(&mut self, e: Event) {
        if let Some(h) = &mut self.hold {
            h.ops.push(HeldOp::Event(e));
            return;
        }
        self.events.push_back((self.transcript.chunks().len(), e));
    }

    /// A close is held behind a delayed reply.
    fn closing(&self) -> bool {
        self.hold
            .as_ref()
            .is_some_and(|h| h.ops.iter().any(|o| matches!(o, HeldOp::Close(_))))
    }

    /// The delay is over: sends what was held, in order.
    fn release_hold(&mut self) {
        let Some(h) = self.hold.take() else {
            return;
        };
        // The client waited on us; its idle time starts now.
        self.last_input = self.last_input.max(self.now);
        for op in h.ops {
            match op {
                HeldOp::Reply {
                    verb,
                    reply,
                    marker,
                } => self.queue_reply(verb, &reply, marker),
                HeldOp::Event(e) => self.push_event(e),
                HeldOp::Close(reason) => self.close(reason),
            }
        }
    }

    /// The connection ends while a reply is held: what it held is never sent or handed
    /// over (a message behind it is not stored), but notes and findings are kept.
    fn abandon_hold(&mut self, why: &str) {
        let Some(h) = self.hold.take() else {
            return;
        };
        let mut replies = 0;
        for op in h.ops {
            match op {
                HeldOp::Reply { .. } => replies += 1,
                HeldOp::Event(e @ (Event::Note(_) | Event::FindingRaised(_))) => {
                    self.push_event(e);
                }
                HeldOp::Event(Event::MessageReceived(m)) => self.note(&format!(
                    "message {} is dropped: its reply was still delayed",
                    m.index
                )),
                HeldOp::Event(_) | HeldOp::Close(_) => {}
            }
        }
        match replies {
            0 => self.note(why),
            1 => self.note(&format!("{why}; the held reply was never sent")),
            n => self.note(&format!("{why}; {n} held replies were never sent")),
        }
    }

    fn raise(&mut self, f: Finding) {
        let n = self.finding_counts.entry(f.kind.id).or_insert(0);
        *n += 1;
        if *n > MAX_FINDINGS_PER_KIND {
            return;
        }
        if let Some(t) = &mut self.txn {
            t.findings.push(f.clone());
        }
        self.findings.push(f.clone());
        self.push_event(Event::FindingRaised(f));
    }

    fn note(&mut self, text: &str) {
        self.push_event(Event::Note(text.to_string()));
    }
}

/// `1500 ms` or `250 µs`: a delay for a note.
fn human_delay(us: u64) -> String {
    if !us.is_multiple_of(1_000) {
        format!("{us} µs")
    } else {
        format!("{} ms", us / 1_000)
    }
}

fn stage_of(verb: &str) -> ReplyStage {
    match verb {
        "EHLO" | "HELO" | "LHLO" => ReplyStage::Helo,
        "STARTTLS" => ReplyStage::StartTls,
        "AUTH" => ReplyStage::Auth,
        "MAIL" => ReplyStage::Mail,
        "RCPT" => ReplyStage::Rcpt,
        "DATA" => ReplyStage::Data,
        "BDAT" => ReplyStage::Bdat,
        "RSET" => ReplyStage::Rset,
        "NOOP" => ReplyStage::Noop,
        "VRFY" => ReplyStage::Vrfy,
        "QUIT" => ReplyStage::Quit,
        _ => ReplyStage::Other,
    }
}

/// Base64 as clients send it: padded, or (leniently) not.
fn decode_b64(text: &[u8]) -> Option<Vec<u8>> {
    let t = text.trim_ascii();
    if t == b"=" {
        return Some(Vec::new());
    }
    B64.decode(t).or_else(|_| B64_NO_PAD.decode(t)).ok()
}

/// AcceptAny CRAM-MD5: any well-formed `user SP 32-hex-digit` answer.
fn cram_md5_any(data: &[u8]) -> ServerStep {
    let parsed = std::str::from_utf8(data)
        .ok()
        .and_then(|t| t.rsplit_once(' '));
    match parsed {
        Some((user, hex))
            if !user.is_empty()
                && hex.len() == 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            ServerStep::Success {
                authzid: None,
                authcid: user.to_string(),
                additional_data: None,
            }
        }
        _ => ServerStep::Failure(crate::sasl::SaslFailure::Malformed(
            "expected \"username SP 32-hex-digit digest\"".into(),
        )),
    }
}

fn quote(b: &[u8]) -> String {
    format!("\"{}\"", crate::escape::escape(b))
}

/// What the transcript shows instead of a client SASL message (base64 as sent): the
/// structure without the secret, like the client machine's own redactions.
fn sasl_summary(mech: Option<Mechanism>, index: u32, encoded: &[u8]) -> String {
    let Some(raw) = decode_b64(encoded) else {
        return format!("{} bytes, not base64", encoded.len());
    };
    if raw.is_empty() {
        return "empty response".into();
    }
    match mech {
        Some(Mechanism::Plain) => {
            let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
            match parts[..] {
                [authzid, authcid, password] => {
                    let z = if authzid.is_empty() {
                        String::new()
                    } else {
                        format!("authzid={}, ", quote(authzid))
                    };
                    format!(
                        "{z}authcid={}, {}-byte password",
                        quote(authcid),
                        password.len()
                    )
                }
                _ => format!("{} bytes, malformed PLAIN", raw.len()),
            }
        }
        Some(Mechanism::Login) if index == 0 => format!("username {}", quote(&raw)),
        Some(Mechanism::Login) => format!("{}-byte password", raw.len()),
        Some(Mechanism::CramMd5) => match raw.iter().rposition(|&b| b == b' ') {
            Some(i) => format!("user {}, HMAC-MD5 digest", quote(&raw[..i])),
            None => format!("{} bytes, malformed CRAM-MD5", raw.len()),
        },
        Some(
            Mechanism::ScramSha1
            | Mechanism::ScramSha256
            | Mechanism::ScramSha1Plus
            | Mechanism::ScramSha256Plus,
        ) => {
            // client-first holds nothing secret; client-final hides its proof.
            match raw.windows(3).position(|w| w == b",p=") {
                Some(i) if raw.starts_with(b"c=") => {
                    format!("{},p=<proof>", crate::escape::escape(&raw[..i]))
                }
                _ => crate::escape::escape(&raw),
            }
        }
        Some(m @ (Mechanism::XOauth2 | Mechanism::OAuthBearer)) => {
            let Some(om) = crate::sasl::OAuthMechanism::of(m) else {
                return format!("{} bytes", raw.len());
            };
            match crate::sasl::oauth::parse_client_message(om, &raw) {
                Ok(crate::sasl::oauth::OAuthClientMessage::Initial(r)) => {
                    let user = r
                        .user
                        .as_deref()
                        .map(|u| format!("user={}, ", quote(u.as_bytes())))
                        .unwrap_or_default();
                    let token = r.bearer_token().map_or(0, |t| t.expose().len());
                    format!("{user}{token}-byte bearer token")
                }
                Ok(crate::sasl::oauth::OAuthClientMessage::ErrorAcknowledgement) => {
                    "acknowledgement of the error challenge".into()
                }
                Err(_) => format!("{} bytes, malformed {}", raw.len(), m.name()),
            }
        }
        // EXTERNAL's only content is the authzid: nothing secret.
        Some(Mechanism::External) => format!("authzid={}", quote(&raw)),
        None => format!("{} bytes", raw.len()),
    }
}

/// The redaction of an `AUTH mech initial-response` line: the last word.
fn auth_line_redaction(line: &[u8], mech: Option<Mechanism>) -> Vec<Redaction> {
    let (content, _) = strip_line_end(line);
    let end = content.trim_ascii_end().len();
    let Some(space) = content[..end].iter().rposition(|&b| b == b' ') else {
        return Vec::new();
    };
    let start = space + 1;
    // `=` is the empty initial response (EXTERNAL with no authzid): nothing to hide.
    if start >= end || &content[start..end] == b"=" {
        return Vec::new();
    }
    vec![Redaction {
        start,
        end,
        replacement: format!(
            "<redacted: {}>",
            sasl_summary(mech, 0, &content[start..end])
        ),
    }]
}

#[cfg(test)]
mod fault_tests {
    //! The fault effects a [`ReplyPolicy`] can ask for: delays, throttles, dropped
    //! messages, a cut in the middle of DATA.

    use super::*;

    /// Applies `action` at `stage` (every time), the machine's reply everywhere else.
    struct At(ReplyStage, ReplyAction);

    impl ReplyPolicy for At {
        fn decide(&mut self, ctx: &ReplyContext<'_>) -> ReplyAction {
            if ctx.stage == self.0 {
                self.1.clone()
            } else {
                ReplyAction::Default
            }
        }
    }

    fn delayed(action: ReplyAction, ms: u64) -> ReplyAction {
        ReplyAction::With(Box::new(ReplyFault {
            action,
            delay_us: ms * 1_000,
            throttle_bytes_per_second: None,
            label: Some("test rule".into()),
        }))
    }

    fn server(stage: ReplyStage, action: ReplyAction, confirm: bool) -> Server {
        let mut o = ServerOptions::new("sink.example.test");
        o.confirm_storage = confirm;
        let mut s = Server::new(o);
        s.set_reply_policy(Box::new(At(stage, action)));
        s
    }

    fn out(s: &mut Server) -> String {
        let mut v = Vec::new();
        let _ = s.poll_transmit(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    fn events(s: &mut Server) -> Vec<Event> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn notes(ev: &[Event]) -> Vec<String> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Note(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    const T: fn(u64) -> Timestamp = Timestamp;

    #[test]
    fn a_delayed_reply_is_held_until_its_deadline_and_input_waits() {
        let mut s = server(ReplyStage::Mail, delayed(ReplyAction::Default, 500), false);
        s.start(T(0));
        assert!(out(&mut s).starts_with("220 "));
        s.handle_input(T(10), b"EHLO x\r\n");
        assert!(out(&mut s).starts_with("250-"));
        let _ = events(&mut s);
        s.handle_input(T(1_000), b"MAIL FROM:<a@example.test>\r\n");
        assert_eq!(out(&mut s), "", "held");
        let ev = events(&mut s);
        let n = notes(&ev);
        assert_eq!(n.len(), 1, "{ev:?}");
        assert_eq!(
            n[0],
            "fault injected at mail #1 (test rule): 250 2.1.0 Ok, delayed by 500 ms"
        );
        assert!(
            !ev.iter().any(|e| matches!(e, Event::ReplySent { .. })),
            "the reply event waits with the reply"
        );
        assert_eq!(s.poll_timeout(), Some(T(501_000)));
        // Pipelined input is kept, not answered; a little of it, not without end.
        s.handle_input(T(2_000), b"RCPT TO:<b@example.test>\r\n");
        assert_eq!(out(&mut s), "");
        assert!(s.is_holding_reply() && s.wants_input());
        s.handle_timeout(T(500_999));
        assert_eq!(out(&mut s), "", "not yet");
        s.handle_timeout(T(501_000));
        assert_eq!(out(&mut s), "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
        // Recorded when sent.
        let sent = s
            .transcript()
            .chunks()
            .iter()
            .rfind(|c| {
                c.direction == Direction::ServerToClient && c.bytes.starts_with(b"250 2.1.0")
            })
            .map(|c| c.at);
        assert_eq!(sent, Some(T(501_000)));
    }

    #[test]
    fn a_held_reply_takes_only_so_much_input() {
        let mut s = server(ReplyStage::Mail, delayed(ReplyAction::Default, 500), false);
        s.start(T(0));
        s.handle_input(T(1), b"EHLO x\r\nMAIL FROM:<a@example.test>\r\n");
        assert!(s.wants_input());
        s.handle_input(T(2), &vec![b'x'; HELD_INPUT_CAP]);
        assert!(!s.wants_input());
        s.handle_timeout(T(500_001));
        assert!(s.wants_input());
    }

    #[test]
    fn a_delayed_greeting_still_catches_a_pregreeting_client() {
        let mut s = server(
            ReplyStage::Connect,
            delayed(ReplyAction::Default, 100),
            false,
        );
        s.start(T(0));
        assert_eq!(out(&mut s), "");
        s.handle_input(T(50), b"EHLO early\r\n");
        assert_eq!(out(&mut s), "");
        s.handle_timeout(T(100_000));
        let o = out(&mut s);
        assert!(
            o.starts_with("220 sink.example.test ESMTP mailscope\r\n250-"),
            "{o}"
        );
        assert!(
            s.findings()
                .iter()
                .any(|f| f.kind.id == SMTP_CLIENT_PREGREET.id),
            "{:?}",
            s.findings()
        );
    }

    #[test]
    fn a_delayed_quit_closes_after_the_221() {
        let mut s = server(ReplyStage::Quit, delayed(ReplyAction::Default, 10), false);
        s.start(T(0));
        let _ = out(&mut s);
        s.handle_input(T(1), b"QUIT\r\n");
        assert!(!s.is_closed());
        assert_eq!(out(&mut s), "");
        s.handle_timeout(T(10_001));
        assert_eq!(out(&mut s), "221 2.0.0 Bye\r\n");
        assert!(s.is_closed());
        let ev = events(&mut s);
        assert!(
            matches!(ev.last(), Some(Event::Closed(CloseReason::Quit))),
            "{ev:?}"
        );
    }

    #[test]
    fn a_delayed_disconnect_waits_then_closes_silently() {
        let mut s = server(
            ReplyStage::Rcpt,
            delayed(ReplyAction::Disconnect, 20),
            false,
        );
        s.start(T(0));
        let _ = out(&mut s);
        s.handle_input(
            T(1),
            b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n",
        );
        let _ = out(&mut s);
        assert!(!s.is_closed());
        s.handle_timeout(T(20_001));
        assert!(s.is_closed());
        assert_eq!(out(&mut s), "");
    }

    #[test]
    fn the_client_leaving_during_a_delay_drops_what_was_held() {
        let mut s = server(
            ReplyStage::EndOfData,
            delayed(ReplyAction::Default, 1_000),
            true,
        );
        s.start(T(0));
        let _ = out(&mut s);
        s.handle_input(
            T(1),
            b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nhi\r\n.\r\n",
        );
        let _ = out(&mut s);
        let ev = events(&mut s);
        assert!(
            !ev.iter().any(|e| matches!(e, Event::MessageReceived(_))),
            "held with its reply"
        );
        s.handle_eof(T(2));
        let ev = events(&mut s);
        assert!(!ev.iter().any(|e| matches!(e, Event::MessageReceived(_))));
        let n = notes(&ev);
        assert!(
            n.iter().any(|n| n.contains("message 1 is dropped")),
            "{n:?}"
        );
        assert!(
            n.iter()
                .any(|n| n == "the client closed the connection while a reply was delayed"),
            "{n:?}"
        );
        // Without storage confirmation the 250 itself is what was held.
        let mut s = server(
            ReplyStage::Rcpt,
            delayed(ReplyAction::Default, 1_000),
            false,
        );
        s.start(T(0));
        let _ = out(&mut s);
        s.handle_input(
            T(1),
            b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n",
        );
        let _ = out(&mut s);
        s.handle_eof(T(2));
        assert!(
            notes(&events(&mut s))
                .iter()
                .any(|n| n.ends_with("; the held reply was never sent"))
        );
        assert!(s.is_closed());
        assert_eq!(out(&mut s), "");
    }

    #[test]
    fn accept_but_drop_answers_250_and_hands_nothing_over() {
        for confirm in [false, true] {
            let mut s = server(ReplyStage::EndOfData, ReplyAction::AcceptButDrop, confirm);
            s.start(T(0));
            let _ = out(&mut s);
            s.handle_input(
                T(1),
                b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nhi\r\n.\r\nMAIL FROM:<a@x.test>\r\n",
            );
            let o = out(&mut s);
            assert!(
                o.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as S.1\r\n250 2.1.0 Ok\r\n"),
                "{o}"
            );
            let ev = events(&mut s);
            assert!(!ev.iter().any(|e| matches!(e, Event::MessageReceived(_))));
            let n = notes(&ev);
            assert_eq!(
                n,
                [
                    "fault injected at end-of-data #1: 250 2.0.0 Ok: queued as S.1 sent, but the message is dropped: not stored (accept_but_drop)"
                ]
            );
            assert_eq!(s.messages_accepted(), 1, "the client was told so");
        }
        // Elsewhere it changes nothing, and says so.
        let mut s = server(ReplyStage::Mail, ReplyAction::AcceptButDrop, false);
        s.start(T(0));
        let _ = out(&mut s);
        s.handle_input(T(1), b"EHLO x\r\nMAIL FROM:<a@x.test>\r\n");
        assert!(out(&mut s).ends_with("250 2.1.0 Ok\r\n"));
        assert!(notes(&events(&mut s))[0].contains("no effect"));
    }

    #[test]
    fn a_cut_in_data_closes_after_that_many_octets_without_a_reply() {
        let mut s = server(
            ReplyStage::Data,
            ReplyAction::DisconnectInData { after_octets: 10 },
            false,
        );
        s.start(T(0));
        let _ = out(&mut s);
        s.handle_input(
            T(1),
            b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n",
        );
        assert!(out(&mut s).ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"));
        s.handle_input(T(2), b"Subject:");
        assert!(!s.is_closed());
        s.handle_input(T(3), b" hello\r\n\r\nbody\r\n.\r\n");
        assert!(s.is_closed());
        assert_eq!(out(&mut s), "");
        let ev = events(&mut s);
        assert!(!ev.iter().any(|e| matches!(e, Event::MessageReceived(_))));
        let n = notes(&ev);
        assert!(
            n[0].contains("closed without a reply after 10 octets"),
            "{n:?}"
        );
        assert!(n[1].contains("after 10 octets of message content"), "{n:?}");
        // Everything the client sent is still in the transcript.
        assert_eq!(
            s.transcript().len(Direction::ClientToServer),
            b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nSubject: hello\r\n\r\nbody\r\n.\r\n".len() as u64
        );
        // A message shorter than the cut: closed at its end, still without a reply.
        let mut s = server(
            ReplyStage::Data,
            ReplyAction::DisconnectInData {
                after_octets: 1_000,
            },
            false,
        );
        s.start(T(0));
        let _ = out(&mut s);
        s.handle_input(
            T(1),
            b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nhi\r\n.\r\n",
        );
        assert!(out(&mut s).ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"));
        assert!(s.is_closed());
        assert!(
            notes(&events(&mut s))
                .iter()
                .any(|n| n.contains("before the cut"))
        );
        // Zero: closed right after the 354.
        let mut s = server(
            ReplyStage::Data,
            ReplyAction::DisconnectInData { after_octets: 0 },
            false,
        );
        s.start(T(0));
        let _ = out(&mut s);
        s.handle_input(
            T(1),
            b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n",
        );
        assert!(out(&mut s).ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"));
        assert!(s.is_closed());
    }

    #[test]
    fn a_throttle_lasts_until_the_next_reply() {
        let throttle = ReplyAction::With(Box::new(ReplyFault {
            action: ReplyAction::Default,
            delay_us: 0,
            throttle_bytes_per_second: Some(100),
            label: None,
        }));
        let mut s = server(ReplyStage::Data, throttle, false);
        s.start(T(0));
        let _ = out(&mut s);
        s.handle_input(
            T(1),
            b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n",
        );
        assert_eq!(s.read_rate_limit(), None);
        s.handle_input(T(2), b"DATA\r\n");
        assert_eq!(s.read_rate_limit(), Some(100));
        let n = notes(&events(&mut s));
        assert!(
            n.iter()
                .any(|n| n.ends_with("reading throttled to 100 bytes/s until the next reply")),
            "{n:?}"
        );
        s.handle_input(T(3), b"hi\r\n.\r\n");
        assert_eq!(s.read_rate_limit(), None);
    }

    #[test]
    fn the_policy_sees_the_envelope() {
        struct Spy(Vec<(ReplyStage, Option<String>, usize)>);
        impl ReplyPolicy for std::sync::Arc<std::sync::Mutex<Spy>> {
            fn decide(&mut self, ctx: &ReplyContext<'_>) -> ReplyAction {
                if let Ok(mut s) = self.lock() {
                    s.0.push((
                        ctx.stage,
                        ctx.sender.map(str::to_string),
                        ctx.recipients.len(),
                    ));
                }
                ReplyAction::Default
            }
        }
        let spy = std::sync::Arc::new(std::sync::Mutex::new(Spy(Vec::new())));
        let mut s = Server::new(ServerOptions::new("h"));
        s.set_reply_policy(Box::new(spy.clone()));
        s.start(T(0));
        s.handle_input(
            T(1),
            b"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\nhi\r\n.\r\n",
        );
        let seen = spy.lock().map(|s| s.0.clone()).unwrap_or_default();
        let a = Some("a@x.test".to_string());
        assert_eq!(
            seen,
            [
                (ReplyStage::Connect, None, 0),
                (ReplyStage::Helo, None, 0),
                (ReplyStage::Mail, a.clone(), 0),
                (ReplyStage::Rcpt, a.clone(), 0),
                (ReplyStage::Rcpt, a.clone(), 1),
                (ReplyStage::Data, a.clone(), 2),
                (ReplyStage::EndOfData, a, 2),
            ]
        );
    }
}
