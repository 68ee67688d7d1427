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
    // -- SMTP server side (what a client did wrong; the sink) --
    // -- SMTP reply explainer (why mail was refused) --
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
