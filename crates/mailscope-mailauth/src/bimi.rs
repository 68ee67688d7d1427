//! BIMI (Brand Indicators for Message Identification, draft-brand-indicators-for-message-
//! identification): the `default._bimi` TXT record with the logo location (`l=`, an SVG
//! Tiny PS file over HTTPS) and the evidence document (`a=`, a VMC or CMC), and the DMARC
//! enforcement BIMI requires.
//!
//! The DMARC requirement is checked textually from the `_dmarc` record of the domain (or,
//! when it has none, of its nearest parent that has one, up to two labels; `mailscope dmarc`
//! does the full organizational-domain look-up): p=quarantine or p=reject, pct=100, and for
//! an inherited record sp= not none.

use mailscope_proto::Severity;
use mailscope_proto::finding::{self, Finding};

use crate::dns::{Answer, Dns};

/// The DMARC record BIMI rests on, as far as BIMI cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcPolicy {
    /// Where it was found (`_dmarc.DOMAIN` or a parent's).
    pub name: String,
    /// The record text.
    pub record: String,
    /// The policy that applies to the domain (p=, or sp= for an inherited record).
    pub policy: String,
    /// pct= (100 when absent).
    pub pct: u32,
    /// Whether BIMI's requirement is met.
    pub enforced: bool,
}

/// The BIMI check of a domain.
#[derive(Debug, Clone)]
pub struct BimiReport {
    /// The domain.
    pub domain: String,
    /// Outcome of the TXT look-up at `default._bimi.DOMAIN`.
    pub outcome: String,
    /// Records starting with `v=BIMI1` (lossy UTF-8).
    pub records: Vec<String>,
    /// `l=` of the one record.
    pub logo: Option<String>,
    /// `a=` of the one record.
    pub authority: Option<String>,
    /// The record is a declination (empty `l=` and `a=`).
    pub declined: bool,
    /// The DMARC record found (looked up only when a BIMI record exists).
    pub dmarc: Option<DmarcPolicy>,
    /// What is wrong or worth knowing.
    pub findings: Vec<Finding>,
}

impl BimiReport {
    /// One word: `none`, `declined`, `ok`, `warning`, `error`, `temperror`.
    pub fn verdict(&self) -> &'static str {
        if self.outcome != "answer" && self.outcome != "nodata" && self.outcome != "nxdomain" {
            return "temperror";
        }
        if self.records.is_empty() {
            return "none";
        }
        if self.declined && self.records.len() == 1 {
            return "declined";
        }
        match self.findings.iter().map(|f| f.severity).max() {
            Some(s) if s >= Severity::Error => "error",
            Some(Severity::Warning) => "warning",
            _ => "ok",
        }
    }
}

/// Looks up and checks `default._bimi.DOMAIN`, and the DMARC record it depends on.
pub async fn check(dns: &Dns, domain: &str) -> BimiReport {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let name = format!("default._bimi.{domain}");
    let answer = dns.txt(&name).await;
    let mut r = examine(&domain, &name, &answer);
    if r.records.len() == 1 && !r.declined {
        let dmarc = find_dmarc(dns, &domain).await;
        dmarc_findings(&domain, &dmarc, &mut r.findings);
        r.dmarc = dmarc.ok().flatten();
    }
    r
}

fn examine(domain: &str, name: &str, answer: &Answer<Vec<u8>>) -> BimiReport {
    let mut r = BimiReport {
        domain: domain.to_owned(),
        outcome: answer.outcome(),
        records: Vec::new(),
        logo: None,
        authority: None,
        declined: false,
        dmarc: None,
        findings: Vec::new(),
    };
    if let Answer::Failed(e) = answer {
        r.findings.push(Finding::new(
            finding::DOMAIN_DNS_LOOKUP_FAILED,
            format!("TXT {name}: {e}"),
        ));
        return r;
    }
    r.records = answer
        .records()
        .iter()
        .filter(|t| t.starts_with(b"v=BIMI1"))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    if r.records.is_empty() {
        r.findings.push(Finding::new(
            finding::BIMI_NONE,
            format!("no v=BIMI1 record at {name}"),
        ));
        return r;
    }
    if r.records.len() > 1 {
        r.findings.push(Finding::new(
            finding::BIMI_RECORD_MULTIPLE,
            format!(
                "{name} has {} v=BIMI1 records: {}",
                r.records.len(),
                r.records.join(" | ")
            ),
        ));
        return r;
    }
    let text = r.records.first().cloned().unwrap_or_default();
    let tags = match parse_tags(&text) {
        Ok(t) => t,
        Err(why) => {
            r.findings.push(Finding::new(
                finding::BIMI_RECORD_INVALID,
                format!("{name} \"{text}\": {why}"),
            ));
            return r;
        }
    };
    let get = |k: &str| tags.iter().find(|(t, _)| t == k).map(|(_, v)| v.clone());
    r.logo = get("l").filter(|v| !v.is_empty());
    r.authority = get("a").filter(|v| !v.is_empty());
    if r.logo.is_none() && r.authority.is_none() && get("l").is_some() {
        r.declined = true;
        r.findings.push(Finding::new(
            finding::BIMI_DECLINED,
            format!("{name} \"{text}\" declines BIMI for {domain}"),
        ));
        return r;
    }
    match &r.logo {
        None => r.findings.push(Finding::new(
            finding::BIMI_LOGO_MISSING,
            format!("{name} \"{text}\" has no l= logo location"),
        )),
        Some(l) => {
            if !is_https(l) {
                r.findings
                    .push(Finding::new(finding::BIMI_URL_NOT_HTTPS, format!("l={l}")));
            }
            let path = l.split(['?', '#']).next().unwrap_or_default();
            if !path.to_ascii_lowercase().ends_with(".svg") {
                r.findings
                    .push(Finding::new(finding::BIMI_LOGO_NOT_SVG, format!("l={l}")));
            }
        }
    }
    match &r.authority {
        None => r.findings.push(Finding::new(
            finding::BIMI_AUTHORITY_MISSING,
            format!("{name} has no a= evidence document"),
        )),
        Some(a) if !is_https(a) => r
            .findings
            .push(Finding::new(finding::BIMI_URL_NOT_HTTPS, format!("a={a}"))),
        Some(_) => {}
    }
    r
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        && url.len() > 8
}

/// `tag=value` pairs separated by `;`, `v=BIMI1` first (tag names lower-cased).
fn parse_tags(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for (i, field) in text
        .split(';')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .enumerate()
    {
        let Some((k, v)) = field.split_once('=') else {
            return Err(format!("\"{}\" is not tag=value", clip(field)));
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
        if i == 0 && (k != "v" || v != "BIMI1") {
            return Err("the record must start with v=BIMI1".into());
        }
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("\"{}\" is not a tag name", clip(&k)));
        }
        if tags.iter().any(|(t, _)| *t == k) {
            return Err(format!("tag {k}= appears more than once"));
        }
        if tags.len() < 32 {
            tags.push((k, v));
        }
    }
    Ok(tags)
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The `_dmarc` record of the domain or its nearest parent (down to two labels).
/// `Err` carries a look-up failure.
async fn find_dmarc(dns: &Dns, domain: &str) -> Result<Option<DmarcPolicy>, String> {
    let labels: Vec<&str> = domain.split('.').collect();
    let mut start = 0;
    while labels.len() - start >= 2 || start == 0 {
        let owner = labels.get(start..).unwrap_or_default().join(".");
        let name = format!("_dmarc.{owner}");
        match dns.txt(&name).await {
            Answer::Failed(e) => return Err(format!("TXT {name}: {e}")),
            a => {
                if let Some(rec) = a.records().iter().find(|r| r.starts_with(b"v=DMARC1")) {
                    let text = String::from_utf8_lossy(rec).into_owned();
                    return Ok(Some(dmarc_policy(&name, &text, start > 0)));
                }
            }
        }
        start += 1;
        if start >= labels.len() {
            break;
        }
    }
    Ok(None)
}

fn dmarc_policy(name: &str, text: &str, inherited: bool) -> DmarcPolicy {
    let mut p = None;
    let mut sp = None;
    let mut pct = 100u32;
    for field in text.split(';').map(str::trim) {
        if let Some((k, v)) = field.split_once('=') {
            let v = v.trim().to_ascii_lowercase();
            match k.trim().to_ascii_lowercase().as_str() {
                "p" => p = Some(v),
                "sp" => sp = Some(v),
                "pct" => pct = v.parse().unwrap_or(100).min(100),
                _ => {}
            }
        }
    }
    let policy = if inherited { sp.or(p.clone()) } else { p }.unwrap_or_else(|| "none".into());
    let enforced = matches!(policy.as_str(), "quarantine" | "reject") && pct == 100;
    DmarcPolicy {
        name: name.to_owned(),
        record: text.to_owned(),
        policy,
        pct,
        enforced,
    }
}

fn dmarc_findings(
    domain: &str,
    dmarc: &Result<Option<DmarcPolicy>, String>,
    out: &mut Vec<Finding>,
) {
    match dmarc {
        Err(e) => out.push(Finding::new(finding::DOMAIN_DNS_LOOKUP_FAILED, e.clone())),
        Ok(None) => out.push(Finding::new(
            finding::BIMI_DMARC_NOT_ENFORCED,
            format!("no DMARC record found for {domain} or its parents"),
        )),
        Ok(Some(d)) if !d.enforced => out.push(Finding::new(
            finding::BIMI_DMARC_NOT_ENFORCED,
            format!(
                "{} \"{}\": policy {} at pct={}",
                d.name, d.record, d.policy, d.pct
            ),
        )),
        Ok(Some(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(records: &[&str]) -> BimiReport {
        let answer = Answer::Records(records.iter().map(|r| r.as_bytes().to_vec()).collect());
        examine("example.test", "default._bimi.example.test", &answer)
    }

    fn ids(r: &BimiReport) -> Vec<&str> {
        r.findings.iter().map(|f| f.kind.id).collect()
    }

    #[test]
    fn records() {
        let r = run(&["v=BIMI1; l=https://e.test/logo.svg; a=https://e.test/vmc.pem"]);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.verdict(), "ok");
        let r = run(&["v=BIMI1; l=http://e.test/logo.png"]);
        assert_eq!(
            ids(&r),
            vec![
                "bimi.url.not-https",
                "bimi.logo.not-svg",
                "bimi.authority.missing"
            ]
        );
        assert_eq!(r.verdict(), "error");
        let r = run(&["v=BIMI1; l=; a=;"]);
        assert_eq!(r.verdict(), "declined");
        let r = run(&["v=BIMI1; l"]);
        assert_eq!(ids(&r), vec!["bimi.record.invalid"]);
        let r = run(&["v=BIMI1; a=https://e.test/vmc.pem"]);
        assert_eq!(ids(&r), vec!["bimi.logo.missing"]);
        let r = run(&["v=BIMI1; l=https://a/x.svg", "v=BIMI1; l=https://b/y.svg"]);
        assert_eq!(ids(&r), vec!["bimi.record.multiple"]);
    }

    #[test]
    fn dmarc_requirement() {
        assert!(dmarc_policy("_dmarc.e", "v=DMARC1; p=reject", false).enforced);
        assert!(!dmarc_policy("_dmarc.e", "v=DMARC1; p=reject; pct=50", false).enforced);
        assert!(!dmarc_policy("_dmarc.e", "v=DMARC1; p=none", false).enforced);
        assert!(!dmarc_policy("_dmarc.e", "v=DMARC1; p=reject; sp=none", true).enforced);
        assert!(dmarc_policy("_dmarc.e", "v=DMARC1; p=quarantine; sp=reject", true).enforced);
    }
}
