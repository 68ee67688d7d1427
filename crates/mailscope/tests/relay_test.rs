//! `mailscope relay-test` against the real Postfix and Dovecot of scripts/peers.
//!
//! - $PEER_POSTFIX trusts loopback (`mynetworks = 127.0.0.0/8`, `permit_mynetworks` first
//!   in smtpd_relay_restrictions), so from 127.0.0.1 it relays anywhere: "open" is the
//!   correct verdict *for this client*, and the report must say that a trusted network
//!   may be why.
//! - $PEER_POSTFIX_CLOSED is the same Postfix with an empty mynetworks and
//!   `reject_unauth_destination` only: every pattern must be refused, "closed".
//! - $PEER_SUBMISSION (Dovecot) wants AUTH before MAIL: "closed" (authentication required).
//!
//! Every run is checked for what it sent: never DATA, QUIT at the end of every session.

mod common;

use common::{mailscope, peer};
use serde_json::Value;

fn results<'a>(events: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["type"] == "check_result"
                && e["subject"].as_str().is_some_and(|s| s.starts_with(prefix))
        })
        .collect()
}

fn overall<'a>(events: &'a [Value], subject: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == "check_result" && e["subject"] == subject)
        .unwrap_or_else(|| panic!("no overall result for {subject}"))
}

fn sent_lines(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "sent")
        .filter_map(|e| e["text"].as_str())
        .flat_map(|t| t.split("\\r\\n").map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Never DATA (nor BDAT); one EHLO, one MAIL, one RCPT and one QUIT per session.
fn assert_never_data(run: &common::Run, sessions: usize) {
    let sent = sent_lines(&run.events);
    assert!(
        !sent
            .iter()
            .any(|l| l.starts_with("DATA") || l.starts_with("BDAT")),
        "DATA was sent: {sent:#?}"
    );
    let count = |verb: &str| sent.iter().filter(|l| l.starts_with(verb)).count();
    assert_eq!(count("EHLO "), sessions, "{sent:#?}");
    assert_eq!(count("QUIT"), sessions, "{sent:#?}");
    assert_eq!(
        sent.last().map(String::as_str),
        Some("QUIT"),
        "{}",
        run.ctx()
    );
    // And the human transcript agrees.
    assert!(
        !run.stderr.contains(" -> DATA"),
        "DATA in the transcript\n{}",
        run.ctx()
    );
}

#[test]
fn postfix_trusting_loopback_relays_for_it_open() {
    let target = peer("PEER_POSTFIX");
    let run = mailscope(&["relay-test", &target, "--json"]);
    assert_eq!(run.code, 0, "{}", run.ctx());
    let per = results(&run.events, "pattern ");
    assert_eq!(per.len(), 16, "{}", run.ctx());
    for r in &per {
        assert_eq!(r["verdict"], "open", "{r}");
        assert_eq!(r["detail"]["rcpt"]["code"], 250, "{r}");
    }
    // nmap's address tricks are among them, with the server's name from its greeting and
    // its address literal.
    let tos: Vec<&str> = per
        .iter()
        .filter_map(|r| r["detail"]["to"].as_str())
        .collect();
    for want in [
        "relaytest@example.net",
        "relaytest%example.net@[127.0.0.1]",
        "relaytest%example.net@postfix.mailscope.test",
        "\"relaytest@example.net\"",
        "@[127.0.0.1]:relaytest@example.net",
        "example.net!relaytest",
    ] {
        assert!(tos.contains(&want), "{want} not tried: {tos:?}");
    }
    assert_eq!(per[0]["detail"]["from"], "", "pattern 1 is the null sender");
    let o = overall(&run.events, &target);
    assert_eq!(o["verdict"], "open", "{}", run.ctx());
    assert_eq!(o["detail"]["accepted"], 16);
    assert!(
        o["text"].as_str().is_some_and(|t| t.contains("mynetworks")),
        "the report must say a trusted network may be why: {o}"
    );
    let findings: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["type"] == "finding")
        .collect();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["id"], "relay.open");
    assert_eq!(findings[0]["severity"], "critical");
    assert_eq!(
        run.events.last().expect("summary")["verdicts"]["relay"],
        "open"
    );
    assert_never_data(&run, 16);
}

#[test]
fn postfix_closed_relay_refuses_every_pattern() {
    let target = peer("PEER_POSTFIX_CLOSED");
    let run = mailscope(&["relay-test", &target, "--json"]);
    assert_eq!(run.code, 0, "{}", run.ctx());
    let per = results(&run.events, "pattern ");
    assert_eq!(per.len(), 16, "{}", run.ctx());
    for r in &per {
        assert_eq!(r["verdict"], "closed", "{r}");
        let rcpt = &r["detail"]["rcpt"];
        assert_eq!(rcpt["code"], 554, "{r}");
        assert!(
            rcpt["text"]
                .as_str()
                .is_some_and(|t| t.contains("Relay access denied")),
            "{r}"
        );
    }
    assert_eq!(overall(&run.events, &target)["verdict"], "closed");
    assert!(
        !run.events.iter().any(|e| e["type"] == "finding"),
        "{}",
        run.ctx()
    );
    assert_never_data(&run, 16);
    // Human output: the verdict, and the transcript like `mailscope smtp`.
    let human = mailscope(&["relay-test", &target]);
    assert_eq!(human.code, 0, "{}", human.ctx());
    assert!(
        human.stdout.contains(&format!("relay {target}: closed"))
            && human
                .stdout
                .contains(" -> RCPT TO:<relaytest%example.net@[127.0.0.1]>")
            && human.stdout.contains("<-  554 5.7.1")
            && !human.stdout.contains(" -> DATA"),
        "{}",
        human.ctx()
    );
}

#[test]
fn options_change_the_patterns() {
    let target = peer("PEER_POSTFIX_CLOSED");
    let run = mailscope(&[
        "relay-test",
        &target,
        "--to",
        "probe@relay.example.org",
        "--from-domain",
        "sender.example.com",
        "--helo",
        "scanner.example.com",
        "--ip",
        "192.0.2.7",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.ctx());
    let sent = sent_lines(&run.events);
    assert!(
        sent.contains(&"EHLO scanner.example.com".to_owned()),
        "{sent:#?}"
    );
    assert!(
        sent.contains(&"MAIL FROM:<antispam@sender.example.com>".to_owned()),
        "{sent:#?}"
    );
    assert!(
        sent.contains(&"RCPT TO:<probe%relay.example.org@[192.0.2.7]>".to_owned()),
        "{sent:#?}"
    );
    assert_eq!(overall(&run.events, &target)["verdict"], "closed");
}

/// Dovecot submission wants AUTH before MAIL: every pattern ends at MAIL with 530, which
/// is a closed relay, and RCPT is never sent.
#[test]
fn submission_requiring_auth_is_closed() {
    let target = peer("PEER_SUBMISSION");
    let run = mailscope(&["relay-test", &target, "--json"]);
    assert_eq!(run.code, 0, "{}", run.ctx());
    let per = results(&run.events, "pattern ");
    assert_eq!(per.len(), 16, "{}", run.ctx());
    for r in &per {
        assert_eq!(r["verdict"], "closed", "{r}");
        assert_eq!(r["detail"]["mail"]["code"], 530, "{r}");
        assert_eq!(r["detail"]["rcpt"], Value::Null, "{r}");
    }
    assert_eq!(overall(&run.events, &target)["verdict"], "closed");
    let sent = sent_lines(&run.events);
    assert!(!sent.iter().any(|l| l.starts_with("RCPT")), "{sent:#?}");
    assert!(!sent.iter().any(|l| l.starts_with("DATA")), "{sent:#?}");
}

#[test]
fn a_host_that_is_not_loopback_needs_yes() {
    for target in ["192.0.2.1:25", "[2001:db8::25]", "mx.example.invalid"] {
        let run = mailscope(&["relay-test", target, "--timeout", "2"]);
        assert_eq!(run.code, 1, "{}", run.ctx());
        assert!(
            run.stderr.contains("--yes") && run.stdout.is_empty(),
            "{}",
            run.ctx()
        );
    }
    // localhost resolves to loopback only: allowed without --yes.
    let closed = peer("PEER_POSTFIX_CLOSED");
    let port = closed.rsplit(':').next().expect("port");
    let run = mailscope(&["relay-test", &format!("localhost:{port}"), "--json"]);
    assert_eq!(run.code, 0, "{}", run.ctx());
    assert_eq!(
        overall(&run.events, &format!("localhost:{port}"))["verdict"],
        "closed"
    );
}

#[test]
fn nothing_listening_is_an_error_not_closed() {
    // A port that was just free: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let target = format!("127.0.0.1:{port}");
    let run = mailscope(&["relay-test", &target, "--json", "--timeout", "3"]);
    // As `mailscope smtp`: exit 2 when the connection could not be made.
    assert_eq!(run.code, 2, "{}", run.ctx());
    let o = overall(&run.events, &target);
    assert_eq!(o["verdict"], "error", "{}", run.ctx());
    assert!(results(&run.events, "pattern ").is_empty());
    assert_eq!(
        run.events.last().expect("summary")["verdicts"]["relay"],
        "error"
    );
    let f: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["type"] == "finding")
        .collect();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["id"], "relay.inconclusive");
    // Not connecting is not a verdict --fail-on can turn into 10: it stays 2.
    let run = mailscope(&[
        "relay-test",
        &target,
        "--fail-on",
        "warning",
        "--timeout",
        "3",
    ]);
    assert_eq!(run.code, 2, "{}", run.ctx());
}
