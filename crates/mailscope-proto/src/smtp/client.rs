//! The SMTP client state machine: greeting → EHLO/HELO/LHLO → STARTTLS → EHLO again →
//! XCLIENT → AUTH → MAIL → RCPT… → DATA or BDAT → QUIT, with stop points (`--quit-after`,
//! `--drop-after`), pipelining (RFC 2920), ESMTP parameters, LMTP's per-recipient replies,
//! `lax` deviations on request and SMTP smuggling probes, sans-IO.
//!
//! Call order (the driver's contract):
//! 1. [`Client::new`]; for the PROXY protocol, [`Client::send_preamble`] with a header from
//!    [`proxy`]; then [`Client::start`] once the connection is up (after the TLS handshake
//!    for implicit TLS).
//! 2. Loop: write what [`Client::poll_transmit`] gives; feed every received byte to
//!    [`Client::handle_input`], the end of the stream to [`Client::handle_eof`]; drain
//!    [`Client::poll_event`]; when it yields [`Event::StartTlsRequested`], do the handshake on
//!    the same connection and call [`Client::handle_tls_established_with`] (with the channel
//!    binding data of the connection; [`Client::handle_tls_established`] without) or
//!    [`Client::handle_tls_failed`]; when [`Client::poll_timeout`]'s deadline passes, call
//!    [`Client::handle_timeout`].
//! 3. Stop when [`Event::Finished`] has been polled and nothing is left to transmit, and close
//!    the connection (with [`Outcome::Dropped`] that is the point: no QUIT was sent). After
//!    smuggling probes cut short by the server, [`Client::smuggling_remaining`] lists the
//!    variants to run in a fresh session.
//!
//! The machine owns the [`Transcript`]: every byte it sends or is given is recorded there with
//! the caller's time, so offsets in findings point at real bytes. It never waits and never
//! reads a clock.
//!
//! Replies are matched to commands in order: a queue of expected replies (one entry in
//! lock-step, a whole group when pipelining) feeds the state; the transaction part is driven
//! by `advance` (in `client_txn.rs`), which runs whenever no reply is outstanding.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::escape::escape;
use crate::finding::{
    Finding, SMTP_AUTH_OFFERED_WITHOUT_TLS, SMTP_AUTH_PREMATURE_SUCCESS,
    SMTP_AUTH_SERVER_NOT_VERIFIED, SMTP_AUTH_USED_WITHOUT_TLS, SMTP_CLIENT_LAX_OUT_OF_ORDER,
    SMTP_CLIENT_LAX_OVERSIZE, SMTP_CLIENT_LAX_UNADVERTISED, SMTP_CONNECTION_CLOSED,
    SMTP_EHLO_NO_EXTENSIONS, SMTP_EHLO_REFUSED, SMTP_REPLY_UNEXPECTED, SMTP_STARTTLS_NOT_OFFERED,
    SMTP_STARTTLS_READ_AHEAD,
};
use crate::sasl::{
    ChannelBinding, ChannelBindingData, ChannelBindingType, ClientSession, Credentials, Mechanism,
    OAuthTarget,
};
use crate::smtp::command::{Command, lint_command_line, xtext};
use crate::smtp::data::{PreparedData, lint_data};
use crate::smtp::ehlo::Capabilities;
use crate::smtp::explain::{Context, Explanation, explain};
use crate::smtp::reply::{Decoded, Reply, ReplyLimits, decode_reply};
use crate::transcript::{Direction, Redaction, Timestamp, Transcript};

#[path = "client_params.rs"]
mod params;
#[path = "client_probe.rs"]
mod probe;
/// PROXY protocol v1/v2 headers for the driver to write before the first byte.
#[path = "client_proxy.rs"]
pub mod proxy;
#[path = "client_txn.rs"]
mod txn;

pub use params::{BodyType, DsnNotify, DsnOptions, DsnRet};
pub use probe::{SmugglingVariant, SmugglingVerdict};

use txn::Txn;

/// Where a session may stop on purpose (`--quit-after`, `--drop-after`). An intended stop is
/// a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Right after the connection is made (as swaks, the same point as `Banner` for
    /// `--quit-after`; `--drop-after connect` hangs up at once, before the banner).
    Connect,
    /// After the greeting (banner).
    Banner,
    /// After the first EHLO/HELO/LHLO, before STARTTLS.
    FirstEhlo,
    /// After the TLS handshake (STARTTLS), before the EHLO that follows it.
    Tls,
    /// After the last EHLO/HELO/LHLO (after TLS and XCLIENT when they are used).
    Ehlo,
    /// After AUTH.
    Auth,
    /// After MAIL FROM.
    Mail,
    /// After the last RCPT TO.
    Rcpt,
    /// After the 354 reply to DATA: the connection is closed, since QUIT cannot be sent
    /// inside the DATA phase. With BDAT: after every chunk but the last.
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
    /// MAIL FROM refused (or not sent: a parameter the server cannot take).
    Mail,
    /// No RCPT TO accepted.
    Rcpt,
    /// DATA (or a BDAT chunk) refused.
    Data,
    /// The message was refused after the final dot (or at BDAT LAST; with LMTP: by every
    /// recipient).
    Dot,
    /// AUTH failed (or could not be attempted).
    Auth,
    /// STARTTLS failed (not offered, refused, handshake failed).
    Tls,
    /// EHLO after TLS refused.
    EhloAfterTls,
    /// XCLIENT not offered or refused.
    Xclient,
    /// EHLO after XCLIENT refused.
    EhloAfterXclient,
    /// The options contradict each other ([`ClientOptions::validate`]); nothing was sent.
    Options,
}

impl FailedStep {
    /// swaks' exit code for this step (1, a usage error, for [`FailedStep::Options`]).
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
            FailedStep::Xclient => 33,
            FailedStep::EhloAfterXclient => 34,
            FailedStep::Options => 1,
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
            FailedStep::Xclient => "xclient",
            FailedStep::EhloAfterXclient => "ehlo-after-xclient",
            FailedStep::Options => "options",
        }
    }
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step done and the message (if any) accepted.
    Completed,
    /// Stopped on purpose after this stage (QUIT sent, except after DATA's 354).
    StoppedAfter(Stage),
    /// Stopped on purpose after this stage by closing the connection without QUIT
    /// (`--drop-after`).
    Dropped(Stage),
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
    /// LHLO (LMTP, RFC 2033): after the final dot, one reply per accepted recipient.
    Lhlo,
}

/// AUTH settings.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// The mechanism; `None` picks the best the server offers (by
    /// [`Mechanism::PREFERENCE`]: the SCRAM `-PLUS` variants only inside TLS with channel
    /// binding data; XOAUTH2, OAUTHBEARER and EXTERNAL never, they must be named).
    pub mechanism: Option<Mechanism>,
    /// Who and with what password (for XOAUTH2 and OAUTHBEARER, the password is the bearer
    /// token; EXTERNAL sends only the authzid).
    pub credentials: Credentials,
    /// Client nonce for SCRAM (printable ASCII, no comma), supplied by the caller.
    pub client_nonce: String,
}

/// Verbatim bytes to inject when the session reaches a stage (`lax` only): right after the
/// stage completes, before the step that follows, or before the greeting for
/// [`Stage::Connect`] (talking first). Each LF in `bytes` ends a line the server is expected
/// to answer, and the machine waits for those replies before it goes on; bytes injected at
/// [`Stage::Data`] (after the 354) are message text and get no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCommand {
    /// After which stage.
    pub stage: Stage,
    /// The bytes, exactly (line ends included: nothing is added).
    pub bytes: Vec<u8>,
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
    /// Stop point (QUIT there).
    pub quit_after: Option<Stage>,
    /// Limits on replies.
    pub reply_limits: ReplyLimits,
    /// Microseconds to wait for each reply.
    pub step_timeout_us: u64,
    /// Pipelining (RFC 2920, `--pipeline`): when the server offers PIPELINING, MAIL, every
    /// RCPT and DATA (or the BDAT chunks) go out in one write and the replies are matched in
    /// order. Without the offer: a note and one command at a time (with `lax`: pipelined
    /// anyway, and a finding).
    pub pipeline: bool,
    /// Send what the server did not advertise or what the protocol forbids (AUTH or an
    /// extension not offered, pipelining, raw commands, oversize lines, a message over the
    /// SIZE limit), each marked with a `smtp.client.lax-*` finding. Without it these are
    /// refused with a clear failure before anything of them is sent.
    pub lax: bool,
    /// Send the message with BDAT (CHUNKING, RFC 3030) instead of DATA: the content without
    /// dot-stuffing, exactly as given for a raw message, in chunks of `chunk_size`.
    pub chunking: bool,
    /// Octets per BDAT chunk (default 64 KiB).
    pub chunk_size: usize,
    /// An explicit `BODY=`; `None` declares 8BITMIME automatically for 8-bit content when
    /// offered. `BINARYMIME` always goes with BDAT.
    pub body_type: Option<BodyType>,
    /// DSN parameters (RFC 3461).
    pub dsn: DsnOptions,
    /// `SMTPUTF8` on MAIL (RFC 6531); added automatically for a non-ASCII address.
    pub smtputf8: bool,
    /// `REQUIRETLS` on MAIL (RFC 8689; valid over TLS only).
    pub requiretls: bool,
    /// `SIZE=` on MAIL when the server offers SIZE (RFC 1870; default on). A message over the
    /// advertised limit is refused before MAIL either way (unless `lax`).
    pub declare_size: bool,
    /// Extra MAIL FROM parameters, appended as given (`KEY=VALUE` or `KEY`).
    pub mail_params: Vec<String>,
    /// Extra RCPT TO parameters, appended as given to every RCPT.
    pub rcpt_params: Vec<String>,
    /// Stop point without QUIT: the connection is closed there (`--drop-after`).
    pub drop_after: Option<Stage>,
    /// Close the connection right after sending the command of this stage, without reading
    /// its reply (swaks' `--drop-after-send`): what does the server do with a command, or a
    /// message, whose client is gone? `Dot` closes after the final dot (or last BDAT chunk).
    pub drop_after_send: Option<Stage>,
    /// Postfix XCLIENT attributes (`NAME`, `ADDR`, `PORT`, `PROTO`, `HELO`, `LOGIN`,
    /// `DESTADDR`, `DESTPORT`, ...), values as plain text (xtext-encoded when sent). Sent in
    /// one XCLIENT command after EHLO (after TLS when TLS is used); the server answers with a
    /// new 220 greeting and the session goes on with EHLO.
    pub xclient: Vec<(String, String)>,
    /// Send XCLIENT before STARTTLS instead of after it (swaks'
    /// `--xclient-before-starttls`): for servers that take XCLIENT only in plaintext.
    pub xclient_before_tls: bool,
    /// Verbatim command lines to inject (`lax` only).
    pub raw_commands: Vec<RawCommand>,
    /// SMTP smuggling probes, one message per end-of-data variant, instead of the normal
    /// transaction; empty: none. Only against a server the user named (the CLI enforces it).
    pub probe_smuggling: Vec<SmugglingVariant>,
    /// The channel binding type for SCRAM `-PLUS`; `None`: `tls-exporter` on TLS 1.3,
    /// `tls-server-end-point` on TLS 1.2 ([`ChannelBindingData::default_type`]).
    pub channel_binding: Option<ChannelBindingType>,
    /// OAUTHBEARER's `host=` and `port=`: where the client connected (RFC 7628 §3.1).
    pub oauth_target: OAuthTarget,
    /// Whether the TLS layer presents a client certificate (only for the explanation when
    /// EXTERNAL is not offered).
    pub client_certificate: bool,
}

impl Default for ClientOptions {
    /// EHLO as `localhost`, no TLS, no AUTH, no envelope and no message, 30 s per reply,
    /// SIZE declared when offered, 64 KiB BDAT chunks, nothing else.
    fn default() -> Self {
        Self {
            helo_name: "localhost".into(),
            hello: HelloKind::Ehlo,
            implicit_tls: false,
            starttls: false,
            auth: None,
            allow_plaintext_auth: false,
            from: String::new(),
            to: Vec::new(),
            data: None,
            quit_after: None,
            reply_limits: ReplyLimits::default(),
            step_timeout_us: 30_000_000,
            pipeline: false,
            lax: false,
            chunking: false,
            chunk_size: 64 * 1024,
            body_type: None,
            dsn: DsnOptions::default(),
            smtputf8: false,
            requiretls: false,
            declare_size: true,
            mail_params: Vec::new(),
            rcpt_params: Vec::new(),
            drop_after: None,
            drop_after_send: None,
            xclient: Vec::new(),
            xclient_before_tls: false,
            raw_commands: Vec::new(),
            probe_smuggling: Vec::new(),
            channel_binding: None,
            oauth_target: OAuthTarget::default(),
            client_certificate: false,
        }
    }
}

impl ClientOptions {
    /// Checks what can be checked before connecting: options that contradict each other, and
    /// deviations only `lax` allows. The machine refuses to start on an error (its outcome
    /// is a [`FailedStep::Options`] failure); a front end should call this first.
    pub fn validate(&self) -> Result<(), String> {
        if self.chunk_size == 0 {
            return Err("the BDAT chunk size must be at least 1".into());
        }
        let stops = [
            self.quit_after.is_some(),
            self.drop_after.is_some(),
            self.drop_after_send.is_some(),
        ];
        if stops.iter().filter(|s| **s).count() > 1 {
            return Err(
                "give one of quit-after, drop-after or drop-after-send, not several".into(),
            );
        }
        if matches!(self.drop_after_send, Some(Stage::Connect | Stage::Banner)) {
            return Err(
                "nothing is sent at connect or banner: drop-after-send takes first-ehlo, tls, ehlo, auth, mail, rcpt, data or dot (drop-after connect hangs up at once)".into(),
            );
        }
        if self.drop_after_send == Some(Stage::Tls) && !self.starttls {
            return Err("drop-after-send tls needs STARTTLS (--tls)".into());
        }
        if self.drop_after_send == Some(Stage::Auth) && self.auth.is_none() {
            return Err("drop-after-send auth needs AUTH (--auth)".into());
        }
        if !self.raw_commands.is_empty() && !self.lax {
            return Err(
                "raw commands are sent out of the protocol's order: they need --lax".into(),
            );
        }
        if !self.lax
            && let Some(p) = self.dsn.problems().into_iter().next()
        {
            return Err(format!("{p} (--lax sends it anyway)"));
        }
        if self.xclient_before_tls && (self.xclient.is_empty() || !self.starttls) {
            return Err("xclient-before-starttls needs XCLIENT attributes and STARTTLS".into());
        }
        for (name, _) in &self.xclient {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!("XCLIENT attribute name {name:?} is not a word"));
            }
        }
        if !self.probe_smuggling.is_empty() {
            if self.hello == HelloKind::Lhlo {
                return Err("smuggling probes speak SMTP, not LMTP".into());
            }
            if self.to.is_empty() {
                return Err("smuggling probes need a recipient (--to)".into());
            }
            if self.chunking || self.body_type == Some(BodyType::BinaryMime) {
                return Err("smuggling probes use DATA: they exclude BDAT".into());
            }
            let late = |s: Option<Stage>| s.is_some_and(|s| s >= Stage::Mail);
            if late(self.quit_after) || late(self.drop_after) {
                return Err("smuggling probes run whole transactions: stop at auth or earlier, or not at all".into());
            }
            if self.raw_commands.iter().any(|r| r.stage >= Stage::Mail) {
                return Err(
                    "raw commands inside a transaction cannot be combined with smuggling probes"
                        .into(),
                );
            }
        }
        Ok(())
    }
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
    /// One recipient's answer to RCPT.
    RecipientAnswered {
        /// The address.
        to: String,
        /// Whether it was accepted.
        accepted: bool,
        /// The reply.
        reply: Reply,
    },
    /// LMTP: one accepted recipient's reply after the final dot (or BDAT LAST), in RCPT
    /// order.
    RecipientDelivered {
        /// The address.
        to: String,
        /// Whether the message was delivered to it.
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
    /// One BDAT chunk's data went out (after its `BDAT` command line).
    ChunkSent {
        /// Stream offset of the chunk's first data byte.
        offset: u64,
        /// Its length.
        len: usize,
        /// Whether it was `BDAT ... LAST`.
        last: bool,
    },
    /// Why a reply refused (4xx/5xx): its meaning, the refusal it looks like, and what to
    /// check next. Its findings are raised as [`Event::FindingRaised`] too.
    ReplyExplained {
        /// Verb of the command answered, or `None` for the greeting.
        command: Option<&'static str>,
        /// The explanation.
        explanation: Box<Explanation>,
    },
    /// How the server treated one smuggling probe.
    SmugglingProbeResult {
        /// The end-of-data lookalike sent.
        variant: SmugglingVariant,
        /// The verdict.
        verdict: SmugglingVerdict,
        /// The replies after the probe's data: the first, then every reply before the
        /// synchronising EHLO's (the smuggled commands' when the server is vulnerable).
        replies: Vec<Reply>,
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
    /// No reply expected (transient while a reply is handled).
    Idle,
    ExpectGreeting,
    ExpectHelloReply {
        verb: &'static str,
        after_tls: bool,
        after_xclient: bool,
    },
    ExpectStartTlsReply,
    AwaitTls,
    ExpectXclientReply,
    ExpectAuthReply(Box<AuthState>),
    ExpectMailReply,
    ExpectRcptReply {
        index: usize,
    },
    ExpectDataReply,
    /// The reply to the lone dot sent after an unexpected 354 (pipelining, no valid
    /// recipient).
    ExpectDoomedDotReply,
    ExpectDataEndReply,
    /// LMTP: the reply for the accepted recipient `index` (into `ClientOptions::to`).
    ExpectLmtpReply {
        index: usize,
    },
    ExpectBdatReply {
        chunk: usize,
        last: bool,
    },
    ExpectRawReply {
        verb: &'static str,
    },
    ExpectProbeEnd,
    ExpectProbeSync {
        verb: &'static str,
    },
    ExpectQuitReply {
        then: Outcome,
    },
    Done,
}

#[derive(Debug)]
struct AuthState {
    session: ClientSession,
    mechanism: Mechanism,
    /// The client answered a challenge with `*` (cancel) after a SASL error.
    cancelled: Option<String>,
}

/// What to do once a stage's raw commands are answered.
type Then = fn(&mut Client);

/// The SMTP client machine. See the module docs for the call order.
#[derive(Debug)]
pub struct Client {
    opts: ClientOptions,
    state: State,
    /// Replies expected after the one `state` waits for, in order (pipelining).
    queued: VecDeque<State>,
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
    findings: Vec<Finding>,
    finished: bool,
    peer_is_loopback: bool,
    /// Findings raised per kind id, to cap a peer that repeats one deviation forever.
    finding_counts: std::collections::HashMap<&'static str, usize>,
    read_ahead_seen: bool,
    trailing_seen: bool,
    /// Why the options are unusable, if they are.
    invalid: Option<String>,
    /// Raw commands not sent yet.
    raw_pending: Vec<RawCommand>,
    /// The stage whose raw commands are being answered, and what comes after it.
    resume: Option<(&'static [Stage], Then)>,
    xclient_done: bool,
    /// Verb and first reply line of the last successful EHLO/HELO/LHLO.
    hello_verb: &'static str,
    hello_first_line: Vec<u8>,
    /// Whether transactions are pipelined (decided once, at the first).
    pipelining: Option<bool>,
    /// The transaction in progress.
    txn: Txn,
    /// Smuggling variants not concluded yet, and how many there were.
    probe_queue: VecDeque<SmugglingVariant>,
    probe_total: usize,
    /// Channel binding data of the TLS connection (empty outside TLS).
    channel_binding: ChannelBindingData,
}

/// At most this many findings of one kind are reported per session; the rest are counted and
/// summed up in one note at the end.
pub const MAX_FINDINGS_PER_KIND: usize = 100;

/// RFC 5321 §4.5.3.1.4: a command line, CRLF included (extension parameters may add to it).
const MAX_COMMAND_LINE: usize = 512;

impl Client {
    /// A machine for one session.
    pub fn new(opts: ClientOptions) -> Self {
        let tls = opts.implicit_tls;
        let invalid = opts.validate().err();
        let raw_pending = opts.raw_commands.clone();
        let probe_queue: VecDeque<_> = opts.probe_smuggling.iter().copied().collect();
        Self {
            state: State::ExpectGreeting,
            queued: VecDeque::new(),
            transcript: Transcript::new(),
            input: Vec::new(),
            input_offset: 0,
            outbuf: Vec::new(),
            events: VecDeque::new(),
            tls,
            now: Timestamp(0),
            waiting_since: Timestamp(0),
            caps: None,
            findings: Vec::new(),
            finished: false,
            peer_is_loopback: false,
            finding_counts: std::collections::HashMap::new(),
            read_ahead_seen: false,
            trailing_seen: false,
            invalid,
            raw_pending,
            resume: None,
            xclient_done: false,
            hello_verb: "EHLO",
            hello_first_line: Vec::new(),
            pipelining: None,
            txn: Txn::default(),
            probe_total: probe_queue.len(),
            probe_queue,
            channel_binding: ChannelBindingData::default(),
            opts,
        }
    }

    /// Implicit TLS: the channel binding data of the connection (from the TLS layer), for
    /// SCRAM `-PLUS`. Call before [`Client::start`].
    pub fn set_channel_binding_data(&mut self, data: ChannelBindingData) {
        self.channel_binding = data;
    }

    /// Tells the machine the server is on a loopback address: a password sent in plaintext
    /// then never leaves the machine, so PLAIN and LOGIN without TLS are allowed there.
    pub fn set_peer_is_loopback(&mut self, loopback: bool) {
        self.peer_is_loopback = loopback;
    }

    /// Bytes that go out before the first SMTP byte — a PROXY protocol header from
    /// [`proxy`] — recorded in the transcript and queued for [`Client::poll_transmit`]. Call
    /// it before [`Client::start`].
    pub fn send_preamble(&mut self, now: Timestamp, bytes: &[u8]) {
        self.now = now;
        if bytes.is_empty() {
            return;
        }
        self.transcript
            .record(Direction::ClientToServer, now, self.tls, bytes);
        self.outbuf.extend_from_slice(bytes);
        let what = if bytes.starts_with(b"PROXY ") {
            "PROXY protocol v1 header"
        } else if bytes.starts_with(&proxy::PROXY_V2_SIGNATURE) {
            "PROXY protocol v2 header"
        } else {
            "preamble"
        };
        self.note(&format!(
            "{what} sent before the first SMTP byte ({} octets)",
            bytes.len()
        ));
    }

    /// The connection is up (and, for implicit TLS, the handshake done).
    pub fn start(&mut self, now: Timestamp) {
        self.now = now;
        self.waiting_since = now;
        if let Some(reason) = self.invalid.clone() {
            self.finish(Outcome::Failed {
                step: FailedStep::Options,
                reason,
                reply: None,
            });
            return;
        }
        if self.opts.drop_after == Some(Stage::Connect) {
            self.note("drop-after connect: closing the connection at once, without QUIT");
            self.finish(Outcome::Dropped(Stage::Connect));
            return;
        }
        if self.opts.quit_after == Some(Stage::Connect) {
            // As swaks: `connect` and `banner` are the same point; the greeting is read so
            // QUIT is not sent before the server spoke (that would be pipelining it refuses).
            self.note("quit-after connect: waiting for the banner, then QUIT (as swaks)");
        }
        // Raw commands at `connect` talk before the greeting (a pregreet test); their
        // replies come after it.
        self.send_raw(Stage::Connect);
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
        // The session was ending anyway if a QUIT is among the replies still due.
        let quit_then = std::iter::once(&self.state)
            .chain(self.queued.iter())
            .find_map(|s| match s {
                State::ExpectQuitReply { then } => Some(then.clone()),
                _ => None,
            });
        let state = std::mem::replace(&mut self.state, State::Done);
        if matches!(state, State::ExpectProbeEnd | State::ExpectProbeSync { .. }) {
            self.conclude_probe(probe::Ending::Closed);
        }
        if let Some(then) = quit_then {
            self.finish(then);
            return;
        }
        match state {
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
                let mut reason =
                    format!("the server closed the connection while mailscope waited for {what}");
                if !self.probe_queue.is_empty() {
                    reason.push_str(&format!(
                        "; {} smuggling variant(s) left for a fresh session",
                        self.probe_queue.len()
                    ));
                }
                self.finish(Outcome::Failed {
                    step: FailedStep::ConnectionClosed,
                    reason,
                    reply: None,
                });
            }
        }
    }

    /// The TLS handshake after STARTTLS succeeded, without channel binding data (SCRAM
    /// `-PLUS` is then unavailable); see [`Client::handle_tls_established_with`].
    pub fn handle_tls_established(&mut self, now: Timestamp) {
        self.handle_tls_established_with(now, ChannelBindingData::default());
    }

    /// The TLS handshake after STARTTLS succeeded, with the connection's channel binding
    /// data (`tls-exporter`, `tls-server-end-point`) for SCRAM `-PLUS`.
    pub fn handle_tls_established_with(&mut self, now: Timestamp, data: ChannelBindingData) {
        self.now = now;
        if !matches!(self.state, State::AwaitTls) {
            return;
        }
        self.channel_binding = data;
        self.state = State::Idle;
        self.tls = true;
        self.at_stage(&[Stage::Tls], |c| c.send_hello(true, false));
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
        if let State::ExpectQuitReply { then } = state {
            self.note(&format!("no reply to QUIT within {secs}s; closing"));
            self.finish(then);
            return;
        }
        if matches!(state, State::Done | State::Idle) {
            return;
        }
        if matches!(state, State::ExpectProbeEnd | State::ExpectProbeSync { .. }) {
            self.conclude_probe(probe::Ending::TimedOut);
        }
        let step = failed_step_for(&state);
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
            State::Done | State::AwaitTls | State::Idle => None,
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

    /// Smuggling variants not yet concluded: after a server closed the connection during
    /// the probes, the driver runs these in a fresh session (same options, this list as
    /// [`ClientOptions::probe_smuggling`]).
    pub fn smuggling_remaining(&self) -> Vec<SmugglingVariant> {
        self.probe_queue.iter().copied().collect()
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
        let state = std::mem::replace(&mut self.state, State::Idle);
        let unexpected = matches!(state, State::AwaitTls | State::Done | State::Idle);
        if !unexpected && let Some(next) = self.queued.pop_front() {
            // The next reply due (pipelining); what the handler sends queues behind it.
            self.state = next;
        }
        let command = answered_verb(&state);
        self.push_event(Event::ReplyReceived {
            command,
            reply: reply.clone(),
            offset,
            latency_us: self.now.micros_since(self.waiting_since),
        });
        if matches!(reply.class(), 4 | 5) {
            let mut explanation = explain(&reply, context_for(&state));
            if let State::ExpectAuthReply(auth) = &state
                && matches!(auth.mechanism, Mechanism::XOauth2 | Mechanism::OAuthBearer)
            {
                explanation = explanation.for_bearer_token();
            }
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
                } else {
                    self.at_stage(&[Stage::Connect, Stage::Banner], |c| {
                        c.send_hello(false, false)
                    });
                }
            }
            State::ExpectHelloReply {
                verb,
                after_tls,
                after_xclient,
            } => self.on_hello_reply(verb, after_tls, after_xclient, reply),
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
            State::ExpectXclientReply => {
                if reply.is_positive() {
                    self.note("XCLIENT accepted: the session starts over with EHLO");
                    let tls = self.tls;
                    self.send_hello(tls, true);
                } else {
                    self.fail(FailedStep::Xclient, "XCLIENT was refused", reply);
                }
            }
            State::AwaitTls | State::Done | State::Idle => {
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
            State::ExpectRawReply { verb } => {
                if reply.code == 354 {
                    self.note(&format!(
                        "the server answered 354 to the injected {verb}: what mailscope sends next is message text to it"
                    ));
                }
                if !self.outstanding()
                    && let Some((stages, then)) = self.resume.take()
                {
                    self.at_stage(stages, then);
                }
            }
            State::ExpectMailReply
            | State::ExpectRcptReply { .. }
            | State::ExpectDataReply
            | State::ExpectDoomedDotReply
            | State::ExpectDataEndReply
            | State::ExpectLmtpReply { .. }
            | State::ExpectBdatReply { .. } => self.on_transaction_reply(state, reply),
            State::ExpectProbeEnd => self.on_probe_end(reply),
            State::ExpectProbeSync { verb } => self.on_probe_sync(verb, reply),
            State::ExpectQuitReply { then } => {
                self.state = State::Done;
                self.finish(then);
            }
        }
    }

    fn on_hello_reply(
        &mut self,
        verb: &'static str,
        after_tls: bool,
        after_xclient: bool,
        reply: Reply,
    ) {
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
                        after_xclient,
                    },
                );
                return;
            }
            let step = if after_xclient {
                FailedStep::EhloAfterXclient
            } else if after_tls {
                FailedStep::EhloAfterTls
            } else {
                FailedStep::Ehlo
            };
            self.fail(step, &format!("{verb} was refused"), reply);
            return;
        }
        self.hello_verb = verb;
        self.hello_first_line = reply
            .lines
            .first()
            .map(|l| l.text.clone())
            .unwrap_or_default();
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
        if !after_tls && !after_xclient {
            self.at_stage(&[Stage::FirstEhlo], Client::continue_session);
        } else {
            self.continue_session();
        }
    }

    /// After an EHLO: STARTTLS if wanted, then XCLIENT if wanted, then AUTH or the mail.
    fn continue_session(&mut self) {
        if self.opts.xclient_before_tls && !self.opts.xclient.is_empty() && !self.xclient_done {
            self.send_xclient();
            return;
        }
        if self.opts.starttls && !self.tls {
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
        if !self.opts.xclient.is_empty() && !self.xclient_done {
            self.send_xclient();
            return;
        }
        self.at_stage(&[Stage::Tls, Stage::Ehlo], Client::start_auth_or_mail);
    }

    fn send_xclient(&mut self) {
        self.xclient_done = true;
        let offered: Option<Vec<String>> = self.caps.as_ref().and_then(|c| {
            c.params("XCLIENT")
                .map(|p| p.iter().map(|a| a.to_ascii_uppercase()).collect())
        });
        let names: Vec<String> = self
            .opts
            .xclient
            .iter()
            .map(|(n, _)| n.to_ascii_uppercase())
            .collect();
        match &offered {
            None if !self.opts.lax => {
                self.fail_without_reply(
                    FailedStep::Xclient,
                    "the server does not offer XCLIENT (--lax sends it anyway)",
                );
                return;
            }
            None => self.raise(Finding::new(
                SMTP_CLIENT_LAX_UNADVERTISED,
                "XCLIENT sent although the server does not offer it",
            )),
            Some(list) => {
                for n in names.iter().filter(|n| !list.contains(n)) {
                    if !self.opts.lax {
                        self.fail_without_reply(
                            FailedStep::Xclient,
                            &format!(
                                "the server does not take the XCLIENT attribute {n} (it offers: {}; --lax sends it anyway)",
                                list.join(" ")
                            ),
                        );
                        return;
                    }
                    self.raise(Finding::new(
                        SMTP_CLIENT_LAX_UNADVERTISED,
                        format!("XCLIENT attribute {n} sent although the server does not list it"),
                    ));
                }
            }
        }
        let attrs = names
            .into_iter()
            .zip(self.opts.xclient.iter())
            .map(|(n, (_, v))| (n, xtext(v.as_bytes())))
            .collect();
        self.send_checked(
            Command::Xclient(attrs),
            State::ExpectXclientReply,
            FailedStep::Xclient,
        );
    }

    fn start_auth_or_mail(&mut self) {
        let Some(auth) = self.opts.auth.clone() else {
            self.at_stage(&[Stage::Auth], Client::begin_transactions);
            return;
        };
        let offered = self
            .caps
            .as_ref()
            .map(Capabilities::auth_mechanisms)
            .unwrap_or_default();
        let lax_named = self.opts.lax && auth.mechanism.is_some();
        if offered.is_empty() && !lax_named {
            let hint = if self.opts.lax {
                " (name a mechanism to try it anyway)"
            } else {
                " (--lax tries a named mechanism anyway)"
            };
            self.fail_without_reply(
                FailedStep::Auth,
                &format!("the server offers no AUTH mechanism{hint}"),
            );
            return;
        }
        // Channel binding: inside TLS, with data of the chosen (or default) type.
        let binding = if self.tls {
            self.channel_binding.binding(self.opts.channel_binding)
        } else {
            None
        };
        let (mechanism, explicit) = match auth.mechanism {
            Some(m) => {
                if !offered.iter().any(|o| o == m.name()) {
                    if !self.opts.lax {
                        self.fail_without_reply(
                            FailedStep::Auth,
                            &format!(
                                "the server does not offer AUTH {} (it offers: {}; --lax tries it anyway){}",
                                m.name(),
                                offered.join(" "),
                                self.not_offered_hint(m)
                            ),
                        );
                        return;
                    }
                    self.raise(Finding::new(
                        SMTP_CLIENT_LAX_UNADVERTISED,
                        format!(
                            "AUTH {} tried although the server offers {}",
                            m.name(),
                            if offered.is_empty() {
                                "no AUTH".to_string()
                            } else {
                                offered.join(" ")
                            }
                        ),
                    ));
                }
                (m, true)
            }
            None => {
                match Mechanism::best_of_with(offered.iter().map(String::as_str), binding.is_some())
                {
                    Some(m) => (m, false),
                    None => {
                        self.fail_without_reply(
                        FailedStep::Auth,
                        &format!(
                            "none of the offered mechanisms is supported without a token or a client certificate: {} (name XOAUTH2, OAUTHBEARER or EXTERNAL to use one)",
                            offered.join(" ")
                        ),
                    );
                        return;
                    }
                }
            }
        };
        if mechanism.is_scram_plus() && binding.is_none() {
            let why = if !self.tls {
                "TLS is not on (use --tls or --tls-on-connect)".to_string()
            } else if let Some(t) = self.opts.channel_binding {
                format!("the TLS layer has no {t} data for this connection")
            } else {
                "the TLS layer gave no channel binding data".to_string()
            };
            self.fail_without_reply(
                FailedStep::Auth,
                &format!("AUTH {} needs channel binding: {why}", mechanism.name()),
            );
            return;
        }
        self.push_event(Event::AuthMechanismChosen {
            mechanism,
            offered: offered.clone(),
            explicit,
        });
        if !self.tls {
            if mechanism.sends_password_in_clear()
                && !self.opts.allow_plaintext_auth
                && !self.peer_is_loopback
            {
                let what = if mechanism.is_oauth() {
                    "bearer token"
                } else {
                    "password"
                };
                self.fail_without_reply(
                    FailedStep::Auth,
                    &format!(
                        "refusing to send a {} {what} without TLS to a non-loopback server (use --tls, or --insecure-auth-plaintext)",
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
        // The GS2 channel-binding flag (RFC 5802 §6): p= for -PLUS; for plain SCRAM inside
        // TLS "y" (we could bind, the server did not offer -PLUS), so a server that does
        // support binding detects a downgrade; "n" outside TLS, or when the user chose plain
        // SCRAM although -PLUS is offered (then "y" would be refused, rightly).
        let could_bind = self.tls && !self.channel_binding.is_empty();
        let gs2 = match &binding {
            Some(b) if mechanism.is_scram_plus() => b.clone(),
            _ if mechanism.is_scram() && could_bind => {
                let plus = mechanism.plus().map(Mechanism::name).unwrap_or_default();
                if offered.iter().any(|o| o == plus) {
                    let why = if explicit {
                        "was asked for"
                    } else {
                        "is used (no channel binding data of the chosen type)"
                    };
                    self.note(&format!(
                        "the server offers {plus}, but {} {why}: no channel binding (GS2 flag \"n\")",
                        mechanism.name()
                    ));
                    ChannelBinding::None
                } else {
                    ChannelBinding::NotSupportedByClient
                }
            }
            _ => ChannelBinding::None,
        };
        if let Some(ty) = gs2.binding_type() {
            self.note(&format!(
                "AUTH {}: channel binding {ty} ({} bytes){}",
                mechanism.name(),
                gs2.data().len(),
                if ty == ChannelBindingType::TlsExporter && !self.channel_binding.tls13 {
                    "; over TLS 1.2 tls-exporter is safe only if the server agreed to the extended master secret (RFC 9266 §3), which rustls does not report"
                } else {
                    ""
                }
            ));
        }
        let session = ClientSession::new_with_channel_binding(
            mechanism,
            auth.credentials.clone(),
            &auth.client_nonce,
            gs2,
        )
        .and_then(|s| {
            if mechanism == Mechanism::OAuthBearer {
                s.with_oauth_target(self.opts.oauth_target.clone())
            } else {
                Ok(s)
            }
        });
        let mut session = match session {
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
            // `=` (an empty initial response) hides nothing.
            if !enc.is_empty() {
                redactions.push(Redaction {
                    start,
                    end: line.len(),
                    replacement: format!("<redacted: {}>", msg.redacted),
                });
            }
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
            let refused_before = auth.session.oauth_error().is_some();
            let answer = challenge.and_then(|c| auth.session.step(&c).map_err(|e| e.to_string()));
            if !refused_before && let Some(e) = auth.session.oauth_error() {
                let members: Vec<String> = e
                    .members
                    .iter()
                    .map(|(k, v)| format!("{k} {}", quote(v.as_bytes())))
                    .collect();
                let ack = if auth.mechanism == Mechanism::XOauth2 {
                    "an empty response"
                } else {
                    "^A (AQ==)"
                };
                let detail = if members.is_empty() {
                    "the challenge is not the JSON error object".to_string()
                } else {
                    members.join(", ")
                };
                self.note(&format!(
                    "AUTH {}: the server refused the token ({detail}); acknowledging with {ack}, as the mechanism requires",
                    auth.mechanism.name()
                ));
            }
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
            self.at_stage(&[Stage::Auth], Client::begin_transactions);
        } else {
            let token = auth.session.oauth_error().map(|e| {
                let fields: Vec<String> = ["status", "scope"]
                    .iter()
                    .filter_map(|k| e.get(k).map(|v| format!("{k} {}", quote(v.as_bytes()))))
                    .collect();
                if fields.is_empty() {
                    " (token refused)".to_string()
                } else {
                    format!(" (token refused: {})", fields.join(", "))
                }
            });
            self.fail(
                FailedStep::Auth,
                &format!(
                    "AUTH {} failed{}",
                    auth.mechanism.name(),
                    token.unwrap_or_default()
                ),
                reply,
            );
        }
    }

    /// Why a named mechanism may be missing from the server's list, for the failure reason.
    fn not_offered_hint(&self, m: Mechanism) -> String {
        match m {
            Mechanism::External if !self.opts.client_certificate => {
                "; EXTERNAL authenticates with a TLS client certificate: give --tls-cert and --tls-key (a server offers it only after verifying one)".into()
            }
            Mechanism::External => {
                "; EXTERNAL is offered only to a client whose certificate the server asked for and verified: does the server trust the certificate's CA?".into()
            }
            m if m.is_scram_plus() && !self.tls => {
                "; -PLUS mechanisms are offered inside TLS only (use --tls or --tls-on-connect)"
                    .into()
            }
            _ => String::new(),
        }
    }

    /// The mail transaction, or the smuggling probes instead of it.
    fn begin_transactions(&mut self) {
        if self.probe_queue.is_empty() {
            self.txn = Txn::default();
            self.advance();
        } else {
            if self.opts.data.is_some() {
                self.note("smuggling probes: the given message is not sent; each probe is a message of its own");
            }
            self.begin_probe();
        }
    }

    fn send_hello(&mut self, after_tls: bool, after_xclient: bool) {
        let name = self.opts.helo_name.clone();
        let (cmd, verb) = match self.opts.hello {
            HelloKind::Ehlo => (Command::Ehlo(name), "EHLO"),
            HelloKind::Helo => (Command::Helo(name), "HELO"),
            HelloKind::Lhlo => (Command::Lhlo(name), "LHLO"),
        };
        let step = if after_xclient {
            FailedStep::EhloAfterXclient
        } else if after_tls {
            FailedStep::EhloAfterTls
        } else {
            FailedStep::Ehlo
        };
        self.send_checked(
            cmd,
            State::ExpectHelloReply {
                verb,
                after_tls,
                after_xclient,
            },
            step,
        );
    }

    /// A stage completed: send its raw commands and wait for their replies, then stop there
    /// if asked (`quit_after`, `drop_after`), or go on with `then`.
    fn at_stage(&mut self, stages: &'static [Stage], then: Then) {
        let mut waits = false;
        for &s in stages {
            waits |= self.send_raw(s);
        }
        if waits || self.outstanding() {
            self.resume = Some((stages, then));
            return;
        }
        for &s in stages {
            if self.stop_at(s) {
                return;
            }
        }
        then(self);
    }

    /// Whether the session stops at `stage`; if so, stops (QUIT, or closing).
    fn stop_at(&mut self, stage: Stage) -> bool {
        if self.opts.drop_after == Some(stage) {
            self.note(&format!(
                "drop-after {}: closing the connection without QUIT",
                stage.name()
            ));
            self.finish(Outcome::Dropped(stage));
            return true;
        }
        if self.opts.quit_after != Some(stage) {
            return false;
        }
        if stage == Stage::Data && !self.txn.bdat() {
            self.note("quit-after data: closing the connection without QUIT (QUIT would be message text now)");
            self.finish(Outcome::StoppedAfter(Stage::Data));
        } else {
            self.quit(Outcome::StoppedAfter(stage));
        }
        true
    }

    /// Whether a stop point or raw commands wait at `stage` (a pipelined group ends there).
    fn pauses_at(&self, stage: Stage) -> bool {
        self.opts.quit_after == Some(stage)
            || self.opts.drop_after == Some(stage)
            || self.raw_pending.iter().any(|r| r.stage == stage)
    }

    /// Sends the raw commands for `stage`; returns whether replies to them are due.
    fn send_raw(&mut self, stage: Stage) -> bool {
        if self.raw_pending.iter().all(|r| r.stage != stage) {
            return false;
        }
        // After DATA's 354 the bytes are message text: nothing answers them, so they all go
        // at once. Otherwise one injected command at a time: its replies are read before the
        // next goes (`at_stage` comes back here), so nothing is pipelined that the user did not
        // put on one line (servers such as Postfix 3.9 drop unannounced pipelining).
        let in_data = stage == Stage::Data && !self.txn.bdat();
        let mine: Vec<RawCommand> = if in_data {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.raw_pending)
                .into_iter()
                .partition(|r| r.stage == stage);
            self.raw_pending = rest;
            mine
        } else {
            match self.raw_pending.iter().position(|r| r.stage == stage) {
                Some(i) => vec![self.raw_pending.remove(i)],
                None => Vec::new(),
            }
        };
        let mut waits = false;
        for r in mine {
            let verb = raw_verb(&r.bytes);
            self.raise(Finding::new(
                SMTP_CLIENT_LAX_OUT_OF_ORDER,
                format!("injected after {}: \"{}\"", stage.name(), escape(&r.bytes)),
            ));
            let offset =
                self.transcript
                    .record(Direction::ClientToServer, self.now, self.tls, &r.bytes);
            if !in_data {
                for f in lint_command_line(&r.bytes, offset, Direction::ClientToServer) {
                    self.raise(f);
                }
            }
            self.outbuf.extend_from_slice(&r.bytes);
            self.push_event(Event::CommandSent {
                command: verb,
                offset,
            });
            if !in_data {
                for _ in r.bytes.iter().filter(|&&b| b == b'\n') {
                    self.expect(State::ExpectRawReply { verb });
                    waits = true;
                }
            }
        }
        self.waiting_since = self.now;
        waits
    }

    /// Whether a reply is due.
    fn outstanding(&self) -> bool {
        !matches!(self.state, State::Idle | State::Done) || !self.queued.is_empty()
    }

    /// Expects one more reply, after those already due; or, at the drop-after-send stage,
    /// hangs up instead (the command is already queued for sending).
    fn expect(&mut self, next: State) {
        if self.finished {
            return;
        }
        if let Some(stage) = self.opts.drop_after_send
            && self.sends_stage(&next) == Some(stage)
        {
            self.note(&format!(
                "drop-after-send {}: closing the connection without waiting for the reply",
                stage.name()
            ));
            self.finish(Outcome::Dropped(stage));
            return;
        }
        if matches!(self.state, State::Idle) {
            self.state = next;
        } else {
            self.queued.push_back(next);
        }
    }

    /// The stage whose command was just sent, for a reply state (drop-after-send).
    fn sends_stage(&self, next: &State) -> Option<Stage> {
        let last_hello = |after_tls: bool, after_xclient: bool| {
            if !self.opts.xclient.is_empty() && !self.opts.xclient_before_tls {
                after_xclient
            } else if self.opts.starttls && !self.opts.implicit_tls {
                after_tls
            } else {
                true
            }
        };
        match next {
            State::ExpectHelloReply {
                after_tls,
                after_xclient,
                ..
            } => {
                let last = last_hello(*after_tls, *after_xclient);
                let first = !*after_tls && !*after_xclient;
                match self.opts.drop_after_send {
                    Some(Stage::FirstEhlo) if first => Some(Stage::FirstEhlo),
                    Some(Stage::Ehlo) if last => Some(Stage::Ehlo),
                    _ => None,
                }
            }
            State::ExpectStartTlsReply => Some(Stage::Tls),
            State::ExpectAuthReply(_) => Some(Stage::Auth),
            State::ExpectMailReply => Some(Stage::Mail),
            State::ExpectRcptReply { index } if index + 1 >= self.opts.to.len() => {
                Some(Stage::Rcpt)
            }
            State::ExpectDataReply => Some(Stage::Data),
            State::ExpectDataEndReply
            | State::ExpectBdatReply { last: true, .. }
            | State::ExpectLmtpReply { .. } => Some(Stage::Dot),
            _ => None,
        }
    }

    fn send(&mut self, cmd: Command, next: State) {
        self.send_line(cmd.verb(), cmd.to_bytes(), Vec::new(), next);
    }

    /// Sends a command unless its line is over 512 octets (then refused, or sent with `lax`
    /// and a finding); returns whether it was sent.
    fn send_checked(&mut self, cmd: Command, next: State, step: FailedStep) -> bool {
        let line = cmd.to_bytes();
        if !self.line_fits(cmd.verb(), line.len(), step) {
            return false;
        }
        self.send_line(cmd.verb(), line, Vec::new(), next);
        true
    }

    /// The oversize-line rule for one command line of `len` octets.
    fn line_fits(&mut self, verb: &str, len: usize, step: FailedStep) -> bool {
        if len <= MAX_COMMAND_LINE {
            return true;
        }
        if !self.opts.lax {
            self.fail_without_reply(
                step,
                &format!(
                    "the {verb} command line would be {len} octets, over RFC 5321's {MAX_COMMAND_LINE} (--lax sends it anyway)"
                ),
            );
            return false;
        }
        self.raise(Finding::new(
            SMTP_CLIENT_LAX_OVERSIZE,
            format!("{verb} command line of {len} octets sent on purpose"),
        ));
        true
    }

    fn send_line(
        &mut self,
        verb: &'static str,
        line: Vec<u8>,
        redactions: Vec<Redaction>,
        next: State,
    ) {
        if self.finished {
            // Hung up (drop-after-send): nothing more goes out.
            return;
        }
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
        self.expect(next);
    }

    /// Message bytes (DATA content, a BDAT chunk): recorded and queued, no lint here.
    fn send_bytes(&mut self, bytes: &[u8]) -> u64 {
        let offset = self
            .transcript
            .record(Direction::ClientToServer, self.now, self.tls, bytes);
        self.outbuf.extend_from_slice(bytes);
        self.waiting_since = self.now;
        offset
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
            self.queued.clear();
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

    /// Lints message content sent in one piece at `offset` (DATA).
    fn lint_content(&mut self, content: &[u8], offset: u64) {
        for f in lint_data(
            content,
            offset,
            Direction::ClientToServer,
            self.txn.eight_bit_declared(),
        ) {
            self.raise(f);
        }
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// The verb of an injected line, for events: the first word if it is a known command.
fn raw_verb(bytes: &[u8]) -> &'static str {
    const VERBS: [&str; 18] = [
        "EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY",
        "EXPN", "HELP", "AUTH", "STARTTLS", "XCLIENT", "ETRN", "TURN",
    ];
    let word: Vec<u8> = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .map(u8::to_ascii_uppercase)
        .collect();
    VERBS
        .iter()
        .find(|v| v.as_bytes() == word.as_slice())
        .copied()
        .unwrap_or("RAW")
}

fn context_for(state: &State) -> Context {
    match state {
        State::ExpectGreeting => Context::Greeting,
        State::ExpectHelloReply { .. } => Context::Ehlo,
        State::ExpectStartTlsReply => Context::StartTls,
        State::ExpectAuthReply(_) => Context::Auth,
        State::ExpectMailReply => Context::Mail,
        State::ExpectRcptReply { .. } => Context::Rcpt,
        State::ExpectDataReply => Context::Data,
        State::ExpectBdatReply { last: false, .. } => Context::Data,
        State::ExpectDataEndReply
        | State::ExpectBdatReply { last: true, .. }
        | State::ExpectLmtpReply { .. }
        | State::ExpectProbeEnd => Context::EndOfData,
        State::ExpectQuitReply { .. } => Context::Quit,
        State::ExpectXclientReply
        | State::ExpectRawReply { .. }
        | State::ExpectDoomedDotReply
        | State::ExpectProbeSync { .. }
        | State::AwaitTls
        | State::Done
        | State::Idle => Context::Other,
    }
}

fn answered_verb(state: &State) -> Option<&'static str> {
    match state {
        State::ExpectGreeting => None,
        State::ExpectHelloReply { verb, .. } => Some(verb),
        State::ExpectStartTlsReply => Some("STARTTLS"),
        State::ExpectXclientReply => Some("XCLIENT"),
        State::ExpectAuthReply(_) => Some("AUTH"),
        State::ExpectMailReply => Some("MAIL"),
        State::ExpectRcptReply { .. } => Some("RCPT"),
        State::ExpectDataReply => Some("DATA"),
        State::ExpectBdatReply { .. } => Some("BDAT"),
        State::ExpectDataEndReply
        | State::ExpectDoomedDotReply
        | State::ExpectLmtpReply { .. }
        | State::ExpectProbeEnd => Some("."),
        State::ExpectRawReply { verb } | State::ExpectProbeSync { verb } => Some(verb),
        State::ExpectQuitReply { .. } => Some("QUIT"),
        State::AwaitTls | State::Done | State::Idle => None,
    }
}

fn waiting_for(state: &State) -> String {
    match state {
        State::ExpectGreeting => "the greeting".into(),
        State::AwaitTls => "the TLS handshake".into(),
        State::Done | State::Idle => "nothing".into(),
        State::ExpectProbeSync { verb } => {
            format!("the reply to the {verb} that follows a smuggling probe")
        }
        State::ExpectBdatReply { last: true, .. } => "the reply to BDAT LAST".into(),
        State::ExpectBdatReply { chunk, .. } => format!("the reply to BDAT chunk {}", chunk + 1),
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
            after_xclient: true,
            ..
        } => FailedStep::EhloAfterXclient,
        State::ExpectHelloReply {
            after_tls: false, ..
        } => FailedStep::Ehlo,
        State::ExpectHelloReply {
            after_tls: true, ..
        } => FailedStep::EhloAfterTls,
        State::ExpectStartTlsReply | State::AwaitTls => FailedStep::Tls,
        State::ExpectXclientReply => FailedStep::Xclient,
        State::ExpectAuthReply(_) => FailedStep::Auth,
        State::ExpectMailReply => FailedStep::Mail,
        State::ExpectRcptReply { .. } => FailedStep::Rcpt,
        State::ExpectDataReply | State::ExpectBdatReply { last: false, .. } => FailedStep::Data,
        State::ExpectDataEndReply
        | State::ExpectDoomedDotReply
        | State::ExpectLmtpReply { .. }
        | State::ExpectBdatReply { last: true, .. }
        | State::ExpectProbeEnd
        | State::ExpectProbeSync { .. } => FailedStep::Dot,
        State::ExpectRawReply { .. }
        | State::ExpectQuitReply { .. }
        | State::Done
        | State::Idle => FailedStep::ConnectionClosed,
    }
}

/// `"text"` with the crate's escape grammar.
fn quote(bytes: &[u8]) -> String {
    format!("\"{}\"", escape(bytes))
}
