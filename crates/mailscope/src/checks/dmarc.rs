//! `mailscope dmarc`: which DMARC record applies to a domain (its own or its organisational
//! domain's, found by the DNS tree walk; see `mailscope_mailauth::dmarc`), the record parsed
//! and linted, external report destinations verified (RFC 7489 §7.1); and with `--message`
//! the DMARC result of a message with the alignment of its DKIM and SPF identifiers explained.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use mailscope_mailauth::dmarc::{self as dm, Discovery, Envelope, RecordCheck};
use mailscope_proto::Finding;
use mailscope_proto::finding as fk;
use serde_json::{Value, json};

use super::{CheckOutput, DnsArgs};
use crate::cli::GlobalArgs;
use crate::{ExitCode, UsageError};

/// Examples shown after `--help`.
pub const DMARC_EXAMPLES: &str = "\
Examples:
  mailscope dmarc example.com
  mailscope dmarc example.com --resolver 127.0.0.1:5353 --trace-dns
  mailscope dmarc --message bounce.eml --ip 192.0.2.10 --mail-from bounce@esp.example
  mailscope dmarc example.com --message msg.eml --ip 2001:db8::25 --helo mail.example.com

Without --message: the record at _dmarc.DOMAIN or, when there is none, the organisational
domain's, found by the DNS tree walk of DMARCbis (the one mail-auth's verifier uses; no
Public Suffix List is downloaded: an organisational domain is recognised by its own record or
one label below a psd=y record). The record is linted (p=none, sp, pct, rua/ruf syntax and
size limits, adkim/aspf, fo, several records, syntax errors, missing p) and every rua/ruf
destination in another organisational domain is checked for its authorisation record
DOMAIN._report._dmarc.DESTINATION (RFC 7489 §7.1).

With --message: the DMARC result of that message: its DKIM signatures (verified), SPF for the
MAIL FROM domain from --ip (or the HELO name for the null sender; SPF is skipped without
--ip), and whether each passing identifier is aligned with the From: domain.

Exit status: 0, or 10 with --fail-on when a finding reaches that severity; 1 on a usage error
or an unreadable message.";

/// `mailscope dmarc`.
#[derive(Debug, Args)]
pub struct DmarcArgs {
    /// The domain (with --message: defaults to the From: domain).
    #[arg(value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Evaluate DMARC for this message (RFC 5322, as received; `-` for standard input).
    #[arg(long, value_name = "FILE.eml")]
    pub message: Option<PathBuf>,
    /// The sending client's IP address (SPF is evaluated only with it).
    #[arg(long, value_name = "IP", requires = "message")]
    pub ip: Option<IpAddr>,
    /// The envelope sender (MAIL FROM); empty or absent: the null sender, SPF checks the HELO name.
    #[arg(long, value_name = "ADDR", requires = "message")]
    pub mail_from: Option<String>,
    /// The HELO/EHLO name the client gave.
    #[arg(long, value_name = "NAME", requires = "message")]
    pub helo: Option<String>,
    #[command(flatten)]
    pub dns: DnsArgs,
}

/// Runs `mailscope dmarc`.
pub async fn run(global: &GlobalArgs, args: &DmarcArgs) -> Result<ExitCode> {
    if let Some(path) = &args.message {
        return run_message(global, args, path).await;
    }
    let Some(domain) = args.domain.as_deref() else {
        return Err(UsageError("give a DOMAIN, or --message FILE.eml".into()).into());
    };
    let domain = normalise(domain)?;
    let mut out = CheckOutput::start(global, "dmarc", &domain, &args.dns)?;
    let verdict = report(&mut out, &domain).await;
    out.verdict("dmarc", &verdict);
    Ok(out.finish(global))
}

fn normalise(domain: &str) -> Result<String> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    mailscope_mailauth::dns::check_name(&d)
        .map_err(|e| UsageError(format!("{domain:?} is not a domain name: {e}")))?;
    Ok(d)
}

/// `mailscope check`'s DMARC part; returns the verdict word.
pub async fn report_domain(out: &mut super::CheckOutput, domain: &str) -> String {
    report(out, domain).await
}

fn walk_text(d: &Discovery) -> String {
    d.walk
        .iter()
        .map(|s| {
            format!(
                "_dmarc.{} → {}",
                s.domain,
                if s.records.is_empty() {
                    s.outcome.clone()
                } else {
                    format!("{} DMARC record(s)", s.records.len())
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn where_text(d: &Discovery) -> String {
    match d.applied_at.as_deref() {
        None => String::new(),
        Some(a) if a == d.domain => format!("record of {a} itself"),
        Some(a) if a == d.org_domain => format!(
            "{} has no record of its own; the record of its organisational domain {a} applies (sp= for subdomains)",
            d.domain
        ),
        Some(a) if d.org_domain == d.domain => format!(
            "{} (its own organisational domain) has no record; the public-suffix (psd=y) record of {a} applies",
            d.domain
        ),
        Some(a) => format!(
            "neither {} nor its organisational domain {} has a record; the public-suffix (psd=y) record of {a} applies",
            d.domain, d.org_domain
        ),
    }
}

fn policy_meaning(p: &str) -> &'static str {
    match p {
        "reject" => "refuse mail that fails DMARC",
        "quarantine" => "deliver mail that fails DMARC to spam/quarantine",
        "none" => "monitoring only: mail that fails DMARC is delivered as usual",
        _ => "no valid policy",
    }
}

fn record_text(r: &RecordCheck, d: &Discovery) -> Vec<String> {
    let mut lines = Vec::new();
    let own = d.own();
    let invalid_or_missing = |tag: &str| {
        if r.tags.iter().any(|(t, _)| t == tag) {
            "(invalid)"
        } else {
            "(missing)"
        }
    };
    let p = if r.p.is_empty() {
        invalid_or_missing("p")
    } else {
        r.p.as_str()
    };
    lines.push(format!("p={p}: {}", policy_meaning(&r.p)));
    let sp = if r.sp.is_empty() {
        r.p.as_str()
    } else {
        r.sp.as_str()
    };
    lines.push(format!(
        "sp={}{}: subdomains: {}",
        if sp.is_empty() {
            invalid_or_missing("p")
        } else {
            sp
        },
        if r.sp.is_empty() { " (as p)" } else { "" },
        policy_meaning(sp)
    ));
    if !own {
        lines.push(format!(
            "for {} the sp= policy applies (it is a subdomain of {})",
            d.domain,
            d.applied_at.as_deref().unwrap_or_default()
        ));
    }
    if r.pct < 100 {
        lines.push(format!(
            "pct={}: the policy is applied to {}% of failing mail",
            r.pct, r.pct
        ));
    }
    lines.push(format!(
        "adkim={} aspf={} (alignment: r relaxed = same organisational domain, s strict = same domain)",
        r.adkim, r.aspf
    ));
    let uris = |v: &[dm::ReportUri]| {
        v.iter()
            .map(|u| u.raw.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    lines.push(if r.rua.is_empty() {
        "rua: none (no aggregate reports)".into()
    } else {
        format!("rua (aggregate reports): {}", uris(&r.rua))
    });
    if !r.ruf.is_empty() {
        lines.push(format!(
            "ruf (failure reports, fo={}): {}",
            r.fo,
            uris(&r.ruf)
        ));
    }
    lines
}

fn record_json(r: &RecordCheck) -> Value {
    let uri = |u: &dm::ReportUri| json!({"uri": u.raw, "address": u.address, "domain": u.domain, "size": u.size, "error": u.error});
    json!({
        "record": r.raw, "tags": r.tags.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "p": r.p, "sp": r.sp, "np": r.np, "pct": r.pct, "adkim": r.adkim, "aspf": r.aspf, "fo": r.fo,
        "rua": r.rua.iter().map(uri).collect::<Vec<_>>(),
        "ruf": r.ruf.iter().map(uri).collect::<Vec<_>>(),
        "testing": r.testing, "psd": r.psd, "errors": r.errors, "unknown_tags": r.unknown,
    })
}

fn discovery_json(d: &Discovery) -> Value {
    json!({
        "domain": d.domain, "org_domain": d.org_domain, "applied_at": d.applied_at,
        "records": d.records,
        "walk": d.walk.iter().map(|s| json!({"domain": s.domain, "outcome": s.outcome,
                "records": s.records, "other_txt": s.other})).collect::<Vec<_>>(),
        "failed": d.failed.iter().map(|(n, o)| json!({"name": n, "outcome": o})).collect::<Vec<_>>(),
    })
}

async fn report(out: &mut CheckOutput, domain: &str) -> String {
    let dns = out.dns();
    let d = dm::discover(&dns, domain).await;
    let subject = format!("_dmarc.{domain}");
    for (name, outcome) in &d.failed {
        out.note(&format!(
            "{name}: the look-up failed ({outcome}); the tree walk went on without it"
        ));
    }
    let mut detail = discovery_json(&d);
    if d.records.is_empty() {
        let verdict = if d.failed.is_empty() {
            "missing"
        } else {
            "temperror"
        };
        out.result(
            "dmarc",
            &subject,
            verdict,
            &format!(
                "no DMARC record for {domain} or its organisational domain {}\n{}",
                d.org_domain,
                walk_text(&d)
            ),
            detail,
        );
        if verdict == "missing" {
            out.finding(&Finding::new(
                fk::DMARC_RECORD_MISSING,
                format!("_dmarc.{domain}, _dmarc.{}", d.org_domain),
            ));
        }
        return verdict.into();
    }
    let at = d.applied_at.clone().unwrap_or_default();
    // A failed look-up of a more specific name than the one whose record applies: that name
    // may have its own record, so which policy applies is unknown (RFC 7489 §6.6.3).
    let labels = |n: &str| n.trim_start_matches("_dmarc.").split('.').count();
    let closer_failed: Vec<&str> = d
        .failed
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| labels(n) > labels(&at))
        .collect();
    if !closer_failed.is_empty() {
        out.result(
            "dmarc",
            &subject,
            "temperror",
            &format!(
                "the look-up of {} failed, so the record found at _dmarc.{at} may not be the one that applies\n{}",
                closer_failed.join(", "),
                walk_text(&d)
            ),
            detail,
        );
        return "temperror".into();
    }
    if d.records.len() > 1 {
        out.result(
            "dmarc",
            &subject,
            "invalid",
            &format!(
                "{} DMARC records at _dmarc.{at}: receivers must act as if there were none\n{}",
                d.records.len(),
                d.records.join("\n")
            ),
            detail,
        );
        out.finding(&Finding::new(
            fk::DMARC_RECORD_MULTIPLE,
            format!("_dmarc.{at}: {} records", d.records.len()),
        ));
        return "invalid".into();
    }
    let raw = d.records.first().cloned().unwrap_or_default();
    let r = dm::parse_record(&raw);
    let findings = dm::lint_record(&r, &at);
    // A subdomain (no record of its own) gets sp=, which defaults to p=.
    let effective = if d.own() || r.sp.is_empty() {
        r.p.clone()
    } else {
        r.sp.clone()
    };
    let verdict = if findings
        .iter()
        .any(|f| f.kind.id == "dmarc.record.syntax" || f.kind.id == "dmarc.record.missing-p")
    {
        "invalid"
    } else {
        match effective.as_str() {
            "reject" | "quarantine" if r.pct < 100 => "partial",
            "reject" | "quarantine" => "enforce",
            _ => "monitoring",
        }
    };
    let mut lines = vec![raw.clone(), where_text(&d)];
    lines.extend(record_text(&r, &d));
    if let Value::Object(m) = &mut detail {
        m.insert("parsed".into(), record_json(&r));
        m.insert("effective_policy".into(), json!(effective));
    }
    out.result("dmarc", &subject, verdict, &lines.join("\n"), detail);
    if d.from_public_suffix() {
        out.finding(&Finding::new(
            fk::DMARC_RECORD_MISSING,
            format!(
                "_dmarc.{domain} and _dmarc.{} (only the public suffix's record at _dmarc.{at} applies)",
                d.org_domain
            ),
        ));
    }
    for f in &findings {
        out.finding(f);
    }
    // External report destinations (RFC 7489 §7.1).
    let dests = dm::check_destinations(&dns, &at, &d.org_domain, &r).await;
    for dest in dests.iter().filter(|x| !x.internal) {
        let q = dest.query.clone().unwrap_or_default();
        let (verdict, text) = match dest.authorised {
            Some(true) => (
                "authorised",
                format!(
                    "{q} publishes v=DMARC1: {} accepts reports for {at}",
                    dest.domain
                ),
            ),
            Some(false) => (
                "unauthorised",
                format!(
                    "{q} → {}: {} has not authorised reports for {at}; receivers will not send reports to {}",
                    dest.outcome,
                    dest.domain,
                    dest.addresses.join(", ")
                ),
            ),
            None => (
                "temperror",
                format!("{q}: the look-up failed ({})", dest.outcome),
            ),
        };
        out.result(
            "dmarc",
            &format!("report destination {}", dest.domain),
            verdict,
            &text,
            json!({"destination": dest.domain, "addresses": dest.addresses, "query": q,
                   "outcome": dest.outcome, "authorised": dest.authorised}),
        );
        if dest.authorised == Some(false) {
            out.finding(&Finding::new(
                fk::DMARC_REPORT_EXTERNAL_UNAUTHORIZED,
                format!("{} (no TXT v=DMARC1 at {q})", dest.addresses.join(", ")),
            ));
        }
    }
    verdict.into()
}

async fn run_message(global: &GlobalArgs, args: &DmarcArgs, path: &Path) -> Result<ExitCode> {
    let raw = super::dkim::read_message(path)?;
    let wanted = match &args.domain {
        Some(d) => Some(normalise(d)?),
        None => None,
    };
    if let Some(h) = &args.helo {
        mailscope_mailauth::dns::check_name(h)
            .map_err(|e| UsageError(format!("--helo {h:?}: {e}")))?;
    }
    let env = Envelope {
        ip: args.ip,
        mail_from: args.mail_from.clone().filter(|m| !m.is_empty()),
        helo: args.helo.clone(),
    };
    let subject = path.display().to_string();
    let mut out = CheckOutput::start(global, "dmarc", &subject, &args.dns)?;
    let ev = match dm::evaluate_message(&out.dns(), &raw, &env).await {
        Ok(ev) => ev,
        Err(e) => {
            out.result(
                "dmarc",
                &subject,
                "error",
                &e.to_string(),
                json!({"error": e.to_string()}),
            );
            out.verdict("dmarc", "error");
            return Ok(out.finish(global));
        }
    };
    if let Some(w) = &wanted
        && *w != ev.from_domain
    {
        out.note(&format!(
            "the message's From: domain is {:?}, not {w}: DMARC is about the From: domain, so that is what is evaluated",
            ev.from_domain
        ));
    }
    let detail = json!({
        "from_domain": ev.from_domain,
        "result": ev.result,
        "policy": ev.policy,
        "dkim": ev.dkim.iter().map(|d| json!({"d": d.domain, "s": d.selector,
                 "result": d.result, "aligned": d.aligned})).collect::<Vec<_>>(),
        "spf": ev.spf.as_ref().map(|(dom, r, al)| json!({"domain": dom, "result": r, "aligned": al})),
        "discovery": discovery_json(&ev.discovery),
        "record": ev.record.as_ref().map(record_json),
        "explanation": ev.explanation,
    });
    let subj = if ev.from_domain.is_empty() {
        subject.clone()
    } else {
        format!("From: {}", ev.from_domain)
    };
    let mut text = ev.explanation.clone();
    if ev.result == "fail" {
        text.push(format!(
            "what the receiver does: {}",
            policy_meaning(&ev.policy)
        ));
    }
    out.result("dmarc", &subj, &ev.result, &text.join("\n"), detail);
    for f in &ev.findings {
        out.finding(f);
    }
    out.verdict("dmarc", &ev.result);
    Ok(out.finish(global))
}
