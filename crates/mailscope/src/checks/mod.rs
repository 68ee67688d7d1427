//! The DNS-side commands (`check`, `spf`, `dkim`, `dmarc`, `dnsbl`) and `relay-test`: shared
//! options (`--resolver`, `--dns-timeout`, `--trace-dns`) and one output path, so every check
//! reports its DNS queries, results and findings the same way, as text or as `mailscope/1`
//! events (`check_started`, `dns_lookup`, `check_result`, `finding`, `check_summary`).

pub mod check;
pub mod dane;
pub mod dkim;
pub mod dmarc;
pub mod dnsbl;
pub mod domain;
pub mod relay;
pub mod spf;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use mailscope_mailauth::dns::{Dns, QueryRecord};
use mailscope_proto::transcript::{RenderOptions, Role};
use mailscope_proto::{Finding, Severity};
use owo_colors::OwoColorize as _;
use serde_json::{Value, json};

use crate::cli::GlobalArgs;
use crate::output::{Reporter, ms};
use crate::{ExitCode, UsageError};

/// DNS options every check command takes.
#[derive(Debug, Clone, Args)]
pub struct DnsArgs {
    /// Ask this DNS server (ADDR or ADDR:PORT, IPv6 as [::1]:5353) instead of the system's
    /// resolvers; /etc/hosts is then not consulted.
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub resolver: Option<String>,
    /// Seconds to wait for each DNS answer (per attempt).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub dns_timeout: f64,
    /// Print every DNS query with its answer and round-trip time (JSON always has them as
    /// `dns_lookup` events).
    #[arg(long)]
    pub trace_dns: bool,
}

impl DnsArgs {
    /// The per-query timeout, validated.
    pub fn timeout(&self) -> Result<Duration> {
        if !(self.dns_timeout.is_finite() && self.dns_timeout > 0.0 && self.dns_timeout <= 600.0) {
            return Err(UsageError(format!(
                "--dns-timeout must be between 0 and 600 seconds, not {}",
                self.dns_timeout
            ))
            .into());
        }
        Ok(Duration::from_secs_f64(self.dns_timeout))
    }

    /// The resolver, wrapped for tracing.
    pub fn dns(&self) -> Result<Arc<Dns>> {
        let timeout = self.timeout()?;
        let server = match &self.resolver {
            Some(r) => Some(
                mailscope_net::parse_resolver_addr(r)
                    .map_err(|e| UsageError(format!("--resolver: {e}")))?,
            ),
            None => None,
        };
        let resolver = mailscope_net::build_resolver(self.resolver.as_deref(), timeout).map_err(
            |e| match e {
                mailscope_net::NetError::InvalidAddress { .. } => {
                    anyhow::Error::from(UsageError(format!("--resolver: {e}")))
                }
                other => anyhow::Error::from(other),
            },
        )?;
        Ok(Arc::new(Dns::new(resolver, server, timeout)))
    }
}

/// Output of one check command: events, human lines, findings, the DNS trace, exit code.
///
/// A check that runs beside others (the areas of `mailscope check`, the domains of a batch)
/// gets a [`CheckOutput::child`]: it buffers what it reports, with its own DNS trace, and
/// [`CheckOutput::absorb`] replays it in one piece, so concurrent checks never interleave.
pub struct CheckOutput {
    rep: Reporter,
    dns: Arc<Dns>,
    trace_dns: bool,
    subject: String,
    started: Instant,
    dns_queries: u64,
    verdicts: BTreeMap<String, String>,
    /// `Some` for a child: what it reported, in order.
    buffer: Option<Vec<Item>>,
    /// Findings of a child (the parent's are in its reporter).
    child_findings: Vec<Finding>,
    /// Findings taken over from children without printing them (batch summaries).
    absorbed_findings: Vec<Finding>,
}

/// One buffered report of a child.
enum Item {
    Dns(QueryRecord),
    Result {
        area: String,
        subject: String,
        verdict: String,
        text: String,
        detail: Value,
    },
    Finding(Finding),
    Note(String),
    Line(String),
}

impl CheckOutput {
    /// Starts the output of `command` about `subject` (emits `check_started`).
    pub fn start(global: &GlobalArgs, command: &str, subject: &str, dns: &DnsArgs) -> Result<Self> {
        let dns_handle = dns.dns().context("cannot set up DNS")?;
        let rep = Reporter::new(
            global.json,
            Role::Client,
            RenderOptions {
                escape_all: global.escape,
                show_secrets: global.show_secrets,
            },
            global.show_time,
            crate::random_hex(8),
        );
        rep.event(
            "check_started",
            mailscope_net::smtp::now(),
            json!({ "command": command, "subject": subject, "resolver": dns.resolver }),
        );
        Ok(Self {
            rep,
            dns: dns_handle,
            trace_dns: dns.trace_dns,
            subject: subject.to_owned(),
            started: Instant::now(),
            dns_queries: 0,
            verdicts: BTreeMap::new(),
            buffer: None,
            child_findings: Vec::new(),
            absorbed_findings: Vec::new(),
        })
    }

    /// A buffering output for a check that runs concurrently with others: same resolver,
    /// its own DNS trace; hand it back to [`CheckOutput::absorb`].
    pub fn child(&self) -> Self {
        Self {
            rep: Reporter::new(
                false,
                Role::Client,
                RenderOptions {
                    escape_all: false,
                    show_secrets: false,
                },
                false,
                String::new(),
            ),
            dns: Arc::new(self.dns.fork()),
            trace_dns: self.trace_dns,
            subject: self.subject.clone(),
            started: Instant::now(),
            dns_queries: 0,
            verdicts: BTreeMap::new(),
            buffer: Some(Vec::new()),
            child_findings: Vec::new(),
            absorbed_findings: Vec::new(),
        }
    }

    /// A child about another subject (one domain of a batch).
    pub fn child_for(&self, subject: &str) -> Self {
        let mut c = self.child();
        c.subject = subject.to_owned();
        c
    }

    /// Drops what a child reported except its DNS queries (a look-up made for other areas
    /// whose own report was not asked for).
    pub fn discard_reports(&mut self) {
        self.flush_dns();
        if let Some(b) = &mut self.buffer {
            b.retain(|i| matches!(i, Item::Dns(_)));
        }
        self.child_findings.clear();
        self.verdicts.clear();
    }

    /// Takes over a child's findings (for `--fail-on` and the counts) and DNS query count
    /// without printing its report (batch text and CSV output).
    pub fn absorb_findings_only(&mut self, child: &CheckOutput) {
        self.absorbed_findings
            .extend(child.findings().iter().cloned());
        let buffered = child.buffer.as_ref().map_or(0, |b| {
            b.iter().filter(|i| matches!(i, Item::Dns(_))).count()
        });
        let unflushed = child.dns.trace().0.len();
        self.dns_queries += u64::try_from(buffered + unflushed).unwrap_or(u64::MAX);
    }

    /// Replays what a child reported, in its order, and takes over its verdicts (a child
    /// absorbing a child just keeps the items for its own parent).
    pub fn absorb(&mut self, mut child: CheckOutput) {
        child.flush_dns();
        self.flush_dns();
        self.verdicts.append(&mut child.verdicts);
        let items = child.buffer.take().unwrap_or_default();
        if let Some(b) = &mut self.buffer {
            b.extend(items);
            self.child_findings.append(&mut child.child_findings);
            return;
        }
        for item in items {
            match item {
                Item::Dns(q) => {
                    self.dns_queries += 1;
                    self.dns_event(&q);
                }
                Item::Result {
                    area,
                    subject,
                    verdict,
                    text,
                    detail,
                } => self.result(&area, &subject, &verdict, &text, detail),
                Item::Finding(f) => self.finding(&f),
                Item::Note(n) => self.note(&n),
                Item::Line(l) => self.line(&l),
            }
        }
    }

    /// Human text to stderr, so stdout carries only the caller's data (batch CSV).
    pub fn human_to_stderr(&mut self) {
        self.rep.set_human_to_stderr(true);
    }

    /// The verdicts recorded so far, by area.
    pub fn verdicts(&self) -> &BTreeMap<String, String> {
        &self.verdicts
    }

    /// Findings reported so far.
    pub fn findings(&self) -> &[Finding] {
        if self.buffer.is_some() {
            &self.child_findings
        } else {
            self.rep.findings()
        }
    }

    /// The DNS handle every look-up of this command goes through.
    pub fn dns(&self) -> Arc<Dns> {
        Arc::clone(&self.dns)
    }

    /// The reporter, for commands that also print transcripts (relay-test).
    pub fn reporter(&mut self) -> &mut Reporter {
        &mut self.rep
    }

    /// Emits the DNS queries made since the last call (`dns_lookup` events; lines with
    /// `--trace-dns`).
    pub fn flush_dns(&mut self) {
        for q in self.dns.take_trace() {
            if let Some(b) = &mut self.buffer {
                b.push(Item::Dns(q));
            } else {
                self.dns_queries += 1;
                self.dns_event(&q);
            }
        }
    }

    fn dns_event(&self, q: &QueryRecord) {
        let elapsed_us = u64::try_from(q.elapsed.as_micros()).unwrap_or(u64::MAX);
        if self.trace_dns {
            let answers = if q.answers.is_empty() {
                q.outcome.clone()
            } else {
                q.answers.join(" | ")
            };
            self.rep.line(&format!(
                "{}",
                format!(
                    "dns {} {} → {} ({}{})",
                    q.rtype,
                    q.name,
                    answers,
                    ms(elapsed_us),
                    if q.authentic { ", AD" } else { "" }
                )
                .dimmed()
            ));
        }
        self.rep.event(
            "dns_lookup",
            q.at,
            json!({ "name": q.name, "rtype": q.rtype, "outcome": q.outcome, "answers": q.answers,
                    "elapsed_us": elapsed_us, "authentic": q.authentic, "truncated": q.truncated }),
        );
    }

    /// One result: `area` (`spf`, `dkim`, `dnsbl`, ...), what it is about, a one-word verdict,
    /// a human text (may be several lines), and machine detail.
    pub fn result(&mut self, area: &str, subject: &str, verdict: &str, text: &str, detail: Value) {
        self.flush_dns();
        if let Some(b) = &mut self.buffer {
            b.push(Item::Result {
                area: area.to_owned(),
                subject: subject.to_owned(),
                verdict: verdict.to_owned(),
                text: text.to_owned(),
                detail,
            });
            return;
        }
        let head = clean(&format!("{area} {subject}: {verdict}")).into_owned();
        let styled = match verdict_tone(verdict) {
            Tone::Good => format!("{}", head.green().bold()),
            Tone::Bad => format!("{}", head.red().bold()),
            Tone::Warn => format!("{}", head.yellow().bold()),
            Tone::Neutral => format!("{}", head.bold()),
        };
        self.rep.line(&styled);
        for l in text.lines() {
            self.rep.line(&format!("  {}", clean(l)));
        }
        self.rep.event(
            "check_result",
            mailscope_net::smtp::now(),
            json!({ "area": area, "subject": subject, "verdict": verdict, "text": text, "detail": detail }),
        );
    }

    /// Records the verdict of an area for the closing summary (`check` shows one per area).
    pub fn verdict(&mut self, area: &str, verdict: &str) {
        self.verdicts.insert(area.to_owned(), verdict.to_owned());
    }

    /// A finding, with its fix on a second line.
    pub fn finding(&mut self, f: &Finding) {
        self.flush_dns();
        // Details quote DNS and HTTP text: no control characters reach the terminal.
        let cleaned;
        let f = if f.detail.chars().any(is_unsafe) {
            let mut c = f.clone();
            c.detail = clean(&f.detail).into_owned();
            cleaned = c;
            &cleaned
        } else {
            f
        };
        if let Some(b) = &mut self.buffer {
            b.push(Item::Finding(f.clone()));
            self.child_findings.push(f.clone());
            return;
        }
        self.rep.finding(mailscope_net::smtp::now(), f);
        if !f.kind.fix.is_empty() {
            self.rep.line(&format!("    fix: {}", f.kind.fix));
        }
    }

    /// A `***` note.
    pub fn note(&mut self, text: &str) {
        self.flush_dns();
        if let Some(b) = &mut self.buffer {
            b.push(Item::Note(text.to_owned()));
            return;
        }
        let text = &clean(text);
        self.rep.note(mailscope_net::smtp::now(), text);
    }

    /// A plain human line.
    pub fn line(&mut self, text: &str) {
        if let Some(b) = &mut self.buffer {
            b.push(Item::Line(text.to_owned()));
            return;
        }
        self.rep.line(&clean(text));
    }

    /// The highest severity found so far.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings()
            .iter()
            .chain(&self.absorbed_findings)
            .map(|f| f.severity)
            .max()
    }

    /// Ends a run that could not do its work (`relay-test` that cannot connect): `code`
    /// (e.g. 2, as `smtp` uses for a failed connection) instead of the `--fail-on` verdict.
    pub fn finish_with(self, global: &GlobalArgs, code: ExitCode) -> ExitCode {
        self.finish_inner(global, Some(code))
    }

    /// Ends the run: `check_summary`, and the exit code (`--fail-on` gives 10).
    pub fn finish(self, global: &GlobalArgs) -> ExitCode {
        self.finish_inner(global, None)
    }

    fn finish_inner(mut self, global: &GlobalArgs, forced: Option<ExitCode>) -> ExitCode {
        self.flush_dns();
        let elapsed_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let findings = self.rep.findings().len() + self.absorbed_findings.len();
        if !self.verdicts.is_empty() {
            let parts: Vec<String> = self
                .verdicts
                .iter()
                .map(|(a, v)| format!("{a}={v}"))
                .collect();
            self.rep.line(&format!("verdicts: {}", parts.join(" ")));
        }
        self.rep.line(&format!(
            "{} finding(s), {} DNS quer{} in {}",
            findings,
            self.dns_queries,
            if self.dns_queries == 1 { "y" } else { "ies" },
            ms(elapsed_us)
        ));
        let code = if let Some(c) = forced {
            c
        } else if global
            .fail_on
            .is_some_and(|t| self.max_severity().is_some_and(|max| max >= t.severity()))
        {
            ExitCode::FINDINGS
        } else {
            ExitCode(0)
        };
        self.rep.event(
            "check_summary",
            mailscope_net::smtp::now(),
            json!({ "subject": self.subject, "verdicts": self.verdicts, "findings": findings,
                    "elapsed_us": elapsed_us, "dns_queries": self.dns_queries,
                    "exit_code": code.0 }),
        );
        code
    }
}

/// A character that must not reach a terminal as itself: C0 controls but LF, DEL, C1.
fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\n'
}

/// `text` with control characters escaped (`\x1b`, `\u{9b}`): check reports quote DNS
/// answers and HTTP headers, which must not drive the user's terminal.
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut s = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            if u32::from(c) < 0x80 {
                s.push_str(&format!("\\x{:02x}", u32::from(c)));
            } else {
                s.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
        } else {
            s.push(c);
        }
    }
    std::borrow::Cow::Owned(s)
}

enum Tone {
    Good,
    Bad,
    Warn,
    Neutral,
}

fn verdict_tone(v: &str) -> Tone {
    match v {
        "pass" | "ok" | "valid" | "not-listed" | "present" | "enforce" | "closed" => Tone::Good,
        "fail" | "permerror" | "listed" | "invalid" | "missing" | "open" | "error" => Tone::Bad,
        "softfail" | "temperror" | "warning" | "refused" | "timeout" | "weak" => Tone::Warn,
        _ => Tone::Neutral,
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("v=spf1 -all"), "v=spf1 -all");
        assert_eq!(clean("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(clean("tab\there"), "tab\\x09here");
        assert_eq!(clean("c1\u{9b}x"), "c1\\u{9b}x");
        assert_eq!(clean("two\nlines"), "two\nlines");
        assert_eq!(clean("del\x7f"), "del\\x7f");
    }
}
