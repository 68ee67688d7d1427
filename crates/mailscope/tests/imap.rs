//! `mailscope imap` against the real Dovecot of `scripts/peers` (IMAP with STARTTLS on
//! `PEER_IMAP`, implicit TLS on `PEER_IMAPS`). These tests never skip: a missing env file or
//! a peer that does not answer fails with a hint to run `bash scripts/peers start`.
//! Every `--json` run's stdout is validated against `docs/events.schema.json`.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

/// `mailscope --no-config [--json] imap --timeout 10 ARGS`.
fn imap(json: bool, args: &[&str]) -> Run {
    let mut all = vec!["--no-config"];
    if json {
        all.push("--json");
    }
    all.extend_from_slice(&["imap", "--timeout", "10", "--tls-ca-path"]);
    let ca = var("PEER_CA");
    all.push(&ca);
    all.extend_from_slice(args);
    let run = mailscope(&all);
    if json {
        // common's checks hold for whatever events there are; here there must be a session.
        assert!(
            !run.events.is_empty(),
            "--json run printed no events\n{}",
            run.ctx()
        );
    }
    run
}

fn sent_text(run: &Run) -> String {
    run.events
        .iter()
        .filter(|e| e["type"] == "sent")
        .filter_map(|e| e["text"].as_str())
        .collect()
}

#[test]
fn starttls_login_shows_capabilities_and_mailbox_summary() {
    let server = peer("PEER_IMAP");
    let (u, p) = (user(), password());
    let run = imap(
        true,
        &[
            "--server",
            &server,
            "--tls",
            "--user",
            &u,
            "--auth-password",
            &p,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.ctx());
    run.assert_no_secret(&p);
    let types: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for t in [
        "connected",
        "tls_established",
        "sent",
        "received",
        "authenticated",
        "note",
    ] {
        assert!(types.contains(&t), "no {t} event\n{}", run.ctx());
    }
    let sent = sent_text(&run);
    assert!(sent.contains("STARTTLS"), "{}", run.ctx());
    assert!(
        sent.contains("LOGIN alice@example.test <redacted"),
        "{sent}"
    );
    assert!(sent.contains("SELECT INBOX"), "{sent}");
    assert!(run.stderr.contains("UIDVALIDITY"), "{}", run.ctx());
    // Loopback Dovecot offers STARTTLS without LOGINDISABLED.
    assert!(
        run.events
            .iter()
            .any(|e| e["id"] == "imap.logindisabled-missing"),
        "{}",
        run.ctx()
    );
    assert!(
        !run.events.iter().any(|e| e["id"] == "imap.response.syntax"),
        "{}",
        run.ctx()
    );
}

#[test]
fn implicit_tls_and_quit_after_capa() {
    let server = peer("PEER_IMAPS");
    let run = imap(
        true,
        &[
            "--server",
            &server,
            "--tls-on-connect",
            "--quit-after",
            "capa",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.ctx());
    assert!(
        run.events.iter().any(|e| e["type"] == "tls_established"),
        "{}",
        run.ctx()
    );
    assert!(
        run.events
            .iter()
            .all(|e| e["type"] != "sent" || e["tls"] == true),
        "{}",
        run.ctx()
    );
    let ended = run.events.last().cloned().unwrap_or_default();
    assert_eq!(ended["outcome"], "stopped", "{}", run.ctx());
}

#[test]
fn authenticate_plain_and_scram_sha_256() {
    let server = peer("PEER_IMAP");
    let (u, p) = (user(), password());
    for mech in ["PLAIN", "SCRAM-SHA-256"] {
        let run = imap(
            true,
            &[
                "--server",
                &server,
                "--tls",
                "--user",
                &u,
                "--auth-password",
                &p,
                "--auth",
                mech,
                "--quit-after",
                "auth",
            ],
        );
        assert_eq!(run.code, 0, "{mech}\n{}", run.ctx());
        run.assert_no_secret(&p);
        let auth = run.events.iter().find(|e| e["type"] == "authenticated");
        assert_eq!(
            auth.map(|a| a["mechanism"].clone()),
            Some(mech.into()),
            "{}",
            run.ctx()
        );
        assert!(
            sent_text(&run).contains(&format!("AUTHENTICATE {mech}")),
            "{}",
            run.ctx()
        );
    }
}

#[test]
fn wrong_password_exits_28() {
    let server = peer("PEER_IMAP");
    let u = user();
    let run = imap(
        true,
        &[
            "--server",
            &server,
            "--tls",
            "--user",
            &u,
            "--auth-password",
            "wrong-password-xyz",
        ],
    );
    assert_eq!(run.code, 28, "{}", run.ctx());
    run.assert_no_secret("wrong-password-xyz");
    let ended = run.events.last().cloned().unwrap_or_default();
    assert_eq!(ended["step"], "auth", "{}", run.ctx());
}

#[test]
fn list_and_status() {
    let server = peer("PEER_IMAP");
    let (u, p) = (var("PEER_ALT_USER"), var("PEER_ALT_PASSWORD"));
    let run = imap(
        false,
        &[
            "--server",
            &server,
            "--tls",
            "--user",
            &u,
            "--auth-password",
            &p,
            "--list",
            "--status",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.ctx());
    run.assert_no_secret(&p);
    assert!(run.stdout.contains("* LIST"), "{}", run.ctx());
    assert!(
        run.stdout.contains("* STATUS INBOX (MESSAGES"),
        "{}",
        run.ctx()
    );
}

#[test]
fn append_then_fetch_back_byte_for_byte_and_uid_fetch() {
    let server = peer("PEER_IMAP");
    let (u, p) = (user(), password());
    let dir = tempfile::tempdir().expect("tempdir");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let token = format!("mailscope-imap-{}-{nanos}", std::process::id());
    let message = format!(
        "From: a@example.test\r\nTo: b@example.test\r\nSubject: {token}\r\n\r\nline one\r\n.leading dot\r\n\u{e4} 8-bit\r\n"
    );
    let msg_path = dir.path().join("msg.eml");
    std::fs::write(&msg_path, message.as_bytes()).expect("write message");
    let mailbox = "INBOX";
    let run = imap(
        true,
        &[
            "--server",
            &server,
            "--tls",
            "--user",
            &u,
            "--auth-password",
            &p,
            "--mailbox",
            mailbox,
            "--append",
            msg_path.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.ctx());
    run.assert_no_secret(&p);
    // The new message is the last one: fetch `*` back, full.
    let out = dir.path().join("back.eml");
    let run = imap(
        true,
        &[
            "--server",
            &server,
            "--tls",
            "--user",
            &u,
            "--auth-password",
            &p,
            "--fetch",
            "*",
            "--part",
            "full",
            "--output",
            out.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.ctx());
    assert!(
        sent_text(&run).contains("FETCH * (UID BODY.PEEK[])"),
        "{}",
        run.ctx()
    );
    let back = std::fs::read(&out).expect("fetched file");
    assert_eq!(back, message.as_bytes(), "{}", run.ctx());
    // UID FETCH of the same message, header only, via the UID from the transcript.
    let uid = run
        .events
        .iter()
        .filter(|e| e["type"] == "note")
        .filter_map(|e| e["text"].as_str())
        .find_map(|t| {
            t.split("(UID ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no UID in the notes\n{}", run.ctx()));
    let hdr = dir.path().join("hdr.eml");
    let run = imap(
        true,
        &[
            "--server",
            &server,
            "--tls",
            "--user",
            &u,
            "--auth-password",
            &p,
            "--fetch",
            &uid,
            "--uid",
            "--part",
            "header",
            "--output",
            hdr.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.ctx());
    assert!(
        sent_text(&run).contains(&format!("UID FETCH {uid} (UID BODY.PEEK[HEADER])")),
        "{}",
        run.ctx()
    );
    let header = std::fs::read(&hdr).expect("header file");
    let end = message.find("\r\n\r\n").expect("header end") + 4;
    assert_eq!(header, message.as_bytes()[..end].to_vec(), "{}", run.ctx());
}

#[test]
fn plaintext_login_to_loopback_warns_login_before_tls() {
    let server = peer("PEER_IMAP");
    let (u, p) = (user(), password());
    let run = imap(
        true,
        &[
            "--server",
            &server,
            "--user",
            &u,
            "--auth-password",
            &p,
            "--quit-after",
            "auth",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.ctx());
    run.assert_no_secret(&p);
    assert!(
        run.events
            .iter()
            .any(|e| e["id"] == "imap.login-before-tls"),
        "{}",
        run.ctx()
    );
}

#[test]
fn closed_port_exits_2() {
    let run = mailscope(&[
        "--no-config",
        "imap",
        "--server",
        "127.0.0.1:1",
        "--timeout",
        "5",
    ]);
    assert_eq!(run.code, 2, "{}", run.ctx());
}

#[test]
fn help_has_examples_and_exit_codes() {
    let run = mailscope(&["imap", "--help"]);
    assert_eq!(run.code, 0, "{}", run.ctx());
    assert!(run.stdout.contains("Examples:"), "{}", run.ctx());
    assert!(run.stdout.contains("28 login"), "{}", run.ctx());
}

#[test]
fn id_namespace_search_and_idle() {
    let server = peer("PEER_IMAP");
    let (u, p) = (user(), password());
    let run = imap(
        true,
        &[
            "--server",
            &server,
            "--tls",
            "--user",
            &u,
            "--auth-password",
            &p,
            "--id",
            "--examine",
            "--search",
            "--idle",
            "0.3",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.ctx());
    let sent = sent_text(&run);
    for cmd in [
        "ID (",
        "NAMESPACE",
        "EXAMINE INBOX",
        "SEARCH ALL",
        "IDLE",
        "DONE",
        "LOGOUT",
    ] {
        assert!(sent.contains(cmd), "{cmd} not sent\n{}", run.ctx());
    }
    assert!(
        !run.events.iter().any(|e| e["id"] == "imap.response.syntax"),
        "{}",
        run.ctx()
    );
}
