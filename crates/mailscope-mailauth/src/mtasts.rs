//! MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy fetched over HTTPS from
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`, and the policy checked against the
//! domain's MX hosts the way a sender would.
//!
//! The policy host is resolved through [`Dns`] (so `--resolver` applies) and fetched with
//! [`mailscope_net::https_get`] over our own TLS client. The certificate is verified, but a
//! failure does not stop the fetch: the policy is still read and reported, together with
//! the fact that senders would refuse it. Redirects are reported, never followed (§3.3).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use mail_auth::common::parse::TxtRecordParser as _;
use mailscope_net::{
    HttpsGet, HttpsResponse, NetError, TlsClient, TlsClientOptions, Verification, https_get,
};
use mailscope_proto::Severity;
use mailscope_proto::finding::{self, Finding};

use crate::dns::{Answer, Dns};

/// Policies larger than this are cut and flagged (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY_SIZE: usize = 64 * 1024;
/// The largest max_age RFC 8461 §3.2 allows (one year).
pub const MAX_MAX_AGE: u64 = 31_557_600;
/// max_age below this (one day) is flagged as short.
pub const SHORT_MAX_AGE: u64 = 86_400;
/// At most this many `mx:` lines are kept.
pub const MAX_MX_PATTERNS: usize = 100;
/// At most this many policy-host addresses are tried.
const MAX_POLICY_ADDRS: usize = 8;

/// How to fetch the policy.
#[derive(Debug, Clone)]
pub struct MtaStsOptions {
    /// HTTPS port of the policy host (443; tests use another).
    pub port: u16,
    /// PEM CA files trusted in addition to the WebPKI roots.
    pub ca_files: Vec<PathBuf>,
    /// Budget for the whole fetch.
    pub timeout: Duration,
}

impl Default for MtaStsOptions {
    fn default() -> Self {
        Self {
            port: 443,
            ca_files: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The `_mta-sts` TXT record set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StsRecord {
    /// Outcome of the TXT look-up (`answer`, `nxdomain`, `nodata`, `timeout`, ...).
    pub outcome: String,
    /// Records that start with `v=STSv1` (lossy UTF-8).
    pub records: Vec<String>,
    /// TXT records at the name that are not MTA-STS records (ignored by senders).
    pub other_records: usize,
    /// The id, when there is exactly one valid record.
    pub id: Option<String>,
}

/// A parsed policy file (RFC 8461 §3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `version:` value.
    pub version: Option<String>,
    /// `mode:` value (`enforce`, `testing`, `none`; anything else is an error).
    pub mode: Option<String>,
    /// `max_age:` in seconds, when it is a number.
    pub max_age: Option<u64>,
    /// `mx:` patterns, in order.
    pub mx: Vec<String>,
    /// Field names not defined by RFC 8461 (ignored, as §3.2 asks).
    pub unknown: Vec<String>,
    /// Syntax errors; a policy with any is discarded by senders.
    pub errors: Vec<String>,
    /// A max_age that is a number but out of range.
    pub max_age_invalid: Option<String>,
}

impl Policy {
    /// Whether senders would use it (no syntax error, max_age valid).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty() && self.max_age_invalid.is_none()
    }
}

/// What the HTTPS fetch gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFetch {
    /// The URL fetched (with the port when it is not 443).
    pub url: String,
    /// Outcome of the policy host's A/AAAA look-ups.
    pub host_outcome: String,
    /// The policy host's addresses.
    pub addresses: Vec<IpAddr>,
    /// The address that answered.
    pub peer: Option<SocketAddr>,
    /// Why no HTTP response came (connect, TLS, timeout, malformed response).
    pub error: Option<String>,
    /// TLS version negotiated.
    pub tls_version: Option<String>,
    /// Whether the certificate verified for the policy host.
    pub certificate_valid: Option<bool>,
    /// Why it did not.
    pub certificate_error: Option<String>,
    /// Subject of the leaf certificate and the names it carries.
    pub certificate_names: Vec<String>,
    /// HTTP status.
    pub status: Option<u16>,
    /// `Location:` of a redirect (not followed).
    pub location: Option<String>,
    /// `Content-Type:` as sent.
    pub content_type: Option<String>,
    /// Body size read (at most [`MAX_POLICY_SIZE`]).
    pub size: usize,
    /// The body was longer than [`MAX_POLICY_SIZE`].
    pub truncated: bool,
    /// The body as text (lossy UTF-8), for the report.
    pub body: String,
}

/// An MX host and the policy pattern that allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxMatch {
    /// The MX host.
    pub host: String,
    /// The first matching `mx:` pattern, if any.
    pub pattern: Option<String>,
}

/// The whole MTA-STS check of a domain.
#[derive(Debug, Clone)]
pub struct MtaStsReport {
    /// The domain.
    pub domain: String,
    /// The TXT record.
    pub record: StsRecord,
    /// The fetch, when one was made (a record exists or the policy host resolves).
    pub fetch: Option<PolicyFetch>,
    /// The parsed policy, when a 200 response came.
    pub policy: Option<Policy>,
    /// Each MX host against the policy (empty without a valid policy).
    pub matches: Vec<MxMatch>,
    /// What is wrong or worth knowing.
    pub findings: Vec<Finding>,
}

impl MtaStsReport {
    /// One word: `none` (no MTA-STS at all), `error`, `warning`, or the policy mode
    /// (`enforce`, `testing`, `mode-none`) when all is well.
    pub fn verdict(&self) -> &'static str {
        let orphan = self
            .findings
            .iter()
            .any(|f| f.kind == finding::MTASTS_RECORD_MISSING);
        if self.record.records.is_empty() && !orphan {
            if self.record.outcome == "answer"
                || self.record.outcome == "nodata"
                || self.record.outcome == "nxdomain"
            {
                return "none";
            }
            return "temperror";
        }
        let worst = self.findings.iter().map(|f| f.severity).max();
        match worst {
            Some(s) if s >= Severity::Error => "error",
            Some(Severity::Warning) => "warning",
            _ => match self.policy.as_ref().and_then(|p| p.mode.as_deref()) {
                Some("enforce") => "enforce",
                Some("testing") => "testing",
                Some("none") => "mode-none",
                _ => "error",
            },
        }
    }
}

/// Checks MTA-STS for `domain` against its MX hosts (`mx_hosts`, as published; empty when
/// the domain has no MX, in which case no matching is done).
///
/// Errors only when the check cannot run at all (an unreadable CA file).
pub async fn check(
    dns: &Dns,
    domain: &str,
    mx_hosts: &[String],
    opts: &MtaStsOptions,
) -> Result<MtaStsReport, NetError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let tls = TlsClient::new(&TlsClientOptions {
        insecure: true,
        extra_ca_files: opts.ca_files.clone(),
        ..Default::default()
    })?;
    let host = format!("mta-sts.{domain}");
    let txt_name = format!("_mta-sts.{domain}");
    let (txt, (host_outcome, addrs)) = tokio::join!(dns.txt(&txt_name), resolve(dns, &host));
    let mut findings = Vec::new();
    let record = examine_record(&domain, &txt, &mut findings);

    let mut report = MtaStsReport {
        domain: domain.clone(),
        record,
        fetch: None,
        policy: None,
        matches: Vec::new(),
        findings,
    };
    let have_record = !report.record.records.is_empty();
    if !have_record && addrs.is_empty() {
        if report.record.outcome == "answer"
            || report.record.outcome == "nodata"
            || report.record.outcome == "nxdomain"
        {
            report.findings.push(none_finding(&domain));
        }
        return Ok(report);
    }

    let url = if opts.port == 443 {
        format!("https://{host}/.well-known/mta-sts.txt")
    } else {
        format!("https://{host}:{}/.well-known/mta-sts.txt", opts.port)
    };
    let mut fetch = PolicyFetch {
        url: url.clone(),
        host_outcome,
        addresses: addrs.clone(),
        ..Default::default()
    };
    if addrs.is_empty() {
        fetch.error = Some(format!("{host} has no A or AAAA record"));
        report.findings.push(Finding::new(
            finding::MTASTS_POLICY_UNAVAILABLE,
            format!(
                "{host} has no address ({}), so the policy cannot be fetched",
                fetch.host_outcome
            ),
        ));
        report.fetch = Some(fetch);
        return Ok(report);
    }
    let req = HttpsGet {
        host: &host,
        addrs: &addrs,
        port: opts.port,
        path: "/.well-known/mta-sts.txt",
        timeout: opts.timeout,
        max_body: MAX_POLICY_SIZE,
    };
    let response = match https_get(&tls, &req).await {
        Ok(r) => r,
        Err(e) => {
            fetch.error = Some(e.to_string());
            report.findings.push(if have_record {
                Finding::new(
                    finding::MTASTS_POLICY_UNAVAILABLE,
                    format!("GET {url}: {e}"),
                )
            } else {
                // A host that resolves but serves nothing: just a name, not a policy.
                none_finding(&domain)
            });
            report.fetch = Some(fetch);
            return Ok(report);
        }
    };
    record_response(&mut fetch, &response);
    let policy = (response.status == 200).then(|| match std::str::from_utf8(&response.body) {
        Ok(text) => parse_policy(text),
        Err(e) => Policy {
            errors: vec![format!("the policy is not valid UTF-8 ({e})")],
            ..Default::default()
        },
    });
    if !have_record {
        // Without a record only a real policy is worth reporting: a wildcard name on a
        // web server answers this URL too, with a 404 or a page.
        let looks_like_policy = policy
            .as_ref()
            .is_some_and(|p| p.version.as_deref() == Some("STSv1"));
        if !looks_like_policy {
            report.findings.push(none_finding(&domain));
            report.fetch = Some(fetch);
            return Ok(report);
        }
        // Only when the TXT look-up answered: a failed one is already its own finding.
        if !matches!(txt, Answer::Failed(_)) {
            report.findings.push(Finding::new(
                finding::MTASTS_RECORD_MISSING,
                format!("{url} serves a policy, but _mta-sts.{domain} has no v=STSv1 record"),
            ));
        }
    }
    examine_response(&host, &url, &fetch, &mut report.findings);
    if let Some(policy) = policy {
        examine_policy(&policy, &mut report.findings);
        if policy.is_valid() {
            report.matches = mx_hosts
                .iter()
                .map(|h| MxMatch {
                    host: h.clone(),
                    pattern: policy.mx.iter().find(|p| mx_matches(p, h)).cloned(),
                })
                .collect();
            let mode = policy.mode.as_deref().unwrap_or_default();
            for m in report.matches.iter().filter(|m| m.pattern.is_none()) {
                if mode == "none" {
                    continue;
                }
                let mut f = Finding::new(
                    finding::MTASTS_MX_MISMATCH,
                    format!(
                        "MX host {} matches none of the policy's mx patterns ({}){}",
                        m.host,
                        policy.mx.join(", "),
                        if mode == "enforce" {
                            "; senders enforcing MTA-STS will not deliver to it"
                        } else {
                            "; in mode testing senders still deliver, and report the failure"
                        }
                    ),
                );
                if mode != "enforce" {
                    f.severity = Severity::Warning;
                }
                report.findings.push(f);
            }
        }
        report.policy = Some(policy);
    }
    report.fetch = Some(fetch);
    Ok(report)
}

fn none_finding(domain: &str) -> Finding {
    Finding::new(
        finding::MTASTS_NONE,
        format!("no v=STSv1 record at _mta-sts.{domain}"),
    )
}

async fn resolve(dns: &Dns, host: &str) -> (String, Vec<IpAddr>) {
    let (a, aaaa) = tokio::join!(dns.a(host), dns.aaaa(host));
    let mut addrs: Vec<IpAddr> = a.records().iter().copied().map(IpAddr::V4).collect();
    addrs.extend(aaaa.records().iter().copied().map(IpAddr::V6));
    addrs.truncate(MAX_POLICY_ADDRS);
    (
        format!("A {} / AAAA {}", a.outcome(), aaaa.outcome()),
        addrs,
    )
}

fn examine_record(domain: &str, txt: &Answer<Vec<u8>>, findings: &mut Vec<Finding>) -> StsRecord {
    let mut rec = StsRecord {
        outcome: txt.outcome(),
        ..Default::default()
    };
    if let Answer::Failed(e) = txt {
        findings.push(Finding::new(
            finding::DOMAIN_DNS_LOOKUP_FAILED,
            format!("TXT _mta-sts.{domain}: {e}"),
        ));
        return rec;
    }
    for r in txt.records() {
        // §3.1: records that do not begin with "v=STSv1;" are discarded.
        if r.starts_with(b"v=STSv1") {
            rec.records.push(String::from_utf8_lossy(r).into_owned());
        } else {
            rec.other_records += 1;
        }
    }
    if rec.records.len() > 1 {
        findings.push(Finding::new(
            finding::MTASTS_RECORD_MULTIPLE,
            format!(
                "_mta-sts.{domain} has {} v=STSv1 records: {}",
                rec.records.len(),
                rec.records.join(" | ")
            ),
        ));
        return rec;
    }
    let Some(text) = rec.records.first() else {
        return rec;
    };
    match record_problem(text) {
        None => {
            rec.id = mail_auth::mta_sts::MtaSts::parse(text.as_bytes())
                .ok()
                .map(|m| m.id);
        }
        Some(why) => findings.push(Finding::new(
            finding::MTASTS_RECORD_INVALID,
            format!("_mta-sts.{domain} \"{text}\": {why}"),
        )),
    }
    rec
}

/// Why an `_mta-sts` record is invalid (RFC 8461 §3.1), or `None`. mail-auth's parser
/// decides validity; the id syntax, which it does not check, is checked here.
fn record_problem(text: &str) -> Option<String> {
    if !text.starts_with("v=STSv1;") && text != "v=STSv1" {
        return Some("the record must start with \"v=STSv1;\"".into());
    }
    let mut id = None;
    for field in text.split(';').map(str::trim).filter(|f| !f.is_empty()) {
        let Some((k, v)) = field.split_once('=') else {
            return Some(format!("\"{field}\" is not key=value"));
        };
        if k.trim() == "id" {
            if id.is_some() {
                return Some("more than one id=".into());
            }
            id = Some(v.trim().to_owned());
        }
    }
    let Some(id) = id else {
        return Some("no id= field".into());
    };
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Some(format!("id \"{id}\" is not 1 to 32 letters and digits"));
    }
    if mail_auth::mta_sts::MtaSts::parse(text.as_bytes()).is_err() {
        return Some("the record does not parse".into());
    }
    None
}

fn record_response(fetch: &mut PolicyFetch, r: &HttpsResponse) {
    fetch.peer = Some(r.peer);
    fetch.tls_version = Some(r.tls.version.clone());
    match &r.tls.verification {
        Verification::Verified => fetch.certificate_valid = Some(true),
        Verification::Failed { reason, .. } => {
            fetch.certificate_valid = Some(false);
            fetch.certificate_error = Some(reason.clone());
        }
        Verification::NotPerformed { reason } => {
            fetch.certificate_valid = Some(false);
            fetch.certificate_error = Some(reason.clone());
        }
    }
    if let Some(leaf) = r.tls.chain.first() {
        fetch.certificate_names = leaf.names();
    }
    fetch.status = Some(r.status);
    fetch.location = r.header("location").map(str::to_owned);
    fetch.content_type = r.header("content-type").map(str::to_owned);
    fetch.size = r.body.len();
    fetch.truncated = r.body_truncated;
    fetch.body = String::from_utf8_lossy(&r.body).into_owned();
}

fn examine_response(host: &str, url: &str, fetch: &PolicyFetch, findings: &mut Vec<Finding>) {
    if fetch.certificate_valid == Some(false) {
        findings.push(Finding::new(
            finding::MTASTS_POLICY_CERTIFICATE,
            format!(
                "{host}: {}",
                fetch
                    .certificate_error
                    .as_deref()
                    .unwrap_or("certificate not verified")
            ),
        ));
    }
    let status = fetch.status.unwrap_or_default();
    if status != 200 {
        let detail = match &fetch.location {
            Some(loc) if (300..400).contains(&status) => {
                format!("GET {url} answered {status}, a redirect to {loc} (not followed)")
            }
            _ => format!("GET {url} answered {status}"),
        };
        findings.push(Finding::new(finding::MTASTS_POLICY_HTTP_STATUS, detail));
        return;
    }
    let media = fetch.content_type.as_deref().map(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    if media.as_deref() != Some("text/plain") {
        findings.push(Finding::new(
            finding::MTASTS_POLICY_CONTENT_TYPE,
            match &fetch.content_type {
                Some(ct) => format!("served as \"{ct}\", not text/plain"),
                None => "served without a Content-Type".to_owned(),
            },
        ));
    }
    if fetch.truncated {
        findings.push(Finding::new(
            finding::MTASTS_POLICY_TOO_LARGE,
            format!("{url} is larger than {MAX_POLICY_SIZE} octets"),
        ));
    }
}

fn examine_policy(p: &Policy, findings: &mut Vec<Finding>) {
    for e in &p.errors {
        findings.push(Finding::new(finding::MTASTS_POLICY_SYNTAX, e.clone()));
    }
    if let Some(why) = &p.max_age_invalid {
        findings.push(Finding::new(finding::MTASTS_MAX_AGE_INVALID, why.clone()));
    }
    if !p.is_valid() {
        return;
    }
    if let Some(age) = p.max_age
        && age < SHORT_MAX_AGE
    {
        findings.push(Finding::new(
            finding::MTASTS_MAX_AGE_SHORT,
            format!("max_age: {age} ({})", human_duration(age)),
        ));
    }
    match p.mode.as_deref() {
        Some("testing") => findings.push(Finding::new(
            finding::MTASTS_MODE_TESTING,
            "mode: testing".to_owned(),
        )),
        Some("none") => findings.push(Finding::new(
            finding::MTASTS_MODE_NONE,
            "mode: none".to_owned(),
        )),
        _ => {}
    }
}

/// `90061` → `1d 1h 1m 1s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut parts = Vec::new();
    for (n, u) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            parts.push(format!("{n}{u}"));
        }
    }
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// Parses a policy file (RFC 8461 §3.2): `key: value` lines ended by LF or CRLF, field
/// names case-sensitive, unknown fields ignored, `mx` repeatable, the others once.
pub fn parse_policy(text: &str) -> Policy {
    let mut p = Policy::default();
    let mut seen_max_age = false;
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let lineno = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            p.errors.push(format!(
                "line {lineno} \"{}\" is not \"key: value\"",
                clip(line)
            ));
            continue;
        };
        let value = value.trim_matches([' ', '\t']);
        let once = |slot: &mut Option<String>, errors: &mut Vec<String>| {
            if slot.is_some() {
                errors.push(format!("line {lineno}: {key} appears more than once"));
            } else {
                *slot = Some(value.to_owned());
            }
        };
        match key {
            "version" => {
                once(&mut p.version, &mut p.errors);
                if value != "STSv1" {
                    p.errors.push(format!(
                        "line {lineno}: version \"{}\" is not STSv1",
                        clip(value)
                    ));
                }
            }
            "mode" => {
                once(&mut p.mode, &mut p.errors);
                if !matches!(value, "enforce" | "testing" | "none") {
                    p.errors.push(format!(
                        "line {lineno}: mode \"{}\" is not enforce, testing or none",
                        clip(value)
                    ));
                }
            }
            "max_age" => {
                if seen_max_age {
                    p.errors
                        .push(format!("line {lineno}: max_age appears more than once"));
                    continue;
                }
                seen_max_age = true;
                if value.is_empty()
                    || value.len() > 10
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    p.max_age_invalid = Some(format!(
                        "max_age \"{}\" is not a number of 1 to 10 digits",
                        clip(value)
                    ));
                } else if let Ok(age) = value.parse::<u64>() {
                    p.max_age = Some(age);
                    if age > MAX_MAX_AGE {
                        p.max_age_invalid = Some(format!(
                            "max_age {age} is more than {MAX_MAX_AGE} (one year)"
                        ));
                    }
                }
            }
            "mx" => {
                if let Some(why) = mx_pattern_problem(value) {
                    p.errors
                        .push(format!("line {lineno}: mx \"{}\": {why}", clip(value)));
                } else if p.mx.len() < MAX_MX_PATTERNS {
                    p.mx.push(value.to_ascii_lowercase());
                }
            }
            other => {
                let known = ["version", "mode", "max_age", "mx"];
                if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(other.trim())) {
                    p.errors.push(format!(
                        "line {lineno}: \"{}\" is not \"{k}\" (field names are case-sensitive and take no spaces before the colon)",
                        clip(other)
                    ));
                } else if extension_name_ok(other) {
                    if p.unknown.len() < 20 {
                        p.unknown.push(other.to_owned());
                    }
                } else {
                    p.errors.push(format!(
                        "line {lineno}: \"{}\" is not a field name",
                        clip(other)
                    ));
                }
            }
        }
    }
    if p.version.is_none() {
        p.errors.push("no version field".into());
    }
    if p.mode.is_none() {
        p.errors.push("no mode field".into());
    }
    if !seen_max_age {
        p.errors.push("no max_age field".into());
    }
    if matches!(p.mode.as_deref(), Some("enforce" | "testing")) && p.mx.is_empty() {
        p.errors.push(format!(
            "mode {} without any mx field: no MX host can match",
            p.mode.as_deref().unwrap_or_default()
        ));
    }
    p
}

fn extension_name_ok(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

fn mx_pattern_problem(v: &str) -> Option<&'static str> {
    let name = v.strip_prefix("*.").unwrap_or(v);
    if name.is_empty() {
        return Some("empty");
    }
    if name.contains('*') {
        return Some("a wildcard is allowed only as the whole left-most label (*.example.com)");
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > 253 {
        return Some("longer than 253 octets");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Some("not a domain name (empty or over-long label)");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Some("not a domain name (characters other than letters, digits, hyphens)");
        }
    }
    None
}

/// Whether MX host `host` matches policy pattern `pattern` (RFC 8461 §4.1): equal ignoring
/// case, or `*.rest` where the host is exactly one label followed by `.rest`.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(rest) => host
            .strip_suffix(rest)
            .and_then(|h| h.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern == host,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(mx_matches("mx1.example.test", "MX1.example.test."));
        assert!(mx_matches("*.example.test", "mx1.example.test"));
        assert!(!mx_matches("*.example.test", "example.test"));
        assert!(!mx_matches("*.example.test", "a.b.example.test"));
        assert!(!mx_matches("*.example.test", "mx1.otherexample.test"));
        assert!(!mx_matches("mx1.example.test", "mx2.example.test"));
    }

    #[test]
    fn good_policy_with_crlf_and_unknown_fields() {
        let p = parse_policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.backup.example.test\r\nmax_age: 604800\r\nx-note: hi\r\n",
        );
        assert!(p.is_valid(), "{:?}", p.errors);
        assert_eq!(p.mode.as_deref(), Some("enforce"));
        assert_eq!(p.mx, vec!["mx1.example.test", "*.backup.example.test"]);
        assert_eq!(p.max_age, Some(604_800));
        assert_eq!(p.unknown, vec!["x-note"]);
    }

    #[test]
    fn broken_policies_are_explained() {
        let p = parse_policy("version: STSv1\nMode: enforce\nmax_age: 86400\nmx: a.test\n");
        assert!(!p.is_valid());
        assert!(
            p.errors.iter().any(|e| e.contains("case-sensitive")),
            "{:?}",
            p.errors
        );
        assert!(p.errors.iter().any(|e| e == "no mode field"));

        let p = parse_policy("version: STSv1\nmode: enforce\nmax_age: 99999999999\nmx: a.test\n");
        assert!(p.max_age_invalid.is_some());
        let p = parse_policy("version: STSv1\nmode: enforce\nmax_age: 31557601\nmx: a.test\n");
        assert!(p.max_age_invalid.is_some());
        let p = parse_policy("version: STSv1\nmode: testing\nmax_age: 86400\n");
        assert!(p.errors.iter().any(|e| e.contains("without any mx")));
        let p = parse_policy("version: STSv1\nmode: enforce\nmode: none\nmax_age: 1\nmx: a.test\n");
        assert!(p.errors.iter().any(|e| e.contains("more than once")));
        let p = parse_policy("version: STSv2\nmode: strict\nmax_age: 1\nmx: a*.test\nbogus line\n");
        assert_eq!(p.errors.len(), 4, "{:?}", p.errors);
        let p = parse_policy("<html>Error opening '.well-known/mta-sts.txt'</html>");
        assert!(!p.is_valid());
    }

    #[test]
    fn record_syntax() {
        assert_eq!(record_problem("v=STSv1; id=20160831085700Z;"), None);
        assert_eq!(record_problem("v=STSv1;id=abc"), None);
        assert!(record_problem("v=STSv1; id=2016-08-31").is_some());
        assert!(record_problem("v=STSv1;").is_some());
        assert!(record_problem("v=STSv1; id=a; id=b").is_some());
        assert!(record_problem(&format!("v=STSv1; id={}", "a".repeat(33))).is_some());
        assert!(record_problem("v=STSv1 id=abc").is_some());
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(90_061), "1d 1h 1m 1s");
        assert_eq!(human_duration(0), "0s");
    }
}
