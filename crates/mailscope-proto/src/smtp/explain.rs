//! Why was it refused? The reply explainer: turns an SMTP reply into what it means, which
//! well-known refusal it is (greylisting, SPF/DKIM/DMARC, blocklists, rate limits, ...),
//! findings, and what to check next.
//!
//! Three registries, all static and pure:
//! - [`ENHANCED_CODES`]: every enumerated status code of the IANA "SMTP Enhanced Status
//!   Codes" registry (RFC 3463 and the RFCs that added codes since), looked up independently
//!   of the class digit (`X.7.26` answers for `4.7.26` and `5.7.26`).
//! - [`REPLY_CODES`]: the three-digit reply codes of RFC 5321 §4.2.3 and the extensions.
//! - [`RULES`]: well-known refusal texts and codes, one rule per [`Category`].
//!
//! Matching is deliberately simple and fast: the reply text is lower-cased once (ASCII), the
//! enhanced code prefix is removed from every line so phrases that wrap across lines still
//! match, and static patterns are checked with `contains` in table order. A rule scores
//! 3 for a distinctive phrase, 2 for a specific enhanced code, 1 for a weak hint (a bare
//! word like "SPF", or a reply code at a given command); a rule found only by weak hints is
//! reported only when no rule scored 2 or more. Findings come most specific first.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::finding::{
    Finding, FindingKind, SMTP_REPLY_AUTH_FAILED, SMTP_REPLY_AUTH_REQUIRED,
    SMTP_REPLY_BARE_LF_REFUSED, SMTP_REPLY_BLOCKLISTED, SMTP_REPLY_CONTENT_REJECTED,
    SMTP_REPLY_DKIM_FAIL, SMTP_REPLY_DMARC_FAIL, SMTP_REPLY_GREYLISTED, SMTP_REPLY_MAILBOX_FULL,
    SMTP_REPLY_MESSAGE_TOO_BIG, SMTP_REPLY_NO_REVERSE_DNS, SMTP_REPLY_NULL_MX,
    SMTP_REPLY_RATE_LIMITED, SMTP_REPLY_RELAY_DENIED, SMTP_REPLY_SPF_FAIL, SMTP_REPLY_TLS_REQUIRED,
    SMTP_REPLY_TOO_MANY_RECIPIENTS, SMTP_REPLY_UNKNOWN_ENHANCED_CODE, SMTP_REPLY_UNKNOWN_USER,
    Severity,
};
use crate::smtp::reply::{EnhancedCode, Reply};

// ---------------------------------------------------------------------------------------
// Context and class
// ---------------------------------------------------------------------------------------

/// Which command (or moment) the reply answered. Some texts and codes mean different things
/// at different steps: a 535 is a refused AUTH, a 552 after the final dot is a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// The greeting (banner) after connecting.
    Greeting,
    /// EHLO, HELO or LHLO.
    Ehlo,
    /// STARTTLS.
    StartTls,
    /// AUTH and its continuations.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA (the 354 or a refusal of DATA itself).
    Data,
    /// The reply after the final dot (or the last BDAT chunk).
    EndOfData,
    /// QUIT.
    Quit,
    /// Not known (a reply read from a log or a bounce).
    Other,
}

impl Context {
    /// Every context.
    pub const ALL: [Context; 10] = [
        Context::Greeting,
        Context::Ehlo,
        Context::StartTls,
        Context::Auth,
        Context::Mail,
        Context::Rcpt,
        Context::Data,
        Context::EndOfData,
        Context::Quit,
        Context::Other,
    ];

    /// Lower-case name (`greeting`, `ehlo`, `starttls`, `auth`, `mail`, `rcpt`, `data`,
    /// `end-of-data`, `quit`, `other`).
    pub const fn name(self) -> &'static str {
        match self {
            Context::Greeting => "greeting",
            Context::Ehlo => "ehlo",
            Context::StartTls => "starttls",
            Context::Auth => "auth",
            Context::Mail => "mail",
            Context::Rcpt => "rcpt",
            Context::Data => "data",
            Context::EndOfData => "end-of-data",
            Context::Quit => "quit",
            Context::Other => "other",
        }
    }

    /// Parses [`Context::name`] (case-insensitive; `helo`/`lhlo`, `dot`, `bdat` accepted).
    pub fn from_name(s: &str) -> Option<Context> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "greeting" | "banner" | "connect" => Context::Greeting,
            "ehlo" | "helo" | "lhlo" => Context::Ehlo,
            "starttls" | "tls" => Context::StartTls,
            "auth" => Context::Auth,
            "mail" | "mail-from" => Context::Mail,
            "rcpt" | "rcpt-to" => Context::Rcpt,
            "data" => Context::Data,
            "end-of-data" | "dot" | "bdat" => Context::EndOfData,
            "quit" => Context::Quit,
            "other" | "unknown" => Context::Other,
            _ => return None,
        })
    }

    /// How a summary names the step.
    fn phrase(self) -> &'static str {
        match self {
            Context::Greeting => " at the greeting",
            Context::Ehlo => " at EHLO",
            Context::StartTls => " at STARTTLS",
            Context::Auth => " at AUTH",
            Context::Mail => " at MAIL FROM",
            Context::Rcpt => " at RCPT TO",
            Context::Data => " at DATA",
            Context::EndOfData => " after the message data",
            Context::Quit => " at QUIT",
            Context::Other => "",
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the first digit of the reply code says (RFC 5321 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyClass {
    /// 2yz: done.
    Success,
    /// 3yz: go on (354, 334).
    Intermediate,
    /// 4yz: refused for now; the same command may succeed later.
    Transient,
    /// 5yz: refused; repeating it unchanged will not help.
    Permanent,
    /// Anything else (the decoder hands back code 0 for junk lines).
    Invalid,
}

impl ReplyClass {
    /// The class of a reply code.
    pub const fn of(code: u16) -> ReplyClass {
        match code / 100 {
            2 => ReplyClass::Success,
            3 => ReplyClass::Intermediate,
            4 => ReplyClass::Transient,
            5 => ReplyClass::Permanent,
            _ => ReplyClass::Invalid,
        }
    }

    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            ReplyClass::Success => "success",
            ReplyClass::Intermediate => "intermediate",
            ReplyClass::Transient => "transient",
            ReplyClass::Permanent => "permanent",
            ReplyClass::Invalid => "invalid",
        }
    }

    /// True for 4yz and 5yz.
    pub const fn is_refusal(self) -> bool {
        matches!(self, ReplyClass::Transient | ReplyClass::Permanent)
    }
}

impl fmt::Display for ReplyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------
// Enhanced status codes (IANA registry)
// ---------------------------------------------------------------------------------------

/// One enumerated status code of the IANA registry, without its class digit.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCodeInfo {
    /// Subject (the `y` of `X.y.z`).
    pub subject: u16,
    /// Detail (the `z` of `X.y.z`).
    pub detail: u16,
    /// The registry's sample text, e.g. `Multiple authentication checks failed`.
    pub title: &'static str,
    /// One line: what it means.
    pub description: &'static str,
    /// The defining document, e.g. `RFC 7372`.
    pub reference: &'static str,
}

impl EnhancedCodeInfo {
    /// `X.y.z`.
    pub fn code(&self) -> String {
        format!("X.{}.{}", self.subject, self.detail)
    }
}

/// One subject of RFC 3463 §2 (`X.y.*`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SubjectInfo {
    /// The subject digit.
    pub subject: u16,
    /// Its name.
    pub title: &'static str,
    /// Where it is defined.
    pub reference: &'static str,
}

/// The subjects of RFC 3463 §2 (registered at IANA by RFC 5248).
pub static SUBJECTS: &[SubjectInfo] = &[
    SubjectInfo {
        subject: 0,
        title: "Other or undefined status",
        reference: "RFC 3463 §3.1",
    },
    SubjectInfo {
        subject: 1,
        title: "Addressing status",
        reference: "RFC 3463 §3.2",
    },
    SubjectInfo {
        subject: 2,
        title: "Mailbox status",
        reference: "RFC 3463 §3.3",
    },
    SubjectInfo {
        subject: 3,
        title: "Mail system status",
        reference: "RFC 3463 §3.4",
    },
    SubjectInfo {
        subject: 4,
        title: "Network and routing status",
        reference: "RFC 3463 §3.5",
    },
    SubjectInfo {
        subject: 5,
        title: "Mail delivery protocol status",
        reference: "RFC 3463 §3.6",
    },
    SubjectInfo {
        subject: 6,
        title: "Message content or media status",
        reference: "RFC 3463 §3.7",
    },
    SubjectInfo {
        subject: 7,
        title: "Security or policy status",
        reference: "RFC 3463 §3.8",
    },
];

/// Looks a subject up.
pub fn subject_info(subject: u16) -> Option<&'static SubjectInfo> {
    SUBJECTS.iter().find(|s| s.subject == subject)
}

macro_rules! codes {
    ($( ($s:literal, $d:literal, $title:literal, $reference:literal, $desc:literal), )*) => {
        /// Every enumerated code of the IANA "SMTP Enhanced Status Codes" registry (last
        /// updated 2024-12-06), class-independent, in registry order.
        pub static ENHANCED_CODES: &[EnhancedCodeInfo] = &[
            $( EnhancedCodeInfo { subject: $s, detail: $d, title: $title, reference: $reference, description: $desc }, )*
        ];
    };
}

codes! {
    (0, 0, "Other undefined Status", "RFC 3463 §3.1",
        "Only the class of the problem is known; the text after the code is all there is."),
    (1, 0, "Other address status", "RFC 3463 §3.2",
        "Something about an address (sender or recipient) caused this status."),
    (1, 1, "Bad destination mailbox address", "RFC 3463 §3.2",
        "The mailbox (the part left of the @) does not exist at the destination."),
    (1, 2, "Bad destination system address", "RFC 3463 §3.2",
        "The destination domain (right of the @) does not exist or cannot accept mail."),
    (1, 3, "Bad destination mailbox address syntax", "RFC 3463 §3.2",
        "The recipient address is not syntactically valid."),
    (1, 4, "Destination mailbox address ambiguous", "RFC 3463 §3.2",
        "The recipient address matches more than one mailbox at the destination."),
    (1, 5, "Destination address valid", "RFC 3463 §3.2",
        "The recipient address is valid (a positive status)."),
    (1, 6, "Destination mailbox has moved, No forwarding address", "RFC 3463 §3.2",
        "The address was valid once but no longer receives mail, and no new address is known."),
    (1, 7, "Bad sender's mailbox address syntax", "RFC 3463 §3.2",
        "The sender address is not syntactically valid."),
    (1, 8, "Bad sender's system address", "RFC 3463 §3.2",
        "The sender's domain does not exist or cannot accept return mail."),
    (1, 9, "Message relayed to non-compliant mailer", "RFC 3886",
        "The address was valid, but the message went on to a system that cannot report further status."),
    (1, 10, "Recipient address has null MX", "RFC 7505",
        "The recipient's domain publishes a null MX: it accepts no mail."),
    (2, 0, "Other or undefined mailbox status", "RFC 3463 §3.3",
        "The mailbox exists, but something about it caused this status."),
    (2, 1, "Mailbox disabled, not accepting messages", "RFC 3463 §3.3",
        "The mailbox exists but does not accept messages (for now or for good)."),
    (2, 2, "Mailbox full", "RFC 3463 §3.3",
        "The mailbox is over its quota; the recipient has to make room."),
    (2, 3, "Message length exceeds administrative limit", "RFC 3463 §3.3",
        "The message is larger than this mailbox's own size limit."),
    (2, 4, "Mailing list expansion problem", "RFC 3463 §3.3",
        "The address is a mailing list that could not be expanded."),
    (3, 0, "Other or undefined mail system status", "RFC 3463 §3.4",
        "The destination system normally accepts mail, but something about it caused this status."),
    (3, 1, "Mail system full", "RFC 3463 §3.4",
        "The destination system is out of storage."),
    (3, 2, "System not accepting network messages", "RFC 3463 §3.4, RFC 7504",
        "The destination host does not accept mail (shutdown, load, maintenance, or never)."),
    (3, 3, "System not capable of selected features", "RFC 3463 §3.4",
        "The destination does not support features the message asks for."),
    (3, 4, "Message too big for system", "RFC 3463 §3.4",
        "The message is larger than the system's per-message size limit."),
    (3, 5, "System incorrectly configured", "RFC 3463 §3.4",
        "The destination system is configured in a way that does not let it accept this message."),
    (3, 6, "Requested priority was changed", "RFC 6710",
        "Accepted, but not with the priority requested (MT-PRIORITY)."),
    (4, 0, "Other or undefined network or routing status", "RFC 3463 §3.5",
        "A network or routing problem that no other code describes."),
    (4, 1, "No answer from host", "RFC 3463 §3.5",
        "The next host did not answer the connection attempt."),
    (4, 2, "Bad connection", "RFC 3463 §3.5",
        "A connection was made but the transaction could not complete (timeout, poor link)."),
    (4, 3, "Directory server failure", "RFC 3463 §3.5",
        "A directory service (DNS, for one) needed to route the message was unavailable."),
    (4, 4, "Unable to route", "RFC 3463 §3.5",
        "No next hop could be determined from the routing information (DNS)."),
    (4, 5, "Mail system congestion", "RFC 3463 §3.5",
        "The mail system is congested; try later."),
    (4, 6, "Routing loop detected", "RFC 3463 §3.5",
        "The message was forwarded too many times (routing or forwarding loop)."),
    (4, 7, "Delivery time expired", "RFC 3463 §3.5",
        "The message was too old: it stayed queued too long or its time to live ran out."),
    (5, 0, "Other or undefined protocol status", "RFC 3463 §3.6",
        "A protocol problem that no other code describes."),
    (5, 1, "Invalid command", "RFC 3463 §3.6",
        "A command was out of sequence or is not supported."),
    (5, 2, "Syntax error", "RFC 3463 §3.6",
        "A command could not be interpreted (bad syntax or unknown command)."),
    (5, 3, "Too many recipients", "RFC 3463 §3.6",
        "More recipients than the server takes in one transaction; send the rest separately."),
    (5, 4, "Invalid command arguments", "RFC 3463 §3.6",
        "A valid command had invalid or unsupported arguments."),
    (5, 5, "Wrong protocol version", "RFC 3463 §3.6",
        "The two sides could not agree on a protocol version."),
    (5, 6, "Authentication Exchange line is too long", "RFC 4954",
        "An AUTH response line was longer than the server's buffer for the mechanism."),
    (6, 0, "Other or undefined media error", "RFC 3463 §3.7",
        "Something about the content made the message undeliverable."),
    (6, 1, "Media not supported", "RFC 3463 §3.7",
        "The message's media type is not supported on the path."),
    (6, 2, "Conversion required and prohibited", "RFC 3463 §3.7",
        "The content would have to be converted, and conversion is not allowed."),
    (6, 3, "Conversion required but not supported", "RFC 3463 §3.7",
        "The content would have to be converted (e.g. 8bit to 7bit) and no host on the path can."),
    (6, 4, "Conversion with loss performed", "RFC 3463 §3.7",
        "Delivered, but a conversion lost some data."),
    (6, 5, "Conversion Failed", "RFC 3463 §3.7",
        "A required conversion did not succeed."),
    (6, 6, "Message content not available", "RFC 4468",
        "The content could not be fetched from a remote system (BURL)."),
    (6, 7, "Non-ASCII addresses not permitted for that sender/recipient", "RFC 6531",
        "An internationalized (UTF-8) address was used where it is not allowed."),
    (6, 8, "UTF-8 string reply is required, but not permitted by the SMTP client", "RFC 6531",
        "The reply would need UTF-8, which the client did not allow (no SMTPUTF8)."),
    (6, 9, "UTF-8 header message cannot be transferred to one or more recipients", "RFC 6531",
        "A message with UTF-8 header fields cannot go on to some recipients."),
    (6, 10, "Duplicate of X.6.8 (deprecated)", "RFC 6531",
        "Registered by mistake as a duplicate of X.6.8 and deprecated; read it as X.6.8."),
    (7, 0, "Other or undefined security status", "RFC 3463 §3.8",
        "A security or policy reason, not described further (possibly on purpose)."),
    (7, 1, "Delivery not authorized, message refused", "RFC 3463 §3.8",
        "The sender is not allowed to send to this destination (per-host or per-recipient policy)."),
    (7, 2, "Mailing list expansion prohibited", "RFC 3463 §3.8",
        "The sender may not send to this mailing list."),
    (7, 3, "Security conversion required but not possible", "RFC 3463 §3.8",
        "A conversion between secure messaging protocols was needed and not possible."),
    (7, 4, "Security features not supported", "RFC 3463 §3.8",
        "The message asked for security features the delivery protocol cannot support."),
    (7, 5, "Cryptographic failure", "RFC 3463 §3.8",
        "A system allowed to verify or decrypt the message could not (missing or invalid key)."),
    (7, 6, "Cryptographic algorithm not supported", "RFC 3463 §3.8",
        "A system allowed to verify or decrypt the message does not support the algorithm."),
    (7, 7, "Message integrity failure", "RFC 3463 §3.8",
        "The message was corrupted or altered and could not be validated."),
    (7, 8, "Authentication credentials invalid", "RFC 4954",
        "AUTH failed: the credentials are wrong or insufficient."),
    (7, 9, "Authentication mechanism is too weak", "RFC 4954",
        "The AUTH mechanism is weaker than the server's policy allows for this user."),
    (7, 10, "Encryption Needed", "RFC 5248",
        "An external privacy layer (TLS) is needed before this authentication mechanism."),
    (7, 11, "Encryption required for requested authentication mechanism", "RFC 4954",
        "This AUTH mechanism may only be used on an encrypted connection."),
    (7, 12, "A password transition is needed", "RFC 4954",
        "The user must authenticate once with PLAIN before the chosen mechanism works."),
    (7, 13, "User Account Disabled", "RFC 5248",
        "Authentication succeeded but the account is disabled; only its administrator can help."),
    (7, 14, "Trust relationship required", "RFC 5248",
        "The submission server needs a configured trust relationship with a third-party server."),
    (7, 15, "Priority Level is too low", "RFC 6710",
        "The message's priority is below what the server accepts now (MT-PRIORITY)."),
    (7, 16, "Message is too big for the specified priority", "RFC 6710",
        "The message is too large for the priority it was sent with."),
    (7, 17, "Mailbox owner has changed", "RFC 7293",
        "The recipient mailbox changed owner since the date given (RRVS)."),
    (7, 18, "Domain owner has changed", "RFC 7293",
        "The recipient domain changed owner since the date given (RRVS)."),
    (7, 19, "RRVS test cannot be completed", "RFC 7293",
        "The receiver cannot evaluate the Require-Recipient-Valid-Since test."),
    (7, 20, "No passing DKIM signature found", "RFC 7372",
        "The message has no DKIM signature that verifies."),
    (7, 21, "No acceptable DKIM signature found", "RFC 7372",
        "Some DKIM signatures verify, but none is acceptable to the receiver."),
    (7, 22, "No valid author-matched DKIM signature found", "RFC 7372",
        "No verifying DKIM signature is from the domain of the From: address."),
    (7, 23, "SPF validation failed", "RFC 7372",
        "SPF gave \"fail\" for the sending IP, and local policy refuses that."),
    (7, 24, "SPF validation error", "RFC 7372",
        "SPF could not be evaluated (a temporary or permanent error in the record or DNS)."),
    (7, 25, "Reverse DNS validation failed", "RFC 7372",
        "The client IP failed the reverse DNS check (no PTR, or the PTR name does not point back)."),
    (7, 26, "Multiple authentication checks failed", "RFC 7372",
        "More than one authentication check failed (in practice: DMARC, or SPF and DKIM both)."),
    (7, 27, "Sender address has null MX", "RFC 7505",
        "The sender's domain publishes a null MX, so it could not receive a bounce."),
    (7, 28, "Mail flood detected", "draft-levine-mailbomb-header",
        "The message looks like part of a flood of similar abusive messages (used for rate limits)."),
    (7, 29, "ARC validation failure", "RFC 8617",
        "The message's ARC chain did not validate."),
    (7, 30, "REQUIRETLS support required", "RFC 8689",
        "The message demands REQUIRETLS and the next hop cannot provide it."),
}

/// Looks an enhanced code up by subject and detail.
pub fn enhanced_code_info(subject: u16, detail: u16) -> Option<&'static EnhancedCodeInfo> {
    ENHANCED_CODES
        .iter()
        .find(|c| c.subject == subject && c.detail == detail)
}

/// Looks an enhanced code up, whatever its class digit (`4.7.26` and `5.7.26` are X.7.26).
pub fn lookup_enhanced(code: &EnhancedCode) -> Option<&'static EnhancedCodeInfo> {
    enhanced_code_info(code.subject, code.detail)
}

// ---------------------------------------------------------------------------------------
// Reply codes
// ---------------------------------------------------------------------------------------

/// One three-digit reply code.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ReplyCodeInfo {
    /// The code.
    pub code: u16,
    /// What it means.
    pub meaning: &'static str,
    /// Where it is defined.
    pub reference: &'static str,
}

/// The reply codes of RFC 5321 §4.2.3, and those SMTP extensions added.
pub static REPLY_CODES: &[ReplyCodeInfo] = &[
    ReplyCodeInfo {
        code: 211,
        meaning: "System status, or system help reply",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 214,
        meaning: "Help message",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 220,
        meaning: "Service ready",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 221,
        meaning: "Service closing transmission channel",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 235,
        meaning: "Authentication succeeded",
        reference: "RFC 4954 §6",
    },
    ReplyCodeInfo {
        code: 250,
        meaning: "Requested mail action okay, completed",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 251,
        meaning: "User not local; will forward",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 252,
        meaning: "Cannot VRFY user, but will accept message and attempt delivery",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 334,
        meaning: "Server challenge (AUTH continues)",
        reference: "RFC 4954 §4",
    },
    ReplyCodeInfo {
        code: 354,
        meaning: "Start mail input; end with <CRLF>.<CRLF>",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 421,
        meaning: "Service not available, closing transmission channel",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 432,
        meaning: "A password transition is needed",
        reference: "RFC 4954 §6",
    },
    ReplyCodeInfo {
        code: 450,
        meaning: "Requested mail action not taken: mailbox unavailable (busy or temporarily blocked)",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 451,
        meaning: "Requested action aborted: local error in processing",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 452,
        meaning: "Requested action not taken: insufficient system storage (or too many recipients)",
        reference: "RFC 5321 §4.2.3, §4.5.3.1.10",
    },
    ReplyCodeInfo {
        code: 454,
        meaning: "Temporary authentication failure, or TLS not available",
        reference: "RFC 4954 §6, RFC 3207 §4",
    },
    ReplyCodeInfo {
        code: 455,
        meaning: "Server unable to accommodate parameters",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 458,
        meaning: "Unable to queue messages for node (ETRN)",
        reference: "RFC 1985 §5",
    },
    ReplyCodeInfo {
        code: 459,
        meaning: "Node not allowed (ETRN)",
        reference: "RFC 1985 §5",
    },
    ReplyCodeInfo {
        code: 500,
        meaning: "Syntax error, command unrecognized (or command line too long)",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 501,
        meaning: "Syntax error in parameters or arguments",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 502,
        meaning: "Command not implemented",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 503,
        meaning: "Bad sequence of commands",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 504,
        meaning: "Command parameter not implemented",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 521,
        meaning: "Host does not accept mail",
        reference: "RFC 7504 §3",
    },
    ReplyCodeInfo {
        code: 530,
        meaning: "Authentication required (or: must issue a STARTTLS command first)",
        reference: "RFC 4954 §6, RFC 3207 §4",
    },
    ReplyCodeInfo {
        code: 534,
        meaning: "Authentication mechanism is too weak",
        reference: "RFC 4954 §6",
    },
    ReplyCodeInfo {
        code: 535,
        meaning: "Authentication credentials invalid",
        reference: "RFC 4954 §6",
    },
    ReplyCodeInfo {
        code: 538,
        meaning: "Encryption required for requested authentication mechanism",
        reference: "RFC 4954 §6",
    },
    ReplyCodeInfo {
        code: 550,
        meaning: "Requested action not taken: mailbox unavailable (not found, no access, or refused by policy)",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 551,
        meaning: "User not local; please try another path",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 552,
        meaning: "Requested mail action aborted: exceeded storage allocation",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 553,
        meaning: "Requested action not taken: mailbox name not allowed",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 554,
        meaning: "Transaction failed (or, as a greeting: no SMTP service here)",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 555,
        meaning: "MAIL FROM/RCPT TO parameters not recognized or not implemented",
        reference: "RFC 5321 §4.2.3",
    },
    ReplyCodeInfo {
        code: 556,
        meaning: "Domain does not accept mail",
        reference: "RFC 7504 §3",
    },
];

/// Looks a reply code up.
pub fn reply_code_info(code: u16) -> Option<&'static ReplyCodeInfo> {
    REPLY_CODES.iter().find(|c| c.code == code)
}

// ---------------------------------------------------------------------------------------
// Refusal categories and rules
// ---------------------------------------------------------------------------------------

/// A well-known kind of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Greylisting: deferred once on purpose.
    Greylisted,
    /// SPF failed.
    SpfFail,
    /// DKIM failed.
    DkimFail,
    /// DMARC / sender authentication failed.
    DmarcFail,
    /// The sender is on a blocklist.
    Blocklisted,
    /// No valid reverse DNS for the sending IP.
    NoReverseDns,
    /// Rate limited or throttled.
    RateLimited,
    /// The recipient's mailbox is full.
    MailboxFull,
    /// The recipient does not exist.
    UnknownUser,
    /// Relaying denied.
    RelayDenied,
    /// TLS required first.
    TlsRequired,
    /// Authentication required first.
    AuthRequired,
    /// Authentication refused.
    AuthFailed,
    /// The message is too big.
    MessageTooBig,
    /// The content was refused (spam, malware, policy).
    ContentRejected,
    /// A bare LF was refused.
    BareLf,
    /// A null MX domain.
    NullMx,
    /// Too many recipients in one transaction.
    TooManyRecipients,
}

impl Category {
    /// Every category, in rule order.
    pub const ALL: [Category; 18] = [
        Category::BareLf,
        Category::NullMx,
        Category::Greylisted,
        Category::SpfFail,
        Category::DkimFail,
        Category::DmarcFail,
        Category::NoReverseDns,
        Category::Blocklisted,
        Category::RateLimited,
        Category::TooManyRecipients,
        Category::MailboxFull,
        Category::UnknownUser,
        Category::RelayDenied,
        Category::TlsRequired,
        Category::AuthFailed,
        Category::AuthRequired,
        Category::MessageTooBig,
        Category::ContentRejected,
    ];

    /// The finding kind this category reports.
    pub fn kind(self) -> &'static FindingKind {
        match self {
            Category::Greylisted => SMTP_REPLY_GREYLISTED,
            Category::SpfFail => SMTP_REPLY_SPF_FAIL,
            Category::DkimFail => SMTP_REPLY_DKIM_FAIL,
            Category::DmarcFail => SMTP_REPLY_DMARC_FAIL,
            Category::Blocklisted => SMTP_REPLY_BLOCKLISTED,
            Category::NoReverseDns => SMTP_REPLY_NO_REVERSE_DNS,
            Category::RateLimited => SMTP_REPLY_RATE_LIMITED,
            Category::MailboxFull => SMTP_REPLY_MAILBOX_FULL,
            Category::UnknownUser => SMTP_REPLY_UNKNOWN_USER,
            Category::RelayDenied => SMTP_REPLY_RELAY_DENIED,
            Category::TlsRequired => SMTP_REPLY_TLS_REQUIRED,
            Category::AuthRequired => SMTP_REPLY_AUTH_REQUIRED,
            Category::AuthFailed => SMTP_REPLY_AUTH_FAILED,
            Category::MessageTooBig => SMTP_REPLY_MESSAGE_TOO_BIG,
            Category::ContentRejected => SMTP_REPLY_CONTENT_REJECTED,
            Category::BareLf => SMTP_REPLY_BARE_LF_REFUSED,
            Category::NullMx => SMTP_REPLY_NULL_MX,
            Category::TooManyRecipients => SMTP_REPLY_TOO_MANY_RECIPIENTS,
        }
    }

    /// The rule that recognises this category.
    pub fn rule(self) -> &'static Rule {
        // RULES holds one rule per category (a test checks it).
        RULES
            .iter()
            .find(|r| r.category == self)
            .unwrap_or(&RULES[0])
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The finding id without its `smtp.reply.` prefix.
        let id = self.kind().id;
        f.write_str(id.strip_prefix("smtp.reply.").unwrap_or(id))
    }
}

/// A text pattern, matched against the lower-cased reply text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pat {
    /// Anywhere in the text.
    Sub(&'static str),
    /// As a whole word: the characters around it are not ASCII letters or digits (so
    /// `spam` does not match `spamhaus`).
    Word(&'static str),
}

impl Pat {
    /// The pattern text.
    pub const fn text(self) -> &'static str {
        match self {
            Pat::Sub(s) | Pat::Word(s) => s,
        }
    }

    fn is_in(self, hay: &str) -> bool {
        match self {
            Pat::Sub(p) => hay.contains(p),
            Pat::Word(p) => contains_word(hay, p),
        }
    }
}

/// Enhanced codes a rule recognises: class (None: any), subject, detail range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeRange {
    /// 4 or 5 for vendor codes whose meaning depends on the class; None for IANA codes.
    pub class: Option<u8>,
    /// Subject.
    pub subject: u16,
    /// First detail.
    pub first: u16,
    /// Last detail (inclusive).
    pub last: u16,
}

const fn x(subject: u16, detail: u16) -> CodeRange {
    CodeRange {
        class: None,
        subject,
        first: detail,
        last: detail,
    }
}

const fn vendor(class: u8, subject: u16, first: u16, last: u16) -> CodeRange {
    CodeRange {
        class: Some(class),
        subject,
        first,
        last,
    }
}

impl CodeRange {
    fn contains(&self, e: &EnhancedCode) -> bool {
        self.class.is_none_or(|c| c == e.class)
            && self.subject == e.subject
            && (self.first..=self.last).contains(&e.detail)
    }
}

/// How a refusal is recognised and what to do about it.
#[derive(Debug)]
pub struct Rule {
    /// What it recognises.
    pub category: Category,
    /// Distinctive phrases (score 3).
    pub strong: &'static [Pat],
    /// Weak hints (score 1): reported only when nothing scored higher.
    pub weak: &'static [Pat],
    /// Enhanced codes that mean this (score 2).
    pub codes: &'static [CodeRange],
    /// Where the codes count (empty: everywhere).
    pub code_contexts: &'static [Context],
    /// Reply codes that hint at this (score 1), and where (empty: everywhere).
    pub replies: &'static [(u16, &'static [Context])],
    /// Only a 4yz reply can be this (greylisting is a deferral by definition).
    pub transient_only: bool,
    /// Half a sentence for the summary: what happened.
    pub what: &'static str,
    /// What to check next. `%IP%` becomes the address the reply names (or `IP` when it
    /// names none); `DOMAIN` stands for the sender's domain, which the caller knows.
    pub next: &'static [&'static str],
}

use Pat::{Sub as S, Word as W};

/// One rule per category, most specific first (the order breaks ties).
pub static RULES: &[Rule] = &[
    Rule {
        category: Category::BareLf,
        strong: &[
            S("bare <lf>"),
            S("bare lf"),
            S("bare linefeed"),
            S("bare line feed"),
            S("bare newline"),
            S("naked lf"),
            S("smtplf"),
        ],
        weak: &[],
        codes: &[],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the server refuses a line that ends in LF without CR",
        next: &[
            "Send CRLF line ends: mailscope normalises the message by default; only `--raw` sends a file's bare LFs unchanged",
            "Find them: `mailscope smtp ... --data @FILE` reports each one as smtp.data.bare-lf",
        ],
    },
    Rule {
        category: Category::NullMx,
        strong: &[S("null mx"), S("nullmx")],
        weak: &[],
        codes: &[x(1, 10), x(7, 27)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the domain publishes a null MX (MX 0 .) and accepts no mail",
        next: &[
            "Check the address: a null MX (RFC 7505) means the domain never receives mail; `mailscope smtp --to ADDRESS --quit-after rcpt` without --server shows the MX lookup",
            "If it is your sender domain: publish a real MX, or send from a domain that can receive bounces",
        ],
    },
    Rule {
        category: Category::Greylisted,
        strong: &[
            S("greylist"),
            S("graylist"),
            S("grey-list"),
            S("gray-list"),
            S("grey list"),
            S("gray list"),
            S("is not yet authorized to deliver mail from"),
        ],
        weak: &[
            S("try again later"),
            S("please try later"),
            S("please come back later"),
            S("try again in "),
        ],
        // Microsoft 365: 451 4.7.500–4.7.599 "Server busy" (graylisting / IP throttling of
        // new senders).
        codes: &[vendor(4, 7, 500, 599)],
        code_contexts: &[],
        replies: &[],
        transient_only: true,
        what: "greylisted: the server defers senders it has not seen before",
        next: &[
            "Nothing is broken: retry the same message from the same IP after a few minutes (a mail queue does this by itself); run the same `mailscope smtp` command again in 5 minutes",
            "Retries must come from the same source address: with several, pin one (--local-interface)",
        ],
    },
    Rule {
        category: Category::SpfFail,
        strong: &[
            S("spf check"),
            S("spf validation"),
            S("spf verification"),
            S("spf fail"),
            S("spf=fail"),
            S("spf: fail"),
            S("spf softfail"),
            S("spf record"),
            S("spf violation"),
            S("spf policy"),
            S("spf authentication"),
            S("sender policy framework"),
            S("fails to pass spf"),
            S("not pass spf"),
            S("does not pass spf"),
            S("sender not authorized"),
            S("not designated as permitted sender"),
            S("is not allowed to send mail from"),
            S("spf permerror"),
            S("spf temperror"),
        ],
        weak: &[W("spf")],
        codes: &[x(7, 23), x(7, 24)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the sending IP is not authorised by the sender domain's SPF record",
        next: &[
            "`mailscope spf DOMAIN --ip %IP%`: does the envelope sender's SPF record authorise the sending address (and stay within 10 DNS lookups)?",
            "Forwarded mail is checked against the forwarder's IP: the forwarder needs SRS, or the message needs a DKIM signature that survives",
        ],
    },
    Rule {
        category: Category::DkimFail,
        strong: &[
            S("dkim signature"),
            S("dkim check"),
            S("dkim fail"),
            S("dkim=fail"),
            S("dkim validation"),
            S("dkim verification"),
            S("dkim-signature"),
            S("domainkeys"),
            S("no valid dkim"),
        ],
        weak: &[W("dkim")],
        codes: &[x(7, 20), x(7, 21), x(7, 22)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the message has no valid DKIM signature the receiver accepts",
        next: &[
            "`mailscope dkim DOMAIN --selector SELECTOR`: is the public key published, and does it match the signing key?",
            "Sign with the domain of the From: address (d= aligned), and make sure nothing rewrites the message after signing",
        ],
    },
    Rule {
        category: Category::DmarcFail,
        strong: &[
            W("dmarc"),
            S("unauthenticated email"),
            S("unauthenticated mail"),
            S("sender is unauthenticated"),
            S("authentication checks"),
            S("authentication information"),
            S("required authentication level"),
            S("multiple authentication"),
            S("not accepted for policy reasons"),
        ],
        weak: &[],
        // X.7.26; Microsoft 365: 5.7.509 (DMARC reject), 5.7.515 (Outlook.com sender
        // requirements).
        codes: &[x(7, 26), vendor(5, 7, 509, 509), vendor(5, 7, 515, 515)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the message failed sender authentication (DMARC: neither SPF nor DKIM passed aligned with the From: domain)",
        next: &[
            "`mailscope dmarc DOMAIN`: the policy, and which of SPF and DKIM aligns with the From: domain",
            "`mailscope spf DOMAIN --ip %IP%` and `mailscope dkim DOMAIN --selector SELECTOR`: at least one must pass for the From: domain",
            "Bulk senders to Gmail, Yahoo and Outlook.com need SPF, DKIM and a DMARC record (p=none at least) since 2024/2025",
        ],
    },
    Rule {
        category: Category::NoReverseDns,
        strong: &[
            S("reverse dns"),
            S("reverse-dns"),
            S("reverse lookup"),
            S("reverse hostname"),
            S("ptr record"),
            S("no ptr"),
            S("cannot find your hostname"),
            S("cannot find your reverse hostname"),
            S("fcrdns"),
            W("rdns"),
        ],
        weak: &[W("ptr")],
        codes: &[x(7, 25)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the sending IP has no valid reverse DNS (a PTR record whose name points back to it)",
        next: &[
            "`mailscope fcrdns %IP%`: the PTR must name a host whose A/AAAA record points back to the same address",
            "The PTR record is set by whoever owns the IP (the hosting or access provider), not in your domain's zone; IPv6 senders need one too",
        ],
    },
    Rule {
        category: Category::Blocklisted,
        strong: &[
            S("spamhaus"),
            S("blocked using"),
            S("barracuda"),
            S("spamcop"),
            S("sorbs"),
            S("uceprotect"),
            S("abuseat"),
            S("black list"),
            S("blacklist"),
            S("blocklist"),
            S("block list"),
            S("dnsbl"),
            W("rbl"),
            S("listed at "),
            S("banned sending ip"),
            S("traffic not accepted from this ip"),
            W("s3140"),
            S("[bl21]"),
            S("[bl22]"),
            S("[bl23]"),
            S("service unavailable; client host"),
            S("not authorized to send email directly to our servers"),
        ],
        weak: &[],
        // Microsoft 365: 5.7.606–5.7.649 banned sending IP, 5.7.708 traffic not accepted.
        codes: &[vendor(5, 7, 606, 649), vendor(5, 7, 708, 708)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the sending IP (or domain) is on a blocklist the receiver uses",
        next: &[
            "`mailscope dnsbl %IP%`: which public lists name the address, and why",
            "Fix the cause (compromised account, open relay, infected host) before asking for delisting; the lookup or removal link is in the reply",
            "A dynamic or residential IP (Spamhaus PBL and the like) should not send directly: relay through your provider's submission server",
        ],
    },
    Rule {
        category: Category::RateLimited,
        strong: &[
            S("rate limit"),
            S("rate-limit"),
            S("ratelimit"),
            S("rate limited"),
            S("unusual rate"),
            S("too many connections"),
            S("too many concurrent"),
            S("too many messages"),
            S("too many emails"),
            S("too many mails"),
            S("receiving mail too quickly"),
            S("receiving mail at a rate"),
            S("unexpected volume"),
            S("temporarily deferred"),
            S("throttl"),
            S("sending quota"),
            S("mail flood"),
            W("tss04"),
            W("tss05"),
            W("ts01"),
            W("ts02"),
            W("ts03"),
            W("rp-001"),
            W("rp-002"),
            W("rp-003"),
        ],
        weak: &[],
        // X.7.28 (Gmail's 421 4.7.28); Microsoft 365: 451 4.7.650/4.7.651 (IP reputation).
        codes: &[x(7, 28), vendor(4, 7, 650, 651)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the receiver limits how fast it accepts mail from this sender (volume, complaints or reputation)",
        next: &[
            "Slow down: fewer parallel connections and messages per connection; let the queue retry 4xx replies instead of resending",
            "Reputation drives these limits: `mailscope dnsbl %IP%`, and the provider's postmaster tools (Google Postmaster Tools, Microsoft SNDS, Yahoo Sender Hub)",
        ],
    },
    Rule {
        category: Category::TooManyRecipients,
        strong: &[
            S("too many recipients"),
            S("too many recipient"),
            S("too many rcpt"),
            S("recipient limit"),
            S("number of recipients"),
            S("separate transaction"),
        ],
        weak: &[],
        codes: &[x(5, 3)],
        code_contexts: &[],
        replies: &[(452, &[Context::Rcpt])],
        transient_only: false,
        what: "the server takes no more recipients in this transaction",
        next: &[
            "Send the remaining recipients in another transaction (RSET, or a new MAIL FROM); the refused ones are not lost, retry them",
        ],
    },
    Rule {
        category: Category::MailboxFull,
        strong: &[
            S("mailbox full"),
            S("mailbox is full"),
            S("mailbox quota"),
            S("over quota"),
            S("overquota"),
            S("quotaexceeded"),
            S("storage quota"),
            S("out of storage"),
            S("exceeded storage allocation"),
            S("inbox is full"),
        ],
        weak: &[W("quota")],
        codes: &[x(2, 2)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the recipient's mailbox is full",
        next: &[
            "Nothing to fix on the sending side: the recipient has to free space; a 4xx reply is retried by the queue",
        ],
    },
    Rule {
        category: Category::UnknownUser,
        strong: &[
            S("user unknown"),
            S("unknown user"),
            S("no such user"),
            S("no such recipient"),
            S("no such mailbox"),
            S("unknown recipient"),
            S("invalid recipient"),
            S("recipient not found"),
            S("recipnotfound"),
            S("mailbox not found"),
            S("address not found"),
            S("does not exist"),
            S("unrouteable address"),
            S("not a valid mailbox"),
        ],
        weak: &[S("mailbox unavailable"), S("no mailbox")],
        codes: &[x(1, 1), x(1, 6)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the recipient address does not exist",
        next: &[
            "Check the address for typos; `mailscope smtp --to ADDRESS --quit-after rcpt` asks the server without sending a message",
        ],
    },
    Rule {
        category: Category::RelayDenied,
        strong: &[
            S("relay access denied"),
            S("relaying denied"),
            S("relay denied"),
            S("relay not permitted"),
            S("relaying not permitted"),
            S("not permitted to relay"),
            S("relaying not allowed"),
            S("not allowed to relay"),
            S("unable to relay"),
            S("we do not relay"),
            S("relay traffic prohibited"),
            S("list of allowed rcpthosts"),
        ],
        weak: &[],
        codes: &[],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the server will not relay to that domain for this (unauthenticated) client",
        next: &[
            "Either send to the recipient domain's own MX (`mailscope smtp --to ADDRESS` without --server looks it up), or authenticate to your submission server: `mailscope smtp --server HOST --port 587 --tls --auth --auth-user USER`",
        ],
    },
    Rule {
        category: Category::TlsRequired,
        strong: &[
            S("starttls command first"),
            S("issue a starttls"),
            S("must issue starttls"),
            S("tls required"),
            S("tls is required"),
            S("requires tls"),
            S("must use tls"),
            S("encryption required"),
            S("encryption needed"),
            S("secure connection required"),
            W("requiretls"),
        ],
        weak: &[],
        codes: &[x(7, 10), x(7, 11), x(7, 30)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the server requires TLS before this command",
        next: &["`mailscope smtp --tls ...` (STARTTLS), or `--tls-on-connect` on port 465"],
    },
    Rule {
        category: Category::AuthFailed,
        strong: &[
            S("authentication failed"),
            S("authentication unsuccessful"),
            S("credentials invalid"),
            S("invalid credentials"),
            S("bad credentials"),
            S("password not accepted"),
            S("incorrect authentication data"),
            S("invalid login"),
            S("account disabled"),
            S("mechanism is too weak"),
        ],
        weak: &[],
        codes: &[x(7, 8), x(7, 9), x(7, 12), x(7, 13)],
        code_contexts: &[Context::Auth, Context::Other],
        replies: &[(535, &[]), (534, &[])],
        transient_only: false,
        what: "authentication failed: the credentials, mechanism or account were refused",
        next: &[
            "Check the user name and password; Gmail and Microsoft 365 want an app password or OAuth2 (`--auth XOAUTH2`), not the account password",
            "`mailscope sasl plain USER` shows exactly what is sent, to compare with what the server expects",
        ],
    },
    Rule {
        category: Category::AuthRequired,
        strong: &[
            S("authentication required"),
            S("authentication is required"),
            S("auth required"),
            S("must authenticate"),
            S("please authenticate"),
            S("not authenticated"),
            S("proper authentication required"),
        ],
        weak: &[],
        codes: &[],
        code_contexts: &[],
        replies: &[(530, &[])],
        transient_only: false,
        what: "the server requires authentication first",
        next: &[
            "`mailscope smtp --tls --auth --auth-user USER ...` (the password from a prompt or MAILSCOPE_PASSWORD)",
        ],
    },
    Rule {
        category: Category::MessageTooBig,
        strong: &[
            S("message size exceeds"),
            S("message exceeds maximum"),
            S("message too big"),
            S("message too large"),
            S("message is too large"),
            S("message is too big"),
            S("size limit"),
            S("size exceeds"),
            S("databytes limit"),
            S("message size limits"),
        ],
        weak: &[W("size")],
        codes: &[x(3, 4), x(2, 3), x(7, 16)],
        code_contexts: &[],
        replies: &[(552, &[Context::Mail, Context::Data, Context::EndOfData])],
        transient_only: false,
        what: "the message is larger than the server accepts",
        next: &[
            "Compare with the SIZE the server advertises: `mailscope smtp --server HOST --quit-after ehlo`",
            "Base64 makes attachments a third larger; send a link instead of a large attachment",
        ],
    },
    Rule {
        category: Category::ContentRejected,
        strong: &[
            S("detected as spam"),
            S("identified as spam"),
            S("classified as spam"),
            S("considered spam"),
            S("suspected spam"),
            S("looks like spam"),
            S("rejected as spam"),
            S("spam message"),
            S("spam score"),
            S("likely unsolicited"),
            S("content rejected"),
            S("content was rejected"),
            S("nature of the content"),
            S("violates our security policy"),
            S("virus"),
            S("malware"),
        ],
        weak: &[W("spam")],
        // Microsoft 365: 5.7.350 (remote server returned message detected as spam).
        codes: &[vendor(5, 7, 350, 350)],
        code_contexts: &[],
        replies: &[],
        transient_only: false,
        what: "the message content was judged spam or against the receiver's policy",
        next: &[
            "Tell content from reputation: send a short plain-text test (`mailscope smtp --body 'test'`) from the same IP; if it passes, the content or its links are the problem",
            "Check the domains of the links and the sender against blocklists (`mailscope dnsbl DOMAIN`)",
        ],
    },
];

// ---------------------------------------------------------------------------------------
// Explanation
// ---------------------------------------------------------------------------------------

/// A blocklist named in a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocklist {
    /// The list as the reply names it (`zen.spamhaus.org`, `Barracuda Reputation`, ...).
    pub name: Option<String>,
    /// A lookup or removal link from the reply.
    pub url: Option<String>,
}

/// What a reply means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Success, transient or permanent.
    pub class: ReplyClass,
    /// The reply code's registered meaning, if it has one.
    pub reply_code: Option<&'static ReplyCodeInfo>,
    /// The enhanced status code and its registry entry, if the code is registered.
    pub enhanced: Option<(EnhancedCode, &'static EnhancedCodeInfo)>,
    /// The enhanced status code's subject, when the code itself is not registered.
    pub subject: Option<&'static SubjectInfo>,
    /// The most specific refusal category, if one was recognised.
    pub category: Option<Category>,
    /// Every recognised category, most specific first.
    pub categories: Vec<Category>,
    /// One line: what it means.
    pub summary: String,
    /// What to check next (naming mailscope commands; `DOMAIN` is the sender's domain).
    pub next: Vec<String>,
    /// Findings, most specific first.
    pub findings: Vec<Finding>,
    /// The IP address the reply names (usually the sender's, as the receiver saw it).
    pub ip: Option<IpAddr>,
    /// The blocklist the reply names, for blocklist refusals.
    pub blocklist: Option<Blocklist>,
    /// Every http(s) link in the reply, in order.
    pub links: Vec<String>,
}

struct Hit {
    category: Category,
    score: u8,
    how: String,
}

impl Explanation {
    /// For a refusal of a bearer token (XOAUTH2, OAUTHBEARER): the advice about passwords
    /// does not apply, so an authentication failure's hints speak of tokens instead.
    pub fn for_bearer_token(mut self) -> Self {
        if self.categories.contains(&Category::AuthFailed) {
            let password_hints = Category::AuthFailed.rule().next;
            self.next.retain(|n| !password_hints.contains(&n.as_str()));
            for hint in [
                "A server that refuses a token usually says why in a base64 JSON challenge before the final reply (`{\"status\":\"401\",...}`): `mailscope sasl decode` shows it",
                "The bearer token was refused: check that it has not expired (access tokens usually live about an hour: fetch a fresh one), that it was issued for this user (--auth-user must be the account the token belongs to), and that it carries the mail scope (Gmail: https://mail.google.com/, Microsoft 365: https://outlook.office.com/SMTP.Send)",
            ] {
                // Inserted at the front in reverse: the token advice comes first.
                self.next.insert(0, hint.to_owned());
            }
        }
        self
    }
}

/// Explains a reply that answered `context`.
pub fn explain(reply: &Reply, context: Context) -> Explanation {
    let class = ReplyClass::of(reply.code);
    let (text, lower) = match_text(reply);
    let enhanced = reply
        .enhanced
        .and_then(|e| lookup_enhanced(&e).map(|i| (e, i)));
    let subject = match (reply.enhanced, enhanced) {
        (Some(e), None) => subject_info(e.subject),
        _ => None,
    };
    let ip = find_ip(&text, &lower);
    let links = find_links(&text, &lower);

    let mut hits: Vec<Hit> = Vec::new();
    if class.is_refusal() {
        for rule in RULES {
            if let Some(hit) = score(rule, reply, class, context, &lower) {
                hits.push(hit);
            }
        }
    }
    // Weak hints count only when nothing more specific was found.
    if hits.iter().any(|h| h.score >= 2) {
        hits.retain(|h| h.score >= 2);
    }
    // Stable: equal scores keep rule order.
    hits.sort_by_key(|h| std::cmp::Reverse(h.score));
    let categories: Vec<Category> = hits.iter().map(|h| h.category).collect();
    let category = categories.first().copied();

    let blocklist = categories
        .contains(&Category::Blocklisted)
        .then(|| find_blocklist(&text, &lower, &links));

    let code_text = match reply.enhanced {
        Some(e) => format!("{} {}", reply.code, e),
        None => reply.code.to_string(),
    };

    let mut findings = Vec::new();
    for h in &hits {
        let kind = h.category.kind();
        let mut detail = format!("{code_text}: {}", h.how);
        if h.category == Category::Blocklisted {
            if let Some(name) = blocklist.as_ref().and_then(|b| b.name.as_deref()) {
                detail.push_str(&format!("; list {name}"));
            }
            if let Some(ip) = ip {
                detail.push_str(&format!("; IP {ip}"));
            }
        }
        let mut f = Finding::new(kind, detail);
        // A deferral is retried: it is at most a warning until it turns permanent.
        if class == ReplyClass::Transient && f.severity > Severity::Warning {
            f.severity = Severity::Warning;
        }
        findings.push(f);
    }
    if let Some(e) = reply.enhanced.filter(|e| lookup_enhanced(e).is_none()) {
        findings.push(Finding::new(
            SMTP_REPLY_UNKNOWN_ENHANCED_CODE,
            format!(
                "{e} is not in the IANA registry ({}): a vendor-specific code, look it up in the receiver's documentation",
                subject_info(e.subject).map_or("unknown subject", |s| s.title)
            ),
        ));
    }

    let summary = summarise(
        reply, class, context, category, enhanced, subject, ip, &blocklist,
    );
    let next = advise(class, &categories, ip, &blocklist);

    Explanation {
        class,
        reply_code: reply_code_info(reply.code),
        enhanced,
        subject,
        category,
        categories,
        summary,
        next,
        findings,
        ip,
        blocklist,
        links,
    }
}

fn score(
    rule: &Rule,
    reply: &Reply,
    class: ReplyClass,
    context: Context,
    lower: &str,
) -> Option<Hit> {
    if rule.transient_only && class != ReplyClass::Transient {
        return None;
    }
    let in_context = |list: &[Context]| list.is_empty() || list.contains(&context);
    let mut text_score = 0;
    let mut how = String::new();
    if let Some(p) = rule.strong.iter().find(|p| p.is_in(lower)) {
        text_score = 3;
        how = format!("text {:?}", p.text());
    } else if let Some(p) = rule.weak.iter().find(|p| p.is_in(lower)) {
        text_score = 1;
        how = format!("weak hint {:?}", p.text());
    } else if let Some((code, _)) = rule
        .replies
        .iter()
        .find(|(code, ctx)| *code == reply.code && in_context(ctx))
    {
        text_score = 1;
        how = format!("reply code {code}{}", context.phrase());
    }
    let code_hit = in_context(rule.code_contexts)
        && reply
            .enhanced
            .is_some_and(|e| rule.codes.iter().any(|r| r.contains(&e)));
    if code_hit {
        let e = reply.enhanced.map(|e| e.to_string()).unwrap_or_default();
        how = if how.is_empty() {
            format!("enhanced code {e}")
        } else {
            format!("{how} and enhanced code {e}")
        };
    }
    let total = text_score + if code_hit { 2 } else { 0 };
    (total > 0).then_some(Hit {
        category: rule.category,
        score: total,
        how,
    })
}

#[allow(clippy::too_many_arguments)]
fn summarise(
    reply: &Reply,
    class: ReplyClass,
    context: Context,
    category: Option<Category>,
    enhanced: Option<(EnhancedCode, &'static EnhancedCodeInfo)>,
    subject: Option<&'static SubjectInfo>,
    ip: Option<IpAddr>,
    blocklist: &Option<Blocklist>,
) -> String {
    let lead = match class {
        ReplyClass::Success => "accepted",
        ReplyClass::Intermediate => "go ahead",
        ReplyClass::Transient => "refused for now (4xx: retry later)",
        ReplyClass::Permanent => "refused (5xx: retrying unchanged will not help)",
        ReplyClass::Invalid => "not an SMTP reply",
    };
    let code = match reply.enhanced {
        Some(e) => format!("{} {}", reply.code, e),
        None => reply.code.to_string(),
    };
    let what = if let Some(c) = category {
        let mut what = c.rule().what.to_string();
        if c == Category::Blocklisted {
            let mut extra = Vec::new();
            if let Some(ip) = ip {
                extra.push(format!("IP {ip}"));
            }
            if let Some(name) = blocklist.as_ref().and_then(|b| b.name.as_deref()) {
                extra.push(name.to_string());
            }
            if !extra.is_empty() {
                what.push_str(&format!(" ({})", extra.join(", ")));
            }
        }
        what
    } else if let Some((e, info)) = enhanced {
        format!("{} (X.{}.{})", info.title, e.subject, e.detail)
    } else if let Some(s) = subject {
        format!("{} (unregistered detail)", s.title.to_ascii_lowercase())
    } else if let Some(r) = reply_code_info(reply.code) {
        r.meaning.to_string()
    } else {
        "an unregistered reply code".to_string()
    };
    format!("{code}: {lead}{}: {what}", context.phrase())
}

fn advise(
    class: ReplyClass,
    categories: &[Category],
    ip: Option<IpAddr>,
    blocklist: &Option<Blocklist>,
) -> Vec<String> {
    let ip_text = ip.map_or_else(|| "IP".to_string(), |i| i.to_string());
    let mut next = Vec::new();
    for c in categories {
        for line in c.rule().next {
            let line = line.replace("%IP%", &ip_text);
            if !next.contains(&line) {
                next.push(line);
            }
        }
        if *c == Category::Blocklisted
            && let Some(url) = blocklist.as_ref().and_then(|b| b.url.as_deref())
        {
            next.push(format!("The list's own page for this listing: {url}"));
        }
    }
    if next.is_empty() {
        match class {
            ReplyClass::Transient => next.push(
                "Temporary: a mail queue retries by itself; if it persists for hours, read the text after the code".to_string(),
            ),
            ReplyClass::Permanent => next.push(
                "Read the text after the code: no well-known refusal was recognised; the receiver's postmaster page usually explains its own wording".to_string(),
            ),
            _ => {}
        }
    }
    next
}

// ---------------------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------------------

/// The reply text as matched: every line without its enhanced code prefix, joined with
/// spaces; and its ASCII lower-case copy (same byte offsets).
fn match_text(reply: &Reply) -> (String, String) {
    let mut s = String::new();
    for (i, line) in reply.lines.iter().enumerate() {
        let mut t: &[u8] = &line.text;
        if let Some((_, len)) = EnhancedCode::parse_prefix(t) {
            t = &t[len..];
            t = t.strip_prefix(b" ").unwrap_or(t);
        }
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&String::from_utf8_lossy(t));
    }
    let lower = s.to_ascii_lowercase();
    (s, lower)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn contains_word(hay: &str, word: &str) -> bool {
    let h = hay.as_bytes();
    let mut from = 0;
    while let Some(pos) = hay[from..].find(word) {
        let start = from + pos;
        let end = start + word.len();
        let before = start == 0 || !is_word_byte(h[start - 1]);
        let after = end == h.len() || !is_word_byte(h[end]);
        if before && after {
            return true;
        }
        // `word` is ASCII in every rule, so start + 1 is a char boundary as long as the
        // match starts on one; step over the whole first char to be safe.
        from = start + hay[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// The IP address the reply names: the first one in brackets, or right after a word that
/// introduces an address (`from`, `host`, `ip=`, `/ip/`, ...). Bare dotted numbers elsewhere
/// are ignored: Yahoo's `4.16.55.1` is a diagnostic code, not an address.
fn find_ip(text: &str, lower: &str) -> Option<IpAddr> {
    const INTRO: &[&str] = &[
        "from ", "host ", "ip ", "ip=", "ip/", "ip: ", "address ", "client ", "sender ", "?",
    ];
    let b = text.as_bytes();
    let is_ip_byte = |c: u8| c.is_ascii_hexdigit() || c == b'.' || c == b':';
    let mut i = 0;
    while i < b.len() {
        if !is_ip_byte(b[i]) || (i > 0 && is_ip_byte(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        while end < b.len() && is_ip_byte(b[end]) {
            end += 1;
        }
        i = end;
        let tok = text[start..end].trim_end_matches(['.', ':']);
        // A hex word glued to letters (`deadbeefz`) is not an address.
        if end < b.len() && b[end].is_ascii_alphanumeric() {
            continue;
        }
        if start > 0 && b[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let Some(addr) = parse_ip(tok) else { continue };
        // `user@[192.0.2.1]` is an address literal (a recipient), not the sender.
        let literal = start > 1 && b[start - 1] == b'[' && b[start - 2] == b'@';
        let bracketed = !literal && start > 0 && matches!(b[start - 1], b'[' | b'(' | b'<');
        let introduced = !literal && INTRO.iter().any(|w| lower[..start].ends_with(w));
        if bracketed || introduced {
            return Some(addr);
        }
    }
    None
}

fn parse_ip(tok: &str) -> Option<IpAddr> {
    if tok.contains(':') {
        // At least two colons: `15:49` is a time, not an address.
        if tok.matches(':').count() < 2 {
            return None;
        }
        tok.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else if tok.matches('.').count() == 3 {
        tok.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        None
    }
}

fn find_links(text: &str, lower: &str) -> Vec<String> {
    let mut links: Vec<String> = Vec::new();
    let mut from = 0;
    loop {
        let next = ["http://", "https://"]
            .iter()
            .filter_map(|p| lower[from..].find(p))
            .min();
        let Some(pos) = next else { break };
        let start = from + pos;
        let end = text[start..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, ';' | ',' | '"' | '\'' | '<' | '>' | ')' | ']')
            })
            .map_or(text.len(), |e| start + e);
        let link = text[start..end].trim_end_matches(['.', ':']);
        if link.len() > "https://".len() && !links.iter().any(|l| l == link) {
            links.push(link.to_string());
        }
        from = end.max(start + 1);
    }
    links
}

fn find_blocklist(text: &str, lower: &str, links: &[String]) -> Blocklist {
    const AFTER: &[&str] = &[
        "blocked using ",
        "black list at ",
        "blacklist at ",
        "blocklist at ",
        "listed at ",
        "listed in ",
        "listed on ",
        "found in ",
    ];
    let mut name = None;
    for intro in AFTER {
        if let Some(pos) = lower.find(intro) {
            let start = pos + intro.len();
            let rest = &text[start..];
            let end = rest
                .char_indices()
                .find(|&(i, c)| {
                    matches!(c, ';' | ',' | '(' | ')' | '[' | ']' | '<' | '>')
                        || (c == '.'
                            && rest[i + 1..].chars().next().is_none_or(char::is_whitespace))
                })
                .map_or(rest.len(), |(i, _)| i);
            let n = rest[..end].trim();
            if !n.is_empty() && n.len() <= 80 && !n.starts_with("http") {
                name = Some(n.to_string());
                break;
            }
        }
    }
    if name.is_none() {
        const KNOWN: &[(&str, &str)] = &[
            ("spamhaus", "Spamhaus"),
            ("barracuda", "Barracuda Reputation Block List"),
            ("spamcop", "SpamCop"),
            ("sorbs", "SORBS"),
            ("uceprotect", "UCEPROTECT"),
            ("abuseat", "CBL (abuseat.org)"),
            (
                "banned sending ip",
                "Microsoft 365 / Outlook.com block list",
            ),
            (
                "traffic not accepted from this ip",
                "Microsoft 365 / Outlook.com block list",
            ),
            ("s3140", "Microsoft 365 / Outlook.com block list"),
        ];
        name = KNOWN
            .iter()
            .find(|(k, _)| lower.contains(k))
            .map(|(_, n)| (*n).to_string());
    }
    const LIST_LINK: &[&str] = &[
        "spamhaus",
        "barracuda",
        "spamcop",
        "sorbs",
        "uceprotect",
        "abuseat",
        "sender.office.com",
        "dnsbl",
        "blacklist",
        "blocklist",
        "/query/",
        "lookup",
        "q.cgi",
        "bl.shtml",
        "delist",
        "removal",
    ];
    let url = links
        .iter()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            LIST_LINK.iter().any(|k| l.contains(k))
        })
        .cloned();
    Blocklist { name, url }
}
