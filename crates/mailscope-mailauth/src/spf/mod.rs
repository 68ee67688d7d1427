//! SPF (RFC 7208): our own `check_host()` evaluator on mail-auth's record parser, and an
//! analysis of a domain's record without an IP (the include/redirect tree with DNS-querying
//! term and void look-up counts, and lints).
//!
//! mail-auth's own verifier gives a bare result; here every result says which term decided
//! it (record, term text, position), how many of the 10 DNS-querying terms and 2 void
//! look-ups (RFC 7208 §4.6.4) were used, and the `exp=` explanation. A PermError is a
//! result, not an `Err`. Every query goes through [`crate::dns::Dns`].

mod analyze;
mod eval;
pub mod record;

use std::net::IpAddr;

use mailscope_proto::Finding;

pub use analyze::analyze;
pub use eval::evaluate;

/// RFC 7208 §4.6.4: at most 10 DNS-querying terms per evaluation.
pub const MAX_DNS_TERMS: u32 = 10;
/// RFC 7208 §4.6.4: at most 2 void look-ups.
pub const MAX_VOID_LOOKUPS: u32 = 2;
/// RFC 7208 §4.6.4: an `mx` term may name at most 10 mail exchangers.
pub const MAX_MX_NAMES: usize = 10;
/// RFC 7208 §4.6.4: only the first 10 PTR names are used.
pub const MAX_PTR_NAMES: usize = 10;
/// Nesting cap for includes and redirects (the term limit stops well before).
pub const MAX_DEPTH: usize = 20;
/// At most this many records are fetched by one [`analyze`].
pub const MAX_ANALYZED_RECORDS: usize = 64;

/// What to evaluate: `check_host(ip, domain, sender)` plus the HELO name for `%{h}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfInput {
    /// The SMTP client's address.
    pub ip: IpAddr,
    /// The domain whose record is evaluated (MAIL FROM domain, or the HELO name).
    pub domain: String,
    /// MAIL FROM address (empty: `postmaster@HELO`).
    pub sender: String,
    /// HELO/EHLO name.
    pub helo: String,
}

/// An SPF result (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// The IP is authorised.
    Pass,
    /// The IP is not authorised.
    Fail,
    /// Probably not authorised.
    SoftFail,
    /// The domain makes no assertion.
    Neutral,
    /// No record (or no valid domain).
    None,
    /// A transient DNS error.
    TempError,
    /// The record cannot be interpreted (syntax, limits, missing include, ...).
    PermError,
}

impl SpfResult {
    /// The RFC's lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for SpfResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A term that took part in the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecidingTerm {
    /// Whose record it is in.
    pub domain: String,
    /// The term as written.
    pub term: String,
    /// 1-based position among the record's terms.
    pub position: usize,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone)]
pub struct SpfEvaluation {
    /// The address evaluated (IPv4-mapped IPv6 as IPv4).
    pub ip: IpAddr,
    /// The domain evaluated.
    pub domain: String,
    /// The sender used for macros (`postmaster@...` filled in).
    pub sender: String,
    /// The HELO name used for macros.
    pub helo: String,
    /// The result.
    pub result: SpfResult,
    /// The term that decided, outermost first: an include or redirect term is followed by
    /// the term in the included/redirected record. Empty when no term decided (no record,
    /// default neutral).
    pub decided_by: Vec<DecidingTerm>,
    /// Why, in one sentence.
    pub reason: String,
    /// The domain's `exp=` explanation for a fail, expanded.
    pub explanation: Option<String>,
    /// DNS-querying terms evaluated (limit [`MAX_DNS_TERMS`]).
    pub dns_lookups: u32,
    /// Void look-ups (limit [`MAX_VOID_LOOKUPS`]).
    pub void_lookups: u32,
    /// Problems met on the way.
    pub findings: Vec<Finding>,
}

/// What a node of the analysis tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    /// A record was found and parsed.
    Record,
    /// No SPF record; the text says why.
    NoRecord(String),
    /// More than one SPF record.
    Multiple(Vec<String>),
    /// A syntax error.
    Syntax(record::SyntaxError),
    /// The look-up failed.
    TempError(String),
    /// The domain is already higher up the chain.
    Loop,
    /// Not followed (macros that depend on the message, or the record budget).
    NotFollowed(String),
}

/// One term of a node's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermInfo {
    /// 1-based position.
    pub position: usize,
    /// The term as written.
    pub text: String,
    /// It costs one of the 10 DNS-querying terms.
    pub queries_dns: bool,
    /// Its look-up came back empty (a void look-up).
    pub void: bool,
    /// What was found out about it (addresses, MX count, ...).
    pub note: Option<String>,
}

/// One record in the include/redirect tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfNode {
    /// Whose record.
    pub domain: String,
    /// The parent's term that leads here (`include:...`, `redirect=...`); none at the root.
    pub via: Option<String>,
    /// What was found.
    pub status: NodeStatus,
    /// The record text.
    pub record: Option<String>,
    /// Its terms.
    pub terms: Vec<TermInfo>,
    /// DNS-querying terms in this record itself (a redirect next to `all` is never used and
    /// not counted).
    pub own_lookups: u32,
    /// DNS-querying terms of this record and everything it includes.
    pub lookups: u32,
    /// Void look-ups in this subtree.
    pub void_lookups: u32,
    /// Included and redirected records, in term order.
    pub children: Vec<SpfNode>,
}

/// The outcome of [`analyze`].
#[derive(Debug, Clone)]
pub struct SpfAnalysis {
    /// The domain.
    pub domain: String,
    /// The record tree.
    pub root: SpfNode,
    /// DNS-querying terms when nothing matches (the worst case receivers evaluate).
    pub total_lookups: u32,
    /// Void look-ups found.
    pub void_lookups: u32,
    /// Records of the deprecated SPF type (99) at the domain.
    pub spf_rr: Vec<String>,
    /// Why receivers would answer permerror for every sender, if they would.
    pub permerror: Option<String>,
    /// Lints.
    pub findings: Vec<Finding>,
}

impl SpfAnalysis {
    /// One word for reports: `none`, `temperror`, `permerror`, `warning` or `valid`.
    pub fn verdict(&self) -> &'static str {
        match &self.root.status {
            NodeStatus::NoRecord(_) => "none",
            NodeStatus::TempError(_) => "temperror",
            _ if self.permerror.is_some() => "permerror",
            // A look-up somewhere in the tree failed: receivers reaching it answer temperror.
            _ if self
                .findings
                .iter()
                .any(|f| f.kind.id == "spf.dns.temperror") =>
            {
                "temperror"
            }
            _ if self
                .findings
                .iter()
                .any(|f| f.severity >= mailscope_proto::Severity::Warning) =>
            {
                "warning"
            }
            _ => "valid",
        }
    }
}
