//! `mailscope spf DOMAIN [--ip IP]`: the domain's SPF record as a tree of includes and
//! redirects with the count of DNS-querying terms against the limit of 10 and of void
//! look-ups against 2 (RFC 7208 §4.6.4), lints, and with `--ip` the `check_host()` result
//! and the term that decided it ("does this sending IP pass our SPF?"). The evaluator and
//! the analysis are in `mailscope_mailauth::spf`.

use std::net::IpAddr;

use anyhow::Result;
use clap::Args;
use mailscope_mailauth::spf::{
    self, MAX_DNS_TERMS, MAX_VOID_LOOKUPS, NodeStatus, SpfAnalysis, SpfEvaluation, SpfInput,
    SpfNode, SpfResult,
};
use serde_json::{Value, json};

use super::{CheckOutput, DnsArgs};
use crate::cli::GlobalArgs;
use crate::{ExitCode, UsageError};

/// Examples shown after `--help`.
pub const SPF_EXAMPLES: &str = "\
What it shows:
  The record and every record it includes or redirects to, as a tree, with the DNS-querying
  terms (include, a, mx, ptr, exists, redirect) each costs: receivers give up with permerror
  after 10 of them, or after 2 that find nothing (void look-ups). The counts are the worst
  case a receiver evaluates: every term, when no term matches. Then the lints (multiple
  records, syntax errors with the term and its position, ptr, +all, the old SPF record type,
  includes of domains without SPF, loops, ...), each with how to fix it.
  With --ip: the result a receiver gets for mail from that address (pass, fail, softfail,
  neutral, none, temperror, permerror), the term that decided it, and the explanation.

Examples:
  mailscope spf example.com
  mailscope spf example.com --ip 192.0.2.25            # does this relay pass our SPF?
  mailscope spf example.com --ip 2001:db8::25 --sender bounce@example.com --helo mx1.example.com
  mailscope spf example.com --resolver 127.0.0.1:5353 --trace-dns
  mailscope spf example.com --json --fail-on error";

/// Arguments of `mailscope spf`.
#[derive(Debug, Args)]
pub struct SpfArgs {
    /// The domain whose SPF record to check (the MAIL FROM domain, or the HELO name).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// Evaluate mail from this address: the result and the term that decided it.
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    /// The HELO/EHLO name for the %{h} macro (default: DOMAIN). Needs --ip.
    #[arg(long, value_name = "NAME")]
    pub helo: Option<String>,
    /// The MAIL FROM address for the %{s}, %{l}, %{o} macros (default: postmaster@DOMAIN).
    /// Needs --ip.
    #[arg(long, value_name = "ADDR")]
    pub sender: Option<String>,
    #[command(flatten)]
    pub dns: DnsArgs,
}

/// Runs `mailscope spf`.
pub async fn run(global: &GlobalArgs, args: &SpfArgs) -> Result<ExitCode> {
    let domain = args.domain.trim().trim_end_matches('.').to_owned();
    if domain.is_empty() {
        return Err(UsageError("DOMAIN must not be empty".into()).into());
    }
    if args.ip.is_none() && (args.helo.is_some() || args.sender.is_some()) {
        return Err(UsageError(
            "--helo and --sender are for evaluating an address: give --ip too".into(),
        )
        .into());
    }
    let mut out = CheckOutput::start(global, "spf", &domain, &args.dns)?;
    let dns = out.dns();
    let verdict = match args.ip {
        None => report_analysis(&mut out, &spf::analyze(&dns, &domain).await),
        Some(ip) => {
            let input = SpfInput {
                ip,
                domain: domain.clone(),
                sender: args
                    .sender
                    .clone()
                    .unwrap_or_else(|| format!("postmaster@{domain}")),
                helo: args.helo.clone().unwrap_or_else(|| domain.clone()),
            };
            let (analysis, eval) =
                tokio::join!(spf::analyze(&dns, &domain), spf::evaluate(&dns, &input));
            report_analysis(&mut out, &analysis);
            report_evaluation(&mut out, &eval, &analysis)
        }
    };
    out.verdict("spf", &verdict);
    Ok(out.finish(global))
}

/// The SPF part of `mailscope check`: the record analysed (tree, counts, lints) as one
/// result with its findings. Returns the verdict word (`valid`, `warning`, `permerror`,
/// `temperror`, `none`).
pub async fn report_domain(out: &mut CheckOutput, domain: &str) -> String {
    let dns = out.dns();
    let analysis = spf::analyze(&dns, domain).await;
    report_analysis(out, &analysis)
}

fn report_analysis(out: &mut CheckOutput, a: &SpfAnalysis) -> String {
    let verdict = a.verdict();
    let mut text = String::new();
    render_node(&a.root, 0, &mut text);
    text.push_str(&format!(
        "DNS look-ups: {}/{MAX_DNS_TERMS}, void look-ups: {}/{MAX_VOID_LOOKUPS}",
        a.total_lookups, a.void_lookups
    ));
    if a.total_lookups > MAX_DNS_TERMS {
        text.push_str(" — over the limit: receivers answer permerror");
    } else if a.void_lookups > MAX_VOID_LOOKUPS {
        text.push_str(" — too many void look-ups: receivers answer permerror");
    }
    text.push('\n');
    if let Some(why) = &a.permerror {
        text.push_str(&format!("every receiver answers permerror: {why}\n"));
    }
    if !a.spf_rr.is_empty() {
        text.push_str(&format!(
            "also published as the obsolete SPF record type (99): {} record(s)\n",
            a.spf_rr.len()
        ));
    }
    let detail = json!({
        "domain": a.domain,
        "record": a.root.record,
        "tree": node_json(&a.root),
        "dns_lookups": a.total_lookups,
        "dns_lookup_limit": MAX_DNS_TERMS,
        "void_lookups": a.void_lookups,
        "void_lookup_limit": MAX_VOID_LOOKUPS,
        "spf_rr_type_records": a.spf_rr,
        "permerror": a.permerror,
    });
    out.result("spf", &a.domain, verdict, text.trim_end(), detail);
    for f in &a.findings {
        out.finding(f);
    }
    verdict.to_owned()
}

fn report_evaluation(out: &mut CheckOutput, e: &SpfEvaluation, a: &SpfAnalysis) -> String {
    let mut text = format!("result: {}", e.result);
    match e.decided_by.as_slice() {
        [] => text.push_str(&format!(" — {}", e.reason)),
        [first, rest @ ..] => {
            text.push_str(&format!(
                " — decided by `{}` in {}'s record (term {})",
                first.term, first.domain, first.position
            ));
            for t in rest {
                text.push_str(&format!(
                    ", via `{}` in {}'s record (term {})",
                    t.term, t.domain, t.position
                ));
            }
            text.push_str(&format!("\nwhy: {}", e.reason));
        }
    }
    if let Some(x) = &e.explanation {
        text.push_str(&format!("\nexplanation (exp=): {x}"));
    }
    text.push_str(&format!(
        "\nsender {}, HELO {}; DNS look-ups used: {}/{MAX_DNS_TERMS}, void look-ups: {}/{MAX_VOID_LOOKUPS}",
        e.sender, e.helo, e.dns_lookups, e.void_lookups
    ));
    text.push('\n');
    text.push_str(match e.result {
        SpfResult::Pass => "receivers that check SPF accept this address for the domain",
        SpfResult::Fail => {
            "receivers that check SPF refuse mail from this address for the domain (or junk it under DMARC)"
        }
        SpfResult::SoftFail => "receivers usually accept but mark or junk mail from this address",
        SpfResult::Neutral => "the record says nothing about this address: receivers treat it like no SPF",
        SpfResult::None => "there is no SPF record to check against",
        SpfResult::TempError => "a DNS error: receivers defer the mail (4xx) and retry",
        SpfResult::PermError => "the record cannot be evaluated: receivers treat it as an error, many refuse",
    });
    let subject = format!("{} for {}", e.ip, e.domain);
    out.result("spf", &subject, e.result.as_str(), &text, eval_json(e));
    // The analysis already reported the record's own problems; add what only this
    // evaluation met.
    for f in &e.findings {
        if !a.findings.iter().any(|g| g.kind.id == f.kind.id) {
            out.finding(f);
        }
    }
    e.result.as_str().to_owned()
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn render_node(n: &SpfNode, depth: usize, out: &mut String) {
    let pad = "    ".repeat(depth);
    match &n.status {
        NodeStatus::Record => {
            out.push_str(&format!(
                "{pad}{}: \"{}\"\n",
                n.domain,
                n.record.as_deref().unwrap_or("")
            ));
            let sub = n.lookups.saturating_sub(n.own_lookups);
            out.push_str(&format!(
                "{pad}  {} DNS look-up{} here{}\n",
                n.own_lookups,
                plural(n.own_lookups),
                if sub > 0 {
                    format!(", {sub} in what it includes: {} in all", n.lookups)
                } else {
                    String::new()
                }
            ));
            let mut children = n.children.iter().peekable();
            for t in &n.terms {
                let mut line = format!("{pad}  [{}] {}", t.position, t.text);
                let child = children
                    .peek()
                    .filter(|c| c.via.as_deref() == Some(t.text.as_str()))
                    .is_some();
                let child = if child { children.next() } else { None };
                match child {
                    Some(c) => line.push_str(&format!(
                        " ({} look-up{})",
                        c.lookups + 1,
                        plural(c.lookups + 1)
                    )),
                    None if t.queries_dns => line.push_str(" (1 look-up)"),
                    None => {}
                }
                if t.void {
                    line.push_str(" [void]");
                }
                if let Some(note) = &t.note {
                    line.push_str(&format!(" — {note}"));
                }
                out.push_str(&line);
                out.push('\n');
                if let Some(c) = child {
                    render_node(c, depth + 1, out);
                }
            }
        }
        NodeStatus::NoRecord(why) => {
            out.push_str(&format!("{pad}{}: no SPF record ({why})\n", n.domain))
        }
        NodeStatus::Multiple(r) => out.push_str(&format!(
            "{pad}{}: {} SPF records (permerror): {}\n",
            n.domain,
            r.len(),
            r.join(" | ")
        )),
        NodeStatus::Syntax(e) => out.push_str(&format!(
            "{pad}{}: \"{}\"\n{pad}  syntax error (permerror): {e}\n",
            n.domain,
            n.record.as_deref().unwrap_or("")
        )),
        NodeStatus::TempError(why) => {
            out.push_str(&format!("{pad}{}: look-up failed: {why}\n", n.domain))
        }
        NodeStatus::Loop => out.push_str(&format!(
            "{pad}{}: loop — already evaluated higher up (permerror)\n",
            n.domain
        )),
        NodeStatus::NotFollowed(why) => {
            out.push_str(&format!("{pad}{}: not followed ({why})\n", n.domain))
        }
    }
}

fn node_json(n: &SpfNode) -> Value {
    let (status, reason): (&str, Value) = match &n.status {
        NodeStatus::Record => ("record", Value::Null),
        NodeStatus::NoRecord(w) => ("none", json!(w)),
        NodeStatus::Multiple(r) => ("multiple", json!(r)),
        NodeStatus::Syntax(e) => (
            "syntax-error",
            json!({ "position": e.position, "offset": e.offset, "term": e.term, "reason": e.reason }),
        ),
        NodeStatus::TempError(w) => ("temperror", json!(w)),
        NodeStatus::Loop => ("loop", Value::Null),
        NodeStatus::NotFollowed(w) => ("not-followed", json!(w)),
    };
    json!({
        "domain": n.domain,
        "via": n.via,
        "status": status,
        "reason": reason,
        "record": n.record,
        "own_lookups": n.own_lookups,
        "lookups": n.lookups,
        "void_lookups": n.void_lookups,
        "terms": n.terms.iter().map(|t| json!({
            "position": t.position, "text": t.text, "queries_dns": t.queries_dns,
            "void": t.void, "note": t.note,
        })).collect::<Vec<_>>(),
        "children": n.children.iter().map(node_json).collect::<Vec<_>>(),
    })
}

fn eval_json(e: &SpfEvaluation) -> Value {
    json!({
        "ip": e.ip.to_string(),
        "domain": e.domain,
        "sender": e.sender,
        "helo": e.helo,
        "result": e.result.as_str(),
        "decided_by": e.decided_by.iter().map(|t| json!({
            "domain": t.domain, "term": t.term, "position": t.position,
        })).collect::<Vec<_>>(),
        "reason": e.reason,
        "explanation": e.explanation,
        "dns_lookups": e.dns_lookups,
        "void_lookups": e.void_lookups,
    })
}
