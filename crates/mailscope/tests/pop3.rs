//! `mailscope pop3` against the real Dovecot of `scripts/peers` (POP3 on PEER_POP3 with
//! STLS, POP3S on PEER_POP3S). A missing peer fails the test with a hint; nothing skips.
//!
//! Dovecot here has `auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256`, so
//! it does not offer APOP (no `<timestamp>` in the greeting); the APOP test checks that
//! mailscope says so and exits 28 without sending anything secret.

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

fn pop3(args: &[&str]) -> Run {
    let mut all = vec!["--no-config", "pop3", "--timeout", "10"];
    all.extend_from_slice(args);
    mailscope(&all)
}

/// Puts a message into alice's Maildir `new/`, owned like Dovecot's own files; returns its
/// path.
fn deliver(bytes: &[u8]) -> std::path::PathBuf {
    let user = user();
    let dir = Path::new(&var("PEERS_DIR"))
        .join("mail")
        .join(&user)
        .join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        let d = dir.join(sub);
        if !d.is_dir() {
            std::fs::create_dir_all(&d).expect("pop3 test setup");
        }
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{nanos}.P{}.mailscope-test", std::process::id());
    let tmp = dir.join("tmp").join(&name);
    std::fs::write(&tmp, bytes).expect("pop3 test setup");
    let new = dir.join("new").join(&name);
    std::fs::rename(&tmp, &new).expect("pop3 test setup");
    // Dovecot runs the mail processes as vmail (uid/gid from dovecot.conf's userdb).
    let st =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&dir).expect("pop3 test setup"));
    let gid =
        std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&dir).expect("pop3 test setup"));
    std::os::unix::fs::chown(&new, Some(st), Some(gid)).expect("pop3 test setup");
    new
}

fn ca() -> String {
    file_var("PEER_CA")
}

#[test]
fn stls_user_pass_summary_json() {
    let server = peer("PEER_POP3");
    let pw = password();
    let run = pop3(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca(),
        "--tls-sni",
        "localhost",
        "--user",
        &user(),
        "--auth-password",
        &pw,
        "--json",
    ]);
    run.expect_code(0);
    run.assert_no_secret(&pw);
    let types = run.types();
    assert!(types.contains(&"tls_established"), "{}", run.ctx());
    assert!(types.contains(&"authenticated"), "{}", run.ctx());
    assert!(run.stderr.contains("mailbox:"), "{}", run.ctx());
    assert!(run.stderr.contains("PASS <redacted"), "{}", run.ctx());
}

#[test]
fn implicit_tls_995() {
    let server = peer("PEER_POP3S");
    let pw = password();
    let run = pop3(&[
        "--server",
        &server,
        "--tls-on-connect",
        "--tls-ca-path",
        &ca(),
        "--tls-sni",
        "localhost",
        "--user",
        &user(),
        "--auth-password",
        &pw,
        "--list",
    ]);
    run.expect_code(0);
    run.assert_no_secret(&pw);
    assert!(run.stdout.contains("~> LIST"), "{}", run.ctx());
}

#[test]
fn auth_plain_and_scram() {
    let server = peer("PEER_POP3");
    let pw = password();
    for mech in ["PLAIN", "SCRAM-SHA-256"] {
        let run = pop3(&[
            "--server",
            &server,
            "--tls",
            "--tls-ca-path",
            &ca(),
            "--tls-sni",
            "localhost",
            "--user",
            &user(),
            "--auth-password",
            &pw,
            "--auth",
            mech,
            "--quit-after",
            "auth",
            "--json",
        ]);
        run.expect_code(0);
        run.assert_no_secret(&pw);
        let auth = run
            .events
            .iter()
            .find(|e| e["type"] == "authenticated")
            .expect("authenticated");
        assert_eq!(auth["mechanism"], mech);
        if mech.starts_with("SCRAM") {
            assert_eq!(auth["server_verified"], true, "{}", run.ctx());
        }
    }
}

#[test]
fn wrong_password_exits_28() {
    let server = peer("PEER_POP3");
    let run = pop3(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca(),
        "--tls-sni",
        "localhost",
        "--user",
        &user(),
        "--auth-password",
        "wrong-password-xyz",
        "--json",
    ]);
    run.expect_code(28);
    run.assert_no_secret("wrong-password-xyz");
}

#[test]
fn apop_not_offered_by_dovecot() {
    let server = peer("PEER_POP3");
    let run = pop3(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca(),
        "--tls-sni",
        "localhost",
        "--user",
        &var("PEER_ALT_USER"),
        "--auth-password",
        &var("PEER_ALT_PASSWORD"),
        "--apop",
    ]);
    run.expect_code(28);
    assert!(
        run.all_output().contains("does not offer APOP"),
        "{}",
        run.ctx()
    );
    assert!(!run.all_output().contains("-> APOP"), "{}", run.ctx());
}

#[test]
fn fetch_is_byte_exact() {
    let server = peer("PEER_POP3");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("pop3 test setup")
        .as_nanos();
    // Dot-stuffing, 8-bit and a long line must come back exactly.
    let msg = format!(
        "From: a@example.test\r\nTo: alice@example.test\r\nSubject: pop3 fetch {nanos}\r\n\r\n.leading dot\r\n..two dots\r\n\u{e9}t\u{e9}\r\n{}\r\nlast line\r\n",
        "x".repeat(2000)
    );
    let path = deliver(msg.as_bytes());
    let out = tempfile::tempdir().expect("pop3 test setup");
    let pw = password();
    let run = pop3(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca(),
        "--tls-sni",
        "localhost",
        "--user",
        &user(),
        "--auth-password",
        &pw,
        "--fetch",
        "*",
        "--output",
        out.path().to_str().expect("pop3 test setup"),
        "--json",
    ]);
    run.expect_code(0);
    let files: Vec<_> = std::fs::read_dir(out.path())
        .expect("pop3 test setup")
        .map(|e| e.expect("pop3 test setup").path())
        .collect();
    assert_eq!(files.len(), 1, "{}", run.ctx());
    let got = std::fs::read(&files[0]).expect("pop3 test setup");
    assert_eq!(String::from_utf8_lossy(&got), msg, "{}", run.ctx());
    assert_eq!(got, msg.as_bytes());
    // Leave the mailbox as it was.
    let cur = path
        .parent()
        .expect("pop3 test setup")
        .parent()
        .expect("pop3 test setup")
        .join("cur");
    for e in std::fs::read_dir(cur).expect("pop3 test setup").flatten() {
        if e.file_name()
            .to_string_lossy()
            .contains(&*path.file_name().expect("pop3 test setup").to_string_lossy())
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn delete_needs_yes() {
    let server = peer("PEER_POP3");
    let run = pop3(&[
        "--server",
        &server,
        "--user",
        "x",
        "--auth-password",
        "y",
        "--delete",
        "1",
    ]);
    run.expect_code(1);
}

#[test]
fn quit_after_capa_reports_findings() {
    let server = peer("PEER_POP3");
    let run = pop3(&["--server", &server, "--quit-after", "capa", "--json"]);
    run.expect_code(0);
    assert!(run.types().contains(&"capabilities"), "{}", run.ctx());
}
