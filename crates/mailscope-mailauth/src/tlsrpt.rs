//! SMTP TLS Reporting (RFC 8460): the `_smtp._tls` TXT record that tells senders where to
//! report TLS failures (MTA-STS, DANE, STARTTLS) with the domain's MX hosts.
//!
//! Validity is decided by mail-auth's `TlsRpt` parser; the lints here explain what it
//! refuses (a missing or misplaced version, destinations that are neither `mailto:` nor
//! `https:`).

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::mta_sts::{ReportUri, TlsRpt};
use mailscope_proto::Severity;
use mailscope_proto::finding::{self, Finding};

use crate::dns::{Answer, Dns};

/// At most this many rua destinations are listed.
pub const MAX_RUA: usize = 20;

/// The TLS-RPT check of a domain.
#[derive(Debug, Clone)]
pub struct TlsRptReport {
    /// The domain.
    pub domain: String,
    /// Outcome of the TXT look-up.
    pub outcome: String,
    /// Records starting with `v=TLSRPTv1` (lossy UTF-8).
    pub records: Vec<String>,
    /// Other TXT records at the name (ignored by senders).
    pub other_records: usize,
    /// Report destinations of the one valid record, as URIs.
    pub rua: Vec<String>,
    /// What is wrong or worth knowing.
    pub findings: Vec<Finding>,
}

impl TlsRptReport {
    /// One word: `none`, `ok`, `error`, `warning`, `temperror`.
    pub fn verdict(&self) -> &'static str {
        if self.outcome != "answer" && self.outcome != "nodata" && self.outcome != "nxdomain" {
            return "temperror";
        }
        if self.records.is_empty() {
            return "none";
        }
        match self.findings.iter().map(|f| f.severity).max() {
            Some(s) if s >= Severity::Error => "error",
            Some(Severity::Warning) => "warning",
            _ => "ok",
        }
    }
}

/// Looks up and checks `_smtp._tls.DOMAIN`.
pub async fn check(dns: &Dns, domain: &str) -> TlsRptReport {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let name = format!("_smtp._tls.{domain}");
    let answer = dns.txt(&name).await;
    examine(&domain, &name, &answer)
}

fn examine(domain: &str, name: &str, answer: &Answer<Vec<u8>>) -> TlsRptReport {
    let mut r = TlsRptReport {
        domain: domain.to_owned(),
        outcome: answer.outcome(),
        records: Vec::new(),
        other_records: 0,
        rua: Vec::new(),
        findings: Vec::new(),
    };
    if let Answer::Failed(e) = answer {
        r.findings.push(Finding::new(
            finding::DOMAIN_DNS_LOOKUP_FAILED,
            format!("TXT {name}: {e}"),
        ));
        return r;
    }
    for rec in answer.records() {
        // §3: records that do not begin with "v=TLSRPTv1;" are discarded.
        if rec.starts_with(b"v=TLSRPTv1") {
            r.records.push(String::from_utf8_lossy(rec).into_owned());
        } else {
            r.other_records += 1;
        }
    }
    if r.records.is_empty() {
        r.findings.push(Finding::new(
            finding::TLSRPT_NONE,
            format!("no v=TLSRPTv1 record at {name}"),
        ));
        return r;
    }
    if r.records.len() > 1 {
        r.findings.push(Finding::new(
            finding::TLSRPT_RECORD_MULTIPLE,
            format!(
                "{name} has {} v=TLSRPTv1 records: {}",
                r.records.len(),
                r.records.join(" | ")
            ),
        ));
        return r;
    }
    let text = r.records.first().cloned().unwrap_or_default();
    let lint = lint_record(&text);
    for bad in &lint.bad_rua {
        r.findings.push(Finding::new(
            finding::TLSRPT_RUA_INVALID,
            format!("{name}: rua destination {bad}"),
        ));
    }
    match TlsRpt::parse(text.as_bytes()) {
        Ok(parsed) if lint.problem.is_none() => {
            r.rua = parsed
                .rua
                .iter()
                .take(MAX_RUA)
                .map(|u| match u {
                    ReportUri::Mail(m) => format!("mailto:{m}"),
                    ReportUri::Http(h) => h.clone(),
                })
                .collect();
        }
        Ok(_) | Err(_) => {
            let why = lint
                .problem
                .unwrap_or_else(|| "no usable rua= destination".to_owned());
            r.findings.push(Finding::new(
                finding::TLSRPT_RECORD_INVALID,
                format!("{name} \"{text}\": {why}"),
            ));
        }
    }
    r
}

struct Lint {
    problem: Option<String>,
    bad_rua: Vec<String>,
}

/// Syntax checks mail-auth's parser does not explain.
fn lint_record(text: &str) -> Lint {
    let mut lint = Lint {
        problem: None,
        bad_rua: Vec::new(),
    };
    if !text.starts_with("v=TLSRPTv1;") && text.trim_end() != "v=TLSRPTv1" {
        lint.problem = Some("the record must start with \"v=TLSRPTv1;\"".into());
        return lint;
    }
    let mut rua_seen = false;
    for field in text.split(';').map(str::trim).filter(|f| !f.is_empty()) {
        let Some((k, v)) = field.split_once('=') else {
            lint.problem = Some(format!("\"{field}\" is not key=value"));
            return lint;
        };
        if k.trim() != "rua" {
            continue;
        }
        if rua_seen {
            lint.problem = Some("more than one rua= field".into());
        }
        rua_seen = true;
        for uri in v.split(',').map(str::trim) {
            let lower = uri.to_ascii_lowercase();
            let ok = if let Some(addr) = lower.strip_prefix("mailto:") {
                addr.split('?')
                    .next()
                    .is_some_and(|a| a.contains('@') && !a.starts_with('@') && !a.ends_with('@'))
            } else if let Some(rest) = lower.strip_prefix("https://") {
                !rest.is_empty() && !rest.starts_with('/')
            } else {
                false
            };
            if !ok && lint.bad_rua.len() < MAX_RUA {
                let why = if lower.starts_with("http://") {
                    "http: is not allowed, use https:"
                } else if lower.starts_with("mailto:") {
                    "not a mail address"
                } else {
                    "neither mailto: nor https:"
                };
                lint.bad_rua.push(format!("\"{uri}\": {why}"));
            }
        }
    }
    if !rua_seen && lint.problem.is_none() {
        lint.problem = Some("no rua= field: senders have nowhere to send reports".into());
    }
    lint
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(records: &[&str]) -> TlsRptReport {
        let answer = Answer::Records(records.iter().map(|r| r.as_bytes().to_vec()).collect());
        examine("example.test", "_smtp._tls.example.test", &answer)
    }

    fn ids(r: &TlsRptReport) -> Vec<&str> {
        r.findings.iter().map(|f| f.kind.id).collect()
    }

    #[test]
    fn good_record() {
        let r = run(&["v=TLSRPTv1; rua=mailto:tls@example.test,https://r.example.test/v1"]);
        assert_eq!(r.verdict(), "ok", "{:?}", r.findings);
        assert_eq!(
            r.rua,
            vec!["mailto:tls@example.test", "https://r.example.test/v1"]
        );
    }

    #[test]
    fn bad_records() {
        let r = run(&["v=TLSRPTv1; rua=http://r.example.test/"]);
        assert_eq!(r.verdict(), "error");
        assert!(ids(&r).contains(&"tls-rpt.rua.invalid"));
        assert!(r.findings.iter().any(|f| f.detail.contains("use https:")));
        let r = run(&["v=TLSRPTv1;"]);
        assert_eq!(ids(&r), vec!["tls-rpt.record.invalid"]);
        assert!(r.findings.iter().any(|f| f.detail.contains("no rua=")));
        let r = run(&["v=TLSRPTv1 rua=mailto:a@b"]);
        assert_eq!(ids(&r), vec!["tls-rpt.record.invalid"]);
        let r = run(&["v=TLSRPTv1; rua=mailto:a@b", "v=TLSRPTv1; rua=mailto:c@d"]);
        assert_eq!(ids(&r), vec!["tls-rpt.record.multiple"]);
        let r = run(&["v=spf1 -all"]);
        assert_eq!(r.verdict(), "none");
        assert_eq!(r.other_records, 1);
    }
}
