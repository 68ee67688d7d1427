//! `mailscope check --domains FILE`: many domains at once, as text, CSV or JSON, against the
//! NSD peer (`scripts/peers start`; zone `batch.test` answers every dNNNN.batch.test with
//! wildcard MX and SPF records). A missing peer fails the test.

mod common;

use std::io::Write as _;

use common::*;

fn domains_file(lines: &[&str]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
    f
}

fn check(args: &[&str]) -> Run {
    let dns = peer_addr("PEER_DNS").to_string();
    let mut all = vec!["--no-config", "check", "--resolver", &dns];
    all.extend_from_slice(args);
    mailscope(&all)
}

#[test]
fn csv_has_a_row_per_domain_matching_single_checks() {
    let f = domains_file(&[
        "# three domains",
        "d0001.batch.test",
        "",
        "D0002.Batch.Test.   # case and trailing dot are normalised",
        "d0003.batch.test",
    ]);
    let path = f.path().to_str().expect("utf-8 path");
    let run = check(&["--domains", path, "--only", "mx", "--format", "csv"]);
    run.expect_code(0);
    let rows: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        rows[0],
        "domain,mx,critical,error,warning,info",
        "{}",
        run.ctx()
    );
    let mut names: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split(',').next().unwrap_or_default())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["d0001.batch.test", "d0002.batch.test", "d0003.batch.test"],
        "{}",
        run.ctx()
    );
    // Each row's verdict is what a check of that domain alone says.
    let single = check(&["--json", "d0002.batch.test", "--only", "mx"]);
    single.expect_code(0);
    json_events(&single);
    let want = single.one("check_summary")["verdicts"]["mx"]
        .as_str()
        .expect("mx verdict")
        .to_owned();
    let row = rows
        .iter()
        .find(|r| r.starts_with("d0002.batch.test,"))
        .expect("row");
    assert_eq!(row.split(',').nth(1), Some(want.as_str()), "{}", run.ctx());
}

#[test]
fn json_batch_is_one_valid_stream() {
    let f = domains_file(&["d0010.batch.test", "d0011.batch.test"]);
    let path = f.path().to_str().expect("utf-8 path");
    let run = check(&[
        "--json",
        "--domains",
        path,
        "--only",
        "mx",
        "--concurrency",
        "2",
    ]);
    run.expect_code(0);
    let events = json_events(&run);
    let rows: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "check_result" && e["area"] == "domain")
        .collect();
    assert_eq!(rows.len(), 2, "{}", run.ctx());
    for r in rows {
        assert!(r["detail"]["verdicts"]["mx"].is_string(), "{r}");
    }
    // Each domain's own MX result is in the stream too, and every DNS query is traced.
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "check_result" && e["area"] == "mx")
            .count(),
        2
    );
    let summary = run.one("check_summary");
    let queries = events.iter().filter(|e| e["type"] == "dns_lookup").count();
    assert_eq!(summary["dns_queries"].as_u64(), Some(queries as u64));
}

#[test]
fn bad_domains_file_is_a_usage_error_naming_the_line() {
    let f = domains_file(&["d0001.batch.test", "not..a.domain"]);
    let path = f.path().to_str().expect("utf-8 path");
    let run = check(&["--domains", path]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("line 2") && run.stderr.contains("not..a.domain"),
        "{}",
        run.ctx()
    );
    let empty = domains_file(&["# nothing"]);
    let run = check(&["--domains", empty.path().to_str().expect("path")]);
    run.expect_code(1);
    assert!(run.stderr.contains("no domains"), "{}", run.ctx());
    let run = check(&["192.0.2.1"]);
    run.expect_code(1);
    assert!(run.stderr.contains("address"), "{}", run.ctx());
}
