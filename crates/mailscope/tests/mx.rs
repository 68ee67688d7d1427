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

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const ENV_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.peers/env");
const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.schema.json");
const START_HINT: &str = "run `scripts/peers start` (as root, from the repository root)";
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

/// A peer's address from `.peers/env`, checked to accept a TCP connection now (NSD
/// listens on TCP as well as UDP).
fn peer(key: &str) -> SocketAddr {
    let addr = var(key);
    let sa: SocketAddr = addr.parse().unwrap_or_else(|e| {
        panic!("{key}={addr} in {ENV_FILE} is not an address ({e}); {START_HINT}")
    });
    if let Err(e) = TcpStream::connect_timeout(&sa, Duration::from_secs(3)) {
        panic!("peer {key} at {addr} does not accept connections ({e}); {START_HINT}");
    }
    sa
}

/// `--resolver` for the NSD peer.
fn resolver() -> String {
    peer("PEER_DNS").to_string()
}

/// The Postfix peer's port: every MX host in the test zones is loopback.
fn postfix_port() -> String {
    peer("PEER_POSTFIX").port().to_string()
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

/// `mailscope --no-config smtp --timeout 10 --resolver $PEER_DNS ARGS`: never `--server`.
fn smtp(args: &[&str]) -> Run {
    let dns = resolver();
    let mut all = vec!["--no-config", "smtp", "--timeout", "10", "--resolver", &dns];
    all.extend_from_slice(args);
    assert!(!all.contains(&"--server"), "these tests route by MX");
    mailscope(&all)
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

/// Parses and validates `--json` stdout: JSON lines valid against the schema, one session,
/// `session_started` first and `session_ended` last with the process's exit code.
fn json_events(run: &Run) -> Vec<Value> {
    let ctx = run.ctx();
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
        events.push(ev);
    }
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        assert_eq!(first["type"], "session_started", "first event\n{ctx}");
        assert_eq!(last["type"], "session_ended", "last event\n{ctx}");
        assert!(
            events.iter().all(|e| e["session"] == first["session"]),
            "session ids differ\n{ctx}"
        );
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

    fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == ty).collect()
    }

    /// The one event of this type.
    fn one(&self, ty: &str) -> &Value {
        let found = self.of_type(ty);
        assert_eq!(found.len(), 1, "number of `{ty}` events\n{}", self.ctx());
        found[0]
    }

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
