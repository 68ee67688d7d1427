//! `mailscope spf` against the real NSD of scripts/peers ($PEER_DNS), which serves
//! testdata/dns/spf.test.zone: seed 004's unlisted second relay, chains of exactly 10 and 11
//! DNS-querying terms, 2 and 3 void look-ups, an include loop, macros, an include of a name
//! without SPF, two records, ptr, +all, a syntax error, redirects and the obsolete SPF type.
//! Every `--json` run is validated against docs/events.schema.json by `json_events`.

mod common;

use common::{Run, mailscope, peer_addr};
use serde_json::Value;

fn spf(args: &[&str]) -> Run {
    let dns = peer_addr("PEER_DNS").to_string();
    let mut all = vec!["spf"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--resolver", &dns, "--json"]);
    mailscope(&all)
}

/// The `check_result` whose subject is `subject`.
fn result<'a>(run: &'a Run, subject: &str) -> &'a Value {
    run.of_type("check_result")
        .into_iter()
        .find(|r| r["subject"] == subject)
        .unwrap_or_else(|| panic!("no check_result for {subject}\n{}", run.ctx()))
}

fn decided(r: &Value) -> Vec<(String, String, u64)> {
    r["detail"]["decided_by"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["domain"].as_str().unwrap_or_default().to_owned(),
                        t["term"].as_str().unwrap_or_default().to_owned(),
                        t["position"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn d(domain: &str, term: &str, pos: u64) -> (String, String, u64) {
    (domain.to_owned(), term.to_owned(), pos)
}

#[test]
fn seed_004_unlisted_relay_fails_listed_relay_passes() {
    let run = spf(&["relay.spf.test", "--ip", "192.0.2.20"]);
    run.expect_code(0);
    let r = result(&run, "192.0.2.20 for relay.spf.test");
    assert_eq!(r["area"], "spf", "{}", run.ctx());
    assert_eq!(r["verdict"], "fail", "{}", run.ctx());
    assert_eq!(
        decided(r),
        vec![d("relay.spf.test", "-all", 3)],
        "{}",
        run.ctx()
    );
    assert_eq!(
        r["detail"]["explanation"],
        "192.0.2.20 is not one of relay.spf.test's designated mail servers."
    );
    assert_eq!(
        run.findings("spf.result.not-permitted").len(),
        1,
        "{}",
        run.ctx()
    );
    assert_eq!(
        run.findings("spf.record.spf-rr-type").len(),
        1,
        "{}",
        run.ctx()
    );
    assert_eq!(run.one("check_summary")["verdicts"]["spf"], "fail");
    assert!(
        run.stderr
            .contains("result: fail — decided by `-all` in relay.spf.test's record (term 3)")
            || run
                .stdout
                .contains("result: fail — decided by `-all` in relay.spf.test's record (term 3)"),
        "{}",
        run.ctx()
    );

    let run = spf(&["relay.spf.test", "--ip", "192.0.2.10"]);
    let r = result(&run, "192.0.2.10 for relay.spf.test");
    assert_eq!(r["verdict"], "pass", "{}", run.ctx());
    assert_eq!(decided(r), vec![d("relay.spf.test", "ip4:192.0.2.10", 1)]);
    assert!(
        run.findings("spf.result.not-permitted").is_empty(),
        "{}",
        run.ctx()
    );

    // The MX host of the domain passes through `mx`.
    let run = spf(&["relay.spf.test", "--ip", "192.0.2.11"]);
    let r = result(&run, "192.0.2.11 for relay.spf.test");
    assert_eq!(r["verdict"], "pass", "{}", run.ctx());
    assert_eq!(decided(r), vec![d("relay.spf.test", "mx", 2)]);

    // --fail-on error turns the unlisted relay into exit code 10.
    let dns = peer_addr("PEER_DNS").to_string();
    let run = mailscope(&[
        "--fail-on",
        "error",
        "spf",
        "relay.spf.test",
        "--ip",
        "192.0.2.20",
        "--resolver",
        &dns,
    ]);
    run.expect_code(10);
    assert!(
        run.stdout
            .contains("result: fail — decided by `-all` in relay.spf.test's record (term 3)"),
        "{}",
        run.ctx()
    );
    assert!(
        run.stdout
            .contains("DNS look-ups: 1/10, void look-ups: 0/2"),
        "{}",
        run.ctx()
    );
}

#[test]
fn exactly_ten_lookups_is_valid_eleven_is_permerror() {
    let run = spf(&["ten.spf.test", "--ip", "203.0.113.9"]);
    let a = result(&run, "ten.spf.test");
    assert_eq!(a["verdict"], "valid", "{}", run.ctx());
    assert_eq!(a["detail"]["dns_lookups"], 10);
    assert_eq!(a["detail"]["tree"]["children"][0]["domain"], "n6.spf.test");
    assert_eq!(a["detail"]["tree"]["children"][0]["lookups"], 6);
    assert!(
        run.findings("spf.record.too-many-lookups").is_empty(),
        "{}",
        run.ctx()
    );
    let e = result(&run, "203.0.113.9 for ten.spf.test");
    assert_eq!(e["verdict"], "fail", "{}", run.ctx());
    assert_eq!(e["detail"]["dns_lookups"], 10);
    assert_eq!(decided(e), vec![d("ten.spf.test", "-all", 5)]);

    let run = spf(&["eleven.spf.test", "--ip", "203.0.113.9"]);
    let a = result(&run, "eleven.spf.test");
    assert_eq!(a["verdict"], "permerror", "{}", run.ctx());
    assert_eq!(a["detail"]["dns_lookups"], 11);
    assert_eq!(
        run.findings("spf.record.too-many-lookups").len(),
        1,
        "{}",
        run.ctx()
    );
    let e = result(&run, "203.0.113.9 for eleven.spf.test");
    assert_eq!(e["verdict"], "permerror", "{}", run.ctx());
    assert_eq!(e["detail"]["dns_lookups"], 11);
    // The 11th term is the 6th `a` of the included record.
    assert_eq!(
        decided(e),
        vec![
            d("eleven.spf.test", "include:n6.spf.test", 5),
            d("n6.spf.test", "a:h.spf.test", 6)
        ],
        "{}",
        run.ctx()
    );
    // A match before the limit is reached is a pass (evaluation stops there).
    let run = spf(&["eleven.spf.test", "--ip", "198.51.100.1"]);
    let e = result(&run, "198.51.100.1 for eleven.spf.test");
    assert_eq!(e["verdict"], "pass", "{}", run.ctx());
    assert_eq!(e["detail"]["dns_lookups"], 1);
}

#[test]
fn void_lookups_two_allowed_three_permerror() {
    let run = spf(&["void2.spf.test", "--ip", "192.0.2.30"]);
    let a = result(&run, "void2.spf.test");
    assert_eq!(a["detail"]["void_lookups"], 2, "{}", run.ctx());
    assert!(
        run.findings("spf.record.void-lookups").is_empty(),
        "{}",
        run.ctx()
    );
    let e = result(&run, "192.0.2.30 for void2.spf.test");
    assert_eq!(e["verdict"], "pass", "{}", run.ctx());
    assert_eq!(e["detail"]["void_lookups"], 2);

    let run = spf(&["void3.spf.test", "--ip", "192.0.2.30"]);
    let a = result(&run, "void3.spf.test");
    assert_eq!(a["verdict"], "permerror", "{}", run.ctx());
    assert_eq!(a["detail"]["void_lookups"], 3);
    assert_eq!(
        run.findings("spf.record.void-lookups").len(),
        1,
        "{}",
        run.ctx()
    );
    let e = result(&run, "192.0.2.30 for void3.spf.test");
    assert_eq!(e["verdict"], "permerror", "{}", run.ctx());
    assert_eq!(decided(e), vec![d("void3.spf.test", "a:gone3.spf.test", 3)]);
}

#[test]
fn include_loop_is_permerror() {
    let run = spf(&["loop-a.spf.test", "--ip", "203.0.113.9"]);
    assert_eq!(
        result(&run, "loop-a.spf.test")["verdict"],
        "permerror",
        "{}",
        run.ctx()
    );
    assert!(
        !run.findings("spf.include.loop").is_empty(),
        "{}",
        run.ctx()
    );
    let e = result(&run, "203.0.113.9 for loop-a.spf.test");
    assert_eq!(e["verdict"], "permerror", "{}", run.ctx());
    assert_eq!(
        decided(e),
        vec![
            d("loop-a.spf.test", "include:loop-b.spf.test", 1),
            d("loop-b.spf.test", "include:loop-a.spf.test", 1)
        ]
    );
}

#[test]
fn macros_expand_ip_and_local_part() {
    let run = spf(&["macro.spf.test", "--ip", "192.0.2.40"]);
    let e = result(&run, "192.0.2.40 for macro.spf.test");
    assert_eq!(e["verdict"], "pass", "{}", run.ctx());
    assert_eq!(
        decided(e),
        vec![d("macro.spf.test", "exists:%{i}._ip.spf.test", 1)]
    );
    assert!(
        !run.findings("spf.mechanism.macro").is_empty(),
        "{}",
        run.ctx()
    );

    let run = spf(&[
        "macro.spf.test",
        "--ip",
        "192.0.2.41",
        "--sender",
        "alice@macro.spf.test",
    ]);
    let e = result(&run, "192.0.2.41 for macro.spf.test");
    assert_eq!(e["verdict"], "pass", "{}", run.ctx());
    assert_eq!(
        decided(e),
        vec![d("macro.spf.test", "exists:%{l}._user.spf.test", 2)]
    );

    let run = spf(&[
        "macro.spf.test",
        "--ip",
        "192.0.2.41",
        "--sender",
        "bob@macro.spf.test",
    ]);
    let e = result(&run, "192.0.2.41 for macro.spf.test");
    assert_eq!(e["verdict"], "fail", "{}", run.ctx());
    assert_eq!(e["detail"]["void_lookups"], 2);
}

#[test]
fn include_of_domain_without_spf_is_permerror() {
    let run = spf(&["missing.spf.test", "--ip", "203.0.113.9"]);
    assert_eq!(
        result(&run, "missing.spf.test")["verdict"],
        "permerror",
        "{}",
        run.ctx()
    );
    assert_eq!(
        run.findings("spf.include.missing").len(),
        1,
        "{}",
        run.ctx()
    );
    let e = result(&run, "203.0.113.9 for missing.spf.test");
    assert_eq!(e["verdict"], "permerror", "{}", run.ctx());
    assert_eq!(
        decided(e),
        vec![d("missing.spf.test", "include:nospf.spf.test", 1)]
    );
}

#[test]
fn record_lints() {
    let run = spf(&["multi.spf.test", "--ip", "192.0.2.60"]);
    assert_eq!(
        run.findings("spf.record.multiple").len(),
        1,
        "{}",
        run.ctx()
    );
    assert_eq!(
        result(&run, "192.0.2.60 for multi.spf.test")["verdict"],
        "permerror"
    );

    let run = spf(&["ptr.spf.test"]);
    assert_eq!(run.findings("spf.mechanism.ptr").len(), 1, "{}", run.ctx());
    assert_eq!(result(&run, "ptr.spf.test")["verdict"], "warning");

    let run = spf(&["open.spf.test"]);
    assert_eq!(
        run.findings("spf.record.plus-all").len(),
        1,
        "{}",
        run.ctx()
    );

    let run = spf(&["syntax.spf.test"]);
    let f = run.findings("spf.record.syntax");
    assert_eq!(f.len(), 1, "{}", run.ctx());
    assert!(
        f[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("term 2 `ip4:192.0.2.300`"),
        "{}",
        run.ctx()
    );
    let a = result(&run, "syntax.spf.test");
    assert_eq!(a["verdict"], "permerror");
    assert_eq!(a["detail"]["tree"]["reason"]["position"], 2);

    let run = spf(&["redirall.spf.test"]);
    assert_eq!(
        run.findings("spf.record.redirect-with-all").len(),
        1,
        "{}",
        run.ctx()
    );

    let run = spf(&["nosuch.spf.test"]);
    assert_eq!(
        result(&run, "nosuch.spf.test")["verdict"],
        "none",
        "{}",
        run.ctx()
    );
    assert_eq!(run.findings("spf.record.none").len(), 1, "{}", run.ctx());
}

#[test]
fn redirect_uses_the_target_record_and_its_explanation() {
    let run = spf(&["redir.spf.test", "--ip", "192.0.2.20"]);
    let a = result(&run, "redir.spf.test");
    assert_eq!(a["detail"]["dns_lookups"], 2, "{}", run.ctx());
    let e = result(&run, "192.0.2.20 for redir.spf.test");
    assert_eq!(e["verdict"], "fail", "{}", run.ctx());
    assert_eq!(
        decided(e),
        vec![
            d("redir.spf.test", "redirect=relay.spf.test", 1),
            d("relay.spf.test", "-all", 3)
        ]
    );
    assert_eq!(
        e["detail"]["explanation"],
        "192.0.2.20 is not one of relay.spf.test's designated mail servers."
    );
}

#[test]
fn helo_without_ip_is_a_usage_error() {
    let dns = peer_addr("PEER_DNS").to_string();
    let run = mailscope(&[
        "spf",
        "relay.spf.test",
        "--helo",
        "mx.example",
        "--resolver",
        &dns,
    ]);
    assert_ne!(run.code, 0, "{}", run.ctx());
    assert!(run.stderr.contains("--ip"), "{}", run.ctx());
}
