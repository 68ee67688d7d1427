//! `mailscope dnsbl` against the real NSD of scripts/peers ($PEER_DNS), which serves the
//! blocklists of testdata/dns/dnsbl.test.zone: a listed entry with TXT, the Spamhaus-style
//! refusal 127.255.255.254, an answer outside 127.0.0.0/8, an undocumented code, NXDOMAIN,
//! an IPv6 entry, and domain lists (exact and bit mask). Each test writes a `--lists` file
//! describing them with Spamhaus-like codes.
//!
//! The built-in lists are asked through NSD too: it is not authoritative for
//! spamhaus.org & co. and answers REFUSED, which must come out as "no answer", never as
//! "listed" or "not listed". Timeouts and the one-round-trip claim go through
//! scripts/dns-delay, a delaying forwarder in front of the same NSD (netem is not available
//! here). Nothing but 127.0.0.1 is ever queried.

mod common;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{mailscope, peer_addr};
use serde_json::Value;

const DNS_DELAY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/dns-delay");

/// The test lists: dnsbl.test with ZEN-like codes, the domain lists, and a list without
/// IPv6 support.
const LISTS: &str = r#"
[[list]]
zone = "dnsbl.test"
kind = "ip"
ipv6 = true
info = "https://dnsbl.test/lookup"
codes = { "127.0.0.2" = "SBL-like: spam source", "127.0.0.4" = "XBL-like: exploited host", "127.0.0.10" = "PBL-like: dynamic range" }
refusals = { "127.255.255.252" = "typing error in the zone name", "127.255.255.254" = "query via a public resolver", "127.255.255.255" = "excessive queries" }

[[list]]
zone = "bl01.dnsbl.test"
kind = "ip"
codes = { "127.0.0.2" = "bench list 01" }

[[list]]
zone = "dbl.dnsbl.test"
kind = "domain"
codes = { "127.0.1.2" = "DBL-like: spam domain" }
refusals = { "127.255.255.254" = "query via a public resolver", "127.0.1.255" = "IP queries not allowed" }

[[list]]
zone = "multi.dnsbl.test"
kind = "domain"
match = "bitmask"
codes = { "127.0.0.2" = "black", "127.0.0.4" = "grey", "127.0.0.8" = "red" }
refusals = { "127.0.0.1" = "query refused" }
"#;

fn write_lists(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("lists.toml");
    std::fs::write(&p, text).expect("write lists file");
    p
}

fn dns() -> String {
    peer_addr("PEER_DNS").to_string()
}

/// `check_result` events keyed by their subject (the zone for per-list results).
fn result<'a>(events: &'a [Value], subject: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == "check_result" && e["subject"] == subject)
        .unwrap_or_else(|| panic!("no check_result for {subject} in {events:#?}"))
}

fn finding_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "finding")
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

fn run_json(args: &[&str]) -> common::Run {
    let mut all = vec!["dnsbl"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = mailscope(&all);
    assert_eq!(run.code, 0, "{}", run.ctx());
    run
}

/// (subject, verdict of dnsbl.test, overall verdict, codes, finding ids)
type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a [&'a str]);

#[test]
fn test_zone_answers_are_read_per_rfc_5782_and_the_lists_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lists = write_lists(dir.path(), LISTS);
    let lists = lists.to_str().expect("utf-8 path");
    let dns = dns();
    let cases: [Case; 6] = [
        (
            "192.0.2.10",
            "listed",
            "listed",
            &["127.0.0.2"],
            &["dnsbl.listed"],
        ),
        // The list's error code: a refusal, not a listing.
        (
            "192.0.2.11",
            "refused",
            "refused",
            &["127.255.255.254"],
            &["dnsbl.query-refused"],
        ),
        (
            "192.0.2.12",
            "invalid",
            "error",
            &["192.0.2.99"],
            &["dnsbl.invalid-answer"],
        ),
        (
            "192.0.2.13",
            "listed",
            "listed",
            &["127.0.0.4", "127.0.0.10"],
            &["dnsbl.listed"],
        ),
        (
            "192.0.2.14",
            "listed",
            "listed",
            &["127.0.0.77"],
            &["dnsbl.listed", "dnsbl.undocumented-code"],
        ),
        ("192.0.2.20", "not-listed", "not-listed", &[], &[]),
    ];
    for (ip, verdict, overall, codes, ids) in cases {
        let run = run_json(&[ip, "--lists", lists, "--resolver", &dns]);
        let r = result(&run.events, "dnsbl.test");
        assert_eq!(r["verdict"], verdict, "{ip}\n{}", run.ctx());
        let got: Vec<&str> = r["detail"]["codes"]
            .as_array()
            .expect("codes")
            .iter()
            .filter_map(|c| c["addr"].as_str())
            .collect();
        assert_eq!(got, codes, "{ip}\n{}", run.ctx());
        // bl01 lists 192.0.2.10 only.
        let bl01 = result(&run.events, "bl01.dnsbl.test");
        let want_bl01 = if ip == "192.0.2.10" {
            "listed"
        } else {
            "not-listed"
        };
        assert_eq!(bl01["verdict"], want_bl01, "{ip}\n{}", run.ctx());
        let want_overall = if ip == "192.0.2.10" {
            "listed"
        } else {
            overall
        };
        assert_eq!(
            result(&run.events, ip)["verdict"],
            want_overall,
            "{ip}\n{}",
            run.ctx()
        );
        let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        if ip == "192.0.2.10" {
            want.push("dnsbl.listed".into());
        }
        assert_eq!(finding_ids(&run.events), want, "{ip}\n{}", run.ctx());
        let summary = run.events.last().expect("summary");
        assert_eq!(summary["verdicts"]["dnsbl"], want_overall, "{}", run.ctx());
        // Only the IP lists were asked.
        assert!(
            !run.events.iter().any(|e| e["subject"] == "dbl.dnsbl.test"),
            "{}",
            run.ctx()
        );
    }
    // TXT is fetched for listings and refusals, and shown.
    let run = run_json(&["192.0.2.10", "--lists", lists, "--resolver", &dns]);
    let r = result(&run.events, "dnsbl.test");
    assert_eq!(
        r["detail"]["txt"][0],
        "Listed in dnsbl.test: spam source, see https://dnsbl.test/lookup?ip=192.0.2.10",
        "{}",
        run.ctx()
    );
    let run = run_json(&["192.0.2.11", "--lists", lists, "--resolver", &dns]);
    assert!(
        result(&run.events, "dnsbl.test")["detail"]["txt"][0]
            .as_str()
            .is_some_and(|t| t.contains("refused the query")),
        "{}",
        run.ctx()
    );
    // The human output says what a refusal is.
    let human = mailscope(&["dnsbl", "192.0.2.11", "--lists", lists, "--resolver", &dns]);
    assert_eq!(human.code, 0, "{}", human.ctx());
    assert!(
        human.stdout.contains("the list refused the query")
            && human.stdout.contains("not a listing")
            && !human.stdout.contains(": listed"),
        "{}",
        human.ctx()
    );
}

#[test]
fn ipv6_is_asked_in_nibble_form_and_lists_without_ipv6_are_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lists = write_lists(dir.path(), LISTS);
    let run = run_json(&[
        "2001:db8::10",
        "--lists",
        lists.to_str().expect("utf-8"),
        "--resolver",
        &dns(),
    ]);
    let r = result(&run.events, "dnsbl.test");
    assert_eq!(r["verdict"], "listed", "{}", run.ctx());
    assert_eq!(
        r["detail"]["query"],
        "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.dnsbl.test"
    );
    let skipped = result(&run.events, "bl01.dnsbl.test");
    assert_eq!(skipped["verdict"], "skipped", "{}", run.ctx());
    assert!(
        skipped["text"].as_str().is_some_and(|t| t.contains("IPv6")),
        "{}",
        run.ctx()
    );
    assert_eq!(result(&run.events, "2001:db8::10")["verdict"], "listed");
}

#[test]
fn domain_lists_exact_bitmask_and_refusals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lists = write_lists(dir.path(), LISTS);
    let lists = lists.to_str().expect("utf-8");
    let dns = dns();
    let run = run_json(&["listed.example.test", "--lists", lists, "--resolver", &dns]);
    assert_eq!(result(&run.events, "dbl.dnsbl.test")["verdict"], "listed");
    assert_eq!(
        result(&run.events, "multi.dnsbl.test")["verdict"],
        "not-listed"
    );
    assert!(
        !run.events.iter().any(|e| e["subject"] == "dnsbl.test"),
        "IP lists asked about a domain\n{}",
        run.ctx()
    );
    let run = run_json(&["refused.example.test", "--lists", lists, "--resolver", &dns]);
    assert_eq!(result(&run.events, "dbl.dnsbl.test")["verdict"], "refused");
    assert_eq!(
        result(&run.events, "refused.example.test")["verdict"],
        "refused"
    );
    let run = run_json(&["grey.example.test", "--lists", lists, "--resolver", &dns]);
    let m = result(&run.events, "multi.dnsbl.test");
    assert_eq!(m["verdict"], "listed", "{}", run.ctx());
    let meaning = m["detail"]["codes"][0]["meaning"]
        .as_str()
        .unwrap_or_default();
    assert!(
        meaning.contains("black") && meaning.contains("grey"),
        "{meaning}"
    );
    // URIBL's 127.0.0.1: refused, not "listed" (bit 1 is not a sub-list).
    let run = run_json(&["blocked.example.test", "--lists", lists, "--resolver", &dns]);
    assert_eq!(
        result(&run.events, "multi.dnsbl.test")["verdict"],
        "refused"
    );
    assert_eq!(
        result(&run.events, "blocked.example.test")["verdict"],
        "refused"
    );
}

/// NSD is not authoritative for the real lists and answers REFUSED: every built-in list
/// must come out as "no answer" (verdict error), and the whole as error, never as listed
/// or clean.
#[test]
fn built_in_lists_through_a_refusing_server_are_errors_not_clean() {
    let dns = dns();
    for (subject, zones) in [
        (
            "192.0.2.10",
            &[
                "zen.spamhaus.org",
                "bl.spamcop.net",
                "b.barracudacentral.org",
                "bl.mailspike.net",
                "dnsbl-1.uceprotect.net",
                "psbl.surriel.com",
            ][..],
        ),
        (
            "example.test",
            &["dbl.spamhaus.org", "multi.surbl.org", "multi.uribl.com"][..],
        ),
    ] {
        let run = run_json(&[subject, "--resolver", &dns]);
        let per_list: Vec<&Value> = run
            .events
            .iter()
            .filter(|e| e["type"] == "check_result" && e["subject"] != subject)
            .collect();
        let got: Vec<&str> = per_list
            .iter()
            .filter_map(|e| e["subject"].as_str())
            .collect();
        assert_eq!(got, zones, "{}", run.ctx());
        for e in per_list {
            assert_eq!(e["verdict"], "error", "{e}\n{}", run.ctx());
            assert_eq!(e["detail"]["status"], "no-answer", "{e}");
            assert!(
                e["detail"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("REFUSED")),
                "{e}"
            );
        }
        assert_eq!(result(&run.events, subject)["verdict"], "error");
        assert_eq!(
            finding_ids(&run.events),
            ["dnsbl.no-answer"],
            "{}",
            run.ctx()
        );
        assert!(
            run.events
                .iter()
                .filter(|e| e["type"] == "dns_lookup")
                .all(|e| e["outcome"] == "refused"),
            "{}",
            run.ctx()
        );
        let human = mailscope(&["dnsbl", subject, "--resolver", &dns]);
        assert!(
            human.stdout.contains("unknown whether listed")
                && !human.stdout.contains("not-listed")
                && !human.stdout.contains(": listed"),
            "{}",
            human.ctx()
        );
    }
}

// ------------------------------------------------------------------ through dns-delay

/// scripts/dns-delay on a free port in front of NSD; killed on drop.
struct Delay {
    child: Child,
    addr: SocketAddr,
}

impl Delay {
    fn start(delay_ms: u32, drop: &[&str]) -> Self {
        let upstream = dns();
        // A port free for both UDP and TCP right now.
        let addr = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
            let a = udp.local_addr().expect("addr");
            if std::net::TcpListener::bind(a).is_ok() {
                break a;
            }
        };
        let mut cmd = Command::new("python3");
        cmd.arg(DNS_DELAY)
            .args(["--listen", &addr.to_string(), "--upstream", &upstream])
            .args(["--delay-ms", &delay_ms.to_string(), "--quiet"]);
        for d in drop {
            cmd.args(["--drop", d]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 scripts/dns-delay");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "scripts/dns-delay did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Delay { child, addr }
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A list that does not answer in time is "no answer", not "not listed"; the others are
/// still read (the timeout of one does not hold up the rest beyond its own limit).
#[test]
fn a_timeout_is_no_answer_never_not_listed() {
    let delay = Delay::start(0, &["bl01.dnsbl.test"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let lists = write_lists(dir.path(), LISTS);
    let run = run_json(&[
        "192.0.2.20",
        "--lists",
        lists.to_str().expect("utf-8"),
        "--resolver",
        &delay.addr.to_string(),
        "--dns-timeout",
        "0.5",
    ]);
    assert_eq!(
        result(&run.events, "dnsbl.test")["verdict"],
        "not-listed",
        "{}",
        run.ctx()
    );
    let bl01 = result(&run.events, "bl01.dnsbl.test");
    assert_eq!(bl01["verdict"], "error", "{}", run.ctx());
    assert_eq!(bl01["detail"]["status"], "no-answer");
    assert!(
        bl01["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("timeout") || r.contains("no answer within")),
        "{bl01}"
    );
    assert_eq!(result(&run.events, "192.0.2.20")["verdict"], "error");
    assert_eq!(
        finding_ids(&run.events),
        ["dnsbl.no-answer"],
        "{}",
        run.ctx()
    );
}

/// 20 lists behind a 150 ms delay: all at once takes about one round trip (plus one for
/// the TXT records of the listings), one after another at least 20.
#[test]
fn twenty_lists_cost_one_round_trip_not_twenty() {
    let delay = Delay::start(150, &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::new();
    for i in 1..=20 {
        text.push_str(&format!(
            "[[list]]\nzone = \"bl{i:02}.dnsbl.test\"\nkind = \"ip\"\ncodes = {{ \"127.0.0.2\" = \"bench list {i}\" }}\n"
        ));
    }
    let lists = write_lists(dir.path(), &text);
    let lists = lists.to_str().expect("utf-8");
    let resolver = delay.addr.to_string();
    let elapsed = |run: &common::Run| {
        Duration::from_micros(
            run.events
                .last()
                .and_then(|e| e["elapsed_us"].as_u64())
                .expect("elapsed_us"),
        )
    };
    // Not listed anywhere: one A query per list, no TXT.
    let parallel = run_json(&["192.0.2.20", "--lists", lists, "--resolver", &resolver]);
    assert_eq!(
        result(&parallel.events, "192.0.2.20")["verdict"],
        "not-listed"
    );
    let sequential = run_json(&[
        "192.0.2.20",
        "--lists",
        lists,
        "--resolver",
        &resolver,
        "--max-parallel",
        "1",
    ]);
    let (p, s) = (elapsed(&parallel), elapsed(&sequential));
    assert!(s >= Duration::from_millis(20 * 150), "sequential {s:?}");
    assert!(
        p < Duration::from_millis(4 * 150),
        "20 lists in parallel took {p:?}; one round trip is 150 ms"
    );
    // Listed everywhere: A then TXT, two round trips.
    let listed = run_json(&["192.0.2.10", "--lists", lists, "--resolver", &resolver]);
    assert_eq!(result(&listed.events, "192.0.2.10")["verdict"], "listed");
    assert_eq!(
        listed
            .events
            .iter()
            .filter(|e| e["type"] == "finding")
            .count(),
        20
    );
    assert!(
        elapsed(&listed) < Duration::from_millis(6 * 150),
        "{:?}",
        elapsed(&listed)
    );
}

#[test]
fn bad_input_is_a_usage_error() {
    let run = mailscope(&["dnsbl", "not a domain!", "--resolver", "127.0.0.1:9"]);
    assert_eq!(run.code, 1, "{}", run.ctx());
    assert!(
        run.stderr.contains("neither an IP address nor a domain"),
        "{}",
        run.ctx()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = write_lists(
        dir.path(),
        "[[list]]\nzone = \"x.test\"\nkind = \"ip\"\ncodes = { \"10.0.0.2\" = \"x\" }\n",
    );
    let run = mailscope(&[
        "dnsbl",
        "192.0.2.1",
        "--lists",
        bad.to_str().expect("utf-8"),
        "--resolver",
        "127.0.0.1:9",
    ]);
    assert_eq!(run.code, 1, "{}", run.ctx());
    assert!(run.stderr.contains("outside 127.0.0.0/8"), "{}", run.ctx());
}
