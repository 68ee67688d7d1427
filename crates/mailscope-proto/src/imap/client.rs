//! The IMAP client state machine, sans-IO: greeting → CAPABILITY (unless in the greeting) →
//! STARTTLS → CAPABILITY again → LOGIN or AUTHENTICATE → actions (ID, NAMESPACE, LIST,
//! APPEND, SELECT/EXAMINE, STATUS, SEARCH, FETCH, IDLE) → LOGOUT.
//!
//! Call order (the driver's contract), as for the SMTP client:
//! 1. [`Client::new`], then [`Client::start`] once the connection is up (after the TLS
//!    handshake for implicit TLS).
//! 2. Loop: write what [`Client::poll_transmit`] gives; feed received bytes to
//!    [`Client::handle_input`] and the end of the stream to [`Client::handle_eof`]; drain
//!    [`Client::poll_event`]; on [`Event::StartTlsRequested`] do the handshake and call
//!    [`Client::handle_tls_established`] or [`Client::handle_tls_failed`]; when
//!    [`Client::poll_timeout`]'s deadline passes, call [`Client::handle_timeout`].
//! 3. Stop when [`Event::Finished`] has been polled and nothing is left to transmit.
//!
//! Responses are framed by [`super::framing`] (lines and literals, with limits) and checked
//! against the IMAP grammar with imap-codec; a deviation is a finding, not a crash.

use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use imap_codec::decode::{Decoder, GreetingDecodeError, ResponseDecodeError};
use imap_codec::{GreetingCodec, ResponseCodec};

use crate::finding::{
    Finding, IMAP_CAPABILITY_CHANGED_AFTER_TLS, IMAP_CONNECTION_CLOSED,
    IMAP_LITERAL_LENGTH_MISMATCH, IMAP_LOGIN_BEFORE_TLS, IMAP_LOGINDISABLED_MISSING,
    IMAP_RESPONSE_MISSING_CRLF, IMAP_RESPONSE_SYNTAX, IMAP_RESPONSE_TOO_LONG,
    IMAP_STARTTLS_NOT_OFFERED, IMAP_STARTTLS_READ_AHEAD,
};
use crate::imap::framing::{FrameLimits, Framed, frame_response};
use crate::sasl::{
    ChannelBinding, ChannelBindingData, ClientMessage, ClientSession, Credentials, Mechanism,
};
use crate::transcript::{Direction, Redaction, Timestamp, Transcript};

/// At most this many findings of one kind per session.
pub const MAX_FINDINGS_PER_KIND: usize = 100;

/// Where a session may stop on purpose (`--quit-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Right after connecting: the connection is closed at once.
    Connect,
    /// After the greeting.
    Greeting,
    /// After the first capabilities.
    Capa,
    /// After the TLS handshake (STARTTLS).
    Tls,
    /// After LOGIN/AUTHENTICATE.
    Auth,
    /// After SELECT/EXAMINE.
    Select,
}

impl Stage {
    /// Every stage, in session order.
    pub const ALL: [Stage; 6] = [
        Stage::Connect,
        Stage::Greeting,
        Stage::Capa,
        Stage::Tls,
        Stage::Auth,
        Stage::Select,
    ];

    /// The `--quit-after` name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Capa => "capa",
            Stage::Tls => "tls",
            Stage::Auth => "auth",
            Stage::Select => "select",
        }
    }

    /// Parses a `--quit-after` value (with a few synonyms).
    pub fn from_name(s: &str) -> Option<Stage> {
        Some(match s.to_ascii_lowercase().as_str() {
            "connect" => Stage::Connect,
            "greeting" | "banner" => Stage::Greeting,
            "capa" | "capability" => Stage::Capa,
            "tls" | "starttls" => Stage::Tls,
            "auth" | "login" => Stage::Auth,
            "select" | "examine" => Stage::Select,
            _ => return None,
        })
    }
}

/// The step a failed session failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailedStep {
    /// The server closed the connection while a response was due.
    ConnectionClosed,
    /// The greeting was BYE or unusable.
    Greeting,
    /// CAPABILITY refused.
    Capability,
    /// STARTTLS not offered, refused, or the handshake failed.
    Tls,
    /// LOGIN/AUTHENTICATE failed or could not be attempted.
    Auth,
    /// SELECT/EXAMINE/STATUS refused.
    Mailbox,
    /// Another command (LIST, FETCH, SEARCH, APPEND, IDLE, ...) refused.
    Command,
    /// The options contradict each other.
    Options,
}

impl FailedStep {
    /// The exit code for this step (documented in `mailscope imap --help`).
    pub fn exit_code(self) -> u8 {
        match self {
            FailedStep::ConnectionClosed => 6,
            FailedStep::Greeting => 21,
            FailedStep::Capability => 22,
            FailedStep::Auth => 28,
            FailedStep::Tls => 29,
            FailedStep::Mailbox => 30,
            FailedStep::Command => 31,
            FailedStep::Options => 1,
        }
    }

    /// Lower-case name for output.
    pub fn name(self) -> &'static str {
        match self {
            FailedStep::ConnectionClosed => "connection",
            FailedStep::Greeting => "greeting",
            FailedStep::Capability => "capability",
            FailedStep::Tls => "tls",
            FailedStep::Auth => "auth",
            FailedStep::Mailbox => "mailbox",
            FailedStep::Command => "command",
            FailedStep::Options => "options",
        }
    }
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step done.
    Completed,
    /// Stopped on purpose after this stage.
    StoppedAfter(Stage),
    /// A step failed.
    Failed {
        /// Which.
        step: FailedStep,
        /// Why, in one line.
        reason: String,
    },
}

/// Which part of a message FETCH asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Part {
    /// `BODY.PEEK[HEADER]`.
    Header,
    /// `BODY.PEEK[TEXT]`.
    Body,
    /// `BODY.PEEK[]`.
    #[default]
    Full,
}

impl Part {
    /// The section text.
    pub fn section(self) -> &'static str {
        match self {
            Part::Header => "HEADER",
            Part::Body => "TEXT",
            Part::Full => "",
        }
    }
}

/// Login settings.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// `None`: the LOGIN command; otherwise AUTHENTICATE with this mechanism.
    pub mechanism: Option<Mechanism>,
    /// Who and with what password.
    pub credentials: Credentials,
    /// Client nonce for SCRAM, supplied by the caller.
    pub client_nonce: String,
}

/// Everything the machine needs up front.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The connection starts inside TLS (port 993).
    pub implicit_tls: bool,
    /// Upgrade with STARTTLS (required).
    pub starttls: bool,
    /// Log in, if wanted.
    pub auth: Option<AuthOptions>,
    /// A password may go out without TLS (loopback or `--insecure-auth-plaintext`).
    pub allow_plaintext_auth: bool,
    /// Stop point (LOGOUT there).
    pub quit_after: Option<Stage>,
    /// Send ID.
    pub id: bool,
    /// Send NAMESPACE.
    pub namespace: bool,
    /// `LIST "" "*"`.
    pub list: bool,
    /// The mailbox for SELECT/EXAMINE/STATUS/APPEND.
    pub mailbox: String,
    /// EXAMINE instead of SELECT.
    pub examine: bool,
    /// SELECT even without an action that needs it (the default summary).
    pub select: bool,
    /// STATUS of the mailbox.
    pub status: bool,
    /// SEARCH ALL.
    pub search: bool,
    /// FETCH this sequence set.
    pub fetch: Option<String>,
    /// UID FETCH instead of FETCH.
    pub uid: bool,
    /// Which part to fetch.
    pub part: Part,
    /// APPEND this message (bytes exactly).
    pub append: Option<Vec<u8>>,
    /// IDLE for this many microseconds, then DONE.
    pub idle_us: Option<u64>,
    /// Framing limits.
    pub limits: FrameLimits,
    /// Microseconds to wait for each response.
    pub step_timeout_us: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            implicit_tls: false,
            starttls: false,
            auth: None,
            allow_plaintext_auth: false,
            quit_after: None,
            id: false,
            namespace: false,
            list: false,
            mailbox: "INBOX".into(),
            examine: false,
            select: false,
            status: false,
            search: false,
            fetch: None,
            uid: false,
            part: Part::Full,
            append: None,
            idle_us: None,
            limits: FrameLimits::default(),
            step_timeout_us: 30_000_000,
        }
    }
}

impl ClientOptions {
    /// Checks options that contradict each other.
    pub fn validate(&self) -> Result<(), String> {
        let needs_login = self.list
            || self.status
            || self.search
            || self.fetch.is_some()
            || self.append.is_some()
            || self.idle_us.is_some()
            || self.id
            || self.namespace;
        if needs_login && self.auth.is_none() {
            return Err("mailbox actions need a login (--auth-user)".into());
        }
        if let Some(set) = &self.fetch
            && (set.is_empty()
                || !set
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*')))
        {
            return Err(format!(
                "--fetch {set:?}: expected a sequence set like 1,3:5,*"
            ));
        }
        if self.mailbox.is_empty() || self.mailbox.contains(['\r', '\n', '\0']) {
            return Err("the mailbox name must be non-empty, without CR, LF or NUL".into());
        }
        Ok(())
    }
}

/// A status response's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusResponse {
    /// The tag (`*` for untagged).
    pub tag: String,
    /// `OK`, `NO`, `BAD`, `BYE` or `PREAUTH`.
    pub status: String,
    /// The response code in brackets, without them.
    pub code: Option<String>,
    /// The human-readable text.
    pub text: String,
}

/// What SELECT/EXAMINE told about the mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxSummary {
    /// The mailbox.
    pub name: String,
    /// Messages.
    pub exists: Option<u32>,
    /// Recent messages.
    pub recent: Option<u32>,
    /// UIDVALIDITY.
    pub uidvalidity: Option<u32>,
    /// UIDNEXT.
    pub uidnext: Option<u32>,
    /// Whether read-only (EXAMINE or `[READ-ONLY]`).
    pub read_only: bool,
}

/// What happened, for the front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A command went out.
    CommandSent {
        /// The command name.
        command: &'static str,
        /// Its tag.
        tag: String,
        /// Stream offset of its first byte.
        offset: u64,
    },
    /// The greeting or a tagged response arrived.
    ResponseReceived {
        /// The command it answers (`None`: the greeting).
        command: Option<&'static str>,
        /// The response.
        response: StatusResponse,
        /// Stream offset of its first byte.
        offset: u64,
        /// Microseconds from the command (or the start) to the response.
        latency_us: u64,
    },
    /// The server's capabilities.
    CapabilitiesReceived {
        /// The capability atoms as sent.
        capabilities: Vec<String>,
        /// Whether inside TLS.
        tls: bool,
    },
    /// The driver must now do the TLS handshake.
    StartTlsRequested,
    /// Logged in.
    Authenticated {
        /// The mechanism, `None` for LOGIN (or PREAUTH).
        mechanism: Option<Mechanism>,
    },
    /// `* ID` from the server.
    IdReceived(String),
    /// `* NAMESPACE` from the server.
    NamespaceReceived(String),
    /// One `* LIST` line (the part after `LIST `).
    MailboxListed(String),
    /// SELECT/EXAMINE completed.
    MailboxSelected(MailboxSummary),
    /// `* STATUS` (the part after `STATUS `).
    StatusReceived(String),
    /// `* SEARCH` results.
    SearchResult(Vec<u32>),
    /// One message's data from FETCH.
    MessageFetched {
        /// Sequence number.
        seq: u32,
        /// UID, when the server sent it.
        uid: Option<u32>,
        /// The bytes of the requested section, exactly.
        data: Vec<u8>,
    },
    /// APPEND completed (the tagged OK text, with APPENDUID when given).
    Appended(StatusResponse),
    /// An untagged response during IDLE (`* 3 EXISTS` ...), as text.
    IdleUpdate(String),
    /// A deviation.
    FindingRaised(Finding),
    /// mailscope's own remark.
    Note(String),
    /// The session is over.
    Finished(Outcome),
}

#[derive(Debug)]
struct AuthState {
    session: ClientSession,
    mechanism: Mechanism,
    /// The initial response not sent yet (no SASL-IR).
    initial: Option<ClientMessage>,
    cancelled: Option<String>,
}

#[derive(Debug)]
enum Kind {
    Capability { after_tls: bool },
    StartTls,
    Login,
    Authenticate(Box<AuthState>),
    Id,
    Namespace,
    List,
    Append,
    Select,
    Status,
    Search,
    Fetch,
    Idle,
    Logout { then: Outcome },
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Capability { .. } => "CAPABILITY",
            Kind::StartTls => "STARTTLS",
            Kind::Login => "LOGIN",
            Kind::Authenticate(_) => "AUTHENTICATE",
            Kind::Id => "ID",
            Kind::Namespace => "NAMESPACE",
            Kind::List => "LIST",
            Kind::Append => "APPEND",
            Kind::Select => "SELECT",
            Kind::Status => "STATUS",
            Kind::Search => "SEARCH",
            Kind::Fetch => "FETCH",
            Kind::Idle => "IDLE",
            Kind::Logout { .. } => "LOGOUT",
        }
    }

    fn step(&self) -> FailedStep {
        match self {
            Kind::Capability { .. } => FailedStep::Capability,
            Kind::StartTls => FailedStep::Tls,
            Kind::Login | Kind::Authenticate(_) => FailedStep::Auth,
            Kind::Select | Kind::Status => FailedStep::Mailbox,
            Kind::Logout { .. } => FailedStep::ConnectionClosed,
            _ => FailedStep::Command,
        }
    }
}

/// A piece of a command sent after a continuation request (a synchronising literal).
type Segment = (Vec<u8>, Vec<Redaction>);

#[derive(Debug)]
struct Pending {
    tag: String,
    kind: Kind,
    sent_at: Timestamp,
    /// Segments still to send, each after a `+` continuation request.
    segments: VecDeque<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Running,
    AwaitTls,
    Done,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Id,
    Namespace,
    List,
    Append,
    Select,
    Status,
    Search,
    Fetch,
    Idle,
}

/// The IMAP client machine. See the module docs for the call order.
#[derive(Debug)]
pub struct Client {
    opts: ClientOptions,
    phase: Phase,
    pending: Option<Pending>,
    actions: VecDeque<Action>,
    transcript: Transcript,
    input: Vec<u8>,
    input_offset: u64,
    outbuf: Vec<u8>,
    events: VecDeque<(usize, Event)>,
    tls: bool,
    now: Timestamp,
    started: Timestamp,
    caps: Option<Vec<String>>,
    caps_before_tls: Option<Vec<String>>,
    findings: Vec<Finding>,
    finding_counts: HashMap<&'static str, usize>,
    finished: bool,
    peer_is_loopback: bool,
    preauth: bool,
    tag_counter: u32,
    idle_until: Option<Timestamp>,
    idle_done_sent: bool,
    mailbox: MailboxSummary,
    channel_binding: ChannelBindingData,
    invalid: Option<String>,
}

impl Client {
    /// A machine for one session.
    pub fn new(opts: ClientOptions) -> Self {
        let invalid = opts.validate().err();
        Self {
            tls: opts.implicit_tls,
            opts,
            phase: Phase::Greeting,
            pending: None,
            actions: VecDeque::new(),
            transcript: Transcript::new(),
            input: Vec::new(),
            input_offset: 0,
            outbuf: Vec::new(),
            events: VecDeque::new(),
            now: Timestamp(0),
            started: Timestamp(0),
            caps: None,
            caps_before_tls: None,
            findings: Vec::new(),
            finding_counts: HashMap::new(),
            finished: false,
            peer_is_loopback: false,
            preauth: false,
            tag_counter: 0,
            idle_until: None,
            idle_done_sent: false,
            mailbox: MailboxSummary::default(),
            channel_binding: ChannelBindingData::default(),
            invalid,
        }
    }

    /// Tells the machine whether the server is on loopback (plaintext passwords allowed).
    pub fn set_peer_is_loopback(&mut self, loopback: bool) {
        self.peer_is_loopback = loopback;
    }

    /// Channel binding data of an implicit-TLS connection (SCRAM `-PLUS`).
    pub fn set_channel_binding_data(&mut self, data: ChannelBindingData) {
        self.channel_binding = data;
    }

    /// The connection is up: wait for the greeting (or stop at once for `--quit-after
    /// connect`).
    pub fn start(&mut self, now: Timestamp) {
        self.now = now;
        self.started = now;
        if let Some(why) = self.invalid.clone() {
            self.phase = Phase::Done;
            self.finish(Outcome::Failed {
                step: FailedStep::Options,
                reason: why,
            });
            return;
        }
        if self.opts.quit_after == Some(Stage::Connect) {
            self.phase = Phase::Done;
            self.finish(Outcome::StoppedAfter(Stage::Connect));
        }
    }

    /// Bytes from the server.
    pub fn handle_input(&mut self, now: Timestamp, bytes: &[u8]) {
        self.now = now;
        if bytes.is_empty() {
            return;
        }
        self.transcript
            .record(Direction::ServerToClient, now, self.tls, bytes);
        if self.finished {
            return;
        }
        self.input.extend_from_slice(bytes);
        self.process_input();
    }

    /// The server closed its side.
    pub fn handle_eof(&mut self, now: Timestamp) {
        self.now = now;
        if self.finished {
            return;
        }
        let pending = self.pending.take();
        self.phase = Phase::Done;
        if let Some(Pending {
            kind: Kind::Logout { then },
            ..
        }) = pending
        {
            self.finish(then);
            return;
        }
        let what = pending
            .as_ref()
            .map(|p| format!("the response to {}", p.kind.name()))
            .unwrap_or_else(|| "the greeting".into());
        self.raise(
            Finding::new(
                IMAP_CONNECTION_CLOSED,
                format!("closed while waiting for {what}"),
            )
            .at(
                Direction::ServerToClient,
                self.transcript.len(Direction::ServerToClient),
            ),
        );
        self.finish(Outcome::Failed {
            step: FailedStep::ConnectionClosed,
            reason: format!("the server closed the connection while mailscope waited for {what}"),
        });
    }

    /// The STARTTLS handshake succeeded (no channel binding data).
    pub fn handle_tls_established(&mut self, now: Timestamp) {
        self.handle_tls_established_with(now, ChannelBindingData::default());
    }

    /// The STARTTLS handshake succeeded, with the connection's channel binding data.
    pub fn handle_tls_established_with(&mut self, now: Timestamp, data: ChannelBindingData) {
        self.now = now;
        if self.phase != Phase::AwaitTls {
            return;
        }
        self.channel_binding = data;
        self.phase = Phase::Running;
        self.tls = true;
        self.caps_before_tls = self.caps.take();
        if self.stop_at(Stage::Tls) {
            return;
        }
        self.send_simple(Kind::Capability { after_tls: true }, "CAPABILITY");
    }

    /// The STARTTLS handshake failed; the connection is unusable.
    pub fn handle_tls_failed(&mut self, now: Timestamp, reason: &str) {
        self.now = now;
        self.phase = Phase::Done;
        self.finish(Outcome::Failed {
            step: FailedStep::Tls,
            reason: format!("TLS handshake failed: {reason}"),
        });
    }

    /// Time passed: ends IDLE when its time is up, or fails the step whose response is
    /// overdue.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        if self.finished {
            return;
        }
        if let Some(until) = self.idle_until
            && now >= until
            && !self.idle_done_sent
        {
            self.idle_done_sent = true;
            self.idle_until = None;
            self.transmit(b"DONE\r\n".to_vec(), Vec::new());
            if let Some(p) = self.pending.as_mut() {
                p.sent_at = now;
            }
            return;
        }
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        let secs = self.opts.step_timeout_us as f64 / 1e6;
        let (step, what) = match self.pending.take() {
            Some(Pending {
                kind: Kind::Logout { then },
                ..
            }) => {
                self.phase = Phase::Done;
                self.note("no response to LOGOUT in time; closing");
                self.finish(then);
                return;
            }
            Some(p) => (p.kind.step(), format!("the response to {}", p.kind.name())),
            None => (FailedStep::Greeting, "the greeting".to_string()),
        };
        self.phase = Phase::Done;
        self.finish(Outcome::Failed {
            step,
            reason: format!("no {what} within {secs} s"),
        });
    }

    /// Appends bytes to send; returns whether there were any.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.outbuf.is_empty() {
            return false;
        }
        out.append(&mut self.outbuf);
        true
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().map(|(_, e)| e)
    }

    /// The next event, with the number of transcript chunks that existed when it happened.
    pub fn poll_event_positioned(&mut self) -> Option<(usize, Event)> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.finished || self.phase == Phase::AwaitTls {
            return None;
        }
        if let Some(until) = self.idle_until {
            return Some(until);
        }
        let since = match &self.pending {
            Some(p) => p.sent_at,
            None if self.phase == Phase::Greeting => self.started,
            None => return None,
        };
        Some(Timestamp(since.0.saturating_add(self.opts.step_timeout_us)))
    }

    /// Whether bytes or events are waiting.
    pub fn has_pending_output(&self) -> bool {
        !self.outbuf.is_empty() || !self.events.is_empty()
    }

    /// Whether [`Event::Finished`] has been queued.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Every byte of the session.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// The findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The latest capabilities.
    pub fn capabilities(&self) -> Option<&[String]> {
        self.caps.as_deref()
    }

    /// Whether the connection is inside TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    // ---- input ----

    fn process_input(&mut self) {
        while !self.finished && !self.input.is_empty() && self.phase != Phase::AwaitTls {
            let frame = match frame_response(&self.input, self.opts.limits) {
                Framed::Incomplete => return,
                Framed::TooLong(why) => {
                    self.raise(
                        Finding::new(IMAP_RESPONSE_TOO_LONG, why.clone())
                            .at(Direction::ServerToClient, self.input_offset),
                    );
                    self.phase = Phase::Done;
                    let step = self
                        .pending
                        .as_ref()
                        .map(|p| p.kind.step())
                        .unwrap_or(FailedStep::Greeting);
                    self.finish(Outcome::Failed { step, reason: why });
                    return;
                }
                Framed::Complete(f) => f,
            };
            let bytes: Vec<u8> = self.input.drain(..frame.consumed).collect();
            let offset = self.input_offset;
            self.input_offset += frame.consumed as u64;
            for lf in &frame.bare_lf {
                self.raise(
                    Finding::new(
                        IMAP_RESPONSE_MISSING_CRLF,
                        "response line ends in a bare LF",
                    )
                    .at(Direction::ServerToClient, offset + *lf as u64),
                );
            }
            for &i in &frame.suspicious_literals {
                let (start, len) = frame.literals[i];
                self.raise(
                    Finding::new(
                        IMAP_LITERAL_LENGTH_MISMATCH,
                        format!(
                            "a literal announced {len} octets, but the response does not go on where they end"
                        ),
                    )
                    .at(Direction::ServerToClient, offset + start as u64),
                );
            }
            self.check_syntax(&bytes, offset);
            // The line without literal data: the skeleton the machine reads.
            let mut skeleton = Vec::new();
            let mut pos = 0;
            for &(start, len) in &frame.literals {
                skeleton.extend_from_slice(&bytes[pos..start]);
                pos = start + len;
            }
            skeleton.extend_from_slice(&bytes[pos..]);
            let literals: Vec<&[u8]> = frame
                .literals
                .iter()
                .map(|&(s, l)| &bytes[s..s + l])
                .collect();
            self.on_response(&skeleton, &literals, offset);
        }
    }

    fn check_syntax(&mut self, bytes: &[u8], offset: u64) {
        let ok = if self.phase == Phase::Greeting {
            !matches!(
                GreetingCodec::default().decode(bytes),
                Err(GreetingDecodeError::Failed)
            )
        } else if self.idle_until.is_some() && bytes.starts_with(b"+") {
            true
        } else {
            !matches!(
                ResponseCodec::default().decode(bytes),
                Err(ResponseDecodeError::Failed)
            )
        };
        if !ok {
            let first: Vec<u8> = bytes.iter().take(80).copied().collect();
            self.raise(
                Finding::new(
                    IMAP_RESPONSE_SYNTAX,
                    format!("imap-codec cannot parse: {}", crate::escape::escape(&first)),
                )
                .at(Direction::ServerToClient, offset),
            );
        }
    }

    fn on_response(&mut self, skel: &[u8], literals: &[&[u8]], offset: u64) {
        let line = String::from_utf8_lossy(skel.strip_suffix(b"\n").unwrap_or(skel))
            .trim_end_matches('\r')
            .to_string();
        if self.phase == Phase::Greeting {
            self.on_greeting(&line, offset);
            return;
        }
        if let Some(rest) = line.strip_prefix('+') {
            self.on_continuation(rest.trim_start());
            return;
        }
        if let Some(rest) = line.strip_prefix("* ") {
            self.on_untagged(rest, literals);
            return;
        }
        let Some(resp) = parse_status(&line) else {
            self.note(&format!("unexpected response line: {line}"));
            return;
        };
        let Some(p) = self.pending.take() else {
            self.note(&format!(
                "tagged response {} with no command waiting",
                resp.tag
            ));
            return;
        };
        if p.tag != resp.tag {
            self.note(&format!(
                "tagged response {} while {} waited for {}",
                resp.tag,
                p.kind.name(),
                p.tag
            ));
            self.pending = Some(p);
            return;
        }
        let latency = self.now.micros_since(p.sent_at);
        self.push_event(Event::ResponseReceived {
            command: Some(p.kind.name()),
            response: resp.clone(),
            offset,
            latency_us: latency,
        });
        self.on_tagged(p, resp);
    }

    fn on_greeting(&mut self, line: &str, offset: u64) {
        let resp = parse_status(line).filter(|r| r.tag == "*");
        self.push_event(Event::ResponseReceived {
            command: None,
            response: resp.clone().unwrap_or(StatusResponse {
                tag: String::new(),
                status: String::new(),
                code: None,
                text: line.to_string(),
            }),
            offset,
            latency_us: self.now.micros_since(self.started),
        });
        self.phase = Phase::Running;
        match resp.as_ref().map(|r| r.status.as_str()) {
            Some("OK") => {}
            Some("PREAUTH") => self.preauth = true,
            Some("BYE") => {
                self.phase = Phase::Done;
                self.finish(Outcome::Failed {
                    step: FailedStep::Greeting,
                    reason: format!("the server refused the connection: {line}"),
                });
                return;
            }
            _ => {
                self.phase = Phase::Done;
                self.finish(Outcome::Failed {
                    step: FailedStep::Greeting,
                    reason: format!("not an IMAP greeting: {line}"),
                });
                return;
            }
        }
        if let Some(caps) = resp
            .as_ref()
            .and_then(|r| code_capabilities(r.code.as_deref()))
        {
            self.caps = Some(caps);
        }
        if self.stop_at(Stage::Greeting) {
            return;
        }
        if self.caps.is_some() {
            self.after_capabilities(false);
        } else {
            self.send_simple(Kind::Capability { after_tls: false }, "CAPABILITY");
        }
    }

    fn on_untagged(&mut self, rest: &str, literals: &[&[u8]]) {
        let mut words = rest.splitn(3, ' ');
        let first = words.next().unwrap_or_default();
        let second = words.next().unwrap_or_default();
        let upper = first.to_ascii_uppercase();
        if (self.idle_until.is_some() || self.idle_done_sent)
            && matches!(
                self.pending,
                Some(Pending {
                    kind: Kind::Idle,
                    ..
                })
            )
        {
            self.push_event(Event::IdleUpdate(rest.to_string()));
        }
        match upper.as_str() {
            "CAPABILITY" => {
                let caps = rest
                    .split_ascii_whitespace()
                    .skip(1)
                    .map(str::to_string)
                    .collect();
                self.caps = Some(caps);
            }
            "OK" | "NO" | "BAD" | "PREAUTH" | "BYE" => {
                if let Some(r) = parse_status(&format!("* {rest}")) {
                    if let Some(caps) = code_capabilities(r.code.as_deref()) {
                        self.caps = Some(caps);
                    }
                    if let Some(code) = &r.code {
                        let mut it = code.split_ascii_whitespace();
                        let name = it.next().unwrap_or_default().to_ascii_uppercase();
                        let num = it.next().and_then(|n| n.parse().ok());
                        match name.as_str() {
                            "UIDVALIDITY" => self.mailbox.uidvalidity = num,
                            "UIDNEXT" => self.mailbox.uidnext = num,
                            _ => {}
                        }
                    }
                    if upper == "BYE"
                        && !matches!(
                            self.pending,
                            Some(Pending {
                                kind: Kind::Logout { .. },
                                ..
                            })
                        )
                    {
                        self.note(&format!("the server says BYE: {}", r.text));
                    }
                }
            }
            "LIST" | "LSUB" => self.push_event(Event::MailboxListed(
                rest[first.len()..].trim_start().to_string(),
            )),
            "STATUS" => self.push_event(Event::StatusReceived(
                rest[first.len()..].trim_start().to_string(),
            )),
            "ID" => self.push_event(Event::IdReceived(rest[2..].trim_start().to_string())),
            "NAMESPACE" => {
                self.push_event(Event::NamespaceReceived(rest[9..].trim_start().to_string()))
            }
            "SEARCH" => {
                let nums = rest
                    .split_ascii_whitespace()
                    .skip(1)
                    .filter_map(|n| n.parse().ok())
                    .collect();
                self.push_event(Event::SearchResult(nums));
            }
            _ => {
                if let Ok(n) = first.parse::<u32>() {
                    match second.to_ascii_uppercase().as_str() {
                        "EXISTS" => self.mailbox.exists = Some(n),
                        "RECENT" => self.mailbox.recent = Some(n),
                        "FETCH"
                            if matches!(
                                self.pending,
                                Some(Pending {
                                    kind: Kind::Fetch,
                                    ..
                                })
                            ) =>
                        {
                            let uid = find_number_after(rest, "UID");
                            let data = literals
                                .first()
                                .map(|l| l.to_vec())
                                .unwrap_or_else(|| quoted_section(rest).unwrap_or_default());
                            if literals.len() > 1 {
                                self.note(&format!(
                                    "FETCH response for message {n} carries {} literals; the first is kept",
                                    literals.len()
                                ));
                            }
                            self.push_event(Event::MessageFetched { seq: n, uid, data });
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn on_continuation(&mut self, text: &str) {
        let Some(mut p) = self.pending.take() else {
            self.note("continuation request with no command waiting");
            return;
        };
        if let Some((bytes, red)) = p.segments.pop_front() {
            self.transmit(bytes, red);
            self.pending = Some(p);
            return;
        }
        match &mut p.kind {
            Kind::Idle => {
                self.idle_until = Some(Timestamp(
                    self.now.0.saturating_add(self.opts.idle_us.unwrap_or(0)),
                ));
                self.note(&format!(
                    "idling for {} s",
                    self.opts.idle_us.unwrap_or(0) as f64 / 1e6
                ));
                self.pending = Some(p);
            }
            Kind::Authenticate(auth) => {
                if auth.cancelled.is_some() {
                    self.pending = Some(p);
                    return;
                }
                let answer = if let Some(initial) = auth.initial.take() {
                    Ok(initial)
                } else {
                    match B64.decode(text.trim().as_bytes()) {
                        Ok(c) => auth.session.step(&c).map_err(|e| e.to_string()),
                        Err(e) => Err(format!("the challenge is not base64: {e}")),
                    }
                };
                match answer {
                    Ok(msg) => {
                        let mut line = B64.encode(msg.bytes.expose()).into_bytes();
                        let end = line.len();
                        line.extend_from_slice(b"\r\n");
                        let red = if end > 0 {
                            vec![Redaction {
                                start: 0,
                                end,
                                replacement: format!("<redacted: {}>", msg.redacted),
                            }]
                        } else {
                            Vec::new()
                        };
                        self.transmit(line, red);
                    }
                    Err(reason) => {
                        auth.cancelled = Some(reason);
                        self.transmit(b"*\r\n".to_vec(), Vec::new());
                    }
                }
                p.sent_at = self.now;
                self.pending = Some(p);
            }
            _ => {
                self.note(&format!(
                    "unexpected continuation request during {}",
                    p.kind.name()
                ));
                self.pending = Some(p);
            }
        }
    }

    fn on_tagged(&mut self, p: Pending, resp: StatusResponse) {
        if let Some(caps) = code_capabilities(resp.code.as_deref()) {
            self.caps = Some(caps);
        }
        let ok = resp.status.eq_ignore_ascii_case("OK");
        if let Kind::Logout { then } = p.kind {
            self.phase = Phase::Done;
            self.finish(then);
            return;
        }
        if !ok {
            let reason = match &p.kind {
                Kind::Authenticate(a) if a.cancelled.is_some() => format!(
                    "AUTHENTICATE {} cancelled: {}",
                    a.mechanism.name(),
                    a.cancelled.clone().unwrap_or_default()
                ),
                k => format!(
                    "{} refused: {} {}{}",
                    k.name(),
                    resp.status,
                    resp.code
                        .as_ref()
                        .map(|c| format!("[{c}] "))
                        .unwrap_or_default(),
                    resp.text
                ),
            };
            self.fail_and_logout(p.kind.step(), reason);
            return;
        }
        match p.kind {
            Kind::Capability { after_tls } => self.after_capabilities(after_tls),
            Kind::StartTls => {
                if !self.input.is_empty() {
                    let n = self.input.len();
                    let at = self.input_offset;
                    self.input.clear();
                    self.input_offset += n as u64;
                    self.raise(
                        Finding::new(
                            IMAP_STARTTLS_READ_AHEAD,
                            format!("{n} octets after the OK to STARTTLS, discarded"),
                        )
                        .at(Direction::ServerToClient, at),
                    );
                }
                self.phase = Phase::AwaitTls;
                self.push_event(Event::StartTlsRequested);
            }
            Kind::Login => self.after_auth(None),
            Kind::Authenticate(a) => {
                let mut a = *a;
                if !a.session.is_complete()
                    && let Err(e) = a.session.handle_success_data(&[])
                {
                    self.note(&format!(
                        "AUTHENTICATE {} succeeded early: {e}",
                        a.mechanism.name()
                    ));
                }
                if a.session.server_verified() == Some(false) {
                    self.note("the server never proved it knows the password (SCRAM)");
                }
                self.after_auth(Some(a.mechanism));
            }
            Kind::Select => {
                let code_ro = resp
                    .code
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case("READ-ONLY"));
                self.mailbox.read_only = self.opts.examine || code_ro;
                self.mailbox.name = self.opts.mailbox.clone();
                self.push_event(Event::MailboxSelected(self.mailbox.clone()));
                if self.stop_at(Stage::Select) {
                    return;
                }
                self.next_action();
            }
            Kind::Append => {
                self.push_event(Event::Appended(resp));
                self.next_action();
            }
            Kind::Idle => {
                self.idle_until = None;
                self.next_action();
            }
            _ => self.next_action(),
        }
    }

    // ---- steps ----

    fn after_capabilities(&mut self, after_tls: bool) {
        let caps = self.caps.clone().unwrap_or_default();
        self.push_event(Event::CapabilitiesReceived {
            capabilities: caps.clone(),
            tls: self.tls,
        });
        if after_tls {
            self.compare_caps_after_tls();
        } else if !self.tls {
            if !has_cap(&caps, "STARTTLS") {
                self.raise(Finding::new(
                    IMAP_STARTTLS_NOT_OFFERED,
                    "no STARTTLS among the capabilities on the plaintext connection",
                ));
            } else if !has_cap(&caps, "LOGINDISABLED") {
                self.raise(Finding::new(
                    IMAP_LOGINDISABLED_MISSING,
                    "STARTTLS offered, LOGINDISABLED not: LOGIN works without TLS",
                ));
            }
        }
        if !after_tls && self.stop_at(Stage::Capa) {
            return;
        }
        if !after_tls && self.opts.starttls && !self.tls {
            if !has_cap(&caps, "STARTTLS") && !self.preauth {
                self.fail_and_logout(
                    FailedStep::Tls,
                    "the server does not offer STARTTLS".to_string(),
                );
                return;
            }
            if self.preauth {
                self.fail_and_logout(
                    FailedStep::Tls,
                    "the server greeted with PREAUTH: STARTTLS is not possible".to_string(),
                );
                return;
            }
            self.send_simple(Kind::StartTls, "STARTTLS");
            return;
        }
        self.begin_auth();
    }

    fn compare_caps_after_tls(&mut self) {
        let before = self.caps_before_tls.clone().unwrap_or_default();
        let after = self.caps.clone().unwrap_or_default();
        let mut problems = Vec::new();
        if has_cap(&after, "STARTTLS") {
            problems.push("STARTTLS still offered inside TLS".to_string());
        }
        if has_cap(&after, "LOGINDISABLED") {
            problems.push("LOGINDISABLED still offered inside TLS".to_string());
        }
        let lost: Vec<&String> = before
            .iter()
            .filter(|c| c.to_ascii_uppercase().starts_with("AUTH="))
            .filter(|c| !has_cap(&after, c))
            .collect();
        if !lost.is_empty() {
            problems.push(format!(
                "mechanisms gone after TLS: {}",
                lost.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if !problems.is_empty() {
            self.raise(Finding::new(
                IMAP_CAPABILITY_CHANGED_AFTER_TLS,
                problems.join("; "),
            ));
        }
        let added: Vec<&String> = after.iter().filter(|c| !has_cap(&before, c)).collect();
        let removed: Vec<&String> = before.iter().filter(|c| !has_cap(&after, c)).collect();
        if !added.is_empty() || !removed.is_empty() {
            let list = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
            self.note(&format!(
                "capabilities after TLS: added [{}], removed [{}]",
                list(&added),
                list(&removed)
            ));
        }
    }

    fn begin_auth(&mut self) {
        if self.preauth {
            self.after_auth(None);
            return;
        }
        let Some(auth) = self.opts.auth.clone() else {
            if self.opts.quit_after.is_some_and(|s| s >= Stage::Auth) {
                self.note("no login asked for (--auth-user): stopping before auth");
            }
            self.logout(Outcome::Completed);
            return;
        };
        let caps = self.caps.clone().unwrap_or_default();
        let clear = auth
            .mechanism
            .is_none_or(Mechanism::sends_password_in_clear);
        if !self.tls {
            if clear && !self.opts.allow_plaintext_auth && !self.peer_is_loopback {
                let what = auth.mechanism.map_or("LOGIN".to_string(), |m| {
                    format!("AUTHENTICATE {}", m.name())
                });
                self.fail_and_logout(
                    FailedStep::Auth,
                    format!("refusing to send a password with {what} without TLS to a non-loopback server (use --tls, --tls-on-connect or --insecure-auth-plaintext)"),
                );
                return;
            }
            if auth.mechanism.is_none() && has_cap(&caps, "LOGINDISABLED") {
                self.fail_and_logout(
                    FailedStep::Auth,
                    "the server advertises LOGINDISABLED: LOGIN needs TLS (use --tls)".into(),
                );
                return;
            }
        }
        match auth.mechanism {
            None => self.send_login(&auth.credentials, &caps),
            Some(m) => self.send_authenticate(m, &auth, &caps),
        }
    }

    fn send_login(&mut self, creds: &Credentials, caps: &[String]) {
        let literal_plus = has_cap(caps, "LITERAL+") || has_cap(caps, "LITERAL-");
        let tag = self.next_tag();
        let mut segs: Vec<Segment> = Vec::new();
        let mut cur = format!("{tag} LOGIN ").into_bytes();
        let mut red = Vec::new();
        for (i, arg) in [creds.authcid.as_bytes(), creds.password.expose().as_bytes()]
            .into_iter()
            .enumerate()
        {
            let secret = i == 1;
            if i == 1 {
                cur.push(b' ');
            }
            let enc = encode_astring(arg);
            match enc {
                Astring::Inline(bytes) => {
                    let start = cur.len();
                    cur.extend_from_slice(&bytes);
                    if secret {
                        red.push(Redaction {
                            start,
                            end: cur.len(),
                            replacement: format!("<redacted: {}-byte password>", arg.len()),
                        });
                    }
                }
                Astring::Literal(bytes) => {
                    let plus = if literal_plus { "+" } else { "" };
                    cur.extend_from_slice(format!("{{{}{plus}}}\r\n", bytes.len()).as_bytes());
                    if !literal_plus {
                        segs.push((std::mem::take(&mut cur), std::mem::take(&mut red)));
                    }
                    let start = cur.len();
                    cur.extend_from_slice(&bytes);
                    if secret {
                        red.push(Redaction {
                            start,
                            end: cur.len(),
                            replacement: format!("<redacted: {}-byte password>", arg.len()),
                        });
                    }
                }
            }
        }
        cur.extend_from_slice(b"\r\n");
        segs.push((cur, red));
        if !self.tls {
            self.raise(Finding::new(
                IMAP_LOGIN_BEFORE_TLS,
                "LOGIN sent outside TLS: the server did not forbid it (no LOGINDISABLED)",
            ));
        }
        self.send_segments(tag, Kind::Login, segs);
    }

    fn send_authenticate(&mut self, m: Mechanism, auth: &AuthOptions, caps: &[String]) {
        let offered = caps
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&format!("AUTH={}", m.name())));
        if !offered {
            self.note(&format!(
                "the server does not advertise AUTH={}; trying it anyway",
                m.name()
            ));
        }
        let binding = if m.is_scram_plus() {
            match self.channel_binding.binding(None) {
                Some(b) if self.tls => b,
                _ => {
                    self.fail_and_logout(
                        FailedStep::Auth,
                        format!(
                            "AUTHENTICATE {} needs channel binding data from TLS",
                            m.name()
                        ),
                    );
                    return;
                }
            }
        } else {
            ChannelBinding::None
        };
        let mut session = match ClientSession::new_with_channel_binding(
            m,
            auth.credentials.clone(),
            &auth.client_nonce,
            binding,
        ) {
            Ok(s) => s,
            Err(e) => {
                self.fail_and_logout(
                    FailedStep::Auth,
                    format!("cannot start AUTHENTICATE {}: {e}", m.name()),
                );
                return;
            }
        };
        if !self.tls && m.sends_password_in_clear() {
            self.raise(Finding::new(
                IMAP_LOGIN_BEFORE_TLS,
                format!("AUTHENTICATE {} sent outside TLS", m.name()),
            ));
        }
        let tag = self.next_tag();
        let mut line = format!("{tag} AUTHENTICATE {}", m.name()).into_bytes();
        let mut red = Vec::new();
        let mut initial = session.initial_response();
        if has_cap(caps, "SASL-IR")
            && let Some(msg) = initial.take()
        {
            line.push(b' ');
            let start = line.len();
            let enc = B64.encode(msg.bytes.expose());
            line.extend_from_slice(if enc.is_empty() { b"=" } else { enc.as_bytes() });
            red.push(Redaction {
                start,
                end: line.len(),
                replacement: format!("<redacted: {}>", msg.redacted),
            });
        }
        line.extend_from_slice(b"\r\n");
        let state = AuthState {
            session,
            mechanism: m,
            initial,
            cancelled: None,
        };
        self.send_segments(tag, Kind::Authenticate(Box::new(state)), vec![(line, red)]);
    }

    fn after_auth(&mut self, mechanism: Option<Mechanism>) {
        self.push_event(Event::Authenticated { mechanism });
        if self.stop_at(Stage::Auth) {
            return;
        }
        let o = &self.opts;
        let mut a = VecDeque::new();
        if o.id {
            a.push_back(Action::Id);
        }
        if o.namespace {
            a.push_back(Action::Namespace);
        }
        if o.list {
            a.push_back(Action::List);
        }
        if o.append.is_some() {
            a.push_back(Action::Append);
        }
        if o.status {
            a.push_back(Action::Status);
        }
        let any_action = o.list || o.status || o.append.is_some() || o.id || o.namespace;
        let needs_select = o.select
            || o.search
            || o.fetch.is_some()
            || o.idle_us.is_some()
            || o.quit_after == Some(Stage::Select)
            || !any_action;
        if needs_select {
            a.push_back(Action::Select);
        }
        if o.search {
            a.push_back(Action::Search);
        }
        if o.fetch.is_some() {
            a.push_back(Action::Fetch);
        }
        if o.idle_us.is_some() {
            a.push_back(Action::Idle);
        }
        self.actions = a;
        self.next_action();
    }

    fn next_action(&mut self) {
        let Some(action) = self.actions.pop_front() else {
            self.logout(Outcome::Completed);
            return;
        };
        let mailbox = encode_mailbox(&self.opts.mailbox);
        match action {
            Action::Id => {
                self.send_simple(Kind::Id, "ID (\"name\" \"mailscope\" \"version\" \"0.1\")")
            }
            Action::Namespace => self.send_simple(Kind::Namespace, "NAMESPACE"),
            Action::List => self.send_simple(Kind::List, "LIST \"\" \"*\""),
            Action::Status => self.send_simple(
                Kind::Status,
                &format!("STATUS {mailbox} (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"),
            ),
            Action::Select => {
                self.mailbox = MailboxSummary::default();
                let verb = if self.opts.examine {
                    "EXAMINE"
                } else {
                    "SELECT"
                };
                self.send_simple(Kind::Select, &format!("{verb} {mailbox}"));
            }
            Action::Search => self.send_simple(Kind::Search, "SEARCH ALL"),
            Action::Fetch => {
                let set = self.opts.fetch.clone().unwrap_or_default();
                let uid = if self.opts.uid { "UID " } else { "" };
                let section = self.opts.part.section();
                self.send_simple(
                    Kind::Fetch,
                    &format!("{uid}FETCH {set} (UID BODY.PEEK[{section}])"),
                );
            }
            Action::Append => {
                let msg = self.opts.append.clone().unwrap_or_default();
                let caps = self.caps.clone().unwrap_or_default();
                let plus =
                    has_cap(&caps, "LITERAL+") || (has_cap(&caps, "LITERAL-") && msg.len() <= 4096);
                let tag = self.next_tag();
                let head = format!(
                    "{tag} APPEND {mailbox} {{{}{}}}\r\n",
                    msg.len(),
                    if plus { "+" } else { "" }
                )
                .into_bytes();
                let mut tail = msg;
                tail.extend_from_slice(b"\r\n");
                let segs = if plus {
                    let mut all = head;
                    all.extend_from_slice(&tail);
                    vec![(all, Vec::new())]
                } else {
                    vec![(head, Vec::new()), (tail, Vec::new())]
                };
                self.send_segments(tag, Kind::Append, segs);
            }
            Action::Idle => {
                let caps = self.caps.clone().unwrap_or_default();
                if !has_cap(&caps, "IDLE") {
                    self.note("the server does not advertise IDLE; trying it anyway");
                }
                self.idle_done_sent = false;
                self.send_simple(Kind::Idle, "IDLE");
            }
        }
    }

    fn logout(&mut self, then: Outcome) {
        self.actions.clear();
        self.send_simple(Kind::Logout { then }, "LOGOUT");
    }

    fn fail_and_logout(&mut self, step: FailedStep, reason: String) {
        self.logout(Outcome::Failed { step, reason });
    }

    /// Whether the session stops after `stage` (and LOGOUT has been sent).
    fn stop_at(&mut self, stage: Stage) -> bool {
        if self.opts.quit_after == Some(stage) {
            self.logout(Outcome::StoppedAfter(stage));
            true
        } else {
            false
        }
    }

    // ---- output ----

    fn next_tag(&mut self) -> String {
        self.tag_counter += 1;
        format!("a{:03}", self.tag_counter)
    }

    fn send_simple(&mut self, kind: Kind, command: &str) {
        let tag = self.next_tag();
        let line = format!("{tag} {command}\r\n").into_bytes();
        self.send_segments(tag, kind, vec![(line, Vec::new())]);
    }

    fn send_segments(&mut self, tag: String, kind: Kind, segs: Vec<Segment>) {
        let mut segs: VecDeque<Segment> = segs.into();
        let Some((first, red)) = segs.pop_front() else {
            return;
        };
        let offset = self.transmit(first, red);
        self.push_event(Event::CommandSent {
            command: kind.name(),
            tag: tag.clone(),
            offset,
        });
        self.pending = Some(Pending {
            tag,
            kind,
            sent_at: self.now,
            segments: segs,
        });
    }

    fn transmit(&mut self, bytes: Vec<u8>, red: Vec<Redaction>) -> u64 {
        let offset = self.transcript.record_redacted(
            Direction::ClientToServer,
            self.now,
            self.tls,
            &bytes,
            red,
        );
        self.outbuf.extend_from_slice(&bytes);
        offset
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        let mut over: Vec<(&'static str, usize)> = self
            .finding_counts
            .iter()
            .filter(|(_, n)| **n > MAX_FINDINGS_PER_KIND)
            .map(|(k, n)| (*k, *n))
            .collect();
        // A HashMap's order differs from run to run: sort, so the same input always gives
        // the same events (found by the imap_client fuzz target).
        over.sort_unstable();
        for (k, n) in over {
            self.note(&format!(
                "{k}: {n} occurrences, only the first {MAX_FINDINGS_PER_KIND} reported"
            ));
        }
        self.finished = true;
        self.idle_until = None;
        self.push_event(Event::Finished(outcome));
    }

    fn push_event(&mut self, e: Event) {
        self.events.push_back((self.transcript.chunks().len(), e));
    }

    fn raise(&mut self, f: Finding) {
        let n = self.finding_counts.entry(f.kind.id).or_insert(0);
        *n += 1;
        if *n > MAX_FINDINGS_PER_KIND {
            return;
        }
        self.findings.push(f.clone());
        self.push_event(Event::FindingRaised(f));
    }

    fn note(&mut self, text: &str) {
        self.push_event(Event::Note(text.to_string()));
    }
}

fn has_cap(caps: &[String], name: &str) -> bool {
    caps.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// `tag STATUS [code] text` (or `* STATUS ...`).
fn parse_status(line: &str) -> Option<StatusResponse> {
    let (tag, rest) = line.split_once(' ')?;
    let (status, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = status.to_ascii_uppercase();
    if !matches!(status.as_str(), "OK" | "NO" | "BAD" | "BYE" | "PREAUTH") {
        return None;
    }
    let (code, text) = match rest.strip_prefix('[') {
        Some(r) => match r.find(']') {
            Some(end) => (Some(r[..end].to_string()), r[end + 1..].trim_start()),
            None => (None, rest),
        },
        None => (None, rest),
    };
    Some(StatusResponse {
        tag: tag.to_string(),
        status,
        code,
        text: text.to_string(),
    })
}

fn code_capabilities(code: Option<&str>) -> Option<Vec<String>> {
    let code = code?;
    let mut it = code.split_ascii_whitespace();
    if !it.next()?.eq_ignore_ascii_case("CAPABILITY") {
        return None;
    }
    Some(it.map(str::to_string).collect())
}

fn find_number_after(text: &str, word: &str) -> Option<u32> {
    let mut it = text
        .split(|c: char| c.is_ascii_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty());
    while let Some(w) = it.next() {
        if w.eq_ignore_ascii_case(word) {
            return it.next().and_then(|n| n.parse().ok());
        }
    }
    None
}

/// A section value sent as a quoted string instead of a literal (`BODY[] "..."`).
fn quoted_section(text: &str) -> Option<Vec<u8>> {
    let start = text.find("] \"")? + 3;
    let mut out = Vec::new();
    let mut chars = text[start..].bytes();
    while let Some(b) = chars.next() {
        match b {
            b'\\' => out.push(chars.next()?),
            b'"' => return Some(out),
            b => out.push(b),
        }
    }
    None
}

enum Astring {
    Inline(Vec<u8>),
    Literal(Vec<u8>),
}

/// An astring: an atom when it is one, a quoted string for other printable ASCII, a literal
/// for anything else (8-bit, CR, LF, NUL).
fn encode_astring(s: &[u8]) -> Astring {
    let atom_char = |b: u8| {
        b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
    };
    if !s.is_empty() && s.iter().all(|&b| atom_char(b)) {
        return Astring::Inline(s.to_vec());
    }
    if s.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        let mut q = vec![b'"'];
        for &b in s {
            if b == b'"' || b == b'\\' {
                q.push(b'\\');
            }
            q.push(b);
        }
        q.push(b'"');
        return Astring::Inline(q);
    }
    Astring::Literal(s.to_vec())
}

fn encode_mailbox(name: &str) -> String {
    match encode_astring(name.as_bytes()) {
        Astring::Inline(b) => String::from_utf8_lossy(&b).into_owned(),
        // Non-ASCII names: quoted as UTF-8 (IMAP4rev2 / UTF8=ACCEPT servers take it).
        Astring::Literal(_) => format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}
