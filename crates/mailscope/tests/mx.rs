//! `mailscope smtp` without `--server`: routing by MX (RFC 5321 §5.1) through
//! `--resolver`, against the real authoritative DNS server (NSD) and mail servers that
//! `scripts/peers start` runs on loopback and lists in `.peers/env`.
//!
//! The zones are `testdata/dns/*.zone`: example.test (MX 10 mx1, MX 20 mx2, both
//! 127.0.0.1; nosuch.example.test does not exist), implicit.test (no MX, an address),
//! nullmx.test (`MX 0 .`) and v6.test (its MX host has only `AAAA ::1`). Every MX host
//! points at loopback, so `--port` sends the session to a peer's port.
//!
//! These tests never skip: a missing env file, a missing key or a peer that does not accept
//! connections fails the test with a message saying to run `scripts/peers start`. Every
//! `--json` run's stdout is checked to be nothing but JSON lines valid against
//! `docs/events.schema.json`, starting with `session_started` and ending with
//! `session_ended` carrying the process's exit code.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv6Addr, TcpListener};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `--resolver` for the NSD peer.
fn resolver() -> String {
    peer_addr("PEER_DNS").to_string()
}

/// The Postfix peer's port: every MX host in the test zones is loopback.
fn postfix_port() -> String {
    peer_addr("PEER_POSTFIX").port().to_string()
}

// ------------------------------------------------------------------------------ running

/// `mailscope --no-config smtp --timeout 10 --resolver $PEER_DNS ARGS`: never `--server`.
fn smtp(args: &[&str]) -> Run {
    let dns = resolver();
    let mut all = vec!["--no-config", "smtp", "--timeout", "10", "--resolver", &dns];
    all.extend_from_slice(args);
    assert!(!all.contains(&"--server"), "these tests route by MX");
    mailscope(&all)
}

/// Checks only mx.rs makes.
impl Run {
    /// stderr has a line containing `text`.
    /// The human text has `text` (stderr with `--json`, stdout without).
    fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr
                .lines()
                .chain(self.stdout.lines())
                .any(|l| l.contains(text)),
            "output lacks {text:?}\n{}",
            self.ctx()
        );
        self
    }

    /// The run failed before connecting anywhere.
    fn never_connected(&self) -> &Self {
        assert!(self.of_type("connected").is_empty(), "{}", self.ctx());
        assert!(
            !self.stderr.contains("connecting to"),
            "no address should have been tried\n{}",
            self.ctx()
        );
        self
    }
}

// ------------------------------------------------------------------------------ routing

#[test]
fn mx_lowest_preference_is_used() {
    // example.test: MX 10 mx1, MX 20 mx2 (both 127.0.0.1). Peer: Postfix.
    let port = postfix_port();
    let run = smtp(&[
        "--to",
        "bob@example.test",
        "--port",
        &port,
        "--quit-after",
        "ehlo",
        "--json",
    ]);
    run.expect_code(0).stderr_has(
        "MX for example.test: 10 mx1.example.test, 20 mx2.example.test \
         -> using mx1.example.test (127.0.0.1, preference 10)",
    );
    assert_eq!(
        run.one("connected")["peer"],
        format!("127.0.0.1:{port}"),
        "{}",
        run.ctx()
    );
    assert_eq!(run.one("session_started")["server"], "127.0.0.1");
    assert_eq!(
        run.one("session_ended")["outcome"],
        "stopped",
        "{}",
        run.ctx()
    );
}

#[test]
fn copy_routing_uses_the_implicit_mx() {
    // implicit.test has no MX but an address: the domain itself is the mail host. The
    // recipient's own domain (example.test) is not looked up.
    let port = postfix_port();
    let run = smtp(&[
        "--to",
        "bob@example.test",
        "--copy-routing",
        "implicit.test",
        "--port",
        &port,
        "--quit-after",
        "ehlo",
        "--json",
    ]);
    run.expect_code(0)
        .stderr_has("no MX for implicit.test: using the domain itself (implicit MX, RFC 5321 §5.1) -> 127.0.0.1");
    assert!(
        !run.stderr.contains("MX for example.test"),
        "--copy-routing must replace the recipient's domain\n{}",
        run.ctx()
    );
    assert_eq!(
        run.one("connected")["peer"],
        format!("127.0.0.1:{port}"),
        "{}",
        run.ctx()
    );
}

#[test]
fn null_mx_is_refused() {
    // nullmx.test: MX 0 . (RFC 7505), and an apex address that must not be used as an
    // implicit MX.
    let port = postfix_port();
    for json in [false, true] {
        let mut args = vec!["--to", "x@nullmx.test", "--port", &port];
        if json {
            args.push("--json");
        }
        let run = smtp(&args);
        run.expect_code(1).stderr_has("null MX").never_connected();
        assert!(run.stderr.contains("nullmx.test"), "{}", run.ctx());
    }
}

#[test]
fn nxdomain_is_an_error() {
    // nosuch.example.test has no records at all: NXDOMAIN for the MX query, and no
    // fallback to an address look-up.
    let port = postfix_port();
    let run = smtp(&["--to", "x@nosuch.example.test", "--port", &port, "--json"]);
    run.expect_code(1)
        .stderr_has("nosuch.example.test does not exist (NXDOMAIN)")
        .never_connected();
    assert!(!run.stderr.contains("cannot build"), "{}", run.ctx());
}

/// A minimal SMTP server on [::1]: 220, 250 to EHLO/HELO, 221 to QUIT. Returns its port.
fn ipv6_smtp_server() -> u16 {
    let listener = TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("bind [::1]:0 ({e}): this test needs IPv6 on loopback"));
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let mut out = stream.try_clone().expect("clone stream");
        let _ = out.write_all(b"220 mx.v6.test ESMTP mailscope mx test\r\n");
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 mx.v6.test\r\n",
                "QUIT" => b"221 bye\r\n",
                _ => b"502 not here\r\n",
            };
            let _ = out.write_all(reply);
            if verb == "QUIT" {
                break;
            }
            line.clear();
        }
    });
    port
}

#[test]
fn ipv6_only_mx_host_is_reached_over_ipv6() {
    // v6.test: MX 10 mx.v6.test, which has AAAA ::1 and no A record.
    let port = ipv6_smtp_server().to_string();
    let run = smtp(&[
        "--to",
        "x@v6.test",
        "--port",
        &port,
        "--quit-after",
        "ehlo",
        "--json",
    ]);
    run.expect_code(0)
        .stderr_has("MX for v6.test: 10 mx.v6.test -> using mx.v6.test (::1, preference 10)");
    assert_eq!(
        run.one("connected")["peer"],
        format!("[::1]:{port}"),
        "{}",
        run.ctx()
    );
    assert_eq!(
        run.one("capabilities")["greeting"],
        "mx.v6.test",
        "{}",
        run.ctx()
    );
}

// ------------------------------------------------------------------------------ TLS name

#[test]
fn starttls_verifies_the_mx_name() {
    // The peers' certificate names localhost and 127.0.0.1 only. Routed by MX, the name
    // to verify is the MX host's (RFC 7817 §3), mx1.example.test, not the address.
    let (port, ca) = (postfix_port(), file_var("PEER_CA"));
    let run = smtp(&[
        "--to",
        "bob@example.test",
        "--port",
        &port,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--quit-after",
        "tls",
        "--json",
    ]);
    run.expect_code(29);
    let failed = run.one("tls_failed");
    assert_eq!(
        failed["finding"]["id"],
        "tls.cert.name-mismatch",
        "{}",
        run.ctx()
    );
    let findings: Vec<&Value> = run
        .of_type("finding")
        .into_iter()
        .filter(|f| f["id"] == "tls.cert.name-mismatch")
        .collect();
    assert_eq!(findings.len(), 1, "{}", run.ctx());
    assert!(
        findings[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("\"mx1.example.test\"")),
        "the mismatch must name the MX host\n{}",
        run.ctx()
    );
    assert!(run.of_type("tls_established").is_empty(), "{}", run.ctx());
}

#[test]
fn starttls_with_tls_sni_overrides_the_mx_name() {
    let (port, ca) = (postfix_port(), file_var("PEER_CA"));
    let name = var("PEER_TLS_NAME");
    let run = smtp(&[
        "--to",
        "bob@example.test",
        "--port",
        &port,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--tls-sni",
        &name,
        "--quit-after",
        "tls",
        "--json",
    ]);
    run.expect_code(0)
        .stderr_has("using mx1.example.test (127.0.0.1, preference 10)");
    let tls = run.one("tls_established");
    assert_eq!(tls["verified"], true, "{}", run.ctx());
    assert_eq!(tls["sni"], name.as_str(), "{}", run.ctx());
    assert_eq!(tls["verified_name"], name.as_str(), "{}", run.ctx());
    assert!(run.of_type("tls_failed").is_empty(), "{}", run.ctx());
}

#[test]
fn the_next_mx_is_tried_when_the_first_does_not_answer() {
    // fallback.test: MX 10 dead (127.0.0.2, where nothing listens on the Postfix port) and
    // MX 20 live (127.0.0.1): RFC 5321 §5.1 says try the next one.
    let port = postfix_port();
    let run = smtp(&[
        "--to",
        "x@fallback.test",
        "--port",
        &port,
        "--quit-after",
        "ehlo",
        "--json",
    ]);
    run.expect_code(0)
        .stderr_has("using dead.fallback.test (127.0.0.2, preference 10)")
        .stderr_has("trying the next MX host, live.fallback.test (127.0.0.1)");
    assert_eq!(
        run.one("connected")["peer"],
        format!("127.0.0.1:{port}"),
        "{}",
        run.ctx()
    );
}
