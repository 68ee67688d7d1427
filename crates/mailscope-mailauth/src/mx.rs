//! Where mail for a domain goes: its MX set (null MX, RFC 7505; implicit MX, RFC 5321 §5.1),
//! each host's addresses, and forward-confirmed reverse DNS of every address (the PTR name
//! must resolve back to the same address, RFC 8601 §3 "iprev").
//!
//! Look-ups run concurrently: the MX set, then every host's A, AAAA and CNAME at once, then
//! every address's PTR and its forward confirmation at once. Hosts and addresses are capped
//! ([`MAX_HOSTS`], [`MAX_ADDRS_PER_HOST`], [`MAX_PTR_NAMES`]); what was left out is counted
//! and reported.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::task::Poll;

use hickory_resolver::proto::rr::RecordType;
use mailscope_proto::Severity;
use mailscope_proto::finding::{self, Finding};

use crate::dns::{Answer, Dns};

/// At most this many MX hosts are checked.
pub const MAX_HOSTS: usize = 20;
/// At most this many addresses (A and AAAA together) per host are checked.
pub const MAX_ADDRS_PER_HOST: usize = 8;
/// At most this many PTR names per address are forward-confirmed.
pub const MAX_PTR_NAMES: usize = 4;

/// How the domain routes mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// MX records.
    Explicit,
    /// No MX record: the domain's own address records (RFC 5321 §5.1).
    Implicit,
    /// A null MX alone (RFC 7505): the domain receives no mail.
    NullMx,
    /// No MX and no address: nowhere to deliver. `nxdomain` tells whether the domain
    /// exists at all.
    Nowhere {
        /// The domain does not exist.
        nxdomain: bool,
    },
    /// The MX look-up failed; routing is unknown.
    Failed(String),
}

/// The network an address belongs to, as far as reaching it from the Internet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A global unicast address.
    Public,
    /// Private use (RFC 1918, RFC 4193 ULA, RFC 6598 shared space): reachable only inside
    /// one network.
    Private,
    /// Anything else that cannot be a public MX: loopback, link-local, unspecified,
    /// documentation, benchmarking, multicast, reserved. The text names which.
    Reserved(&'static str),
}

impl Scope {
    /// One word for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Scope::Public => "public",
            Scope::Private => "private",
            Scope::Reserved(n) => n,
        }
    }
}

/// The verdict of forward-confirmed reverse DNS for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fcrdns {
    /// A PTR name resolves back to the address.
    Confirmed {
        /// That name.
        name: String,
    },
    /// PTR names exist but none resolves back to the address.
    Mismatch {
        /// Each PTR name with the addresses it resolved to (of the same family).
        names: Vec<(String, Vec<IpAddr>)>,
    },
    /// No PTR record (NXDOMAIN or NODATA).
    NoPtr,
    /// The PTR look-up failed.
    Failed(String),
}

impl Fcrdns {
    /// One word for reports: `confirmed`, `mismatch`, `no-ptr`, `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Fcrdns::Confirmed { .. } => "confirmed",
            Fcrdns::Mismatch { .. } => "mismatch",
            Fcrdns::NoPtr => "no-ptr",
            Fcrdns::Failed(_) => "failed",
        }
    }
}

/// One address of an MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxAddress {
    /// The address.
    pub ip: IpAddr,
    /// Public, private or reserved.
    pub scope: Scope,
    /// PTR names (at most [`MAX_PTR_NAMES`] are confirmed).
    pub ptr: Vec<String>,
    /// FCrDNS verdict.
    pub fcrdns: Fcrdns,
}

/// One MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// MX preference (0 for an implicit MX).
    pub preference: u16,
    /// The exchange name, as published.
    pub name: String,
    /// The exchange name is an alias: the CNAME target.
    pub cname: Option<String>,
    /// The exchange name is an IP address written as a name.
    pub ip_literal: bool,
    /// Outcome of the A look-up (`answer`, `nodata`, `nxdomain`, `timeout`, ...).
    pub a_outcome: String,
    /// Outcome of the AAAA look-up.
    pub aaaa_outcome: String,
    /// Addresses, A first, at most [`MAX_ADDRS_PER_HOST`].
    pub addresses: Vec<MxAddress>,
    /// Addresses beyond the cap.
    pub addresses_dropped: usize,
}

/// Everything learned about a domain's mail routing.
#[derive(Debug, Clone)]
pub struct MxReport {
    /// The domain asked about.
    pub domain: String,
    /// How mail is routed.
    pub routing: Routing,
    /// Hosts by preference (empty for null MX, nowhere, failed).
    pub hosts: Vec<MxHost>,
    /// MX hosts beyond [`MAX_HOSTS`].
    pub hosts_dropped: usize,
    /// What is wrong or worth knowing.
    pub findings: Vec<Finding>,
}

impl MxReport {
    /// One word: `ok`, `warning` (findings, but mail can be delivered), `error` (no host
    /// can receive mail, or routing is ambiguous), `null-mx`, `missing` (nowhere to
    /// deliver), `temperror` (the MX look-up failed).
    pub fn verdict(&self) -> &'static str {
        match &self.routing {
            Routing::NullMx => return "null-mx",
            Routing::Nowhere { .. } => return "missing",
            Routing::Failed(_) => return "temperror",
            Routing::Explicit | Routing::Implicit => {}
        }
        let deliverable = self.hosts.iter().any(|h| !h.addresses.is_empty());
        let public = self
            .hosts
            .iter()
            .flat_map(|h| &h.addresses)
            .any(|a| a.scope == Scope::Public);
        let ambiguous = self
            .findings
            .iter()
            .any(|f| f.kind == finding::MX_NULL_MIXED);
        if !deliverable || ambiguous {
            "error"
        } else if !public
            || self
                .findings
                .iter()
                .any(|f| f.severity >= Severity::Warning)
        {
            "warning"
        } else {
            "ok"
        }
    }

    /// Host names and their addresses, for the checks that follow (MTA-STS, DANE).
    pub fn host_addresses(&self) -> Vec<(String, Vec<IpAddr>)> {
        self.hosts
            .iter()
            .map(|h| (h.name.clone(), h.addresses.iter().map(|a| a.ip).collect()))
            .collect()
    }
}

/// Looks up the MX set of `domain` and checks every host and address.
pub async fn check(dns: &Dns, domain: &str) -> MxReport {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut findings = Vec::new();
    let mut hosts_dropped = 0;
    let (routing, exchanges): (Routing, Vec<(u16, String)>) = match dns.mx(&domain).await {
        Answer::Records(recs) => {
            let null = recs.iter().any(|(_, e)| e.is_empty());
            if null && recs.len() == 1 {
                findings.push(Finding::new(
                    finding::MX_NULL,
                    format!("{domain} publishes MX 0 . and receives no mail"),
                ));
                (Routing::NullMx, Vec::new())
            } else {
                if null {
                    findings.push(Finding::new(
                        finding::MX_NULL_MIXED,
                        format!(
                            "{domain} publishes a null MX and {} other MX record(s)",
                            recs.len() - 1
                        ),
                    ));
                }
                let mut real: Vec<(u16, String)> =
                    recs.into_iter().filter(|(_, e)| !e.is_empty()).collect();
                if real.len() > MAX_HOSTS {
                    hosts_dropped = real.len() - MAX_HOSTS;
                    real.truncate(MAX_HOSTS);
                    findings.push(Finding::new(
                        finding::MX_TOO_MANY,
                        format!("{hosts_dropped} MX host(s) beyond the first {MAX_HOSTS} were not checked"),
                    ));
                }
                (Routing::Explicit, real)
            }
        }
        Answer::NxDomain => {
            findings.push(Finding::new(
                finding::MX_NONE,
                format!("{domain} does not exist (NXDOMAIN)"),
            ));
            (Routing::Nowhere { nxdomain: true }, Vec::new())
        }
        Answer::NoData => (Routing::Implicit, vec![(0, domain.clone())]),
        Answer::Failed(e) => {
            let mut f = Finding::new(
                finding::DOMAIN_DNS_LOOKUP_FAILED,
                format!("MX {domain}: {e}"),
            );
            f.severity = Severity::Error;
            findings.push(f);
            (Routing::Failed(e.to_string()), Vec::new())
        }
    };

    // Every host's A, AAAA and CNAME at once.
    let lookups = join_all(
        exchanges
            .iter()
            .map(|(_, name)| lookup_host(dns, name))
            .collect(),
    )
    .await;
    let mut hosts: Vec<MxHost> = Vec::new();
    for ((preference, name), l) in exchanges.into_iter().zip(lookups) {
        hosts.push(MxHost {
            preference,
            ip_literal: l.ip_literal,
            cname: l.cname,
            a_outcome: l.a_outcome,
            aaaa_outcome: l.aaaa_outcome,
            addresses: l
                .addrs
                .into_iter()
                .map(|ip| MxAddress {
                    ip,
                    scope: scope(ip),
                    ptr: Vec::new(),
                    fcrdns: Fcrdns::NoPtr,
                })
                .collect(),
            addresses_dropped: l.dropped,
            name,
        });
    }

    // An implicit MX with no address is no route at all, when the address look-ups said so;
    // when they failed, routing is unknown (a temporary error, not "nowhere").
    let implicit_failed = routing == Routing::Implicit
        && hosts.iter().all(|h| h.addresses.is_empty())
        && hosts.iter().any(|h| {
            !matches!(h.a_outcome.as_str(), "nodata" | "nxdomain")
                || !matches!(h.aaaa_outcome.as_str(), "nodata" | "nxdomain")
        });
    let routing = if implicit_failed {
        let why: Vec<String> = hosts
            .iter()
            .map(|h| format!("A {}, AAAA {}", h.a_outcome, h.aaaa_outcome))
            .collect();
        findings.push(Finding::new(
            finding::DOMAIN_DNS_LOOKUP_FAILED,
            format!(
                "{domain} has no MX record and its address look-ups failed ({})",
                why.join("; ")
            ),
        ));
        hosts.clear();
        Routing::Failed(format!("address look-ups failed: {}", why.join("; ")))
    } else if routing == Routing::Implicit && hosts.iter().all(|h| h.addresses.is_empty()) {
        findings.push(Finding::new(
            finding::MX_NONE,
            format!("{domain} has no MX record and no A/AAAA record"),
        ));
        hosts.clear();
        Routing::Nowhere { nxdomain: false }
    } else {
        if routing == Routing::Implicit {
            findings.push(Finding::new(
                finding::MX_IMPLICIT,
                format!("{domain} has no MX record; mail goes to {domain}'s own address"),
            ));
        }
        routing
    };

    // Every address's PTR and forward confirmation at once.
    let all: Vec<IpAddr> = hosts
        .iter()
        .flat_map(|h| h.addresses.iter().map(|a| a.ip))
        .collect();
    let mut results = join_all(all.iter().map(|ip| fcrdns(dns, *ip)).collect())
        .await
        .into_iter();
    for h in &mut hosts {
        for a in &mut h.addresses {
            if let Some((ptr, verdict)) = results.next() {
                a.ptr = ptr;
                a.fcrdns = verdict;
            }
        }
    }

    for h in &hosts {
        host_findings(h, &mut findings);
    }
    MxReport {
        domain,
        routing,
        hosts,
        hosts_dropped,
        findings,
    }
}

struct HostLookup {
    ip_literal: bool,
    cname: Option<String>,
    a_outcome: String,
    aaaa_outcome: String,
    addrs: Vec<IpAddr>,
    dropped: usize,
}

async fn lookup_host(dns: &Dns, name: &str) -> HostLookup {
    let literal = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok();
    if literal {
        // Senders look it up as a name; it has no address records, and asking the
        // resolver about a numeric name tells nothing.
        return HostLookup {
            ip_literal: true,
            cname: None,
            a_outcome: "not-asked".into(),
            aaaa_outcome: "not-asked".into(),
            addrs: Vec::new(),
            dropped: 0,
        };
    }
    let (a, aaaa, cname) = tokio::join!(
        dns.a(name),
        dns.aaaa(name),
        dns.raw(name, RecordType::CNAME)
    );
    let mut addrs: Vec<IpAddr> = a.records().iter().copied().map(IpAddr::V4).collect();
    addrs.extend(aaaa.records().iter().copied().map(IpAddr::V6));
    let mut seen = Vec::new();
    addrs.retain(|ip| {
        let new = !seen.contains(ip);
        seen.push(*ip);
        new
    });
    let dropped = addrs.len().saturating_sub(MAX_ADDRS_PER_HOST);
    addrs.truncate(MAX_ADDRS_PER_HOST);
    HostLookup {
        ip_literal: false,
        cname: cname
            .records()
            .first()
            .map(|c| c.trim_end_matches('.').to_owned()),
        a_outcome: a.outcome(),
        aaaa_outcome: aaaa.outcome(),
        addrs,
        dropped,
    }
}

async fn fcrdns(dns: &Dns, ip: IpAddr) -> (Vec<String>, Fcrdns) {
    let names = match dns.ptr(ip).await {
        Answer::Records(r) => r,
        Answer::NxDomain | Answer::NoData => return (Vec::new(), Fcrdns::NoPtr),
        Answer::Failed(e) => return (Vec::new(), Fcrdns::Failed(e.to_string())),
    };
    let checked: Vec<String> = names.iter().take(MAX_PTR_NAMES).cloned().collect();
    let forward = join_all(checked.iter().map(|n| dns.addrs_like(n, ip)).collect()).await;
    let mut resolved = Vec::new();
    for (name, answer) in checked.into_iter().zip(forward) {
        let addrs = answer.records().to_vec();
        if addrs.contains(&ip) {
            return (names, Fcrdns::Confirmed { name });
        }
        resolved.push((name, addrs));
    }
    (names, Fcrdns::Mismatch { names: resolved })
}

fn host_findings(h: &MxHost, out: &mut Vec<Finding>) {
    let name = &h.name;
    if h.ip_literal {
        out.push(Finding::new(
            finding::MX_IP_LITERAL,
            format!("MX {} {name} names an address, not a host", h.preference),
        ));
        return;
    }
    if let Some(target) = &h.cname {
        out.push(Finding::new(
            finding::MX_CNAME,
            format!("MX host {name} is an alias (CNAME) for {target}"),
        ));
    }
    if h.addresses.is_empty() {
        let failed = [&h.a_outcome, &h.aaaa_outcome]
            .iter()
            .any(|o| !matches!(o.as_str(), "answer" | "nodata" | "nxdomain"));
        if failed {
            out.push(Finding::new(
                finding::DOMAIN_DNS_LOOKUP_FAILED,
                format!(
                    "A/AAAA of MX host {name}: {} / {}",
                    h.a_outcome, h.aaaa_outcome
                ),
            ));
        } else {
            out.push(Finding::new(
                finding::MX_HOST_NO_ADDRESS,
                format!(
                    "MX host {name} has no A or AAAA record ({})",
                    if h.a_outcome == "nxdomain" {
                        "the name does not exist"
                    } else {
                        "the name exists but has no address"
                    }
                ),
            ));
        }
    }
    if h.addresses_dropped > 0 {
        out.push(Finding::new(
            finding::MX_TOO_MANY,
            format!(
                "MX host {name}: {} address(es) beyond the first {MAX_ADDRS_PER_HOST} were not checked",
                h.addresses_dropped
            ),
        ));
    }
    for a in &h.addresses {
        if a.scope != Scope::Public {
            let mut f = Finding::new(
                finding::MX_ADDRESS_NON_PUBLIC,
                format!("MX host {name} has the {} address {}", a.scope.name(), a.ip),
            );
            if a.scope == Scope::Private {
                // Private space can be right in an internal view of the zone.
                f.severity = Severity::Warning;
            }
            out.push(f);
        }
        match &a.fcrdns {
            Fcrdns::Confirmed { .. } => {}
            Fcrdns::NoPtr => out.push(Finding::new(
                finding::FCRDNS_NO_PTR,
                format!("{} (MX host {name}) has no PTR record", a.ip),
            )),
            Fcrdns::Mismatch { names } => {
                let described: Vec<String> = names
                    .iter()
                    .map(|(n, addrs)| {
                        if addrs.is_empty() {
                            format!("{n} has no address of that family")
                        } else {
                            let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
                            format!("{n} resolves to {}", list.join(", "))
                        }
                    })
                    .collect();
                out.push(Finding::new(
                    finding::FCRDNS_MISMATCH,
                    format!(
                        "{} (MX host {name}) has PTR {}, but {}",
                        a.ip,
                        a.ptr.join(", "),
                        described.join("; ")
                    ),
                ));
            }
            Fcrdns::Failed(e) => out.push(Finding::new(
                finding::DOMAIN_DNS_LOOKUP_FAILED,
                format!("PTR of {} (MX host {name}): {e}", a.ip),
            )),
        }
    }
}

/// Classifies an address (RFC 6890 special-purpose registries).
pub fn scope(ip: IpAddr) -> Scope {
    match ip {
        IpAddr::V4(v4) => scope_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return scope_v4(v4);
            }
            let seg0 = v6.segments()[0];
            if v6.is_loopback() {
                Scope::Reserved("loopback")
            } else if v6.is_unspecified() {
                Scope::Reserved("unspecified")
            } else if seg0 & 0xfe00 == 0xfc00 {
                Scope::Private
            } else if seg0 & 0xffc0 == 0xfe80 {
                Scope::Reserved("link-local")
            } else if seg0 & 0xff00 == 0xff00 {
                Scope::Reserved("multicast")
            } else if seg0 == 0x2001 && v6.segments()[1] == 0x0db8 {
                Scope::Reserved("documentation")
            } else if v6.segments()[..6] == Ipv6Addr::UNSPECIFIED.segments()[..6] {
                // ::/96 (deprecated IPv4-compatible) and friends.
                Scope::Reserved("reserved")
            } else {
                Scope::Public
            }
        }
    }
}

fn scope_v4(v4: Ipv4Addr) -> Scope {
    let o = v4.octets();
    if v4.is_loopback() {
        Scope::Reserved("loopback")
    } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        Scope::Private
    } else if v4.is_link_local() {
        Scope::Reserved("link-local")
    } else if o[0] == 0 {
        Scope::Reserved("unspecified")
    } else if v4.is_documentation() {
        Scope::Reserved("documentation")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Scope::Reserved("benchmarking")
    } else if v4.is_multicast() {
        Scope::Reserved("multicast")
    } else if o[0] >= 240 {
        Scope::Reserved("reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Scope::Reserved("protocol-assignment")
    } else {
        Scope::Public
    }
}

/// Runs futures concurrently on the current task and returns their outputs in order
/// (a `join_all` without a dependency on the `futures` crate).
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    type Slot<F> = (Pin<Box<F>>, Option<<F as Future>::Output>);
    let mut slots: Vec<Slot<F>> = futures.into_iter().map(|f| (Box::pin(f), None)).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in slots.iter_mut() {
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
    slots.into_iter().filter_map(|(_, out)| out).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ip: &str) -> Scope {
        scope(ip.parse().expect("ip"))
    }

    #[test]
    fn scopes() {
        assert_eq!(s("127.0.10.1"), Scope::Reserved("loopback"));
        assert_eq!(s("10.1.2.3"), Scope::Private);
        assert_eq!(s("172.16.0.1"), Scope::Private);
        assert_eq!(s("100.64.0.1"), Scope::Private);
        assert_eq!(s("169.254.1.1"), Scope::Reserved("link-local"));
        assert_eq!(s("192.0.2.1"), Scope::Reserved("documentation"));
        assert_eq!(s("0.0.0.0"), Scope::Reserved("unspecified"));
        assert_eq!(s("198.19.0.1"), Scope::Reserved("benchmarking"));
        assert_eq!(s("240.0.0.1"), Scope::Reserved("reserved"));
        assert_eq!(s("8.8.8.8"), Scope::Public);
        assert_eq!(s("::1"), Scope::Reserved("loopback"));
        assert_eq!(s("fd00::1"), Scope::Private);
        assert_eq!(s("fe80::1"), Scope::Reserved("link-local"));
        assert_eq!(s("2001:db8::25"), Scope::Reserved("documentation"));
        assert_eq!(s("::ffff:10.0.0.1"), Scope::Private);
        assert_eq!(s("2a00:1450::1"), Scope::Public);
    }

    #[tokio::test]
    async fn join_all_keeps_order() {
        let futs: Vec<_> = (0..5u64)
            .map(|i| async move {
                tokio::time::sleep(std::time::Duration::from_millis(50 - i * 10)).await;
                i
            })
            .collect();
        let start = std::time::Instant::now();
        assert_eq!(join_all(futs).await, vec![0, 1, 2, 3, 4]);
        // Concurrent: about the longest sleep, not the sum (150 ms).
        assert!(start.elapsed() < std::time::Duration::from_millis(140));
    }
}
