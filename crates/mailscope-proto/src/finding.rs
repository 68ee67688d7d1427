//! Findings: what a peer (or mailscope itself, on request) did that deviates from the
//! protocol or from good practice. Every finding kind lives in the one [`REGISTRY`] below,
//! from which `docs/findings.md` is generated; ids never change once released.

use std::fmt;

use crate::transcript::Direction;

/// How much a finding matters. Ordered: `Info < Warning < Error < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing; not wrong.
    Info,
    /// Allowed or tolerated, but likely to cause trouble with some peers.
    Warning,
    /// A protocol violation: strict peers refuse it.
    Error,
    /// A security problem or a violation that breaks sessions.
    Critical,
}

impl Severity {
    /// Lower-case name, as used in JSON and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// Parses the lower-case name.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One kind of finding: its stable id, default severity, the rule it is about, and a
/// one-line explanation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FindingKind {
    /// Stable dotted id, e.g. `smtp.data.bare-lf`. Users grep for it: never change it.
    pub id: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// Where the rule is written, e.g. `RFC 5321 §2.3.8`.
    pub reference: &'static str,
    /// One line: what it means and why it matters.
    pub summary: &'static str,
    /// How to fix it, where that is not obvious from the summary (empty otherwise).
    pub fix: &'static str,
}

macro_rules! registry {
    (@fix) => { "" };
    (@fix $fix:literal) => { $fix };
    ($( $(#[$doc:meta])* $name:ident = ($id:literal, $sev:ident, $reference:literal, $summary:literal $(, fix: $fix:literal)?); )*) => {
        $(
            $(#[$doc])*
            pub static $name: &FindingKind = &FindingKind {
                id: $id,
                severity: Severity::$sev,
                reference: $reference,
                summary: $summary,
                fix: registry!(@fix $($fix)?),
            };
        )*
        /// Every finding kind mailscope knows, in documentation order.
        pub static REGISTRY: &[&FindingKind] = &[$($name),*];
    };
}

registry! {
    /// A command line ended with LF alone.
    SMTP_COMMAND_BARE_LF = ("smtp.command.bare-lf", Error, "RFC 5321 §2.3.8",
        "A command line ends in a bare LF instead of CRLF; strict servers (qmail, Postfix with smtpd_forbid_bare_newline) refuse or drop the session.");
    /// A command line contains a CR that is not followed by LF.
    SMTP_COMMAND_BARE_CR = ("smtp.command.bare-cr", Error, "RFC 5321 §2.3.8",
        "A command contains a CR not followed by LF; servers disagree on what it means.");
    /// A command line is longer than 512 octets.
    SMTP_COMMAND_TOO_LONG = ("smtp.command.line-too-long", Error, "RFC 5321 §4.5.3.1.4",
        "A command line is longer than 512 octets including CRLF; servers may truncate or refuse it.");
    /// A NUL octet in a command line.
    SMTP_COMMAND_NUL = ("smtp.command.nul", Error, "RFC 5321 §4.1",
        "A command contains a NUL octet, which no SMTP command allows.");
    /// A bare LF in the DATA section.
    SMTP_DATA_BARE_LF = ("smtp.data.bare-lf", Error, "RFC 5321 §2.3.8",
        "The message data contains an LF not preceded by CR; qmail drops the session, Postfix may answer 550 5.5.2, others rewrite it (a smuggling vector).");
    /// A bare CR in the DATA section.
    SMTP_DATA_BARE_CR = ("smtp.data.bare-cr", Error, "RFC 5321 §2.3.8",
        "The message data contains a CR not followed by LF; servers disagree on what it means (a smuggling vector).");
    /// A text line in the DATA section over 998 octets.
    SMTP_DATA_LINE_TOO_LONG = ("smtp.data.line-too-long", Error, "RFC 5322 §2.1.1, RFC 5321 §4.5.3.1.6",
        "A message line is longer than 998 octets (without CRLF); servers may break or refuse it.");
    /// A NUL octet in the DATA section.
    SMTP_DATA_NUL = ("smtp.data.nul", Error, "RFC 5322 §3.5, RFC 5321 §4.5.2",
        "The message data contains a NUL octet, which neither SMTP DATA nor RFC 5322 allows.");
    /// A data line starting with a dot that was sent without dot-stuffing (raw mode).
    SMTP_DATA_UNSTUFFED_DOT = ("smtp.data.unstuffed-dot", Warning, "RFC 5321 §4.5.2",
        "A message line starts with a dot that was not doubled: the server strips it, and a line of a lone dot ends the message early.");
    /// 8-bit octets in DATA without BODY=8BITMIME (or without the server offering it).
    SMTP_DATA_8BIT_WITHOUT_8BITMIME = ("smtp.data.8bit-without-8bitmime", Warning, "RFC 6152 §3, RFC 5321 §2.4",
        "The message contains octets above 127 but was not sent with BODY=8BITMIME (or the server did not offer 8BITMIME).");
    /// The reply lines of a multiline reply carry different codes.
    SMTP_REPLY_CODE_MISMATCH = ("smtp.reply.code-mismatch", Error, "RFC 5321 §4.2.1",
        "The lines of a multiline reply do not all carry the same reply code.");
    /// A reply line ended with LF alone.
    SMTP_REPLY_MISSING_CRLF = ("smtp.reply.missing-crlf", Error, "RFC 5321 §4.2, §2.3.8",
        "A reply line ends in a bare LF instead of CRLF.");
    /// A reply line that is not `code[ -]text`.
    SMTP_REPLY_SYNTAX = ("smtp.reply.syntax", Error, "RFC 5321 §4.2",
        "A reply line is not three digits followed by space, hyphen or the line end.");
    /// A reply line longer than 512 octets.
    SMTP_REPLY_TOO_LONG = ("smtp.reply.line-too-long", Warning, "RFC 5321 §4.5.3.1.5",
        "A reply line is longer than 512 octets including CRLF.");
    /// An enhanced status code whose class differs from the reply code's.
    SMTP_REPLY_ENHANCED_CODE_MISMATCH = ("smtp.reply.enhanced-code-mismatch", Warning, "RFC 3463 §2, RFC 2034 §4",
        "The enhanced status code's class (2/4/5) differs from the reply code's first digit.");
    /// The server sent bytes the client had not asked for yet (before the greeting or unrequested).
    SMTP_REPLY_UNEXPECTED = ("smtp.reply.unexpected", Error, "RFC 5321 §4.3",
        "The server sent a reply no command was waiting for (it talks out of turn, or pipelined replies got out of step).");
    /// AUTH offered on a connection without TLS.
    SMTP_AUTH_OFFERED_WITHOUT_TLS = ("smtp.auth.offered-without-tls", Warning, "RFC 4954 §4, RFC 8314 §3",
        "The server offers AUTH before TLS: passwords can be sent in the clear.");
    /// AUTH used on a connection without TLS.
    SMTP_AUTH_USED_WITHOUT_TLS = ("smtp.auth.used-without-tls", Error, "RFC 4954 §4, RFC 8314 §3",
        "Credentials were sent over a connection without TLS.");
    /// The server said AUTH succeeded before the SASL exchange was complete.
    SMTP_AUTH_PREMATURE_SUCCESS = ("smtp.auth.premature-success", Error, "RFC 4422 §3.6, RFC 4954 §4",
        "The server reported AUTH success before the client had finished the SASL exchange (for SCRAM: without proving it knows the password).");
    /// SCRAM: the server's signature was missing or wrong.
    SMTP_AUTH_SERVER_NOT_VERIFIED = ("smtp.auth.server-not-verified", Critical, "RFC 5802 §5, §9",
        "The SCRAM server signature was wrong or missing: the server did not prove it knows the password (an impostor or a broken server).");
    /// The server does not offer STARTTLS.
    SMTP_STARTTLS_NOT_OFFERED = ("smtp.starttls.not-offered", Warning, "RFC 3207, RFC 8314",
        "The server does not offer STARTTLS: mail and credentials to it travel in the clear.");
    /// Plaintext bytes arrived after the STARTTLS reply, before the TLS handshake.
    SMTP_STARTTLS_READ_AHEAD = ("smtp.starttls.read-ahead", Critical, "RFC 3207 §5, CVE-2011-0411 class",
        "Bytes arrived in plaintext after the 220 reply to STARTTLS; they were discarded. A server or middlebox that does this is open to STARTTLS command injection.");
    /// The EHLO reply lists no extensions.
    SMTP_EHLO_NO_EXTENSIONS = ("smtp.ehlo.no-extensions", Info, "RFC 5321 §4.1.1.1",
        "The server answered EHLO with a single line: it offers no ESMTP extensions.");
    /// The server refused EHLO and the client fell back to HELO.
    SMTP_EHLO_REFUSED = ("smtp.ehlo.refused", Warning, "RFC 5321 §4.1.1.1",
        "The server refused EHLO; the session fell back to HELO and has no ESMTP extensions.");
    /// The server closed the connection without a reply.
    SMTP_CONNECTION_CLOSED = ("smtp.connection.closed", Error, "RFC 5321 §3.8",
        "The server closed the connection while a reply was due (crash, tarpit or a strict server dropping the session).");
    // -- SMTP client options (lax, probes) --
    /// mailscope sent, on purpose (`--lax`), a command or parameter the server did not advertise.
    SMTP_CLIENT_LAX_UNADVERTISED = ("smtp.client.lax-unadvertised", Warning, "RFC 5321 §2.2.2, §4.1.1.11",
        "mailscope sent, because --lax asked for it, a command or ESMTP parameter the server did not advertise (AUTH, PIPELINING, CHUNKING, DSN, SMTPUTF8, REQUIRETLS, XCLIENT...); a refusal that follows may be caused by it.");
    /// mailscope injected verbatim command lines (`--lax` raw commands).
    SMTP_CLIENT_LAX_OUT_OF_ORDER = ("smtp.client.lax-out-of-order", Warning, "RFC 5321 §4.1.4, §3.3",
        "mailscope injected verbatim command lines (--lax raw commands) where the session stood, possibly out of the order RFC 5321 prescribes; the replies to them and to what follows show how the server copes.");
    /// mailscope sent an oversize command line or message on purpose (`--lax`).
    SMTP_CLIENT_LAX_OVERSIZE = ("smtp.client.lax-oversize", Warning, "RFC 5321 §4.5.3.1.4, RFC 1870 §4",
        "mailscope sent, because --lax asked for it, a command line over 512 octets or a message larger than the SIZE limit the server advertised.");
    /// mailscope sent something the protocol forbids in this session on purpose (`--lax`).
    SMTP_CLIENT_LAX_FORBIDDEN = ("smtp.client.lax-forbidden", Warning, "RFC 8689 §4.1, RFC 3461 §4.1, §4.4",
        "mailscope sent, because --lax asked for it, something the protocol forbids here (REQUIRETLS without TLS, NOTIFY=NEVER combined with other values, an ENVID over 100 characters...).");
    /// Smuggling probe: the server executed commands hidden behind an end-of-data lookalike.
    SMTP_SERVER_SMUGGLING_ACCEPTED = ("smtp.server.smuggling-accepted", Critical, "RFC 5321 §4.5.2, §2.3.8; SMTP smuggling (SEC Consult 2023; CVE-2023-51764, -51765, -51766)",
        "The server took a non-standard end-of-data sequence (such as \\n.\\n) as the end of the message and then executed the SMTP commands that followed it in the message data: a second, spoofed message can be smuggled in through any relay that passes the sequence on.");
    /// Smuggling probe: the server ended the data at a lookalike but refused what followed.
    SMTP_SERVER_END_OF_DATA_VARIANT = ("smtp.server.end-of-data-variant", Error, "RFC 5321 §4.5.2, §2.3.8",
        "The server took a non-standard end-of-data sequence as the end of the message (it answered before the real <CRLF>.<CRLF>) but refused the commands that followed: the message was cut short there, and a smuggling attempt is one well-formed command away.");
    // -- IMAP --
    /// The server lets LOGIN (a plaintext password) happen outside TLS.
    IMAP_LOGIN_BEFORE_TLS = ("imap.login-before-tls", Warning, "RFC 9051 §6.2.3, §11.1; RFC 8314 §4",
        "The password was accepted with LOGIN (or a plaintext SASL mechanism) outside TLS: the server allowed it, and anyone on the path can read it.");
    /// The server offers STARTTLS but not LOGINDISABLED before TLS.
    IMAP_LOGINDISABLED_MISSING = ("imap.logindisabled-missing", Warning, "RFC 9051 §6.2.3, §7.2.2",
        "Before TLS the server offers STARTTLS but not LOGINDISABLED: it would accept a plaintext LOGIN on the unencrypted connection.");
    /// The server does not offer STARTTLS on a plaintext connection.
    IMAP_STARTTLS_NOT_OFFERED = ("imap.starttls-not-offered", Warning, "RFC 9051 §6.2.1; RFC 8314 §3",
        "The server's capabilities on the plaintext connection do not include STARTTLS: there is no way to protect the session on this port.");
    /// The capabilities after TLS changed in a way that points at injection or a broken server.
    IMAP_CAPABILITY_CHANGED_AFTER_TLS = ("imap.capability-changed-after-tls", Error, "RFC 9051 §6.2.1; RFC 3501 §6.2.1 (STARTTLS command injection class)",
        "After STARTTLS the server still offers STARTTLS or LOGINDISABLED, or lost authentication mechanisms: a sign of plaintext injection, a middlebox or a misconfigured server.");
    /// Bytes arrived in plaintext after the OK to STARTTLS.
    IMAP_STARTTLS_READ_AHEAD = ("imap.starttls.read-ahead", Critical, "RFC 9051 §11.1, CVE-2011-0411 class",
        "Bytes arrived in plaintext after the tagged OK to STARTTLS; they were discarded. A server or middlebox that does this is open to STARTTLS response injection.");
    /// A response does not follow the IMAP grammar.
    IMAP_RESPONSE_SYNTAX = ("imap.response.syntax", Error, "RFC 9051 §9, RFC 3501 §9",
        "A server response (or the greeting) does not follow the IMAP formal syntax; strict clients fail on it.");
    /// A response line ended with LF alone.
    IMAP_RESPONSE_MISSING_CRLF = ("imap.response.missing-crlf", Error, "RFC 9051 §2.2",
        "A response line ends in a bare LF instead of CRLF.");
    /// A literal's announced length does not match its data.
    IMAP_LITERAL_LENGTH_MISMATCH = ("imap.response.literal-length-mismatch", Error, "RFC 9051 §4.3",
        "A literal's announced octet count does not match the data that follows it (the response continues in the middle of a token): the server lies about its length, and clients disagree on where the response ends.");
    /// A response line or literal exceeds mailscope's limits.
    IMAP_RESPONSE_TOO_LONG = ("imap.response.too-long", Error, "RFC 9051 §4.3, §2.2",
        "A response line or literal exceeds mailscope's limits; the session was stopped.");
    /// The server closed the connection while a response was due.
    IMAP_CONNECTION_CLOSED = ("imap.connection.closed", Error, "RFC 9051 §7.1.5",
        "The server closed the connection while a response was due, without a BYE.");
    // -- POP3 --
    /// A POP3 status line that is neither `+OK` nor `-ERR`.
    POP3_RESPONSE_SYNTAX = ("pop3.response.syntax", Error, "RFC 1939 §3",
        "A POP3 response does not start with the status indicator +OK or -ERR (exactly, in upper case).");
    /// A POP3 status or terminating line ended with LF alone.
    POP3_RESPONSE_MISSING_CRLF = ("pop3.response.missing-crlf", Error, "RFC 1939 §3",
        "A POP3 status line or the terminating '.' line ends in a bare LF instead of CRLF.");
    /// A line of a multi-line POP3 response ended with LF alone.
    POP3_RESPONSE_BARE_LF = ("pop3.response.bare-lf", Warning, "RFC 1939 §3, RFC 5322 §2.3",
        "A line of a multi-line POP3 response (a message, a listing) ends in a bare LF; clients disagree on what it means.");
    /// A POP3 status line longer than 512 octets.
    POP3_RESPONSE_LINE_TOO_LONG = ("pop3.response.line-too-long", Warning, "RFC 2449 §4",
        "A POP3 status line is longer than 512 octets including CRLF.");
    /// A POP3 response over mailscope's hard limits.
    POP3_RESPONSE_TOO_LARGE = ("pop3.response.too-large", Error, "RFC 1939 §3",
        "A POP3 line or response exceeded mailscope's limits; the session was ended.");
    /// The POP3 server sent bytes no command was waiting for.
    POP3_RESPONSE_UNEXPECTED = ("pop3.response.unexpected", Error, "RFC 1939 §3",
        "The POP3 server sent a response no command was waiting for.");
    /// The server does not understand CAPA.
    POP3_CAPA_NOT_SUPPORTED = ("pop3.capa.not-supported", Info, "RFC 2449 §5",
        "The POP3 server refused CAPA: it announces no capabilities, so STLS, SASL and USER support are guesses.");
    /// USER/PASS offered on a connection without TLS.
    POP3_USER_BEFORE_TLS = ("pop3.user-before-tls", Warning, "RFC 2595 §2, RFC 8314 §3",
        "The POP3 server offers USER (plaintext passwords) before TLS: passwords can be sent in the clear.");
    /// The server does not offer STLS.
    POP3_STLS_NOT_OFFERED = ("pop3.stls-not-offered", Warning, "RFC 2595 §4, RFC 8314",
        "The POP3 server does not offer STLS: credentials and mail travel in the clear (unless implicit TLS on 995 is used).");
    /// Plaintext bytes after the +OK to STLS.
    POP3_STLS_READ_AHEAD = ("pop3.stls.read-ahead", Critical, "RFC 2595 §4, CVE-2011-0411 class",
        "Bytes arrived in plaintext after the +OK to STLS; they were discarded. A server or middlebox that does this is open to STARTTLS command injection.");
    /// CAPA after TLS differs from before in ways beyond the expected ones.
    POP3_CAPA_CHANGED_AFTER_TLS = ("pop3.capa-changed-after-tls", Warning, "RFC 2595 §4, RFC 2449 §5",
        "The POP3 capabilities after STLS differ from those before in more than STLS, SASL and USER: a middlebox may be rewriting the plaintext part, or the server is inconsistent.");
    /// Credentials sent over a connection without TLS.
    POP3_AUTH_USED_WITHOUT_TLS = ("pop3.auth.used-without-tls", Error, "RFC 2595 §2, RFC 8314 §3",
        "A POP3 password was sent over a connection without TLS.");
    /// SCRAM: the server's signature was wrong or missing.
    POP3_AUTH_SERVER_NOT_VERIFIED = ("pop3.auth.server-not-verified", Critical, "RFC 5802 §5, RFC 5034",
        "The SCRAM server signature was wrong or missing: the POP3 server did not prove it knows the password.");
    /// The server closed the connection while a response was due.
    POP3_CONNECTION_CLOSED = ("pop3.connection.closed", Error, "RFC 1939 §3",
        "The POP3 server closed the connection while a response was due.");
    // -- SMTP server side (what a client did wrong; the sink) --
    /// The client sent bytes before the server's greeting.
    SMTP_CLIENT_PREGREET = ("smtp.client.pregreet", Error, "RFC 5321 §3.1, §4.3.1",
        "The client talked before the server's greeting was sent; spam bots do this, and postscreen-style servers drop such clients.");
    /// A transaction command before EHLO/HELO (or before a new EHLO after STARTTLS).
    SMTP_CLIENT_COMMAND_BEFORE_EHLO = ("smtp.client.command-before-ehlo", Error, "RFC 5321 §4.1.4, RFC 3207 §4.2",
        "The client sent MAIL, RCPT, DATA, BDAT, AUTH or STARTTLS before EHLO/HELO (or after STARTTLS without a new EHLO); the server refuses with 503.");
    /// Commands pipelined although the server did not offer PIPELINING.
    SMTP_CLIENT_PIPELINING_WITHOUT_EXTENSION = ("smtp.client.pipelining-without-extension", Error, "RFC 2920 §3, RFC 5321 §4.3",
        "The client sent a command before the reply to the previous one although the server did not offer PIPELINING; servers that rely on lock-step may lose or misread it.");
    /// A command sent without waiting for the reply to a command that must end a pipelined group.
    SMTP_CLIENT_PIPELINING_AFTER_SYNC = ("smtp.client.pipelining-after-sync-command", Error, "RFC 2920 §3.1, RFC 4954 §4",
        "The client sent more without waiting for the reply to EHLO, HELO, DATA, AUTH, QUIT, NOOP, VRFY or EXPN, which must end a pipelined group.");
    /// Bytes pipelined after STARTTLS, before the TLS handshake (discarded).
    SMTP_CLIENT_STARTTLS_PIPELINED = ("smtp.client.starttls-pipelined", Critical, "RFC 3207 §5, CVE-2011-0411 class",
        "Plaintext bytes followed STARTTLS before the TLS handshake; they were discarded, never executed. A correct client never does this: it is a STARTTLS command injection attempt or a broken client.");
    /// An unknown command.
    SMTP_CLIENT_UNKNOWN_COMMAND = ("smtp.client.unknown-command", Warning, "RFC 5321 §4.2.4",
        "The client sent a command the server does not know; it was answered 500 5.5.1.");
    /// A known command with unusable or irregular arguments.
    SMTP_CLIENT_COMMAND_SYNTAX = ("smtp.client.command-syntax", Error, "RFC 5321 §4.1",
        "A command's arguments do not follow the RFC 5321 grammar (missing or extra arguments, bad parameter values, stray blanks).");
    /// A command out of sequence.
    SMTP_CLIENT_BAD_SEQUENCE = ("smtp.client.bad-sequence", Error, "RFC 5321 §4.1.4, §3.3",
        "The client sent a command out of order (RCPT before MAIL, DATA before RCPT, a nested MAIL, AUTH twice...); it was answered 503 5.5.1.");
    /// `MAIL FROM: <a>`: a blank after the colon.
    SMTP_CLIENT_SPACE_AFTER_COLON = ("smtp.client.space-after-colon", Warning, "RFC 5321 §4.1.1.2, §4.1.1.3",
        "MAIL FROM: or RCPT TO: is followed by a blank before the address; RFC 5321 has none, and strict servers (Postfix with strict_rfc821_envelopes) refuse it.");
    /// A malformed reverse or forward path.
    SMTP_CLIENT_ADDRESS_SYNTAX = ("smtp.client.address-syntax", Error, "RFC 5321 §4.1.2, §4.1.1.2",
        "An envelope address is malformed (no angle brackets, blanks, bad local part or domain, source route, non-ASCII without SMTPUTF8).");
    /// The EHLO/HELO argument is not a domain or address literal.
    SMTP_CLIENT_HELO_SYNTAX = ("smtp.client.helo-syntax", Warning, "RFC 5321 §4.1.1.1, §2.3.5",
        "The EHLO/HELO argument is not a valid domain or address literal; many receivers reject or score such clients.");
    /// An extension (command or parameter) the server did not offer.
    SMTP_CLIENT_EXTENSION_NOT_OFFERED = ("smtp.client.extension-not-offered", Error, "RFC 5321 §2.2.2, §4.1.1.11",
        "The client used a service extension (a command or a MAIL/RCPT parameter) the server did not offer in this session.");
    /// A server limit was reached (recipients, size, commands, line length, errors).
    SMTP_CLIENT_LIMIT_EXCEEDED = ("smtp.client.limit-exceeded", Warning, "RFC 5321 §4.5.3, RFC 1870",
        "The client went over one of the server's limits (recipients per message, message size, line length, commands or errors per session).");
    /// The client closed the connection without QUIT.
    SMTP_CLIENT_NO_QUIT = ("smtp.client.no-quit", Info, "RFC 5321 §4.1.1.10",
        "The client closed the connection without sending QUIT.");
    /// An end-of-data lookalike inside DATA (SMTP smuggling).
    SMTP_DATA_SMUGGLING = ("smtp.data.smuggling", Critical, "RFC 5321 §4.5.2, §2.3.8; SMTP smuggling (2023)",
        "The message data contains a sequence such as \\n.\\n or \\r\\n.\\n that some servers take as the end of data; here it is message text. A relay that passes it on lets a second, spoofed message be smuggled in.");
    /// The message has no Date header.
    MESSAGE_MISSING_DATE = ("message.missing-date", Error, "RFC 5322 §3.6",
        "The message header has no Date field, which RFC 5322 requires (submission servers may add one; relays must not).");
    /// The message has no From header.
    MESSAGE_MISSING_FROM = ("message.missing-from", Error, "RFC 5322 §3.6, RFC 7489 §6.6.1",
        "The message header has no From field, which RFC 5322 requires and DMARC needs.");
    /// The message has no Message-ID header.
    MESSAGE_MISSING_MESSAGE_ID = ("message.missing-message-id", Warning, "RFC 5322 §3.6.4",
        "The message header has no Message-ID field; RFC 5322 says every message SHOULD have one, and spam filters penalise its absence.");
    // -- SMTP reply explainer (why mail was refused) --
    /// The server greylisted the message (deferred a sender it had not seen before).
    SMTP_REPLY_GREYLISTED = ("smtp.reply.greylisted", Info, "RFC 6647",
        "The server greylisted the message: it defers senders it has not seen before, and a retry from the same IP after a few minutes normally succeeds.");
    /// The receiver refused the message because SPF failed.
    SMTP_REPLY_SPF_FAIL = ("smtp.reply.spf-fail", Error, "RFC 7208 §8.4, RFC 7372 (X.7.23, X.7.24)",
        "The receiver refused the message because the sending IP is not authorised by the envelope sender domain's SPF record (or SPF could not be evaluated).");
    /// The receiver refused the message because no acceptable DKIM signature verified.
    SMTP_REPLY_DKIM_FAIL = ("smtp.reply.dkim-fail", Error, "RFC 6376 §6.1, RFC 7372 (X.7.20–X.7.22)",
        "The receiver refused the message because it carries no valid DKIM signature it accepts (missing, broken, or not from the author's domain).");
    /// The receiver refused the message because DMARC (sender authentication) failed.
    SMTP_REPLY_DMARC_FAIL = ("smtp.reply.dmarc-fail", Error, "RFC 7489 §6.6, RFC 7372 (X.7.26)",
        "The receiver refused the message because sender authentication failed: neither SPF nor DKIM passed aligned with the From: domain (DMARC, Gmail/Yahoo/Microsoft sender requirements).");
    /// The sending IP or domain is on a blocklist the receiver uses.
    SMTP_REPLY_BLOCKLISTED = ("smtp.reply.blocklisted", Error, "RFC 5782, RFC 6471",
        "The receiver refused the sender because its IP address (or domain) is on a DNS blocklist or the receiver's own block list.");
    /// The sending IP has no valid reverse DNS.
    SMTP_REPLY_NO_REVERSE_DNS = ("smtp.reply.no-reverse-dns", Error, "RFC 7372 (X.7.25), RFC 8601 §2.7.3",
        "The receiver refused the sender because its IP address has no PTR record, or the PTR name does not resolve back to the IP (forward-confirmed reverse DNS failed).");
    /// The receiver is rate limiting or throttling the sender.
    SMTP_REPLY_RATE_LIMITED = ("smtp.reply.rate-limited", Warning, "RFC 5321 §4.5.4.1, RFC 3463 §3.8",
        "The receiver is limiting how fast it accepts mail from this sender (volume, complaints or reputation); retrying later and slower usually works.");
    /// The recipient's mailbox is full.
    SMTP_REPLY_MAILBOX_FULL = ("smtp.reply.mailbox-full", Warning, "RFC 3463 §3.3 (X.2.2)",
        "The recipient's mailbox is over its quota; only the recipient can free space.");
    /// The recipient address does not exist.
    SMTP_REPLY_UNKNOWN_USER = ("smtp.reply.unknown-user", Error, "RFC 3463 §3.2 (X.1.1), RFC 5321 §4.2.3",
        "The recipient address does not exist at the receiving server.");
    /// The server refused to relay.
    SMTP_REPLY_RELAY_DENIED = ("smtp.reply.relay-denied", Error, "RFC 5321 §3.6.2, RFC 2505 §2",
        "The server is not the destination for the recipient's domain and refuses to relay for an unauthenticated client.");
    /// The server requires TLS first.
    SMTP_REPLY_TLS_REQUIRED = ("smtp.reply.tls-required", Error, "RFC 3207 §4, RFC 4954 §6 (X.7.11), RFC 8689 (X.7.30)",
        "The server refused because the connection is not encrypted: it requires STARTTLS (or implicit TLS) first.");
    /// The server requires authentication first.
    SMTP_REPLY_AUTH_REQUIRED = ("smtp.reply.auth-required", Error, "RFC 4954 §6 (530 5.7.0)",
        "The server requires the client to authenticate (AUTH) before it accepts this command.");
    /// Authentication was refused.
    SMTP_REPLY_AUTH_FAILED = ("smtp.reply.auth-failed", Error, "RFC 4954 §6 (535 5.7.8), RFC 5248 (X.7.13)",
        "Authentication failed: the credentials, the mechanism or the account were refused.");
    /// The message is too big.
    SMTP_REPLY_MESSAGE_TOO_BIG = ("smtp.reply.message-too-big", Error, "RFC 1870 §6, RFC 3463 §3.4 (X.3.4)",
        "The message is larger than the server (or the mailbox) accepts; compare with the SIZE it advertises.");
    /// The content was judged spam or otherwise refused.
    SMTP_REPLY_CONTENT_REJECTED = ("smtp.reply.content-rejected", Error, "RFC 3463 §3.8 (X.7.1)",
        "The receiver refused the message because of its content (judged spam, phishing or malware, or against its policy).");
    /// The server refused a bare LF.
    SMTP_REPLY_BARE_LF_REFUSED = ("smtp.reply.bare-lf-refused", Error, "RFC 5321 §2.3.8, §4.1.1.4",
        "The server refused the message (or command) because it contains an LF without CR; send CRLF line ends.");
    /// The domain publishes a null MX.
    SMTP_REPLY_NULL_MX = ("smtp.reply.null-mx", Error, "RFC 7505 §4 (X.1.10, X.7.27)",
        "The sender's or recipient's domain publishes a null MX (MX 0 .): it neither accepts mail nor can receive bounces.");
    /// Too many recipients in one transaction.
    SMTP_REPLY_TOO_MANY_RECIPIENTS = ("smtp.reply.too-many-recipients", Warning, "RFC 5321 §4.5.3.1.10, RFC 3463 §3.6 (X.5.3)",
        "The server accepts no more recipients in this transaction; send the rest in another transaction.");
    /// An enhanced status code that is not in the IANA registry.
    SMTP_REPLY_UNKNOWN_ENHANCED_CODE = ("smtp.reply.unknown-enhanced-code", Info, "RFC 3463 §2, RFC 5248 §2 (IANA registry)",
        "The reply carries an enhanced status code that is not registered at IANA (a vendor's own code); its meaning is the vendor's.");
    /// The certificate chain does not lead to a trusted root.
    TLS_CERT_UNKNOWN_ISSUER = ("tls.cert.unknown-issuer", Error, "RFC 5280 §6, RFC 7817",
        "The server's certificate chain does not lead to a trusted root (self-signed, private CA or missing intermediate).");
    /// The certificate does not name the host.
    TLS_CERT_NAME_MISMATCH = ("tls.cert.name-mismatch", Error, "RFC 6125 §6, RFC 7817 §3",
        "The server's certificate is not valid for the name mailscope connected to.");
    /// The certificate has expired or is not yet valid.
    TLS_CERT_EXPIRED = ("tls.cert.expired", Error, "RFC 5280 §4.1.2.5",
        "The server's certificate is outside its validity period.");
    /// Another certificate verification failure.
    TLS_CERT_INVALID = ("tls.cert.invalid", Error, "RFC 5280 §6",
        "The server's certificate failed verification for another reason (see the detail).");
    /// The certificate expires within 30 days.
    TLS_CERT_EXPIRES_SOON = ("tls.cert.expires-soon", Warning, "RFC 5280 §4.1.2.5",
        "The server's certificate expires within 30 days.");

    // -- Probe (mailscope probe) --
    /// The port accepts connections but sends no greeting.
    PROBE_NO_GREETING = ("probe.no-greeting", Warning, "RFC 5321 §3.1, RFC 9051 §7.1, RFC 1939 §4",
        "The port accepts TCP connections but sent no greeting in time (or closed without one): a tarpit, an overloaded server, or another protocol on this port.",
        fix: "Check that the mail service listening on this port is the one meant to, and that it is not throttling this client (postscreen, greet-delay).");
    /// The server greets with a refusal (421 or 554).
    PROBE_GREETING_REFUSED = ("probe.greeting-refused", Warning, "RFC 5321 §3.1, §4.2.3",
        "The server answered the connection with 421 or 554: it refuses sessions from this client right now (load, policy, or a block list).",
        fix: "Read the greeting text; check the server's connection limits, postscreen or DNSBL policy for this client address.");
    /// A submission port that offers no STARTTLS.
    PROBE_SUBMISSION_NO_TLS = ("probe.submission-no-tls", Error, "RFC 8314 §3.3, RFC 6409 §4",
        "The submission port offers no STARTTLS: user credentials and mail can only be sent in the clear.",
        fix: "Enable STARTTLS on the submission service (Postfix: smtpd_tls_security_level=encrypt for port 587), or offer implicit TLS on 465.");
    /// STARTTLS (or implicit TLS) was offered but the handshake failed.
    PROBE_TLS_FAILED = ("probe.tls-failed", Error, "RFC 3207, RFC 8314 §3",
        "The port offers TLS (STARTTLS or implicit TLS) but the TLS handshake failed: clients that insist on TLS cannot use it.",
        fix: "Check the server's certificate and key configuration and that it speaks TLS 1.2 or 1.3.");
    /// The server let an AUTH exchange start before STARTTLS.
    PROBE_AUTH_BEFORE_TLS = ("probe.auth-before-tls", Error, "RFC 4954 §4, RFC 8314 §3",
        "Before STARTTLS the server answered AUTH with a 334 challenge: a client (or a downgrade attacker who strips STARTTLS) can send its password in the clear. The probe cancelled the exchange with `*` and sent no credentials.",
        fix: "Allow AUTH only after TLS (Postfix: smtpd_tls_auth_only = yes; Dovecot: disable_plaintext_auth = yes / auth_allow_cleartext = no).");
    /// MX hosts of one domain differ (STARTTLS, TLS, certificate, reachability).
    PROBE_MX_INCONSISTENT = ("probe.mx-inconsistent", Warning, "RFC 5321 §5.1, RFC 3207",
        "The MX hosts of the domain do not behave alike: a sender gets STARTTLS, a valid certificate or a connection from one and not from another, depending on which it reaches.",
        fix: "Configure every MX host the same way (same TLS settings and certificate coverage), or remove the host that lags behind from the MX set.");
    /// A submission port took MAIL FROM before STARTTLS and AUTH.
    PROBE_MAIL_BEFORE_TLS = ("probe.mail-before-tls", Warning, "RFC 8314 §3.3, RFC 6409 §4.3",
        "On a submission port the server accepted MAIL FROM before STARTTLS and before AUTH: TLS is not enforced, and unauthenticated submission may be possible. The probe sent RSET at once.",
        fix: "Require TLS and authentication on the submission port (Postfix master.cf: -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject).");

    // -- SPF (mailscope spf, check) --
    /// The domain publishes no SPF record.
    SPF_RECORD_NONE = ("spf.record.none", Warning, "RFC 7208 §4.5",
        "The domain publishes no SPF record (no TXT record starting with v=spf1): receivers get the result none and cannot tell its mail from forgeries.",
        fix: "Publish one TXT record such as \"v=spf1 mx -all\" listing every host that sends mail for the domain.");
    /// More than one SPF record at one name.
    SPF_RECORD_MULTIPLE = ("spf.record.multiple", Error, "RFC 7208 §4.5, §3.2",
        "The name has more than one TXT record starting with v=spf1: every receiver answers permerror.",
        fix: "Merge the records into one TXT record (one v=spf1, all mechanisms, one all).");
    /// A term of the record does not follow the SPF syntax.
    SPF_RECORD_SYNTAX = ("spf.record.syntax", Error, "RFC 7208 §4.6, §12",
        "The SPF record has a syntax error: every receiver answers permerror, as if the record were wrong as a whole.",
        fix: "Correct the term named in the detail; check spelling, the : or = after a name and CIDR lengths (ip4 up to /32, ip6 up to /128).");
    /// More than 10 DNS-querying terms.
    SPF_RECORD_TOO_MANY_LOOKUPS = ("spf.record.too-many-lookups", Error, "RFC 7208 §4.6.4",
        "Evaluating the record takes more than 10 DNS-querying terms (include, a, mx, ptr, exists, redirect, counted through every include): receivers answer permerror.",
        fix: "Replace a and mx terms by ip4:/ip6: ranges, drop includes of services you no longer use, or ask a provider for a flatter include.");
    /// More than 2 void look-ups.
    SPF_RECORD_VOID_LOOKUPS = ("spf.record.void-lookups", Error, "RFC 7208 §4.6.4",
        "More than 2 DNS-querying terms get an empty answer (NXDOMAIN or no records): receivers answer permerror.",
        fix: "Remove the terms that point at names without records (old includes, a:/mx: of retired hosts).");
    /// The ptr mechanism is used.
    SPF_MECHANISM_PTR = ("spf.mechanism.ptr", Warning, "RFC 7208 §5.5",
        "The record uses ptr, which RFC 7208 says not to use: it is slow, unreliable (reverse DNS of other networks) and some receivers ignore it.",
        fix: "Replace ptr by ip4:/ip6: ranges or a: of the sending hosts.");
    /// +all authorises every address.
    SPF_RECORD_PLUS_ALL = ("spf.record.plus-all", Error, "RFC 7208 §5.1, §10.1",
        "The record ends in +all (or all): every host on the Internet may send mail as this domain, which makes SPF useless and invites forgeries.",
        fix: "End the record with -all (or ~all while you check that every sender is listed).");
    /// ?all or no all: neutral for unlisted senders.
    SPF_RECORD_NEUTRAL_ALL = ("spf.record.neutral-all", Info, "RFC 7208 §5.1, §4.7",
        "The record ends in ?all or has neither all nor redirect: unlisted senders get neutral, which receivers treat like no SPF at all.",
        fix: "End the record with ~all or -all once every sender is listed.");
    /// The deprecated SPF RR type 99 is still published.
    SPF_RECORD_SPF_RR_TYPE = ("spf.record.spf-rr-type", Warning, "RFC 7208 §3.1, §14.1",
        "The domain publishes a record of the SPF type (99), which RFC 7208 removed: receivers only read TXT, so the two drift apart.",
        fix: "Delete the type-99 SPF record and keep only the TXT record.");
    /// include of a domain without an SPF record.
    SPF_INCLUDE_MISSING = ("spf.include.missing", Error, "RFC 7208 §5.2",
        "An include: names a domain that has no SPF record: receivers answer permerror when they reach it.",
        fix: "Correct the included name (check the provider's documentation) or remove the include.");
    /// include/redirect loop.
    SPF_INCLUDE_LOOP = ("spf.include.loop", Error, "RFC 7208 §4.6.4, §5.2",
        "Includes or redirects form a loop: evaluation runs into the look-up limit and receivers answer permerror.",
        fix: "Remove the include or redirect that points back at a record higher up the chain.");
    /// redirect= next to an all mechanism.
    SPF_RECORD_REDIRECT_WITH_ALL = ("spf.record.redirect-with-all", Warning, "RFC 7208 §6.1",
        "The record has both an all mechanism and redirect=: all always matches, so the redirect is never used.",
        fix: "Remove either the all mechanism or the redirect= modifier.");
    /// redirect= to a domain without an SPF record.
    SPF_REDIRECT_MISSING = ("spf.redirect.missing", Error, "RFC 7208 §6.1",
        "redirect= names a domain that has no SPF record: receivers answer permerror.",
        fix: "Correct the redirect= target or replace it by the mechanisms themselves.");
    /// An mx mechanism names more than 10 mail exchangers.
    SPF_MX_TOO_MANY = ("spf.mx.too-many-names", Error, "RFC 7208 §4.6.4",
        "An mx mechanism finds more than 10 MX records: receivers answer permerror.",
        fix: "List the hosts with ip4:/ip6: instead of mx, or reduce the MX set.");
    /// A DNS error while reading SPF records.
    SPF_DNS_TEMPERROR = ("spf.dns.temperror", Warning, "RFC 7208 §2.6.6, §4.4",
        "A DNS query needed for SPF failed (timeout, SERVFAIL): receivers answer temperror and defer or accept mail unchecked.",
        fix: "Check that the domain's name servers answer for the name in the detail.");
    /// A term uses a macro; its look-ups depend on the message.
    SPF_MECHANISM_MACRO = ("spf.mechanism.macro", Info, "RFC 7208 §7",
        "A term uses macros, so its target depends on the sender, client IP or HELO; it was not followed without --ip.");
    /// The sending IP is not authorised.
    SPF_RESULT_NOT_PERMITTED = ("spf.result.not-permitted", Error, "RFC 7208 §2.6",
        "The given IP address is not authorised to send mail for the domain: receivers that check SPF refuse or junk its mail.",
        fix: "Add the sending host to the record (ip4:/ip6: range, or include: of the service that sends for you) before its -all.");

    // -- DKIM and DMARC (mailscope dkim, dmarc, check) --

    /// No DKIM key at the selector.
    DKIM_KEY_NOT_FOUND = ("dkim.key.not-found", Error, "RFC 6376 §3.6.2.2, §6.1.2",
        "No DKIM key record at SELECTOR._domainkey.DOMAIN: signatures made with this selector fail (permerror).",
        fix: "Publish the public key as a TXT record at SELECTOR._domainkey.DOMAIN, or sign with a selector that is published.");
    /// The key record cannot be parsed.
    DKIM_KEY_SYNTAX = ("dkim.key.syntax", Error, "RFC 6376 §3.6.1",
        "The DKIM key record is malformed (bad tag syntax, wrong v=, p= not base64, or a key that cannot be decoded); verifiers treat it as no key.",
        fix: "Republish the record exactly as your signing software generated it: v=DKIM1; k=rsa; p=BASE64.");
    /// More than one TXT record at a selector.
    DKIM_KEY_MULTIPLE = ("dkim.key.multiple-records", Error, "RFC 6376 §3.6.2.2",
        "More than one TXT record at the selector: which key a verifier uses is undefined, so verification fails at random.",
        fix: "Keep one key record per selector; use a new selector for a new key.");
    /// The key was revoked (empty p=).
    DKIM_KEY_REVOKED = ("dkim.key.revoked", Warning, "RFC 6376 §3.6.1",
        "The key is revoked (empty p=): every signature made with this selector fails.",
        fix: "If mail is still signed with this selector, switch the signer to a published key.");
    /// RSA key under 1024 bits.
    DKIM_KEY_RSA_TOO_SHORT = ("dkim.key.rsa-too-short", Error, "RFC 8301 §3.2",
        "The RSA key is shorter than 1024 bits: verifiers must not accept it (and it can be factored).",
        fix: "Generate a 2048-bit key, publish it under a new selector and switch the signer.");
    /// RSA key of 1024 bits.
    DKIM_KEY_RSA_1024 = ("dkim.key.rsa-1024", Warning, "RFC 8301 §3.2",
        "The RSA key has 1024 bits, the minimum verifiers accept; 2048 bits are recommended.",
        fix: "Rotate to a 2048-bit key under a new selector.");
    /// Key in testing mode (t=y).
    DKIM_KEY_TESTING = ("dkim.key.testing", Warning, "RFC 6376 §3.6.1",
        "The key is flagged t=y (testing): verifiers may treat failures, and some even passes, as if the message were unsigned.",
        fix: "Remove t=y once signing works.");
    /// Key restricted with t=s.
    DKIM_KEY_NO_SUBDOMAINS = ("dkim.key.no-subdomains", Info, "RFC 6376 §3.6.1",
        "The key is flagged t=s: an i= identity in a subdomain of d= is refused.");
    /// h= allows only SHA-1.
    DKIM_KEY_SHA1_ONLY = ("dkim.key.sha1-only", Error, "RFC 8301 §3.1",
        "The key allows only SHA-1 (h=sha1), which verifiers must not accept: every signature fails.",
        fix: "Drop h= (or set h=sha256) and sign with rsa-sha256.");
    /// Unknown tags in the key record.
    DKIM_KEY_UNKNOWN_TAG = ("dkim.key.unknown-tag", Info, "RFC 6376 §3.6.1",
        "The key record carries a tag DKIM does not define; verifiers ignore it (often a typo of a real tag).");
    /// Every selector tried answered with a key.
    DKIM_SELECTOR_WILDCARD = ("dkim.selector.wildcard", Warning, "RFC 6376 §3.6.2.1, RFC 4592",
        "A wildcard answers for every selector: discovery cannot tell real selectors apart, and any selector seems to have a key.",
        fix: "Publish keys at their selectors only; remove the *._domainkey wildcard.");
    /// Discovery found no selector.
    DKIM_SELECTOR_NONE_FOUND = ("dkim.selector.none-found", Info, "RFC 6376 §3.1",
        "None of the common selectors has a key; the domain may still sign with a selector not in the list (read one from a signed message).");
    /// The message has no DKIM-Signature.
    DKIM_MESSAGE_UNSIGNED = ("dkim.message.unsigned", Warning, "RFC 6376 §3.5",
        "The message carries no DKIM-Signature: it cannot pass DMARC through DKIM, only through SPF.");
    /// A DKIM-Signature header field cannot be parsed.
    DKIM_SIGNATURE_SYNTAX = ("dkim.signature.syntax", Error, "RFC 6376 §3.5, §6.1.1",
        "A DKIM-Signature header field is malformed or uses an unsupported version, algorithm or canonicalization; verifiers ignore it.");
    /// Body hash mismatch.
    DKIM_SIGNATURE_BODY_HASH = ("dkim.signature.body-hash-mismatch", Error, "RFC 6376 §3.7, §6.1.3",
        "The body's hash differs from bh=: the body changed after signing (a footer or disclaimer added, line ends or encoding rewritten).",
        fix: "Sign after every step that changes the body (footers, disclaimers, MIME rewriting), or stop the rewriting; relaxed body canonicalization (c=.../relaxed) tolerates whitespace changes only.");
    /// The signature does not verify.
    DKIM_SIGNATURE_MISMATCH = ("dkim.signature.mismatch", Error, "RFC 6376 §3.7, §6.1.3",
        "The body is intact but the signature does not verify: a signed header field changed in transit, or the published key is not the signer's key.",
        fix: "Compare the published key with the signer's private key; find which relay rewrites signed header fields (Subject tags, From rewriting).");
    /// Signature expired (x=).
    DKIM_SIGNATURE_EXPIRED = ("dkim.signature.expired", Error, "RFC 6376 §3.5 (x=)",
        "The signature's expiry time (x=) has passed: verifiers treat it as failed.",
        fix: "Use a longer expiry (or none) in the signer; a message delayed beyond x= cannot verify.");
    /// Signature timestamp in the future.
    DKIM_SIGNATURE_FUTURE = ("dkim.signature.future-timestamp", Warning, "RFC 6376 §3.5 (t=)",
        "The signature's timestamp (t=) is in the future: the signer's clock is wrong; verifiers may ignore the signature.",
        fix: "Synchronise the signing host's clock (NTP).");
    /// Algorithm does not match the key type.
    DKIM_SIGNATURE_ALGORITHM_MISMATCH = ("dkim.signature.algorithm-mismatch", Error, "RFC 6376 §3.3, RFC 8463",
        "The signature's algorithm (a=) does not fit the published key's type (k=), e.g. ed25519-sha256 against an RSA key.",
        fix: "Publish the key that matches the signer's algorithm, under the selector the signer uses.");
    /// rsa-sha1 signature.
    DKIM_SIGNATURE_SHA1 = ("dkim.signature.sha1", Error, "RFC 8301 §3.1",
        "The message is signed with rsa-sha1, which verifiers must not accept.",
        fix: "Configure the signer for rsa-sha256 (or ed25519-sha256 alongside it).");
    /// l= tag present.
    DKIM_SIGNATURE_BODY_LENGTH = ("dkim.signature.body-length", Warning, "RFC 6376 §8.2",
        "The signature covers only the first l= octets of the body: anyone can append content and the signature still verifies (many verifiers ignore such signatures).",
        fix: "Turn off body-length limits in the signer.");
    /// From not over-signed.
    DKIM_SIGNATURE_FROM_NOT_OVERSIGNED = ("dkim.signature.from-not-oversigned", Info, "RFC 6376 §5.4.2, §8.15",
        "From is not listed twice in h=: a second From header field could be added without breaking the signature.",
        fix: "Over-sign From (and Subject, To, Date): list them once more in h= than they occur.");
    /// i= not within d= or violates t=s.
    DKIM_SIGNATURE_AUID = ("dkim.signature.auid-mismatch", Error, "RFC 6376 §3.5 (i=), §3.6.1 (t=s)",
        "The signature's i= identity is not in d=, or is in a subdomain while the key says t=s.");
    /// DMARC record missing.
    DMARC_RECORD_MISSING = ("dmarc.record.missing", Warning, "RFC 7489 §6.1, §6.6.3",
        "No DMARC record for the domain or its organisational domain: receivers apply no policy to mail forged in its name, and large mailbox providers require DMARC from bulk senders.",
        fix: "Publish _dmarc.DOMAIN TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@DOMAIN\", read the reports, then move to p=quarantine and p=reject.");
    /// Several DMARC records.
    DMARC_RECORD_MULTIPLE = ("dmarc.record.multiple", Error, "RFC 7489 §6.6.3",
        "More than one DMARC record at _dmarc.DOMAIN: receivers must then act as if there were none.",
        fix: "Merge them into one record.");
    /// DMARC syntax errors.
    DMARC_RECORD_SYNTAX = ("dmarc.record.syntax", Error, "RFC 7489 §6.3, §6.4",
        "The DMARC record has a syntax error (bad tag value, missing v=DMARC1 first); receivers may discard the whole record.",
        fix: "Correct the tag shown; the record must start with v=DMARC1; tags are separated by semicolons.");
    /// p= missing.
    DMARC_RECORD_NO_POLICY = ("dmarc.record.missing-p", Error, "RFC 7489 §6.3",
        "The record has no p= tag: without a valid rua= receivers ignore it, with one they treat it as p=none.",
        fix: "Add p=none (monitoring), p=quarantine or p=reject.");
    /// Unknown tag.
    DMARC_RECORD_UNKNOWN_TAG = ("dmarc.record.unknown-tag", Info, "RFC 7489 §6.3",
        "The record carries a tag DMARC does not define; receivers ignore it (often a typo).");
    /// p=none.
    DMARC_POLICY_NONE = ("dmarc.policy.none", Warning, "RFC 7489 §6.3 (p=none)",
        "p=none: monitoring only. Mail that fails DMARC is delivered as usual, so the domain is not protected against spoofing.",
        fix: "Once the aggregate reports show all legitimate mail passing, move to p=quarantine, then p=reject.");
    /// sp weaker than p.
    DMARC_POLICY_SUBDOMAIN_WEAKER = ("dmarc.policy.subdomain-weaker", Warning, "RFC 7489 §6.3 (sp=)",
        "sp= asks for less than p=: mail forged from any subdomain is treated more leniently than mail from the domain itself.");
    /// pct < 100.
    DMARC_POLICY_PCT = ("dmarc.policy.pct", Warning, "RFC 7489 §6.3 (pct=), §6.6.4",
        "pct= is below 100: the policy applies only to that share of failing mail; the rest gets the next weaker policy.",
        fix: "Raise pct to 100 (or remove it) once the reports are clean.");
    /// t=y (DMARCbis testing).
    DMARC_POLICY_TESTING = ("dmarc.policy.testing", Warning, "DMARCbis (RFC 9989) §4.7 (t=)",
        "t=y: the domain is testing DMARC; receivers apply the next weaker policy.");
    /// Report URI problems.
    DMARC_REPORT_URI_SYNTAX = ("dmarc.report.uri-syntax", Error, "RFC 7489 §6.2, §6.3 (rua=, ruf=)",
        "A rua= or ruf= entry is not a valid mailto: URI (optionally with a !SIZE limit such as !10m): no reports are sent to it.",
        fix: "Write each destination as mailto:ADDRESS, separated by commas.");
    /// No aggregate reports.
    DMARC_REPORT_NO_RUA = ("dmarc.report.no-rua", Info, "RFC 7489 §7.2",
        "No rua=: the domain gets no aggregate reports, so it cannot see who sends mail in its name or whether its mail passes.");
    /// External destination not authorised.
    DMARC_REPORT_EXTERNAL_UNAUTHORIZED = ("dmarc.report.external-unauthorized", Error, "RFC 7489 §7.1",
        "Reports go to another organisational domain that has not authorised it (no DOMAIN._report._dmarc.DEST record): receivers send it no reports.",
        fix: "Ask the report destination to publish DOMAIN._report._dmarc.DEST TXT \"v=DMARC1\" (report services do this on sign-up).");
    /// DMARC fails for the message.
    DMARC_RESULT_FAIL = ("dmarc.result.fail", Error, "RFC 7489 §4.2, §6.6.2",
        "The message fails DMARC: neither a DKIM signature nor SPF passed for a domain aligned with the From: domain; the policy applies.",
        fix: "Sign with a key of the From: domain (d= equal to or under it), or send through servers listed in the SPF of an aligned MAIL FROM domain.");
    /// SPF passed but not aligned.
    DMARC_ALIGNMENT_SPF = ("dmarc.alignment.spf-not-aligned", Info, "RFC 7489 §3.1.2",
        "SPF passed for the MAIL FROM domain, but that domain is not aligned with From:, so SPF does not count for DMARC.",
        fix: "Use a bounce (Return-Path) domain under the From: domain, or rely on aligned DKIM.");
    /// DKIM passed but not aligned.
    DMARC_ALIGNMENT_DKIM = ("dmarc.alignment.dkim-not-aligned", Warning, "RFC 7489 §3.1.1",
        "A DKIM signature passed, but its d= domain is not aligned with From:, so it does not count for DMARC.",
        fix: "Have the sender (your ESP) sign with d= your domain: publish the key (often a CNAME) they provide.");

    // -- DNSBL (mailscope dnsbl, check) --
    /// The address or domain is listed on a DNS blocklist.
    DNSBL_LISTED = ("dnsbl.listed", Error, "RFC 5782 §2.1, §2.3",
        "The address or domain is listed on a DNS blocklist: receivers that use this list refuse or score mail from it.",
        fix: "Find and stop the cause the list names (its TXT record or web page: a compromised account or PC, an abused web form, an open relay, a dynamic address sending directly), then request removal on the list's web site.");
    /// The list answered with its error code: it refused the query.
    DNSBL_QUERY_REFUSED = ("dnsbl.query-refused", Warning, "RFC 5782 §2.3, the list's usage terms",
        "The blocklist answered with one of its documented error codes instead of a listing: it refused the query (public or open resolver, too many queries, unregistered resolver, wrong query type or a mistyped zone). The answer says nothing about the address or domain.",
        fix: "Query through your own recursive resolver rather than a public one (8.8.8.8, 1.1.1.1, 9.9.9.9), register where the list requires it (Spamhaus DQS, Barracuda), and check the zone name.");
    /// The list answered with an address outside 127.0.0.0/8.
    DNSBL_INVALID_ANSWER = ("dnsbl.invalid-answer", Error, "RFC 5782 §2.3",
        "The blocklist answered with an address outside 127.0.0.0/8: the list is broken or retired and wildcards every name, or the resolver rewrites NXDOMAIN answers; none of its answers can be trusted.",
        fix: "Stop using this zone, or use a resolver that does not rewrite NXDOMAIN answers (ISP resolvers with \"search assist\" do).");
    /// The list answered with a 127.x code it does not document.
    DNSBL_UNDOCUMENTED_CODE = ("dnsbl.undocumented-code", Warning, "RFC 5782 §2.3",
        "The blocklist answered with a 127.0.0.0/8 code that is not among its documented codes; it is counted as a listing, but its meaning is unknown (a new code, or a misconfigured list).");
    /// A list gave no answer, so whether the subject is listed there is unknown.
    DNSBL_NO_ANSWER = ("dnsbl.no-answer", Warning, "RFC 5782 §2.1",
        "A blocklist gave no usable answer (timeout, SERVFAIL, REFUSED): whether the address or domain is listed there is unknown, which is not the same as not listed.",
        fix: "Retry; check that the resolver can reach the list's name servers (--resolver, --dns-timeout) and is allowed to query it.");

    // -- Domain: MX, FCrDNS, MTA-STS, TLS-RPT, BIMI, DANE (mailscope check) --
    /// A DNS look-up a domain check depends on failed.
    DOMAIN_DNS_LOOKUP_FAILED = ("domain.dns.lookup-failed", Warning, "RFC 1035 §4.1.1, RFC 2308",
        "A DNS look-up failed (SERVFAIL, REFUSED or no answer in time); senders that see the same thing queue the mail and retry, and the result of this check is uncertain.",
        fix: "Check that every name server of the zone answers for it (dig +norec @each-ns NAME TYPE) and that the DNSSEC chain, if any, is intact.");
    /// The domain has no MX record; mail goes to its address record.
    MX_IMPLICIT = ("mx.implicit", Warning, "RFC 5321 §5.1",
        "The domain has no MX record, so senders deliver to its own A/AAAA address (implicit MX); that host is often a web server that does not accept mail.",
        fix: "Publish MX records naming the hosts that receive mail, or a null MX (MX 0 .) if the domain receives none.");
    /// Neither MX nor address records.
    MX_NONE = ("mx.none", Error, "RFC 5321 §5.1",
        "The domain has neither MX nor A/AAAA records: mail to it cannot be delivered.",
        fix: "Publish MX records for the hosts that receive mail.");
    /// Null MX: the domain accepts no mail.
    MX_NULL = ("mx.null", Info, "RFC 7505 §3",
        "The domain publishes a null MX (MX 0 .): it declares that it accepts no mail, and senders bounce at once.");
    /// Null MX mixed with other MX records.
    MX_NULL_MIXED = ("mx.null-mixed", Error, "RFC 7505 §3",
        "A null MX is published together with other MX records; senders disagree on what that means.",
        fix: "Publish either the null MX alone or only real MX records.");
    /// An MX record names an alias.
    MX_CNAME = ("mx.cname", Warning, "RFC 2181 §10.3, RFC 5321 §5.1",
        "An MX record names an alias (CNAME) instead of a host name; strict senders refuse it and others make extra look-ups.",
        fix: "Point the MX record at the canonical name the CNAME leads to.");
    /// An MX record names an IP address written as a host name.
    MX_IP_LITERAL = ("mx.ip-literal", Error, "RFC 5321 §5.1, RFC 7505 §1",
        "An MX record names an IP address; MX records must name a host, so senders look the address up as a name and fail.",
        fix: "Give the host a name with an A/AAAA record and put that name in the MX record.");
    /// An MX host has no address.
    MX_HOST_NO_ADDRESS = ("mx.host.no-address", Error, "RFC 5321 §5.1",
        "An MX host has no A or AAAA record: senders cannot deliver to it and fall back to the next MX, or queue the mail.",
        fix: "Add the host's A/AAAA records, or remove the MX record.");
    /// An MX host resolves to an address that cannot be reached from the Internet.
    MX_ADDRESS_NON_PUBLIC = ("mx.address.non-public", Error, "RFC 6890, RFC 1918, RFC 4193",
        "An MX host resolves to a loopback, private, link-local, documentation or otherwise reserved address: senders on the Internet cannot reach it (with loopback, a sender delivers to itself). Correct only in a test or internal-only set-up.",
        fix: "Publish the host's public address in the public DNS (keep internal addresses in an internal view).");
    /// More MX hosts or addresses than mailscope checks.
    MX_TOO_MANY = ("mx.too-many", Info, "RFC 5321 §5.1",
        "The domain has more MX hosts (or an MX host more addresses) than mailscope checks; the rest were not looked at.");
    /// An MX address has no PTR record.
    FCRDNS_NO_PTR = ("fcrdns.no-ptr", Warning, "RFC 1912 §2.1, RFC 8601 §3 (iprev)",
        "An MX address has no reverse DNS (PTR) record; if the host also sends mail, many receivers refuse or distrust it.",
        fix: "Ask whoever controls the address block (the hosting provider) to set a PTR record naming the host, with an A/AAAA record back to the address.");
    /// The PTR name does not lead back to the address.
    FCRDNS_MISMATCH = ("fcrdns.mismatch", Warning, "RFC 8601 §3 (iprev), RFC 1912 §2.1",
        "The reverse DNS name of an MX address does not resolve back to that address: forward-confirmed reverse DNS fails, and receivers checking iprev treat mail from it as suspect.",
        fix: "Make the PTR name's A/AAAA record contain the address, or change the PTR to a name that does.");
    /// No MTA-STS record.
    MTASTS_NONE = ("mta-sts.none", Info, "RFC 8461 §3.1",
        "The domain publishes no MTA-STS record: senders use opportunistic TLS, which an attacker on the path can strip.");
    /// The _mta-sts record is malformed.
    MTASTS_RECORD_INVALID = ("mta-sts.record.invalid", Error, "RFC 8461 §3.1",
        "The _mta-sts TXT record is not a valid v=STSv1 record with an id of 1 to 32 letters and digits; senders ignore MTA-STS for the domain.",
        fix: "Publish exactly one record like `v=STSv1; id=20250101T000000`.");
    /// Several _mta-sts records.
    MTASTS_RECORD_MULTIPLE = ("mta-sts.record.multiple", Error, "RFC 8461 §3.1",
        "More than one v=STSv1 TXT record: senders treat the domain as having no MTA-STS policy.",
        fix: "Keep one _mta-sts record.");
    /// A policy is served but no record announces it.
    MTASTS_RECORD_MISSING = ("mta-sts.record.missing", Warning, "RFC 8461 §3.1",
        "A policy is served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt but no _mta-sts TXT record announces it, so senders never fetch it.",
        fix: "Publish `_mta-sts.DOMAIN TXT \"v=STSv1; id=...\"`, changing the id whenever the policy changes.");
    /// The policy could not be fetched.
    MTASTS_POLICY_UNAVAILABLE = ("mta-sts.policy.unavailable", Error, "RFC 8461 §3.3",
        "The _mta-sts record announces a policy but it cannot be fetched (no address for mta-sts.DOMAIN, connection or TLS failure, timeout); senders without a cached policy deliver as if there were no MTA-STS, and those with one keep using the old policy.",
        fix: "Serve the policy over HTTPS at https://mta-sts.DOMAIN/.well-known/mta-sts.txt, or remove the _mta-sts record.");
    /// The policy host's certificate is not valid.
    MTASTS_POLICY_CERTIFICATE = ("mta-sts.policy.certificate", Error, "RFC 8461 §3.3",
        "The certificate of the policy host does not verify for mta-sts.DOMAIN (untrusted issuer, wrong name, expired); senders refuse the policy.",
        fix: "Serve mta-sts.DOMAIN with a publicly trusted certificate that names it.");
    /// The policy URL did not answer 200.
    MTASTS_POLICY_HTTP_STATUS = ("mta-sts.policy.http-status", Error, "RFC 8461 §3.3",
        "The policy URL answered with a status other than 200; senders do not follow redirects and treat anything else as no policy.",
        fix: "Serve the file itself at /.well-known/mta-sts.txt with status 200 (no redirect).");
    /// The policy is not served as text/plain.
    MTASTS_POLICY_CONTENT_TYPE = ("mta-sts.policy.content-type", Error, "RFC 8461 §3.2",
        "The policy is not served with media type text/plain; strict senders discard it.",
        fix: "Configure the web server to send Content-Type: text/plain for mta-sts.txt.");
    /// The policy is larger than senders accept.
    MTASTS_POLICY_TOO_LARGE = ("mta-sts.policy.too-large", Error, "RFC 8461 §3.3",
        "The policy is larger than 64 KiB; senders may refuse it (the check read only the first 64 KiB).");
    /// The policy does not parse.
    MTASTS_POLICY_SYNTAX = ("mta-sts.policy.syntax", Error, "RFC 8461 §3.2",
        "The policy is malformed (version, mode or max_age missing, repeated or invalid, no mx with mode enforce/testing, or a line that is not `key: value`); senders discard it.",
        fix: "Write the policy as lines `version: STSv1`, `mode: enforce|testing|none`, one `mx:` line per MX host or `*.` pattern, `max_age: SECONDS`.");
    /// max_age is out of range.
    MTASTS_MAX_AGE_INVALID = ("mta-sts.policy.max-age-invalid", Error, "RFC 8461 §3.2",
        "max_age is not a number from 0 to 31557600 (one year); senders discard the policy.");
    /// max_age is short.
    MTASTS_MAX_AGE_SHORT = ("mta-sts.policy.max-age-short", Warning, "RFC 8461 §3.2, §10.2",
        "max_age is below one day: cached policies expire quickly, and an attacker who blocks the refresh downgrades senders to no MTA-STS.",
        fix: "Use a max_age of weeks (e.g. 1209600, two weeks) once the policy is stable.");
    /// mode: testing.
    MTASTS_MODE_TESTING = ("mta-sts.policy.testing", Info, "RFC 8461 §5",
        "The policy is in mode testing: senders report TLS failures (via TLS-RPT) but still deliver without TLS.",
        fix: "Switch to mode: enforce once TLS-RPT reports show no failures.");
    /// mode: none.
    MTASTS_MODE_NONE = ("mta-sts.policy.mode-none", Info, "RFC 8461 §5, §8.3",
        "The policy is in mode none: senders apply no MTA-STS (the way to withdraw a policy).");
    /// An MX host is not allowed by the policy.
    MTASTS_MX_MISMATCH = ("mta-sts.policy.mx-mismatch", Error, "RFC 8461 §4.1",
        "An MX host matches no mx pattern of the policy: with mode enforce, senders that honour MTA-STS refuse to deliver to it.",
        fix: "Add the MX host (or a *.parent pattern covering it) to the policy's mx lines and change the id in the _mta-sts record.");
    /// No TLS-RPT record.
    TLSRPT_NONE = ("tls-rpt.none", Info, "RFC 8460 §3",
        "The domain publishes no TLS-RPT record: senders cannot tell you when TLS to your MX hosts fails (most useful with MTA-STS or DANE).",
        fix: "Publish `_smtp._tls.DOMAIN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@DOMAIN\"`.");
    /// The TLS-RPT record is malformed.
    TLSRPT_RECORD_INVALID = ("tls-rpt.record.invalid", Error, "RFC 8460 §3",
        "The _smtp._tls TXT record is not a valid v=TLSRPTv1 record with at least one rua= destination; senders send no reports.",
        fix: "Publish one record like `v=TLSRPTv1; rua=mailto:tlsrpt@DOMAIN`.");
    /// Several TLS-RPT records.
    TLSRPT_RECORD_MULTIPLE = ("tls-rpt.record.multiple", Error, "RFC 8460 §3",
        "More than one v=TLSRPTv1 TXT record: senders pick none and send no reports.",
        fix: "Merge them into one record (rua= takes a comma-separated list).");
    /// A rua destination is not usable.
    TLSRPT_RUA_INVALID = ("tls-rpt.rua.invalid", Error, "RFC 8460 §3",
        "A rua= destination is not a mailto: address or https: URL; reports to it are not sent.");
    /// No BIMI record.
    BIMI_NONE = ("bimi.none", Info, "draft-brand-indicators-for-message-identification §4",
        "The domain publishes no BIMI record (default._bimi): mailbox providers show no brand logo next to its mail.");
    /// The BIMI record is malformed.
    BIMI_RECORD_INVALID = ("bimi.record.invalid", Error, "draft-brand-indicators-for-message-identification §4.2",
        "The BIMI record is malformed (not starting with v=BIMI1, or a tag that is not tag=value); mailbox providers ignore it.",
        fix: "Publish `default._bimi.DOMAIN TXT \"v=BIMI1; l=https://.../logo.svg; a=https://.../vmc.pem\"`.");
    /// Several BIMI records.
    BIMI_RECORD_MULTIPLE = ("bimi.record.multiple", Error, "draft-brand-indicators-for-message-identification §4.2",
        "More than one v=BIMI1 record at default._bimi: mailbox providers ignore them all.");
    /// The domain declines BIMI.
    BIMI_DECLINED = ("bimi.declined", Info, "draft-brand-indicators-for-message-identification §4.2",
        "The BIMI record is a declination (empty l= and a=): the domain asks that no logo be shown.");
    /// No logo URL.
    BIMI_LOGO_MISSING = ("bimi.logo.missing", Error, "draft-brand-indicators-for-message-identification §4.2",
        "The BIMI record has no logo location (l=); no logo can be shown.",
        fix: "Add l=https://.../logo.svg pointing at an SVG Tiny PS file.");
    /// A URL is not https.
    BIMI_URL_NOT_HTTPS = ("bimi.url.not-https", Error, "draft-brand-indicators-for-message-identification §4.2",
        "A BIMI location (l= logo or a= evidence document) is not an https: URL; mailbox providers only fetch over HTTPS.");
    /// The logo URL does not look like SVG.
    BIMI_LOGO_NOT_SVG = ("bimi.logo.not-svg", Warning, "draft-brand-indicators-for-message-identification §5.2",
        "The logo location does not end in .svg; BIMI logos must be SVG Tiny Portable/Secure files.");
    /// No evidence document.
    BIMI_AUTHORITY_MISSING = ("bimi.authority.missing", Warning, "draft-brand-indicators-for-message-identification §4.2",
        "The BIMI record has no evidence document (a=, a VMC or CMC); Gmail and Apple Mail show no logo without one.",
        fix: "Obtain a Verified Mark Certificate or Common Mark Certificate and publish its URL in a=.");
    /// DMARC is not at enforcement.
    BIMI_DMARC_NOT_ENFORCED = ("bimi.dmarc.not-enforced", Error, "draft-brand-indicators-for-message-identification §3.1",
        "BIMI needs DMARC at enforcement (p=quarantine or p=reject, pct=100, sp not none); without it no mailbox provider shows the logo.",
        fix: "Move the _dmarc record to p=quarantine or p=reject with pct=100 (after checking DMARC reports).");


    /// A TLSA record with usage PKIX-TA(0) or PKIX-EE(1) for SMTP.
    DANE_TLSA_PKIX_USAGE = ("dane.tlsa.pkix-usage", Warning, "RFC 7672 §3.1.3",
        "A TLSA record for SMTP uses PKIX-TA(0) or PKIX-EE(1); SMTP senders treat these as unusable, since MX hosts have no common set of trusted CAs.",
        fix: "Publish DANE-EE(3) records (3 1 1: SHA-256 of the server's public key) or DANE-TA(2) records for the issuing CA instead.");
    /// A TLSA record that cannot be used: unknown parameters or a digest of the wrong length.
    DANE_TLSA_MALFORMED = ("dane.tlsa.malformed", Error, "RFC 6698 §2.1, RFC 7671 §4",
        "A TLSA record has unknown parameters or association data of the wrong length for its matching type, so it can never match.",
        fix: "Regenerate the record from the certificate (e.g. `3 1 1` + SHA-256 of the SubjectPublicKeyInfo) and republish it.");
    /// No usable TLSA record (all are PKIX usages or malformed).
    DANE_TLSA_NO_USABLE = ("dane.tlsa.no-usable", Error, "RFC 7672 §2.2",
        "The MX host publishes TLSA records but none is usable for SMTP; DANE senders treat the host as having unusable TLSA records and may defer mail.",
        fix: "Publish at least one DANE-EE(3) or DANE-TA(2) record that matches the server's certificate.");
    /// TLSA records came back without DNSSEC authentication.
    DANE_TLSA_NOT_AUTHENTICATED = ("dane.tlsa.not-authenticated", Warning, "RFC 7672 §2.2, RFC 6840 §5.7",
        "TLSA records exist but the resolver did not mark them authenticated (no AD bit): the zone is unsigned or the resolver does not validate. DANE senders ignore them.",
        fix: "Sign the zone of the MX host (and of the domain's MX records) with DNSSEC, and check with a validating resolver (--resolver pointing at one you trust).");
    /// No TLSA record matches the certificate chain the server presents.
    DANE_MISMATCH = ("dane.mismatch", Critical, "RFC 7672 §3.1, RFC 7671 §5",
        "No usable TLSA record matches the certificate chain the MX host presents: senders that use DANE will refuse to deliver to it (mail is deferred, then bounced).",
        fix: "Publish a TLSA record matching the current certificate (keep the old and new records side by side during key rollover) or put back the certificate the records describe.");
    /// A DANE-TA record matched, but the chain does not verify up to it or the name is wrong.
    DANE_TA_CHAIN_INVALID = ("dane.ta.chain-invalid", Critical, "RFC 7672 §3.1.2, §3.2",
        "A DANE-TA(2) record matches a certificate in the chain, but the server's certificate does not verify up to it, or is not valid for the MX host name: DANE senders refuse delivery.",
        fix: "Serve the full chain up to the trust anchor and a certificate whose names include the MX host name (or publish DANE-EE(3) records, which need no name check).");
    /// TLSA records are published but the server does not offer STARTTLS (or TLS fails).
    DANE_NO_TLS = ("dane.no-tls", Critical, "RFC 7672 §2.2",
        "Authenticated TLSA records are published for the MX host, but a TLS session could not be made (no STARTTLS, or the handshake failed): DANE senders will not deliver in clear text.",
        fix: "Enable STARTTLS on the MX host, or withdraw the TLSA records.");
    /// The TLSA look-up failed: DANE senders must defer.
    DANE_TLSA_LOOKUP_FAILED = ("dane.tlsa.lookup-failed", Error, "RFC 7672 §2.2",
        "The TLSA look-up failed (SERVFAIL or no answer): a DANE sender cannot tell whether TLSA records exist and must defer mail to this MX host.",
        fix: "Fix the DNSSEC chain or the authoritative servers for the MX host's zone (a bogus signature shows as SERVFAIL from a validating resolver).");
    /// The MX records are not DNSSEC-authenticated: TLSA of the MX hosts is not used.
    DANE_MX_INSECURE = ("dane.mx.insecure", Info, "RFC 7672 §2.2.1",
        "The domain's MX records are not DNSSEC-authenticated, so senders do not use DANE for it even where the MX hosts publish TLSA records.",
        fix: "Sign the domain's zone with DNSSEC if you want DANE to protect mail to it.");

    // -- Open relay test (mailscope relay-test) --
    /// The server accepted a recipient it should have refused to relay to.
    RELAY_OPEN = ("relay.open", Critical, "RFC 5321 §3.6.2, RFC 2505 §2",
        "The server accepted, from an unauthenticated client, a recipient in a domain it is not responsible for: it is an open relay (for this client address). Spammers find open relays within hours, and the server's address ends up on blocklists.",
        fix: "Relay only for authenticated clients and your own networks: in Postfix smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination with a tight mynetworks; in Exim relay_from_hosts and the accept ... hosts = +relay_from_hosts ACL; never accept %-hack, bang-path or source-routed recipients.");
    /// Some patterns could not be tried or gave no clear answer.
    RELAY_INCONCLUSIVE = ("relay.inconclusive", Warning, "RFC 5321 §4.2.5",
        "Some relay patterns gave no clear answer (the connection failed or was dropped, a temporary 4xx reply, a refused sender, or a recipient domain the server could not resolve); the verdict covers only the patterns that were answered.",
        fix: "Retry later, or give --to an address in a real domain you control so that the server's recipient-domain checks do not hide its relay policy.");

}

/// Looks a kind up by id.
pub fn kind_by_id(id: &str) -> Option<&'static FindingKind> {
    REGISTRY.iter().copied().find(|k| k.id == id)
}

/// One finding in one session: what, where (direction and stream offset), and a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule.
    pub kind: &'static FindingKind,
    /// Severity of this occurrence (usually `kind.severity`).
    pub severity: Severity,
    /// Which side's bytes it is about, if it is about bytes.
    pub direction: Option<Direction>,
    /// Offset in that direction's byte stream (see [`crate::transcript`]).
    pub offset: Option<u64>,
    /// Specific detail, e.g. `"2 bare LFs, first at DATA line 1"`.
    pub detail: String,
}

impl Finding {
    /// A finding with the kind's default severity.
    pub fn new(kind: &'static FindingKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            severity: kind.severity,
            direction: None,
            offset: None,
            detail: detail.into(),
        }
    }

    /// Attaches a location.
    pub fn at(mut self, direction: Direction, offset: u64) -> Self {
        self.direction = Some(direction);
        self.offset = Some(offset);
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.kind.id, self.severity)?;
        if let (Some(d), Some(o)) = (self.direction, self.offset) {
            write!(f, " at {} offset {}", d.as_str(), o)?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        write!(f, " ({})", self.kind.reference)
    }
}

/// Renders `docs/findings.md` from the registry.
pub fn render_markdown() -> String {
    let mut s = String::from(
        "# Findings\n\nGenerated from `crates/mailscope-proto/src/finding.rs` (the one registry); \
         do not edit by hand. Run `MAILSCOPE_BLESS=1 cargo test -p mailscope-proto findings_doc` \
         after changing the registry.\n\nIds are stable: once released, an id keeps its meaning.\n\n\
         | id | severity | reference | meaning |\n|---|---|---|---|\n",
    );
    for k in REGISTRY {
        let fix = if k.fix.is_empty() {
            String::new()
        } else {
            format!(" **Fix:** {}", k.fix)
        };
        s.push_str(&format!(
            "| `{}` | {} | {} | {}{} |\n",
            k.id, k.severity, k.reference, k.summary, fix
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for k in REGISTRY {
            assert!(seen.insert(k.id), "duplicate finding id {}", k.id);
            assert!(
                k.id.split('.').count() >= 2
                    && k.id.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'.'
                        || b == b'-'),
                "malformed id {}",
                k.id
            );
            assert!(
                !k.summary.is_empty() && !k.reference.is_empty(),
                "{} lacks docs",
                k.id
            );
            assert_eq!(kind_by_id(k.id), Some(*k));
        }
    }

    #[test]
    fn findings_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/findings.md");
        let want = render_markdown();
        if std::env::var_os("MAILSCOPE_BLESS").is_some() {
            std::fs::write(path, &want).expect("write docs/findings.md");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        for k in REGISTRY {
            assert!(
                have.contains(&format!("`{}`", k.id)),
                "{} is not documented in docs/findings.md",
                k.id
            );
        }
        assert_eq!(
            have, want,
            "docs/findings.md is stale: run MAILSCOPE_BLESS=1 cargo test -p mailscope-proto findings_doc"
        );
    }
}
