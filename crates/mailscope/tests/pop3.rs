//! `mailscope pop3` against the real Dovecot of `scripts/peers` (POP3 on PEER_POP3 with
//! STLS, POP3S on PEER_POP3S). A missing peer fails the test with a hint; nothing skips.
//!
//! Dovecot here has `auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256`, so
//! it does not offer APOP (no `<timestamp>` in the greeting); the APOP test checks that
//! mailscope says so and exits 28 without sending anything secret.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailscope_proto::escape::unescape;
use serde_json::Value;

const ENV_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.peers/env");
const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.schema.json");
const START_HINT: &str = "run `bash scripts/peers start` (as root, from the repository root)";
/// Every run passes `--timeout 10`; a run still going after this is killed and fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------ peers

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

/// A value from `.peers/env`; fails the test when it is missing.
fn var(key: &str) -> String {
    match peer_env().get(key) {
        Some(v) if !v.is_empty() => v.clone(),
        _ => panic!("{ENV_FILE} has no {key}; {START_HINT}"),
    }
}

/// A file named in `.peers/env` that exists.
fn file_var(key: &str) -> String {
    let path = var(key);
    assert!(
        Path::new(&path).is_file(),
        "{key}={path} from {ENV_FILE} does not exist; {START_HINT}"
    );
    path
}

/// A peer's `host:port` from `.peers/env`, checked to accept a TCP connection now.
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

fn user() -> String {
    var("PEER_USER")
}

fn password() -> String {
    var("PEER_PASSWORD")
}

// ------------------------------------------------------------------------------ running

/// One finished `mailscope` run.
struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
    /// The `--json` events (empty without `--json`), already validated.
    events: Vec<Value>,
}

/// Runs the binary with exactly these arguments, kills it after [`RUN_LIMIT`], and validates
/// the output of `--json` runs.
fn mailscope(args: &[&str]) -> Run {
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
            panic!(
                "mailscope {args:?} still ran after {RUN_LIMIT:?} despite --timeout 10; killed it"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    let mut run = Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status
            .code()
            .unwrap_or_else(|| panic!("mailscope {args:?} died from a signal: {status}")),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        events: Vec::new(),
    };
    if args.contains(&"--json") {
        assert!(
            String::from_utf8(stdout).is_ok(),
            "--json stdout is not UTF-8\n{}",
            run.ctx()
        );
        run.events = json_events(&run);
    }
    run
}

fn schema_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let text = std::fs::read_to_string(SCHEMA_FILE)
            .unwrap_or_else(|e| panic!("read {SCHEMA_FILE}: {e}"));
        let schema: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{SCHEMA_FILE} is not JSON: {e}"));
        jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{SCHEMA_FILE} does not compile: {e}"))
    })
}

/// Parses and validates `--json` stdout: nothing but JSON lines, each valid against the
/// schema, and the envelope invariants docs/events.md states.
fn json_events(run: &Run) -> Vec<Value> {
    let ctx = run.ctx();
    assert!(
        run.stdout.is_empty() || run.stdout.ends_with('\n'),
        "--json stdout does not end in a newline\n{ctx}"
    );
    let validator = schema_validator();
    let mut events = Vec::new();
    for (i, line) in run.stdout.lines().enumerate() {
        let n = i + 1;
        let ev: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line {n} is not JSON ({e}): {line:?}\n{ctx}"));
        let errors: Vec<String> = validator
            .iter_errors(&ev)
            .map(|e| format!("  {} (at {})", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "stdout line {n} violates events.schema.json:\n{}\n{line}\n{ctx}",
            errors.join("\n")
        );
        if matches!(ev["type"].as_str(), Some("sent" | "received")) {
            let text = ev["text"].as_str().unwrap_or_default();
            let bytes = unescape(text, false).unwrap_or_else(|e| {
                panic!("stdout line {n}: `text` does not follow the escape grammar ({e}): {line}\n{ctx}")
            });
            if ev["redacted"] == Value::Bool(false) {
                assert_eq!(
                    Some(bytes.len() as u64),
                    ev["length"].as_u64(),
                    "stdout line {n}: unescaped text length differs from `length`: {line}\n{ctx}"
                );
            }
        }
        events.push(ev);
    }
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        assert_eq!(first["type"], "session_started", "first event\n{ctx}");
        assert_eq!(last["type"], "session_ended", "last event\n{ctx}");
        assert!(
            events.iter().all(|e| e["session"] == first["session"]),
            "session ids differ\n{ctx}"
        );
        let ended = events
            .iter()
            .filter(|e| e["type"] == "session_ended")
            .count();
        assert_eq!(ended, 1, "session_ended events\n{ctx}");
        assert_eq!(
            last["exit_code"].as_i64(),
            Some(i64::from(run.code)),
            "session_ended exit_code vs process exit code\n{ctx}"
        );
    }
    events
}

impl Run {
    /// The run, for assertion messages.
    fn ctx(&self) -> String {
        format!(
            "--- mailscope {}\n--- exit code {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n{}", self.ctx());
        self
    }

    fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn assert_no_secret(&self, secret: &str) {
        assert!(
            !self.all_output().contains(secret),
            "a secret appears in the output\n{}",
            self.ctx()
        );
    }

    fn types(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect()
    }
}

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
