//! `mailscope dnsbl IP|DOMAIN`: is this address or domain on a DNS blocklist? Every list is
//! asked at once (one round trip), and its answer read strictly (RFC 5782 and the list's
//! own documented codes): a list's error answer is "the list refused the query", a timeout
//! is "no answer", an address outside 127.0.0.0/8 is a broken list — none of them is
//! "listed" or "clean". The look-ups are in `mailscope_mailauth::dnsbl`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use mailscope_mailauth::dnsbl::{
    self, CheckOptions, Code, CodeMatch, ListKind, ListResult, ListSpec, Status, Subject,
};
use mailscope_proto::Finding;
use mailscope_proto::finding::{
    DNSBL_INVALID_ANSWER, DNSBL_LISTED, DNSBL_NO_ANSWER, DNSBL_QUERY_REFUSED,
    DNSBL_UNDOCUMENTED_CODE,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CheckOutput, DnsArgs};
use crate::cli::GlobalArgs;
use crate::{ExitCode, UsageError};

/// Examples shown after `--help`.
pub const DNSBL_EXAMPLES: &str = "\
Lists:
  Without --lists, the built-in lists are asked: for an address zen.spamhaus.org,
  bl.spamcop.net, b.barracudacentral.org, bl.mailspike.net, dnsbl-1.uceprotect.net and
  psbl.surriel.com (IPv6: only the lists that support it); for a domain dbl.spamhaus.org,
  multi.surbl.org and multi.uribl.com. Each list's documented codes are built in, including
  the codes that mean \"the list refused the query\" (Spamhaus 127.255.255.252/254/255,
  DBL 127.0.1.255, SURBL/URIBL 127.0.0.1).
  --lists FILE replaces the built-in lists with the file's (`extend = true` at the top of
  the file adds them instead; a zone given twice takes the file's entry). --list ZONE adds
  one list: a built-in zone with its documented codes, any other zone read as RFC 5782
  says (every 127.0.0.0/8 answer is a listing).
  Public lists refuse queries that come through public resolvers (8.8.8.8, 1.1.1.1, ...):
  use your own resolver (--resolver) for trustworthy answers.

--lists FILE (TOML):
  extend = false                # true: add to the built-in lists
  [[list]]
  zone = \"zen.example.net\"
  kind = \"ip\"                   # ip | domain
  ipv6 = true                   # answers nibble-form IPv6 queries (default false)
  match = \"exact\"               # exact | bitmask (last octet = sum of sub-list bits)
  info = \"https://example.net/lookup\"
  codes = { \"127.0.0.2\" = \"spam source\", \"127.0.0.10\" = \"dynamic range\" }
  refusals = { \"127.255.255.254\" = \"query via public resolver\" }
  # no codes: any 127.0.0.0/8 answer is a listing (RFC 5782)

Examples:
  mailscope dnsbl 192.0.2.10
  mailscope dnsbl mail.example.net          # a host name: asked as a domain (DBL, SURBL, URIBL)
  mailscope dnsbl 2001:db8::25 --resolver 127.0.0.1
  mailscope dnsbl 192.0.2.10 --list bl.example.net --json
  mailscope dnsbl 192.0.2.10 --lists my-lists.toml --max-parallel 1";

/// Arguments of `mailscope dnsbl`.
#[derive(Debug, Args)]
pub struct DnsblArgs {
    /// The IPv4/IPv6 address (IP lists) or domain (domain lists) to look up.
    #[arg(value_name = "IP|DOMAIN")]
    pub subject: String,
    /// Also ask this list (repeatable); its codes are the built-in ones for a known zone,
    /// RFC 5782's generic reading otherwise.
    #[arg(long = "list", value_name = "ZONE")]
    pub list: Vec<String>,
    /// Lists to ask instead of the built-in ones (TOML, see below; `extend = true` adds).
    #[arg(long, value_name = "FILE")]
    pub lists: Option<PathBuf>,
    /// Lists asked at the same time (1 asks them one after another).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_parallel: usize,
    #[command(flatten)]
    pub dns: DnsArgs,
}

/// The `--lists` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListsFile {
    #[serde(default)]
    extend: bool,
    #[serde(default)]
    list: Vec<ListEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListEntry {
    zone: String,
    kind: String,
    #[serde(default)]
    ipv6: bool,
    #[serde(default, rename = "match")]
    matching: Option<String>,
    #[serde(default)]
    info: String,
    #[serde(default)]
    codes: BTreeMap<String, String>,
    #[serde(default)]
    refusals: BTreeMap<String, String>,
}

/// At most this many octets of `--lists` file are read.
const MAX_LISTS_FILE: u64 = 1024 * 1024;

/// Reads a `--lists` file: the lists, and whether they extend the built-in ones.
fn read_lists_file(path: &Path) -> Result<(Vec<ListSpec>, bool)> {
    let bad = |what: String| UsageError(format!("--lists {}: {what}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.len() > MAX_LISTS_FILE {
        return Err(bad(format!("{} octets, more than {MAX_LISTS_FILE}", meta.len())).into());
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let file: ListsFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if file.list.len() > dnsbl::MAX_LISTS {
        return Err(bad(format!(
            "{} lists, more than {}",
            file.list.len(),
            dnsbl::MAX_LISTS
        ))
        .into());
    }
    let mut out = Vec::new();
    for e in file.list {
        let zone = e.zone.trim().trim_end_matches('.').to_ascii_lowercase();
        mailscope_mailauth::dns::check_name(&zone)
            .map_err(|why| bad(format!("zone {:?}: {why}", e.zone)))?;
        let kind = match e.kind.as_str() {
            "ip" => ListKind::Ip,
            "domain" => ListKind::Domain,
            other => {
                return Err(bad(format!("zone {zone}: kind {other:?} is not ip or domain")).into());
            }
        };
        let matching = match e.matching.as_deref() {
            None | Some("exact") => CodeMatch::Exact,
            Some("bitmask") => CodeMatch::Bitmask,
            Some(other) => {
                return Err(bad(format!(
                    "zone {zone}: match {other:?} is not exact or bitmask"
                ))
                .into());
            }
        };
        let codes = parse_codes(&zone, "codes", &e.codes).map_err(bad)?;
        let refusals = parse_codes(&zone, "refusals", &e.refusals).map_err(bad)?;
        out.push(ListSpec {
            zone,
            kind,
            ipv6: e.ipv6,
            matching,
            codes,
            refusals,
            info: e.info,
        });
    }
    Ok((out, file.extend))
}

fn parse_codes(
    zone: &str,
    what: &str,
    map: &BTreeMap<String, String>,
) -> Result<Vec<Code>, String> {
    if map.len() > dnsbl::MAX_CODES {
        return Err(format!(
            "zone {zone}: {} {what}, more than {}",
            map.len(),
            dnsbl::MAX_CODES
        ));
    }
    map.iter()
        .map(|(k, v)| {
            let addr: Ipv4Addr = k
                .parse()
                .map_err(|_| format!("zone {zone}: {what} key {k:?} is not an IPv4 address"))?;
            if addr.octets()[0] != 127 {
                return Err(format!(
                    "zone {zone}: {what} key {k} is outside 127.0.0.0/8 (RFC 5782 §2.3)"
                ));
            }
            Ok(Code {
                addr,
                meaning: v.clone(),
            })
        })
        .collect()
}

/// The lists to ask: built-in, replaced or extended by `--lists`, plus `--list`.
fn lists_for(args: &DnsblArgs, kind: ListKind) -> Result<Vec<ListSpec>> {
    let mut lists = dnsbl::default_lists();
    if let Some(path) = &args.lists {
        let (file_lists, extend) = read_lists_file(path)?;
        if !extend {
            lists.clear();
        }
        for l in file_lists {
            lists.retain(|d| d.zone != l.zone);
            lists.push(l);
        }
    }
    for zone in &args.list {
        let zone_n = zone.trim().trim_end_matches('.').to_ascii_lowercase();
        mailscope_mailauth::dns::check_name(&zone_n)
            .map_err(|why| UsageError(format!("--list {zone:?}: {why}")))?;
        if !lists.iter().any(|l| l.zone == zone_n) {
            lists.push(dnsbl::list_for_zone(&zone_n, kind));
        }
    }
    // Only the lists that can answer for this kind of subject (the IPv6 support of an IP
    // list is reported per list).
    lists.retain(|l| l.kind == kind);
    if lists.len() > dnsbl::MAX_LISTS {
        return Err(UsageError(format!(
            "{} lists, more than {}",
            lists.len(),
            dnsbl::MAX_LISTS
        ))
        .into());
    }
    Ok(lists)
}

/// Runs `mailscope dnsbl`.
pub async fn run(global: &GlobalArgs, args: &DnsblArgs) -> Result<ExitCode> {
    let subject = Subject::parse(&args.subject).map_err(UsageError)?;
    if args.max_parallel == 0 {
        return Err(UsageError("--max-parallel must be at least 1".into()).into());
    }
    let lists = lists_for(args, subject.kind())?;
    let limit = query_limit(&args.dns)?;
    let mut out = CheckOutput::start(global, "dnsbl", &subject.to_string(), &args.dns)?;
    let opts = CheckOptions {
        max_parallel: args.max_parallel,
        query_limit: limit,
    };
    let results = dnsbl::check(out.dns(), &lists, &subject, opts).await;
    let verdict = report(&mut out, &subject, &results, true);
    out.verdict("dnsbl", &verdict);
    Ok(out.finish(global))
}

/// Upper bound on one list's query: the resolver tries twice, each within --dns-timeout.
fn query_limit(dns: &DnsArgs) -> Result<Duration> {
    Ok(dns.timeout()?.saturating_mul(2) + Duration::from_millis(500))
}

/// DNSBL results for the addresses of a domain's mail hosts (`mailscope check`): the
/// built-in IP lists for every address at once, a result per address and list with
/// findings, and the verdict word over all of them (`listed`, `not-listed`, `refused`,
/// `error`, `none`).
pub async fn report_ips(out: &mut CheckOutput, ips: &[IpAddr]) -> String {
    let lists = dnsbl::default_lists();
    let opts = CheckOptions {
        max_parallel: 64,
        query_limit: Duration::from_secs(12),
    };
    let mut set = tokio::task::JoinSet::new();
    for (i, ip) in ips.iter().take(dnsbl::MAX_LISTS).enumerate() {
        let (dns, lists, subject) = (out.dns(), lists.clone(), Subject::Ip(*ip));
        set.spawn(async move {
            let r = dnsbl::check(dns, &lists, &subject, opts).await;
            (i, subject, r)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(r) = joined {
            all.push(r);
        }
    }
    all.sort_by_key(|(i, _, _)| *i);
    let mut combined: Vec<ListResult> = Vec::new();
    for (_, subject, results) in &all {
        report(out, subject, results, false);
        combined.extend(results.iter().cloned());
    }
    if all.len() < ips.len().min(dnsbl::MAX_LISTS) {
        out.note("some DNSBL look-ups did not finish; their addresses are not reported");
        if dnsbl::overall(&combined) != dnsbl::Overall::Listed {
            return "error".into();
        }
    }
    dnsbl::overall(&combined).word().to_owned()
}

/// Reports one subject's results: a line per list, findings, and (with `summary`) the
/// overall result. Returns the overall verdict word.
fn report(
    out: &mut CheckOutput,
    subject: &Subject,
    results: &[ListResult],
    summary: bool,
) -> String {
    // Lists that gave no answer: one finding, grouped by why.
    let mut silent: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in results {
        let (verdict, text) = describe(r);
        out.result("dnsbl", &r.list.zone, verdict, &text, detail(subject, r));
        for f in findings(subject, r) {
            out.finding(&f);
        }
        if let Status::NoAnswer(why) = &r.status {
            silent.entry(why).or_default().push(&r.list.zone);
        }
    }
    if !silent.is_empty() {
        let n: usize = silent.values().map(Vec::len).sum();
        let groups: Vec<String> = silent
            .iter()
            .map(|(why, zones)| format!("{why}: {}", zones.join(", ")))
            .collect();
        out.finding(&Finding::new(
            DNSBL_NO_ANSWER,
            format!(
                "{n} list(s) gave no answer about {subject} ({})",
                groups.join("; ")
            ),
        ));
    }
    let overall = dnsbl::overall(results);
    let c = dnsbl::counts(results);
    let mut parts = Vec::new();
    let asked = results.len() - c.skipped;
    if c.listed > 0 {
        let on: Vec<&str> = results
            .iter()
            .filter(|r| matches!(r.status, Status::Listed(_)))
            .map(|r| r.list.zone.as_str())
            .collect();
        parts.push(format!(
            "listed on {} of {asked}: {}",
            c.listed,
            on.join(", ")
        ));
    }
    if c.not_listed > 0 {
        parts.push(format!("not listed on {}", c.not_listed));
    }
    if c.refused > 0 {
        parts.push(format!("{} refused the query", c.refused));
    }
    if c.no_answer > 0 {
        parts.push(format!("{} gave no answer", c.no_answer));
    }
    if c.invalid > 0 {
        parts.push(format!("{} gave invalid answers", c.invalid));
    }
    if c.skipped > 0 {
        parts.push(format!("{} skipped", c.skipped));
    }
    let mut text = format!("{} list(s): {}", results.len(), parts.join("; "));
    match overall {
        dnsbl::Overall::Listed => text.push_str(
            "\nreceivers using these lists refuse or penalise this sender; see each list's reason above",
        ),
        dnsbl::Overall::Error | dnsbl::Overall::Refused => text.push_str(
            "\nthe result is incomplete: a list that refused or gave no answer says nothing about the subject (not \"not listed\")",
        ),
        dnsbl::Overall::None => text.push_str("\nno list could be asked about this subject"),
        dnsbl::Overall::NotListed => {}
    }
    let word = overall.word().to_owned();
    if summary || c.listed > 0 {
        out.result(
            "dnsbl",
            &subject.to_string(),
            &word,
            &text,
            json!({ "listed": c.listed, "not_listed": c.not_listed, "refused": c.refused,
                    "no_answer": c.no_answer, "invalid": c.invalid, "skipped": c.skipped }),
        );
    }
    word
}

fn hits_text(hits: &[dnsbl::Hit]) -> String {
    hits.iter()
        .map(|h| format!("{} ({})", h.addr, h.meaning))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The verdict word and human text of one list's result.
fn describe(r: &ListResult) -> (&'static str, String) {
    let ms = r.elapsed.as_secs_f64() * 1000.0;
    let mut text = match &r.status {
        Status::Listed(h) => format!("{} → {} in {ms:.1}ms", r.query, hits_text(h)),
        Status::NotListed => format!("{} → NXDOMAIN in {ms:.1}ms", r.query),
        Status::Refused(h) => format!(
            "the list refused the query: {} → {}; this is an error answer, not a listing",
            r.query,
            hits_text(h)
        ),
        Status::Invalid(a) => format!(
            "{} → {}: outside 127.0.0.0/8, so the list is broken or the resolver rewrites NXDOMAIN; ignored",
            r.query,
            a.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Status::NoAnswer(why) => {
            format!("no answer for {} ({why}): unknown whether listed", r.query)
        }
        Status::Skipped(why) => format!("not asked: {why}"),
    };
    for t in &r.txt {
        text.push_str(&format!("\nTXT: {t}"));
    }
    if matches!(r.status, Status::Listed(_)) && !r.list.info.is_empty() {
        text.push_str(&format!("\nlook-up and removal: {}", r.list.info));
    }
    let verdict = match r.status {
        Status::Listed(_) => "listed",
        Status::NotListed => "not-listed",
        Status::Refused(_) => "refused",
        Status::Invalid(_) => "invalid",
        Status::NoAnswer(_) => "error",
        Status::Skipped(_) => "skipped",
    };
    (verdict, text)
}

fn detail(subject: &Subject, r: &ListResult) -> Value {
    let hits = |h: &[dnsbl::Hit]| -> Value {
        h.iter()
            .map(|h| json!({ "addr": h.addr.to_string(), "meaning": h.meaning, "documented": h.documented }))
            .collect()
    };
    let (codes, reason) = match &r.status {
        Status::Listed(h) | Status::Refused(h) => (hits(h), Value::Null),
        Status::Invalid(a) => (
            a.iter()
                .map(|a| json!({ "addr": a.to_string(), "meaning": "outside 127.0.0.0/8", "documented": false }))
                .collect(),
            Value::Null,
        ),
        Status::NoAnswer(why) | Status::Skipped(why) => (json!([]), json!(why)),
        Status::NotListed => (json!([]), Value::Null),
    };
    json!({
        "subject": subject.to_string(),
        "zone": r.list.zone,
        "kind": r.list.kind.name(),
        "query": r.query,
        "status": r.status.word(),
        "codes": codes,
        "reason": reason,
        "txt": r.txt,
        "elapsed_us": u64::try_from(r.elapsed.as_micros()).unwrap_or(u64::MAX),
        "info": r.list.info,
    })
}

fn findings(subject: &Subject, r: &ListResult) -> Vec<Finding> {
    let zone = &r.list.zone;
    let mut out = Vec::new();
    match &r.status {
        Status::Listed(h) => {
            let mut d = format!("{subject} on {zone}: {}", hits_text(h));
            if let Some(t) = r.txt.first() {
                d.push_str(&format!(" — {t}"));
            }
            out.push(Finding::new(DNSBL_LISTED, d));
            for u in h.iter().filter(|h| !h.documented) {
                out.push(Finding::new(
                    DNSBL_UNDOCUMENTED_CODE,
                    format!("{zone} answered {} ({})", u.addr, u.meaning),
                ));
            }
        }
        Status::Refused(h) => out.push(Finding::new(
            DNSBL_QUERY_REFUSED,
            format!("{zone} answered {} for {}", hits_text(h), r.query),
        )),
        Status::Invalid(a) => out.push(Finding::new(
            DNSBL_INVALID_ANSWER,
            format!(
                "{zone} answered {} for {}",
                a.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                r.query
            ),
        )),
        // One finding for all of them, in `report`.
        Status::NoAnswer(_) | Status::NotListed | Status::Skipped(_) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_file_parses_and_validates() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("l.toml");
        std::fs::write(
            &p,
            "[[list]]\nzone = \"BL.Example.\"\nkind = \"ip\"\nipv6 = true\nmatch = \"bitmask\"\ncodes = { \"127.0.0.2\" = \"x\" }\nrefusals = { \"127.0.0.1\" = \"no\" }\n",
        )
        .expect("write");
        let (l, extend) = read_lists_file(&p).expect("parses");
        assert!(!extend);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].zone, "bl.example");
        assert_eq!(l[0].matching, CodeMatch::Bitmask);
        assert_eq!(l[0].refusals[0].addr, Ipv4Addr::new(127, 0, 0, 1));
        for bad in [
            "[[list]]\nzone = \"a\"\nkind = \"url\"\n",
            "[[list]]\nzone = \"a\"\nkind = \"ip\"\ncodes = { \"10.0.0.2\" = \"x\" }\n",
            "[[list]]\nzone = \"a..b\"\nkind = \"ip\"\n",
            "[[list]]\nzone = \"a\"\nkind = \"ip\"\nbogus = 1\n",
        ] {
            std::fs::write(&p, bad).expect("write");
            assert!(read_lists_file(&p).is_err(), "{bad}");
        }
    }
}
