//! `mailscope probe` against the real peers (`scripts/peers start`): Postfix with STARTTLS,
//! the smtp-sink without it, Dovecot submission/submissions, IMAP/IMAPS, POP3/POP3S; and
//! against listeners the tests make: a closed port, a port that never greets, a 421 greeting.
//! Everything is on 127.0.0.1.

mod common;

use std::io::Write as _;
use std::net::TcpListener;
use std::time::Duration;

use common::{json_events, mailscope, peer_addr, var};
use serde_json::Value;

fn port(key: &str) -> String {
    peer_addr(key).port().to_string()
}

/// The `check_result` of one port.
fn result(events: &[Value], port: u16) -> &Value {
    let subject = format!("127.0.0.1:{port}");
    events
        .iter()
        .find(|e| e["type"] == "check_result" && e["subject"] == subject.as_str())
        .unwrap_or_else(|| panic!("no check_result for {subject}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

fn finding_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "finding")
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn probe_of_the_peers_reports_tls_caps_and_auth() {
    let ca = var("PEER_CA");
    let ports = format!(
        "{}/smtp,{}/smtp,{}/submission,{}/smtps,{}/imap,{}/imaps,{}/pop3,{}/pop3s",
        port("PEER_POSTFIX"),
        port("PEER_SMTP_SINK"),
        port("PEER_SUBMISSION"),
        port("PEER_SUBMISSIONS"),
        port("PEER_IMAP"),
        port("PEER_IMAPS"),
        port("PEER_POP3"),
        port("PEER_POP3S"),
    );
    let run = mailscope(&[
        "probe",
        "127.0.0.1",
        "--ports",
        &ports,
        "--tls-ca-path",
        &ca,
        "--timeout",
        "10",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.ctx());
    let ev = json_events(&run);
    assert_eq!(ev[0]["command"], "probe");
    assert_eq!(ev.iter().filter(|e| e["type"] == "check_result").count(), 8);

    // Every port is open, has a banner and a verified TLS 1.2/1.3 session, except the sink.
    for key in [
        "PEER_POSTFIX",
        "PEER_SUBMISSION",
        "PEER_SUBMISSIONS",
        "PEER_IMAP",
        "PEER_IMAPS",
        "PEER_POP3",
        "PEER_POP3S",
    ] {
        let r = result(&ev, peer_addr(key).port());
        let d = &r["detail"];
        assert_eq!(r["area"], "probe", "{key}: {r}");
        assert_eq!(r["verdict"], "open", "{key}: {r}");
        assert!(
            d["banner"].as_str().is_some_and(|b| !b.is_empty()),
            "{key}: {d}"
        );
        assert!(d["banner_us"].as_u64().is_some(), "{key}: {d}");
        assert!(d["connect_us"].as_u64().is_some(), "{key}: {d}");
        let version = d["tls"]["version"].as_str().unwrap_or_default();
        assert!(version == "TLSv1.3" || version == "TLSv1.2", "{key}: {d}");
        assert!(d["tls"]["cipher_suite"].as_str().is_some(), "{key}: {d}");
        assert_eq!(d["tls"]["verification"], "verified", "{key}: {d}");
        assert!(
            d["tls"]["days_to_expiry"].as_i64().is_some_and(|n| n > 0),
            "{key}: {d}"
        );
        let leaf = &d["tls"]["chain"][0];
        assert_eq!(leaf["subject"], "CN=localhost", "{key}: {d}");
        assert!(
            strings(&leaf["san"]).contains(&"DNS:localhost".to_string()),
            "{key}: {d}"
        );
        assert!(!strings(&d["auth_after_tls"]).is_empty(), "{key}: {d}");
    }

    // Postfix: STARTTLS, no AUTH before TLS, AUTH after.
    let d = &result(&ev, peer_addr("PEER_POSTFIX").port())["detail"];
    assert_eq!(d["protocol"], "smtp");
    assert_eq!(d["starttls"], true, "{d}");
    assert_eq!(d["tls_mode"], "starttls", "{d}");
    assert!(strings(&d["auth_before_tls"]).is_empty(), "{d}");
    assert!(
        strings(&d["auth_after_tls"]).contains(&"PLAIN".to_string()),
        "{d}"
    );
    assert!(strings(&d["capabilities_before_tls"]).contains(&"STARTTLS".to_string()));
    assert!(!strings(&d["capabilities_after_tls"]).contains(&"STARTTLS".to_string()));

    // The sink: no STARTTLS, AUTH offered in plaintext.
    let r = result(&ev, peer_addr("PEER_SMTP_SINK").port());
    let d = &r["detail"];
    assert_eq!(r["verdict"], "open");
    assert_eq!(d["starttls"], false, "{d}");
    assert!(d["tls"].is_null(), "{d}");
    assert!(d["tls_mode"].is_null(), "{d}");
    assert!(
        strings(&d["auth_before_tls"]).contains(&"PLAIN".to_string()),
        "{d}"
    );
    assert!(d["auth_after_tls"].is_null(), "{d}");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("no STARTTLS")
    );

    // Dovecot submission: STARTTLS, AUTH before and after (plaintext AUTH allowed).
    let d = &result(&ev, peer_addr("PEER_SUBMISSION").port())["detail"];
    assert_eq!(d["protocol"], "submission");
    assert_eq!(d["starttls"], true, "{d}");
    assert!(
        strings(&d["auth_before_tls"]).contains(&"PLAIN".to_string()),
        "{d}"
    );

    // Implicit TLS ports: nothing before TLS.
    for key in ["PEER_SUBMISSIONS", "PEER_IMAPS", "PEER_POP3S"] {
        let d = &result(&ev, peer_addr(key).port())["detail"];
        assert_eq!(d["tls_mode"], "implicit", "{key}: {d}");
        assert!(d["auth_before_tls"].is_null(), "{key}: {d}");
        assert!(d["capabilities_before_tls"].is_null(), "{key}: {d}");
    }

    // IMAP: STARTTLS, AUTH= capabilities, no LOGINDISABLED before TLS.
    let d = &result(&ev, peer_addr("PEER_IMAP").port())["detail"];
    assert_eq!(d["protocol"], "imap");
    assert_eq!(d["starttls"], true, "{d}");
    assert_eq!(d["plaintext_login_before_tls"], true, "{d}");
    assert!(
        strings(&d["auth_after_tls"]).contains(&"PLAIN".to_string()),
        "{d}"
    );
    assert!(
        d["banner"].as_str().unwrap_or_default().starts_with("* OK"),
        "{d}"
    );

    // POP3: STLS, SASL mechanisms and USER before TLS.
    let d = &result(&ev, peer_addr("PEER_POP3").port())["detail"];
    assert_eq!(d["protocol"], "pop3");
    assert_eq!(d["starttls"], true, "{d}");
    assert_eq!(d["plaintext_login_before_tls"], true, "{d}");
    assert!(
        strings(&d["auth_before_tls"]).contains(&"USER".to_string()),
        "{d}"
    );
    assert!(
        d["banner"].as_str().unwrap_or_default().starts_with("+OK"),
        "{d}"
    );

    let ids = finding_ids(&ev);
    for id in [
        "smtp.starttls.not-offered",
        "smtp.auth.offered-without-tls",
        "imap.logindisabled-missing",
        "pop3.user-before-tls",
    ] {
        assert!(ids.iter().any(|i| i == id), "no {id} in {ids:?}");
    }
    assert!(!ids.iter().any(|i| i.starts_with("tls.cert.")), "{ids:?}");
}

#[test]
fn the_human_table_lists_every_port() {
    let run = mailscope(&[
        "probe",
        "127.0.0.1",
        "--ports",
        &format!("{}/smtp,{}/imaps", port("PEER_POSTFIX"), port("PEER_IMAPS")),
        "--tls-ca-path",
        &var("PEER_CA"),
    ]);
    assert_eq!(run.code, 0, "{}", run.ctx());
    let out = run.all_output();
    assert!(out.contains("PORT"), "{out}");
    assert!(out.contains("STARTTLS TLSv1."), "{out}");
    assert!(out.contains("implicit TLSv1."), "{out}");
    assert!(out.contains("certificate verified"), "{out}");
}

#[test]
fn without_the_ca_the_certificate_is_a_finding() {
    let run = mailscope(&[
        "probe",
        "127.0.0.1",
        "--ports",
        &format!("{}/smtp", port("PEER_POSTFIX")),
        "--json",
        "--fail-on",
        "error",
    ]);
    assert_eq!(run.code, 10, "{}", run.ctx());
    let ev = json_events(&run);
    let d = &result(&ev, peer_addr("PEER_POSTFIX").port())["detail"];
    // The handshake still completes, so the capabilities after TLS are known.
    assert_eq!(d["tls"]["verification"], "failed", "{d}");
    assert!(!strings(&d["auth_after_tls"]).is_empty(), "{d}");
    assert!(finding_ids(&ev).contains(&"tls.cert.unknown-issuer".to_string()));
}

#[test]
fn closed_silent_and_refusing_ports_are_told_apart() {
    // Closed: a port nothing listens on any more.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    // Silent: the kernel completes the handshake, nobody ever writes.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    // Refusing: greets with 421 and hangs up.
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = busy.accept() {
            let _ = s.write_all(b"421 busy\r\n");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let started = std::time::Instant::now();
    let run = mailscope(&[
        "probe",
        "127.0.0.1",
        "--ports",
        &format!("{closed_port}/smtp,{silent_port}/imap,{busy_port}/smtp"),
        "--greeting-timeout",
        "1",
        "--timeout",
        "5",
        "--json",
    ]);
    assert!(started.elapsed() < Duration::from_secs(8), "{}", run.ctx());
    drop(silent);
    let _ = server.join();
    assert_eq!(run.code, 0, "{}", run.ctx());
    let ev = json_events(&run);

    let r = result(&ev, closed_port);
    assert_eq!(r["verdict"], "closed", "{r}");
    assert!(r["detail"]["banner"].is_null());

    let r = result(&ev, silent_port);
    assert_eq!(r["verdict"], "no-greeting", "{r}");
    assert!(r["detail"]["connect_us"].as_u64().is_some(), "{r}");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("no greeting (tarpit or wrong protocol)"),
        "{r}"
    );

    let r = result(&ev, busy_port);
    assert_eq!(r["verdict"], "refused", "{r}");
    assert!(
        r["text"]
            .as_str()
            .unwrap_or_default()
            .contains("refuses connections (421 busy)"),
        "{r}"
    );
    let ids = finding_ids(&ev);
    assert!(ids.contains(&"probe.no-greeting".to_string()), "{ids:?}");
    assert!(
        ids.contains(&"probe.greeting-refused".to_string()),
        "{ids:?}"
    );
}

#[test]
fn bad_ports_are_usage_errors() {
    let run = mailscope(&["probe", "127.0.0.1", "--ports", "25/http"]);
    assert_eq!(run.code, 1, "{}", run.ctx());
    let run = mailscope(&["probe", "127.0.0.1", "--ports", "0"]);
    assert_eq!(run.code, 1, "{}", run.ctx());
}

#[test]
fn unlabelled_ports_are_detected_and_said_to_be_a_guess() {
    // The peers' ports are not the usual ones, so without labels each protocol is detected:
    // from the greeting, or (silent in plaintext) TLS first and the greeting inside.
    let ca = var("PEER_CA");
    let keys = [
        ("PEER_POSTFIX", "smtp"),
        ("PEER_POP3", "pop3"),
        ("PEER_IMAP", "imap"),
        ("PEER_SUBMISSIONS", "smtps"),
        ("PEER_IMAPS", "imaps"),
    ];
    let ports: Vec<String> = keys.iter().map(|(k, _)| port(k)).collect();
    // And a port that greets with something else entirely.
    let odd = TcpListener::bind("127.0.0.1:0").expect("bind");
    let odd_port = odd.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        if let Ok((mut s, _)) = odd.accept() {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let list = format!("{},{odd_port}", ports.join(","));
    let run = mailscope(&[
        "probe",
        "127.0.0.1",
        "--ports",
        &list,
        "--tls-ca-path",
        &ca,
        "--json",
    ]);
    let _ = t.join();
    assert_eq!(run.code, 0, "{}", run.ctx());
    let ev = json_events(&run);
    for ((_, want), p) in keys.iter().zip(&ports) {
        let d = &result(&ev, p.parse().expect("port"))["detail"];
        assert_eq!(d["protocol"], *want, "{d}");
        assert!(d["protocol_guessed"].as_str().is_some(), "{d}");
    }
    let d = &result(&ev, odd_port)["detail"];
    assert!(d["protocol"].is_null(), "{d}");
    assert!(
        run.stderr.contains("not SMTP, POP3 or IMAP")
            || run.stdout.contains("not SMTP, POP3 or IMAP"),
        "{}",
        run.ctx()
    );
}

#[test]
fn tls_enforcement_is_tested_without_credentials() {
    // Postfix (smtpd_tls_auth_only): MAIL before STARTTLS is fine on port 25, AUTH is not
    // offered or taken before TLS. Dovecot submission answers AUTH with 334 in plaintext:
    // the probe cancels it with `*` and reports it.
    let ca = var("PEER_CA");
    let (postfix, submission) = (port("PEER_POSTFIX"), port("PEER_SUBMISSION"));
    let ports = format!("{postfix}/smtp,{submission}/submission");
    let run = mailscope(&[
        "probe",
        "127.0.0.1",
        "--ports",
        &ports,
        "--tls-ca-path",
        &ca,
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.ctx());
    let ev = json_events(&run);
    let p = &result(&ev, postfix.parse().expect("port"))["detail"]["enforcement"];
    assert!(
        p["mail_before_starttls"]
            .as_str()
            .is_some_and(|r| r.starts_with("250")),
        "{p}"
    );
    let auth = p["auth_before_starttls"]["reply"]
        .as_str()
        .unwrap_or_default();
    assert!(
        auth.starts_with('5'),
        "Postfix refuses AUTH before TLS: {auth}"
    );
    let s = &result(&ev, submission.parse().expect("port"))["detail"]["enforcement"];
    assert!(
        s["mail_before_starttls"]
            .as_str()
            .is_some_and(|r| r.starts_with("530")),
        "Dovecot wants AUTH first: {s}"
    );
    assert!(
        s["auth_before_starttls"]["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("334")),
        "{s}"
    );
    let ids = finding_ids(&ev);
    assert!(
        ids.contains(&"probe.auth-before-tls".to_string()),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&"probe.mail-before-tls".to_string()),
        "{ids:?}"
    );
    // Nothing secret was ever sent: the human transcript is not shown, but the JSON has no
    // AUTH payload beyond the mechanism and the cancel.
    assert!(!run.stdout.contains("AUTH PLAIN AG"), "{}", run.ctx());
}

#[test]
fn mx_hosts_that_differ_are_a_finding() {
    // probe.test (testdata/dns/probe.test.zone): MX 10 mx1 = 127.0.0.1 (the Postfix peer,
    // STARTTLS), MX 20 mx2 = 127.0.0.2, where this test runs `mailscope sink` on the same port
    // without STARTTLS.
    let port = port("PEER_POSTFIX");
    let mut sink = std::process::Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args([
            "--no-config",
            "sink",
            "--listen",
            &format!("smtp://127.0.0.2:{port}"),
            "--no-ext",
            "starttls",
            "--no-store",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start mailscope sink");
    let addr: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().expect("addr");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
    let dns = peer_addr("PEER_DNS").to_string();
    let ca = var("PEER_CA");
    let ports = format!("{port}/smtp");
    let run = mailscope(&[
        "probe",
        "--mx",
        "probe.test",
        "--ports",
        &ports,
        "--resolver",
        &dns,
        "--tls-ca-path",
        &ca,
        "--json",
    ]);
    // One MX host with both addresses: each address is probed on its own.
    let multi = mailscope(&[
        "probe",
        "--mx",
        "multi.probe.test",
        "--ports",
        &ports,
        "--resolver",
        &dns,
        "--tls-ca-path",
        &ca,
        "--json",
    ]);
    let _ = sink.kill();
    let _ = sink.wait();
    assert!(up, "the sink on {addr} did not start");
    assert_eq!(multi.code, 0, "{}", multi.ctx());
    let mev = json_events(&multi);
    let msubjects: Vec<&str> = mev
        .iter()
        .filter(|e| e["type"] == "check_result")
        .filter_map(|e| e["subject"].as_str())
        .collect();
    assert_eq!(
        msubjects,
        [
            format!("both.probe.test (127.0.0.1):{port}"),
            format!("both.probe.test (127.0.0.2):{port}")
        ],
        "{}",
        multi.ctx()
    );
    assert!(
        mev.iter()
            .any(|e| e["type"] == "finding" && e["id"] == "probe.mx-inconsistent"),
        "{}",
        multi.ctx()
    );
    assert_eq!(run.code, 0, "{}", run.ctx());
    let ev = json_events(&run);
    let subjects: Vec<&str> = ev
        .iter()
        .filter(|e| e["type"] == "check_result")
        .filter_map(|e| e["subject"].as_str())
        .collect();
    assert_eq!(
        subjects,
        [
            format!("mx1.probe.test:{port}"),
            format!("mx2.probe.test:{port}")
        ],
        "{}",
        run.ctx()
    );
    let inconsistent: Vec<&str> = ev
        .iter()
        .filter(|e| e["type"] == "finding" && e["id"] == "probe.mx-inconsistent")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        inconsistent
            .iter()
            .any(|d| d.contains("STARTTLS") && d.contains("mx2.probe.test: not offered")),
        "{inconsistent:?}\n{}",
        run.ctx()
    );
}
