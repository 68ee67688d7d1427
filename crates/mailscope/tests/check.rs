//! `mailscope check DOMAIN`: every area in one report, against the NSD peer
//! (`scripts/peers start`). `good.test` (testdata/dns/good.test.zone) is a domain set up the
//! way it should be: one MX with confirmed reverse DNS, SPF, DMARC p=reject, a DKIM key under
//! `default`, TLS-RPT and BIMI; its MX address is a documentation address. A missing peer
//! fails the test.

mod common;

use common::*;
use serde_json::Value;

fn check(args: &[&str]) -> Run {
    let dns = peer_addr("PEER_DNS").to_string();
    let mut all = vec!["--no-config", "--json", "check", "--resolver", &dns];
    all.extend_from_slice(args);
    mailscope(&all)
}

fn areas_in_order(events: &[Value]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in events.iter().filter(|e| e["type"] == "check_result") {
        let a = e["area"].as_str().unwrap_or_default().to_owned();
        if seen.last() != Some(&a) {
            seen.push(a);
        }
    }
    seen
}

#[test]
fn a_well_set_up_domain_gets_a_verdict_per_area() {
    let run = check(&["good.test", "--skip", "mta-sts,dane", "--fail-on", "error"]);
    let events = json_events(&run);
    // The one error: the MX has a documentation address (a real domain must not).
    let errors: Vec<&str> = events
        .iter()
        .filter(|e| {
            e["type"] == "finding" && matches!(e["severity"].as_str(), Some("error" | "critical"))
        })
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(errors, ["mx.address.non-public"], "{}", run.ctx());
    run.expect_code(10);
    let v = &run.one("check_summary")["verdicts"];
    for area in ["mx", "spf", "dmarc", "dkim", "tls-rpt", "bimi", "dnsbl"] {
        assert!(
            v[area].is_string(),
            "no verdict for {area}: {v}\n{}",
            run.ctx()
        );
    }
    assert_eq!(v["spf"], "valid", "{}", run.ctx());
    assert_eq!(v["dmarc"], "enforce", "{}", run.ctx());
    assert_eq!(v["dkim"], "ok", "{}", run.ctx());
    assert_eq!(v["tls-rpt"], "ok", "{}", run.ctx());
    assert_eq!(v["bimi"], "ok", "{}", run.ctx());
    // Blocklists are not asked about documentation addresses.
    assert_eq!(v["dnsbl"], "skipped", "{}", run.ctx());
    assert!(v.get("dane").is_none() && v.get("mta-sts").is_none(), "{v}");
    // Areas ran concurrently but report in a fixed order.
    assert_eq!(
        areas_in_order(&events),
        ["mx", "spf", "dmarc", "dkim", "tls-rpt", "bimi", "dnsbl"],
        "{}",
        run.ctx()
    );
    // Every DNS query is in the stream, and the summary counts them all.
    let queries = events.iter().filter(|e| e["type"] == "dns_lookup").count();
    assert!(queries > 10, "{}", run.ctx());
    assert_eq!(
        run.one("check_summary")["dns_queries"].as_u64(),
        Some(queries as u64)
    );
}

#[test]
fn only_runs_the_areas_asked_for() {
    let run = check(&["good.test", "--only", "spf,dmarc"]);
    run.expect_code(0);
    let events = json_events(&run);
    let v = run.one("check_summary")["verdicts"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut keys: Vec<&String> = v.keys().collect();
    keys.sort();
    assert_eq!(keys, ["dmarc", "spf"], "{}", run.ctx());
    // Nothing needed the MX hosts' addresses: no PTR (FCrDNS) query was made, and no MX
    // report (SPF's `mx` term still asks for the MX records itself).
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "dns_lookup" && e["rtype"] == "PTR"),
        "{}",
        run.ctx()
    );
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "check_result" && e["area"] == "mx"),
        "{}",
        run.ctx()
    );
    // --skip leaves out what it names.
    let run = check(&[
        "good.test",
        "--skip",
        "mta-sts,dane,dnsbl,dkim,bimi,tls-rpt,spf,dmarc",
    ]);
    run.expect_code(0);
    json_events(&run);
    let v = &run.one("check_summary")["verdicts"];
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
    assert!(v["mx"].is_string());
}

#[test]
fn human_report_ends_with_the_verdicts() {
    let dns = peer_addr("PEER_DNS").to_string();
    let run = mailscope(&[
        "--no-config",
        "check",
        "good.test",
        "--resolver",
        &dns,
        "--skip",
        "mta-sts,dane",
    ]);
    run.expect_code(0);
    let last_lines: Vec<&str> = run.stdout.lines().rev().take(2).collect();
    assert!(
        last_lines[1].starts_with("verdicts: ") && last_lines[1].contains("spf=valid"),
        "{}",
        run.ctx()
    );
    assert!(last_lines[0].contains("DNS queries"), "{}", run.ctx());
    assert!(run.stdout.contains("fix: "), "{}", run.ctx());
}
