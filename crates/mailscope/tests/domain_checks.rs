//! The domain checks of `mailscope check` at the library level (mailscope-mailauth's `mx`,
//! `mtasts`, `tlsrpt`, `bimi`): against NSD on $PEER_DNS serving testdata/dns/mxcheck.test,
//! mta.test and 100.51.198.in-addr.arpa, and, for MTA-STS, a real HTTPS server
//! (`openssl s_server`) started by each test on its own port with a certificate from a CA
//! the test generates.
//!
//! `openssl s_server -WWW` serves a file as `200 ok` with `Content-type: text/plain`, and
//! answers a missing file with `200 ok` and an error text (so that case is a malformed
//! policy, not a 404); `-HTTP` sends the file as the whole response, status line and
//! headers included, which gives the 404, redirect, wrong content type and chunked cases
//! from a real TLS server.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mailscope_mailauth::dns::Dns;
use mailscope_mailauth::mtasts::{self, MtaStsOptions, MtaStsReport};
use mailscope_mailauth::mx::{self, Fcrdns, Routing, Scope};
use mailscope_mailauth::{bimi, tlsrpt};
use mailscope_proto::Severity;

fn dns() -> Arc<Dns> {
    let addr = common::peer_addr("PEER_DNS");
    let timeout = Duration::from_secs(3);
    let resolver = mailscope_net::build_resolver(Some(&addr.to_string()), timeout)
        .unwrap_or_else(|e| panic!("resolver for {addr}: {e}; {}", common::START_HINT));
    Arc::new(Dns::new(resolver, Some(addr), timeout))
}

fn ids(findings: &[mailscope_proto::Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.kind.id).collect()
}

// ------------------------------------------------------------------------------ MX

#[tokio::test]
async fn mx_with_confirmed_reverse_dns() {
    let r = mx::check(&dns(), "good.mxcheck.test").await;
    assert_eq!(r.routing, Routing::Explicit);
    assert_eq!(r.hosts.len(), 1);
    let h = &r.hosts[0];
    assert_eq!(
        (h.preference, h.name.as_str()),
        (10, "mail.good.mxcheck.test")
    );
    assert_eq!(h.addresses.len(), 1);
    let a = &h.addresses[0];
    assert_eq!(a.ip.to_string(), "198.51.100.1");
    assert_eq!(a.scope, Scope::Reserved("documentation"));
    assert_eq!(
        a.fcrdns,
        Fcrdns::Confirmed {
            name: "mail.good.mxcheck.test".into()
        }
    );
    // The only finding is the documentation-range address (unreachable for a real
    // domain), and it does not make the routing itself an error.
    assert_eq!(ids(&r.findings), vec!["mx.address.non-public"]);
    assert_eq!(r.findings[0].severity, Severity::Error);
    assert_eq!(r.verdict(), "warning");
    assert_eq!(
        r.host_addresses(),
        vec![("mail.good.mxcheck.test".to_owned(), vec![a.ip])]
    );
}

#[tokio::test]
async fn mx_ptr_mismatch_and_missing_ptr() {
    let d = dns();
    let r = mx::check(&d, "mismatch.mxcheck.test").await;
    let a = &r.hosts[0].addresses[0];
    assert_eq!(a.ptr, vec!["elsewhere.mxcheck.test"]);
    match &a.fcrdns {
        Fcrdns::Mismatch { names } => {
            assert_eq!(names.len(), 1);
            assert_eq!(names[0].0, "elsewhere.mxcheck.test");
            assert_eq!(
                names[0].1,
                vec!["198.51.100.3".parse::<std::net::IpAddr>().expect("ip")]
            );
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    let f = r
        .findings
        .iter()
        .find(|f| f.kind.id == "fcrdns.mismatch")
        .expect("fcrdns.mismatch finding");
    assert!(f.detail.contains("198.51.100.3"), "{}", f.detail);

    let r = mx::check(&d, "noptr.mxcheck.test").await;
    assert_eq!(r.hosts[0].addresses[0].fcrdns, Fcrdns::NoPtr);
    assert!(ids(&r.findings).contains(&"fcrdns.no-ptr"));
}

#[tokio::test]
async fn mx_cname_null_implicit_and_broken_hosts() {
    let d = dns();
    let r = mx::check(&d, "cname.mxcheck.test").await;
    assert_eq!(r.hosts[0].cname.as_deref(), Some("mail.good.mxcheck.test"));
    // The alias still leads to an address, which is then checked as usual.
    assert_eq!(r.hosts[0].addresses[0].ip.to_string(), "198.51.100.1");
    assert!(ids(&r.findings).contains(&"mx.cname"));

    let r = mx::check(&d, "null.mxcheck.test").await;
    assert_eq!(r.routing, Routing::NullMx);
    assert!(r.hosts.is_empty());
    assert_eq!(ids(&r.findings), vec!["mx.null"]);
    assert_eq!(r.verdict(), "null-mx");

    let r = mx::check(&d, "nullmixed.mxcheck.test").await;
    assert_eq!(r.hosts.len(), 1);
    assert!(ids(&r.findings).contains(&"mx.null-mixed"));
    assert_eq!(r.verdict(), "error");

    let r = mx::check(&d, "implicit.mxcheck.test").await;
    assert_eq!(r.routing, Routing::Implicit);
    assert_eq!(r.hosts[0].name, "implicit.mxcheck.test");
    assert_eq!(r.hosts[0].addresses[0].ip.to_string(), "198.51.100.1");
    assert!(ids(&r.findings).contains(&"mx.implicit"));

    let r = mx::check(&d, "nowhere.mxcheck.test").await;
    assert_eq!(r.routing, Routing::Nowhere { nxdomain: false });
    assert_eq!(ids(&r.findings), vec!["mx.none"]);
    assert_eq!(r.verdict(), "missing");

    let r = mx::check(&d, "nosuchdomain.mxcheck.test").await;
    assert_eq!(r.routing, Routing::Nowhere { nxdomain: true });
    assert_eq!(r.verdict(), "missing");

    let r = mx::check(&d, "noaddr.mxcheck.test").await;
    assert_eq!(r.hosts[0].a_outcome, "nxdomain");
    assert_eq!(ids(&r.findings), vec!["mx.host.no-address"]);
    assert_eq!(r.verdict(), "error");

    let r = mx::check(&d, "iplit.mxcheck.test").await;
    assert!(r.hosts[0].ip_literal);
    assert_eq!(ids(&r.findings), vec!["mx.ip-literal"]);
    assert_eq!(r.verdict(), "error");
}

#[tokio::test]
async fn mx_equal_preferences_are_all_checked() {
    let r = mx::check(&dns(), "multi.mxcheck.test").await;
    let names: Vec<(u16, &str)> = r
        .hosts
        .iter()
        .map(|h| (h.preference, h.name.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            (10, "mail.good.mxcheck.test"),
            (10, "mail.noptr.mxcheck.test")
        ]
    );
    assert_eq!(r.hosts[0].addresses[0].fcrdns.name(), "confirmed");
    assert_eq!(r.hosts[1].addresses[0].fcrdns.name(), "no-ptr");
}

// ------------------------------------------------------------------------------ MTA-STS

/// Certificates for the policy hosts: one CA with a leaf for every mta-sts.* name of
/// mta.test, and a second CA (also trusted) with a leaf for another name.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = mailscope_net::certgen::generate_server_tls(&[
            "mta-sts.mta.test".into(),
            "mta-sts.orphan.mta.test".into(),
            "mta-sts.multi.mta.test".into(),
        ])
        .expect("certificate");
        let wrong = mailscope_net::certgen::generate_server_tls(&["www.mta.test".into()])
            .expect("certificate");
        for (name, text) in [
            ("ca.pem", &good.ca_pem),
            ("good.pem", &good.chain_pem),
            ("good.key", &good.key_pem),
            ("wrong-ca.pem", &wrong.ca_pem),
            ("wrong.pem", &wrong.chain_pem),
            ("wrong.key", &wrong.key_pem),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write pem");
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn options(&self, port: u16) -> MtaStsOptions {
        MtaStsOptions {
            port,
            ca_files: vec![self.path("ca.pem"), self.path("wrong-ca.pem")],
            timeout: Duration::from_secs(10),
        }
    }
}

/// An `openssl s_server` serving one file as /.well-known/mta-sts.txt.
struct PolicyServer {
    child: Child,
    port: u16,
    _root: tempfile::TempDir,
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mode` is `-WWW` (the file is the body) or `-HTTP` (the file is the whole response);
/// `file` None serves nothing.
fn serve(pki: &Pki, mode: &str, file: Option<&[u8]>, cert: &str) -> PolicyServer {
    let openssl = common::find_tool(
        "openssl",
        "install the openssl package (scripts/peers installs the test tools)",
    );
    let root = tempfile::tempdir().expect("tempdir");
    if let Some(content) = file {
        std::fs::create_dir_all(root.path().join(".well-known")).expect("mkdir");
        std::fs::write(root.path().join(".well-known/mta-sts.txt"), content).expect("write");
    }
    for _attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new(&openssl)
            .args(["s_server", mode, "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(pki.path(&format!("{cert}.pem")))
            .arg("-key")
            .arg(pki.path(&format!("{cert}.key")))
            .current_dir(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start openssl s_server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("ACCEPT") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_ok() {
            return PolicyServer {
                child,
                port,
                _root: root,
            };
        }
        // Lost the port to someone else, or openssl failed: say why if it exited.
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        eprintln!(
            "openssl s_server on port {port} did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    panic!("openssl s_server did not start after 5 attempts");
}

async fn mta(domain: &str, opts: &MtaStsOptions) -> MtaStsReport {
    let d = dns();
    let hosts: Vec<String> = mx::check(&d, domain)
        .await
        .host_addresses()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    mtasts::check(&d, domain, &hosts, opts)
        .await
        .expect("the check runs")
}

const GOOD_POLICY: &[u8] =
    b"version: STSv1\nmode: enforce\nmx: mx1.mta.test\nmx: *.mta.test\nmax_age: 604800\n";

#[tokio::test]
async fn mta_sts_enforce_policy_matching_every_mx() {
    let pki = Pki::new();
    let srv = serve(&pki, "-WWW", Some(GOOD_POLICY), "good");
    let r = mta("mta.test", &pki.options(srv.port)).await;
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.verdict(), "enforce");
    assert_eq!(r.record.id.as_deref(), Some("20261123T000000"));
    let f = r.fetch.as_ref().expect("fetched");
    assert_eq!(f.status, Some(200));
    assert_eq!(f.certificate_valid, Some(true), "{:?}", f.certificate_error);
    assert_eq!(f.content_type.as_deref(), Some("text/plain"));
    let p = r.policy.as_ref().expect("policy");
    assert_eq!(p.max_age, Some(604_800));
    let m: Vec<(&str, Option<&str>)> = r
        .matches
        .iter()
        .map(|m| (m.host.as_str(), m.pattern.as_deref()))
        .collect();
    assert_eq!(
        m,
        vec![
            ("mx1.mta.test", Some("mx1.mta.test")),
            ("mx2.mta.test", Some("*.mta.test"))
        ]
    );
}

#[tokio::test]
async fn mta_sts_enforce_policy_missing_an_mx_is_an_error() {
    let pki = Pki::new();
    let srv = serve(
        &pki,
        "-WWW",
        Some(b"version: STSv1\r\nmode: enforce\r\nmx: mx1.mta.test\r\nmax_age: 604800\r\n"),
        "good",
    );
    let r = mta("mta.test", &pki.options(srv.port)).await;
    assert_eq!(ids(&r.findings), vec!["mta-sts.policy.mx-mismatch"]);
    assert_eq!(r.findings[0].severity, Severity::Error);
    assert!(r.findings[0].detail.contains("mx2.mta.test"));
    assert_eq!(r.verdict(), "error");
}

#[tokio::test]
async fn mta_sts_testing_mode_and_short_max_age_are_warnings() {
    let pki = Pki::new();
    let srv = serve(
        &pki,
        "-WWW",
        Some(b"version: STSv1\nmode: testing\nmx: mx1.mta.test\nmax_age: 3600\n"),
        "good",
    );
    let r = mta("mta.test", &pki.options(srv.port)).await;
    let mut got = ids(&r.findings);
    got.sort();
    assert_eq!(
        got,
        vec![
            "mta-sts.policy.max-age-short",
            "mta-sts.policy.mx-mismatch",
            "mta-sts.policy.testing"
        ]
    );
    let mismatch = r
        .findings
        .iter()
        .find(|f| f.kind.id == "mta-sts.policy.mx-mismatch")
        .expect("mismatch");
    assert_eq!(mismatch.severity, Severity::Warning);
    assert_eq!(r.verdict(), "warning");
}

#[tokio::test]
async fn mta_sts_max_age_out_of_range_invalidates_the_policy() {
    let pki = Pki::new();
    let srv = serve(
        &pki,
        "-WWW",
        Some(b"version: STSv1\nmode: enforce\nmx: *.mta.test\nmax_age: 31557601\n"),
        "good",
    );
    let r = mta("mta.test", &pki.options(srv.port)).await;
    assert_eq!(ids(&r.findings), vec!["mta-sts.policy.max-age-invalid"]);
    assert!(r.matches.is_empty());
    assert_eq!(r.verdict(), "error");
}

#[tokio::test]
async fn mta_sts_missing_policy_file() {
    let pki = Pki::new();
    // A real 404 from the server.
    let srv = serve(
        &pki,
        "-HTTP",
        Some(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\nnot found"),
        "good",
    );
    let r = mta("mta.test", &pki.options(srv.port)).await;
    assert_eq!(ids(&r.findings), vec!["mta-sts.policy.http-status"]);
    assert!(r.findings[0].detail.contains("404"));
    assert!(r.policy.is_none());
    assert_eq!(r.verdict(), "error");

    // openssl's -WWW answers a missing file with 200 and an error text: a broken policy.
    let srv = serve(&pki, "-WWW", None, "good");
    let r = mta("mta.test", &pki.options(srv.port)).await;
    assert!(
        ids(&r.findings).contains(&"mta-sts.policy.syntax"),
        "{:?}",
        r.findings
    );
    assert_eq!(r.verdict(), "error");
}

#[tokio::test]
async fn mta_sts_redirect_is_not_followed() {
    let pki = Pki::new();
    let srv = serve(
        &pki,
        "-HTTP",
        Some(b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://www.mta.test/mta-sts.txt\r\nContent-Length: 0\r\n\r\n"),
        "good",
    );
    let r = mta("mta.test", &pki.options(srv.port)).await;
    assert_eq!(ids(&r.findings), vec!["mta-sts.policy.http-status"]);
    assert!(
        r.findings[0]
            .detail
            .contains("redirect to https://www.mta.test/mta-sts.txt"),
        "{}",
        r.findings[0].detail
    );
}

#[tokio::test]
async fn mta_sts_content_type_and_chunked_body() {
    let pki = Pki::new();
    let srv = serve(
        &pki,
        "-HTTP",
        Some(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\nversion: STSv1\nmode: enforce\n\r\n1f\r\nmx: *.mta.test\nmax_age: 1209600\r\n0\r\n\r\n"),
        "good",
    );
    let r = mta("mta.test", &pki.options(srv.port)).await;
    // The chunked body was put back together: the policy itself is fine.
    let p = r
        .policy
        .as_ref()
        .unwrap_or_else(|| panic!("no policy: {:?}", r.fetch));
    assert!(p.is_valid(), "{:?}", p.errors);
    assert_eq!(p.mx, vec!["*.mta.test"]);
    assert_eq!(p.max_age, Some(1_209_600));
    assert_eq!(ids(&r.findings), vec!["mta-sts.policy.content-type"]);
    assert!(r.findings[0].detail.contains("text/html"));
}

#[tokio::test]
async fn mta_sts_certificate_for_another_name() {
    let pki = Pki::new();
    let srv = serve(&pki, "-WWW", Some(GOOD_POLICY), "wrong");
    let r = mta("mta.test", &pki.options(srv.port)).await;
    assert_eq!(ids(&r.findings), vec!["mta-sts.policy.certificate"]);
    let f = r.fetch.as_ref().expect("fetched");
    assert_eq!(f.certificate_valid, Some(false));
    assert!(
        f.certificate_error
            .as_deref()
            .is_some_and(|e| e.contains("mta-sts.mta.test") && e.contains("www.mta.test")),
        "{:?}",
        f.certificate_error
    );
    // The policy is still read and shown, even though senders would refuse it.
    assert!(r.policy.as_ref().is_some_and(|p| p.is_valid()));
    assert_eq!(r.verdict(), "error");

    // Without the extra CA the issuer is unknown.
    let opts = MtaStsOptions {
        ca_files: Vec::new(),
        ..pki.options(srv.port)
    };
    let r = mta("mta.test", &opts).await;
    assert_eq!(ids(&r.findings), vec!["mta-sts.policy.certificate"]);
}

#[tokio::test]
async fn mta_sts_records() {
    let pki = Pki::new();
    // Nothing published: no fetch at all.
    let r = mta("nosts.mta.test", &pki.options(1)).await;
    assert_eq!(r.verdict(), "none");
    assert!(r.fetch.is_none());
    assert_eq!(ids(&r.findings), vec!["mta-sts.none"]);

    let r = mta("badrec.mta.test", &pki.options(1)).await;
    assert!(ids(&r.findings).contains(&"mta-sts.record.invalid"));
    assert_eq!(r.verdict(), "error");

    // The record exists but the policy host has no address.
    let r = mta("nohost.mta.test", &pki.options(1)).await;
    assert_eq!(ids(&r.findings), vec!["mta-sts.policy.unavailable"]);

    // Two records, and a policy host where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let r = mta("multi.mta.test", &pki.options(closed)).await;
    let got = ids(&r.findings);
    assert!(got.contains(&"mta-sts.record.multiple"), "{got:?}");
    assert!(got.contains(&"mta-sts.policy.unavailable"), "{got:?}");
    let f = r.fetch.as_ref().expect("fetch attempted");
    assert!(
        f.error.as_deref().is_some_and(|e| e.contains("refused")),
        "{:?}",
        f.error
    );
}

#[tokio::test]
async fn mta_sts_policy_without_a_record() {
    let pki = Pki::new();
    let srv = serve(
        &pki,
        "-WWW",
        Some(b"version: STSv1\nmode: enforce\nmx: mx1.mta.test\nmax_age: 604800\n"),
        "good",
    );
    let r = mta("orphan.mta.test", &pki.options(srv.port)).await;
    assert_eq!(ids(&r.findings), vec!["mta-sts.record.missing"]);
    assert_eq!(r.verdict(), "warning");

    // A web server that answers every name (wildcard DNS) with a 404 under a certificate
    // for another name is not an MTA-STS deployment: no noise about it.
    let srv = serve(
        &pki,
        "-HTTP",
        Some(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n"),
        "wrong",
    );
    let r = mta("orphan.mta.test", &pki.options(srv.port)).await;
    assert_eq!(ids(&r.findings), vec!["mta-sts.none"]);
    assert_eq!(r.verdict(), "none");
    assert_eq!(r.fetch.as_ref().and_then(|f| f.status), Some(404));
}

// ------------------------------------------------------------------------------ TLS-RPT

#[tokio::test]
async fn tls_rpt_records() {
    let d = dns();
    let r = tlsrpt::check(&d, "mta.test").await;
    assert_eq!(r.verdict(), "ok", "{:?}", r.findings);
    assert_eq!(
        r.rua,
        vec![
            "mailto:tlsrpt@mta.test",
            "https://reports.mta.test/v1/tlsrpt"
        ]
    );

    let r = tlsrpt::check(&d, "badrpt.mta.test").await;
    assert_eq!(
        ids(&r.findings),
        vec!["tls-rpt.rua.invalid", "tls-rpt.record.invalid"]
    );
    assert!(r.findings[0].detail.contains("ftp://"));
    assert_eq!(r.verdict(), "error");

    let r = tlsrpt::check(&d, "multirpt.mta.test").await;
    assert_eq!(ids(&r.findings), vec!["tls-rpt.record.multiple"]);

    let r = tlsrpt::check(&d, "norua.mta.test").await;
    assert_eq!(ids(&r.findings), vec!["tls-rpt.record.invalid"]);

    let r = tlsrpt::check(&d, "nosts.mta.test").await;
    assert_eq!(r.verdict(), "none");
    assert_eq!(ids(&r.findings), vec!["tls-rpt.none"]);
}

// ------------------------------------------------------------------------------ BIMI

#[tokio::test]
async fn bimi_records() {
    let d = dns();
    let r = bimi::check(&d, "mta.test").await;
    assert_eq!(r.verdict(), "ok", "{:?}", r.findings);
    assert_eq!(r.logo.as_deref(), Some("https://mta.test/brand/logo.svg"));
    let dmarc = r.dmarc.as_ref().expect("dmarc");
    assert_eq!(
        (dmarc.policy.as_str(), dmarc.pct, dmarc.enforced),
        ("reject", 100, true)
    );

    let r = bimi::check(&d, "badbimi.mta.test").await;
    assert_eq!(
        ids(&r.findings),
        vec![
            "bimi.url.not-https",
            "bimi.logo.not-svg",
            "bimi.authority.missing",
            "bimi.dmarc.not-enforced"
        ]
    );
    assert_eq!(
        r.dmarc.as_ref().map(|d| d.name.as_str()),
        Some("_dmarc.badbimi.mta.test")
    );
    assert_eq!(r.verdict(), "error");

    let r = bimi::check(&d, "declined.mta.test").await;
    assert_eq!(r.verdict(), "declined");
    assert!(r.dmarc.is_none());

    let r = bimi::check(&d, "junk.mta.test").await;
    assert_eq!(ids(&r.findings), vec!["bimi.record.invalid"]);

    let r = bimi::check(&d, "nosts.mta.test").await;
    assert_eq!(r.verdict(), "none");
}
