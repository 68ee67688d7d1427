//! The harness the peer test files share (`peers.rs`, `mx.rs`, `pop3.rs`, `imap.rs`; the
//! sink tests use the schema validator and the pipe reader): reading `.peers/env`, running
//! the `mailscope` binary with a time limit, and validating `--json` output against
//! `docs/events.schema.json` with the envelope invariants of docs/events.md.
//!
//! The peer tests never skip: a missing env file, a missing key or a peer that does not
//! accept connections fails the test with [`START_HINT`].

// Each test file is its own crate and compiles this module on its own; no file uses every
// helper, so the ones a given file does not call would otherwise warn as dead code.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailscope_proto::escape::unescape;
use serde_json::Value;

pub const ENV_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.peers/env");
pub const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.schema.json");
pub const START_HINT: &str = "run `bash scripts/peers start` (as root, from the repository root)";
/// Every run passes `--timeout 10`; a run still going after this is killed and fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------ peers

pub fn peer_env() -> &'static HashMap<String, String> {
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
pub fn var(key: &str) -> String {
    match peer_env().get(key) {
        Some(v) if !v.is_empty() => v.clone(),
        _ => panic!("{ENV_FILE} has no {key}; {START_HINT}"),
    }
}

/// A file named in `.peers/env` that exists.
pub fn file_var(key: &str) -> String {
    let path = var(key);
    assert!(
        Path::new(&path).is_file(),
        "{key}={path} from {ENV_FILE} does not exist; {START_HINT}"
    );
    path
}

/// A peer's address from `.peers/env`, checked to accept a TCP connection now.
pub fn peer_addr(key: &str) -> SocketAddr {
    let addr = var(key);
    let sa: SocketAddr = addr.parse().unwrap_or_else(|e| {
        panic!("{key}={addr} in {ENV_FILE} is not an address ({e}); {START_HINT}")
    });
    if let Err(e) = TcpStream::connect_timeout(&sa, Duration::from_secs(3)) {
        panic!("peer {key} at {addr} does not accept connections ({e}); {START_HINT}");
    }
    sa
}

/// A peer's `host:port` from `.peers/env` (as written there), checked to accept a TCP
/// connection now.
pub fn peer(key: &str) -> String {
    peer_addr(key);
    var(key)
}

pub fn user() -> String {
    var("PEER_USER")
}

pub fn password() -> String {
    var("PEER_PASSWORD")
}

/// A token no earlier run used (for finding our message in smtp-sink's dumps).
pub fn unique_token(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("mailscope-peers-{what}-{}-{nanos}", std::process::id())
}

// ------------------------------------------------------------------------------ running

/// One finished `mailscope` run.
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The `--json` events (empty without `--json`), already validated.
    pub events: Vec<Value>,
}

/// Runs the binary with exactly these arguments, kills it after [`RUN_LIMIT`], and validates
/// the output of `--json` runs.
pub fn mailscope(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(args)
        .env_remove("SSLKEYLOGFILE")
        .env_remove("MAILSCOPE_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the mailscope binary");
    let out = read_all(child.stdout.take().expect("stdout pipe"));
    let err = read_all(child.stderr.take().expect("stderr pipe"));
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

pub fn schema_validator() -> &'static jsonschema::Validator {
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
pub fn json_events(run: &Run) -> Vec<Value> {
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
        // A session (smtp, pop3, imap, ...) or a check (check, spf, dnsbl, ...).
        let (start, end) = if first["type"] == "check_started" {
            ("check_started", "check_summary")
        } else {
            ("session_started", "session_ended")
        };
        assert_eq!(first["type"], start, "first event\n{ctx}");
        assert_eq!(last["type"], end, "last event\n{ctx}");
        assert!(
            events.iter().all(|e| e["session"] == first["session"]),
            "session ids differ\n{ctx}"
        );
        let ended = events.iter().filter(|e| e["type"] == end).count();
        assert_eq!(ended, 1, "{end} events\n{ctx}");
        assert_eq!(
            last["exit_code"].as_i64(),
            Some(i64::from(run.code)),
            "{end} exit_code vs process exit code\n{ctx}"
        );
    }
    events
}

impl Run {
    /// The run, for assertion messages.
    pub fn ctx(&self) -> String {
        format!(
            "--- mailscope {}\n--- exit code {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n{}", self.ctx());
        self
    }

    /// stdout and stderr together.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    pub fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == ty).collect()
    }

    /// The one event of this type.
    pub fn one(&self, ty: &str) -> &Value {
        let found = self.of_type(ty);
        assert_eq!(found.len(), 1, "number of `{ty}` events\n{}", self.ctx());
        found[0]
    }

    pub fn ended(&self) -> &Value {
        self.one("session_ended")
    }

    pub fn findings(&self, id: &str) -> Vec<&Value> {
        self.of_type("finding")
            .into_iter()
            .filter(|f| f["id"] == id)
            .collect()
    }

    /// The last reply event answering `command` (`.` for the final dot; AUTH has a 334
    /// reply per challenge before its final one).
    pub fn reply_to(&self, command: &str) -> &Value {
        let found = self
            .of_type("reply")
            .into_iter()
            .rfind(|r| r["command"] == command);
        found.unwrap_or_else(|| panic!("no reply to {command}\n{}", self.ctx()))
    }

    /// `sent` events in stream order, checked to cover the client stream without gaps.
    pub fn sent(&self) -> Vec<&Value> {
        let mut sent = self.of_type("sent");
        sent.sort_by_key(|e| e["offset"].as_u64());
        let mut at = 0;
        for e in &sent {
            assert_eq!(e["direction"], "client", "{e}\n{}", self.ctx());
            assert_eq!(
                e["offset"].as_u64(),
                Some(at),
                "gap or overlap in the sent events at {e}\n{}",
                self.ctx()
            );
            at += e["length"].as_u64().expect("length");
        }
        sent
    }

    /// The exact client byte stream, rebuilt from the `sent` events (none may be redacted).
    pub fn client_stream(&self) -> Vec<u8> {
        let mut stream = Vec::new();
        for e in self.sent() {
            assert_eq!(
                e["redacted"], false,
                "cannot rebuild the stream through a redaction: {e}"
            );
            stream.extend(
                unescape(e["text"].as_str().expect("text"), false).expect("escape grammar"),
            );
        }
        stream
    }

    /// What the client sent, one word per `sent` event: the command verb, or `<message>`
    /// for the DATA content.
    pub fn sent_verbs(&self) -> Vec<String> {
        let data_offset = self
            .of_type("data_sent")
            .first()
            .and_then(|d| d["offset"].as_u64());
        self.sent()
            .into_iter()
            .map(|e| {
                if e["offset"].as_u64() == data_offset {
                    return "<message>".to_string();
                }
                let bytes =
                    unescape(e["text"].as_str().expect("text"), false).expect("escape grammar");
                String::from_utf8_lossy(&bytes)
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// A secret (a password, a token, a wire form of one) appears nowhere in the output.
    pub fn assert_no_secret(&self, secret: &str) {
        assert!(
            !self.all_output().contains(secret),
            "a secret appears in the output\n{}",
            self.ctx()
        );
    }

    /// The event types in order.
    pub fn types(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect()
    }
}

// ------------------------------------------------------------------------------ processes

/// Reads a child's pipe to the end on its own thread.
pub fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = pipe.read_to_end(&mut v);
        v
    })
}

/// A program found on PATH or in the usual system directories (`/usr/sbin` too); fails the
/// test with `install_hint` when missing.
pub fn find_tool(name: &str, install_hint: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed (not on PATH nor in /usr/sbin): {install_hint}")
        })
}
