//! The SMTP client state machine: greeting → EHLO/HELO/LHLO → STARTTLS → EHLO again → AUTH →
//! MAIL → RCPT… → DATA → QUIT, with stop points (`--quit-after`), sans-IO.
//!
//! Call order (the driver's contract):
//! 1. [`Client::new`], then [`Client::start`] once the connection is up (after the TLS
//!    handshake for implicit TLS).
//! 2. Loop: write what [`Client::poll_transmit`] gives; feed every received byte to
//!    [`Client::handle_input`], the end of the stream to [`Client::handle_eof`]; drain
//!    [`Client::poll_event`]; when it yields [`Event::StartTlsRequested`], do the handshake on
//!    the same connection and call [`Client::handle_tls_established`] or
//!    [`Client::handle_tls_failed`]; when [`Client::poll_timeout`]'s deadline passes, call
//!    [`Client::handle_timeout`].
//! 3. Stop when [`Event::Finished`] has been polled and nothing is left to transmit.
//!
//! The machine owns the [`Transcript`]: every byte it sends or is given is recorded there with
//! the caller's time, so offsets in findings point at real bytes. It never waits and never
//! reads a clock.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::finding::{
    Finding, SMTP_AUTH_OFFERED_WITHOUT_TLS, SMTP_AUTH_PREMATURE_SUCCESS,
    SMTP_AUTH_SERVER_NOT_VERIFIED, SMTP_AUTH_USED_WITHOUT_TLS, SMTP_CONNECTION_CLOSED,
    SMTP_EHLO_NO_EXTENSIONS, SMTP_EHLO_REFUSED, SMTP_REPLY_UNEXPECTED, SMTP_STARTTLS_NOT_OFFERED,
    SMTP_STARTTLS_READ_AHEAD,
};
use crate::sasl::{ClientSession, Credentials, Mechanism};
use crate::smtp::command::{Command, lint_command_line};
use crate::smtp::data::{PreparedData, has_8bit, lint_data};
use crate::smtp::ehlo::Capabilities;
use crate::smtp::explain::{Context, Explanation, explain};
use crate::smtp::reply::{Decoded, Reply, ReplyLimits, decode_reply};
use crate::transcript::{Direction, Redaction, Timestamp, Transcript};

/// Where a session may stop on purpose (`--quit-after`). An intended stop is a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Right after the connection is made (as swaks, the same point as `Banner`).
    Connect,
    /// After the greeting (banner).
    Banner,
    /// After the first EHLO/HELO/LHLO, before STARTTLS.
    FirstEhlo,
    /// After the TLS handshake (STARTTLS), before the EHLO that follows it.
    Tls,
    /// After the last EHLO/HELO/LHLO (after TLS when TLS is used).
    Ehlo,
    /// After AUTH.
    Auth,
    /// After MAIL FROM.
    Mail,
    /// After the last RCPT TO.
    Rcpt,
    /// After the 354 reply to DATA: the connection is closed, since QUIT cannot be sent
    /// inside the DATA phase.
    Data,
    /// After the reply to the final dot (the whole transaction).
    Dot,
}

impl Stage {
    /// Every stage, in session order.
    pub const ALL: [Stage; 10] = [
        Stage::Connect,
        Stage::Banner,
        Stage::FirstEhlo,
        Stage::Tls,
        Stage::Ehlo,
        Stage::Auth,
        Stage::Mail,
        Stage::Rcpt,
        Stage::Data,
        Stage::Dot,
    ];

    /// The name used by `--quit-after`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Banner => "banner",
            Stage::FirstEhlo => "first-ehlo",
            Stage::Tls => "tls",
            Stage::Ehlo => "ehlo",
            Stage::Auth => "auth",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::Dot => "dot",
        }
    }

    /// Parses a `--quit-after` value, with swaks' synonyms.
    pub fn from_name(s: &str) -> Option<Stage> {
        Some(match s.to_ascii_lowercase().as_str() {
            "connect" => Stage::Connect,
            "banner" => Stage::Banner,
            "first-ehlo" | "first-helo" | "first-lhlo" => Stage::FirstEhlo,
            "tls" | "starttls" => Stage::Tls,
            "ehlo" | "helo" | "lhlo" => Stage::Ehlo,
            "auth" => Stage::Auth,
            "mail" | "from" => Stage::Mail,
            "rcpt" | "to" => Stage::Rcpt,
            "data" => Stage::Data,
            "dot" => Stage::Dot,
            _ => return None,
        })
    }
}

/// The step a failed session failed in; the binary maps these to swaks' exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailedStep {
    /// The server closed the connection while a reply was due.
    ConnectionClosed,
    /// The greeting was not 220.
    Banner,
    /// EHLO/HELO/LHLO refused.
    Ehlo,
    /// MAIL FROM refused.
    Mail,
    /// No RCPT TO accepted.
    Rcpt,
    /// DATA refused.
    Data,
    /// The message was refused after the final dot.
    Dot,
    /// AUTH failed (or could not be attempted).
    Auth,
    /// STARTTLS failed (not offered, refused, handshake failed).
    Tls,
    /// EHLO after TLS refused.
    EhloAfterTls,
}

impl FailedStep {
    /// swaks' exit code for this step.
    pub fn exit_code(self) -> u8 {
        match self {
            FailedStep::ConnectionClosed => 6,
            FailedStep::Banner => 21,
            FailedStep::Ehlo => 22,
            FailedStep::Mail => 23,
            FailedStep::Rcpt => 24,
            FailedStep::Data => 25,
            FailedStep::Dot => 26,
            FailedStep::Auth => 28,
            FailedStep::Tls => 29,
            FailedStep::EhloAfterTls => 32,
        }
    }

    /// Lower-case name for output.
    pub fn name(self) -> &'static str {
        match self {
            FailedStep::ConnectionClosed => "connection",
            FailedStep::Banner => "banner",
            FailedStep::Ehlo => "ehlo",
            FailedStep::Mail => "mail",
            FailedStep::Rcpt => "rcpt",
            FailedStep::Data => "data",
            FailedStep::Dot => "dot",
            FailedStep::Auth => "auth",
            FailedStep::Tls => "tls",
            FailedStep::EhloAfterTls => "ehlo-after-tls",
        }
    }
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step done and the message (if any) accepted.
    Completed,
    /// Stopped on purpose after this stage.
    StoppedAfter(Stage),
    /// A step failed.
    Failed {
        /// Which.
        step: FailedStep,
        /// Why, in one line.
        reason: String,
        /// The reply that refused, if a reply did.
        reply: Option<Reply>,
    },
}

/// Which greeting command to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloKind {
    /// EHLO, falling back to HELO if the server refuses it.
    Ehlo,
    /// HELO only.
    Helo,
    /// LHLO (LMTP).
    Lhlo,
}

/// AUTH settings.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// The mechanism; `None` picks the best the server offers.
    pub mechanism: Option<Mechanism>,
    /// Who and with what password.
    pub credentials: Credentials,
    /// Client nonce for SCRAM (printable ASCII, no comma), supplied by the caller.
    pub client_nonce: String,
}

/// Everything the machine needs to know up front.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Name for EHLO/HELO/LHLO.
    pub helo_name: String,
    /// EHLO, HELO or LHLO.
    pub hello: HelloKind,
    /// Whether the connection starts inside TLS (implicit TLS, port 465).
    pub implicit_tls: bool,
    /// Whether to upgrade with STARTTLS (required: the session fails if it cannot).
    pub starttls: bool,
    /// AUTH, if wanted.
    pub auth: Option<AuthOptions>,
    /// Whether a password may be sent without TLS (loopback, or the user's explicit
    /// `--insecure-auth-plaintext`). The driver decides; the machine enforces.
    pub allow_plaintext_auth: bool,
    /// MAIL FROM address (empty for the null sender).
    pub from: String,
    /// RCPT TO addresses.
    pub to: Vec<String>,
    /// The message, prepared (normalised or raw).
    pub data: Option<PreparedData>,
    /// Stop point.
    pub quit_after: Option<Stage>,
    /// Limits on replies.
    pub reply_limits: ReplyLimits,
    /// Microseconds to wait for each reply.
    pub step_timeout_us: u64,
}

/// What happened, for the front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A reply arrived. `command` is the verb it answers (`None` for the greeting).
    ReplyReceived {
        /// Verb of the command answered, or `None` for the greeting.
        command: Option<&'static str>,
        /// The reply.
        reply: Reply,
        /// Stream offset of its first byte.
        offset: u64,
        /// Microseconds from sending the command (or connecting) to the reply.
        latency_us: u64,
    },
    /// A command was sent (its bytes are in the transcript at `offset`).
    CommandSent {
        /// The verb.
        command: &'static str,
        /// Stream offset of its first byte.
        offset: u64,
    },
    /// The server's capabilities, from an EHLO/LHLO reply.
    CapabilitiesReceived {
        /// The capabilities.
        capabilities: Capabilities,
        /// Whether the connection was inside TLS.
        tls: bool,
    },
    /// The driver must now do a TLS handshake on the connection.
    StartTlsRequested,
    /// A mechanism was picked for AUTH.
    AuthMechanismChosen {
        /// The mechanism.
        mechanism: Mechanism,
        /// What the server offered.
        offered: Vec<String>,
        /// Whether the user named it (otherwise it was the best offered).
        explicit: bool,
    },
    /// AUTH succeeded.
    Authenticated {
        /// The mechanism used.
        mechanism: Mechanism,
        /// For SCRAM: whether the server proved it knows the password.
        server_verified: Option<bool>,
    },
    /// One recipient's answer.
    RecipientAnswered {
        /// The address.
        to: String,
        /// Whether it was accepted.
        accepted: bool,
        /// The reply.
        reply: Reply,
    },
    /// The message data went out.
    DataSent {
        /// Stream offset of the content's first byte.
        offset: u64,
        /// Content length (without terminator).
        content_len: usize,
        /// Whether the bytes went out unchanged.
        raw: bool,
        /// The terminator appended, escaped (`\r\n.\r\n` or `.\r\n`).
        terminator: &'static str,
    },
    /// Why a reply refused (4xx/5xx): its meaning, the refusal it looks like, and what to
    /// check next. Its findings are raised as [`Event::FindingRaised`] too.
    ReplyExplained {
        /// Verb of the command answered, or `None` for the greeting.
        command: Option<&'static str>,
        /// The explanation.
        explanation: Box<Explanation>,
    },
    /// A deviation.
    FindingRaised(Finding),
    /// mailscope's own remark (`***` lines).
    Note(String),
    /// The session is over; the driver closes the connection once transmits are drained.
    Finished(Outcome),
}

#[derive(Debug)]
enum State {
    ExpectGreeting,
    ExpectHelloReply { verb: &'static str, after_tls: bool },
    ExpectStartTlsReply,
    AwaitTls,
    ExpectAuthReply(Box<AuthState>),
    ExpectMailReply,
    ExpectRcptReply { index: usize },
    ExpectDataReply,
    ExpectDataEndReply,
    ExpectQuitReply { then: Outcome },
    Done,
}

#[derive(Debug)]
struct AuthState {
    session: ClientSession,
    mechanism: Mechanism,
    /// The client answered a challenge with `*` (cancel) after a SASL error.
    cancelled: Option<String>,
}

/// The SMTP client machine. See the module docs for the call order.
#[derive(Debug)]
pub struct Client {
    opts: ClientOptions,
    state: State,
    transcript: Transcript,
    input: Vec<u8>,
    /// Offset in the server stream of `input[0]`.
    input_offset: u64,
    outbuf: Vec<u8>,
    /// Events, each with the number of transcript chunks that existed when it happened.
    events: VecDeque<(usize, Event)>,
    tls: bool,
    now: Timestamp,
    waiting_since: Timestamp,
    caps: Option<Capabilities>,
    accepted: usize,
    eight_bit_declared: bool,
    findings: Vec<Finding>,
    finished: bool,
    peer_is_loopback: bool,
    /// Findings raised per kind id, to cap a peer that repeats one deviation forever.
    finding_counts: std::collections::HashMap<&'static str, usize>,
    read_ahead_seen: bool,
    trailing_seen: bool,
}

/// At most this many findings of one kind are reported per session; the rest are counted and
/// summed up in one note at the end.
pub const MAX_FINDINGS_PER_KIND: usize = 100;

impl Client {
    /// A machine for one session.
    pub fn new(opts: ClientOptions) -> Self {
        let tls = opts.implicit_tls;
        Self {
            opts,
            state: State::ExpectGreeting,
            transcript: Transcript::new(),
            input: Vec::new(),
            input_offset: 0,
            outbuf: Vec::new(),
            events: VecDeque::new(),
            tls,
            now: Timestamp(0),
            waiting_since: Timestamp(0),
            caps: None,
            accepted: 0,
            eight_bit_declared: false,
            findings: Vec::new(),
            finished: false,
            peer_is_loopback: false,
            finding_counts: std::collections::HashMap::new(),
            read_ahead_seen: false,
            trailing_seen: false,
        }
    }

    /// Tells the machine the server is on a loopback address: a password sent in plaintext
    /// then never leaves the machine, so PLAIN and LOGIN without TLS are allowed there.
    pub fn set_peer_is_loopback(&mut self, loopback: bool) {
        self.peer_is_loopback = loopback;
    }

    /// The connection is up (and, for implicit TLS, the handshake done).
    pub fn start(&mut self, now: Timestamp) {
        self.now = now;
        self.waiting_since = now;
        if self.opts.quit_after == Some(Stage::Connect) {
            // As swaks: `connect` and `banner` are the same point; the greeting is read so
            // QUIT is not sent before the server spoke (that would be pipelining it refuses).
            self.note("quit-after connect: waiting for the banner, then QUIT (as swaks)");
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
        if self.transcript.len(Direction::ServerToClient) > self.opts.reply_limits.max_session_bytes
            && !self.finished
        {
            let limit = self.opts.reply_limits.max_session_bytes;
            let step = failed_step_for(&self.state);
            self.state = State::Done;
            self.finish(Outcome::Failed {
                step,
                reason: format!(
                    "the server sent more than {limit} bytes in this session; giving up"
                ),
                reply: None,
            });
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
        match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectQuitReply { then } => self.finish(then),
            State::Done => {}
            state => {
                let what = waiting_for(&state);
                self.raise(
                    Finding::new(
                        SMTP_CONNECTION_CLOSED,
                        format!("closed while waiting for {what}"),
                    )
                    .at(
                        Direction::ServerToClient,
                        self.transcript.len(Direction::ServerToClient),
                    ),
                );
                self.finish(Outcome::Failed {
                    step: FailedStep::ConnectionClosed,
                    reason: format!(
                        "the server closed the connection while mailscope waited for {what}"
                    ),
                    reply: None,
                });
            }
        }
    }

    /// The TLS handshake after STARTTLS succeeded.
    pub fn handle_tls_established(&mut self, now: Timestamp) {
        self.now = now;
        if !matches!(self.state, State::AwaitTls) {
            return;
        }
        self.tls = true;
        if self.opts.quit_after == Some(Stage::Tls) {
            self.quit(Outcome::StoppedAfter(Stage::Tls));
            return;
        }
        self.send_hello(true);
    }

    /// The TLS handshake after STARTTLS failed; the connection is unusable.
    pub fn handle_tls_failed(&mut self, now: Timestamp, reason: &str) {
        self.now = now;
        self.state = State::Done;
        self.finish(Outcome::Failed {
            step: FailedStep::Tls,
            reason: format!("TLS handshake failed: {reason}"),
            reply: None,
        });
    }

    /// Time passed; fails the step if its reply is overdue.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Done);
        let secs = self.opts.step_timeout_us as f64 / 1e6;
        let what = waiting_for(&state);
        let step = match state {
            State::ExpectQuitReply { then } => {
                self.note(&format!("no reply to QUIT within {secs}s; closing"));
                self.finish(then);
                return;
            }
            State::ExpectGreeting => FailedStep::Banner,
            State::ExpectHelloReply {
                after_tls: false, ..
            } => FailedStep::Ehlo,
            State::ExpectHelloReply {
                after_tls: true, ..
            } => FailedStep::EhloAfterTls,
            State::ExpectStartTlsReply | State::AwaitTls => FailedStep::Tls,
            State::ExpectAuthReply(_) => FailedStep::Auth,
            State::ExpectMailReply => FailedStep::Mail,
            State::ExpectRcptReply { .. } => FailedStep::Rcpt,
            State::ExpectDataReply => FailedStep::Data,
            State::ExpectDataEndReply => FailedStep::Dot,
            State::Done => return,
        };
        self.finish(Outcome::Failed {
            step,
            reason: format!("timed out after {secs}s waiting for {what}"),
            reply: None,
        });
    }

    /// Appends bytes to send to `out`; returns whether anything was appended.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.outbuf.is_empty() {
            return false;
        }
        out.append(&mut self.outbuf);
        true
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().map(|(_, e)| e)
    }

    /// The next event with its place in the transcript: the number of chunks recorded when
    /// it happened, so a front end can print bytes and events in the order they occurred.
    #[must_use]
    pub fn poll_event_positioned(&mut self) -> Option<(usize, Event)> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.state {
            State::Done | State::AwaitTls => None,
            _ if self.finished => None,
            _ => Some(Timestamp(
                self.waiting_since
                    .0
                    .saturating_add(self.opts.step_timeout_us),
            )),
        }
    }

    /// Whether bytes or events are waiting to be polled.
    pub fn has_pending_output(&self) -> bool {
        !self.outbuf.is_empty() || !self.events.is_empty()
    }

    /// Whether the session is over (after [`Event::Finished`]).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Every byte so far.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// Every finding so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The capabilities from the last EHLO/LHLO reply.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.caps.as_ref()
    }

    /// Whether the connection is inside TLS now.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    // ---- internals ----

    fn process_input(&mut self) {
        loop {
            if self.input.is_empty() {
                return;
            }
            if matches!(self.state, State::AwaitTls) {
                // Whatever arrives between the 220 to STARTTLS and the handshake was sent in
                // clear: never let it count as a reply inside TLS, however it was cut.
                self.discard_read_ahead();
                return;
            }
            if self.finished || matches!(self.state, State::Done) {
                self.discard_trailing();
                return;
            }
            if self.input.is_empty() {
                return;
            }
            let decoded = match decode_reply(&self.input, &self.opts.reply_limits) {
                Ok(Decoded::Complete { value, consumed }) => (value, consumed),
                Ok(Decoded::Incomplete) => return,
                Err(e) => {
                    let reason = format!("unusable reply from the server: {e}");
                    self.raise(
                        Finding::new(crate::finding::SMTP_REPLY_SYNTAX, e.to_string())
                            .at(Direction::ServerToClient, self.input_offset),
                    );
                    let step = failed_step_for(&self.state);
                    self.state = State::Done;
                    self.finish(Outcome::Failed {
                        step,
                        reason,
                        reply: None,
                    });
                    return;
                }
            };
            let (value, consumed) = decoded;
            let base = self.input_offset;
            self.input.drain(..consumed);
            self.input_offset += consumed as u64;
            for mut f in value.findings {
                f.offset = f.offset.map(|o| o + base);
                self.raise(f);
            }
            if value.reply.lines.is_empty() {
                continue; // only garbage lines; findings raised
            }
            let offset = base + value.reply.lines[0].offset as u64;
            self.handle_reply(value.reply, offset);
        }
    }

    fn handle_reply(&mut self, reply: Reply, offset: u64) {
        let state = std::mem::replace(&mut self.state, State::Done);
        let command = answered_verb(&state);
        self.push_event(Event::ReplyReceived {
            command,
            reply: reply.clone(),
            offset,
            latency_us: self.now.micros_since(self.waiting_since),
        });
        if matches!(reply.class(), 4 | 5) {
            let context = match &state {
                State::ExpectGreeting => Context::Greeting,
                State::ExpectHelloReply { .. } => Context::Ehlo,
                State::ExpectStartTlsReply => Context::StartTls,
                State::ExpectAuthReply(_) => Context::Auth,
                State::ExpectMailReply => Context::Mail,
                State::ExpectRcptReply { .. } => Context::Rcpt,
                State::ExpectDataReply => Context::Data,
                State::ExpectDataEndReply => Context::EndOfData,
                State::ExpectQuitReply { .. } => Context::Quit,
                State::AwaitTls | State::Done => Context::Other,
            };
            let explanation = explain(&reply, context);
            for f in &explanation.findings {
                self.raise(f.clone().at(Direction::ServerToClient, offset));
            }
            self.push_event(Event::ReplyExplained {
                command,
                explanation: Box::new(explanation),
            });
        }
        match state {
            State::ExpectGreeting => {
                if reply.code != 220 {
                    self.fail(
                        FailedStep::Banner,
                        "the server's greeting is not 220",
                        reply,
                    );
                } else if matches!(self.opts.quit_after, Some(Stage::Connect | Stage::Banner)) {
                    self.quit(Outcome::StoppedAfter(
                        self.opts.quit_after.unwrap_or(Stage::Banner),
                    ));
                } else {
                    self.send_hello(false);
                }
            }
            State::ExpectHelloReply { verb, after_tls } => {
                self.on_hello_reply(verb, after_tls, reply)
            }
            State::ExpectStartTlsReply => {
                if reply.code != 220 {
                    self.fail(FailedStep::Tls, "the server refused STARTTLS", reply);
                    return;
                }
                self.state = State::AwaitTls;
                // The request first, then the read-ahead finding: the same order whether the
                // extra bytes came in this read or a later one.
                self.push_event(Event::StartTlsRequested);
                self.discard_read_ahead();
            }
            State::AwaitTls | State::Done => {
                self.raise(
                    Finding::new(
                        SMTP_REPLY_UNEXPECTED,
                        format!("reply {} with no command waiting", reply.code),
                    )
                    .at(Direction::ServerToClient, offset),
                );
                self.state = state;
            }
            State::ExpectAuthReply(auth) => self.on_auth_reply(*auth, reply),
            State::ExpectMailReply => {
                if reply.is_positive() {
                    self.after_mail();
                } else {
                    self.fail(FailedStep::Mail, "MAIL FROM was refused", reply);
                }
            }
            State::ExpectRcptReply { index } => {
                let accepted = reply.is_positive();
                let to = self.opts.to.get(index).cloned().unwrap_or_default();
                self.push_event(Event::RecipientAnswered {
                    to,
                    accepted,
                    reply: reply.clone(),
                });
                if accepted {
                    self.accepted += 1;
                }
                if index + 1 < self.opts.to.len() {
                    self.send_rcpt(index + 1);
                } else if self.accepted == 0 {
                    self.fail(FailedStep::Rcpt, "no recipient was accepted", reply);
                } else if self.opts.quit_after == Some(Stage::Rcpt) {
                    self.quit(Outcome::StoppedAfter(Stage::Rcpt));
                } else if self.opts.data.is_none() {
                    self.note("no message data given: stopping after RCPT");
                    self.quit(Outcome::StoppedAfter(Stage::Rcpt));
                } else {
                    self.send(Command::Data, State::ExpectDataReply);
                }
            }
            State::ExpectDataReply => {
                if reply.code != 354 {
                    self.fail(FailedStep::Data, "DATA was refused", reply);
                } else if self.opts.quit_after == Some(Stage::Data) {
                    self.note("quit-after data: closing the connection without QUIT (QUIT would be message text now)");
                    self.state = State::Done;
                    self.finish(Outcome::StoppedAfter(Stage::Data));
                } else {
                    self.send_data();
                }
            }
            State::ExpectDataEndReply => {
                if reply.is_positive() {
                    let then = if self.opts.quit_after == Some(Stage::Dot) {
                        Outcome::StoppedAfter(Stage::Dot)
                    } else {
                        Outcome::Completed
                    };
                    self.quit(then);
                } else {
                    self.fail(
                        FailedStep::Dot,
                        "the message was refused after the final dot",
                        reply,
                    );
                }
            }
            State::ExpectQuitReply { then } => {
                self.state = State::Done;
                self.finish(then);
            }
        }
    }

    fn on_hello_reply(&mut self, verb: &'static str, after_tls: bool, reply: Reply) {
        if !reply.is_positive() {
            if verb == "EHLO"
                && self.opts.hello == HelloKind::Ehlo
                && matches!(reply.code, 500..=504 | 550)
            {
                self.raise(Finding::new(
                    SMTP_EHLO_REFUSED,
                    format!("EHLO answered {}", reply.summary()),
                ));
                let cmd = Command::Helo(self.opts.helo_name.clone());
                self.send(
                    cmd,
                    State::ExpectHelloReply {
                        verb: "HELO",
                        after_tls,
                    },
                );
                return;
            }
            let step = if after_tls {
                FailedStep::EhloAfterTls
            } else {
                FailedStep::Ehlo
            };
            self.fail(step, &format!("{verb} was refused"), reply);
            return;
        }
        let caps = if verb == "HELO" {
            Capabilities::default()
        } else {
            Capabilities::from_reply(&reply)
        };
        if verb != "HELO" {
            if caps.extensions.is_empty() {
                self.raise(Finding::new(SMTP_EHLO_NO_EXTENSIONS, ""));
            }
            self.push_event(Event::CapabilitiesReceived {
                capabilities: caps.clone(),
                tls: self.tls,
            });
        }
        if !self.tls {
            if !caps.has("STARTTLS") {
                self.raise(Finding::new(
                    SMTP_STARTTLS_NOT_OFFERED,
                    "the EHLO reply lists no STARTTLS",
                ));
            }
            if caps.offers_auth() {
                self.raise(Finding::new(
                    SMTP_AUTH_OFFERED_WITHOUT_TLS,
                    format!(
                        "AUTH {} offered in plaintext",
                        caps.auth_mechanisms().join(" ")
                    ),
                ));
            }
        }
        self.caps = Some(caps);
        let wants_tls = self.opts.starttls && !self.tls;
        if self.opts.quit_after == Some(Stage::FirstEhlo) && !after_tls {
            self.quit(Outcome::StoppedAfter(Stage::FirstEhlo));
            return;
        }
        if wants_tls {
            if !self.caps.as_ref().is_some_and(|c| c.has("STARTTLS")) {
                self.fail_without_reply(
                    FailedStep::Tls,
                    "the server does not offer STARTTLS (required by --tls)",
                );
                return;
            }
            self.send(Command::StartTls, State::ExpectStartTlsReply);
            return;
        }
        if matches!(self.opts.quit_after, Some(Stage::Tls | Stage::Ehlo)) {
            let stage = self.opts.quit_after.unwrap_or(Stage::Ehlo);
            self.quit(Outcome::StoppedAfter(stage));
            return;
        }
        self.start_auth_or_mail();
    }

    fn start_auth_or_mail(&mut self) {
        let Some(auth) = self.opts.auth.clone() else {
            if self.opts.quit_after == Some(Stage::Auth) {
                self.quit(Outcome::StoppedAfter(Stage::Auth));
            } else {
                self.send_mail();
            }
            return;
        };
        let offered = self
            .caps
            .as_ref()
            .map(Capabilities::auth_mechanisms)
            .unwrap_or_default();
        if offered.is_empty() {
            self.fail_without_reply(FailedStep::Auth, "the server offers no AUTH mechanism");
            return;
        }
        let (mechanism, explicit) = match auth.mechanism {
            Some(m) => {
                if !offered.iter().any(|o| o == m.name()) {
                    self.fail_without_reply(
                        FailedStep::Auth,
                        &format!(
                            "the server does not offer AUTH {} (it offers: {})",
                            m.name(),
                            offered.join(" ")
                        ),
                    );
                    return;
                }
                (m, true)
            }
            None => match Mechanism::best_of(offered.iter().map(String::as_str)) {
                Some(m) => (m, false),
                None => {
                    self.fail_without_reply(
                        FailedStep::Auth,
                        &format!(
                            "none of the offered mechanisms is supported: {}",
                            offered.join(" ")
                        ),
                    );
                    return;
                }
            },
        };
        self.push_event(Event::AuthMechanismChosen {
            mechanism,
            offered,
            explicit,
        });
        if !self.tls {
            if mechanism.sends_password_in_clear()
                && !self.opts.allow_plaintext_auth
                && !self.peer_is_loopback
            {
                self.fail_without_reply(
                    FailedStep::Auth,
                    &format!(
                        "refusing to send a {} password without TLS to a non-loopback server (use --tls, or --insecure-auth-plaintext)",
                        mechanism.name()
                    ),
                );
                return;
            }
            self.raise(Finding::new(
                SMTP_AUTH_USED_WITHOUT_TLS,
                format!("AUTH {} without TLS", mechanism.name()),
            ));
        }
        let mut session =
            match ClientSession::new(mechanism, auth.credentials.clone(), &auth.client_nonce) {
                Ok(s) => s,
                Err(e) => {
                    self.fail_without_reply(
                        FailedStep::Auth,
                        &format!("cannot start AUTH {}: {e}", mechanism.name()),
                    );
                    return;
                }
            };
        let initial = session.initial_response();
        let mut line = format!("AUTH {}", mechanism.name()).into_bytes();
        let mut redactions = Vec::new();
        if let Some(msg) = initial {
            line.push(b' ');
            let start = line.len();
            let enc = B64.encode(msg.bytes.expose());
            line.extend_from_slice(if enc.is_empty() { b"=" } else { enc.as_bytes() });
            redactions.push(Redaction {
                start,
                end: line.len(),
                replacement: format!("<redacted: {}>", msg.redacted),
            });
        }
        line.extend_from_slice(b"\r\n");
        let state = State::ExpectAuthReply(Box::new(AuthState {
            session,
            mechanism,
            cancelled: None,
        }));
        self.send_line("AUTH", line, redactions, state);
    }

    fn on_auth_reply(&mut self, mut auth: AuthState, reply: Reply) {
        if reply.code == 334 && auth.cancelled.is_none() {
            let text: Vec<u8> = reply
                .lines
                .first()
                .map(|l| l.text.clone())
                .unwrap_or_default();
            let challenge = match B64.decode(trim_ascii(&text)) {
                Ok(c) => Ok(c),
                Err(e) => Err(format!("the 334 challenge is not base64: {e}")),
            };
            let answer = challenge.and_then(|c| auth.session.step(&c).map_err(|e| e.to_string()));
            match answer {
                Ok(msg) => {
                    let enc = B64.encode(msg.bytes.expose());
                    let mut line = enc.into_bytes();
                    let end = line.len();
                    line.extend_from_slice(b"\r\n");
                    let redactions = if end > 0 {
                        vec![Redaction {
                            start: 0,
                            end,
                            replacement: format!("<redacted: {}>", msg.redacted),
                        }]
                    } else {
                        Vec::new()
                    };
                    self.send_line(
                        "AUTH",
                        line,
                        redactions,
                        State::ExpectAuthReply(Box::new(auth)),
                    );
                }
                Err(reason) => {
                    if auth.session.server_verified() == Some(false) {
                        self.raise(Finding::new(SMTP_AUTH_SERVER_NOT_VERIFIED, reason.clone()));
                    }
                    // RFC 4954 §4: "*" cancels the exchange; the server answers 501.
                    auth.cancelled = Some(reason);
                    self.send_line(
                        "AUTH",
                        b"*\r\n".to_vec(),
                        Vec::new(),
                        State::ExpectAuthReply(Box::new(auth)),
                    );
                }
            }
            return;
        }
        if let Some(reason) = auth.cancelled {
            self.fail(
                FailedStep::Auth,
                &format!("AUTH {} cancelled: {reason}", auth.mechanism.name()),
                reply,
            );
            return;
        }
        if reply.is_positive() {
            // SMTP carries no data with 235 (RFC 4954 §4: additional data comes as a last
            // 334 challenge), so success must find the exchange complete.
            if !auth.session.is_complete() {
                let why = auth.session.handle_success_data(&[]).err();
                let detail = match &why {
                    Some(e) => format!(
                        "{} answered {} early: {e}",
                        auth.mechanism.name(),
                        reply.code
                    ),
                    None => format!("{} answered {} early", auth.mechanism.name(), reply.code),
                };
                self.raise(Finding::new(SMTP_AUTH_PREMATURE_SUCCESS, detail));
            }
            if auth.session.server_verified() == Some(false) {
                self.raise(Finding::new(
                    SMTP_AUTH_SERVER_NOT_VERIFIED,
                    "the server never sent its SCRAM signature",
                ));
            }
            self.push_event(Event::Authenticated {
                mechanism: auth.mechanism,
                server_verified: auth.session.server_verified(),
            });
            if self.opts.quit_after == Some(Stage::Auth) {
                self.quit(Outcome::StoppedAfter(Stage::Auth));
            } else {
                self.send_mail();
            }
        } else {
            self.fail(
                FailedStep::Auth,
                &format!("AUTH {} failed", auth.mechanism.name()),
                reply,
            );
        }
    }

    fn send_mail(&mut self) {
        let mut params = Vec::new();
        if let Some(d) = &self.opts.data {
            let offered = self.caps.as_ref().is_some_and(|c| c.has("8BITMIME"));
            if has_8bit(d.content()) && offered {
                params.push("BODY=8BITMIME".to_string());
                self.eight_bit_declared = true;
            }
        }
        let cmd = Command::Mail {
            from: self.opts.from.clone(),
            params,
        };
        self.send(cmd, State::ExpectMailReply);
    }

    fn after_mail(&mut self) {
        if self.opts.quit_after == Some(Stage::Mail) {
            self.quit(Outcome::StoppedAfter(Stage::Mail));
        } else if self.opts.to.is_empty() {
            self.fail_without_reply(FailedStep::Rcpt, "no recipient given (--to)");
        } else {
            self.send_rcpt(0);
        }
    }

    fn send_rcpt(&mut self, index: usize) {
        let to = self.opts.to.get(index).cloned().unwrap_or_default();
        self.send(
            Command::Rcpt {
                to,
                params: Vec::new(),
            },
            State::ExpectRcptReply { index },
        );
    }

    fn send_data(&mut self) {
        let Some(data) = self.opts.data.take() else {
            self.fail_without_reply(FailedStep::Data, "no message data");
            return;
        };
        let offset =
            self.transcript
                .record(Direction::ClientToServer, self.now, self.tls, &data.bytes);
        self.outbuf.extend_from_slice(&data.bytes);
        self.waiting_since = self.now;
        let terminator = match data.terminator {
            crate::smtp::data::Terminator::CrLfDotCrLf => "\\r\\n.\\r\\n",
            crate::smtp::data::Terminator::DotCrLf => ".\\r\\n",
        };
        if data.raw {
            self.note(&format!(
                "raw DATA: {} bytes sent unchanged, then {terminator} ({})",
                data.content_len,
                if terminator == ".\\r\\n" {
                    "the content ended in CRLF"
                } else {
                    "the content did not end in CRLF"
                }
            ));
        }
        for f in lint_data(
            data.content(),
            offset,
            Direction::ClientToServer,
            self.eight_bit_declared,
        ) {
            self.raise(f);
        }
        self.push_event(Event::DataSent {
            offset,
            content_len: data.content_len,
            raw: data.raw,
            terminator,
        });
        self.state = State::ExpectDataEndReply;
    }

    fn send_hello(&mut self, after_tls: bool) {
        let name = self.opts.helo_name.clone();
        let (cmd, verb) = match self.opts.hello {
            HelloKind::Ehlo => (Command::Ehlo(name), "EHLO"),
            HelloKind::Helo => (Command::Helo(name), "HELO"),
            HelloKind::Lhlo => (Command::Lhlo(name), "LHLO"),
        };
        self.send(cmd, State::ExpectHelloReply { verb, after_tls });
    }

    fn send(&mut self, cmd: Command, next: State) {
        self.send_line(cmd.verb(), cmd.to_bytes(), Vec::new(), next);
    }

    fn send_line(
        &mut self,
        verb: &'static str,
        line: Vec<u8>,
        redactions: Vec<Redaction>,
        next: State,
    ) {
        let offset = self.transcript.record_redacted(
            Direction::ClientToServer,
            self.now,
            self.tls,
            &line,
            redactions,
        );
        for f in lint_command_line(&line, offset, Direction::ClientToServer) {
            self.raise(f);
        }
        self.outbuf.extend_from_slice(&line);
        self.push_event(Event::CommandSent {
            command: verb,
            offset,
        });
        self.waiting_since = self.now;
        self.state = next;
    }

    fn quit(&mut self, then: Outcome) {
        self.send(Command::Quit, State::ExpectQuitReply { then });
    }

    fn fail(&mut self, step: FailedStep, reason: &str, reply: Reply) {
        let reason = format!("{reason}: {}", reply.summary());
        self.quit(Outcome::Failed {
            step,
            reason,
            reply: Some(reply),
        });
    }

    fn fail_without_reply(&mut self, step: FailedStep, reason: &str) {
        self.quit(Outcome::Failed {
            step,
            reason: reason.to_string(),
            reply: None,
        });
    }

    fn finish(&mut self, outcome: Outcome) {
        if !self.finished {
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
            self.finished = true;
            self.state = State::Done;
            self.push_event(Event::Finished(outcome));
        }
    }

    fn discard_read_ahead(&mut self) {
        if self.input.is_empty() {
            return;
        }
        let n = self.input.len();
        if !self.read_ahead_seen {
            self.read_ahead_seen = true;
            self.raise(
                Finding::new(
                    SMTP_STARTTLS_READ_AHEAD,
                    "plaintext bytes after the 220 to STARTTLS were discarded (they start at this offset)",
                )
                .at(Direction::ServerToClient, self.input_offset),
            );
        }
        self.input_offset += n as u64;
        self.input.clear();
    }

    /// Bytes after the session ended: one finding (however the bytes were cut), then ignored.
    fn discard_trailing(&mut self) {
        if self.input.is_empty() {
            return;
        }
        if !self.trailing_seen {
            self.trailing_seen = true;
            let at = self.input_offset;
            let f = Finding::new(
                SMTP_REPLY_UNEXPECTED,
                "bytes after the session ended (they start at this offset)",
            )
            .at(Direction::ServerToClient, at);
            // Raised after `Finished`; the findings list has it, the event queue too.
            self.findings.push(f.clone());
            self.push_event(Event::FindingRaised(f));
        }
        self.input_offset += self.input.len() as u64;
        self.input.clear();
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

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn answered_verb(state: &State) -> Option<&'static str> {
    match state {
        State::ExpectGreeting => None,
        State::ExpectHelloReply { verb, .. } => Some(verb),
        State::ExpectStartTlsReply => Some("STARTTLS"),
        State::ExpectAuthReply(_) => Some("AUTH"),
        State::ExpectMailReply => Some("MAIL"),
        State::ExpectRcptReply { .. } => Some("RCPT"),
        State::ExpectDataReply => Some("DATA"),
        State::ExpectDataEndReply => Some("."),
        State::ExpectQuitReply { .. } => Some("QUIT"),
        State::AwaitTls | State::Done => None,
    }
}

fn waiting_for(state: &State) -> String {
    match state {
        State::ExpectGreeting => "the greeting".into(),
        State::AwaitTls => "the TLS handshake".into(),
        State::Done => "nothing".into(),
        other => match answered_verb(other) {
            Some(".") => "the reply to the final dot".into(),
            Some(v) => format!("the reply to {v}"),
            None => "a reply".into(),
        },
    }
}

fn failed_step_for(state: &State) -> FailedStep {
    match state {
        State::ExpectGreeting => FailedStep::Banner,
        State::ExpectHelloReply {
            after_tls: false, ..
        } => FailedStep::Ehlo,
        State::ExpectHelloReply {
            after_tls: true, ..
        } => FailedStep::EhloAfterTls,
        State::ExpectStartTlsReply | State::AwaitTls => FailedStep::Tls,
        State::ExpectAuthReply(_) => FailedStep::Auth,
        State::ExpectMailReply => FailedStep::Mail,
        State::ExpectRcptReply { .. } => FailedStep::Rcpt,
        State::ExpectDataReply => FailedStep::Data,
        State::ExpectDataEndReply => FailedStep::Dot,
        State::ExpectQuitReply { .. } | State::Done => FailedStep::ConnectionClosed,
    }
}
