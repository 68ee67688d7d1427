//! `mailscope check DOMAIN`: every area of a domain's mail set-up in one report — MX with
//! FCrDNS, SPF, DMARC, DKIM selectors, MTA-STS, TLS-RPT, BIMI, DANE and the MX addresses on
//! DNS blocklists — with a verdict per area. Areas that do not depend on each other run
//! concurrently (each buffers its report, so the output stays in a fixed order); those that
//! need the MX hosts run as soon as the MX check is done. `--domains FILE` checks many
//! domains at once with a progress bar, as text, CSV or JSON.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use futures_util::StreamExt as _;
use serde_json::json;

use super::dane::DaneArgs;
use super::domain::MtaStsArgs;
use super::{CheckOutput, DnsArgs};
use crate::cli::GlobalArgs;
use crate::{ExitCode, UsageError};

/// Examples shown after `--help`.
pub const CHECK_EXAMPLES: &str = "\
Examples:
  mailscope check example.com
      Everything: MX and FCrDNS, SPF, DMARC, DKIM (common selectors), MTA-STS, TLS-RPT,
      BIMI, DANE and the MX addresses on blocklists, with a verdict per area.
  mailscope check example.com --only spf,dmarc --resolver 127.0.0.1:5353
      Just SPF and DMARC, asking one DNS server.
  mailscope check example.com --skip dane,dnsbl --trace-dns
      Without connecting to the MX hosts or asking blocklists; every DNS query shown.
  mailscope check --domains domains.txt --format csv > report.csv
      Many domains (one per line, # comments), 16 at a time, one CSV row each.
  mailscope --json check example.com | jq 'select(.type==\"finding\")'
      Findings as JSON events (schema mailscope/1).";

/// Most domains read from a `--domains` file.
pub const MAX_BATCH_DOMAINS: usize = 100_000;

/// The areas of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Area {
    /// MX hosts, their addresses, PTR and forward-confirmed reverse DNS.
    Mx,
    /// The SPF record: look-up counts, lints.
    Spf,
    /// The DMARC record and its report destinations.
    Dmarc,
    /// DKIM keys of common selectors (and `--selector`).
    Dkim,
    /// MTA-STS TXT record and policy, checked against the MX hosts.
    MtaSts,
    /// TLS-RPT record.
    TlsRpt,
    /// BIMI record.
    Bimi,
    /// DANE TLSA records of the MX hosts, matched against their certificates (connects).
    Dane,
    /// The MX hosts' addresses on DNS blocklists.
    Dnsbl,
}

impl Area {
    const ALL: [Area; 9] = [
        Area::Mx,
        Area::Spf,
        Area::Dmarc,
        Area::Dkim,
        Area::MtaSts,
        Area::TlsRpt,
        Area::Bimi,
        Area::Dane,
        Area::Dnsbl,
    ];

    fn name(self) -> &'static str {
        match self {
            Area::Mx => "mx",
            Area::Spf => "spf",
            Area::Dmarc => "dmarc",
            Area::Dkim => "dkim",
            Area::MtaSts => "mta-sts",
            Area::TlsRpt => "tls-rpt",
            Area::Bimi => "bimi",
            Area::Dane => "dane",
            Area::Dnsbl => "dnsbl",
        }
    }
}

/// Output format of a batch (`--domains`); `--json` gives events instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BatchFormat {
    /// One line per domain with its verdicts and finding counts.
    Text,
    /// CSV: domain, one column per area, findings by severity.
    Csv,
}

/// `mailscope check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The domain to check.
    #[arg(
        value_name = "DOMAIN",
        required_unless_present = "domains",
        conflicts_with = "domains"
    )]
    pub domain: Option<String>,
    /// Check every domain in FILE (one per line; blank lines and # comments skipped).
    #[arg(long, value_name = "FILE")]
    pub domains: Option<PathBuf>,
    /// Only these areas (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "AREA,...")]
    pub only: Vec<Area>,
    /// Leave out these areas (comma-separated); `dane` connects to the MX hosts, `dnsbl`
    /// asks third-party blocklists.
    #[arg(long, value_delimiter = ',', value_name = "AREA,...")]
    pub skip: Vec<Area>,
    /// Domains checked at once with --domains.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
    /// Batch output (with --domains) when not --json.
    #[arg(long, value_enum, default_value_t = BatchFormat::Text)]
    pub format: BatchFormat,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub dane: DaneArgs,
    #[command(flatten)]
    pub mta_sts: MtaStsArgs,
}

impl CheckArgs {
    fn wants(&self, a: Area) -> bool {
        (self.only.is_empty() || self.only.contains(&a)) && !self.skip.contains(&a)
    }
}

/// Runs `mailscope check`.
pub async fn run(global: &GlobalArgs, args: &CheckArgs) -> Result<ExitCode> {
    // Option errors are usage errors up front, not findings later.
    if args.wants(Area::MtaSts) {
        args.mta_sts.options()?;
    }
    if let Some(file) = &args.domains {
        return run_batch(global, args, file).await;
    }
    let domain = normalise_domain(args.domain.as_deref().unwrap_or_default())?;
    let mut out = CheckOutput::start(global, "check", &domain, &args.dns)?;
    check_domain(&mut out, &domain, args).await;
    Ok(out.finish(global))
}

/// Lower-case, without a trailing dot, and a valid DNS name.
fn normalise_domain(s: &str) -> Result<String> {
    let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
    mailscope_mailauth::dns::check_name(&d)
        .map_err(|why| UsageError(format!("{s:?} is not a domain name: {why}")))?;
    if d.parse::<IpAddr>().is_ok() {
        return Err(UsageError(format!("{s:?} is an address; check takes a domain")).into());
    }
    Ok(d)
}

/// Every wanted area for one domain, reported into `out` in a fixed order.
async fn check_domain(out: &mut CheckOutput, domain: &str, args: &CheckArgs) {
    // Phase 1: everything that needs only the domain, at once.
    let needs_mx = args.wants(Area::Mx)
        || args.wants(Area::MtaSts)
        || args.wants(Area::Dane)
        || args.wants(Area::Dnsbl);
    let mut mx_out = out.child();
    let mut spf_out = out.child();
    let mut dmarc_out = out.child();
    let mut dkim_out = out.child();
    let mut tlsrpt_out = out.child();
    let mut bimi_out = out.child();
    let (mx, (), (), (), (), ()) = tokio::join!(
        async {
            if needs_mx {
                Some(super::domain::report_mx(&mut mx_out, domain).await)
            } else {
                None
            }
        },
        async {
            if args.wants(Area::Spf) {
                let v = super::spf::report_domain(&mut spf_out, domain).await;
                spf_out.verdict("spf", &v);
            }
        },
        async {
            if args.wants(Area::Dmarc) {
                let v = super::dmarc::report_domain(&mut dmarc_out, domain).await;
                dmarc_out.verdict("dmarc", &v);
            }
        },
        async {
            if args.wants(Area::Dkim) {
                let v = super::dkim::report_domain(&mut dkim_out, domain).await;
                dkim_out.verdict("dkim", &v);
            }
        },
        async {
            if args.wants(Area::TlsRpt) {
                super::domain::report_tls_rpt(&mut tlsrpt_out, domain).await;
            }
        },
        async {
            if args.wants(Area::Bimi) {
                super::domain::report_bimi(&mut bimi_out, domain).await;
            }
        },
    );
    if !args.wants(Area::Mx) {
        // Looked up for the areas that need the hosts, but not asked for: keep the DNS
        // queries in the trace, leave out the report.
        mx_out.discard_reports();
    }
    for child in [mx_out, spf_out, dmarc_out, dkim_out, tlsrpt_out, bimi_out] {
        out.absorb(child);
    }
    let Some((_, hosts)) = mx else {
        return;
    };

    // Phase 2: what needs the MX hosts, at once.
    let names: Vec<String> = hosts.iter().map(|(h, _)| h.clone()).collect();
    let mut ips: Vec<IpAddr> = hosts.iter().flat_map(|(_, a)| a.iter().copied()).collect();
    ips.sort();
    ips.dedup();
    // Blocklists list public addresses only: asking them about 10.0.0.1 or 127.0.0.1 says
    // nothing (the MX check already reports such addresses).
    let (public, private): (Vec<IpAddr>, Vec<IpAddr>) =
        ips.into_iter().partition(|ip| is_public(*ip));
    let mut sts_out = out.child();
    let mut dane_out = out.child();
    let mut dnsbl_out = out.child();
    tokio::join!(
        async {
            if args.wants(Area::MtaSts) {
                super::domain::report_mta_sts(&mut sts_out, domain, &hosts, &args.mta_sts).await;
            }
        },
        async {
            if args.wants(Area::Dane) {
                super::dane::report_dane(&mut dane_out, domain, &names, &args.dane).await;
            }
        },
        async {
            if args.wants(Area::Dnsbl) {
                if !private.is_empty() {
                    let list: Vec<String> = private.iter().map(IpAddr::to_string).collect();
                    dnsbl_out.note(&format!(
                        "DNSBL: not asking blocklists about non-public address(es) {}",
                        list.join(", ")
                    ));
                }
                if public.is_empty() {
                    dnsbl_out.result(
                        "dnsbl",
                        domain,
                        "skipped",
                        "the MX hosts have no public addresses to look up",
                        json!({ "skipped": private }),
                    );
                    dnsbl_out.verdict("dnsbl", "skipped");
                } else {
                    let v = super::dnsbl::report_ips(&mut dnsbl_out, &public).await;
                    dnsbl_out.verdict("dnsbl", &v);
                }
            }
        },
    );
    for child in [sts_out, dane_out, dnsbl_out] {
        out.absorb(child);
    }
}

/// Whether blocklists can know `ip`: not loopback, private, link-local, shared (CGNAT),
/// documentation, benchmarking, multicast, reserved or unspecified.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| !is_public(IpAddr::V4(v4))))
        }
    }
}

/// Reads the `--domains` file: one domain per line, `#` comments, blank lines skipped.
fn read_domains(file: &std::path::Path) -> Result<Vec<String>> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.len() > 64 * 1024 * 1024 {
        return Err(UsageError(format!("{}: larger than 64 MiB", file.display())).into());
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {} (UTF-8 text expected)", file.display()))?;
    let mut domains = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if domains.len() == MAX_BATCH_DOMAINS {
            return Err(UsageError(format!(
                "{}: more than {MAX_BATCH_DOMAINS} domains",
                file.display()
            ))
            .into());
        }
        let d = normalise_domain(line)
            .map_err(|e| UsageError(format!("{} line {}: {e}", file.display(), n + 1)))?;
        domains.push(d);
    }
    if domains.is_empty() {
        return Err(UsageError(format!("{}: no domains in it", file.display())).into());
    }
    Ok(domains)
}

async fn run_batch(
    global: &GlobalArgs,
    args: &CheckArgs,
    file: &std::path::Path,
) -> Result<ExitCode> {
    if !(1..=1024).contains(&args.concurrency) {
        return Err(UsageError(format!(
            "--concurrency must be between 1 and 1024, not {}",
            args.concurrency
        ))
        .into());
    }
    let domains = read_domains(file)?;
    let subject = file.display().to_string();
    let mut out = CheckOutput::start(global, "check", &subject, &args.dns)?;
    if !global.json {
        // stdout is the table; notes and the closing counts go to stderr.
        out.human_to_stderr();
    }
    let areas: Vec<Area> = Area::ALL.into_iter().filter(|a| args.wants(*a)).collect();
    let bar = indicatif::ProgressBar::new(domains.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} domains, {per_sec}, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut stdout = std::io::stdout().lock();
    if !global.json && args.format == BatchFormat::Csv {
        let mut header = vec!["domain".to_owned()];
        header.extend(areas.iter().map(|a| a.name().to_owned()));
        header.extend(["critical", "error", "warning", "info"].map(String::from));
        let _ = writeln!(stdout, "{}", header.join(","));
    }
    // Children are made from a template, not from `out`, which takes their reports.
    let template = out.child();
    let mut results = futures_util::stream::iter(domains.iter().map(|d| {
        let mut child = template.child_for(d);
        async move {
            check_domain(&mut child, d, args).await;
            (d.clone(), child)
        }
    }))
    .buffer_unordered(args.concurrency);
    let mut worst: BTreeMap<String, usize> = BTreeMap::new();
    while let Some((domain, child)) = results.next().await {
        bar.inc(1);
        let verdicts = child.verdicts().clone();
        let mut counts = [0usize; 4];
        for f in child.findings() {
            counts[3 - (f.severity as usize).min(3)] += 1;
        }
        for v in verdicts.values() {
            *worst.entry(v.clone()).or_default() += 1;
        }
        if global.json {
            out.absorb(child);
            out.result(
                "domain",
                &domain,
                if counts[0] + counts[1] > 0 {
                    "fail"
                } else {
                    "ok"
                },
                "",
                json!({ "verdicts": verdicts, "critical": counts[0], "error": counts[1],
                        "warning": counts[2], "info": counts[3] }),
            );
        } else {
            out.absorb_findings_only(&child);
            let line = match args.format {
                BatchFormat::Csv => {
                    let mut cols = vec![csv_field(&domain)];
                    cols.extend(
                        areas
                            .iter()
                            .map(|a| csv_field(verdicts.get(a.name()).map_or("", String::as_str))),
                    );
                    cols.extend(counts.iter().map(|c| c.to_string()));
                    cols.join(",")
                }
                BatchFormat::Text => {
                    let v: Vec<String> = areas
                        .iter()
                        .filter_map(|a| verdicts.get(a.name()).map(|v| format!("{}={v}", a.name())))
                        .collect();
                    format!(
                        "{domain}: {}  ({} critical, {} error, {} warning)",
                        v.join(" "),
                        counts[0],
                        counts[1],
                        counts[2]
                    )
                }
            };
            bar.suspend(|| {
                let _ = writeln!(stdout, "{line}");
            });
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    out.note(&format!(
        "{} domains in {:.2} s ({:.0} domains/s)",
        domains.len(),
        secs,
        domains.len() as f64 / secs.max(1e-9)
    ));
    Ok(out.finish(global))
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn csv_field(s: &str) -> String {
    // A leading = + - @ would make a spreadsheet run it as a formula.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    let s = s.as_str();
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for ip in [
            "192.0.2.1",
            "198.51.100.25",
            "10.1.2.3",
            "127.0.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "198.18.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "0.1.2.3",
            "240.0.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "193.0.0.1", "2a00:1450::1", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn csv_fields() {
        assert_eq!(csv_field("pass"), "pass");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
