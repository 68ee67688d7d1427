//! `mailscope imap` against the real Dovecot of `scripts/peers` (IMAP with STARTTLS on
//! `PEER_IMAP`, implicit TLS on `PEER_IMAPS`). These tests never skip: a missing env file or
//! a peer that does not answer fails with a hint to run `bash scripts/peers start`.
//! Every `--json` run's stdout is validated against `docs/events.schema.json`.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailscope_proto::escape::unescape;
use serde_json::Value;

const ENV_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.peers/env");
const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.schema.json");
const START_HINT: &str = "run `bash scripts/peers start` (as root, from the repository root)";
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn peer_env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let text = std::fs::read_to_string(ENV_FILE).unwrap_or_else(|e| {
            panic!("cannot read {ENV_FILE} ({e}): the test peers are not running; {START_HINT}")
        });
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    })
}

fn var(key: &str) -> String {
    match peer_env().get(key) {
        Some(v) if !v.is_empty() => v.clone(),
        _ => panic!("{ENV_FILE} has no {key}; {START_HINT}"),
    }
}

fn peer(key: &str) -> String {
    let addr = var(key);
    let sa: SocketAddr = addr.parse().unwrap_or_else(|e| {
        panic!("{key}={addr} in {ENV_FILE} is not an address ({e}); {START_HINT}")
    });
    if let Err(e) = TcpStream::connect_timeout(&sa, Duration::from_secs(3)) {
        panic!("peer {key} at {addr} does not accept connections ({e}); {START_HINT}");
    }
    addr
}

struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
}

impl Run {
    fn ctx(&self) -> String {
        format!(
            "args: {:?}\nexit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    /// Neither the password nor its base64 forms appear anywhere.
    fn assert_no_secret(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret),
            "secret on stdout\n{}",
            self.ctx()
        );
        assert!(
            !self.stderr.contains(secret),
            "secret on stderr\n{}",
            self.ctx()
        );
    }
}

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
    run_bin(&all, json)
}

fn run_bin(args: &[&str], json: bool) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(args)
        .env_remove("SSLKEYLOGFILE")
        .env_remove("MAILSCOPE_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the mailscope binary");
    let reader = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = pipe.read_to_end(&mut v);
            v
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout pipe")));
    let err = reader(Box::new(child.stderr.take().expect("stderr pipe")));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mailscope") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mailscope {args:?} still ran after {RUN_LIMIT:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    let mut run = Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        events: Vec::new(),
    };
    if json {
        run.events = json_events(&run);
    }
    run
}

fn json_events(run: &Run) -> Vec<Value> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        let text = std::fs::read_to_string(SCHEMA_FILE).expect("read the schema");
        let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    });
    let ctx = run.ctx();
    let mut events = Vec::new();
    for (i, line) in run.stdout.lines().enumerate() {
        let ev: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line {} is not JSON ({e}): {line}\n{ctx}", i + 1));
        let errors: Vec<String> = validator
            .iter_errors(&ev)
            .map(|e| format!("  {} (at {})", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "line {} violates the schema:\n{}\n{line}\n{ctx}",
            i + 1,
            errors.join("\n")
        );
        if matches!(ev["type"].as_str(), Some("sent" | "received")) {
            let text = ev["text"].as_str().unwrap_or_default();
            let bytes = unescape(text, false).expect("escape grammar");
            if ev["redacted"] == Value::Bool(false) {
                assert_eq!(
                    Some(bytes.len() as u64),
                    ev["length"].as_u64(),
                    "{line}\n{ctx}"
                );
            }
        }
        events.push(ev);
    }
    assert_eq!(
        events.first().map(|e| e["type"].clone()),
        Some("session_started".into()),
        "{ctx}"
    );
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some("session_ended".into()),
        "{ctx}"
    );
    assert_eq!(
        events.last().and_then(|e| e["exit_code"].as_i64()),
        Some(i64::from(run.code)),
        "{ctx}"
    );
    assert!(
        events.iter().all(|e| e["session"] == events[0]["session"]),
        "{ctx}"
    );
    events
}

fn user() -> String {
    var("PEER_USER")
}
fn password() -> String {
    var("PEER_PASSWORD")
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
    let run = run_bin(
        &[
            "--no-config",
            "imap",
            "--server",
            "127.0.0.1:1",
            "--timeout",
            "5",
        ],
        false,
    );
    assert_eq!(run.code, 2, "{}", run.ctx());
}

#[test]
fn help_has_examples_and_exit_codes() {
    let run = run_bin(&["imap", "--help"], false);
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
