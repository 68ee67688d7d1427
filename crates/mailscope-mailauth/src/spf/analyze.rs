//! A domain's SPF record without a client IP: the include/redirect tree, the count of
//! DNS-querying terms a receiver spends when nothing matches (the worst case, which is what
//! the limit of 10 is about), void look-ups, and lints. Sibling includes and the look-ups
//! of one record run concurrently; the counts do not depend on the order.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use hickory_resolver::proto::rr::RecordType;
use mail_auth::spf::{Macro, Mechanism, Qualifier, Variable, Variables};
use mailscope_proto::{Finding, finding as f};

use super::eval::{Fetched, fetch};
use super::record::{Record, TermKind};
use super::{
    MAX_ANALYZED_RECORDS, MAX_DEPTH, MAX_DNS_TERMS, MAX_MX_NAMES, MAX_VOID_LOOKUPS, NodeStatus,
    SpfAnalysis, SpfNode, TermInfo,
};
use crate::dns::{Answer, Dns};

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Polls every future to completion concurrently (no extra dependency for a join).
async fn join_all<T>(futs: Vec<BoxFut<'_, T>>) -> Vec<T> {
    let mut futs = futs;
    let mut outs: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

struct Ctx<'a> {
    dns: &'a Dns,
    fetched: AtomicUsize,
    /// Terms followed so far (see [`MAX_ANALYSIS_LOOKUPS`]).
    followed: AtomicUsize,
}

/// What one term's look-up found.
enum Job {
    Child(usize, SpfNode, Vec<Finding>),
    Void(usize, bool, String),
    MxCount(usize, usize, String),
    /// The look-up failed (timeout, SERVFAIL): a receiver would answer temperror here.
    Failed(usize, String),
}

/// The analysis follows at most this many DNS-querying terms in the whole tree (four times
/// RFC 7208's limit: far enough to show by how much a record is over it, and a bound on
/// what one hostile domain can make mailscope ask).
pub const MAX_ANALYSIS_LOOKUPS: usize = 40;

/// Analyses `domain`'s SPF record: the tree, counts and lints.
pub async fn analyze(dns: &Dns, domain: &str) -> SpfAnalysis {
    let domain = domain.trim().trim_end_matches('.').to_owned();
    let ctx = Ctx {
        dns,
        fetched: AtomicUsize::new(0),
        followed: AtomicUsize::new(0),
    };
    let spf_rr_q = async {
        match dns.raw(&domain, RecordType::Unknown(99)).await {
            Answer::Records(r) => r,
            _ => Vec::new(),
        }
    };
    let tree = node(&ctx, domain.clone(), None, Vec::new(), 0);
    let (spf_rr, (root, mut findings)) = tokio::join!(spf_rr_q, tree);
    if !spf_rr.is_empty() {
        findings.push(Finding::new(
            f::SPF_RECORD_SPF_RR_TYPE,
            format!("{domain} has {} SPF (type 99) record(s)", spf_rr.len()),
        ));
    }
    let mut permerror = first_permerror(&root);
    if root.lookups > MAX_DNS_TERMS {
        let why = format!(
            "{} DNS-querying terms, more than {MAX_DNS_TERMS}: {}",
            root.lookups,
            breakdown(&root)
        );
        findings.push(Finding::new(f::SPF_RECORD_TOO_MANY_LOOKUPS, why.clone()));
        permerror.get_or_insert(why);
    }
    if root.void_lookups > MAX_VOID_LOOKUPS {
        let why = format!(
            "{} void look-ups, more than {MAX_VOID_LOOKUPS}: {}",
            root.void_lookups,
            voids(&root).join(", ")
        );
        findings.push(Finding::new(f::SPF_RECORD_VOID_LOOKUPS, why.clone()));
        permerror.get_or_insert(why);
    }
    SpfAnalysis {
        domain,
        total_lookups: root.lookups,
        void_lookups: root.void_lookups,
        root,
        spf_rr,
        permerror,
        findings,
    }
}

/// Where the look-ups go: "example.test 2, _spf.example.net 8".
fn breakdown(n: &SpfNode) -> String {
    let mut parts = Vec::new();
    fn walk(n: &SpfNode, parts: &mut Vec<String>) {
        if n.own_lookups > 0 {
            parts.push(format!("{} {}", n.domain, n.own_lookups));
        }
        for c in &n.children {
            walk(c, parts);
        }
    }
    walk(n, &mut parts);
    parts.join(", ")
}

fn voids(n: &SpfNode) -> Vec<String> {
    let mut out: Vec<String> = n
        .terms
        .iter()
        .filter(|t| t.void)
        .map(|t| format!("`{}` in {}", t.text, n.domain))
        .collect();
    for c in &n.children {
        out.extend(voids(c));
    }
    out
}

/// The first problem in the tree that makes every evaluation reaching it a permerror.
fn first_permerror(n: &SpfNode) -> Option<String> {
    let here = match &n.status {
        NodeStatus::Multiple(r) => Some(format!("{} has {} SPF records", n.domain, r.len())),
        NodeStatus::Syntax(e) => Some(format!("syntax error in {}'s record: {e}", n.domain)),
        NodeStatus::Loop => Some(format!(
            "{} loops back to {}",
            n.via.as_deref().unwrap_or(""),
            n.domain
        )),
        NodeStatus::NoRecord(why) if n.via.is_some() => Some(format!(
            "{} names a domain without SPF record ({why})",
            n.via.as_deref().unwrap_or("")
        )),
        _ => None,
    };
    here.or_else(|| n.children.iter().find_map(first_permerror))
}

/// A macro that only uses `%{d}` can be expanded without a message.
fn only_domain_macros(m: &Macro) -> bool {
    match m {
        Macro::Literal(_) | Macro::None => true,
        Macro::Variable { letter, .. } => *letter == Variable::Domain,
        Macro::List(l) => l.iter().all(only_domain_macros),
    }
}

fn expand_static(m: &Macro, domain: &str) -> Option<String> {
    if !only_domain_macros(m) {
        return None;
    }
    let mut vars = Variables::new();
    vars.set_domain(domain.as_bytes().to_vec());
    let s = m
        .eval(&vars, domain, false)
        .trim_end_matches('.')
        .to_owned();
    (!s.is_empty()).then_some(s)
}

fn leaf(domain: String, via: Option<String>, status: NodeStatus) -> SpfNode {
    SpfNode {
        domain,
        via,
        status,
        record: None,
        terms: Vec::new(),
        own_lookups: 0,
        lookups: 0,
        void_lookups: 0,
        children: Vec::new(),
    }
}

fn node<'a>(
    ctx: &'a Ctx<'a>,
    domain: String,
    via: Option<String>,
    ancestors: Vec<String>,
    depth: usize,
) -> BoxFut<'a, (SpfNode, Vec<Finding>)> {
    Box::pin(async move {
        let mut findings = Vec::new();
        let lower = domain.to_ascii_lowercase();
        if ancestors.contains(&lower) {
            findings.push(Finding::new(
                f::SPF_INCLUDE_LOOP,
                format!(
                    "{} leads back to {domain}, which is already in the chain {}",
                    via.as_deref().unwrap_or(""),
                    ancestors.join(" → ")
                ),
            ));
            return (leaf(domain, via, NodeStatus::Loop), findings);
        }
        if depth > MAX_DEPTH || ctx.fetched.fetch_add(1, Ordering::Relaxed) >= MAX_ANALYZED_RECORDS
        {
            return (
                leaf(
                    domain,
                    via,
                    NodeStatus::NotFollowed(format!(
                        "more than {MAX_ANALYZED_RECORDS} records or {MAX_DEPTH} levels"
                    )),
                ),
                findings,
            );
        }
        if let Err(e) = super::eval::valid_domain(&domain) {
            let why = format!("not a valid domain: {e}");
            return (leaf(domain, via, NodeStatus::NoRecord(why)), findings);
        }
        let rec =
            match fetch(ctx.dns, &domain).await {
                Fetched::Record(r) => r,
                Fetched::None(why) => {
                    match via.as_deref() {
                        None => findings.push(Finding::new(f::SPF_RECORD_NONE, why.clone())),
                        Some(v) if v.to_ascii_lowercase().starts_with("redirect") => findings
                            .push(Finding::new(f::SPF_REDIRECT_MISSING, format!("{v}: {why}"))),
                        Some(v) => findings
                            .push(Finding::new(f::SPF_INCLUDE_MISSING, format!("{v}: {why}"))),
                    }
                    return (leaf(domain, via, NodeStatus::NoRecord(why)), findings);
                }
                Fetched::Multiple(recs) => {
                    findings.push(Finding::new(
                        f::SPF_RECORD_MULTIPLE,
                        format!(
                            "{domain} has {} SPF records: {}",
                            recs.len(),
                            recs.join(" | ")
                        ),
                    ));
                    return (leaf(domain, via, NodeStatus::Multiple(recs)), findings);
                }
                Fetched::Syntax(e, text) => {
                    findings.push(Finding::new(
                        f::SPF_RECORD_SYNTAX,
                        format!("{domain}: {e} in \"{text}\""),
                    ));
                    let mut n = leaf(domain, via, NodeStatus::Syntax(e));
                    n.record = Some(text);
                    return (n, findings);
                }
                Fetched::TempError(why) => {
                    findings.push(Finding::new(f::SPF_DNS_TEMPERROR, why.clone()));
                    return (leaf(domain, via, NodeStatus::TempError(why)), findings);
                }
            };
        let mut chain = ancestors;
        chain.push(lower);
        record_node(ctx, domain, via, rec, chain, depth, findings).await
    })
}

async fn record_node<'a>(
    ctx: &'a Ctx<'a>,
    domain: String,
    via: Option<String>,
    rec: Record,
    chain: Vec<String>,
    depth: usize,
    mut findings: Vec<Finding>,
) -> (SpfNode, Vec<Finding>) {
    let has_all = rec.alls().next().is_some();
    lint_record(&domain, &rec, via.is_none(), &mut findings);
    let mut terms: Vec<TermInfo> = rec
        .terms
        .iter()
        .map(|t| TermInfo {
            position: t.position,
            text: t.text.clone(),
            queries_dns: t.queries_dns(),
            void: false,
            note: None,
        })
        .collect();
    let mut own = 0u32;
    let mut jobs: Vec<BoxFut<'a, Job>> = Vec::new();
    for (i, t) in rec.terms.iter().enumerate() {
        let (spec, kind): (&Macro, &str) = match &t.kind {
            TermKind::Directive(d) => match &d.mechanism {
                Mechanism::Include { macro_string } => (macro_string, "include"),
                Mechanism::A { macro_string, .. } => (macro_string, "a"),
                Mechanism::Mx { macro_string, .. } => (macro_string, "mx"),
                Mechanism::Exists { macro_string } => (macro_string, "exists"),
                Mechanism::Ptr { .. } => {
                    own += 1;
                    continue;
                }
                _ => continue,
            },
            TermKind::Redirect(m) => {
                if has_all {
                    if let Some(ti) = terms.get_mut(i) {
                        ti.note = Some("never used: the record has an all mechanism".into());
                        ti.queries_dns = false;
                    }
                    continue;
                }
                (m, "redirect")
            }
            _ => continue,
        };
        own += 1;
        let Some(target) = expand_static(spec, &domain) else {
            findings.push(Finding::new(
                f::SPF_MECHANISM_MACRO,
                format!(
                    "`{}` in {domain}'s record (term {}) depends on the message",
                    t.text, t.position
                ),
            ));
            if let Some(ti) = terms.get_mut(i) {
                ti.note = Some("uses macros: depends on the sender/IP, not followed".into());
            }
            if kind == "include" || kind == "redirect" {
                jobs.push(Box::pin(std::future::ready(Job::Child(
                    i,
                    leaf(
                        t.text.clone(),
                        Some(t.text.clone()),
                        NodeStatus::NotFollowed("the name uses macros".into()),
                    ),
                    Vec::new(),
                ))));
            }
            continue;
        };
        if ctx.followed.fetch_add(1, Ordering::Relaxed) >= MAX_ANALYSIS_LOOKUPS {
            let why = format!(
                "not followed: the analysis stops after {MAX_ANALYSIS_LOOKUPS} look-ups (the limit is 10)"
            );
            if let Some(ti) = terms.get_mut(i) {
                ti.note = Some(why.clone());
            }
            if kind == "include" || kind == "redirect" {
                jobs.push(Box::pin(std::future::ready(Job::Child(
                    i,
                    leaf(target, Some(t.text.clone()), NodeStatus::NotFollowed(why)),
                    Vec::new(),
                ))));
            }
            continue;
        }
        let dns = ctx.dns;
        match kind {
            "include" | "redirect" => {
                let via = Some(t.text.clone());
                let chain = chain.clone();
                jobs.push(Box::pin(async move {
                    let (n, fs) = node(ctx, target, via, chain, depth + 1).await;
                    Job::Child(i, n, fs)
                }));
            }
            "a" => jobs.push(Box::pin(async move {
                let (a, aaaa) = tokio::join!(dns.a(&target), dns.aaaa(&target));
                let mut addrs: Vec<IpAddr> = a.records().iter().map(|&x| IpAddr::V4(x)).collect();
                addrs.extend(aaaa.records().iter().map(|&x| IpAddr::V6(x)));
                if let (Answer::Failed(e), _) | (_, Answer::Failed(e)) = (&a, &aaaa) {
                    return Job::Failed(i, format!("{target}: look-up failed ({e})"));
                }
                // A receiver asks for the sender's family only: counted as an IPv4
                // receiver sees it (the common case), with IPv6 noted.
                let void = a.is_void();
                let note = if void && aaaa.is_void() {
                    format!("{target}: {} (void look-up)", a.outcome())
                } else if void {
                    format!(
                        "{target}: {} (no A: a void look-up for IPv4 senders)",
                        join_capped(&addrs)
                    )
                } else if aaaa.is_void() {
                    format!(
                        "{target}: {} (no AAAA: a void look-up for IPv6 senders)",
                        join_capped(&addrs)
                    )
                } else {
                    format!("{target}: {}", join_capped(&addrs))
                };
                Job::Void(i, void, note)
            })),
            "mx" => jobs.push(Box::pin(async move {
                match dns.mx(&target).await {
                    Answer::Records(m) => {
                        let names: Vec<&str> = m.iter().map(|(_, h)| h.as_str()).collect();
                        Job::MxCount(i, m.len(), format!("{target}: MX {}", names.join(", ")))
                    }
                    a if a.is_void() => Job::Void(
                        i,
                        true,
                        format!("{target}: no MX ({}, void look-up)", a.outcome()),
                    ),
                    a => Job::Failed(i, format!("{target}: MX look-up {}", a.outcome())),
                }
            })),
            _ => jobs.push(Box::pin(async move {
                let a = dns.a(&target).await;
                if let Answer::Failed(e) = &a {
                    return Job::Failed(i, format!("{target}: look-up failed ({e})"));
                }
                let void = a.is_void();
                Job::Void(i, void, format!("{target}: {}", a.outcome()))
            })),
        }
    }
    let mut children = Vec::new();
    let mut lookups = own;
    let mut void_lookups = 0u32;
    for job in join_all(jobs).await {
        match job {
            Job::Child(i, n, fs) => {
                lookups = lookups.saturating_add(n.lookups);
                void_lookups = void_lookups.saturating_add(n.void_lookups);
                findings.extend(fs);
                children.push((i, n));
            }
            Job::Failed(i, note) => {
                findings.push(Finding::new(
                    f::SPF_DNS_TEMPERROR,
                    format!("{domain}, term {}: {note}", i + 1),
                ));
                if let Some(ti) = terms.get_mut(i) {
                    ti.note = Some(note);
                }
            }
            Job::Void(i, void, note) => {
                if let Some(ti) = terms.get_mut(i) {
                    ti.void = void;
                    ti.note = Some(note);
                }
                if void {
                    void_lookups += 1;
                }
            }
            Job::MxCount(i, n, note) => {
                if n > MAX_MX_NAMES {
                    findings.push(Finding::new(
                        f::SPF_MX_TOO_MANY,
                        format!(
                            "`{}` in {domain}'s record: {n} MX records, more than {MAX_MX_NAMES}",
                            rec.terms.get(i).map(|t| t.text.as_str()).unwrap_or("")
                        ),
                    ));
                }
                if let Some(ti) = terms.get_mut(i) {
                    ti.note = Some(note);
                }
            }
        }
    }
    children.sort_by_key(|(i, _)| *i);
    (
        SpfNode {
            domain,
            via,
            status: NodeStatus::Record,
            record: Some(rec.text.clone()),
            terms,
            own_lookups: own,
            lookups,
            void_lookups,
            children: children.into_iter().map(|(_, n)| n).collect(),
        },
        findings,
    )
}

fn join_capped(addrs: &[IpAddr]) -> String {
    let mut s: Vec<String> = addrs.iter().take(8).map(|a| a.to_string()).collect();
    if addrs.len() > 8 {
        s.push(format!("… ({} in all)", addrs.len()));
    }
    s.join(", ")
}

fn lint_record(domain: &str, rec: &Record, top: bool, findings: &mut Vec<Finding>) {
    for t in &rec.terms {
        if let TermKind::Directive(d) = &t.kind {
            if matches!(d.mechanism, Mechanism::Ptr { .. }) {
                findings.push(Finding::new(
                    f::SPF_MECHANISM_PTR,
                    format!("`{}` in {domain}'s record (term {})", t.text, t.position),
                ));
            }
            if d.mechanism == Mechanism::All && d.qualifier == Qualifier::Pass {
                findings.push(Finding::new(
                    f::SPF_RECORD_PLUS_ALL,
                    format!("`{}` in {domain}'s record (term {})", t.text, t.position),
                ));
            }
        }
    }
    let last_all = rec.alls().last();
    if let (Some((t, _)), Some((rt, _))) = (last_all, rec.redirect()) {
        findings.push(Finding::new(
            f::SPF_RECORD_REDIRECT_WITH_ALL,
            format!(
                "{domain}: `{}` (term {}) makes `{}` (term {}) unused",
                t.text, t.position, rt.text, rt.position
            ),
        ));
    }
    if top {
        match last_all {
            Some((t, d)) if d.qualifier == Qualifier::Neutral => findings.push(Finding::new(
                f::SPF_RECORD_NEUTRAL_ALL,
                format!("{domain}'s record ends in `{}`", t.text),
            )),
            None if rec.redirect().is_none() => findings.push(Finding::new(
                f::SPF_RECORD_NEUTRAL_ALL,
                format!(
                    "{domain}'s record has neither all nor redirect=: unlisted senders get neutral"
                ),
            )),
            _ => {}
        }
    }
}
