//! `mailscope check --only dane`: TLSA records of the MX hosts, looked up through a real
//! validating resolver, matched against the certificate a real SMTP server presents.
//!
//! `scripts/peers start` generates and signs the zone `dane.test` (its TLSA records hold the
//! peers' own leaf key and CA), serves it from NSD, and runs unbound on `$PEER_DNSSEC` with
//! that zone's key as trust anchor; `insecure-dane.test` is unsigned. Every MX host is
//! 127.0.0.1: `--smtp-port` sends the STARTTLS check to the Postfix peer (STARTTLS, the
//! peers' certificate) or to smtp-sink (no STARTTLS). Nothing here is skipped: a missing peer
//! fails the test with a message naming `scripts/peers`.

mod common;

use common::*;
use serde_json::Value;

fn dane(domain: &str, smtp: &str, extra: &[&str]) -> Run {
    let dns = peer_addr("PEER_DNSSEC").to_string();
    let port = peer_addr(smtp).port().to_string();
    let mut args = vec![
        "--no-config",
        "--json",
        "check",
        domain,
        "--only",
        "dane",
        "--resolver",
        &dns,
        "--smtp-port",
        &port,
        "--smtp-timeout",
        "10",
    ];
    args.extend_from_slice(extra);
    mailscope(&args)
}

fn results(run: &Run) -> Vec<Value> {
    json_events(run)
        .into_iter()
        .filter(|e| e["type"] == "check_result" && e["area"] == "dane")
        .collect()
}

fn ids(run: &Run) -> Vec<String> {
    json_events(run)
        .iter()
        .filter(|e| e["type"] == "finding")
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn verdict(run: &Run) -> String {
    run.one("check_summary")["verdicts"]["dane"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn dane_ee_matches_the_servers_key() {
    let run = dane("dane.test", "PEER_POSTFIX", &["--fail-on", "warning"]);
    run.expect_code(0);
    let r = results(&run);
    assert_eq!(r.len(), 1, "{}", run.ctx());
    assert_eq!(r[0]["subject"], "mx.dane.test", "{}", run.ctx());
    assert_eq!(r[0]["verdict"], "pass", "{}", run.ctx());
    assert_eq!(r[0]["detail"]["tlsa_authenticated"], true, "{}", run.ctx());
    assert_eq!(r[0]["detail"]["mx_authenticated"], true, "{}", run.ctx());
    assert!(
        r[0]["detail"]["matched"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3 1 1 "),
        "DANE-EE is preferred over the DANE-TA record also published\n{}",
        run.ctx()
    );
    assert_eq!(verdict(&run), "pass");
    // The TLSA query went out with the AD bit and came back authenticated.
    let q = json_events(&run)
        .into_iter()
        .find(|e| e["type"] == "dns_lookup" && e["rtype"] == "TLSA")
        .unwrap_or_else(|| panic!("no TLSA dns_lookup\n{}", run.ctx()));
    assert_eq!(q["name"], "_25._tcp.mx.dane.test");
    assert_eq!(q["authentic"], true);
}

#[test]
fn a_record_that_does_not_match_is_critical() {
    let run = dane("bad.dane.test", "PEER_POSTFIX", &["--fail-on", "critical"]);
    run.expect_code(10);
    assert_eq!(results(&run)[0]["verdict"], "fail", "{}", run.ctx());
    assert!(
        ids(&run).contains(&"dane.mismatch".to_owned()),
        "{}",
        run.ctx()
    );
    // The report says which record the server's key would need.
    let want = results(&run)[0]["detail"]["presented_3_1_1"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        want.starts_with("3 1 1 ") && want.len() == 6 + 64,
        "{want:?}"
    );
    let good = dane("dane.test", "PEER_POSTFIX", &[]);
    assert_eq!(
        results(&good)[0]["detail"]["matched"].as_str(),
        Some(want.as_str()),
        "the key mailscope reports for bad.dane.test is the one dane.test publishes"
    );
}

#[test]
fn dane_ta_needs_the_mx_name_in_the_certificate() {
    // The chain verifies up to the CA the TLSA record names, but the certificate is issued
    // for "localhost", not mx.ta.dane.test.
    let run = dane("ta.dane.test", "PEER_POSTFIX", &[]);
    run.expect_code(0);
    let r = &results(&run)[0];
    assert_eq!(r["verdict"], "fail", "{}", run.ctx());
    assert_eq!(r["detail"]["matched_depth"], 1, "{}", run.ctx());
    assert!(
        ids(&run).contains(&"dane.ta.chain-invalid".to_owned()),
        "{}",
        run.ctx()
    );
}

#[test]
fn pkix_usages_are_unusable_for_smtp() {
    let run = dane("pkix.dane.test", "PEER_POSTFIX", &[]);
    let ids = ids(&run);
    assert!(
        ids.contains(&"dane.tlsa.pkix-usage".to_owned()),
        "{}",
        run.ctx()
    );
    assert!(
        ids.contains(&"dane.tlsa.no-usable".to_owned()),
        "{}",
        run.ctx()
    );
    assert!(!ids.contains(&"dane.mismatch".to_owned()), "{}", run.ctx());
    assert_eq!(results(&run)[0]["verdict"], "unusable", "{}", run.ctx());
}

#[test]
fn no_tlsa_means_no_dane() {
    let run = dane("nodane.dane.test", "PEER_POSTFIX", &["--fail-on", "info"]);
    run.expect_code(0);
    assert_eq!(results(&run)[0]["verdict"], "none", "{}", run.ctx());
    assert_eq!(verdict(&run), "none");
}

#[test]
fn unsigned_tlsa_is_not_used() {
    let run = dane("insecure-dane.test", "PEER_POSTFIX", &[]);
    run.expect_code(0);
    assert_eq!(
        results(&run)[0]["verdict"],
        "not-authenticated",
        "{}",
        run.ctx()
    );
    let ids = ids(&run);
    assert!(
        ids.contains(&"dane.tlsa.not-authenticated".to_owned()),
        "{}",
        run.ctx()
    );
    assert!(
        ids.contains(&"dane.mx.insecure".to_owned()),
        "{}",
        run.ctx()
    );
}

#[test]
fn tlsa_without_starttls_is_critical() {
    // smtp-sink offers no STARTTLS: a DANE sender will not deliver.
    let run = dane("dane.test", "PEER_SMTP_SINK", &[]);
    assert_eq!(results(&run)[0]["verdict"], "fail", "{}", run.ctx());
    assert!(
        ids(&run).contains(&"dane.no-tls".to_owned()),
        "{}",
        run.ctx()
    );
}

#[test]
fn human_report_names_record_and_verdict() {
    let dns = peer_addr("PEER_DNSSEC").to_string();
    let port = peer_addr("PEER_POSTFIX").port().to_string();
    let run = mailscope(&[
        "--no-config",
        "check",
        "bad.dane.test",
        "--only",
        "dane",
        "--resolver",
        &dns,
        "--smtp-port",
        &port,
    ]);
    run.expect_code(0);
    for want in [
        "dane mx.bad.dane.test: fail",
        "DNSSEC-authenticated",
        "dane.mismatch",
        "fix:",
    ] {
        assert!(run.stdout.contains(want), "lacks {want:?}\n{}", run.ctx());
    }
}
