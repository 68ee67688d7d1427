//! DMARC (RFC 7489): which record applies to a domain, the record parsed and linted, external
//! report destinations verified (RFC 7489 §7.1), and a message's DMARC result with the
//! alignment of its DKIM and SPF identifiers explained.
//!
//! # Which record applies: the DNS tree walk, not the Public Suffix List
//!
//! RFC 7489 finds the organisational domain with a Public Suffix List; mailscope works offline
//! and downloads no list. It uses the DNS tree walk of DMARCbis (RFC 9989 §4.10), the same one
//! mail-auth's `verify_dmarc` uses, so `mailscope dmarc DOMAIN` and the message verdict agree:
//! `_dmarc.NAME` is asked for the domain itself and then for each shorter name up to the
//! top-level domain (from 8 or more labels it jumps to 7 first, at most 8 queries). The
//! domain's own record applies when there is one; otherwise the organisational domain's,
//! which is the shortest name with a record, or one label below a record that says `psd=y`
//! (a public suffix operator's record), or a record that says `psd=n`.
//!
//! Limits: an organisational domain is recognised only by its own DMARC record. Under a
//! public suffix that publishes no `psd=y` record, a subdomain of an organisation without a
//! DMARC record is its own organisational domain (a PSL would say otherwise; the result is the
//! same: no policy applies). Relaxed alignment compares organisational domains found the same
//! way.
//!
//! A look-up that fails (timeout, SERVFAIL, REFUSED) does not stop this walk: the step is
//! reported and the walk goes on, where mail-auth's verifier would give `temperror`.

use std::net::IpAddr;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use mailscope_proto::Finding;
use mailscope_proto::finding as fk;

use crate::dns::{Answer, Dns};

/// At most this many rua/ruf destinations are checked for external authorisation.
pub const MAX_DESTINATIONS: usize = 20;

/// One step of the tree walk.
#[derive(Debug, Clone)]
pub struct WalkStep {
    /// The domain whose `_dmarc` name was asked for.
    pub domain: String,
    /// The DNS outcome word.
    pub outcome: String,
    /// The DMARC records there (TXT records starting with `v=DMARC1`), lossy UTF-8.
    pub records: Vec<String>,
    /// Other TXT records there (not DMARC).
    pub other: usize,
}

/// Which record applies to a domain.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The domain asked about.
    pub domain: String,
    /// Every `_dmarc` query, longest name first.
    pub walk: Vec<WalkStep>,
    /// The organisational domain.
    pub org_domain: String,
    /// Where the applying record was found (none: no record anywhere).
    pub applied_at: Option<String>,
    /// The applying record(s) (several: an error).
    pub records: Vec<String>,
    /// Queries that failed: `(name, outcome)`.
    pub failed: Vec<(String, String)>,
}

impl Discovery {
    /// The record applies to the domain because it is its own (not inherited).
    pub fn own(&self) -> bool {
        self.applied_at.as_deref() == Some(self.domain.as_str())
    }

    /// The applying record comes from a public suffix operator (psd=y), not the organisation.
    pub fn from_public_suffix(&self) -> bool {
        self.applied_at
            .as_deref()
            .is_some_and(|a| a != self.org_domain && a != self.domain)
    }
}

fn is_dmarc(txt: &[u8]) -> bool {
    let t = String::from_utf8_lossy(txt);
    let t = t.trim_start();
    let Some((tag, rest)) = t.split_once('=') else {
        return false;
    };
    if tag.trim() != "v" {
        return false;
    }
    let v = rest.split(';').next().unwrap_or("").trim();
    v == "DMARC1"
}

fn psd_tag(record: &str) -> Option<char> {
    record.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("psd")).then(|| v.trim().chars().next())?
    })
}

fn labels(d: &str) -> usize {
    d.split('.').filter(|l| !l.is_empty()).count()
}

fn drop_labels(d: &str, n: usize) -> &str {
    let mut s = d;
    for _ in 0..n {
        match s.split_once('.') {
            Some((_, rest)) => s = rest,
            None => return "",
        }
    }
    s
}

/// Walks the DNS tree from `domain` towards the top-level domain (see the module docs).
pub async fn discover(dns: &Dns, domain: &str) -> Discovery {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let total = labels(&domain);
    let mut walk = Vec::new();
    let mut failed = Vec::new();
    let mut count = total;
    while count >= 1 {
        let name = drop_labels(&domain, total - count).to_owned();
        let q = format!("_dmarc.{name}");
        let answer = dns.txt(&q).await;
        let (records, other): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
            answer.records().iter().partition(|r| is_dmarc(r));
        if let Answer::Failed(_) = answer {
            failed.push((q.clone(), answer.outcome()));
        }
        let step = WalkStep {
            domain: name,
            outcome: answer.outcome(),
            records: records
                .iter()
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .collect(),
            other: other.len(),
        };
        let stop = step
            .records
            .first()
            .and_then(|r| psd_tag(r))
            .is_some_and(|c| c == 'y' || c == 'n');
        walk.push(step);
        if stop || count == 1 {
            break;
        }
        count = if count >= 8 { 7 } else { count - 1 };
    }
    let found: Vec<&WalkStep> = walk.iter().filter(|s| !s.records.is_empty()).collect();
    let mut org = None;
    for s in &found {
        match s.records.first().and_then(|r| psd_tag(r)) {
            Some('n') => {
                org = Some(s.domain.clone());
                break;
            }
            Some('y') if s.domain != domain => {
                let depth = labels(&s.domain) + 1;
                org = Some(drop_labels(&domain, total.saturating_sub(depth)).to_owned());
                break;
            }
            _ => {}
        }
    }
    let org_domain = org
        .or_else(|| found.last().map(|s| s.domain.clone()))
        .unwrap_or_else(|| domain.clone());
    let applied = found
        .iter()
        .find(|s| s.domain == domain)
        .or_else(|| found.iter().find(|s| s.domain == org_domain))
        .or_else(|| found.last());
    Discovery {
        applied_at: applied.map(|s| s.domain.clone()),
        records: applied.map(|s| s.records.clone()).unwrap_or_default(),
        domain,
        walk,
        org_domain,
        failed,
    }
}

/// A rua= or ruf= destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportUri {
    /// As written.
    pub raw: String,
    /// The mailto address, when it is one.
    pub address: Option<String>,
    /// The address's domain.
    pub domain: Option<String>,
    /// The `!SIZE` limit as written (`10m`).
    pub size: Option<String>,
    /// Why it is not usable.
    pub error: Option<String>,
}

/// A DMARC record, parsed tag by tag and linted.
#[derive(Debug, Clone)]
pub struct RecordCheck {
    /// The record.
    pub raw: String,
    /// `(tag, value)` in order.
    pub tags: Vec<(String, String)>,
    /// `p=` (empty: missing).
    pub p: String,
    /// `sp=` (empty: as p).
    pub sp: String,
    /// `np=` (DMARCbis; empty: as sp).
    pub np: String,
    /// `pct=` (100 when absent).
    pub pct: u32,
    /// `adkim=` (`r` by default).
    pub adkim: String,
    /// `aspf=` (`r` by default).
    pub aspf: String,
    /// `fo=` (`0` by default).
    pub fo: String,
    /// `rua=`.
    pub rua: Vec<ReportUri>,
    /// `ruf=`.
    pub ruf: Vec<ReportUri>,
    /// `t=y` (DMARCbis testing).
    pub testing: bool,
    /// `psd=` value if present.
    pub psd: Option<String>,
    /// Syntax errors in words.
    pub errors: Vec<String>,
    /// Unknown tags.
    pub unknown: Vec<String>,
    /// mail-auth's parser accepted the record.
    pub accepted: bool,
}

/// Parses a DMARC record. Never fails: problems are in [`RecordCheck::errors`].
pub fn parse_record(raw: &str) -> RecordCheck {
    let mut r = RecordCheck {
        raw: raw.to_owned(),
        tags: Vec::new(),
        p: String::new(),
        sp: String::new(),
        np: String::new(),
        pct: 100,
        adkim: "r".into(),
        aspf: "r".into(),
        fo: "0".into(),
        rua: Vec::new(),
        ruf: Vec::new(),
        testing: false,
        psd: None,
        errors: Vec::new(),
        unknown: Vec::new(),
        accepted: Dmarc::parse(raw.as_bytes()).is_ok(),
    };
    for (idx, part) in raw.split(';').enumerate() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            r.errors.push(format!("\"{part}\" is not a tag=value pair"));
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().to_owned();
        if r.tags.iter().any(|(t, _)| *t == k) {
            r.errors.push(format!("tag {k}= appears twice"));
            continue;
        }
        r.tags.push((k.clone(), v.clone()));
        let policy = |v: &str| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "none" | "quarantine" | "reject"
            )
        };
        match k.as_str() {
            "v" => {
                if v != "DMARC1" || idx != 0 {
                    r.errors.push("the record must start with v=DMARC1".into());
                }
            }
            "p" | "sp" | "np" => {
                if policy(&v) {
                    let v = v.to_ascii_lowercase();
                    match k.as_str() {
                        "p" => r.p = v,
                        "sp" => r.sp = v,
                        _ => r.np = v,
                    }
                } else {
                    r.errors
                        .push(format!("{k}={v}: must be none, quarantine or reject"));
                }
            }
            "pct" => match v.parse::<u32>() {
                Ok(n) if n <= 100 => r.pct = n,
                _ => r
                    .errors
                    .push(format!("pct={v}: must be a number from 0 to 100")),
            },
            "adkim" | "aspf" => {
                let lv = v.to_ascii_lowercase();
                if lv == "r" || lv == "s" {
                    if k == "adkim" {
                        r.adkim = lv;
                    } else {
                        r.aspf = lv;
                    }
                } else {
                    r.errors
                        .push(format!("{k}={v}: must be r (relaxed) or s (strict)"));
                }
            }
            "fo" => {
                if v.split(':')
                    .all(|o| matches!(o.trim(), "0" | "1" | "d" | "s"))
                {
                    r.fo = v.clone();
                } else {
                    r.errors
                        .push(format!("fo={v}: must be 0, 1, d or s, separated by colons"));
                }
            }
            "rua" | "ruf" => {
                let uris: Vec<ReportUri> = v.split(',').map(parse_uri).collect();
                if k == "rua" {
                    r.rua = uris;
                } else {
                    r.ruf = uris;
                }
            }
            "rf" | "ri" => {}
            "t" => r.testing = v.eq_ignore_ascii_case("y"),
            "psd" => r.psd = Some(v.to_ascii_lowercase()),
            _ => r.unknown.push(k.clone()),
        }
    }
    r
}

fn parse_uri(raw: &str) -> ReportUri {
    let raw = raw.trim().to_owned();
    let mut u = ReportUri {
        raw: raw.clone(),
        address: None,
        domain: None,
        size: None,
        error: None,
    };
    let (uri, size) = match raw.rsplit_once('!') {
        Some((uri, size)) => (uri, Some(size)),
        None => (raw.as_str(), None),
    };
    if let Some(size) = size {
        let digits = size.trim_end_matches(|c: char| "kmgtKMGT".contains(c));
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || size.len() - digits.len() > 1
        {
            u.error = Some(format!(
                "size limit !{size} is not a number with an optional k, m, g or t"
            ));
        }
        u.size = Some(size.to_owned());
    }
    let Some(addr) = uri
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("mailto:"))
        .and_then(|_| uri.get(7..))
    else {
        u.error
            .get_or_insert_with(|| format!("\"{uri}\" is not a mailto: URI"));
        return u;
    };
    match addr.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && crate::dns::check_name(domain).is_ok()
                && !domain.contains(char::is_whitespace) =>
        {
            u.address = Some(addr.to_owned());
            u.domain = Some(domain.trim_end_matches('.').to_ascii_lowercase());
        }
        _ => {
            u.error
                .get_or_insert_with(|| format!("\"{addr}\" is not an e-mail address"));
        }
    }
    u
}

/// The findings for a parsed record (about `domain`'s policy).
pub fn lint_record(r: &RecordCheck, at: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = format!("_dmarc.{at}");
    if !r.errors.is_empty() {
        out.push(Finding::new(
            fk::DMARC_RECORD_SYNTAX,
            format!("{name}: {}", r.errors.join("; ")),
        ));
    } else if !r.accepted {
        out.push(Finding::new(
            fk::DMARC_RECORD_SYNTAX,
            format!("{name}: a receiver's parser (mail-auth) refuses the record"),
        ));
    }
    if r.p.is_empty() && !r.errors.iter().any(|e| e.starts_with("p=")) {
        out.push(Finding::new(
            fk::DMARC_RECORD_NO_POLICY,
            format!(
                "{name}: no p= ({})",
                if r.rua.iter().any(|u| u.error.is_none()) {
                    "with a valid rua=, receivers treat it as p=none"
                } else {
                    "and no valid rua=: receivers ignore the record"
                }
            ),
        ));
    }
    if r.p == "none" {
        out.push(Finding::new(
            fk::DMARC_POLICY_NONE,
            format!("{name}: p=none"),
        ));
    }
    let rank = |p: &str| match p {
        "reject" => 2,
        "quarantine" => 1,
        _ => 0,
    };
    if !r.sp.is_empty() && !r.p.is_empty() && rank(&r.sp) < rank(&r.p) {
        out.push(Finding::new(
            fk::DMARC_POLICY_SUBDOMAIN_WEAKER,
            format!("{name}: p={} but sp={}", r.p, r.sp),
        ));
    }
    if r.pct < 100 && r.p != "none" {
        out.push(Finding::new(
            fk::DMARC_POLICY_PCT,
            format!(
                "{name}: pct={}: p={} applies to {}% of failing mail",
                r.pct, r.p, r.pct
            ),
        ));
    }
    if r.testing {
        out.push(Finding::new(
            fk::DMARC_POLICY_TESTING,
            format!("{name}: t=y"),
        ));
    }
    for u in r.rua.iter().chain(&r.ruf) {
        if let Some(e) = &u.error {
            out.push(Finding::new(
                fk::DMARC_REPORT_URI_SYNTAX,
                format!("{name}: {e}"),
            ));
        }
    }
    if !r.tags.iter().any(|(t, _)| t == "rua") {
        out.push(Finding::new(
            fk::DMARC_REPORT_NO_RUA,
            format!("{name}: no rua="),
        ));
    }
    if !r.unknown.is_empty() {
        out.push(Finding::new(
            fk::DMARC_RECORD_UNKNOWN_TAG,
            format!("{name}: {}", r.unknown.join(", ")),
        ));
    }
    out
}

/// Whether an external report destination authorised the policy domain.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The destination's domain.
    pub domain: String,
    /// The addresses using it.
    pub addresses: Vec<String>,
    /// Inside the policy's organisational domain: no authorisation needed.
    pub internal: bool,
    /// The name asked for (`POLICYDOMAIN._report._dmarc.DEST`), when external.
    pub query: Option<String>,
    /// `Some(true)`: authorised; `Some(false)`: not; `None`: the look-up failed or internal.
    pub authorised: Option<bool>,
    /// The DNS outcome word for the query.
    pub outcome: String,
}

/// Checks every rua/ruf destination of `record` (RFC 7489 §7.1): those outside
/// `org_domain` need a `POLICY._report._dmarc.DEST` record starting with `v=DMARC1`.
pub async fn check_destinations(
    dns: &Dns,
    policy_domain: &str,
    org_domain: &str,
    record: &RecordCheck,
) -> Vec<Destination> {
    let mut dests: Vec<Destination> = Vec::new();
    for u in record.rua.iter().chain(&record.ruf) {
        let (Some(d), Some(a)) = (&u.domain, &u.address) else {
            continue;
        };
        if let Some(existing) = dests.iter_mut().find(|x| &x.domain == d) {
            if !existing.addresses.contains(a) {
                existing.addresses.push(a.clone());
            }
            continue;
        }
        if dests.len() == MAX_DESTINATIONS {
            break;
        }
        let internal = d == org_domain
            || d.ends_with(&format!(".{org_domain}"))
            || d == policy_domain
            || d.ends_with(&format!(".{policy_domain}"));
        dests.push(Destination {
            domain: d.clone(),
            addresses: vec![a.clone()],
            internal,
            query: None,
            authorised: None,
            outcome: String::new(),
        });
    }
    for dest in dests.iter_mut().filter(|d| !d.internal) {
        let q = format!("{policy_domain}._report._dmarc.{}", dest.domain);
        let answer = dns.txt(&q).await;
        dest.outcome = answer.outcome();
        dest.authorised = match &answer {
            Answer::Records(r) => Some(r.iter().any(|t| is_dmarc(t))),
            Answer::NxDomain | Answer::NoData => Some(false),
            Answer::Failed(_) => None,
        };
        dest.query = Some(q);
    }
    dests
}

// ------------------------------------------------------------------------------ messages

/// What to evaluate a message against.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// The connecting client's address (SPF is evaluated only with one).
    pub ip: Option<IpAddr>,
    /// MAIL FROM (empty: the null sender, SPF then checks the HELO name).
    pub mail_from: Option<String>,
    /// HELO/EHLO name.
    pub helo: Option<String>,
}

/// One DKIM signature as DMARC sees it.
#[derive(Debug, Clone)]
pub struct DkimIdentity {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// mail-auth's DKIM result word.
    pub result: String,
    /// `d=` is aligned with the From: domain (under the record's adkim=).
    pub aligned: bool,
}

/// The DMARC evaluation of one message.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The From: domain (empty when the message has none usable).
    pub from_domain: String,
    /// Which record applied.
    pub discovery: Discovery,
    /// The applied record, parsed.
    pub record: Option<RecordCheck>,
    /// DKIM signatures.
    pub dkim: Vec<DkimIdentity>,
    /// The SPF domain (MAIL FROM domain or HELO), its result, and whether it is aligned.
    pub spf: Option<(String, String, bool)>,
    /// `pass`, `fail`, `none`, `temperror`, `permerror`.
    pub result: String,
    /// The policy the receiver applies on failure (`none`, `quarantine`, `reject`).
    pub policy: String,
    /// The explanation, one point per line.
    pub explanation: Vec<String>,
    /// What is wrong.
    pub findings: Vec<Finding>,
}

fn dkim_word(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        // As `mailscope dkim verify` reports them: a changed body or an expired signature
        // is a failed signature, whatever mail-auth's result code.
        DkimResult::Neutral(mail_auth::Error::Dkim(
            mail_auth::dkim::DkimError::FailedBodyHashMatch
            | mail_auth::dkim::DkimError::SignatureExpired,
        )) => "fail",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dmarc_word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

fn policy_word(p: Policy) -> &'static str {
    match p {
        Policy::None => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
        Policy::Unspecified => "none",
    }
}

/// `a` is aligned with `from` (`strict`: equal; relaxed: both under the same organisational
/// domain `org`).
fn aligned(a: &str, from: &str, org: &str, strict: bool) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    if a == from {
        return true;
    }
    !strict && (a == org || a.ends_with(&format!(".{org}")))
}

/// Evaluates DMARC for a message: DKIM (mail-auth), SPF for the MAIL FROM domain
/// (mail-auth's `verify_spf`, only with an IP) and mail-auth's `verify_dmarc`, with the
/// alignment of each identifier explained. The record look-ups are repeated through [`Dns`]
/// so they are traced.
pub async fn evaluate_message(
    dns: &Dns,
    raw: &[u8],
    env: &Envelope,
) -> Result<Evaluation, crate::dkim::NotAMessage> {
    crate::dkim::check_signature_count(raw)?;
    let msg = AuthenticatedMessage::parse_with_opts(raw, None, false).ok_or_else(|| {
        crate::dkim::NotAMessage("not an RFC 5322 message: no header fields could be parsed".into())
    })?;
    let auth = MessageAuthenticator(dns.resolver().clone());
    let dkim_out = auth.verify_dkim(&msg).await;

    let mut froms: Vec<String> = msg
        .from
        .iter()
        .filter_map(|f| f.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
        .collect();
    froms.dedup();
    let from_domain = match froms.as_slice() {
        [one] => one.clone(),
        _ => String::new(),
    };
    let mut explanation = Vec::new();
    let mut findings = Vec::new();

    // SPF for the MAIL FROM domain (or the HELO name for the null sender).
    let helo = env.helo.clone().unwrap_or_else(|| "unknown".into());
    let mail_from = env.mail_from.clone().unwrap_or_default();
    let spf_domain = match mail_from.rsplit_once('@') {
        Some((_, d)) if !d.is_empty() => d.to_ascii_lowercase(),
        _ => helo.to_ascii_lowercase(),
    };
    let spf_out = match env.ip {
        Some(ip) => {
            let sender = if mail_from.is_empty() {
                format!("postmaster@{helo}")
            } else {
                mail_from.clone()
            };
            auth.verify_spf(SpfParameters::verify_mail_from(
                ip,
                &helo,
                "mailscope.invalid",
                &sender,
            ))
            .await
        }
        None => SpfOutput::new(spf_domain.clone()),
    };

    let dmarc_out = auth
        .verify_dmarc(DmarcParameters::new(&msg, &dkim_out, &spf_domain, &spf_out))
        .await;

    // Our traced walk (same algorithm) for the report.
    let discovery = if from_domain.is_empty() {
        discover_none()
    } else {
        discover(dns, &from_domain).await
    };
    let record = discovery.records.first().map(|r| parse_record(r));
    let org = discovery.org_domain.clone();
    let adkim_strict = record.as_ref().is_some_and(|r| r.adkim == "s");
    let aspf_strict = record.as_ref().is_some_and(|r| r.aspf == "s");

    let dkim: Vec<DkimIdentity> = dkim_out
        .iter()
        .filter_map(|o| {
            o.signature().map(|s| DkimIdentity {
                domain: s.d.to_ascii_lowercase(),
                selector: s.s.clone(),
                result: dkim_word(o.result()).into(),
                aligned: !from_domain.is_empty() && aligned(&s.d, &from_domain, &org, adkim_strict),
            })
        })
        .collect();
    let spf_result = spf_word(spf_out.result());
    let spf_aligned =
        !from_domain.is_empty() && aligned(&spf_domain, &from_domain, &org, aspf_strict);

    let mut result = dmarc_word(&dmarc_out.result()).to_owned();
    let mut policy = policy_word(dmarc_out.policy()).to_owned();

    if from_domain.is_empty() {
        explanation.push(if froms.is_empty() {
            "the message has no usable From: address, so DMARC cannot be evaluated".to_owned()
        } else {
            format!(
                "From: names several domains ({}): such messages are exempt from DMARC",
                froms.join(", ")
            )
        });
    } else if discovery.records.is_empty() && !discovery.failed.is_empty() {
        // A look-up failed: "no record" is not known, and RFC 7489 §6.6.3 makes it a
        // temporary error.
        let names: Vec<&str> = discovery.failed.iter().map(|(n, _)| n.as_str()).collect();
        explanation.push(format!(
            "the DMARC record of {from_domain} could not be looked up ({} failed): DMARC \
             result temperror; a receiver defers or applies its local policy",
            names.join(", ")
        ));
        "temperror".clone_into(&mut result);
    } else if discovery.records.is_empty() {
        explanation.push(format!(
            "no DMARC record applies to {from_domain}: DMARC result none, the receiver \
             applies its local policy"
        ));
        findings.push(Finding::new(
            fk::DMARC_RECORD_MISSING,
            format!("_dmarc.{from_domain} and its organisational domain {org}"),
        ));
    } else {
        let at = discovery.applied_at.clone().unwrap_or_default();
        let mode = |s: bool| if s { "strict" } else { "relaxed" };
        explanation.push(format!(
            "From: domain {from_domain}; record at _dmarc.{at}{}; organisational domain {org}; \
             DKIM alignment {}, SPF alignment {}",
            if at == from_domain {
                String::new()
            } else {
                " (inherited)".to_owned()
            },
            mode(adkim_strict),
            mode(aspf_strict)
        ));
        // DKIM.
        if dkim.is_empty() {
            explanation.push("DKIM: the message is not signed".into());
        }
        for d in &dkim {
            let line = match (d.result.as_str(), d.aligned) {
                ("pass", true) => format!(
                    "DKIM passed for d={} (s={}), aligned with From: {from_domain}: DMARC passes through DKIM",
                    d.domain, d.selector
                ),
                ("pass", false) => {
                    findings.push(Finding::new(
                        fk::DMARC_ALIGNMENT_DKIM,
                        format!("d={} vs From: {from_domain}", d.domain),
                    ));
                    format!(
                        "DKIM passed for d={} but that is not aligned with From: {from_domain} \
                         ({}): it does not count",
                        d.domain,
                        if adkim_strict {
                            "adkim=s needs the same domain"
                        } else {
                            "not in the same organisational domain"
                        }
                    )
                }
                (r, al) => format!(
                    "DKIM {r} for d={} (s={}){}: it does not count (see `mailscope dkim verify`)",
                    d.domain,
                    d.selector,
                    if al {
                        ", aligned"
                    } else {
                        ", not aligned either"
                    }
                ),
            };
            explanation.push(line);
        }
        // SPF.
        if env.ip.is_none() {
            explanation.push(
                "SPF: not evaluated (give --ip, and --mail-from or --helo, to include it)".into(),
            );
        } else {
            let line = match (spf_result, spf_aligned) {
                ("pass", true) => format!(
                    "SPF passed for {spf_domain}, aligned with From: {from_domain}: DMARC passes through SPF"
                ),
                ("pass", false) => {
                    findings.push(Finding::new(
                        fk::DMARC_ALIGNMENT_SPF,
                        format!("{spf_domain} vs From: {from_domain}"),
                    ));
                    format!(
                        "SPF passed for {spf_domain} but that is not aligned with From: \
                         {from_domain} ({}): it does not count",
                        if aspf_strict {
                            "aspf=s needs the same domain"
                        } else {
                            "not in the same organisational domain"
                        }
                    )
                }
                (r, al) => format!(
                    "SPF {r} for {spf_domain}{} from {}: it does not count (see `mailscope spf`)",
                    if al {
                        " (aligned)"
                    } else {
                        " (not aligned either)"
                    },
                    env.ip.map(|i| i.to_string()).unwrap_or_default()
                ),
            };
            explanation.push(line);
        }
        if let Some(r) = &record
            && r.pct < 100
            && result == "fail"
        {
            explanation.push(format!(
                "pct={}: the policy applies to {}% of failing mail, the rest gets the next weaker policy",
                r.pct, r.pct
            ));
        }
        match result.as_str() {
            "pass" => explanation.push("DMARC: pass".into()),
            "fail" => {
                explanation.push(format!(
                    "DMARC: fail: no aligned identifier passed; the receiver applies p={policy}"
                ));
                findings.push(Finding::new(
                    fk::DMARC_RESULT_FAIL,
                    format!("From: {from_domain}, policy {policy}"),
                ));
            }
            other => explanation.push(format!("DMARC: {other}")),
        }
    }
    if result == "none" {
        policy = "none".into();
    }
    Ok(Evaluation {
        from_domain,
        discovery,
        record,
        dkim,
        spf: env
            .ip
            .map(|_| (spf_domain.clone(), spf_result.to_owned(), spf_aligned)),
        result,
        policy,
        explanation,
        findings,
    })
}

fn discover_none() -> Discovery {
    Discovery {
        domain: String::new(),
        walk: Vec::new(),
        org_domain: String::new(),
        applied_at: None,
        records: Vec::new(),
        failed: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let r = parse_record(
            "v=DMARC1; p=reject; sp=none; pct=50; rua=mailto:a@b.example!10m,mailto:c@d.example; fo=1:d; x=y",
        );
        assert_eq!(r.p, "reject");
        assert_eq!(r.sp, "none");
        assert_eq!(r.pct, 50);
        assert_eq!(r.rua.len(), 2);
        assert_eq!(r.rua[0].size.as_deref(), Some("10m"));
        assert_eq!(r.rua[0].domain.as_deref(), Some("b.example"));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.unknown, ["x"]);
        let r = parse_record("p=rejct; v=DMARC1; rua=a@b; adkim=x; pct=150");
        assert_eq!(r.errors.len(), 4, "{:?}", r.errors);
        assert!(r.rua[0].error.is_some());
        let r = parse_record("v=DMARC1; rua=mailto:x@y.example!1q");
        assert!(r.rua[0].error.is_some());
    }

    #[test]
    fn alignment() {
        assert!(aligned(
            "mail.example.org",
            "example.org",
            "example.org",
            false
        ));
        assert!(!aligned(
            "mail.example.org",
            "example.org",
            "example.org",
            true
        ));
        assert!(!aligned(
            "badexample.org",
            "example.org",
            "example.org",
            false
        ));
        assert!(is_dmarc(b"v=DMARC1; p=none"));
        assert!(!is_dmarc(b"v=spf1 -all"));
        assert_eq!(drop_labels("a.b.c", 1), "b.c");
    }
}
