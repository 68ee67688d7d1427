//! DANE for the MX hosts of a domain (RFC 7672), as part of `mailscope check`: TLSA records
//! looked up with the AD bit (mailscope trusts the resolver's DNSSEC validation, see
//! `mailscope_mailauth::dane`), then each host's STARTTLS certificate chain matched against
//! them.

use std::net::IpAddr;
use std::time::Duration;

use clap::Args;
use mailscope_mailauth::dane::{self, DaneMatch};
use mailscope_mailauth::dns::{Answer, Dns, Tlsa};
use mailscope_net::smtp::{DriverEvent, SmtpTarget, run_smtp_client};
use mailscope_net::{TlsClient, TlsClientOptions};
use mailscope_proto::Finding;
use mailscope_proto::finding as kinds;
use mailscope_proto::smtp::client::{Client, ClientOptions, Event, Outcome, Stage};
use serde_json::{Value, json};

use super::CheckOutput;

/// At most this many MX hosts are checked for DANE.
pub const MAX_DANE_HOSTS: usize = 10;

/// DANE options of `mailscope check`.
#[derive(Debug, Clone, Args)]
pub struct DaneArgs {
    /// Port to connect to for the STARTTLS certificate of each MX host (the TLSA name stays
    /// _25._tcp.HOST). For tests against servers on other ports.
    #[arg(long, value_name = "PORT", default_value_t = 25)]
    pub smtp_port: u16,
    /// Seconds for each MX connection (connect, greeting, EHLO, STARTTLS, handshake).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub smtp_timeout: f64,
}

/// What one MX host's DANE check found.
struct HostDane {
    host: String,
    verdict: &'static str,
    text: String,
    detail: Value,
    findings: Vec<Finding>,
}

/// DANE for each MX host (`mx_hosts` as the MX check found them, best first). Returns the
/// area verdict: `pass` (every host with TLSA records matches), `fail`, `none` (no TLSA
/// anywhere), `not-authenticated` or `error`.
pub async fn report_dane(
    out: &mut CheckOutput,
    domain: &str,
    mx_hosts: &[String],
    args: &DaneArgs,
) -> String {
    let dns = out.dns();
    let (mx_answer, mx_secure) = dns.mx_dnssec(domain).await;
    if let Answer::Failed(f) = &mx_answer {
        // Without the MX answer there is no telling whether DANE applies.
        out.result(
            "dane",
            domain,
            "error",
            &format!("the DNSSEC-aware MX look-up for {domain} failed: {f}"),
            json!({ "mx_authenticated": false, "error": f.to_string() }),
        );
        out.finding(&Finding::new(
            kinds::DOMAIN_DNS_LOOKUP_FAILED,
            format!("MX {domain} (with the AD bit, for DANE): {f}"),
        ));
        out.verdict("dane", "error");
        return "error".into();
    }
    if mx_answer.records().is_empty() && mx_hosts.is_empty() {
        out.result(
            "dane",
            domain,
            "none",
            "no MX hosts to check",
            json!({ "mx_authenticated": mx_secure }),
        );
        out.verdict("dane", "none");
        return "none".into();
    }
    if !mx_secure {
        out.finding(&Finding::new(
            kinds::DANE_MX_INSECURE,
            format!("the MX records of {domain} came without the AD bit"),
        ));
    }
    let timeout = Duration::from_secs_f64(args.smtp_timeout.clamp(0.1, 600.0));
    let hosts: Vec<&String> = mx_hosts.iter().take(MAX_DANE_HOSTS).collect();
    if mx_hosts.len() > MAX_DANE_HOSTS {
        out.note(&format!(
            "DANE: checking the first {MAX_DANE_HOSTS} of {} MX hosts",
            mx_hosts.len()
        ));
    }
    let checks = hosts
        .iter()
        .map(|h| check_host(&dns, h, args.smtp_port, timeout));
    let results = futures_util::future::join_all(checks).await;
    let mut verdicts = Vec::new();
    for r in results {
        let mut detail = r.detail;
        if let Value::Object(o) = &mut detail {
            o.insert("mx_authenticated".into(), json!(mx_secure));
        }
        out.result("dane", &r.host, r.verdict, &r.text, detail);
        for f in &r.findings {
            out.finding(f);
        }
        verdicts.push(r.verdict);
    }
    let overall = if verdicts.contains(&"fail") {
        "fail"
    } else if verdicts.contains(&"error") {
        "error"
    } else if verdicts.contains(&"pass") {
        if verdicts.iter().all(|v| *v == "pass") {
            "pass"
        } else {
            "partial"
        }
    } else if verdicts.contains(&"not-authenticated") {
        "not-authenticated"
    } else {
        "none"
    };
    out.verdict("dane", overall);
    overall.into()
}

async fn check_host(dns: &Dns, host: &str, port: u16, timeout: Duration) -> HostDane {
    let name = dane::tlsa_name(host, 25);
    let (answer, authentic) = dns.tlsa_dnssec(&name).await;
    let mut h = HostDane {
        host: host.to_owned(),
        verdict: "none",
        text: String::new(),
        detail: json!({ "tlsa_name": name, "tlsa_authenticated": authentic }),
        findings: Vec::new(),
    };
    let records = match answer {
        Answer::Failed(f) => {
            h.verdict = "error";
            h.text = format!("TLSA look-up for {name} failed: {f}");
            h.findings.push(Finding::new(
                kinds::DANE_TLSA_LOOKUP_FAILED,
                format!("{name}: {f}"),
            ));
            return h;
        }
        Answer::NxDomain | Answer::NoData => {
            h.text = format!(
                "no TLSA records at {name}{}: DANE is not used for this host",
                if authentic {
                    " (authenticated denial)"
                } else {
                    ""
                }
            );
            return h;
        }
        Answer::Records(r) => r,
    };
    let listed: Vec<String> = records
        .iter()
        .map(|t| format!("{t}  [{}]", dane::describe(t)))
        .collect();
    set(
        &mut h.detail,
        "tlsa",
        json!(records.iter().map(|t| t.to_string()).collect::<Vec<_>>()),
    );
    if !authentic {
        h.verdict = "not-authenticated";
        h.text = format!(
            "TLSA at {name} (not DNSSEC-authenticated, so senders ignore it):\n  {}",
            listed.join("\n  ")
        );
        h.findings.push(Finding::new(
            kinds::DANE_TLSA_NOT_AUTHENTICATED,
            format!("{name}: {} record(s) without the AD bit", records.len()),
        ));
        return h;
    }
    h.findings.extend(dane::lint(host, &records));
    let mut text = format!(
        "TLSA at {name} (DNSSEC-authenticated):\n  {}",
        listed.join("\n  ")
    );
    // RFC 7672 §2.2: with TLSA records but none usable, a sender still insists on TLS but
    // does not authenticate the server; nothing to match.
    let usable = records.iter().any(dane::usable);
    match starttls_chain(dns, host, port, timeout).await {
        Err(why) if !usable => {
            h.verdict = "fail";
            text.push_str(&format!("\nno TLS session with {host} port {port}: {why}"));
            h.findings.push(Finding::new(
                kinds::DANE_NO_TLS,
                format!("{host} port {port}: {why}"),
            ));
        }
        Ok(_) if !usable => {
            h.verdict = "unusable";
            text.push_str(
                "\nno usable record: DANE senders insist on TLS (which works) but cannot authenticate the server",
            );
        }
        Err(why) => {
            h.verdict = "fail";
            text.push_str(&format!("\nno TLS session with {host} port {port}: {why}"));
            h.findings.push(Finding::new(
                kinds::DANE_NO_TLS,
                format!("{host} port {port}: {why}"),
            ));
        }
        Ok(chain) => {
            set(&mut h.detail, "chain_length", json!(chain.len()));
            let outcome = dane::match_chain(&records, &chain);
            match outcome {
                DaneMatch::EndEntity { record } => {
                    h.verdict = "pass";
                    text.push_str(&format!(
                        "\nthe server's certificate matches {record} (DANE-EE: no name or expiry checks apply)"
                    ));
                    set(&mut h.detail, "matched", json!(record.to_string()));
                }
                DaneMatch::TrustAnchor { record, depth } => {
                    let anchor = chain.get(depth).cloned().unwrap_or_default();
                    match mailscope_net::anchor::verify_chain_to_anchor(
                        &chain[..depth.max(1)],
                        &anchor,
                        host,
                    ) {
                        Ok(()) => {
                            h.verdict = "pass";
                            text.push_str(&format!(
                                "\ncertificate {depth} of the chain matches {record} (DANE-TA), and the server's certificate verifies up to it for {host}"
                            ));
                        }
                        Err(why) => {
                            h.verdict = "fail";
                            text.push_str(&format!(
                                "\ncertificate {depth} of the chain matches {record} (DANE-TA), but the chain does not verify for {host}: {why}"
                            ));
                            h.findings.push(Finding::new(
                                kinds::DANE_TA_CHAIN_INVALID,
                                format!("{host}: {why}"),
                            ));
                        }
                    }
                    set(&mut h.detail, "matched", json!(record.to_string()));
                    set(&mut h.detail, "matched_depth", json!(depth));
                }
                DaneMatch::None => {
                    h.verdict = "fail";
                    let want = chain
                        .first()
                        .and_then(|leaf| dane::association(leaf, 1, 1).ok())
                        .map(|d| {
                            Tlsa {
                                usage: 3,
                                selector: 1,
                                matching: 1,
                                data: d,
                            }
                            .to_string()
                        })
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "\nno usable TLSA record matches the {} certificate(s) the server presents; its key as DANE-EE would be: {want}",
                        chain.len()
                    ));
                    h.findings.push(Finding::new(
                        kinds::DANE_MISMATCH,
                        format!("{host} port {port}: presented key is {want}"),
                    ));
                    set(&mut h.detail, "presented_3_1_1", json!(want));
                }
            }
        }
    }
    h.text = text;
    h
}

fn set(detail: &mut Value, key: &str, v: Value) {
    if let Value::Object(o) = detail {
        o.insert(key.into(), v);
    }
}

/// The certificate chain `host` presents after STARTTLS on `port` (its address looked up
/// through `dns`, so test zones work). Verification is off: DANE decides, not WebPKI.
async fn starttls_chain(
    dns: &Dns,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, String> {
    let mut addrs: Vec<IpAddr> = dns
        .a(host)
        .await
        .records()
        .iter()
        .map(|a| IpAddr::V4(*a))
        .collect();
    if addrs.is_empty() {
        addrs.extend(
            dns.aaaa(host)
                .await
                .records()
                .iter()
                .map(|a| IpAddr::V6(*a)),
        );
    }
    let ip = addrs
        .first()
        .copied()
        .ok_or_else(|| format!("{host} has no address"))?;
    let tls = TlsClient::new(&TlsClientOptions {
        insecure: true,
        sni: Some(host.trim_end_matches('.').to_owned()),
        ..TlsClientOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let target = SmtpTarget {
        host: ip.to_string(),
        port,
        implicit_tls: false,
        timeout,
        local: None,
        proxy: None,
    };
    let mut client = Client::new(ClientOptions {
        helo_name: "mailscope.invalid".into(),
        starttls: true,
        quit_after: Some(Stage::Tls),
        step_timeout_us: u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX),
        ..ClientOptions::default()
    });
    let mut chain: Option<Vec<Vec<u8>>> = None;
    let mut failure: Option<String> = None;
    let run = run_smtp_client(&target, &tls, &mut client, |_, ev| match ev {
        DriverEvent::TlsEstablished(report) => {
            chain = Some(report.chain.iter().map(|c| c.der.clone()).collect());
        }
        DriverEvent::TlsFailed(e) => failure = Some(e.to_string()),
        DriverEvent::Machine(_, Event::Finished(Outcome::Failed { reason, .. })) => {
            failure.get_or_insert(reason);
        }
        _ => {}
    })
    .await;
    if let Err(e) = run {
        return Err(e.to_string());
    }
    if let Some(chain) = chain {
        return Ok(chain);
    }
    Err(failure.unwrap_or_else(|| "the session ended before TLS".into()))
}
