//! DNS blocklists (RFC 5782): which lists to ask, how to ask them, and what their answers
//! mean.
//!
//! An IP list is asked for the address's reversed octets (IPv4) or nibbles (IPv6, RFC 5782
//! §2.4) under its zone; a domain list (DBL, SURBL, URIBL) for the domain under its zone.
//! Every list is asked at once, so a check costs one round trip, not one per list; TXT
//! records (the list's reason and URL) are fetched, again all at once, only for the lists
//! that answered with an address.
//!
//! The answers are read strictly:
//! - NXDOMAIN (or a name without an A record) is "not listed";
//! - an address in 127.0.0.0/8 is a listing (RFC 5782 §2.3), read against the list's
//!   documented codes — except the codes a list uses to say that it *refused the query*
//!   (Spamhaus' 127.255.255.x, URIBL's and SURBL's 127.0.0.1, DBL's 127.0.1.255), which are
//!   errors, never listings;
//! - an address outside 127.0.0.0/8 means the list (or the resolver) is broken or wildcards;
//! - a timeout, SERVFAIL or REFUSED is "no answer", never "not listed".

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::dns::{Answer, Dns, check_name, reversed_ip_labels};

/// At most this many lists in one check (built-in, `--lists` and `--list` together).
pub const MAX_LISTS: usize = 256;
/// At most this many codes (listing or refusal) per list.
pub const MAX_CODES: usize = 256;
/// At most this many addresses of one answer are read; the rest are ignored.
pub const MAX_ANSWERS: usize = 32;
/// At most this many TXT strings are kept per list, each cut to [`MAX_TXT_SHOWN`] octets.
pub const MAX_TXT: usize = 8;
/// Octets of one TXT record that are kept for the report.
pub const MAX_TXT_SHOWN: usize = 512;

/// What a list is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// IP addresses (reversed octets or nibbles under the zone).
    Ip,
    /// Domain names (the name under the zone: RHSBL, URI blocklists).
    Domain,
}

impl ListKind {
    /// `ip` or `domain`.
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Ip => "ip",
            ListKind::Domain => "domain",
        }
    }
}

/// How a list encodes what an entry is listed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeMatch {
    /// Each answer address is one code (Spamhaus, Mailspike, ...).
    Exact,
    /// The last octet is a bit mask of sub-lists (SURBL multi, URIBL multi); a code's last
    /// octet is its bit.
    Bitmask,
}

/// One documented answer code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The address (for [`CodeMatch::Bitmask`] lists, the last octet is the bit).
    pub addr: Ipv4Addr,
    /// What it means, e.g. `SBL: Spamhaus Blocklist (spam sources and spam operations)`.
    pub meaning: String,
}

/// A blocklist: its zone and what its answers mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSpec {
    /// The zone queried, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// IP or domain list.
    pub kind: ListKind,
    /// Whether the list answers for IPv6 addresses (nibble form, RFC 5782 §2.4).
    pub ipv6: bool,
    /// Exact codes or a bit mask.
    pub matching: CodeMatch,
    /// Documented listing codes; empty: any 127.0.0.0/8 answer is a listing (RFC 5782 §2.3).
    pub codes: Vec<Code>,
    /// Codes that mean the list refused the query; never listings.
    pub refusals: Vec<Code>,
    /// Where the codes are documented, or where to look up and delist an entry.
    pub info: String,
}

fn code(addr: [u8; 4], meaning: &str) -> Code {
    Code {
        addr: Ipv4Addr::from(addr),
        meaning: meaning.to_owned(),
    }
}

/// Spamhaus' error codes, common to all its public-mirror zones.
/// Source: https://www.spamhaus.org/news/article/788/ (2019-09-30, 127.255.255.254/255) and
/// https://www.spamhaus.com/resource-center/help-for-spamhaus-projects-legacy-blocklist-users
/// (127.255.255.252: typing error in the zone name).
fn spamhaus_refusals() -> Vec<Code> {
    vec![
        code(
            [127, 255, 255, 252],
            "Spamhaus error: typing error in the DNSBL name",
        ),
        code(
            [127, 255, 255, 254],
            "Spamhaus error: query via a public/open resolver or from generic unattributable rDNS (use your own resolver or Spamhaus DQS)",
        ),
        code(
            [127, 255, 255, 255],
            "Spamhaus error: excessive number of queries (over the free-use limit; use Spamhaus DQS)",
        ),
    ]
}

/// The lists queried when none are given: well-known, free for low-volume use, with their
/// documented codes. SORBS is not among them: Proofpoint shut it down in 2024.
pub fn default_lists() -> Vec<ListSpec> {
    vec![
        // Spamhaus ZEN = SBL + CSS + XBL + PBL. Codes:
        // https://docs.spamhaustech.com/10-data-type-documentation/datasets/040-zones.html
        // and https://www.spamhaus.org/faq/section/DNSBL%20Usage ("What do the 127.*.*.*
        // Return Codes mean?"). Answers for IPv6 in nibble form.
        ListSpec {
            zone: "zen.spamhaus.org".into(),
            kind: ListKind::Ip,
            ipv6: true,
            matching: CodeMatch::Exact,
            codes: vec![
                code(
                    [127, 0, 0, 2],
                    "SBL: Spamhaus Blocklist (spam source or spam operation)",
                ),
                code(
                    [127, 0, 0, 3],
                    "CSS: Spamhaus CSS (automated: low-reputation sending)",
                ),
                code(
                    [127, 0, 0, 4],
                    "XBL: Exploits Blocklist (infected or exploited host, e.g. a botnet)",
                ),
                code([127, 0, 0, 5], "XBL: Exploits Blocklist (code reserved)"),
                code([127, 0, 0, 6], "XBL: Exploits Blocklist (code reserved)"),
                code([127, 0, 0, 7], "XBL: Exploits Blocklist (code reserved)"),
                code(
                    [127, 0, 0, 9],
                    "SBL DROP: hijacked or criminal netblock (always with SBL)",
                ),
                code(
                    [127, 0, 0, 10],
                    "PBL (ISP-maintained): this address should not send mail directly to other servers; send through your provider's relay",
                ),
                code(
                    [127, 0, 0, 11],
                    "PBL (Spamhaus-maintained): this address should not send mail directly to other servers; send through your provider's relay",
                ),
            ],
            refusals: spamhaus_refusals(),
            info: "https://check.spamhaus.org/".into(),
        },
        // SpamCop: 127.0.0.2 only. https://www.spamcop.net/fom-serve/cache/291.html
        ListSpec {
            zone: "bl.spamcop.net".into(),
            kind: ListKind::Ip,
            ipv6: false,
            matching: CodeMatch::Exact,
            codes: vec![code(
                [127, 0, 0, 2],
                "SpamCop: sent mail reported as spam by SpamCop users",
            )],
            refusals: vec![],
            info: "https://www.spamcop.net/bl.shtml".into(),
        },
        // Barracuda BRBL: 127.0.0.2; queries only from registered resolvers (unregistered
        // ones get no answer). https://www.barracudacentral.org/rbl/how-to-use
        ListSpec {
            zone: "b.barracudacentral.org".into(),
            kind: ListKind::Ip,
            ipv6: false,
            matching: CodeMatch::Exact,
            codes: vec![code(
                [127, 0, 0, 2],
                "Barracuda Reputation Block List: poor sending reputation",
            )],
            refusals: vec![],
            info: "https://www.barracudacentral.org/lookups".into(),
        },
        // Mailspike BL = z.mailspike.net (127.0.0.2) + rep.mailspike.net levels L5–L3
        // (127.0.0.10–12). https://mailspike.org/usage.html
        ListSpec {
            zone: "bl.mailspike.net".into(),
            kind: ListKind::Ip,
            ipv6: false,
            matching: CodeMatch::Exact,
            codes: vec![
                code(
                    [127, 0, 0, 2],
                    "Mailspike Z: part of a distributed spam wave",
                ),
                code([127, 0, 0, 10], "Mailspike L5: worst possible reputation"),
                code([127, 0, 0, 11], "Mailspike L4: very bad reputation"),
                code([127, 0, 0, 12], "Mailspike L3: bad reputation"),
            ],
            refusals: vec![],
            info: "https://mailspike.org/anubis/lookup.html".into(),
        },
        // UCEPROTECT level 1 (single addresses): 127.0.0.2.
        // https://www.uceprotect.net/en/index.php?m=6&s=11
        ListSpec {
            zone: "dnsbl-1.uceprotect.net".into(),
            kind: ListKind::Ip,
            ipv6: false,
            matching: CodeMatch::Exact,
            codes: vec![code(
                [127, 0, 0, 2],
                "UCEPROTECT level 1: this address sent to UCEPROTECT spam traps",
            )],
            refusals: vec![],
            info: "https://www.uceprotect.net/en/rblcheck.php".into(),
        },
        // PSBL (Passive Spam Block List): 127.0.0.2. https://psbl.org/howto/
        ListSpec {
            zone: "psbl.surriel.com".into(),
            kind: ListKind::Ip,
            ipv6: false,
            matching: CodeMatch::Exact,
            codes: vec![code([127, 0, 0, 2], "PSBL: sent mail to PSBL spam traps")],
            refusals: vec![],
            info: "https://psbl.org/listing".into(),
        },
        // Spamhaus DBL (domains). Same docs as ZEN; 127.0.1.255 = IP queries not allowed.
        ListSpec {
            zone: "dbl.spamhaus.org".into(),
            kind: ListKind::Domain,
            ipv6: false,
            matching: CodeMatch::Exact,
            codes: vec![
                code([127, 0, 1, 2], "DBL: spam domain (low reputation)"),
                code([127, 0, 1, 4], "DBL: phishing domain"),
                code([127, 0, 1, 5], "DBL: malware domain"),
                code([127, 0, 1, 6], "DBL: botnet command-and-control domain"),
                code([127, 0, 1, 102], "DBL: abused legitimate domain (spam)"),
                code(
                    [127, 0, 1, 103],
                    "DBL: abused legitimate redirector/URL shortener",
                ),
                code([127, 0, 1, 104], "DBL: abused legitimate domain (phishing)"),
                code([127, 0, 1, 105], "DBL: abused legitimate domain (malware)"),
                code(
                    [127, 0, 1, 106],
                    "DBL: abused legitimate domain (botnet C&C)",
                ),
            ],
            refusals: {
                let mut r = spamhaus_refusals();
                r.push(code(
                    [127, 0, 1, 255],
                    "Spamhaus DBL error: IP queries are not allowed in the DBL",
                ));
                r
            },
            info: "https://check.spamhaus.org/".into(),
        },
        // SURBL multi: bit mask in the last octet (8 PH, 16 MW, 64 ABUSE, 128 CR);
        // 127.0.0.1 = the query was blocked (SpamAssassin's SURBL_BLOCKED).
        // https://www.surbl.org/lists (Implementation Guidelines)
        ListSpec {
            zone: "multi.surbl.org".into(),
            kind: ListKind::Domain,
            ipv6: false,
            matching: CodeMatch::Bitmask,
            codes: vec![
                code([127, 0, 0, 8], "SURBL PH: phishing"),
                code([127, 0, 0, 16], "SURBL MW: malware"),
                code([127, 0, 0, 64], "SURBL ABUSE: spam and abuse"),
                code([127, 0, 0, 128], "SURBL CR: cracked sites"),
            ],
            refusals: vec![code(
                [127, 0, 0, 1],
                "SURBL refused the query: the resolver is blocked for excessive volume (public resolvers are)",
            )],
            info: "https://www.surbl.org/surbl-analysis".into(),
        },
        // URIBL multi: bit mask (2 black, 4 grey, 8 red); 127.0.0.1 = query refused.
        // https://uribl.com/about.shtml, https://uribl.com/refused.shtml
        ListSpec {
            zone: "multi.uribl.com".into(),
            kind: ListKind::Domain,
            ipv6: false,
            matching: CodeMatch::Bitmask,
            codes: vec![
                code([127, 0, 0, 2], "URIBL black: domain used by spammers"),
                code(
                    [127, 0, 0, 4],
                    "URIBL grey: domain in bulk mail that may be solicited",
                ),
                code(
                    [127, 0, 0, 8],
                    "URIBL red: very young or privacy-protected domain seen in mail flow",
                ),
            ],
            refusals: vec![code(
                [127, 0, 0, 1],
                "URIBL refused the query (public or high-volume resolver): see https://uribl.com/refused.shtml",
            )],
            info: "https://admin.uribl.com/".into(),
        },
    ]
}

/// A list given only by its zone (`--list ZONE`): a built-in list's documented codes when
/// the zone is one of them, RFC 5782's generic reading (any 127.0.0.0/8 answer lists)
/// otherwise.
pub fn list_for_zone(zone: &str, kind: ListKind) -> ListSpec {
    let zone = normalize_name(zone);
    default_lists()
        .into_iter()
        .find(|l| l.zone == zone)
        .unwrap_or(ListSpec {
            zone,
            kind,
            ipv6: true,
            matching: CodeMatch::Exact,
            codes: vec![],
            refusals: vec![],
            info: String::new(),
        })
}

/// What is checked: an address or a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An IPv4 or IPv6 address (IP lists).
    Ip(IpAddr),
    /// A domain name (domain lists), lower case, without the trailing dot.
    Domain(String),
}

impl Subject {
    /// An IP literal (brackets allowed) or a domain name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Subject::Ip(ip));
        }
        let d = normalize_name(s);
        check_name(&d).map_err(|e| format!("{s:?} is neither an IP address nor a domain: {e}"))?;
        if !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(format!(
                "{s:?} is neither an IP address nor a domain name (letters, digits, '-', '.' only; give an IDN in its xn-- form)"
            ));
        }
        Ok(Subject::Domain(d))
    }

    /// The kind of list that can answer for it.
    pub fn kind(&self) -> ListKind {
        match self {
            Subject::Ip(_) => ListKind::Ip,
            Subject::Domain(_) => ListKind::Domain,
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Ip(ip) => write!(f, "{ip}"),
            Subject::Domain(d) => f.write_str(d),
        }
    }
}

fn normalize_name(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The name to ask `list` about `subject`, or why the list cannot answer for it.
pub fn query_name(list: &ListSpec, subject: &Subject) -> Result<String, String> {
    match (subject, list.kind) {
        (Subject::Ip(ip), ListKind::Ip) => {
            if ip.is_ipv6() && !list.ipv6 {
                return Err(format!(
                    "{} does not list IPv6 addresses (RFC 5782 §2.4 nibble queries are not supported there)",
                    list.zone
                ));
            }
            Ok(format!("{}.{}", reversed_ip_labels(*ip), list.zone))
        }
        (Subject::Domain(d), ListKind::Domain) => Ok(format!("{d}.{}", list.zone)),
        (Subject::Ip(_), ListKind::Domain) => Err(format!(
            "{} is a domain list; the subject is an address",
            list.zone
        )),
        (Subject::Domain(_), ListKind::Ip) => Err(format!(
            "{} is an IP list; the subject is a domain",
            list.zone
        )),
    }
}

/// One answer address, read against the list's codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The address answered.
    pub addr: Ipv4Addr,
    /// Its meaning (the documented one, or a generic text).
    pub meaning: String,
    /// Whether the list documents this code.
    pub documented: bool,
}

/// What one list said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Listed: the codes found.
    Listed(Vec<Hit>),
    /// NXDOMAIN (or no A record): not listed.
    NotListed,
    /// The list answered with its error code(s): it refused the query.
    Refused(Vec<Hit>),
    /// Answers outside 127.0.0.0/8: broken list or wildcarding resolver.
    Invalid(Vec<Ipv4Addr>),
    /// No usable answer (timeout, SERVFAIL, REFUSED, ...): unknown.
    NoAnswer(String),
    /// Not asked, and why (IPv6 not supported, wrong kind of list).
    Skipped(String),
}

impl Status {
    /// One word: `listed`, `not-listed`, `refused`, `invalid`, `no-answer`, `skipped`.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Listed(_) => "listed",
            Status::NotListed => "not-listed",
            Status::Refused(_) => "refused",
            Status::Invalid(_) => "invalid",
            Status::NoAnswer(_) => "no-answer",
            Status::Skipped(_) => "skipped",
        }
    }
}

/// Reads the A answer of a list (pure: no DNS).
pub fn classify(list: &ListSpec, addrs: &[Ipv4Addr]) -> Status {
    let addrs: Vec<Ipv4Addr> = addrs
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(MAX_ANSWERS)
        .collect();
    if addrs.is_empty() {
        return Status::NotListed;
    }
    let outside: Vec<Ipv4Addr> = addrs
        .iter()
        .copied()
        .filter(|a| a.octets()[0] != 127)
        .collect();
    if !outside.is_empty() {
        return Status::Invalid(outside);
    }
    let mut refused = Vec::new();
    let mut listed = Vec::new();
    for a in addrs {
        if let Some(r) = list.refusals.iter().find(|r| r.addr == a) {
            refused.push(Hit {
                addr: a,
                meaning: r.meaning.clone(),
                documented: true,
            });
            continue;
        }
        listed.push(read_code(list, a));
    }
    if !refused.is_empty() {
        Status::Refused(refused)
    } else {
        Status::Listed(listed)
    }
}

fn read_code(list: &ListSpec, a: Ipv4Addr) -> Hit {
    if list.codes.is_empty() {
        return Hit {
            addr: a,
            meaning: "listed (RFC 5782: any 127.0.0.0/8 answer)".into(),
            documented: true,
        };
    }
    match list.matching {
        CodeMatch::Exact => match list.codes.iter().find(|c| c.addr == a) {
            Some(c) => Hit {
                addr: a,
                meaning: c.meaning.clone(),
                documented: true,
            },
            None => Hit {
                addr: a,
                meaning: "undocumented code".into(),
                documented: false,
            },
        },
        CodeMatch::Bitmask => {
            let bits = a.octets()[3];
            let mut known = 0u8;
            let mut parts = Vec::new();
            for c in &list.codes {
                let bit = c.addr.octets()[3];
                if bit != 0 && bits & bit == bit {
                    known |= bit;
                    parts.push(c.meaning.clone());
                }
            }
            let unknown = bits & !known;
            if unknown != 0 {
                parts.push(format!("undocumented bits {unknown:#04x}"));
            }
            Hit {
                addr: a,
                meaning: parts.join("; "),
                documented: unknown == 0,
            }
        }
    }
}

/// One list's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// The list.
    pub list: ListSpec,
    /// The name asked (empty when skipped).
    pub query: String,
    /// What it said.
    pub status: Status,
    /// TXT texts at the same name (for listed and refused answers), capped.
    pub txt: Vec<String>,
    /// Time from the A query to its answer.
    pub elapsed: Duration,
}

/// How to run a check.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Lists asked at the same time (at least 1; 1 asks them one after another).
    pub max_parallel: usize,
    /// Upper bound on one query, retries included; beyond it the list gave no answer.
    pub query_limit: Duration,
}

/// Asks every list about `subject`, concurrently (at most `opts.max_parallel` at a time),
/// then fetches TXT for the lists that answered with an address. Results come in the
/// order of `lists`.
pub async fn check(
    dns: Arc<Dns>,
    lists: &[ListSpec],
    subject: &Subject,
    opts: CheckOptions,
) -> Vec<ListResult> {
    let sem = Arc::new(Semaphore::new(opts.max_parallel.clamp(1, MAX_LISTS)));
    let mut set = JoinSet::new();
    let mut results: Vec<Option<ListResult>> = vec![None; lists.len().min(MAX_LISTS)];
    for (i, list) in lists.iter().take(MAX_LISTS).enumerate() {
        let query = match query_name(list, subject) {
            Ok(q) => q,
            Err(why) => {
                results[i] = Some(ListResult {
                    list: list.clone(),
                    query: String::new(),
                    status: Status::Skipped(why),
                    txt: vec![],
                    elapsed: Duration::ZERO,
                });
                continue;
            }
        };
        let (dns, sem, list) = (Arc::clone(&dns), Arc::clone(&sem), list.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            let start = Instant::now();
            let answer = tokio::time::timeout(opts.query_limit, dns.a(&query)).await;
            let elapsed = start.elapsed();
            let status = match answer {
                Err(_) => Status::NoAnswer(format!(
                    "no answer within {:.1}s",
                    opts.query_limit.as_secs_f64()
                )),
                Ok(Answer::Records(addrs)) => classify(&list, &addrs),
                Ok(Answer::NxDomain) | Ok(Answer::NoData) => Status::NotListed,
                Ok(Answer::Failed(f)) => Status::NoAnswer(f.to_string()),
            };
            let mut txt = Vec::new();
            if matches!(status, Status::Listed(_) | Status::Refused(_))
                && let Ok(Answer::Records(recs)) =
                    tokio::time::timeout(opts.query_limit, dns.txt(&query)).await
            {
                for r in recs.into_iter().take(MAX_TXT) {
                    let shown = &r[..r.len().min(MAX_TXT_SHOWN)];
                    txt.push(String::from_utf8_lossy(shown).into_owned());
                }
            }
            (
                i,
                ListResult {
                    list,
                    query,
                    status,
                    txt,
                    elapsed,
                },
            )
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined
            && let Some(slot) = results.get_mut(i)
        {
            *slot = Some(r);
        }
    }
    results
        .into_iter()
        .zip(lists)
        .map(|(r, list)| {
            r.unwrap_or_else(|| ListResult {
                list: list.clone(),
                query: String::new(),
                status: Status::NoAnswer("the look-up task failed".into()),
                txt: vec![],
                elapsed: Duration::ZERO,
            })
        })
        .collect()
}

/// The verdict over several lists' results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    /// On at least one list.
    Listed,
    /// Every list that was asked answered "not listed".
    NotListed,
    /// Not listed where answered, but some lists refused the query (their error codes).
    Refused,
    /// Not listed where answered, but some lists gave no answer or a broken one.
    Error,
    /// No list could be asked (all skipped).
    None,
}

impl Overall {
    /// `listed`, `not-listed`, `refused`, `error`, `none`.
    pub fn word(self) -> &'static str {
        match self {
            Overall::Listed => "listed",
            Overall::NotListed => "not-listed",
            Overall::Refused => "refused",
            Overall::Error => "error",
            Overall::None => "none",
        }
    }
}

/// Counts by status, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Lists that list the subject.
    pub listed: usize,
    /// Lists that answered NXDOMAIN.
    pub not_listed: usize,
    /// Lists that refused the query.
    pub refused: usize,
    /// Lists with answers outside 127.0.0.0/8.
    pub invalid: usize,
    /// Lists that gave no answer.
    pub no_answer: usize,
    /// Lists not asked.
    pub skipped: usize,
}

/// Counts results by status.
pub fn counts(results: &[ListResult]) -> Counts {
    let mut c = Counts::default();
    for r in results {
        match r.status {
            Status::Listed(_) => c.listed += 1,
            Status::NotListed => c.not_listed += 1,
            Status::Refused(_) => c.refused += 1,
            Status::Invalid(_) => c.invalid += 1,
            Status::NoAnswer(_) => c.no_answer += 1,
            Status::Skipped(_) => c.skipped += 1,
        }
    }
    c
}

/// The overall verdict: listed wins; then broken or missing answers; then refusals.
pub fn overall(results: &[ListResult]) -> Overall {
    let c = counts(results);
    if c.listed > 0 {
        Overall::Listed
    } else if c.invalid + c.no_answer > 0 {
        Overall::Error
    } else if c.refused > 0 {
        Overall::Refused
    } else if c.not_listed > 0 {
        Overall::NotListed
    } else {
        Overall::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().expect("address")
    }

    fn zen() -> ListSpec {
        default_lists()
            .into_iter()
            .find(|l| l.zone == "zen.spamhaus.org")
            .expect("zen")
    }

    #[test]
    fn spamhaus_error_codes_are_refusals_not_listings() {
        for e in ["127.255.255.252", "127.255.255.254", "127.255.255.255"] {
            assert!(
                matches!(classify(&zen(), &[a(e)]), Status::Refused(_)),
                "{e}"
            );
        }
        match classify(&zen(), &[a("127.0.0.2"), a("127.0.0.10")]) {
            Status::Listed(h) => {
                assert_eq!(h.len(), 2);
                assert!(h[0].meaning.starts_with("SBL"));
                assert!(h[1].meaning.starts_with("PBL"));
                assert!(h.iter().all(|h| h.documented));
            }
            other => panic!("{other:?}"),
        }
        match classify(&zen(), &[a("127.0.0.77")]) {
            Status::Listed(h) => assert!(!h[0].documented),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(&zen(), &[a("192.0.2.1"), a("127.0.0.2")]),
            Status::Invalid(vec![a("192.0.2.1")])
        );
        assert_eq!(classify(&zen(), &[]), Status::NotListed);
    }

    #[test]
    fn bitmask_lists_decode_bits_and_refusal() {
        let uribl = list_for_zone("MULTI.URIBL.COM.", ListKind::Ip);
        assert_eq!(uribl.kind, ListKind::Domain);
        assert!(matches!(
            classify(&uribl, &[a("127.0.0.1")]),
            Status::Refused(_)
        ));
        match classify(&uribl, &[a("127.0.0.6")]) {
            Status::Listed(h) => {
                assert!(h[0].meaning.contains("black") && h[0].meaning.contains("grey"));
                assert!(h[0].documented);
            }
            other => panic!("{other:?}"),
        }
        match classify(&uribl, &[a("127.0.0.34")]) {
            Status::Listed(h) => {
                assert!(!h[0].documented);
                assert!(h[0].meaning.contains("0x20"), "{}", h[0].meaning);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn query_names_follow_rfc_5782() {
        let z = zen();
        let v4 = Subject::parse("192.0.2.99").expect("ip");
        assert_eq!(
            query_name(&z, &v4).expect("name"),
            "99.2.0.192.zen.spamhaus.org"
        );
        let v6 = Subject::parse("[2001:db8::1]").expect("ip");
        assert!(
            query_name(&z, &v6)
                .expect("name")
                .ends_with(".8.b.d.0.1.0.0.2.zen.spamhaus.org")
        );
        let spamcop = list_for_zone("bl.spamcop.net", ListKind::Ip);
        assert!(query_name(&spamcop, &v6).is_err());
        let d = Subject::parse("Example.COM.").expect("domain");
        assert_eq!(d, Subject::Domain("example.com".into()));
        let dbl = list_for_zone("dbl.spamhaus.org", ListKind::Domain);
        assert_eq!(
            query_name(&dbl, &d).expect("name"),
            "example.com.dbl.spamhaus.org"
        );
        assert!(query_name(&z, &d).is_err());
        assert!(Subject::parse("not a domain").is_err());
        assert!(Subject::parse("").is_err());
    }

    #[test]
    fn overall_never_reads_errors_as_clean() {
        let mk = |status| ListResult {
            list: zen(),
            query: String::new(),
            status,
            txt: vec![],
            elapsed: Duration::ZERO,
        };
        assert_eq!(overall(&[mk(Status::NotListed)]), Overall::NotListed);
        assert_eq!(
            overall(&[
                mk(Status::NotListed),
                mk(Status::NoAnswer("timeout".into()))
            ]),
            Overall::Error
        );
        assert_eq!(
            overall(&[mk(Status::NotListed), mk(Status::Refused(vec![]))]),
            Overall::Refused
        );
        assert_eq!(
            overall(&[mk(Status::Refused(vec![])), mk(Status::Listed(vec![]))]),
            Overall::Listed
        );
        assert_eq!(overall(&[mk(Status::Skipped("v6".into()))]), Overall::None);
    }
}
