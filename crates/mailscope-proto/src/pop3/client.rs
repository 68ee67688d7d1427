//! The POP3 client machine (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH, APOP):
//! greeting, CAPA, STLS, CAPA again, login (USER/PASS, APOP or SASL), STAT, the requested
//! actions, QUIT. Sans-IO like the SMTP client: bytes in through `handle_input`, bytes out
//! through `poll_transmit`, events through `poll_event`, times passed in.

use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};

use crate::finding::{
    Finding, FindingKind, POP3_AUTH_SERVER_NOT_VERIFIED, POP3_AUTH_USED_WITHOUT_TLS,
    POP3_CAPA_CHANGED_AFTER_TLS, POP3_CAPA_NOT_SUPPORTED, POP3_CONNECTION_CLOSED,
    POP3_RESPONSE_BARE_LF, POP3_RESPONSE_LINE_TOO_LONG, POP3_RESPONSE_MISSING_CRLF,
    POP3_RESPONSE_SYNTAX, POP3_RESPONSE_TOO_LARGE, POP3_RESPONSE_UNEXPECTED, POP3_STLS_NOT_OFFERED,
    POP3_STLS_READ_AHEAD, POP3_USER_BEFORE_TLS,
};
use crate::pop3::response::{
    Decoded, Deviation, Response, ResponseCode, ResponseDecoder, ResponseLimits, Status,
    apop_timestamp, parse_capa, parse_listing, parse_stat,
};
use crate::sasl::{ClientSession, Credentials, Mechanism};
use crate::secret::Secret;
use crate::transcript::{Direction, Redaction, Timestamp, Transcript};

/// At most this many findings of one kind are reported per session.
pub const MAX_FINDINGS_PER_KIND: usize = 100;

/// Where `--quit-after` stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Right after the TCP (and implicit TLS) connection, before the greeting.
    Connect,
    /// After the greeting.
    Greeting,
    /// After the first CAPA.
    Capa,
    /// After STLS and the second CAPA.
    Tls,
    /// After login.
    Auth,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: &[Stage] = &[
        Stage::Connect,
        Stage::Greeting,
        Stage::Capa,
        Stage::Tls,
        Stage::Auth,
    ];

    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Capa => "capa",
            Stage::Tls => "tls",
            Stage::Auth => "auth",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|st| st.name().eq_ignore_ascii_case(s))
    }
}

/// The step that failed, with its exit code (swaks' spirit; documented in the CLI help).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedStep {
    /// The connection closed, or timed out, while a response was due (6).
    ConnectionClosed,
    /// The greeting was `-ERR` or unusable (21).
    Greeting,
    /// A mailbox command (STAT, LIST, UIDL, TOP, RETR, DELE, RSET, NOOP, QUIT) failed (23).
    Transaction,
    /// Login failed (28).
    Auth,
    /// STLS failed or was not offered (29).
    Tls,
    /// Options that cannot work (1).
    Options,
}

impl FailedStep {
    /// The process exit code.
    pub const fn exit_code(self) -> u8 {
        match self {
            FailedStep::ConnectionClosed => 6,
            FailedStep::Greeting => 21,
            FailedStep::Transaction => 23,
            FailedStep::Auth => 28,
            FailedStep::Tls => 29,
            FailedStep::Options => 1,
        }
    }

    /// Name for JSON and the summary.
    pub const fn name(self) -> &'static str {
        match self {
            FailedStep::ConnectionClosed => "connection",
            FailedStep::Greeting => "greeting",
            FailedStep::Transaction => "transaction",
            FailedStep::Auth => "auth",
            FailedStep::Tls => "tls",
            FailedStep::Options => "options",
        }
    }
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done and QUIT answered.
    Completed,
    /// `--quit-after` stopped it.
    StoppedAfter(Stage),
    /// A step failed.
    Failed {
        /// Which.
        step: FailedStep,
        /// Why, in words.
        reason: String,
    },
}

/// How to log in.
#[derive(Debug, Clone)]
pub enum Login {
    /// USER / PASS (RFC 1939 §7).
    UserPass {
        /// The user name.
        user: String,
        /// The password.
        password: Secret<String>,
    },
    /// APOP (RFC 1939 §7): MD5 of the greeting's timestamp and the password.
    Apop {
        /// The user name.
        user: String,
        /// The password.
        password: Secret<String>,
    },
    /// AUTH (RFC 5034) with a SASL mechanism.
    Sasl {
        /// The mechanism.
        mechanism: Mechanism,
        /// Who and with what.
        credentials: Credentials,
        /// The client nonce (SCRAM); passed in, the machine draws no randomness.
        client_nonce: String,
    },
}

/// Message numbers: a list of ranges; `u32::MAX` stands for `*` (the last message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgSet(pub Vec<(u32, u32)>);

impl MsgSet {
    /// Parses `1,3:5,*` (IMAP-style sequence sets).
    pub fn parse(s: &str) -> Result<Self, String> {
        let num = |p: &str| -> Result<u32, String> {
            if p == "*" {
                return Ok(u32::MAX);
            }
            match p.parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{p:?} is not a message number (1, 2, ... or *)")),
            }
        };
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let n = num(part)?;
                    (n, n)
                }
            };
            v.push((a.min(b), a.max(b)));
        }
        Ok(Self(v))
    }

    /// The message numbers, given the count from STAT, ascending, without duplicates.
    pub fn resolve(&self, count: u64) -> Vec<u32> {
        let last = u32::try_from(count).unwrap_or(u32::MAX);
        let mut out: Vec<u32> = Vec::new();
        for &(a, b) in &self.0 {
            let a = if a == u32::MAX { last } else { a };
            let b = if b == u32::MAX { last } else { b };
            let (a, b) = (a.min(b), a.max(b));
            // Never more than the mailbox holds: a huge range does not become a huge loop.
            for n in a..=b.min(last.max(a)) {
                if n >= 1 && u64::from(n) <= count {
                    out.push(n);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Which part of a message to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `TOP n 0`: the header (and the blank line).
    Header,
    /// `RETR n`, header removed by the front end.
    Body,
    /// `RETR n`.
    Full,
}

/// Something to do once logged in (after STAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// LIST and UIDL of every message.
    List,
    /// Fetch these messages.
    Fetch(MsgSet, Part),
    /// DELE these messages.
    Delete(MsgSet),
    /// `TOP n lines`.
    Top(u32, u32),
    /// NOOP.
    Noop,
    /// RSET.
    Rset,
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The connection is TLS from the first byte (995).
    pub implicit_tls: bool,
    /// Upgrade with STLS; fail (29) if the server cannot.
    pub stls: bool,
    /// How to log in; `None`: no login (capabilities only).
    pub login: Option<Login>,
    /// Allow a password in the clear to a non-loopback server.
    pub allow_plaintext_auth: bool,
    /// Stop after this stage.
    pub quit_after: Option<Stage>,
    /// Actions after login, in order.
    pub actions: Vec<Action>,
    /// Framing limits.
    pub limits: ResponseLimits,
    /// Microseconds to wait for each response.
    pub step_timeout_us: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            implicit_tls: false,
            stls: false,
            login: None,
            allow_plaintext_auth: false,
            quit_after: None,
            actions: Vec::new(),
            limits: ResponseLimits::default(),
            step_timeout_us: 30_000_000,
        }
    }
}

/// What happened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A response arrived.
    ResponseReceived {
        /// The command it answers (`greeting` for the greeting).
        command: String,
        /// `+OK`, `-ERR`, or `None` if neither.
        status: Option<Status>,
        /// The status line text.
        text: Vec<u8>,
        /// RFC 2449 response code.
        code: Option<ResponseCode>,
        /// Microseconds since the command was sent.
        latency_us: u64,
    },
    /// The greeting, with the APOP timestamp if it has one.
    GreetingReceived {
        /// The greeting text.
        text: Vec<u8>,
        /// `<...@...>`, if present.
        apop_timestamp: Option<String>,
    },
    /// CAPA answered.
    CapabilitiesReceived {
        /// Inside TLS.
        tls: bool,
        /// One entry per line.
        capabilities: Vec<String>,
    },
    /// The driver must now do the TLS handshake and call `handle_tls_established`.
    StartTlsRequested,
    /// Login succeeded.
    Authenticated {
        /// `USER`, `APOP` or the SASL mechanism.
        method: String,
        /// SCRAM: whether the server proved it knows the password.
        server_verified: Option<bool>,
    },
    /// STAT answered.
    MailboxStat {
        /// Messages.
        count: u64,
        /// Octets.
        size: u64,
    },
    /// LIST (and UIDL) answered: number, size, unique id.
    Listing(Vec<(u32, u64, Option<String>)>),
    /// A message (or its header, with TOP) arrived, unstuffed, bytes as sent.
    MessageRetrieved {
        /// Message number.
        number: u32,
        /// What was asked for.
        part: Part,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A message was marked deleted.
    Deleted(u32),
    /// A finding.
    FindingRaised(Finding),
    /// A note for the user.
    Note(String),
    /// The session is over.
    Finished(Outcome),
}

#[derive(Debug)]
enum State {
    Idle,
    ExpectGreeting,
    ExpectCapa { after_tls: bool },
    ExpectStls,
    AwaitTls,
    ExpectUser,
    ExpectPass,
    ExpectApop,
    ExpectAuth(Box<AuthState>),
    ExpectStat,
    ExpectCommand(Cmd),
    ExpectQuit { outcome: Outcome },
    Done,
}

#[derive(Debug)]
struct AuthState {
    session: ClientSession,
    mechanism: Mechanism,
    cancelled: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cmd {
    List,
    Uidl,
    Retr(u32, Part),
    Top(u32, u32),
    Dele(u32),
    Noop,
    Rset,
}

impl Cmd {
    fn line(&self) -> String {
        match self {
            Cmd::List => "LIST".into(),
            Cmd::Uidl => "UIDL".into(),
            Cmd::Retr(n, Part::Header) => format!("TOP {n} 0"),
            Cmd::Retr(n, _) => format!("RETR {n}"),
            Cmd::Top(n, l) => format!("TOP {n} {l}"),
            Cmd::Dele(n) => format!("DELE {n}"),
            Cmd::Noop => "NOOP".into(),
            Cmd::Rset => "RSET".into(),
        }
    }

    fn multiline(&self) -> bool {
        matches!(self, Cmd::List | Cmd::Uidl | Cmd::Retr(..) | Cmd::Top(..))
    }
}

/// The POP3 client machine.
#[derive(Debug)]
pub struct Client {
    opts: ClientOptions,
    state: State,
    transcript: Transcript,
    input: Vec<u8>,
    decoder: ResponseDecoder,
    /// Offset in the server stream of `input[0]`.
    input_offset: u64,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<(usize, Event)>,
    tls: bool,
    peer_is_loopback: bool,
    now: Timestamp,
    sent_at: Timestamp,
    last_command: String,
    apop_timestamp: Option<String>,
    caps_before: Option<Vec<String>>,
    caps: Option<Vec<String>>,
    queue: VecDeque<Cmd>,
    listing: Vec<(u32, u64, Option<String>)>,
    finding_counts: HashMap<&'static str, usize>,
    findings: Vec<Finding>,
    stat: Option<(u64, u64)>,
}

impl Client {
    /// A machine for these options.
    pub fn new(opts: ClientOptions) -> Self {
        let limits = opts.limits;
        Self {
            tls: opts.implicit_tls,
            opts,
            state: State::Idle,
            transcript: Transcript::new(),
            input: Vec::new(),
            decoder: ResponseDecoder::new(limits),
            input_offset: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            peer_is_loopback: false,
            now: Timestamp(0),
            sent_at: Timestamp(0),
            last_command: "greeting".into(),
            apop_timestamp: None,
            caps_before: None,
            caps: None,
            queue: VecDeque::new(),
            listing: Vec::new(),
            finding_counts: HashMap::new(),
            findings: Vec::new(),
            stat: None,
        }
    }

    /// Whether the server is on loopback (plaintext passwords are allowed there).
    pub fn set_peer_is_loopback(&mut self, loopback: bool) {
        self.peer_is_loopback = loopback;
    }

    /// The connection is up (and TLS, if implicit): wait for the greeting.
    pub fn start(&mut self, now: Timestamp) {
        self.now = now;
        self.sent_at = now;
        if self.opts.quit_after == Some(Stage::Connect) {
            self.finish(Outcome::StoppedAfter(Stage::Connect));
            return;
        }
        self.state = State::ExpectGreeting;
    }

    /// Bytes from the server.
    pub fn handle_input(&mut self, now: Timestamp, bytes: &[u8]) {
        self.now = now;
        if bytes.is_empty() {
            return;
        }
        self.transcript
            .record(Direction::ServerToClient, now, self.tls, bytes);
        if matches!(self.state, State::Done) {
            return;
        }
        self.input.extend_from_slice(bytes);
        self.process();
    }

    /// The server closed the connection (or a write failed).
    pub fn handle_eof(&mut self, now: Timestamp) {
        self.now = now;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Done => self.state = State::Done,
            // A server may close right after +OK to QUIT, or before it: both end the session.
            State::ExpectQuit { outcome } => self.finish(outcome),
            _ => {
                let offset = self.input_offset + self.input.len() as u64;
                self.raise(
                    Finding::new(
                        POP3_CONNECTION_CLOSED,
                        format!("while waiting for the response to {}", self.last_command),
                    )
                    .at(Direction::ServerToClient, offset),
                );
                self.finish(Outcome::Failed {
                    step: FailedStep::ConnectionClosed,
                    reason: format!(
                        "connection closed while waiting for the response to {}",
                        self.last_command
                    ),
                });
            }
        }
    }

    /// The TLS handshake the machine asked for succeeded.
    pub fn handle_tls_established(&mut self, now: Timestamp) {
        self.now = now;
        self.tls = true;
        if matches!(self.state, State::AwaitTls) {
            self.send_plain("CAPA", State::ExpectCapa { after_tls: true });
        }
    }

    /// The TLS handshake failed.
    pub fn handle_tls_failed(&mut self, now: Timestamp, reason: &str) {
        self.now = now;
        self.finish(Outcome::Failed {
            step: FailedStep::Tls,
            reason: format!("TLS handshake failed: {reason}"),
        });
    }

    /// Time passed; if a response is overdue, the session fails.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        if let Some(deadline) = self.poll_timeout()
            && now >= deadline
        {
            let reason = format!(
                "no response to {} within {:.1}s",
                self.last_command,
                self.opts.step_timeout_us as f64 / 1e6
            );
            self.finish(Outcome::Failed {
                step: FailedStep::ConnectionClosed,
                reason,
            });
        }
    }

    /// Appends the next bytes to send to `out`; false when there are none.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        match self.out.pop_front() {
            Some(b) => {
                out.extend_from_slice(&b);
                true
            }
            None => false,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().map(|(_, e)| e)
    }

    /// The next event, with the number of transcript chunks recorded when it happened.
    pub fn poll_event_positioned(&mut self) -> Option<(usize, Event)> {
        self.events.pop_front()
    }

    /// When the current wait times out.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.state {
            State::Idle | State::Done | State::AwaitTls => None,
            _ => Some(Timestamp(
                self.sent_at.0.saturating_add(self.opts.step_timeout_us),
            )),
        }
    }

    /// Bytes or events are waiting.
    pub fn has_pending_output(&self) -> bool {
        !self.out.is_empty() || !self.events.is_empty()
    }

    /// The session is over.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Every byte so far.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// Findings so far (capped per kind).
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The capabilities from the last CAPA.
    pub fn capabilities(&self) -> Option<&[String]> {
        self.caps.as_deref()
    }

    /// STAT's count and size.
    pub fn stat(&self) -> Option<(u64, u64)> {
        self.stat
    }

    /// Whether the connection is TLS now.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    // ------------------------------------------------------------------ internals

    fn emit(&mut self, ev: Event) {
        self.events.push_back((self.transcript.chunks().len(), ev));
    }

    fn raise(&mut self, f: Finding) {
        let n = self.finding_counts.entry(f.kind.id).or_insert(0);
        *n += 1;
        if *n > MAX_FINDINGS_PER_KIND {
            if *n == MAX_FINDINGS_PER_KIND + 1 {
                self.emit(Event::Note(format!(
                    "findings capped at {MAX_FINDINGS_PER_KIND} per kind ({}: more not shown)",
                    f.kind.id
                )));
            }
            return;
        }
        self.findings.push(f.clone());
        self.emit(Event::FindingRaised(f));
    }

    fn finding_at(&mut self, kind: &'static FindingKind, offset: u64, detail: String) {
        self.raise(Finding::new(kind, detail).at(Direction::ServerToClient, offset));
    }

    fn finish(&mut self, outcome: Outcome) {
        self.state = State::Done;
        self.emit(Event::Finished(outcome));
    }

    fn expects_multiline(&self) -> bool {
        match &self.state {
            State::ExpectCapa { .. } => true,
            State::ExpectCommand(c) => c.multiline(),
            _ => false,
        }
    }

    fn process(&mut self) {
        loop {
            if matches!(self.state, State::Done) || self.input.is_empty() {
                return;
            }
            if matches!(self.state, State::Idle | State::AwaitTls) {
                let n = self.input.len();
                let off = self.input_offset;
                self.finding_at(
                    POP3_RESPONSE_UNEXPECTED,
                    off,
                    format!("{n} bytes while no response was due"),
                );
                self.input_offset += n as u64;
                self.input.clear();
                return;
            }
            let multiline = self.expects_multiline();
            match self.decoder.decode(&self.input, multiline) {
                Decoded::Incomplete => return,
                Decoded::TooLong { what, limit } => {
                    let off = self.input_offset;
                    self.finding_at(
                        POP3_RESPONSE_TOO_LARGE,
                        off,
                        format!("a {what} over {limit} octets"),
                    );
                    self.finish(Outcome::Failed {
                        step: FailedStep::ConnectionClosed,
                        reason: format!("the server sent a {what} over {limit} octets"),
                    });
                    return;
                }
                Decoded::Complete { value, consumed } => {
                    let start = self.input_offset;
                    self.input.drain(..consumed);
                    self.input_offset += consumed as u64;
                    self.report_deviations(start, &value);
                    self.emit(Event::ResponseReceived {
                        command: self.last_command.clone(),
                        status: value.status,
                        text: value.text.clone(),
                        code: value.code.clone(),
                        latency_us: self.now.micros_since(self.sent_at),
                    });
                    self.on_response(value);
                }
            }
        }
    }

    fn report_deviations(&mut self, start: u64, r: &Response) {
        let mut bare_lf = 0usize;
        let mut first_bare = 0u64;
        for (off, d) in &r.deviations {
            let at = start + *off as u64;
            match d {
                // `+ data` is an AUTH continuation (RFC 5034 §4), not a bad status.
                Deviation::BadStatus
                    if matches!(self.state, State::ExpectAuth(_))
                        && r.text.first() == Some(&b'+') => {}
                Deviation::BadStatus => self.finding_at(
                    POP3_RESPONSE_SYNTAX,
                    at,
                    format!(
                        "response to {} starts {:?}",
                        self.last_command,
                        String::from_utf8_lossy(&r.text[..r.text.len().min(20)])
                    ),
                ),
                Deviation::MissingCrlf => self.finding_at(
                    POP3_RESPONSE_MISSING_CRLF,
                    at,
                    format!("in the response to {}", self.last_command),
                ),
                Deviation::StatusLineTooLong(n) => {
                    self.finding_at(POP3_RESPONSE_LINE_TOO_LONG, at, format!("{n} octets"))
                }
                Deviation::BareLfInBody => {
                    if bare_lf == 0 {
                        first_bare = at;
                    }
                    bare_lf += 1;
                }
            }
        }
        if bare_lf > 0 {
            self.finding_at(
                POP3_RESPONSE_BARE_LF,
                first_bare,
                format!(
                    "{bare_lf} line(s) ending in a bare LF in the response to {}",
                    self.last_command
                ),
            );
        }
    }

    fn text_of(r: &Response) -> String {
        String::from_utf8_lossy(&r.text).into_owned()
    }

    fn on_response(&mut self, r: Response) {
        let ok = r.status == Some(Status::Ok);
        match std::mem::replace(&mut self.state, State::Idle) {
            State::ExpectGreeting => {
                if !ok {
                    self.finish(Outcome::Failed {
                        step: FailedStep::Greeting,
                        reason: format!("greeting: {}", Self::text_of(&r)),
                    });
                    return;
                }
                self.apop_timestamp = apop_timestamp(&r.text);
                self.emit(Event::GreetingReceived {
                    text: r.text.clone(),
                    apop_timestamp: self.apop_timestamp.clone(),
                });
                if self.opts.quit_after == Some(Stage::Greeting) {
                    self.quit(Outcome::StoppedAfter(Stage::Greeting));
                } else {
                    self.send_plain("CAPA", State::ExpectCapa { after_tls: false });
                }
            }
            State::ExpectCapa { after_tls } => self.on_capa(after_tls, ok, &r),
            State::ExpectStls => {
                if !ok {
                    self.fail_quit(
                        FailedStep::Tls,
                        format!("STLS refused: {}", Self::text_of(&r)),
                    );
                    return;
                }
                if !self.input.is_empty() {
                    let n = self.input.len();
                    let off = self.input_offset;
                    self.finding_at(
                        POP3_STLS_READ_AHEAD,
                        off,
                        format!("{n} plaintext bytes after +OK to STLS, discarded"),
                    );
                    self.input_offset += n as u64;
                    self.input.clear();
                }
                self.state = State::AwaitTls;
                self.emit(Event::StartTlsRequested);
            }
            State::AwaitTls | State::Idle | State::Done => {}
            State::ExpectUser => {
                if !ok {
                    self.fail_quit(
                        FailedStep::Auth,
                        format!("USER refused: {}", Self::text_of(&r)),
                    );
                    return;
                }
                let Some(Login::UserPass { password, .. }) = self.opts.login.clone() else {
                    return;
                };
                let pw = password.expose().clone();
                let mut line = b"PASS ".to_vec();
                let start = line.len();
                line.extend_from_slice(pw.as_bytes());
                let end = line.len();
                line.extend_from_slice(b"\r\n");
                self.send_line(
                    "PASS",
                    line,
                    vec![Redaction {
                        start,
                        end,
                        replacement: format!("<redacted: {}-byte password>", pw.len()),
                    }],
                    State::ExpectPass,
                );
            }
            State::ExpectPass | State::ExpectApop => {
                let method = if matches!(self.opts.login, Some(Login::Apop { .. })) {
                    "APOP"
                } else {
                    "USER"
                };
                if ok {
                    self.emit(Event::Authenticated {
                        method: method.into(),
                        server_verified: None,
                    });
                    self.after_auth();
                } else {
                    self.fail_quit(
                        FailedStep::Auth,
                        format!("{method} login refused: {}", Self::text_of(&r)),
                    );
                }
            }
            State::ExpectAuth(auth) => self.on_auth(*auth, r),
            State::ExpectStat => {
                if !ok {
                    self.fail_quit(
                        FailedStep::Transaction,
                        format!("STAT refused: {}", Self::text_of(&r)),
                    );
                    return;
                }
                let (count, size) = parse_stat(&r.text).unwrap_or((0, 0));
                if parse_stat(&r.text).is_none() {
                    let off = self.input_offset;
                    self.finding_at(
                        POP3_RESPONSE_SYNTAX,
                        off,
                        "STAT response is not `+OK count size`".into(),
                    );
                }
                self.stat = Some((count, size));
                self.emit(Event::MailboxStat { count, size });
                self.plan(count);
                self.next_command();
            }
            State::ExpectCommand(cmd) => self.on_command(cmd, ok, r),
            State::ExpectQuit { outcome } => {
                if !ok {
                    let reason = format!("QUIT: {}", Self::text_of(&r));
                    self.finish(Outcome::Failed {
                        step: FailedStep::Transaction,
                        reason,
                    });
                } else {
                    self.finish(outcome);
                }
            }
        }
    }

    fn on_capa(&mut self, after_tls: bool, ok: bool, r: &Response) {
        let caps = if ok {
            let caps = parse_capa(r.body.as_deref().unwrap_or_default());
            self.emit(Event::CapabilitiesReceived {
                tls: self.tls,
                capabilities: caps.clone(),
            });
            Some(caps)
        } else {
            self.raise(Finding::new(
                POP3_CAPA_NOT_SUPPORTED,
                format!("CAPA answered: {}", Self::text_of(r)),
            ));
            None
        };
        let has = |c: &Option<Vec<String>>, k: &str| {
            c.as_ref().is_some_and(|v| {
                v.iter().any(|l| {
                    l.split_ascii_whitespace()
                        .next()
                        .is_some_and(|w| w.eq_ignore_ascii_case(k))
                })
            })
        };
        if !self.tls {
            if has(&caps, "USER") {
                self.raise(Finding::new(
                    POP3_USER_BEFORE_TLS,
                    "CAPA lists USER on a connection without TLS",
                ));
            }
            if caps.is_some() && !has(&caps, "STLS") {
                self.raise(Finding::new(
                    POP3_STLS_NOT_OFFERED,
                    "CAPA does not list STLS",
                ));
            }
        }
        if after_tls {
            self.compare_caps(caps.as_deref());
        } else {
            self.caps_before = caps.clone();
        }
        self.caps = caps;
        if !after_tls && self.opts.quit_after == Some(Stage::Capa) {
            self.quit(Outcome::StoppedAfter(Stage::Capa));
            return;
        }
        if !after_tls && self.opts.stls && !self.tls {
            if self.caps.is_some() && !has(&self.caps, "STLS") {
                self.fail_quit(
                    FailedStep::Tls,
                    "STLS was asked for but the server does not offer it".into(),
                );
            } else {
                self.send_plain("STLS", State::ExpectStls);
            }
            return;
        }
        if self.opts.quit_after == Some(Stage::Tls) {
            self.quit(Outcome::StoppedAfter(Stage::Tls));
            return;
        }
        self.login();
    }

    fn compare_caps(&mut self, after: Option<&[String]>) {
        let key = |l: &String| {
            l.split_ascii_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase()
        };
        let before: Vec<String> = self.caps_before.iter().flatten().map(key).collect();
        let after: Vec<String> = after.into_iter().flatten().map(key).collect();
        // Expected: STLS goes away, SASL and USER may appear or change once TLS is up.
        let expected = ["STLS", "SASL", "USER"];
        let appeared: Vec<&String> = after
            .iter()
            .filter(|k| !before.contains(k) && !expected.contains(&k.as_str()))
            .collect();
        let gone: Vec<&String> = before
            .iter()
            .filter(|k| !after.contains(k) && !expected.contains(&k.as_str()))
            .collect();
        let mut parts = Vec::new();
        if !appeared.is_empty() {
            parts.push(format!(
                "appeared: {}",
                appeared
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if !gone.is_empty() {
            parts.push(format!(
                "disappeared: {}",
                gone.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if after.iter().any(|k| k == "STLS") {
            parts.push("STLS is still offered inside TLS".into());
        }
        if !parts.is_empty() {
            self.raise(Finding::new(POP3_CAPA_CHANGED_AFTER_TLS, parts.join("; ")));
        }
    }

    fn plaintext_guard(&mut self, what: &str) -> bool {
        if self.tls {
            return true;
        }
        if !self.peer_is_loopback && !self.opts.allow_plaintext_auth {
            self.fail_quit(
                FailedStep::Auth,
                format!(
                    "refusing to send a {what} password without TLS to a non-loopback server (use --tls, --tls-on-connect, or --insecure-auth-plaintext)"
                ),
            );
            return false;
        }
        self.raise(Finding::new(
            POP3_AUTH_USED_WITHOUT_TLS,
            format!("{what} without TLS"),
        ));
        true
    }

    fn login(&mut self) {
        match self.opts.login.clone() {
            None => {
                self.emit(Event::Note(
                    "no user given: not logging in (--auth-user)".into(),
                ));
                self.quit(Outcome::Completed);
            }
            Some(Login::UserPass { user, .. }) => {
                if !self.plaintext_guard("USER/PASS") {
                    return;
                }
                self.send_plain(&format!("USER {user}"), State::ExpectUser);
            }
            Some(Login::Apop { user, password }) => {
                let Some(ts) = self.apop_timestamp.clone() else {
                    self.fail_quit(
                        FailedStep::Auth,
                        "APOP asked for but the greeting has no <timestamp>: the server does not offer APOP".into(),
                    );
                    return;
                };
                let digest = apop_digest(&ts, password.expose());
                let mut line = format!("APOP {user} ").into_bytes();
                let start = line.len();
                line.extend_from_slice(digest.as_bytes());
                let end = line.len();
                line.extend_from_slice(b"\r\n");
                self.send_line(
                    "APOP",
                    line,
                    vec![Redaction {
                        start,
                        end,
                        replacement: "<redacted: APOP digest>".into(),
                    }],
                    State::ExpectApop,
                );
            }
            Some(Login::Sasl {
                mechanism,
                credentials,
                client_nonce,
            }) => {
                let clear =
                    ["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"].contains(&mechanism.name());
                if clear && !self.plaintext_guard(&format!("AUTH {}", mechanism.name())) {
                    return;
                }
                let mut session = match ClientSession::new(mechanism, credentials, &client_nonce) {
                    Ok(s) => s,
                    Err(e) => {
                        self.fail_quit(
                            FailedStep::Auth,
                            format!("cannot start AUTH {}: {e}", mechanism.name()),
                        );
                        return;
                    }
                };
                let mut line = format!("AUTH {}", mechanism.name()).into_bytes();
                let mut redactions = Vec::new();
                // RFC 5034 §4: an initial response, if the line stays within 255 octets.
                let initial = session.initial_response();
                if let Some(msg) = initial {
                    let enc = B64.encode(msg.bytes.expose());
                    let enc = if enc.is_empty() { "=".to_string() } else { enc };
                    if line.len() + 1 + enc.len() + 2 <= 255 {
                        line.push(b' ');
                        let start = line.len();
                        line.extend_from_slice(enc.as_bytes());
                        redactions.push(Redaction {
                            start,
                            end: line.len(),
                            replacement: format!("<redacted: {}>", msg.redacted),
                        });
                    } else {
                        // Too long for the command line: answer the empty challenge instead.
                        session = match ClientSession::new(
                            mechanism,
                            match &self.opts.login {
                                Some(Login::Sasl { credentials, .. }) => credentials.clone(),
                                _ => return,
                            },
                            &client_nonce,
                        ) {
                            Ok(s) => s,
                            Err(_) => return,
                        };
                    }
                }
                line.extend_from_slice(b"\r\n");
                self.send_line(
                    "AUTH",
                    line,
                    redactions,
                    State::ExpectAuth(Box::new(AuthState {
                        session,
                        mechanism,
                        cancelled: None,
                    })),
                );
            }
        }
    }

    fn on_auth(&mut self, mut auth: AuthState, r: Response) {
        // A continuation is `+ base64` (RFC 5034 §4); the decoder sees `+` without OK as a
        // non-status line.
        if r.status.is_none() && auth.cancelled.is_none() && r.text.first() == Some(&b'+') {
            let data = r.text[1..].trim_ascii();
            let answer = B64
                .decode(data)
                .map_err(|e| format!("the challenge is not base64: {e}"))
                .and_then(|c| auth.session.step(&c).map_err(|e| e.to_string()));
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
                    self.send_line("AUTH", line, red, State::ExpectAuth(Box::new(auth)));
                }
                Err(reason) => {
                    if auth.session.server_verified() == Some(false) {
                        self.raise(Finding::new(POP3_AUTH_SERVER_NOT_VERIFIED, reason.clone()));
                    }
                    auth.cancelled = Some(reason);
                    self.send_line(
                        "AUTH",
                        b"*\r\n".to_vec(),
                        Vec::new(),
                        State::ExpectAuth(Box::new(auth)),
                    );
                }
            }
            return;
        }
        if let Some(reason) = auth.cancelled {
            self.fail_quit(FailedStep::Auth, format!("AUTH cancelled: {reason}"));
            return;
        }
        if r.status == Some(Status::Ok) {
            if let Err(e) = auth.session.handle_success_data(&[])
                && auth.session.server_verified() == Some(false)
            {
                self.raise(Finding::new(POP3_AUTH_SERVER_NOT_VERIFIED, e.to_string()));
                self.fail_quit(FailedStep::Auth, format!("AUTH: {e}"));
                return;
            }
            self.emit(Event::Authenticated {
                method: auth.mechanism.name().into(),
                server_verified: auth.session.server_verified(),
            });
            self.after_auth();
        } else {
            self.fail_quit(
                FailedStep::Auth,
                format!(
                    "AUTH {} refused: {}",
                    auth.mechanism.name(),
                    Self::text_of(&r)
                ),
            );
        }
    }

    fn after_auth(&mut self) {
        if self.opts.quit_after == Some(Stage::Auth) {
            self.quit(Outcome::StoppedAfter(Stage::Auth));
        } else {
            self.send_plain("STAT", State::ExpectStat);
        }
    }

    fn plan(&mut self, count: u64) {
        for a in self.opts.actions.clone() {
            match a {
                Action::List => {
                    self.queue.push_back(Cmd::List);
                    self.queue.push_back(Cmd::Uidl);
                }
                Action::Fetch(set, part) => {
                    for n in set.resolve(count) {
                        self.queue.push_back(Cmd::Retr(n, part));
                    }
                }
                Action::Delete(set) => {
                    for n in set.resolve(count) {
                        self.queue.push_back(Cmd::Dele(n));
                    }
                }
                Action::Top(n, l) => self.queue.push_back(Cmd::Top(n, l)),
                Action::Noop => self.queue.push_back(Cmd::Noop),
                Action::Rset => self.queue.push_back(Cmd::Rset),
            }
        }
    }

    fn next_command(&mut self) {
        match self.queue.pop_front() {
            Some(cmd) => {
                let line = cmd.line();
                self.send_plain(&line, State::ExpectCommand(cmd));
            }
            None => self.quit(Outcome::Completed),
        }
    }

    fn on_command(&mut self, cmd: Cmd, ok: bool, r: Response) {
        if !ok {
            self.fail_quit(
                FailedStep::Transaction,
                format!("{} refused: {}", cmd.line(), Self::text_of(&r)),
            );
            return;
        }
        let body = r.body.unwrap_or_default();
        match cmd {
            Cmd::List => {
                self.listing = parse_listing(&body)
                    .into_iter()
                    .map(|(n, v)| (n, v.parse().unwrap_or(0), None))
                    .collect();
            }
            Cmd::Uidl => {
                for (n, uid) in parse_listing(&body) {
                    if let Some(e) = self.listing.iter_mut().find(|e| e.0 == n) {
                        e.2 = Some(uid);
                    }
                }
                let listing = std::mem::take(&mut self.listing);
                self.emit(Event::Listing(listing));
            }
            Cmd::Retr(number, part) => self.emit(Event::MessageRetrieved {
                number,
                part,
                bytes: body,
            }),
            Cmd::Top(number, _) => self.emit(Event::MessageRetrieved {
                number,
                part: Part::Header,
                bytes: body,
            }),
            Cmd::Dele(n) => self.emit(Event::Deleted(n)),
            Cmd::Noop | Cmd::Rset => {}
        }
        self.next_command();
    }

    fn quit(&mut self, outcome: Outcome) {
        self.send_plain("QUIT", State::ExpectQuit { outcome });
    }

    fn fail_quit(&mut self, step: FailedStep, reason: String) {
        self.quit(Outcome::Failed { step, reason });
    }

    fn send_plain(&mut self, cmd: &str, next: State) {
        let line = format!("{cmd}\r\n").into_bytes();
        self.send_line(cmd, line, Vec::new(), next);
    }

    fn send_line(&mut self, name: &str, line: Vec<u8>, red: Vec<Redaction>, next: State) {
        self.last_command = name
            .split_ascii_whitespace()
            .next()
            .unwrap_or(name)
            .to_string();
        self.transcript
            .record_redacted(Direction::ClientToServer, self.now, self.tls, &line, red);
        self.out.push_back(line);
        self.sent_at = self.now;
        self.decoder.reset();
        self.state = next;
    }
}

/// The APOP digest (RFC 1939 §7): lower-case hex MD5 of the timestamp and the password.
pub fn apop_digest(timestamp: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(timestamp.as_bytes());
    h.update(password.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
