//! The domain-level parts of `mailscope check`: MX with forward-confirmed reverse DNS,
//! MTA-STS (record, policy over HTTPS, policy against the MX hosts), TLS-RPT and BIMI.
//! Each `report_*` function runs its check through the command's DNS handle, prints one
//! compact block (`check_result` with structured detail) and its findings, records the
//! area's verdict, and returns it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use mailscope_mailauth::bimi::{self, BimiReport};
use mailscope_mailauth::mtasts::{self, MtaStsOptions, MtaStsReport, human_duration};
use mailscope_mailauth::mx::{self, Fcrdns, MxReport, Routing};
use mailscope_mailauth::tlsrpt::{self, TlsRptReport};
use serde_json::{Value, json};

use super::CheckOutput;
use crate::UsageError;

/// MTA-STS fetch options of `mailscope check`.
#[derive(Debug, Clone, Args)]
pub struct MtaStsArgs {
    /// HTTPS port of the MTA-STS policy host mta-sts.DOMAIN (for test servers; senders
    /// always use 443).
    #[arg(long, value_name = "PORT", default_value_t = 443)]
    pub mta_sts_port: u16,
    /// Trust the CA certificates in this PEM file, in addition to the public roots, when
    /// verifying the MTA-STS policy host (repeatable; for private CAs and tests).
    #[arg(long = "tls-ca-path", value_name = "FILE")]
    pub tls_ca_path: Vec<PathBuf>,
    /// Seconds allowed for fetching the MTA-STS policy (connect, TLS, response).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub mta_sts_timeout: f64,
}

impl MtaStsArgs {
    /// The library options, validated (timeout range, port, CA files loadable): call
    /// before starting the checks so a bad option is a usage error, not a finding.
    pub fn options(&self) -> Result<MtaStsOptions> {
        if !(self.mta_sts_timeout.is_finite()
            && self.mta_sts_timeout > 0.0
            && self.mta_sts_timeout <= 600.0)
        {
            return Err(UsageError(format!(
                "--mta-sts-timeout must be between 0 and 600 seconds, not {}",
                self.mta_sts_timeout
            ))
            .into());
        }
        if self.mta_sts_port == 0 {
            return Err(UsageError("--mta-sts-port must be 1 to 65535".into()).into());
        }
        // Load the CA files once now so an unreadable file is reported up front.
        mailscope_net::TlsClient::new(&mailscope_net::TlsClientOptions {
            extra_ca_files: self.tls_ca_path.clone(),
            ..Default::default()
        })
        .map_err(|e| UsageError(format!("--tls-ca-path: {e}")))?;
        Ok(MtaStsOptions {
            port: self.mta_sts_port,
            ca_files: self.tls_ca_path.clone(),
            timeout: Duration::from_secs_f64(self.mta_sts_timeout),
        })
    }
}

/// MX hosts with their addresses and FCrDNS. Returns the verdict and the hosts (name and
/// addresses) for the checks that follow (MTA-STS, DANE).
pub async fn report_mx(
    out: &mut CheckOutput,
    domain: &str,
) -> (String, Vec<(String, Vec<IpAddr>)>) {
    let dns = out.dns();
    let r = mx::check(&dns, domain).await;
    let verdict = r.verdict().to_owned();
    out.result("mx", &r.domain, &verdict, &mx_text(&r), mx_detail(&r));
    for f in &r.findings {
        out.finding(f);
    }
    out.verdict("mx", &verdict);
    (verdict, r.host_addresses())
}

fn mx_text(r: &MxReport) -> String {
    let mut t = String::new();
    match &r.routing {
        Routing::NullMx => {
            t.push_str("null MX (MX 0 .): the domain receives no mail\n");
            return t;
        }
        Routing::Nowhere { nxdomain: true } => {
            t.push_str("the domain does not exist (NXDOMAIN)\n");
            return t;
        }
        Routing::Nowhere { nxdomain: false } => {
            t.push_str("no MX and no A/AAAA record: mail cannot be delivered\n");
            return t;
        }
        Routing::Failed(e) => {
            t.push_str(&format!("MX look-up failed: {e}\n"));
            return t;
        }
        Routing::Implicit => {
            t.push_str("no MX record: implicit MX, mail goes to the domain's own address\n")
        }
        Routing::Explicit => {}
    }
    for h in &r.hosts {
        let mut head = format!("MX {} {}", h.preference, h.name);
        if let Some(c) = &h.cname {
            head.push_str(&format!(" (alias of {c})"));
        }
        if h.ip_literal {
            t.push_str(&format!("{head}: an IP address, not a host name\n"));
            continue;
        }
        if h.addresses.is_empty() {
            t.push_str(&format!(
                "{head}: no address (A {}, AAAA {})\n",
                h.a_outcome, h.aaaa_outcome
            ));
            continue;
        }
        t.push_str(&format!("{head}\n"));
        for a in &h.addresses {
            let rdns = match &a.fcrdns {
                Fcrdns::Confirmed { name } => format!("PTR {name}, confirmed"),
                Fcrdns::Mismatch { .. } => {
                    format!("PTR {}, does not resolve back", a.ptr.join(", "))
                }
                Fcrdns::NoPtr => "no PTR".to_owned(),
                Fcrdns::Failed(e) => format!("PTR look-up failed: {e}"),
            };
            let scope = if a.scope == mx::Scope::Public {
                String::new()
            } else {
                format!(" [{}]", a.scope.name())
            };
            t.push_str(&format!("  {}{scope}: {rdns}\n", a.ip));
        }
        if h.addresses_dropped > 0 {
            t.push_str(&format!(
                "  ({} more address(es) not checked)\n",
                h.addresses_dropped
            ));
        }
    }
    if r.hosts_dropped > 0 {
        t.push_str(&format!(
            "({} more MX host(s) not checked)\n",
            r.hosts_dropped
        ));
    }
    t
}

fn mx_detail(r: &MxReport) -> Value {
    let routing = match &r.routing {
        Routing::Explicit => "mx",
        Routing::Implicit => "implicit",
        Routing::NullMx => "null-mx",
        Routing::Nowhere { nxdomain: true } => "nxdomain",
        Routing::Nowhere { nxdomain: false } => "none",
        Routing::Failed(_) => "failed",
    };
    let hosts: Vec<Value> = r
        .hosts
        .iter()
        .map(|h| {
            let addrs: Vec<Value> = h
                .addresses
                .iter()
                .map(|a| {
                    let (fcrdns_name, forward) = match &a.fcrdns {
                        Fcrdns::Confirmed { name } => (Some(name.clone()), Vec::new()),
                        Fcrdns::Mismatch { names } => (
                            None,
                            names
                                .iter()
                                .map(|(n, ips)| json!({ "name": n, "addresses": ips }))
                                .collect(),
                        ),
                        _ => (None, Vec::new()),
                    };
                    json!({
                        "ip": a.ip, "scope": a.scope.name(), "ptr": a.ptr,
                        "fcrdns": a.fcrdns.name(), "confirmed_name": fcrdns_name,
                        "forward": forward,
                        "error": match &a.fcrdns { Fcrdns::Failed(e) => Some(e.clone()), _ => None },
                    })
                })
                .collect();
            json!({
                "preference": h.preference, "name": h.name, "cname": h.cname,
                "ip_literal": h.ip_literal, "a": h.a_outcome, "aaaa": h.aaaa_outcome,
                "addresses": addrs, "addresses_dropped": h.addresses_dropped,
            })
        })
        .collect();
    let routing_error = match &r.routing {
        Routing::Failed(e) => Some(e.clone()),
        _ => None,
    };
    json!({ "routing": routing, "error": routing_error, "hosts": hosts,
            "hosts_dropped": r.hosts_dropped })
}

/// MTA-STS: the record, the policy fetched over HTTPS, and the policy against `mx_hosts`
/// (as returned by [`report_mx`]). Returns the verdict.
pub async fn report_mta_sts(
    out: &mut CheckOutput,
    domain: &str,
    mx_hosts: &[(String, Vec<IpAddr>)],
    args: &MtaStsArgs,
) -> String {
    let opts = match args.options() {
        Ok(o) => o,
        Err(e) => {
            out.note(&format!("MTA-STS not checked: {e}"));
            out.verdict("mta-sts", "error");
            return "error".into();
        }
    };
    let dns = out.dns();
    let hosts: Vec<String> = mx_hosts.iter().map(|(h, _)| h.clone()).collect();
    let r = match mtasts::check(&dns, domain, &hosts, &opts).await {
        Ok(r) => r,
        Err(e) => {
            out.note(&format!("MTA-STS not checked: {e}"));
            out.verdict("mta-sts", "error");
            return "error".into();
        }
    };
    let verdict = r.verdict().to_owned();
    out.result(
        "mta-sts",
        &r.domain,
        &verdict,
        &sts_text(&r),
        sts_detail(&r),
    );
    for f in &r.findings {
        out.finding(f);
    }
    out.verdict("mta-sts", &verdict);
    verdict
}

fn sts_text(r: &MtaStsReport) -> String {
    let mut t = String::new();
    match r.record.records.as_slice() {
        [] => t.push_str(&format!(
            "no _mta-sts.{} record ({})\n",
            r.domain, r.record.outcome
        )),
        [one] => t.push_str(&format!("record: {one}\n")),
        many => t.push_str(&format!("{} records: {}\n", many.len(), many.join(" | "))),
    }
    let Some(f) = &r.fetch else {
        return t;
    };
    if let Some(e) = &f.error {
        t.push_str(&format!("policy {}: {e}\n", f.url));
        return t;
    }
    let mut line = format!("policy {}", f.url);
    if let Some(s) = f.status {
        line.push_str(&format!(" → {s}"));
    }
    if let Some(ct) = &f.content_type {
        line.push_str(&format!(", {ct}"));
    }
    line.push_str(&format!(", {} octets", f.size));
    if let Some(v) = &f.tls_version {
        line.push_str(&format!(", {v}"));
    }
    match (f.certificate_valid, &f.certificate_error) {
        (Some(true), _) => line.push_str(", certificate valid"),
        (_, Some(e)) => line.push_str(&format!(", certificate NOT valid: {e}")),
        _ => {}
    }
    t.push_str(&line);
    t.push('\n');
    if let Some(loc) = &f.location {
        t.push_str(&format!("redirects to {loc} (senders do not follow it)\n"));
    }
    if let Some(p) = &r.policy {
        if p.is_valid() {
            t.push_str(&format!(
                "mode {}, max_age {} ({}), mx: {}\n",
                p.mode.as_deref().unwrap_or("?"),
                p.max_age.unwrap_or_default(),
                human_duration(p.max_age.unwrap_or_default()),
                if p.mx.is_empty() {
                    "(none)".to_owned()
                } else {
                    p.mx.join(", ")
                }
            ));
            let enforce = p.mode.as_deref() == Some("enforce");
            for m in &r.matches {
                match &m.pattern {
                    Some(pat) => t.push_str(&format!("MX {}: allowed by {pat}\n", m.host)),
                    None => t.push_str(&format!(
                        "MX {}: NOT allowed by the policy{}\n",
                        m.host,
                        if enforce {
                            " (senders will refuse to deliver to it)"
                        } else {
                            ""
                        }
                    )),
                }
            }
        } else {
            t.push_str("the policy is invalid; senders discard it\n");
        }
    }
    t
}

fn sts_detail(r: &MtaStsReport) -> Value {
    let fetch = r.fetch.as_ref().map(|f| {
        json!({
            "url": f.url, "host_lookup": f.host_outcome, "addresses": f.addresses,
            "peer": f.peer.map(|p| p.to_string()), "error": f.error,
            "tls_version": f.tls_version, "certificate_valid": f.certificate_valid,
            "certificate_error": f.certificate_error, "certificate_names": f.certificate_names,
            "status": f.status, "location": f.location, "content_type": f.content_type,
            "size": f.size, "truncated": f.truncated, "body": f.body,
        })
    });
    let policy = r.policy.as_ref().map(|p| {
        json!({
            "valid": p.is_valid(), "version": p.version, "mode": p.mode,
            "max_age": p.max_age, "mx": p.mx, "unknown_fields": p.unknown,
            "errors": p.errors, "max_age_invalid": p.max_age_invalid,
        })
    });
    let matches: Vec<Value> = r
        .matches
        .iter()
        .map(|m| json!({ "host": m.host, "pattern": m.pattern, "allowed": m.pattern.is_some() }))
        .collect();
    json!({
        "record": { "lookup": r.record.outcome, "records": r.record.records,
                    "other_records": r.record.other_records, "id": r.record.id },
        "fetch": fetch, "policy": policy, "mx": matches,
    })
}

/// TLS-RPT: the `_smtp._tls` record. Returns the verdict.
pub async fn report_tls_rpt(out: &mut CheckOutput, domain: &str) -> String {
    let dns = out.dns();
    let r: TlsRptReport = tlsrpt::check(&dns, domain).await;
    let verdict = r.verdict().to_owned();
    let mut text = match r.records.as_slice() {
        [] => format!("no _smtp._tls.{} record ({})\n", r.domain, r.outcome),
        [one] => format!("record: {one}\n"),
        many => format!("{} records: {}\n", many.len(), many.join(" | ")),
    };
    if !r.rua.is_empty() {
        text.push_str(&format!("reports go to: {}\n", r.rua.join(", ")));
    }
    let detail = json!({ "lookup": r.outcome, "records": r.records,
                         "other_records": r.other_records, "rua": r.rua });
    out.result("tls-rpt", &r.domain, &verdict, &text, detail);
    for f in &r.findings {
        out.finding(f);
    }
    out.verdict("tls-rpt", &verdict);
    verdict
}

/// BIMI: the `default._bimi` record and the DMARC enforcement it needs. Returns the
/// verdict.
pub async fn report_bimi(out: &mut CheckOutput, domain: &str) -> String {
    let dns = out.dns();
    let r: BimiReport = bimi::check(&dns, domain).await;
    let verdict = r.verdict().to_owned();
    let mut text = match r.records.as_slice() {
        [] => format!("no default._bimi.{} record ({})\n", r.domain, r.outcome),
        [one] => format!("record: {one}\n"),
        many => format!("{} records: {}\n", many.len(), many.join(" | ")),
    };
    if let Some(l) = &r.logo {
        text.push_str(&format!("logo: {l}\n"));
    }
    if let Some(a) = &r.authority {
        text.push_str(&format!("evidence (VMC/CMC): {a}\n"));
    }
    if let Some(d) = &r.dmarc {
        text.push_str(&format!(
            "DMARC ({}): policy {} at pct={}{}\n",
            d.name,
            d.policy,
            d.pct,
            if d.enforced {
                ", enforced as BIMI requires"
            } else {
                ", NOT at enforcement: no logo will be shown"
            }
        ));
    }
    let dmarc = r.dmarc.as_ref().map(|d| {
        json!({ "name": d.name, "record": d.record, "policy": d.policy, "pct": d.pct,
                "enforced": d.enforced })
    });
    let detail = json!({ "lookup": r.outcome, "records": r.records, "logo": r.logo,
                         "authority": r.authority, "declined": r.declined, "dmarc": dmarc });
    out.result("bimi", &r.domain, &verdict, &text, detail);
    for f in &r.findings {
        out.finding(f);
    }
    out.verdict("bimi", &verdict);
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailscope_mailauth::mtasts::{MxMatch, PolicyFetch, StsRecord, parse_policy};
    use mailscope_mailauth::mx::{MxAddress, MxHost, Scope};

    #[test]
    fn mx_block_names_hosts_addresses_and_rdns() {
        let ip: IpAddr = "192.0.2.25".parse().expect("ip");
        let r = MxReport {
            domain: "example.test".into(),
            routing: Routing::Explicit,
            hosts: vec![MxHost {
                preference: 10,
                name: "mx.example.test".into(),
                cname: None,
                ip_literal: false,
                a_outcome: "answer".into(),
                aaaa_outcome: "nodata".into(),
                addresses: vec![MxAddress {
                    ip,
                    scope: Scope::Reserved("documentation"),
                    ptr: vec!["other.example.test".into()],
                    fcrdns: Fcrdns::Mismatch {
                        names: vec![("other.example.test".into(), Vec::new())],
                    },
                }],
                addresses_dropped: 0,
            }],
            hosts_dropped: 0,
            findings: Vec::new(),
        };
        let text = mx_text(&r);
        assert_eq!(
            text,
            "MX 10 mx.example.test\n  192.0.2.25 [documentation]: PTR other.example.test, does not resolve back\n"
        );
        let detail = mx_detail(&r);
        assert_eq!(detail["hosts"][0]["addresses"][0]["fcrdns"], "mismatch");
        assert_eq!(detail["routing"], "mx");
    }

    #[test]
    fn mta_sts_block_shows_policy_and_each_mx() {
        let policy =
            parse_policy("version: STSv1\nmode: enforce\nmx: mx1.example.test\nmax_age: 86400\n");
        let r = MtaStsReport {
            domain: "example.test".into(),
            record: StsRecord {
                outcome: "answer".into(),
                records: vec!["v=STSv1; id=1".into()],
                other_records: 0,
                id: Some("1".into()),
            },
            fetch: Some(PolicyFetch {
                url: "https://mta-sts.example.test/.well-known/mta-sts.txt".into(),
                status: Some(200),
                content_type: Some("text/plain".into()),
                size: 70,
                tls_version: Some("TLSv1.3".into()),
                certificate_valid: Some(true),
                ..Default::default()
            }),
            policy: Some(policy),
            matches: vec![
                MxMatch {
                    host: "mx1.example.test".into(),
                    pattern: Some("mx1.example.test".into()),
                },
                MxMatch {
                    host: "mx2.example.test".into(),
                    pattern: None,
                },
            ],
            findings: Vec::new(),
        };
        let text = sts_text(&r);
        assert!(text.contains("record: v=STSv1; id=1\n"), "{text}");
        assert!(
            text.contains("→ 200, text/plain, 70 octets, TLSv1.3, certificate valid"),
            "{text}"
        );
        assert!(text.contains("mode enforce, max_age 86400 (1d), mx: mx1.example.test"));
        assert!(text.contains(
            "MX mx2.example.test: NOT allowed by the policy (senders will refuse to deliver to it)"
        ));
        assert_eq!(sts_detail(&r)["mx"][1]["allowed"], false);
    }
}
