//! `check_host()` (RFC 7208 §4): the evaluation of a sending IP against a domain's record,
//! with exact counting of DNS-querying terms and void look-ups, and the term that decided.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use mail_auth::spf::{Directive, Macro, Mechanism, Qualifier, Variable};
use mailscope_proto::{Finding, Severity, finding as f};

use super::record::{self, Record, Term, TermKind};
use super::{
    DecidingTerm, MAX_DEPTH, MAX_DNS_TERMS, MAX_MX_NAMES, MAX_PTR_NAMES, MAX_VOID_LOOKUPS,
    SpfEvaluation, SpfInput, SpfResult,
};
use crate::dns::{Answer, Dns};

/// The result of one `check_host()` level.
struct Outcome {
    result: SpfResult,
    path: Vec<DecidingTerm>,
    reason: String,
    explanation: Option<String>,
}

impl Outcome {
    fn new(result: SpfResult, reason: impl Into<String>) -> Self {
        Self {
            result,
            path: Vec::new(),
            reason: reason.into(),
            explanation: None,
        }
    }

    fn at(mut self, domain: &str, term: &Term) -> Self {
        self.path.insert(0, DecidingTerm::new(domain, term));
        self
    }
}

/// Outcome of fetching a record.
pub(crate) enum Fetched {
    Record(Record),
    /// No SPF record (or no such domain); the text says which.
    None(String),
    Multiple(Vec<String>),
    Syntax(record::SyntaxError, String),
    TempError(String),
}

/// Record look-up and selection (RFC 7208 §4.4, §4.5): TXT only.
pub(crate) async fn fetch(dns: &Dns, domain: &str) -> Fetched {
    match dns.txt(domain).await {
        Answer::Records(txts) => {
            let spf: Vec<&Vec<u8>> = txts.iter().filter(|t| record::is_spf(t)).collect();
            match spf.as_slice() {
                [] => Fetched::None(format!(
                    "{domain} has TXT records but none starts with v=spf1"
                )),
                [one] => match record::parse(one) {
                    Ok(r) => Fetched::Record(r),
                    Err(e) => Fetched::Syntax(e, String::from_utf8_lossy(one).into_owned()),
                },
                many => Fetched::Multiple(
                    many.iter()
                        .map(|t| String::from_utf8_lossy(t).into_owned())
                        .collect(),
                ),
            }
        }
        Answer::NxDomain => Fetched::None(format!("{domain} does not exist (NXDOMAIN)")),
        Answer::NoData => Fetched::None(format!("{domain} has no TXT record")),
        Answer::Failed(e) => Fetched::TempError(format!("TXT look-up of {domain} failed: {e}")),
    }
}

/// Domain validity for `check_host()` (RFC 7208 §4.3): labels of 1–63 octets, at most 253
/// octets, more than one label.
pub(crate) fn valid_domain(d: &str) -> Result<(), String> {
    crate::dns::check_name(d)?;
    if !d.trim_end_matches('.').contains('.') {
        return Err(format!("{d:?} is not a multi-label domain name"));
    }
    Ok(())
}

/// Sender as `check_host()` uses it: `postmaster@helo` without a MAIL FROM, `postmaster`
/// for an empty local part (RFC 7208 §2.4, §4.3).
pub(crate) fn normalize_sender(sender: &str, helo: &str) -> String {
    let s = sender.trim().trim_start_matches('<').trim_end_matches('>');
    if s.is_empty() {
        return format!("postmaster@{helo}");
    }
    match s.rfind('@') {
        None => format!("postmaster@{s}"),
        Some(0) => format!("postmaster{s}"),
        Some(_) => s.to_owned(),
    }
}

struct Eval<'a> {
    dns: &'a Dns,
    ip: IpAddr,
    sender: String,
    helo: String,
    lookups: u32,
    voids: u32,
    findings: Vec<Finding>,
    chain: Vec<String>,
}

/// Runs `check_host()` for `input`.
pub async fn evaluate(dns: &Dns, input: &SpfInput) -> SpfEvaluation {
    let ip = canonical_ip(input.ip);
    let domain = input.domain.trim().trim_end_matches('.').to_owned();
    let sender = normalize_sender(&input.sender, &input.helo);
    let mut ev = Eval {
        dns,
        ip,
        sender: sender.clone(),
        helo: input.helo.clone(),
        lookups: 0,
        voids: 0,
        findings: Vec::new(),
        chain: Vec::new(),
    };
    let out = ev.check_host(domain.clone(), 0, true).await;
    if matches!(out.result, SpfResult::Fail | SpfResult::SoftFail) {
        let mut fi = Finding::new(
            f::SPF_RESULT_NOT_PERMITTED,
            format!(
                "{ip} gets {} for {domain}: {}",
                out.result.as_str(),
                out.reason
            ),
        );
        if out.result == SpfResult::SoftFail {
            fi.severity = Severity::Warning;
        }
        ev.findings.push(fi);
    }
    SpfEvaluation {
        ip,
        domain,
        sender,
        helo: input.helo.clone(),
        result: out.result,
        decided_by: out.path,
        reason: out.reason,
        explanation: out.explanation,
        dns_lookups: ev.lookups,
        void_lookups: ev.voids,
        findings: ev.findings,
    }
}

/// IPv4-mapped IPv6 addresses are evaluated as IPv4 (RFC 7208 §5.6 note, §4.1).
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

type Boxed<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

impl<'a> Eval<'a> {
    fn check_host(&mut self, domain: String, depth: usize, want_exp: bool) -> Boxed<'_> {
        Box::pin(async move {
            if let Err(e) = valid_domain(&domain) {
                return Outcome::new(SpfResult::None, format!("not a valid domain: {e}"));
            }
            let top = depth == 0;
            let rec = match fetch(self.dns, &domain).await {
                Fetched::Record(r) => r,
                Fetched::None(why) => {
                    if top {
                        self.findings
                            .push(Finding::new(f::SPF_RECORD_NONE, why.clone()));
                    }
                    return Outcome::new(SpfResult::None, why);
                }
                Fetched::Multiple(recs) => {
                    let why = format!("{domain} has {} SPF records", recs.len());
                    self.findings.push(Finding::new(
                        f::SPF_RECORD_MULTIPLE,
                        format!("{why}: {}", recs.join(" | ")),
                    ));
                    return Outcome::new(SpfResult::PermError, why);
                }
                Fetched::Syntax(e, text) => {
                    self.findings.push(Finding::new(
                        f::SPF_RECORD_SYNTAX,
                        format!("{domain}: {e} in \"{text}\""),
                    ));
                    let mut o = Outcome::new(
                        SpfResult::PermError,
                        format!("syntax error in {domain}'s record: {e}"),
                    );
                    if e.position > 0 {
                        o.path.push(DecidingTerm {
                            domain: domain.clone(),
                            term: e.term.clone(),
                            position: e.position,
                        });
                    }
                    return o;
                }
                Fetched::TempError(why) => {
                    self.findings
                        .push(Finding::new(f::SPF_DNS_TEMPERROR, why.clone()));
                    return Outcome::new(SpfResult::TempError, why);
                }
            };
            self.chain.push(domain.to_ascii_lowercase());
            let out = self.run_record(&domain, &rec, depth, want_exp).await;
            self.chain.pop();
            out
        })
    }

    async fn run_record(
        &mut self,
        domain: &str,
        rec: &Record,
        depth: usize,
        want_exp: bool,
    ) -> Outcome {
        for term in &rec.terms {
            let TermKind::Directive(d) = &term.kind else {
                continue;
            };
            match self.mechanism(domain, term, d, depth).await {
                Ok(None) => {}
                Ok(Some(mut why)) => {
                    let result = SpfResult::from_qualifier(&d.qualifier);
                    why = format!(
                        "`{}` in {domain}'s record (term {}) {why}",
                        term.text, term.position
                    );
                    let mut o = Outcome::new(result, why);
                    if result == SpfResult::Fail && want_exp {
                        o.explanation = self.explanation(domain, rec).await;
                    }
                    return o.at(domain, term);
                }
                Err(mut o) => {
                    // `-include:` that matched: this record's fail, so its exp= applies.
                    if o.result == SpfResult::Fail
                        && want_exp
                        && matches!(d.mechanism, Mechanism::Include { .. })
                    {
                        o.explanation = self.explanation(domain, rec).await;
                    }
                    return o.at(domain, term);
                }
            }
        }
        if let Some((term, m)) = rec.redirect() {
            if let Some(o) = self.count_term(domain, term) {
                return o.at(domain, term);
            }
            let target = match self.target(m, domain).await {
                Ok(t) => t,
                Err(o) => return o.at(domain, term),
            };
            if self.chain.contains(&target.to_ascii_lowercase()) {
                self.findings.push(Finding::new(
                    f::SPF_INCLUDE_LOOP,
                    format!("{domain}: {} points back at {target}", term.text),
                ));
                return Outcome::new(
                    SpfResult::PermError,
                    format!("redirect loop: {target} is already being evaluated"),
                )
                .at(domain, term);
            }
            if depth >= MAX_DEPTH {
                return Outcome::new(SpfResult::PermError, "includes/redirects nested too deep")
                    .at(domain, term);
            }
            let inner = self.check_host(target.clone(), depth + 1, want_exp).await;
            if inner.result == SpfResult::None {
                self.findings.push(Finding::new(
                    f::SPF_REDIRECT_MISSING,
                    format!("{domain}: {} — {}", term.text, inner.reason),
                ));
                return Outcome::new(
                    SpfResult::PermError,
                    format!(
                        "redirect to {target}, which has no SPF record ({})",
                        inner.reason
                    ),
                )
                .at(domain, term);
            }
            let mut o = inner;
            o.reason = format!("via {} in {domain}'s record: {}", term.text, o.reason);
            return o.at(domain, term);
        }
        Outcome::new(
            SpfResult::Neutral,
            format!(
                "no term of {domain}'s record matched and it has no redirect=: the default result is neutral"
            ),
        )
    }

    fn count_term(&mut self, domain: &str, term: &Term) -> Option<Outcome> {
        self.lookups += 1;
        if self.lookups > MAX_DNS_TERMS {
            self.findings.push(Finding::new(
                f::SPF_RECORD_TOO_MANY_LOOKUPS,
                format!(
                    "the {}th DNS-querying term is `{}` in {domain}'s record (term {})",
                    self.lookups, term.text, term.position
                ),
            ));
            return Some(Outcome::new(
                SpfResult::PermError,
                format!("more than {MAX_DNS_TERMS} DNS-querying terms"),
            ));
        }
        None
    }

    fn count_void(&mut self, domain: &str, term: &Term, what: &str) -> Option<Outcome> {
        self.voids += 1;
        if self.voids > MAX_VOID_LOOKUPS {
            self.findings.push(Finding::new(
                f::SPF_RECORD_VOID_LOOKUPS,
                format!(
                    "void look-up number {} is {what} for `{}` in {domain}'s record (term {})",
                    self.voids, term.text, term.position
                ),
            ));
            return Some(Outcome::new(
                SpfResult::PermError,
                format!("more than {MAX_VOID_LOOKUPS} void look-ups"),
            ));
        }
        None
    }

    /// Expands a domain-spec (RFC 7208 §7.3): macros, then labels dropped from the left
    /// until it fits 253 octets.
    async fn target(&mut self, m: &Macro, domain: &str) -> Result<String, Outcome> {
        let validated = if m.needs_ptr() {
            Some(self.validated_domain(domain).await)
        } else {
            None
        };
        let s = self.expand(m, domain, validated.as_deref());
        let mut s = s.trim_end_matches('.').to_owned();
        while s.len() > 253 {
            match s.find('.') {
                Some(i) => s = s[i + 1..].to_owned(),
                None => break,
            }
        }
        if s.is_empty() {
            return Err(Outcome::new(
                SpfResult::PermError,
                "the domain expands to an empty name",
            ));
        }
        Ok(s)
    }

    fn expand(&self, m: &Macro, domain: &str, validated: Option<&str>) -> String {
        let env = MacroEnv {
            ip: self.ip,
            sender: &self.sender,
            helo: &self.helo,
            domain,
            validated: validated.unwrap_or("unknown"),
        };
        env.expand(m)
    }

    /// `%{p}`: a PTR name of the IP that resolves back to it, preferring `target` and its
    /// subdomains (RFC 7208 §7.3). Its look-ups do not count as terms.
    async fn validated_domain(&mut self, target: &str) -> String {
        let names = match self.dns.ptr(self.ip).await {
            Answer::Records(n) => n,
            _ => return "unknown".into(),
        };
        let mut validated = Vec::new();
        for name in names.into_iter().take(MAX_PTR_NAMES) {
            if let Answer::Records(addrs) = self.dns.addrs_like(&name, self.ip).await
                && addrs.contains(&self.ip)
            {
                validated.push(name);
            }
        }
        let t = target.to_ascii_lowercase();
        validated
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&t))
            .or_else(|| validated.iter().find(|n| is_subdomain(n, &t)))
            .or_else(|| validated.first())
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }

    /// Evaluates one mechanism: `Ok(Some(why))` if it matched, `Ok(None)` if not, `Err` for
    /// an outcome that ends evaluation (errors, limits, include results).
    async fn mechanism(
        &mut self,
        domain: &str,
        term: &Term,
        d: &Directive,
        depth: usize,
    ) -> Result<Option<String>, Outcome> {
        let ip = self.ip;
        if term.queries_dns()
            && let Some(o) = self.count_term(domain, term)
        {
            return Err(o);
        }
        match &d.mechanism {
            Mechanism::All => Ok(Some("matches every address".into())),
            Mechanism::Ip4 { addr, mask } => Ok(match ip {
                IpAddr::V4(v4) if u32::from(v4) & mask == u32::from(*addr) & mask => {
                    Some(format!("matches {ip}"))
                }
                _ => None,
            }),
            Mechanism::Ip6 { addr, mask } => Ok(match ip {
                IpAddr::V6(v6) if u128::from(v6) & mask == u128::from(*addr) & mask => {
                    Some(format!("matches {ip}"))
                }
                _ => None,
            }),
            Mechanism::A {
                macro_string,
                ip4_mask,
                ip6_mask,
            } => {
                let target = self.target(macro_string, domain).await?;
                match self.dns.addrs_like(&target, ip).await {
                    Answer::Records(addrs) => Ok(addrs
                        .iter()
                        .find(|a| ip_in(ip, **a, *ip4_mask, *ip6_mask))
                        .map(|a| format!("matches {ip} (address {a} of {target})"))),
                    a if a.is_void() => {
                        match self.count_void(domain, term, &format!("{} of {target}", a.outcome()))
                        {
                            Some(o) => Err(o),
                            None => Ok(None),
                        }
                    }
                    Answer::Failed(crate::dns::Failure::InvalidName(_)) => Ok(None),
                    Answer::Failed(e) => {
                        Err(self.temp(format!("address look-up of {target} failed: {e}")))
                    }
                    _ => Ok(None),
                }
            }
            Mechanism::Mx {
                macro_string,
                ip4_mask,
                ip6_mask,
            } => {
                let target = self.target(macro_string, domain).await?;
                let mxs = match self.dns.mx(&target).await {
                    Answer::Records(m) => m,
                    a if a.is_void() => {
                        return match self.count_void(
                            domain,
                            term,
                            &format!("MX {} of {target}", a.outcome()),
                        ) {
                            Some(o) => Err(o),
                            None => Ok(None),
                        };
                    }
                    Answer::Failed(crate::dns::Failure::InvalidName(_)) => return Ok(None),
                    Answer::Failed(e) => {
                        return Err(self.temp(format!("MX look-up of {target} failed: {e}")));
                    }
                    _ => return Ok(None),
                };
                if mxs.len() > MAX_MX_NAMES {
                    self.findings.push(Finding::new(
                        f::SPF_MX_TOO_MANY,
                        format!(
                            "`{}` in {domain}'s record: {target} has {} MX records",
                            term.text,
                            mxs.len()
                        ),
                    ));
                    return Err(Outcome::new(
                        SpfResult::PermError,
                        format!(
                            "{target} has {} MX records, more than {MAX_MX_NAMES}",
                            mxs.len()
                        ),
                    ));
                }
                for (_, host) in mxs {
                    if host.is_empty() {
                        continue; // null MX
                    }
                    match self.dns.addrs_like(&host, ip).await {
                        Answer::Records(addrs) => {
                            if let Some(a) =
                                addrs.iter().find(|a| ip_in(ip, **a, *ip4_mask, *ip6_mask))
                            {
                                return Ok(Some(format!(
                                    "matches {ip} (address {a} of MX host {host})"
                                )));
                            }
                        }
                        Answer::Failed(crate::dns::Failure::Timeout)
                        | Answer::Failed(crate::dns::Failure::Rcode(_)) => {
                            return Err(
                                self.temp(format!("address look-up of MX host {host} failed"))
                            );
                        }
                        _ => {}
                    }
                }
                Ok(None)
            }
            Mechanism::Ptr { macro_string } => {
                let target = self
                    .target(macro_string, domain)
                    .await?
                    .to_ascii_lowercase();
                let names = match self.dns.ptr(ip).await {
                    Answer::Records(n) => n,
                    a if a.is_void() => {
                        return match self.count_void(domain, term, &format!("PTR {}", a.outcome()))
                        {
                            Some(o) => Err(o),
                            None => Ok(None),
                        };
                    }
                    // RFC 7208 §5.5: a DNS error on the PTR look-up means no match.
                    _ => return Ok(None),
                };
                for name in names.into_iter().take(MAX_PTR_NAMES) {
                    let lname = name.to_ascii_lowercase();
                    if !(lname == target || is_subdomain(&lname, &target)) {
                        continue;
                    }
                    if let Answer::Records(addrs) = self.dns.addrs_like(&name, ip).await
                        && addrs.contains(&ip)
                    {
                        return Ok(Some(format!(
                            "matches {ip} (validated reverse name {name})"
                        )));
                    }
                }
                Ok(None)
            }
            Mechanism::Exists { macro_string } => {
                let target = self.target(macro_string, domain).await?;
                match self.dns.a(&target).await {
                    Answer::Records(_) => Ok(Some(format!("{target} exists"))),
                    a if a.is_void() => {
                        match self.count_void(
                            domain,
                            term,
                            &format!("A {} of {target}", a.outcome()),
                        ) {
                            Some(o) => Err(o),
                            None => Ok(None),
                        }
                    }
                    Answer::Failed(crate::dns::Failure::InvalidName(_)) => Ok(None),
                    Answer::Failed(e) => {
                        Err(self.temp(format!("A look-up of {target} failed: {e}")))
                    }
                    _ => Ok(None),
                }
            }
            Mechanism::Include { macro_string } => {
                let target = self.target(macro_string, domain).await?;
                if self.chain.contains(&target.to_ascii_lowercase()) {
                    self.findings.push(Finding::new(
                        f::SPF_INCLUDE_LOOP,
                        format!("{domain}: {} points back at {target}", term.text),
                    ));
                    return Err(Outcome::new(
                        SpfResult::PermError,
                        format!("include loop: {target} is already being evaluated"),
                    ));
                }
                if depth >= MAX_DEPTH {
                    return Err(Outcome::new(
                        SpfResult::PermError,
                        "includes/redirects nested too deep",
                    ));
                }
                let inner = self.check_host(target.clone(), depth + 1, false).await;
                let q = SpfResult::from_qualifier(&d.qualifier);
                match inner.result {
                    SpfResult::Pass => {
                        let mut o = inner;
                        o.result = q;
                        o.reason = format!(
                            "`{}` in {domain}'s record (term {}) matched: {}",
                            term.text, term.position, o.reason
                        );
                        o.explanation = None;
                        Err(o)
                    }
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(None),
                    SpfResult::TempError => Err(inner),
                    SpfResult::PermError => Err(inner),
                    SpfResult::None => {
                        self.findings.push(Finding::new(
                            f::SPF_INCLUDE_MISSING,
                            format!("{domain}: {} — {}", term.text, inner.reason),
                        ));
                        Err(Outcome::new(
                            SpfResult::PermError,
                            format!(
                                "include of {target}, which has no SPF record ({})",
                                inner.reason
                            ),
                        ))
                    }
                }
            }
        }
    }

    fn temp(&mut self, why: String) -> Outcome {
        self.findings
            .push(Finding::new(f::SPF_DNS_TEMPERROR, why.clone()));
        Outcome::new(SpfResult::TempError, why)
    }

    /// The `exp=` explanation of `rec` (RFC 7208 §6.2); any problem gives none.
    async fn explanation(&mut self, domain: &str, rec: &Record) -> Option<String> {
        let (_, m) = rec.exp()?;
        let target = self.target(m, domain).await.ok()?;
        let txts = match self.dns.txt(&target).await {
            Answer::Records(t) => t,
            _ => return None,
        };
        let [one] = txts.as_slice() else {
            return None;
        };
        let mac = record::check_explanation(one).ok()?;
        let validated = if mac.needs_ptr() {
            Some(self.validated_domain(domain).await)
        } else {
            None
        };
        let text = self.expand(&mac, domain, validated.as_deref());
        if text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            Some(text)
        } else {
            None
        }
    }
}

fn is_subdomain(name: &str, of: &str) -> bool {
    name.len() > of.len()
        && name.ends_with(of)
        && name.as_bytes().get(name.len() - of.len() - 1) == Some(&b'.')
}

fn ip_in(ip: IpAddr, rec: IpAddr, m4: u32, m6: u128) -> bool {
    match (ip, rec) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) & m4 == u32::from(b) & m4,
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) & m6 == u128::from(b) & m6,
        _ => false,
    }
}

impl DecidingTerm {
    fn new(domain: &str, term: &Term) -> Self {
        Self {
            domain: domain.to_owned(),
            term: term.text.clone(),
            position: term.position,
        }
    }
}

impl SpfResult {
    pub(crate) fn from_qualifier(q: &Qualifier) -> Self {
        match q {
            Qualifier::Pass => SpfResult::Pass,
            Qualifier::Fail => SpfResult::Fail,
            Qualifier::SoftFail => SpfResult::SoftFail,
            Qualifier::Neutral => SpfResult::Neutral,
        }
    }
}

/// The values macros expand to (RFC 7208 §7.2, §7.3). mail-auth's `Macro::eval` is not used:
/// it URL-escapes with lower-case hex and writes IPv6 nibbles in lower case, where the RFC
/// test suite (following pyspf) expects `%3D` and upper-case nibbles.
struct MacroEnv<'a> {
    ip: IpAddr,
    sender: &'a str,
    helo: &'a str,
    domain: &'a str,
    validated: &'a str,
}

/// Expanded strings are capped (a macro can repeat a long sender many times).
const MAX_EXPANSION: usize = 8 * 1024;

impl MacroEnv<'_> {
    fn expand(&self, m: &Macro) -> String {
        let mut out = String::new();
        match m {
            Macro::None => out.push_str(self.domain),
            Macro::List(items) => {
                for item in items.iter() {
                    self.piece(item, &mut out);
                    if out.len() > MAX_EXPANSION {
                        break;
                    }
                }
            }
            other => self.piece(other, &mut out),
        }
        if out.len() > MAX_EXPANSION {
            // Cut at a character boundary: expanded text can be non-ASCII.
            let mut cut = MAX_EXPANSION;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }

    fn piece(&self, m: &Macro, out: &mut String) {
        match m {
            Macro::Literal(l) => out.push_str(&String::from_utf8_lossy(l)),
            Macro::Variable {
                letter,
                num_parts,
                reverse,
                escape,
                delimiters,
            } => {
                let v = self.value(*letter);
                let t = transform(&v, *num_parts, *reverse, *delimiters);
                if *escape {
                    url_escape(&t, out);
                } else {
                    out.push_str(&t);
                }
            }
            Macro::List(items) => {
                for i in items.iter() {
                    self.piece(i, out);
                }
            }
            Macro::None => out.push_str(self.domain),
        }
    }

    fn value(&self, letter: Variable) -> String {
        let (local, sdomain) = match self.sender.rfind('@') {
            Some(i) => (&self.sender[..i], &self.sender[i + 1..]),
            None => ("postmaster", self.sender),
        };
        match letter {
            Variable::Sender => self.sender.to_owned(),
            Variable::SenderLocalPart => local.to_owned(),
            Variable::SenderDomainPart => sdomain.to_owned(),
            Variable::Domain => self.domain.to_owned(),
            Variable::Ip => match self.ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => {
                    let mut s = String::with_capacity(63);
                    for b in v6.octets() {
                        for n in [b >> 4, b & 0xf] {
                            if !s.is_empty() {
                                s.push('.');
                            }
                            s.push_str(&format!("{n:X}"));
                        }
                    }
                    s
                }
            },
            Variable::ValidatedDomain => self.validated.to_owned(),
            Variable::IpVersion => match self.ip {
                IpAddr::V4(_) => "in-addr".into(),
                IpAddr::V6(_) => "ip6".into(),
            },
            Variable::HeloDomain => self.helo.to_owned(),
            Variable::SmtpIp => self.ip.to_string(),
            Variable::HostDomain => "unknown".into(),
            Variable::CurrentTime => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_string(),
        }
    }
}

/// Split on the delimiters, reverse if asked, keep the rightmost `num_parts` (0: all), join
/// with dots (RFC 7208 §7.3).
fn transform(v: &str, num_parts: u32, reverse: bool, delimiters: u64) -> String {
    let is_delim = |c: char| {
        let b = c as u32;
        (u32::from(b'+')..=u32::from(b'_')).contains(&b)
            && delimiters & (1u64 << (b - u32::from(b'+'))) != 0
    };
    let mut parts: Vec<&str> = v.split(is_delim).collect();
    if reverse {
        parts.reverse();
    }
    let n = num_parts as usize;
    if n > 0 && n < parts.len() {
        parts.drain(..parts.len() - n);
    }
    parts.join(".")
}

/// URL escaping of upper-case macro letters: everything but RFC 3986 unreserved characters
/// as `%XX` with upper-case hex.
fn url_escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}
