//! `mailscope dkim`: a selector's key looked up and linted, selector discovery from a list of
//! common selectors (and from a message's signatures), and `mailscope dkim verify FILE.eml`,
//! which verifies every signature of a message and explains each failure.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use mailscope_mailauth::dkim::{
    self as dk, Discovery, KeyCheck, SignatureCheck, Verification, selector_hint,
};
use serde_json::{Value, json};

use super::{CheckOutput, DnsArgs};
use crate::cli::GlobalArgs;
use crate::{ExitCode, UsageError};

/// Examples shown after `--help`.
pub const DKIM_EXAMPLES: &str = "\
Examples:
  mailscope dkim example.com --selector selector1
  mailscope dkim example.com --selector s1 --selector s2
  mailscope dkim example.com --discover
  mailscope dkim example.com --discover --message signed.eml
  mailscope dkim verify message.eml
  mailscope dkim verify - < message.eml --resolver 127.0.0.1:5353

A key is linted for its type and size (RSA under 1024 bits is an error, 1024 a warning,
2048 and more fine; Ed25519 fine), t=y (testing), t=s, revocation (empty p=), h=sha1 only,
unknown tags, syntax errors, several TXT records, and CNAMEs are shown. --discover tries
about 50 common selectors (Google, Microsoft 365, Mailchimp, SendGrid, Zoho, Proton, Fastmail,
...) at once and detects a wildcard that answers for any selector. Providers with random
selectors (Amazon SES, Postmark) are only found from a signed message: --message.

`dkim verify` shows d=, s=, a=, c=, h= and bh= of every DKIM-Signature and says why it
failed: body hash mismatch (the body changed), signature mismatch (a signed header changed,
or the wrong key), key not found or revoked, expired, algorithm/key mismatch.

Exit status: 0, or 10 with --fail-on when a finding reaches that severity; 1 on a usage error
or an unreadable message.";

const VERIFY_EXAMPLES: &str = "\
Examples:
  mailscope dkim verify message.eml
  mailscope dkim verify - < message.eml
  mailscope --json dkim verify message.eml --resolver 127.0.0.1:5353

Save the message as received (with all header fields: \"show original\" / \"view source\").
Each signature's result is explained: body hash mismatch means the body changed after
signing (footer, disclaimer, line ends or encoding rewritten); signature mismatch with an
intact body means a signed header field changed, or the published key is not the signer's.";

/// At most this many octets of a message file are read.
pub const MAX_MESSAGE: u64 = 64 * 1024 * 1024;

/// `mailscope dkim`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DkimArgs {
    #[command(subcommand)]
    pub command: Option<DkimCommand>,
    /// The signing domain (d=).
    #[arg(value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Look up and lint this selector's key (repeatable).
    #[arg(long, short = 's', value_name = "SELECTOR")]
    pub selector: Vec<String>,
    /// Try a list of common selectors concurrently and report the ones found.
    #[arg(long)]
    pub discover: bool,
    /// Also take selectors from this message's DKIM-Signature fields (for DOMAIN's d=).
    #[arg(long, value_name = "FILE.eml")]
    pub message: Option<PathBuf>,
    #[command(flatten)]
    pub dns: DnsArgs,
}

/// `mailscope dkim` subcommands.
#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Verify every DKIM signature of a message and explain failures.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
}

/// `mailscope dkim verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The message (RFC 5322, as received; `-` for standard input).
    #[arg(value_name = "FILE.eml")]
    pub file: PathBuf,
    #[command(flatten)]
    pub dns: DnsArgs,
}

/// Reads a message file (or standard input for `-`), at most [`MAX_MESSAGE`] octets.
pub fn read_message(path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let n = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_MESSAGE + 1)
            .read_to_end(&mut buf)
            .context("cannot read the message from standard input")?
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .take(MAX_MESSAGE + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?
    };
    if n as u64 > MAX_MESSAGE {
        anyhow::bail!(
            "{} is larger than {} MiB; mailscope does not verify messages that large",
            path.display(),
            MAX_MESSAGE / 1024 / 1024
        );
    }
    Ok(buf)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs `mailscope dkim`.
pub async fn run(global: &GlobalArgs, args: &DkimArgs) -> Result<ExitCode> {
    if let Some(DkimCommand::Verify(v)) = &args.command {
        return verify(global, v).await;
    }
    let Some(domain) = args.domain.as_deref() else {
        return Err(UsageError(
            "give a DOMAIN with --selector SEL or --discover, or `mailscope dkim verify FILE.eml`"
                .into(),
        )
        .into());
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    mailscope_mailauth::dns::check_name(&domain)
        .map_err(|e| UsageError(format!("{domain:?} is not a domain name: {e}")))?;
    if args.selector.is_empty() && !args.discover && args.message.is_none() {
        return Err(UsageError(
            "give --selector SEL (repeatable), --discover or --message FILE.eml".into(),
        )
        .into());
    }
    for s in &args.selector {
        mailscope_mailauth::dns::check_name(&format!("{s}._domainkey.{domain}"))
            .map_err(|e| UsageError(format!("--selector {s:?}: {e}")))?;
    }
    let from_message = match &args.message {
        Some(path) => {
            let raw = read_message(path)?;
            selectors_in_message(&raw, &domain)
        }
        None => Vec::new(),
    };
    let mut out = CheckOutput::start(global, "dkim", &domain, &args.dns)?;
    if args.message.is_some() {
        out.note(&if from_message.is_empty() {
            format!("the message has no DKIM-Signature with d={domain}")
        } else {
            format!(
                "selectors from the message's signatures: {}",
                from_message.join(", ")
            )
        });
    }
    if args.discover {
        let mut list = dk::common_selectors();
        list.extend(args.selector.iter().cloned());
        list.extend(from_message.iter().cloned());
        let d = dk::discover(&out.dns(), &domain, &list).await;
        let verdict = report_discovery(&mut out, &d);
        out.verdict("dkim", verdict);
    } else {
        let mut list: Vec<String> = args.selector.clone();
        for s in from_message {
            if !list.contains(&s) {
                list.push(s);
            }
        }
        list.truncate(dk::MAX_SELECTORS);
        let mut verdicts = Vec::new();
        for sel in &list {
            let c = dk::check_key(&out.dns(), &domain, sel, true).await;
            report_key(&mut out, &c);
            verdicts.push(c.verdict);
        }
        out.verdict("dkim", worst_key_verdict(&verdicts));
    }
    Ok(out.finish(global))
}

fn worst_key_verdict(v: &[&'static str]) -> &'static str {
    for w in ["temperror", "missing", "invalid", "revoked", "weak"] {
        if v.contains(&w) {
            return w;
        }
    }
    if v.is_empty() { "none" } else { "ok" }
}

/// The selectors of the message's signatures whose d= is `domain`.
fn selectors_in_message(raw: &[u8], domain: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(msg) = mail_auth::AuthenticatedMessage::parse_with_opts(raw, None, false) {
        for h in msg.dkim_headers.iter().take(dk::MAX_SIGNATURES) {
            let s = &h.header;
            if s.d.eq_ignore_ascii_case(domain) && !out.contains(&s.s) {
                out.push(s.s.clone());
            }
        }
    }
    out
}

/// The text and JSON of one key.
fn key_text(c: &KeyCheck) -> (String, Value) {
    let mut lines = Vec::new();
    if let Some(t) = &c.cname {
        lines.push(format!("CNAME → {t}"));
    }
    match &c.key {
        Some(k) => {
            let size = match (k.key_type.as_str(), k.bits) {
                (_, _) if k.revoked => "revoked (empty p=)".to_owned(),
                ("ed25519", Some(_)) => "Ed25519".to_owned(),
                (t, Some(b)) => format!("{} {b} bits", t.to_ascii_uppercase()),
                (t, None) => format!("{t} key (not decodable)"),
            };
            let mut info = vec![size];
            if !k.hashes.is_empty() {
                info.push(format!("h={}", k.hashes.join(":")));
            }
            if !k.flags.is_empty() {
                info.push(format!("t={}", k.flags.join(":")));
            }
            if !k.services.is_empty() {
                info.push(format!("s={}", k.services.join(":")));
            }
            lines.push(info.join(", "));
            if c.records.len() > 1 {
                lines.push(format!(
                    "{} TXT records; the first is shown",
                    c.records.len()
                ));
            }
            let shown: String = k.raw.chars().take(100).collect();
            lines.push(format!(
                "{shown}{}",
                if k.raw.chars().count() > 100 {
                    "…"
                } else {
                    ""
                }
            ));
        }
        None => lines.push(match c.verdict {
            "temperror" => format!(
                "the look-up failed ({}): try again or another --resolver",
                c.outcome
            ),
            _ => format!(
                "no key: {} answered {} (no TXT record at this selector)",
                c.name, c.outcome
            ),
        }),
    }
    if let Some(who) = selector_hint(&c.selector) {
        lines.push(format!("selector commonly used by: {who}"));
    }
    let detail = json!({
        "selector": c.selector, "domain": c.domain, "name": c.name, "outcome": c.outcome,
        "cname": c.cname, "records": c.records,
        "key_type": c.key.as_ref().map(|k| k.key_type.clone()),
        "bits": c.key.as_ref().and_then(|k| k.bits),
        "revoked": c.key.as_ref().map(|k| k.revoked),
        "flags": c.key.as_ref().map(|k| k.flags.clone()),
        "hashes": c.key.as_ref().map(|k| k.hashes.clone()),
        "unknown_tags": c.key.as_ref().map(|k| k.unknown_tags.clone()),
        "errors": c.key.as_ref().map(|k| k.errors.clone()),
        "findings": c.findings.iter().map(|f| f.kind.id).collect::<Vec<_>>(),
    });
    (lines.join("\n"), detail)
}

fn report_key(out: &mut CheckOutput, c: &KeyCheck) {
    let (text, detail) = key_text(c);
    out.result("dkim", &c.name, c.verdict, &text, detail);
    if c.verdict == "missing" {
        out.finding(&mailscope_proto::Finding::new(
            mailscope_proto::finding::DKIM_KEY_NOT_FOUND,
            format!("{} ({})", c.name, c.outcome),
        ));
    }
    for f in &c.findings {
        out.finding(f);
    }
}

/// Reports a discovery run; returns the verdict word.
fn report_discovery(out: &mut CheckOutput, d: &Discovery) -> &'static str {
    let names: Vec<&str> = d.found.iter().map(|c| c.selector.as_str()).collect();
    let verdict: &'static str = if d.wildcard {
        "wildcard"
    } else if d.found.is_empty() {
        if d.failed.is_empty() {
            "not-found"
        } else {
            "temperror"
        }
    } else {
        let v: Vec<&'static str> = d.found.iter().map(|c| c.verdict).collect();
        worst_key_verdict(&v)
    };
    let mut text = format!(
        "{} of {} common selectors found{}",
        d.found.len(),
        d.tried,
        if names.is_empty() {
            String::new()
        } else if names.len() > 12 {
            format!(": {}, …", names[..12].join(", "))
        } else {
            format!(": {}", names.join(", "))
        }
    );
    if d.wildcard {
        text.push_str("\na wildcard answers for any selector (a made-up one too): the list above proves nothing");
    } else if d.found.is_empty() {
        text.push_str("\nthe domain may still sign with another selector: take one from a signed message (--message FILE.eml, or the s= of its DKIM-Signature)");
    }
    if !d.failed.is_empty() {
        let f: Vec<String> = d.failed.iter().map(|(s, o)| format!("{s} ({o})")).collect();
        text.push_str(&format!("\nlook-ups failed for: {}", f.join(", ")));
    }
    out.result(
        "dkim",
        &format!("{} selectors", d.domain),
        verdict,
        &text,
        json!({ "domain": d.domain, "tried": d.tried, "found": names, "wildcard": d.wildcard,
                "failed": d.failed.iter().map(|(s, o)| json!({"selector": s, "outcome": o})).collect::<Vec<_>>() }),
    );
    for f in &d.findings {
        out.finding(f);
    }
    if !d.wildcard {
        for c in &d.found {
            report_key(out, c);
        }
    }
    verdict
}

/// `mailscope check`'s DKIM part: discovery with the default list; returns the verdict word.
pub async fn report_domain(out: &mut super::CheckOutput, domain: &str) -> String {
    let d = dk::discover(&out.dns(), domain, &dk::common_selectors()).await;
    report_discovery(out, &d).to_owned()
}

// ------------------------------------------------------------------------------ verify

async fn verify(global: &GlobalArgs, args: &VerifyArgs) -> Result<ExitCode> {
    let raw = read_message(&args.file)?;
    let subject = args.file.display().to_string();
    let mut out = CheckOutput::start(global, "dkim verify", &subject, &args.dns)?;
    let v = match dk::verify_message(&out.dns(), &raw, now()).await {
        Ok(v) => v,
        Err(e) => {
            out.result(
                "dkim",
                &subject,
                "error",
                &e.to_string(),
                json!({ "error": e.to_string() }),
            );
            out.verdict("dkim", "error");
            return Ok(out.finish(global));
        }
    };
    let verdict = report_verification(&mut out, &v);
    out.verdict("dkim", verdict);
    Ok(out.finish(global))
}

fn signature_text(s: &SignatureCheck) -> (String, Value) {
    let mut lines = vec![format!("d={} s={} a={} c={}", s.d, s.s, s.a, s.c)];
    lines.push(format!("h={}", s.h.join(":")));
    lines.push(format!("bh={}", s.bh));
    let mut extra = Vec::new();
    if !s.i.is_empty() {
        extra.push(format!("i={}", s.i));
    }
    if let Some(t) = s.t {
        extra.push(format!("t={t} ({})", dk::unix_date(t)));
    }
    if let Some(x) = s.x {
        extra.push(format!("x={x} ({})", dk::unix_date(x)));
    }
    if let Some(l) = s.l {
        extra.push(format!("l={l}"));
    }
    if !extra.is_empty() {
        lines.push(extra.join(" "));
    }
    if let Some(k) = &s.key {
        let (kt, _) = key_text(k);
        let first = kt.lines().next().unwrap_or_default().to_owned();
        lines.push(format!("key {}: {} ({first})", k.name, k.verdict));
    }
    lines.push(s.reason.clone());
    let detail = json!({
        "index": s.index, "d": s.d, "s": s.s, "a": s.a, "c": s.c, "h": s.h, "bh": s.bh,
        "i": s.i, "l": s.l, "t": s.t, "x": s.x, "result": s.result, "reason": s.reason,
        "key": s.key.as_ref().map(|k| key_text(k).1),
        "findings": s.findings.iter().map(|f| f.kind.id).collect::<Vec<_>>(),
    });
    (lines.join("\n"), detail)
}

fn report_verification(out: &mut CheckOutput, v: &Verification) -> &'static str {
    if !v.from.is_empty() {
        out.note(&format!("From: {}", v.from.join(", ")));
    }
    for s in &v.signatures {
        let (text, detail) = signature_text(s);
        out.result(
            "dkim",
            &format!("signature {} (d={} s={})", s.index, s.d, s.s),
            &s.result,
            &text,
            detail,
        );
        for f in &s.findings {
            out.finding(f);
        }
    }
    for b in &v.broken {
        out.result(
            "dkim",
            "unusable signature",
            "permerror",
            &format!("{}\n{}", b.error, b.value),
            json!({ "error": b.error, "value": b.value }),
        );
    }
    for f in &v.findings {
        out.finding(f);
    }
    if v.signatures.iter().any(|s| s.result == "pass") {
        "pass"
    } else if v.signatures.is_empty() && v.broken.is_empty() {
        "none"
    } else if v.signatures.iter().any(|s| s.result == "temperror") {
        "temperror"
    } else {
        "fail"
    }
}
