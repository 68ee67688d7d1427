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
}

macro_rules! registry {
    ($( $(#[$doc:meta])* $name:ident = ($id:literal, $sev:ident, $reference:literal, $summary:literal); )*) => {
        $(
            $(#[$doc])*
            pub static $name: &FindingKind = &FindingKind {
                id: $id,
                severity: Severity::$sev,
                reference: $reference,
                summary: $summary,
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
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            k.id, k.severity, k.reference, k.summary
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
