//! `mailscope smtp` against real mail servers on loopback: Postfix, Dovecot's submission
//! service (STARTTLS and implicit TLS) and Postfix's smtp-sink, all started by
//! `scripts/peers start`, which writes `.peers/env` at the repository root.
//!
//! These tests never skip: a missing env file, a missing key or a peer that does not accept
//! connections fails the test with a message saying to run `scripts/peers start`.
//!
//! Every run goes through [`mailscope`]; every `--json` run's stdout is checked there to be
//! nothing but JSON lines, each valid against `docs/events.schema.json`, with the envelope
//! invariants of docs/events.md (one session id, `session_started` first, `session_ended`
//! last with the process's exit code, `sent`/`received` text in the escape grammar).

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `mailscope --no-config smtp --timeout 10 ARGS`.
fn smtp(args: &[&str]) -> Run {
    let mut all = vec!["--no-config", "smtp", "--timeout", "10"];
    all.extend_from_slice(args);
    mailscope(&all)
}

/// Base64 (RFC 4648, padded): the forms a password would take on the wire.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// AUTH PLAIN's payload for these credentials, base64 encoded (`\0user\0password`).
fn plain_b64(user: &str, password: &str) -> String {
    base64(format!("\0{user}\0{password}").as_bytes())
}

/// Neither the password nor its wire forms (PLAIN's payload, LOGIN's base64 password)
/// appear anywhere in the output.
fn assert_no_secret(run: &Run, user: &str, password: &str) {
    let all = run.all_output();
    for (what, secret) in [
        ("the password", password.to_string()),
        (
            "the base64 password (AUTH LOGIN)",
            base64(password.as_bytes()),
        ),
        ("the AUTH PLAIN payload", plain_b64(user, password)),
    ] {
        assert!(
            !all.contains(&secret),
            "{what} ({secret}) leaks into the output\n{}",
            run.ctx()
        );
    }
}

// ------------------------------------------------------------------------------ 1, 9: SASL

/// Peer: Dovecot submission (STARTTLS, private CA). Right password, then wrong password
/// (JSON and human), for one mechanism; the password never shows.
fn check_mechanism(mech: &str) {
    let server = peer("PEER_SUBMISSION");
    let ca = file_var("PEER_CA");
    let (user, pass) = (user(), password());
    let wrong = "wrong-horse-staple";
    let base = [
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--auth",
        mech,
        "--auth-user",
        &user,
    ];

    let ok = smtp(
        &[
            &base[..],
            &["--auth-password", &pass, "--quit-after", "auth", "--json"],
        ]
        .concat(),
    );
    ok.expect_code(0);
    let chosen = ok.one("auth_mechanism_chosen");
    assert_eq!(chosen["mechanism"], mech, "{}", ok.ctx());
    assert_eq!(chosen["explicit"], true, "{}", ok.ctx());
    let authed = ok.one("authenticated");
    assert_eq!(authed["mechanism"], mech, "{}", ok.ctx());
    let expect_verified = if mech.starts_with("SCRAM-") {
        Value::Bool(true)
    } else {
        Value::Null
    };
    assert_eq!(authed["server_verified"], expect_verified, "{}", ok.ctx());
    assert_eq!(ok.reply_to("AUTH")["code"], 235, "{}", ok.ctx());
    assert_eq!(ok.ended()["outcome"], "stopped", "{}", ok.ctx());
    // The AUTH exchange went over TLS, and every payload is shown redacted.
    let auth_sent: Vec<&Value> = ok
        .sent()
        .into_iter()
        .filter(|e| e["redacted"] == true)
        .collect();
    assert!(
        !auth_sent.is_empty(),
        "no redacted AUTH payload\n{}",
        ok.ctx()
    );
    assert!(
        auth_sent.iter().all(|e| e["tls"] == true),
        "AUTH outside TLS\n{}",
        ok.ctx()
    );
    assert_no_secret(&ok, &user, &pass);

    let bad = smtp(
        &[
            &base[..],
            &["--auth-password", wrong, "--json"],
            &["--to", "bob@example.test"],
        ]
        .concat(),
    );
    bad.expect_code(28);
    assert_eq!(bad.reply_to("AUTH")["code"], 535, "{}", bad.ctx());
    assert!(bad.of_type("authenticated").is_empty(), "{}", bad.ctx());
    let ended = bad.ended();
    assert_eq!(
        (&ended["outcome"], &ended["step"]),
        (&"failed".into(), &"auth".into()),
        "{}",
        bad.ctx()
    );
    assert!(
        bad.stderr.contains("535 5.7.8"),
        "the 535 reply is not in the human text\n{}",
        bad.ctx()
    );
    assert_no_secret(&bad, &user, wrong);
    assert_no_secret(&bad, &user, &pass);

    // Human output (no --json) with the right password: the transcript shows the exchange
    // redacted, never the password.
    let human = smtp(
        &[
            &base[..],
            &["--auth-password", &pass, "--quit-after", "auth"],
        ]
        .concat(),
    );
    human.expect_code(0);
    assert!(
        human.stdout.contains(&format!(" ~> AUTH {mech}")),
        "{}",
        human.ctx()
    );
    assert!(human.stdout.contains("<~  235 "), "{}", human.ctx());
    assert!(
        human.stdout.contains(&format!("authenticated with {mech}")),
        "{}",
        human.ctx()
    );
    assert_no_secret(&human, &user, &pass);
}

#[test]
fn sasl_plain_dovecot_submission() {
    // Peer: Dovecot submission, STARTTLS.
    check_mechanism("PLAIN");
}

#[test]
fn sasl_login_dovecot_submission() {
    // Peer: Dovecot submission, STARTTLS.
    check_mechanism("LOGIN");
}

#[test]
fn sasl_cram_md5_dovecot_submission() {
    // Peer: Dovecot submission, STARTTLS.
    check_mechanism("CRAM-MD5");
}

#[test]
fn sasl_scram_sha_1_dovecot_submission() {
    // Peer: Dovecot submission, STARTTLS.
    check_mechanism("SCRAM-SHA-1");
}

#[test]
fn sasl_scram_sha_256_dovecot_submission() {
    // Peer: Dovecot submission, STARTTLS.
    check_mechanism("SCRAM-SHA-256");
}

#[test]
fn sasl_auto_picks_best_offered() {
    // Peer: Dovecot submission, STARTTLS; offers PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256.
    let (server, ca, user, pass) = (
        peer("PEER_SUBMISSION"),
        file_var("PEER_CA"),
        user(),
        password(),
    );
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--auth",
        "--auth-user",
        &user,
        "--auth-password",
        &pass,
        "--quit-after",
        "auth",
        "--json",
    ]);
    run.expect_code(0);
    let chosen = run.one("auth_mechanism_chosen");
    assert_eq!(chosen["mechanism"], "SCRAM-SHA-256", "{}", run.ctx());
    assert_eq!(chosen["explicit"], false, "{}", run.ctx());
    let offered: BTreeSet<&str> = chosen["offered"]
        .as_array()
        .expect("offered")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected = BTreeSet::from(["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]);
    assert_eq!(offered, expected, "{}", run.ctx());
    let authed = run.one("authenticated");
    assert_eq!(
        (&authed["mechanism"], &authed["server_verified"]),
        (&"SCRAM-SHA-256".into(), &true.into()),
        "{}",
        run.ctx()
    );
    assert_no_secret(&run, &user, &pass);
}

/// SCRAM's redacted summaries carry the user name and the server nonce; like every `sent`
/// text they must follow the escape grammar (a `\` in either must be written `\\`).
#[test]
fn sasl_scram_summary_follows_escape_grammar() {
    // Peer: Dovecot submission, STARTTLS. The login fails (unknown user); only the
    // transcript matters. mailscope() checks every sent text against the grammar.
    let (server, ca) = (peer("PEER_SUBMISSION"), file_var("PEER_CA"));
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--auth",
        "SCRAM-SHA-256",
        "--auth-user",
        "back\\slash",
        "--auth-password",
        "x",
        "--quit-after",
        "auth",
        "--json",
    ]);
    run.expect_code(28);
}

#[test]
fn show_secrets_reveals_plain_payload() {
    // Peer: Dovecot submission, STARTTLS.
    let (server, ca, user, pass) = (
        peer("PEER_SUBMISSION"),
        file_var("PEER_CA"),
        user(),
        password(),
    );
    let args = [
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--auth",
        "PLAIN",
        "--auth-user",
        &user,
        "--auth-password",
        &pass,
        "--quit-after",
        "auth",
    ];
    let payload = plain_b64(&user, &pass);
    let human = smtp(&[&args[..], &["--show-secrets"]].concat());
    human.expect_code(0);
    assert!(
        human.stdout.contains(&format!(" ~> AUTH PLAIN {payload}")),
        "{}",
        human.ctx()
    );
    let json = smtp(&[&args[..], &["--show-secrets", "--json"]].concat());
    json.expect_code(0);
    let auth = json.sent().into_iter().find(|e| {
        e["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("AUTH PLAIN"))
    });
    let auth = auth.unwrap_or_else(|| panic!("no AUTH PLAIN sent\n{}", json.ctx()));
    assert_eq!(
        auth["text"],
        format!("AUTH PLAIN {payload}\\r\\n"),
        "{}",
        json.ctx()
    );
    assert_eq!(auth["redacted"], false, "{}", json.ctx());
}

// ------------------------------------------------------------------------------ 2: Postfix SASL

#[test]
fn postfix_auth_plain_after_starttls() {
    // Peer: Postfix (SASL through Dovecot's auth socket, smtpd_tls_auth_only), relaying to
    // smtp-sink.
    let (server, ca, user, pass) = (
        peer("PEER_POSTFIX"),
        file_var("PEER_CA"),
        user(),
        password(),
    );
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--auth",
        "PLAIN",
        "--auth-user",
        &user,
        "--auth-password",
        &pass,
        "--from",
        &user,
        "--to",
        "bob@example.test",
        "--data",
        "Subject: postfix sasl\n\nhello",
        "--json",
    ]);
    run.expect_code(0);
    let caps = run.of_type("capabilities");
    assert_eq!(caps.len(), 2, "{}", run.ctx());
    let has_auth = |c: &Value| {
        c["extensions"]
            .as_array()
            .expect("extensions")
            .iter()
            .any(|x| x.as_str().is_some_and(|x| x.starts_with("AUTH ")))
    };
    assert!(
        caps[0]["tls"] == false && !has_auth(caps[0]),
        "AUTH offered before TLS\n{}",
        run.ctx()
    );
    assert!(
        caps[1]["tls"] == true && has_auth(caps[1]),
        "AUTH not offered after TLS\n{}",
        run.ctx()
    );
    assert_eq!(
        run.one("authenticated")["mechanism"],
        "PLAIN",
        "{}",
        run.ctx()
    );
    assert_eq!(run.reply_to("AUTH")["code"], 235, "{}", run.ctx());
    assert_eq!(run.reply_to(".")["code"], 250, "{}", run.ctx());
    assert_eq!(run.ended()["outcome"], "completed", "{}", run.ctx());
    assert_no_secret(&run, &user, &pass);
}

// ------------------------------------------------------------------------------ 3: implicit TLS

#[test]
fn implicit_tls_submissions_delivers_to_sink() {
    // Peer: Dovecot submissions (implicit TLS), relaying to smtp-sink.
    let (server, ca, user, pass) = (
        peer("PEER_SUBMISSIONS"),
        file_var("PEER_CA"),
        user(),
        password(),
    );
    let dump_dir = var("PEER_SMTP_SINK_DUMP_DIR");
    peer("PEER_SMTP_SINK");
    let token = unique_token("tlsc");
    let data = format!("Subject: {token}\n\nimplicit TLS");
    let run = smtp(&[
        "--server",
        &server,
        "--tls-on-connect",
        "--tls-ca-path",
        &ca,
        "--auth",
        "PLAIN",
        "--auth-user",
        &user,
        "--auth-password",
        &pass,
        "--from",
        &user,
        "--to",
        "bob@example.test",
        "--data",
        &data,
        "--json",
    ]);
    run.expect_code(0);
    let tls = run.one("tls_established");
    assert_eq!(tls["version"], "TLSv1.3", "{}", run.ctx());
    assert_eq!(tls["verified"], true, "{}", run.ctx());
    let started = run.one("session_started");
    assert_eq!(started["tls_on_connect"], true, "{}", run.ctx());
    // From the first byte on, everything went through TLS.
    let wire: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["type"] == "sent" || e["type"] == "received")
        .collect();
    assert!(
        !wire.is_empty() && wire.iter().all(|e| e["tls"] == true),
        "plaintext bytes on implicit TLS\n{}",
        run.ctx()
    );
    assert_eq!(run.reply_to(".")["code"], 250, "{}", run.ctx());
    assert_eq!(run.ended()["outcome"], "completed", "{}", run.ctx());

    // smtp-sink dumped the transaction Dovecot relayed.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = std::fs::read_dir(&dump_dir)
            .unwrap_or_else(|e| panic!("read {dump_dir}: {e}; {START_HINT}"))
            .filter_map(Result::ok)
            .any(|f| {
                std::fs::read(f.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(&token))
            });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "smtp-sink has no message with {token} in {dump_dir}\n{}",
            run.ctx()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------------------ 4: certificates

#[test]
fn tls_private_ca_refused_by_default() {
    // Peer: Dovecot submission, STARTTLS; its certificate comes from the private test CA.
    let server = peer("PEER_SUBMISSION");
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--quit-after",
        "ehlo",
        "--json",
    ]);
    run.expect_code(29);
    let failed = run.one("tls_failed");
    assert_eq!(
        failed["finding"]["id"],
        "tls.cert.unknown-issuer",
        "{}",
        run.ctx()
    );
    let chain = failed["chain"]
        .as_array()
        .unwrap_or_else(|| panic!("tls_failed without chain\n{}", run.ctx()));
    assert!(!chain.is_empty(), "{}", run.ctx());
    assert_eq!(chain[0]["subject"], "CN=localhost", "{}", run.ctx());
    assert_eq!(chain[0]["issuer"], "CN=mailscope test CA", "{}", run.ctx());
    assert_eq!(
        run.findings("tls.cert.unknown-issuer").len(),
        1,
        "{}",
        run.ctx()
    );
    assert!(run.of_type("tls_established").is_empty(), "{}", run.ctx());
    let ended = run.ended();
    assert_eq!(
        (&ended["outcome"], &ended["step"]),
        (&"failed".into(), &"tls".into()),
        "{}",
        run.ctx()
    );
}

#[test]
fn tls_private_ca_accepted_with_ca_path() {
    // Peer: Dovecot submission, STARTTLS.
    let (server, ca) = (peer("PEER_SUBMISSION"), file_var("PEER_CA"));
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--quit-after",
        "tls",
        "--json",
    ]);
    run.expect_code(0);
    let tls = run.one("tls_established");
    assert_eq!(tls["verified"], true, "{}", run.ctx());
    assert_eq!(tls["verification_error"], Value::Null, "{}", run.ctx());
    let cert_findings: Vec<&Value> = run
        .of_type("finding")
        .into_iter()
        .filter(|f| f["id"].as_str().is_some_and(|i| i.starts_with("tls.cert.")))
        .collect();
    assert!(cert_findings.is_empty(), "{}", run.ctx());
}

#[test]
fn tls_insecure_continues_and_reports() {
    // Peer: Dovecot submission, STARTTLS, without the CA.
    let server = peer("PEER_SUBMISSION");
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--insecure",
        "--quit-after",
        "ehlo",
        "--json",
    ]);
    run.expect_code(0);
    assert_eq!(
        run.findings("tls.cert.unknown-issuer").len(),
        1,
        "{}",
        run.ctx()
    );
    let tls = run.one("tls_established");
    assert_eq!(tls["verified"], false, "{}", run.ctx());
    assert!(tls["verification_error"].is_string(), "{}", run.ctx());
    // The session went on over TLS: EHLO answered inside the tunnel.
    let caps = run.of_type("capabilities");
    assert!(
        caps.iter().any(|c| c["tls"] == true),
        "no EHLO after TLS\n{}",
        run.ctx()
    );
    assert_eq!(run.ended()["outcome"], "stopped", "{}", run.ctx());
}

#[test]
fn tls_name_mismatch() {
    // Peer: Dovecot submission, STARTTLS; the certificate names localhost and 127.0.0.1.
    let (server, ca) = (peer("PEER_SUBMISSION"), file_var("PEER_CA"));
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--tls-sni",
        "wrong.example.test",
        "--quit-after",
        "ehlo",
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
    assert!(
        failed["chain"].as_array().is_some_and(|c| !c.is_empty()),
        "{}",
        run.ctx()
    );
    assert_eq!(
        run.findings("tls.cert.name-mismatch").len(),
        1,
        "{}",
        run.ctx()
    );
}

// ------------------------------------------------------------------------------ 5: --quit-after

/// Peer: Dovecot submission with STARTTLS, AUTH PLAIN and a message configured; stops
/// after `stage` and checks exactly which commands went out.
fn check_quit_after(stage: &str, expected_verbs: &[&str]) {
    let (server, ca, user, pass) = (
        peer("PEER_SUBMISSION"),
        file_var("PEER_CA"),
        user(),
        password(),
    );
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--auth",
        "PLAIN",
        "--auth-user",
        &user,
        "--auth-password",
        &pass,
        "--from",
        &user,
        "--to",
        "bob@example.test",
        "--data",
        "Subject: quit-after\n\nhello",
        "--quit-after",
        stage,
        "--json",
    ]);
    run.expect_code(0);
    let ended = run.ended();
    assert_eq!(ended["outcome"], "stopped", "{}", run.ctx());
    assert_eq!(ended["step"], stage, "{}", run.ctx());
    assert_eq!(
        run.one("session_started")["quit_after"],
        stage,
        "{}",
        run.ctx()
    );
    assert_eq!(
        run.sent_verbs(),
        expected_verbs,
        "commands sent\n{}",
        run.ctx()
    );
    if stage == "data" {
        assert_eq!(run.reply_to("DATA")["code"], 354, "{}", run.ctx());
    } else {
        assert_eq!(run.reply_to("QUIT")["code"], 221, "{}", run.ctx());
    }
}

#[test]
fn quit_after_connect() {
    // Peer: Dovecot submission.
    check_quit_after("connect", &["QUIT"]);
}

#[test]
fn quit_after_banner() {
    // Peer: Dovecot submission.
    check_quit_after("banner", &["QUIT"]);
}

#[test]
fn quit_after_first_ehlo() {
    // Peer: Dovecot submission.
    check_quit_after("first-ehlo", &["EHLO", "QUIT"]);
}

#[test]
fn quit_after_tls() {
    // Peer: Dovecot submission.
    check_quit_after("tls", &["EHLO", "STARTTLS", "QUIT"]);
}

#[test]
fn quit_after_ehlo() {
    // Peer: Dovecot submission.
    check_quit_after("ehlo", &["EHLO", "STARTTLS", "EHLO", "QUIT"]);
}

#[test]
fn quit_after_auth() {
    // Peer: Dovecot submission.
    check_quit_after("auth", &["EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"]);
}

#[test]
fn quit_after_mail() {
    // Peer: Dovecot submission.
    check_quit_after(
        "mail",
        &["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "QUIT"],
    );
}

#[test]
fn quit_after_rcpt() {
    // Peer: Dovecot submission.
    check_quit_after(
        "rcpt",
        &["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "QUIT"],
    );
}

#[test]
fn quit_after_data() {
    // Peer: Dovecot submission. No QUIT inside DATA: the session just ends.
    check_quit_after(
        "data",
        &["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA"],
    );
}

#[test]
fn quit_after_dot() {
    // Peer: Dovecot submission.
    check_quit_after(
        "dot",
        &[
            "EHLO",
            "STARTTLS",
            "EHLO",
            "AUTH",
            "MAIL",
            "RCPT",
            "DATA",
            "<message>",
            "QUIT",
        ],
    );
}

// ------------------------------------------------------------------------------ 6: seed 000

const SEED_000: &[u8] =
    b"From: a@example.test\nTo: b@example.test\nSubject: x\n\nline one\nline two\n";

fn seed_000_file() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut f, SEED_000).expect("write the seed message");
    f
}

#[test]
fn seed_000_raw_bare_lf_refused_by_postfix() {
    // Peer: Postfix with smtpd_forbid_bare_newline = reject (no exclusions).
    let server = peer("PEER_POSTFIX");
    let file = seed_000_file();
    let data = format!("@{}", file.path().display());
    let run = smtp(&[
        "--server",
        &server,
        "--from",
        "a@example.test",
        "--to",
        "b@example.test",
        "--raw",
        "--data",
        &data,
        "--json",
    ]);
    run.expect_code(26);
    let dot = run.reply_to(".");
    assert_eq!(
        (&dot["code"], &dot["enhanced_code"]),
        (&550.into(), &"5.5.2".into()),
        "{}",
        run.ctx()
    );
    assert!(
        dot["text"][0]
            .as_str()
            .is_some_and(|t| t.contains("bare <LF> received")),
        "{}",
        run.ctx()
    );
    let ended = run.ended();
    assert_eq!(
        (&ended["outcome"], &ended["step"]),
        (&"failed".into(), &"dot".into()),
        "{}",
        run.ctx()
    );

    let sent = run.one("data_sent");
    assert_eq!(sent["raw"], true, "{}", run.ctx());
    // The terminator is given in the escape grammar (events.schema.json).
    assert_eq!(sent["terminator"], "\\r\\n.\\r\\n", "{}", run.ctx());
    let (start, len) = (
        sent["offset"].as_u64().expect("offset") as usize,
        sent["length"].as_u64().expect("length") as usize,
    );

    // The client stream, rebuilt from the sent events, carries the file unchanged.
    let stream = run.client_stream();
    assert_eq!(&stream[start..start + len], SEED_000, "{}", run.ctx());
    let bare_lfs: BTreeSet<u64> = (start..start + len)
        .filter(|&i| stream[i] == b'\n' && (i == 0 || stream[i - 1] != b'\r'))
        .map(|i| i as u64)
        .collect();
    assert_eq!(bare_lfs.len(), 6, "{}", run.ctx());

    let findings = run.findings("smtp.data.bare-lf");
    let mut offsets = BTreeSet::new();
    for f in &findings {
        assert_eq!(f["direction"], "client", "{f}");
        assert_eq!(f["severity"], "error", "{f}");
        let off = f["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("finding without offset: {f}"));
        let i = off as usize;
        assert!(
            i < stream.len(),
            "finding offset {off} beyond the {}-byte client stream",
            stream.len()
        );
        assert_eq!(
            stream[i], b'\n',
            "byte at finding offset {off} is not LF: {f}"
        );
        assert!(
            i == 0 || stream[i - 1] != b'\r',
            "LF at {off} is preceded by CR: {f}"
        );
        offsets.insert(off);
    }
    assert_eq!(
        offsets,
        bare_lfs,
        "finding offsets vs the bare LFs in the client stream\n{}",
        run.ctx()
    );
}

#[test]
fn seed_000_raw_human_output() {
    // Peer: Postfix with smtpd_forbid_bare_newline = reject.
    let server = peer("PEER_POSTFIX");
    let file = seed_000_file();
    let data = format!("@{}", file.path().display());
    let run = smtp(&[
        "--server",
        &server,
        "--from",
        "a@example.test",
        "--to",
        "b@example.test",
        "--raw",
        "--data",
        &data,
    ]);
    run.expect_code(26);
    assert!(run.stdout.contains("bare <LF> received"), "{}", run.ctx());
    assert!(run.stdout.contains("<-  550 5.5.2"), "{}", run.ctx());
    assert!(
        run.stdout.contains("*** finding smtp.data.bare-lf"),
        "{}",
        run.ctx()
    );
    let summary_findings = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("findings "))
        .unwrap_or_default();
    assert!(
        summary_findings.contains("smtp.data.bare-lf")
            && summary_findings.contains("smtp.reply.bare-lf-refused"),
        "summary lacks the finding ids\n{}",
        run.ctx()
    );
}

#[test]
fn seed_000_normalised_accepted_by_postfix() {
    // Peer: Postfix with smtpd_forbid_bare_newline = reject, relaying to smtp-sink.
    let server = peer("PEER_POSTFIX");
    let file = seed_000_file();
    let data = format!("@{}", file.path().display());
    let run = smtp(&[
        "--server",
        &server,
        "--from",
        "a@example.test",
        "--to",
        "b@example.test",
        "--data",
        &data,
        "--json",
    ]);
    run.expect_code(0);
    assert!(
        run.findings("smtp.data.bare-lf").is_empty(),
        "{}",
        run.ctx()
    );
    assert_eq!(run.one("data_sent")["raw"], false, "{}", run.ctx());
    assert_eq!(run.reply_to(".")["code"], 250, "{}", run.ctx());
    assert_eq!(run.ended()["outcome"], "completed", "{}", run.ctx());
    let stream = run.client_stream();
    let bare =
        (0..stream.len()).find(|&i| stream[i] == b'\n' && (i == 0 || stream[i - 1] != b'\r'));
    assert_eq!(
        bare,
        None,
        "normalised stream still has a bare LF\n{}",
        run.ctx()
    );
}

// ------------------------------------------------------------------------------ 7: exit codes

#[test]
fn exit_2_connection_refused() {
    // Peer: none — a loopback port nothing listens on (bound, then released).
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let server = format!("127.0.0.1:{port}");
    let run = smtp(&["--server", &server, "--to", "a@example.test", "--json"]);
    run.expect_code(2);
    let ended = run.ended();
    assert_eq!(ended["step"], "connect", "{}", run.ctx());
    assert!(run.of_type("connected").is_empty(), "{}", run.ctx());
}

#[test]
fn exit_29_starttls_not_offered() {
    // Peer: smtp-sink (no STARTTLS).
    let server = peer("PEER_SMTP_SINK");
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--to",
        "a@example.test",
        "--json",
    ]);
    run.expect_code(29);
    let ended = run.ended();
    assert_eq!(
        (&ended["outcome"], &ended["step"]),
        (&"failed".into(), &"tls".into()),
        "{}",
        run.ctx()
    );
    assert!(
        !run.sent_verbs().contains(&"STARTTLS".to_string()),
        "{}",
        run.ctx()
    );
}

#[test]
fn exit_1_usage_errors() {
    // Peer: none (the arguments are refused before connecting).
    for args in [
        &[
            "--no-config",
            "smtp",
            "--server",
            "127.0.0.1:9",
            "--no-such-option",
            "--json",
        ][..],
        &[
            "--no-config",
            "smtp",
            "--server",
            "127.0.0.1:9",
            "--to",
            "a@example.test",
            "--quit-after",
            "lunch",
            "--json",
        ],
        &[
            "--no-config",
            "smtp",
            "--server",
            "127.0.0.1:9",
            "--to",
            "a@example.test",
            "--raw",
            "--json",
        ],
        &["--no-config", "smtp", "--server", "127.0.0.1:9", "--json"],
    ] {
        let run = mailscope(args);
        run.expect_code(1);
        assert!(
            run.stdout.is_empty(),
            "a usage error printed to stdout\n{}",
            run.ctx()
        );
        assert!(run.stderr.contains("error"), "{}", run.ctx());
    }
}

#[test]
fn exit_24_rcpt_refused_by_postfix() {
    // Peer: Postfix. mydestination is empty and local delivery disabled, so a recipient at
    // the server's own address literal is refused with 550 5.1.1.
    let server = peer("PEER_POSTFIX");
    let run = smtp(&[
        "--server",
        &server,
        "--from",
        "a@example.test",
        "--to",
        "nobody@[127.0.0.1]",
        "--json",
    ]);
    run.expect_code(24);
    let rcpt = run.one("recipient");
    assert_eq!(
        (&rcpt["accepted"], &rcpt["code"]),
        (&false.into(), &550.into()),
        "{}",
        run.ctx()
    );
    let ended = run.ended();
    assert_eq!(
        (&ended["outcome"], &ended["step"]),
        (&"failed".into(), &"rcpt".into()),
        "{}",
        run.ctx()
    );
}

#[test]
fn exit_10_fail_on_warning() {
    // Peer: smtp-sink, plaintext (no STARTTLS: a warning).
    let server = peer("PEER_SMTP_SINK");
    let base = [
        "--server",
        server.as_str(),
        "--to",
        "a@example.test",
        "--quit-after",
        "rcpt",
        "--json",
    ];
    let run = smtp(&[&base[..], &["--fail-on", "warning"]].concat());
    run.expect_code(10);
    let f = run.findings("smtp.starttls.not-offered");
    assert!(
        f.len() == 1 && f[0]["severity"] == "warning",
        "{}",
        run.ctx()
    );
    // Below the threshold the same run is a success.
    smtp(&[&base[..], &["--fail-on", "error"]].concat()).expect_code(0);
    smtp(&base).expect_code(0);
}

// ------------------------------------------------------------------------------ 10: key log

#[test]
fn keylog_file_written_and_announced() {
    // Peer: Dovecot submissions (implicit TLS).
    let (server, ca) = (peer("PEER_SUBMISSIONS"), file_var("PEER_CA"));
    let dir = tempfile::tempdir().expect("temp dir");
    for json in [false, true] {
        let path = dir
            .path()
            .join(if json { "keys-json.log" } else { "keys.log" });
        let path_s = path.display().to_string();
        let mut args = vec![
            "--server",
            &server,
            "--tls-on-connect",
            "--tls-ca-path",
            &ca,
            "--keylog",
            &path_s,
            "--quit-after",
            "ehlo",
        ];
        if json {
            args.push("--json");
        }
        let run = smtp(&args);
        run.expect_code(0);
        let keys = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("key log {path_s}: {e}\n{}", run.ctx()));
        let lines: Vec<&str> = keys
            .lines()
            .filter(|l| l.starts_with("CLIENT_HANDSHAKE_TRAFFIC_SECRET "))
            .collect();
        assert!(
            !lines.is_empty(),
            "no CLIENT_HANDSHAKE_TRAFFIC_SECRET in {path_s}:\n{keys}"
        );
        // NSS format: label, 32-byte client random and the secret, both hex.
        for l in &lines {
            let parts: Vec<&str> = l.split(' ').collect();
            assert!(
                parts.len() == 3
                    && parts[1].len() == 64
                    && parts[2].chars().all(|c| c.is_ascii_hexdigit()),
                "{l}"
            );
        }
        let human = if json { &run.stderr } else { &run.stdout };
        assert!(
            human
                .lines()
                .any(|l| l.starts_with("*** ") && l.contains(&path_s)),
            "no *** note naming {path_s}\n{}",
            run.ctx()
        );
        if json {
            assert!(
                run.of_type("note")
                    .iter()
                    .any(|n| n["text"].as_str().is_some_and(|t| t.contains(&path_s))),
                "{}",
                run.ctx()
            );
            assert_eq!(
                run.one("tls_established")["keylog"],
                path_s,
                "{}",
                run.ctx()
            );
        }
    }
}

// ------------------------------------------------------------ swaks-parity options (issue 3)

#[test]
fn tls_protocol_cipher_and_peer_cert() {
    // Peer: Dovecot submission (STARTTLS), which speaks TLS 1.2 and 1.3.
    let (server, ca) = (peer("PEER_SUBMISSION"), file_var("PEER_CA"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("peer.pem");
    let pem_arg = pem.display().to_string();
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--tls-protocol",
        "TLSv1.2",
        "--tls-cipher",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "--tls-get-peer-cert",
        &pem_arg,
        "--quit-after",
        "tls",
        "--json",
    ]);
    run.expect_code(0);
    let tls = run.one("tls_established");
    assert_eq!(tls["version"], "TLSv1.2", "{}", run.ctx());
    assert_eq!(
        tls["cipher_suite"],
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "{}",
        run.ctx()
    );
    let written = std::fs::read_to_string(&pem).expect("peer certificate written");
    assert_eq!(
        written.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "{written}"
    );
    // The written leaf is the one the TLS report describes.
    let der = {
        let b64: String = written
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        decode_b64(&b64)
    };
    assert!(der.len() > 100, "leaf certificate too short");
    // Versions and suites rustls cannot speak are refused before connecting (usage, exit 1).
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--tls-protocol",
        "TLSv1",
        "--quit-after",
        "tls",
    ]);
    run.expect_code(1);
    assert!(run.stderr.contains("TLS 1.2 and 1.3 only"), "{}", run.ctx());
    let run = smtp(&[
        "--server",
        &server,
        "--tls",
        "--tls-cipher",
        "DES-CBC3-SHA",
        "--quit-after",
        "tls",
    ]);
    run.expect_code(1);
    assert!(run.stderr.contains("not a suite"), "{}", run.ctx());
}

fn decode_b64(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut n) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((acc >> n) as u8);
        }
    }
    out
}

#[test]
fn local_interface_is_the_source_address() {
    // Peer: Postfix, which logs the client address; 127.0.0.2 is a loopback address too.
    let run = smtp(&[
        "--server",
        &peer("PEER_POSTFIX"),
        "--local-interface",
        "127.0.0.2",
        "--quit-after",
        "ehlo",
        "--json",
    ]);
    run.expect_code(0);
    assert!(
        run.one("connected")["local"]
            .as_str()
            .is_some_and(|l| l.starts_with("127.0.0.2:")),
        "{}",
        run.ctx()
    );
    let run = smtp(&[
        "--server",
        &peer("PEER_POSTFIX"),
        "--local-interface",
        "not-an-ip",
        "--quit-after",
        "ehlo",
    ]);
    run.expect_code(1);
}

#[test]
fn protocol_esmtpsa_means_tls_and_auth() {
    // Peer: Dovecot submission.
    let run = smtp(&[
        "--server",
        &peer("PEER_SUBMISSION"),
        "--protocol",
        "ESMTPSA",
        "--tls-ca-path",
        &file_var("PEER_CA"),
        "--auth-user",
        &user(),
        "--auth-password",
        &password(),
        "--quit-after",
        "auth",
        "--json",
    ]);
    run.expect_code(0);
    assert_eq!(
        run.one("tls_established")["verified"],
        true,
        "{}",
        run.ctx()
    );
    assert_eq!(
        run.one("authenticated")["mechanism"],
        "SCRAM-SHA-256",
        "{}",
        run.ctx()
    );
    // --protocol SMTP speaks HELO.
    let run = smtp(&[
        "--server",
        &peer("PEER_SMTP_SINK"),
        "--protocol",
        "SMTP",
        "--quit-after",
        "ehlo",
        "--json",
    ]);
    run.expect_code(0);
    assert!(
        run.sent()
            .iter()
            .any(|e| e["text"].as_str().is_some_and(|t| t.starts_with("HELO "))),
        "{}",
        run.ctx()
    );
}

#[test]
fn default_message_headers_body_and_attachment_reach_the_server() {
    // Peer: Postfix smtp-sink, which dumps each message it receives to a file.
    let dump_dir = var("PEER_SMTP_SINK_DUMP_DIR");
    let token = unique_token("parity");
    let dir = tempfile::tempdir().expect("tempdir");
    let att = dir.path().join("blob.bin");
    let blob: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    std::fs::write(&att, &blob).expect("write attachment");
    let attach = format!("@{}", att.display());
    let subject = format!("Subject: {token}");
    let run = smtp(&[
        "--server",
        &peer("PEER_SMTP_SINK"),
        "--from",
        "a@example.test",
        "--to",
        "b@example.test",
        "--header",
        &subject,
        "--add-header",
        "X-Mailscope-Test: yes",
        "--body",
        "hello body",
        "--attach",
        &attach,
        "--json",
    ]);
    run.expect_code(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let message = loop {
        let found = std::fs::read_dir(&dump_dir)
            .unwrap_or_else(|e| panic!("read {dump_dir}: {e}; {START_HINT}"))
            .filter_map(Result::ok)
            .filter_map(|f| std::fs::read(f.path()).ok())
            .find(|b| String::from_utf8_lossy(b).contains(&token));
        if let Some(m) = found {
            break String::from_utf8_lossy(&m).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "smtp-sink has no message with {token}\n{}",
            run.ctx()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let lower = message.to_ascii_lowercase();
    for needle in [
        "x-mailscope-test: yes",
        "message-id: <",
        "multipart/mixed",
        "blob.bin",
        "hello body",
    ] {
        assert!(lower.contains(needle), "{needle} missing from:\n{message}");
    }
    // The attachment's bytes survive the MIME round trip (base64 in the message).
    // smtp-sink's dump may store LF line ends: work line by line.
    let b64: String = message
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| !l.contains("blob.bin"))
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .take_while(|l| !l.starts_with("--"))
        .collect();
    assert_eq!(decode_b64(b64.trim()), blob, "attachment bytes differ");
    // --attach with --data is refused (usage).
    smtp(&[
        "--server",
        &peer("PEER_SMTP_SINK"),
        "--to",
        "b@example.test",
        "--data",
        "x",
        "--attach",
        &attach,
    ])
    .expect_code(1);
}

/// The client command lines of a run (its `sent` events), unescaped.
fn sent_lines(run: &Run) -> Vec<String> {
    run.sent()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .map(String::from)
        .collect()
}

#[test]
fn pipelining_chunking_and_dsn_against_postfix() {
    // Peer: the loopback Postfix, which offers PIPELINING, CHUNKING, DSN, SIZE and SMTPUTF8.
    let server = peer("PEER_POSTFIX");
    let base = [
        "--server",
        server.as_str(),
        "--from",
        "a@example.test",
        "--to",
        "b@example.test",
        "--json",
    ];
    let mut args = base.to_vec();
    args.push("--pipeline");
    let run = smtp(&args);
    run.expect_code(0);
    let lines = sent_lines(&run);
    // MAIL, RCPT and DATA went out together: one `sent` run with no reply between them.
    let mail = lines
        .iter()
        .position(|l| l.starts_with("MAIL FROM:"))
        .expect("MAIL");
    assert!(lines[mail].contains(" SIZE="), "SIZE= declared: {lines:?}");
    let replies_before_data = run
        .of_type("reply")
        .iter()
        .filter(|r| r["command"] == "MAIL" || r["command"] == "RCPT")
        .count();
    assert_eq!(replies_before_data, 2, "{}", run.ctx());

    let mut args = base.to_vec();
    args.extend(["--chunking", "--chunk-size", "50"]);
    let run = smtp(&args);
    run.expect_code(0);
    let chunks = run.of_type("chunk_sent");
    assert!(chunks.len() >= 3, "{}", run.ctx());
    assert_eq!(
        chunks.last().map(|c| c["last"].clone()),
        Some(Value::Bool(true)),
        "{}",
        run.ctx()
    );
    assert!(
        sent_lines(&run).iter().all(|l| l != "DATA\\r\\n"),
        "no DATA with --chunking"
    );

    let mut args = base.to_vec();
    args.extend([
        "--dsn-notify",
        "success,failure",
        "--dsn-ret",
        "hdrs",
        "--envid",
        "id+1",
        "--orcpt",
    ]);
    let run = smtp(&args);
    run.expect_code(0);
    let lines = sent_lines(&run);
    assert!(
        lines.iter().any(|l| l.starts_with("MAIL FROM:")
            && l.contains("RET=HDRS")
            && l.contains("ENVID=id+2B1")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("RCPT TO:")
            && l.contains("NOTIFY=SUCCESS,FAILURE")
            && l.contains("ORCPT=rfc822;")),
        "{lines:?}"
    );

    // BINARYMIME is not offered by Postfix: refused before MAIL is sent (exit 23), unless --lax.
    let mut args = base.to_vec();
    args.extend(["--body-type", "binarymime"]);
    let run = smtp(&args);
    run.expect_code(23);
    assert!(
        !sent_lines(&run).iter().any(|l| l.starts_with("MAIL")),
        "{}",
        run.ctx()
    );
}

#[test]
fn smuggling_probes_against_postfix() {
    // Peer: the loopback Postfix with smtpd_forbid_bare_newline = reject: the bare-LF
    // lookalikes are refused, none is taken as an end of data.
    let run = smtp(&[
        "--server",
        &peer("PEER_POSTFIX"),
        "--from",
        "a@example.test",
        "--to",
        "b@example.test",
        "--probe-smuggling",
        "--json",
        "--timeout",
        "10",
    ]);
    let probes = run.of_type("smuggling_probe");
    assert_eq!(probes.len(), 8, "{}", run.ctx());
    for p in &probes {
        assert!(
            matches!(p["verdict"].as_str(), Some("safe" | "refused")),
            "Postfix should be safe against {}: {}\n{}",
            p["variant"],
            p["verdict"],
            run.ctx()
        );
    }
    assert!(
        probes
            .iter()
            .any(|p| p["variant"] == "\\n.\\n" && p["verdict"] == "refused"),
        "{}",
        run.ctx()
    );
    assert!(
        run.findings("smtp.server.smuggling-accepted").is_empty(),
        "{}",
        run.ctx()
    );
    // Probes need a server named on the command line.
    smtp(&["--to", "b@example.test", "--probe-smuggling"]).expect_code(1);
}

#[test]
fn tls_verify_is_accepted_and_noted_after_session_started() {
    // Peer: Postfix smtp-sink. swaks' --tls-verify is the default here; the note about it
    // must not come before `session_started` (the harness checks the event order).
    let run = smtp(&[
        "--server",
        &peer("PEER_SMTP_SINK"),
        "--tls-verify",
        "--quit-after",
        "banner",
        "--json",
    ]);
    run.expect_code(0);
    assert!(
        run.of_type("note").iter().any(|n| n["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("--tls-verify"))),
        "{}",
        run.ctx()
    );
}

#[test]
fn show_time_counts_from_the_session_start() {
    // Peer: smtp-sink. swaks' --show-time-lapse: every transcript line carries the time
    // since the session started, in ms (a regression printed milliseconds since 1970).
    let server = peer("PEER_SMTP_SINK");
    let run = smtp(&[
        "--server",
        server.as_str(),
        "--to",
        "a@example.test",
        "--quit-after",
        "rcpt",
        "--show-time-lapse",
    ]);
    run.expect_code(0);
    let stamped: Vec<f64> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split_once(']'))
        .map(|(t, _)| t.trim().parse::<f64>().expect("a number of ms"))
        .collect();
    assert!(
        stamped.len() >= 6,
        "banner, EHLO, MAIL, RCPT, QUIT\n{}",
        run.ctx()
    );
    assert!(
        stamped.iter().all(|ms| (0.0..30_000.0).contains(ms)),
        "times since the start, not since 1970: {stamped:?}\n{}",
        run.ctx()
    );
    assert!(
        stamped.windows(2).all(|w| w[0] <= w[1]),
        "times go forward: {stamped:?}"
    );
}

#[test]
fn drop_after_send_leaves_without_reading_the_reply() {
    // Peer: smtp-sink. swaks' --drop-after-send: the stage's command goes out, the
    // connection closes, its reply is never read.
    let server = peer("PEER_SMTP_SINK");
    for (stage, last_sent) in [
        ("rcpt", "RCPT TO:<a@example.test>\\r\\n"),
        ("dot", ".\\r\\n"),
    ] {
        let run = smtp(&[
            "--server",
            server.as_str(),
            "--to",
            "a@example.test",
            "--data",
            "Subject: drop\n\nbody\n",
            "--drop-after-send",
            stage,
            "--json",
        ]);
        run.expect_code(0);
        let ended = run.ended();
        assert_eq!(ended["outcome"], "stopped", "{}", run.ctx());
        assert_eq!(ended["step"], stage, "{}", run.ctx());
        let events = json_events(&run);
        let last_io = events
            .iter()
            .rev()
            .find(|e| e["type"] == "sent" || e["type"] == "received")
            .expect("bytes went both ways");
        assert_eq!(last_io["type"], "sent", "{stage}: {}", run.ctx());
        assert!(
            last_io["text"]
                .as_str()
                .is_some_and(|t| t.ends_with(last_sent)),
            "{stage}: {last_io}"
        );
        assert!(
            !run.sent_verbs().contains(&"QUIT".to_string()),
            "{}",
            run.ctx()
        );
    }
    // Nothing is sent at the banner: a usage error, before connecting.
    let run = smtp(&["--server", server.as_str(), "--drop-after-send", "banner"]);
    run.expect_code(1);
}
