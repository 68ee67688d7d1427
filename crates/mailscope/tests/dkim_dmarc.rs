//! `mailscope dkim` and `mailscope dmarc` against the real authoritative DNS server (NSD) that
//! `scripts/peers start` runs on 127.0.0.1 ($PEER_DNS), serving `testdata/dns/dkim.test.zone`
//! (DKIM keys: RSA 2048/1024/512, Ed25519, t=y, t=s, revoked, h=sha1, syntax errors, two
//! records, CNAMEs, a wildcard) and `testdata/dns/dmarc.test.zone` (DMARC variants, report
//! authorisation records, SPF records and a key for the message tests).
//!
//! Signed messages are made here, at run time: with mail-auth's `DkimSigner` (ring) using the
//! test-only keys in `testdata/dkim/`, and with OpenDKIM's `opendkim-testmsg` (Debian's
//! opendkim-tools, installed by `scripts/peers install`) to prove interoperability. Nothing
//! skips: a missing peer or tool fails the test with a message naming the script. Every
//! `--json` run is validated against `docs/events.schema.json` by `json_events`.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use common::*;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use serde_json::Value;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/dkim");

fn resolver() -> String {
    peer_addr("PEER_DNS").to_string()
}

/// `mailscope --no-config --json CMD... --resolver $PEER_DNS`.
fn run(args: &[&str]) -> Run {
    let dns = resolver();
    let mut all = vec!["--no-config", "--json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--resolver", &dns]);
    mailscope(&all)
}

/// The `check_result` events.
fn results(run: &Run) -> Vec<&Value> {
    run.of_type("check_result")
}

/// The one `check_result` whose subject is `subject`.
fn result<'a>(run: &'a Run, subject: &str) -> &'a Value {
    let r: Vec<&Value> = results(run)
        .into_iter()
        .filter(|e| e["subject"] == subject)
        .collect();
    assert_eq!(r.len(), 1, "check_result for {subject:?}\n{}", run.ctx());
    r[0]
}

/// The finding ids whose detail contains `about`.
fn findings_about(run: &Run, about: &str) -> Vec<String> {
    run.of_type("finding")
        .into_iter()
        .filter(|f| f["detail"].as_str().unwrap_or_default().contains(about))
        .map(|f| f["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn has_finding(run: &Run, id: &str, about: &str) {
    assert!(
        findings_about(run, about).iter().any(|f| f == id),
        "no finding {id} about {about:?}\n{}",
        run.ctx()
    );
}

fn lacks_finding(run: &Run, id: &str) {
    assert!(
        !run.of_type("finding").iter().any(|f| f["id"] == id),
        "unexpected finding {id}\n{}",
        run.ctx()
    );
}

fn summary_verdict(run: &Run, area: &str) -> String {
    let s = run.of_type("check_summary");
    assert_eq!(s.len(), 1, "{}", run.ctx());
    s[0]["verdicts"][area]
        .as_str()
        .unwrap_or_else(|| panic!("no verdict for {area}\n{}", run.ctx()))
        .to_owned()
}

// ------------------------------------------------------------------------------ messages

fn message(from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: Alice <{from}>\r\nTo: Bob <bob@example.test>\r\nSubject: {subject}\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@mailscope.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}",
        unique_token("msg")
    )
}

fn pem_der(path: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("{path} is not PEM: {e}"))
}

struct Sign<'a> {
    domain: &'a str,
    selector: &'a str,
    ed25519: bool,
    simple: bool,
    body_length: bool,
    expire_in: u64,
}

impl<'a> Sign<'a> {
    fn rsa(domain: &'a str, selector: &'a str) -> Self {
        Self {
            domain,
            selector,
            ed25519: false,
            simple: false,
            body_length: false,
            expire_in: 0,
        }
    }
}

/// Signs `msg` with mail-auth's DkimSigner and the test keys; returns the signed message.
fn sign(msg: &str, o: &Sign) -> String {
    let headers = ["From", "From", "To", "Subject", "Date", "Message-ID"];
    let cb = if o.simple {
        Canonicalization::Simple
    } else {
        Canonicalization::Relaxed
    };
    let sig = if o.ed25519 {
        let key =
            Ed25519Key::from_pkcs8_maybe_unchecked_der(&pem_der(&format!("{KEYS}/ed25519.pem")))
                .expect("ed25519 key");
        DkimSigner::from_key(key)
            .domain(o.domain)
            .selector(o.selector)
            .headers(headers)
            .body_canonicalization(cb)
            .body_length(o.body_length)
            .expiration(o.expire_in)
            .sign(msg.as_bytes())
            .expect("sign")
    } else {
        let pem = std::fs::read_to_string(format!("{KEYS}/rsa2048.pem")).expect("rsa2048.pem");
        // from_key_der() wants rustls-pki-types, not a dependency of this crate; the PEM
        // helper does exactly that conversion.
        #[allow(deprecated)]
        let key = RsaKey::<Sha256>::from_pkcs8_pem(&pem).expect("rsa key");
        DkimSigner::from_key(key)
            .domain(o.domain)
            .selector(o.selector)
            .headers(headers)
            .body_canonicalization(cb)
            .body_length(o.body_length)
            .expiration(o.expire_in)
            .sign(msg.as_bytes())
            .expect("sign")
    };
    format!("{}{msg}", sig.to_header())
}

/// Writes a message to a temporary file kept for the test's life.
fn eml(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write message");
    p
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The one signature result of `dkim verify`.
fn verify(file: &Path) -> Run {
    run(&["dkim", "verify", path(file)])
}

fn signature(run: &Run) -> &Value {
    let r: Vec<&Value> = results(run)
        .into_iter()
        .filter(|e| {
            e["subject"]
                .as_str()
                .unwrap_or_default()
                .starts_with("signature 1")
        })
        .collect();
    assert_eq!(r.len(), 1, "{}", run.ctx());
    r[0]
}

// ------------------------------------------------------------------------------ DKIM keys

#[test]
fn dkim_key_sizes_and_types() {
    let r = run(&[
        "dkim",
        "dkim.test",
        "-s",
        "rsa2048",
        "-s",
        "rsa1024",
        "-s",
        "rsa512",
        "-s",
        "ed25519",
    ]);
    r.expect_code(0);
    let k = result(&r, "rsa2048._domainkey.dkim.test");
    assert_eq!(k["verdict"], "ok", "{}", r.ctx());
    assert_eq!(k["detail"]["bits"], 2048);
    assert_eq!(k["detail"]["key_type"], "rsa");
    let k = result(&r, "rsa1024._domainkey.dkim.test");
    assert_eq!(k["verdict"], "weak");
    assert_eq!(k["detail"]["bits"], 1024);
    has_finding(&r, "dkim.key.rsa-1024", "rsa1024._domainkey");
    let k = result(&r, "rsa512._domainkey.dkim.test");
    assert_eq!(k["verdict"], "invalid");
    assert_eq!(k["detail"]["bits"], 512);
    has_finding(&r, "dkim.key.rsa-too-short", "rsa512._domainkey");
    let k = result(&r, "ed25519._domainkey.dkim.test");
    assert_eq!(k["verdict"], "ok");
    assert_eq!(k["detail"]["key_type"], "ed25519");
    assert_eq!(
        findings_about(&r, "rsa2048._domainkey").len() + findings_about(&r, "ed25519._").len(),
        0,
        "{}",
        r.ctx()
    );
    // The look-ups are traced.
    assert!(
        r.of_type("dns_lookup")
            .iter()
            .any(|q| q["name"] == "rsa512._domainkey.dkim.test" && q["rtype"] == "TXT"),
        "{}",
        r.ctx()
    );
    assert_eq!(summary_verdict(&r, "dkim"), "invalid");
}

#[test]
fn dkim_key_flags_revoked_sha1_syntax() {
    let r = run(&[
        "dkim",
        "dkim.test",
        "-s",
        "testing",
        "-s",
        "strict",
        "-s",
        "revoked",
        "-s",
        "sha1only",
        "-s",
        "badsyntax",
        "-s",
        "unknowntag",
    ]);
    r.expect_code(0);
    has_finding(&r, "dkim.key.testing", "testing._domainkey");
    has_finding(&r, "dkim.key.no-subdomains", "strict._domainkey");
    has_finding(&r, "dkim.key.revoked", "revoked._domainkey");
    assert_eq!(
        result(&r, "revoked._domainkey.dkim.test")["verdict"],
        "revoked"
    );
    has_finding(&r, "dkim.key.sha1-only", "sha1only._domainkey");
    assert_eq!(
        result(&r, "sha1only._domainkey.dkim.test")["verdict"],
        "invalid"
    );
    has_finding(&r, "dkim.key.syntax", "badsyntax._domainkey");
    has_finding(&r, "dkim.key.unknown-tag", "badsyntax._domainkey");
    has_finding(&r, "dkim.key.unknown-tag", "unknowntag._domainkey");
    assert_eq!(
        result(&r, "unknowntag._domainkey.dkim.test")["verdict"],
        "ok"
    );
}

#[test]
fn dkim_key_missing_multiple_cname() {
    let r = run(&[
        "dkim",
        "dkim.test",
        "-s",
        "multi",
        "-s",
        "cnamed",
        "-s",
        "nosuch",
    ]);
    has_finding(&r, "dkim.key.multiple-records", "multi._domainkey");
    assert_eq!(
        result(&r, "multi._domainkey.dkim.test")["detail"]["records"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let c = result(&r, "cnamed._domainkey.dkim.test");
    assert_eq!(
        c["detail"]["cname"],
        "rsa2048._domainkey.dkim.test",
        "{}",
        r.ctx()
    );
    assert_eq!(c["verdict"], "ok");
    let m = result(&r, "nosuch._domainkey.dkim.test");
    assert_eq!(m["verdict"], "missing");
    assert_eq!(m["detail"]["outcome"], "nxdomain");
    has_finding(&r, "dkim.key.not-found", "nosuch._domainkey");
}

#[test]
fn dkim_human_output_explains() {
    let dns = resolver();
    let r = mailscope(&[
        "--no-config",
        "dkim",
        "dkim.test",
        "-s",
        "rsa1024",
        "--resolver",
        &dns,
    ]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("dkim rsa1024._domainkey.dkim.test: weak"),
        "{}",
        r.ctx()
    );
    assert!(r.stdout.contains("RSA 1024 bits"), "{}", r.ctx());
    assert!(
        r.stdout.contains("fix: Rotate to a 2048-bit key"),
        "{}",
        r.ctx()
    );
    // --fail-on turns a warning into exit 10.
    let r = mailscope(&[
        "--no-config",
        "--fail-on",
        "warning",
        "dkim",
        "dkim.test",
        "-s",
        "rsa1024",
        "--resolver",
        &dns,
    ]);
    r.expect_code(10);
}

#[test]
fn dkim_discover_common_selectors() {
    let r = run(&["dkim", "dkim.test", "--discover"]);
    r.expect_code(0);
    let d = result(&r, "dkim.test selectors");
    let found: Vec<&str> = d["detail"]["found"]
        .as_array()
        .expect("found")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(found, ["default", "selector1"], "{}", r.ctx());
    assert_eq!(d["detail"]["wildcard"], false);
    assert!(
        d["detail"]["tried"].as_u64().unwrap_or(0) >= 40,
        "{}",
        r.ctx()
    );
    assert_eq!(d["verdict"], "ok");
    // selector1 is Microsoft 365's, reached through a CNAME.
    let s1 = result(&r, "selector1._domainkey.dkim.test");
    assert_eq!(s1["detail"]["cname"], "rsa2048._domainkey.dkim.test");
    assert!(
        s1["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Microsoft 365")
    );
    lacks_finding(&r, "dkim.selector.wildcard");
}

#[test]
fn dkim_discover_wildcard_and_nothing() {
    let r = run(&["dkim", "wild.dkim.test", "--discover"]);
    let d = result(&r, "wild.dkim.test selectors");
    assert_eq!(d["verdict"], "wildcard", "{}", r.ctx());
    assert_eq!(d["detail"]["wildcard"], true);
    has_finding(&r, "dkim.selector.wildcard", "made-up selector");
    assert_eq!(summary_verdict(&r, "dkim"), "wildcard");

    let r = run(&["dkim", "nosuch.dkim.test", "--discover"]);
    let d = result(&r, "nosuch.dkim.test selectors");
    assert_eq!(d["verdict"], "not-found", "{}", r.ctx());
    has_finding(&r, "dkim.selector.none-found", "nosuch.dkim.test");
}

#[test]
fn dkim_discover_from_message_signatures() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `unknowntag` is not a common selector; only the message names it.
    let signed = sign(
        &message("alice@dkim.test", "hello", "Hi.\r\n"),
        &Sign::rsa("dkim.test", "unknowntag"),
    );
    let f = eml(&dir, "sel.eml", &signed);
    let r = run(&["dkim", "dkim.test", "--discover", "--message", path(&f)]);
    let d = result(&r, "dkim.test selectors");
    let found: Vec<&str> = d["detail"]["found"]
        .as_array()
        .expect("found")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(found.contains(&"unknowntag"), "{}", r.ctx());
    // Without --discover, only the message's selector is looked up.
    let r = run(&["dkim", "dkim.test", "--message", path(&f)]);
    assert_eq!(results(&r).len(), 1, "{}", r.ctx());
    assert_eq!(
        result(&r, "unknowntag._domainkey.dkim.test")["verdict"],
        "ok"
    );
}

// ------------------------------------------------------------------------------ dkim verify

#[test]
fn dkim_verify_good_rsa_and_ed25519() {
    let dir = tempfile::tempdir().expect("tempdir");
    let msg = message("alice@dkim.test", "good", "Hello.\r\n");
    let f = eml(
        &dir,
        "rsa.eml",
        &sign(&msg, &Sign::rsa("dkim.test", "rsa2048")),
    );
    let r = verify(&f);
    r.expect_code(0);
    let s = signature(&r);
    assert_eq!(s["verdict"], "pass", "{}", r.ctx());
    assert_eq!(s["detail"]["d"], "dkim.test");
    assert_eq!(s["detail"]["s"], "rsa2048");
    assert_eq!(s["detail"]["a"], "rsa-sha256");
    assert_eq!(s["detail"]["c"], "relaxed/relaxed");
    assert!(!s["detail"]["bh"].as_str().unwrap_or_default().is_empty());
    let h: Vec<&str> = s["detail"]["h"]
        .as_array()
        .expect("h")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        h.iter().filter(|x| x.eq_ignore_ascii_case("from")).count(),
        2,
        "{}",
        r.ctx()
    );
    assert!(
        h.iter().any(|x| x.eq_ignore_ascii_case("subject")),
        "{}",
        r.ctx()
    );
    assert_eq!(summary_verdict(&r, "dkim"), "pass");
    // From is over-signed by our signer: no info finding.
    lacks_finding(&r, "dkim.signature.from-not-oversigned");

    let mut o = Sign::rsa("dkim.test", "ed25519");
    o.ed25519 = true;
    let f = eml(&dir, "ed.eml", &sign(&msg, &o));
    let r = verify(&f);
    let s = signature(&r);
    assert_eq!(s["verdict"], "pass", "{}", r.ctx());
    assert_eq!(s["detail"]["a"], "ed25519-sha256");
    assert_eq!(s["detail"]["key"]["key_type"], "ed25519");
}

#[test]
fn dkim_verify_modified_body_is_body_hash_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = Sign::rsa("dkim.test", "rsa2048");
    o.simple = true;
    let signed = sign(
        &message("alice@dkim.test", "body", "Original text.\r\n"),
        &o,
    );
    // A list server adds a footer.
    let tampered = format!("{signed}--\r\nSent via the list\r\n");
    let f = eml(&dir, "body.eml", &tampered);
    let r = verify(&f);
    let s = signature(&r);
    assert_eq!(s["verdict"], "fail", "{}", r.ctx());
    let text = s["text"].as_str().unwrap_or_default();
    assert!(text.contains("body hash mismatch"), "{}", r.ctx());
    assert!(text.contains("simple canonicalization"), "{}", r.ctx());
    assert!(text.contains("no l="), "{}", r.ctx());
    has_finding(
        &r,
        "dkim.signature.body-hash-mismatch",
        "d=dkim.test s=rsa2048",
    );
    lacks_finding(&r, "dkim.signature.mismatch");
    assert_eq!(summary_verdict(&r, "dkim"), "fail");
}

#[test]
fn dkim_verify_modified_subject_is_signature_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let signed = sign(
        &message("alice@dkim.test", "Quarterly report", "Numbers.\r\n"),
        &Sign::rsa("dkim.test", "rsa2048"),
    );
    let tampered = signed.replacen(
        "Subject: Quarterly report",
        "Subject: [EXTERNAL] Quarterly report",
        1,
    );
    assert_ne!(signed, tampered);
    let f = eml(&dir, "subject.eml", &tampered);
    let r = verify(&f);
    let s = signature(&r);
    assert_eq!(s["verdict"], "fail", "{}", r.ctx());
    assert!(
        s["text"]
            .as_str()
            .unwrap_or_default()
            .contains("signature mismatch"),
        "{}",
        r.ctx()
    );
    has_finding(&r, "dkim.signature.mismatch", "d=dkim.test s=rsa2048");
    lacks_finding(&r, "dkim.signature.body-hash-mismatch");
}

#[test]
fn dkim_verify_key_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let msg = message("alice@dkim.test", "keys", "Body.\r\n");
    // No key at the selector.
    let f = eml(
        &dir,
        "nokey.eml",
        &sign(&msg, &Sign::rsa("dkim.test", "nosuch")),
    );
    let r = verify(&f);
    let s = signature(&r);
    assert_eq!(s["verdict"], "permerror", "{}", r.ctx());
    assert!(
        s["text"]
            .as_str()
            .unwrap_or_default()
            .contains("key not found"),
        "{}",
        r.ctx()
    );
    has_finding(&r, "dkim.key.not-found", "nosuch._domainkey.dkim.test");
    // Revoked key.
    let f = eml(
        &dir,
        "revoked.eml",
        &sign(&msg, &Sign::rsa("dkim.test", "revoked")),
    );
    let r = verify(&f);
    assert_eq!(signature(&r)["verdict"], "permerror", "{}", r.ctx());
    has_finding(&r, "dkim.key.revoked", "revoked._domainkey");
    // Ed25519 signature against an RSA key.
    let mut o = Sign::rsa("dkim.test", "rsa2048");
    o.ed25519 = true;
    let f = eml(&dir, "alg.eml", &sign(&msg, &o));
    let r = verify(&f);
    assert_eq!(signature(&r)["verdict"], "fail", "{}", r.ctx());
    has_finding(&r, "dkim.signature.algorithm-mismatch", "a=ed25519-sha256");
    // A key that allows only SHA-1 cannot verify an rsa-sha256 signature (RFC 6376 §3.6.1 h=).
    let f = eml(
        &dir,
        "sha1only.eml",
        &sign(&msg, &Sign::rsa("dkim.test", "sha1only")),
    );
    let r = verify(&f);
    let s = signature(&r);
    assert_eq!(s["verdict"], "fail", "{}", r.ctx());
    assert!(
        s["text"].as_str().unwrap_or_default().contains("h=sha1"),
        "{}",
        r.ctx()
    );
    has_finding(&r, "dkim.key.sha1-only", "sha1only._domainkey");
    // A key in testing mode still verifies, with the warning.
    let f = eml(
        &dir,
        "testing.eml",
        &sign(&msg, &Sign::rsa("dkim.test", "testing")),
    );
    let r = verify(&f);
    assert_eq!(signature(&r)["verdict"], "pass", "{}", r.ctx());
    has_finding(&r, "dkim.key.testing", "testing._domainkey");
}

#[test]
fn dkim_verify_body_length_and_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let msg = message("alice@dkim.test", "l=", "Signed part.\r\n");
    let mut o = Sign::rsa("dkim.test", "rsa2048");
    o.body_length = true;
    // Appended content still verifies under l=: exactly the risk the finding names.
    let appended = format!("{}Appended by anyone.\r\n", sign(&msg, &o));
    let f = eml(&dir, "l.eml", &appended);
    let r = verify(&f);
    let s = signature(&r);
    assert_eq!(s["verdict"], "pass", "{}", r.ctx());
    assert!(s["detail"]["l"].as_u64().is_some(), "{}", r.ctx());
    has_finding(&r, "dkim.signature.body-length", "d=dkim.test s=rsa2048");

    let mut o = Sign::rsa("dkim.test", "rsa2048");
    o.expire_in = 1;
    let f = eml(&dir, "x.eml", &sign(&msg, &o));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = verify(&f);
    let s = signature(&r);
    assert_eq!(s["verdict"], "fail", "{}", r.ctx());
    assert!(
        s["text"].as_str().unwrap_or_default().contains("expired"),
        "{}",
        r.ctx()
    );
    has_finding(&r, "dkim.signature.expired", "d=dkim.test");
}

#[test]
fn dkim_verify_unsigned_and_not_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = eml(
        &dir,
        "plain.eml",
        &message("alice@dkim.test", "plain", "x\r\n"),
    );
    let r = verify(&f);
    assert_eq!(summary_verdict(&r, "dkim"), "none", "{}", r.ctx());
    has_finding(&r, "dkim.message.unsigned", "no DKIM-Signature");
    // An unreadable file is a usage-level error, exit 1.
    let dns = resolver();
    let r = mailscope(&[
        "--no-config",
        "dkim",
        "verify",
        "/nonexistent/x.eml",
        "--resolver",
        &dns,
    ]);
    r.expect_code(1);
    assert!(r.stderr.contains("/nonexistent/x.eml"), "{}", r.ctx());
}

/// OpenDKIM's own signer, so mailscope is proven against another implementation.
/// `opendkim-testmsg` always signs rsa-sha1 with relaxed/simple; `-C` gives CRLF line ends
/// (without it, OpenDKIM 2.11's testmsg garbles folded b= values).
#[test]
fn dkim_verify_message_signed_by_opendkim() {
    let tool = "/usr/sbin/opendkim-testmsg";
    assert!(
        Path::new(tool).is_file(),
        "{tool} is missing: run `bash scripts/peers install` (it installs opendkim-tools)"
    );
    let msg = message(
        "alice@dkim.test",
        "OpenDKIM interop",
        "Signed by OpenDKIM.\r\n",
    );
    let mut child = Command::new(tool)
        .args(["-C", "-d", "dkim.test", "-s", "opendkim", "-k"])
        .arg(format!("{KEYS}/opendkim.private"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {tool} ({e}); `bash scripts/peers install`"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(msg.as_bytes())
        .expect("write to opendkim-testmsg");
    let out = child.wait_with_output().expect("opendkim-testmsg");
    assert!(
        out.status.success(),
        "opendkim-testmsg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = String::from_utf8(out.stdout).expect("utf-8");
    assert!(signed.starts_with("DKIM-Signature:"), "{signed}");
    let dir = tempfile::tempdir().expect("tempdir");
    let f = eml(&dir, "opendkim.eml", &signed);
    let r = verify(&f);
    let s = signature(&r);
    assert_eq!(s["verdict"], "pass", "{}", r.ctx());
    assert_eq!(s["detail"]["s"], "opendkim");
    assert_eq!(s["detail"]["c"], "relaxed/simple");
    assert_eq!(s["detail"]["a"], "rsa-sha1");
    has_finding(&r, "dkim.signature.sha1", "s=opendkim");
    // OpenDKIM signs From once: not over-signed.
    has_finding(&r, "dkim.signature.from-not-oversigned", "s=opendkim");
    // And a change in the body breaks OpenDKIM's signature the same way.
    let f = eml(
        &dir,
        "opendkim-body.eml",
        &signed.replace("Signed by OpenDKIM.", "Signed by someone."),
    );
    let r = verify(&f);
    assert_eq!(signature(&r)["verdict"], "fail", "{}", r.ctx());
    has_finding(&r, "dkim.signature.body-hash-mismatch", "s=opendkim");
}

// ------------------------------------------------------------------------------ DMARC records

fn dmarc(domain: &str) -> Run {
    let r = run(&["dmarc", domain]);
    r.expect_code(0);
    r
}

#[test]
fn dmarc_reject_none_pct_sp() {
    let r = dmarc("reject.dmarc.test");
    let d = result(&r, "_dmarc.reject.dmarc.test");
    assert_eq!(d["verdict"], "enforce", "{}", r.ctx());
    assert_eq!(d["detail"]["parsed"]["p"], "reject");
    assert_eq!(d["detail"]["applied_at"], "reject.dmarc.test");
    assert!(r.of_type("finding").is_empty(), "{}", r.ctx());

    let r = dmarc("none.dmarc.test");
    assert_eq!(
        result(&r, "_dmarc.none.dmarc.test")["verdict"],
        "monitoring"
    );
    has_finding(&r, "dmarc.policy.none", "_dmarc.none.dmarc.test");

    let r = dmarc("pct.dmarc.test");
    let d = result(&r, "_dmarc.pct.dmarc.test");
    assert_eq!(d["verdict"], "partial", "{}", r.ctx());
    assert_eq!(d["detail"]["parsed"]["pct"], 50);
    has_finding(&r, "dmarc.policy.pct", "pct=50");

    let r = dmarc("sp.dmarc.test");
    assert_eq!(
        result(&r, "_dmarc.sp.dmarc.test")["detail"]["parsed"]["sp"],
        "none"
    );
    has_finding(&r, "dmarc.policy.subdomain-weaker", "sp=none");
}

#[test]
fn dmarc_subdomain_inherits_org_record() {
    let r = dmarc("sub.reject.dmarc.test");
    let d = result(&r, "_dmarc.sub.reject.dmarc.test");
    assert_eq!(
        d["detail"]["applied_at"],
        "reject.dmarc.test",
        "{}",
        r.ctx()
    );
    assert_eq!(d["detail"]["org_domain"], "reject.dmarc.test");
    assert_eq!(d["detail"]["walk"][0]["outcome"], "nxdomain");
    assert!(
        d["text"]
            .as_str()
            .unwrap_or_default()
            .contains("organisational domain reject.dmarc.test applies"),
        "{}",
        r.ctx()
    );
    assert_eq!(d["verdict"], "enforce");
    // No record anywhere but the public suffix's psd=y record.
    let r = dmarc("nodmarc.dmarc.test");
    let d = result(&r, "_dmarc.nodmarc.dmarc.test");
    assert_eq!(d["detail"]["applied_at"], "dmarc.test", "{}", r.ctx());
    has_finding(&r, "dmarc.record.missing", "_dmarc.nodmarc.dmarc.test");
}

#[test]
fn dmarc_multiple_bad_syntax_missing_p() {
    let r = dmarc("multi.dmarc.test");
    assert_eq!(result(&r, "_dmarc.multi.dmarc.test")["verdict"], "invalid");
    has_finding(&r, "dmarc.record.multiple", "2 records");

    let r = dmarc("bad.dmarc.test");
    assert_eq!(result(&r, "_dmarc.bad.dmarc.test")["verdict"], "invalid");
    has_finding(&r, "dmarc.record.syntax", "p=rejct");
    has_finding(&r, "dmarc.record.syntax", "adkim=x");
    has_finding(&r, "dmarc.record.syntax", "pct=150");
    has_finding(&r, "dmarc.report.uri-syntax", "not a mailto: URI");

    let r = dmarc("nop.dmarc.test");
    has_finding(&r, "dmarc.record.missing-p", "_dmarc.nop.dmarc.test");
}

#[test]
fn dmarc_external_report_destinations() {
    let r = dmarc("extok.dmarc.test");
    let d = result(&r, "report destination reports.dmarc.test");
    assert_eq!(d["verdict"], "authorised", "{}", r.ctx());
    assert_eq!(
        d["detail"]["query"],
        "extok.dmarc.test._report._dmarc.reports.dmarc.test"
    );
    lacks_finding(&r, "dmarc.report.external-unauthorized");

    let r = dmarc("extbad.dmarc.test");
    let d = result(&r, "report destination reports.dmarc.test");
    assert_eq!(d["verdict"], "unauthorised", "{}", r.ctx());
    has_finding(
        &r,
        "dmarc.report.external-unauthorized",
        "agg@reports.dmarc.test",
    );
    // The size limit is parsed, and the internal address needs no authorisation.
    let rec = result(&r, "_dmarc.extbad.dmarc.test");
    assert_eq!(
        rec["detail"]["parsed"]["rua"][0]["size"],
        "10m",
        "{}",
        r.ctx()
    );
    assert_eq!(
        results(&r)
            .iter()
            .filter(|e| e["subject"]
                .as_str()
                .unwrap_or_default()
                .starts_with("report destination"))
            .count(),
        1
    );
}

// ------------------------------------------------------------------------------ DMARC messages

fn aligned_message() -> String {
    sign(
        &message("alice@aligned.dmarc.test", "DMARC", "Aligned.\r\n"),
        &Sign::rsa("aligned.dmarc.test", "sel"),
    )
}

fn dmarc_message(file: &Path, ip: &str, mail_from: &str) -> Run {
    let r = run(&[
        "dmarc",
        "--message",
        path(file),
        "--ip",
        ip,
        "--mail-from",
        mail_from,
        "--helo",
        "mta.example.test",
    ]);
    r.expect_code(0);
    r
}

#[test]
fn dmarc_message_aligned_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = eml(&dir, "aligned.eml", &aligned_message());
    let r = dmarc_message(&f, "192.0.2.10", "bounce@aligned.dmarc.test");
    let d = result(&r, "From: aligned.dmarc.test");
    assert_eq!(d["verdict"], "pass", "{}", r.ctx());
    assert_eq!(d["detail"]["dkim"][0]["result"], "pass");
    assert_eq!(d["detail"]["dkim"][0]["aligned"], true);
    assert_eq!(d["detail"]["spf"]["result"], "pass");
    assert_eq!(d["detail"]["spf"]["aligned"], true);
    assert_eq!(d["detail"]["policy"], "reject");
    lacks_finding(&r, "dmarc.result.fail");
    assert_eq!(summary_verdict(&r, "dmarc"), "pass");
}

#[test]
fn dmarc_message_dkim_aligned_spf_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = eml(&dir, "esp.eml", &aligned_message());
    let r = dmarc_message(&f, "192.0.2.20", "bounce@bounce.esp.dmarc.test");
    let d = result(&r, "From: aligned.dmarc.test");
    assert_eq!(d["verdict"], "pass", "{}", r.ctx());
    assert_eq!(d["detail"]["spf"]["domain"], "bounce.esp.dmarc.test");
    assert_eq!(d["detail"]["spf"]["result"], "pass");
    assert_eq!(d["detail"]["spf"]["aligned"], false);
    assert!(
        d["text"].as_str().unwrap_or_default().contains(
            "SPF passed for bounce.esp.dmarc.test but that is not aligned with From: aligned.dmarc.test"
        ),
        "{}",
        r.ctx()
    );
    has_finding(
        &r,
        "dmarc.alignment.spf-not-aligned",
        "bounce.esp.dmarc.test",
    );
}

#[test]
fn dmarc_message_both_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tampered = aligned_message().replace("Aligned.", "Changed.");
    let f = eml(&dir, "fail.eml", &tampered);
    let r = dmarc_message(&f, "192.0.2.99", "bounce@aligned.dmarc.test");
    let d = result(&r, "From: aligned.dmarc.test");
    assert_eq!(d["verdict"], "fail", "{}", r.ctx());
    assert_eq!(d["detail"]["dkim"][0]["result"], "fail");
    assert_eq!(d["detail"]["spf"]["result"], "fail");
    assert_eq!(d["detail"]["policy"], "reject");
    assert!(
        d["text"].as_str().unwrap_or_default().contains("p=reject"),
        "{}",
        r.ctx()
    );
    has_finding(&r, "dmarc.result.fail", "aligned.dmarc.test");
    // Without --ip SPF is not evaluated and says so.
    let r = run(&["dmarc", "--message", path(&f)]);
    let d = result(&r, "From: aligned.dmarc.test");
    assert_eq!(d["detail"]["spf"], Value::Null, "{}", r.ctx());
    assert!(
        d["text"]
            .as_str()
            .unwrap_or_default()
            .contains("SPF: not evaluated")
    );
}
