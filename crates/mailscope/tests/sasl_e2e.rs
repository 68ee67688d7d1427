//! SASL end to end: our `mailscope smtp` against our `mailscope sink`, both the real binary
//! as child processes over real TLS on loopback — SCRAM-SHA-1-PLUS and SCRAM-SHA-256-PLUS
//! with both channel binding types on TLS 1.3 and 1.2, XOAUTH2 and OAUTHBEARER (tokens from
//! `MAILSCOPE_TOKEN`, never in any output), EXTERNAL with a client certificate made here with
//! openssl, the failures (wrong password, wrong token, no certificate) — and Python's smtplib
//! logging in with PLAIN, so the longer AUTH list and the certificate request break no real
//! client.
//!
//! Peers: the sink is mailscope's own (no other server speaks SCRAM -PLUS here: Dovecot 2.3
//! in `scripts/peers` does not); openssl and python3 come from `scripts/peers install`, and a
//! missing one fails the test, never skips it. Every `--json` line of both programs is
//! checked against `docs/events.schema.json`.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{find_tool, read_all, schema_validator};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mailscope");
const INSTALL_HINT: &str =
    "run `bash scripts/peers install` as root (it installs openssl and python3)";
/// The password every SCRAM user has in the sink's accept-any mode (`mailscope sink --help`).
const SINK_SCRAM_PASSWORD: &str = "mailscope";
/// A bearer token that must never show up in any output.
const TOKEN: &str = "ya29.e2e-SECRET-token-4b1d";
const USERS: &str = "alice@example.test:{PLAIN}correct-horse-battery::::::\n";
const LIMIT: Duration = Duration::from_secs(60);

/// One `--json` stdout line: JSON, valid against the schema.
fn event(line: &str, who: &str) -> Value {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{who}: stdout line is not JSON ({e}): {line}"));
    if let Err(e) = schema_validator().validate(&v) {
        panic!("{who}: event does not match docs/events.schema.json: {e}\n{line}");
    }
    v
}

/// A program found on PATH (or the usual directories); fails the test when missing.
fn tool(name: &str) -> PathBuf {
    find_tool(name, INSTALL_HINT)
}

/// A running `mailscope sink` storing in a temporary directory; killed when dropped.
struct Sink {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    events: Arc<Mutex<Vec<Value>>>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Sink {
    fn start(extra: &[&str]) -> Sink {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store");
        let mut child = Command::new(BIN)
            .args([
                "--no-config",
                "--json",
                "sink",
                "--listen",
                "smtp://127.0.0.1:0",
            ])
            .arg("--store")
            .arg(&store)
            .args(extra)
            .env_remove("MAILSCOPE_PASSWORD")
            .env_remove("MAILSCOPE_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailscope sink");
        let stderr = Some(read_all(child.stderr.take().expect("stderr")));
        let events = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let stdout = child.stdout.take().expect("stdout");
            let (events, lines) = (events.clone(), lines.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let v = event(&line, "sink");
                    if v["type"] == "sink_started" {
                        let _ = tx.send(v.clone());
                    }
                    lines.lock().expect("lines").push(line);
                    events.lock().expect("events").push(v);
                }
            });
        }
        let started = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the sink did not print sink_started within 20 s"));
        let listener = started["listeners"][0]
            .as_str()
            .expect("listener")
            .to_owned();
        let port = listener
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {listener}"));
        Sink {
            child,
            dir,
            port,
            events,
            lines,
            stderr,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("store/tls/ca.pem")
    }

    fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until an event of type `ty` satisfies `pred`; fails after 20 s.
    fn wait_for(&self, ty: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = self
                .events
                .lock()
                .expect("events")
                .iter()
                .find(|v| v["type"] == ty && pred(v))
            {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {ty} event from the sink:\n{}",
                self.stdout_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The notes the sink printed (`note` events).
    fn notes(&self) -> Vec<String> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|v| v["type"] == "note")
            .filter_map(|v| v["text"].as_str().map(str::to_owned))
            .collect()
    }

    fn stdout_text(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Stops the sink and returns everything it wrote (stdout and stderr).
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().expect("stderr reader"))
            .unwrap_or_default();
        format!("{}\n{}", self.stdout_text(), String::from_utf8_lossy(&err))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished `mailscope smtp --json` run.
struct Run {
    what: String,
    code: Option<i32>,
    events: Vec<Value>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ctx(&self) -> String {
        format!(
            "--- {}\n--- exit {:?}\n--- stderr:\n{}",
            self.what, self.code, self.stderr
        )
    }

    fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.events.iter().filter(|v| v["type"] == ty).collect()
    }

    fn notes(&self) -> Vec<&str> {
        self.of_type("note")
            .into_iter()
            .filter_map(|v| v["text"].as_str())
            .collect()
    }

    fn authenticated(&self) -> Option<String> {
        self.of_type("authenticated")
            .first()
            .and_then(|v| v["mechanism"].as_str().map(str::to_owned))
    }

    fn ended(&self) -> &Value {
        self.of_type("session_ended")
            .last()
            .copied()
            .unwrap_or_else(|| panic!("no session_ended event\n{}", self.ctx()))
    }

    fn all_text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// `mailscope smtp --json` against the sink with STARTTLS (verified against the sink's CA),
/// stopping after AUTH; `env` is set on the child (MAILSCOPE_PASSWORD and MAILSCOPE_TOKEN are
/// cleared first).
fn smtp(sink: &Sink, args: &[&str], env: &[(&str, &str)]) -> Run {
    let ca = sink.ca();
    let mut cmd = Command::new(BIN);
    cmd.args(["--no-config", "--json", "smtp", "--server", &sink.server()])
        .args(["--tls", "--tls-ca-path"])
        .arg(&ca)
        .args(["--to", "bob@example.test", "--quit-after", "auth"])
        .args(args)
        .env_remove("MAILSCOPE_PASSWORD")
        .env_remove("MAILSCOPE_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("mailscope smtp {}", args.join(" "));
    let mut child = cmd.spawn().expect("start mailscope smtp");
    let out = read_all(child.stdout.take().expect("stdout"));
    let err = read_all(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} ran longer than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&out.join().expect("stdout reader")).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned();
    let events = stdout.lines().map(|l| event(l, &what)).collect();
    Run {
        what,
        code: status.code(),
        events,
        stdout,
        stderr,
    }
}

fn password(p: &str) -> [(&str, &str); 1] {
    [("MAILSCOPE_PASSWORD", p)]
}

fn expect_ok(run: &Run, mechanism: &str) {
    assert_eq!(run.code, Some(0), "{}", run.ctx());
    assert_eq!(
        run.authenticated().as_deref(),
        Some(mechanism),
        "{}",
        run.ctx()
    );
}

fn expect_auth_failure(run: &Run) {
    assert_eq!(run.code, Some(28), "{}", run.ctx());
    assert_eq!(run.ended()["step"], "auth", "{}", run.ctx());
}

// ------------------------------------------------------------------------ SCRAM -PLUS

#[test]
fn scram_plus_with_both_binding_types_on_tls_1_3_and_1_2() {
    let sink = Sink::start(&[]);
    for mech in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
        for cb in ["tls-exporter", "tls-server-end-point"] {
            for version in ["TLSv1.3", "TLSv1.2"] {
                let run = smtp(
                    &sink,
                    &[
                        "--auth",
                        mech,
                        "--auth-user",
                        "carol@example.test",
                        "--tls-channel-binding",
                        cb,
                        "--tls-protocol",
                        version,
                    ],
                    &password(SINK_SCRAM_PASSWORD),
                );
                expect_ok(&run, mech);
                assert_eq!(
                    run.of_type("authenticated")[0]["server_verified"],
                    true,
                    "{}",
                    run.ctx()
                );
                assert!(
                    run.notes()
                        .iter()
                        .any(|n| n.starts_with(&format!("AUTH {mech}: channel binding {cb} ("))),
                    "{}",
                    run.ctx()
                );
                let sent: Vec<&str> = run
                    .of_type("sent")
                    .iter()
                    .filter_map(|v| v["text"].as_str())
                    .collect();
                assert!(
                    sent.iter().any(|t| t.starts_with(&format!(
                        "AUTH {mech} <redacted: p={cb},,n=carol@example.test,r="
                    ))),
                    "{sent:?}"
                );
                let tls = &run.of_type("tls_established")[0]["version"];
                assert_eq!(tls, version, "{}", run.ctx());
            }
            let checked = format!("AUTH {mech}: channel binding {cb} checked");
            sink.wait_for("note", |v| {
                v["text"].as_str().is_some_and(|t| t.starts_with(&checked))
            });
        }
    }
    let n = sink
        .notes()
        .iter()
        .filter(|n| n.contains("channel binding") && n.contains("checked"))
        .count();
    assert_eq!(n, 8, "{}", sink.stdout_text());
}

#[test]
fn auth_picks_scram_sha256_plus_inside_tls_and_the_default_binding_follows_the_version() {
    let sink = Sink::start(&[]);
    for (version, cb) in [
        ("TLSv1.3", "tls-exporter"),
        ("TLSv1.2", "tls-server-end-point"),
    ] {
        let run = smtp(
            &sink,
            &[
                "--auth",
                "--auth-user",
                "dave@example.test",
                "--tls-protocol",
                version,
            ],
            &password(SINK_SCRAM_PASSWORD),
        );
        expect_ok(&run, "SCRAM-SHA-256-PLUS");
        let chosen = run.of_type("auth_mechanism_chosen");
        assert_eq!(chosen[0]["mechanism"], "SCRAM-SHA-256-PLUS");
        assert_eq!(chosen[0]["explicit"], false);
        assert!(
            run.notes()
                .iter()
                .any(|n| n.starts_with(&format!("AUTH SCRAM-SHA-256-PLUS: channel binding {cb} ("))),
            "{version}: {}",
            run.ctx()
        );
    }
    let a = sink.wait_for("client_authenticated", |v| {
        v["authcid"] == "dave@example.test"
    });
    assert_eq!(a["mechanism"], "SCRAM-SHA-256-PLUS");
}

#[test]
fn scram_plus_failures_are_auth_failures() {
    // Accept-any mode: SCRAM has one fixed password, so another one is refused.
    let sink = Sink::start(&[]);
    let run = smtp(
        &sink,
        &[
            "--auth",
            "SCRAM-SHA-256-PLUS",
            "--auth-user",
            "eve@example.test",
        ],
        &password("not-the-sink-password"),
    );
    expect_auth_failure(&run);
    assert!(
        run.ended()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("535 5.7.8")),
        "{}",
        run.ctx()
    );
    drop(sink);
    // -PLUS outside TLS (AUTH offered in plaintext): refused before anything is sent, with
    // the reason.
    let sink = Sink::start(&["--insecure-auth-plaintext"]);
    let mut cmd = Command::new(BIN);
    let out = cmd
        .args(["--no-config", "smtp", "--server", &sink.server()])
        .args(["--to", "bob@example.test", "--quit-after", "auth"])
        .args([
            "--auth",
            "SCRAM-SHA-256-PLUS",
            "--auth-user",
            "eve",
            "--insecure-auth-plaintext",
        ])
        .env("MAILSCOPE_PASSWORD", SINK_SCRAM_PASSWORD)
        .output()
        .expect("run mailscope smtp");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(28), "{text}");
    assert!(
        text.contains("does not offer AUTH SCRAM-SHA-256-PLUS") && text.contains("inside TLS only"),
        "{text}"
    );
    drop(sink);

    // A users file: the right password passes, a wrong one is 535 (exit 28).
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.passwd");
    std::fs::write(&users, USERS).expect("write users");
    let sink = Sink::start(&["--auth-users", users.to_str().expect("path")]);
    for mech in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
        let args = ["--auth", mech, "--auth-user", "alice@example.test"];
        expect_ok(
            &smtp(&sink, &args, &password("correct-horse-battery")),
            mech,
        );
        let run = smtp(&sink, &args, &password("wrong"));
        expect_auth_failure(&run);
        assert!(!run.all_text().contains("correct-horse"), "{}", run.ctx());
    }
    let all = sink.stop();
    assert!(!all.contains("correct-horse"), "{all}");
}

// ------------------------------------------------------------------------ XOAUTH2, OAUTHBEARER

#[test]
fn oauth_mechanisms_with_any_token_and_the_token_never_shown() {
    let sink = Sink::start(&[]);
    for mech in ["XOAUTH2", "OAUTHBEARER"] {
        let run = smtp(
            &sink,
            &["--auth", mech, "--auth-user", "frank@example.test"],
            &[("MAILSCOPE_TOKEN", TOKEN)],
        );
        expect_ok(&run, mech);
        assert!(!run.all_text().contains("SECRET"), "{}", run.ctx());
        let sent: Vec<&str> = run
            .of_type("sent")
            .iter()
            .filter_map(|v| v["text"].as_str())
            .collect();
        let want = match mech {
            "XOAUTH2" => {
                "AUTH XOAUTH2 <redacted: user=\"frank@example.test\", 26-byte bearer token>"
            }
            _ => {
                "AUTH OAUTHBEARER <redacted: authzid=\"frank@example.test\", 26-byte bearer token>"
            }
        };
        assert!(sent.iter().any(|t| t.starts_with(want)), "{sent:?}");
        let a = sink.wait_for("client_authenticated", |v| v["mechanism"] == mech);
        assert_eq!(a["authcid"], "frank@example.test");
        assert!(
            sink.notes().iter().any(|n| n.contains(&format!(
                "AUTH {mech} for \"frank@example.test\" accepted without checking: no users file (any bearer token)"
            ))),
            "{}",
            sink.stdout_text()
        );
    }
    // No password sources for a token mechanism, and no token from the command line.
    let run = smtp(
        &sink,
        &[
            "--auth",
            "XOAUTH2",
            "--auth-user",
            "frank",
            "--auth-password",
            TOKEN,
        ],
        &[],
    );
    assert_eq!(run.code, Some(1), "{}", run.ctx());
    assert!(
        run.stderr.contains("bearer token, not a password"),
        "{}",
        run.ctx()
    );
    let all = sink.stop();
    assert!(!all.contains("SECRET"), "{all}");
}

#[test]
fn oauth_with_a_users_file_refuses_a_wrong_token_with_the_rfc_7628_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.passwd");
    std::fs::write(&users, format!("grace@example.test:{{PLAIN}}{TOKEN}\n")).expect("write");
    let token_file = dir.path().join("token.txt");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write");
    let sink = Sink::start(&["--auth-users", users.to_str().expect("path")]);
    for mech in ["XOAUTH2", "OAUTHBEARER"] {
        // The right token, from a file.
        let run = smtp(
            &sink,
            &[
                "--auth",
                mech,
                "--auth-user",
                "grace@example.test",
                "--auth-token-file",
                token_file.to_str().expect("path"),
            ],
            &[],
        );
        expect_ok(&run, mech);
        // A stale token: the error challenge, the acknowledgement, then 535 (exit 28).
        let run = smtp(
            &sink,
            &["--auth", mech, "--auth-user", "grace@example.test"],
            &[("MAILSCOPE_TOKEN", "ya29.stale-SECRET-token")],
        );
        expect_auth_failure(&run);
        let reason = run.ended()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            reason.contains("token refused: status \"invalid_token\", scope \"mail\"")
                && reason.contains("535 5.7.8"),
            "{}",
            run.ctx()
        );
        let ack = if mech == "XOAUTH2" {
            "an empty response"
        } else {
            "^A (AQ==)"
        };
        assert!(
            run.notes()
                .iter()
                .any(|n| n.contains("the server refused the token")
                    && n.contains("status \"invalid_token\"")
                    && n.contains(ack)),
            "{}",
            run.ctx()
        );
        let replies: Vec<&Value> = run.of_type("reply");
        assert!(
            replies.iter().any(|r| r["code"] == 334) && replies.iter().any(|r| r["code"] == 535),
            "{}",
            run.ctx()
        );
        assert!(!run.all_text().contains("SECRET"), "{}", run.ctx());
        assert!(
            sink.notes()
                .iter()
                .any(|n| n.contains(&format!("AUTH {mech}: token refused"))),
            "{}",
            sink.stdout_text()
        );
    }
    let all = sink.stop();
    assert!(!all.contains("SECRET"), "{all}");
}

// ------------------------------------------------------------------------ EXTERNAL

/// A client CA and a certificate for `CN=alice@example.test` it signed, made with openssl.
struct ClientPki {
    dir: tempfile::TempDir,
}

impl ClientPki {
    fn make() -> ClientPki {
        let dir = tempfile::tempdir().expect("temp dir");
        let cnf = dir.path().join("openssl.cnf");
        std::fs::write(
            &cnf,
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n\
             [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n\
             [client]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = clientAuth\nsubjectAltName = email:alice@example.test\n\
             authorityKeyIdentifier = keyid\n",
        )
        .expect("write openssl.cnf");
        let openssl = tool("openssl");
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .current_dir(dir.path())
                .args(args)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (ca, cn) in [
            ("ca", "mailscope test client CA"),
            ("other-ca", "someone else"),
        ] {
            let mut args = vec![
                "req",
                "-x509",
                "-config",
                "openssl.cnf",
                "-extensions",
                "ca",
            ];
            args.extend(ec);
            let key = format!("{ca}.key");
            let pem = format!("{ca}.pem");
            let subj = format!("/CN={cn}");
            args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            run(&args);
        }
        for (name, ca) in [("client", "ca"), ("stranger", "other-ca")] {
            let mut args = vec!["req", "-new", "-config", "openssl.cnf"];
            args.extend(ec);
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            args.extend([
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=alice@example.test",
            ]);
            run(&args);
            let ca_pem = format!("{ca}.pem");
            let ca_key = format!("{ca}.key");
            let pem = format!("{name}.pem");
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-set_serial",
                "2",
                "-days",
                "2",
                "-extfile",
                "openssl.cnf",
                "-extensions",
                "client",
                "-out",
                &pem,
            ]);
        }
        ClientPki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

#[test]
fn external_with_a_client_certificate() {
    let pki = ClientPki::make();
    let sink = Sink::start(&["--tls-client-ca", &pki.path("ca.pem")]);
    let cert = pki.path("client.pem");
    let key = pki.path("client.key");
    let cert_args = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    // No authzid: "AUTH EXTERNAL =", the identity is the certificate's CN.
    let mut args = vec!["--auth", "EXTERNAL"];
    args.extend(cert_args);
    let run = smtp(&sink, &args, &[]);
    expect_ok(&run, "EXTERNAL");
    assert!(
        run.of_type("sent")
            .iter()
            .any(|v| v["text"] == "AUTH EXTERNAL =\\r\\n"),
        "{}",
        run.stdout
    );
    let a = sink.wait_for("client_authenticated", |v| v["mechanism"] == "EXTERNAL");
    assert_eq!(a["authcid"], "alice@example.test");
    assert!(
        sink.notes().iter().any(|n| n.contains(
            "AUTH EXTERNAL as \"alice@example.test\" from the verified client certificate (CN=alice@example.test)"
        )),
        "{}",
        sink.stdout_text()
    );
    sink.wait_for("client_tls", |v| {
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("client certificate CN=alice@example.test (verified)"))
    });
    // With an authzid.
    let mut args = vec![
        "--auth",
        "EXTERNAL",
        "--auth-authzid",
        "shared@example.test",
    ];
    args.extend(cert_args);
    let run = smtp(&sink, &args, &[]);
    expect_ok(&run, "EXTERNAL");
    assert!(
        run.of_type("sent")
            .iter()
            .any(|v| v["text"].as_str().is_some_and(
                |t| t.starts_with("AUTH EXTERNAL <redacted: authzid=\"shared@example.test\">")
            )),
        "{}",
        run.stdout
    );
    // A client without a certificate is served, but EXTERNAL is not offered: exit 28, and
    // the reason says what is missing.
    let run = smtp(&sink, &["--auth", "EXTERNAL"], &[]);
    expect_auth_failure(&run);
    let reason = run.ended()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("does not offer AUTH EXTERNAL")
            && reason.contains("--tls-cert and --tls-key"),
        "{}",
        run.ctx()
    );
    // A certificate from a CA the sink does not trust: the sink ends the handshake with an
    // alert, which the client reports as a TLS failure (exit 29), naming the certificate.
    let stranger = pki.path("stranger.pem");
    let stranger_key = pki.path("stranger.key");
    let run = smtp(
        &sink,
        &[
            "--auth",
            "EXTERNAL",
            "--tls-cert",
            &stranger,
            "--tls-key",
            &stranger_key,
        ],
        &[],
    );
    assert_eq!(run.code, Some(29), "{}", run.ctx());
    let reason = run.ended()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("client certificate"), "{}", run.ctx());
}

#[test]
fn external_is_not_offered_without_a_client_ca() {
    let pki = ClientPki::make();
    let sink = Sink::start(&[]);
    let run = smtp(
        &sink,
        &[
            "--auth",
            "EXTERNAL",
            "--tls-cert",
            &pki.path("client.pem"),
            "--tls-key",
            &pki.path("client.key"),
        ],
        &[],
    );
    expect_auth_failure(&run);
    let reason = run.ended()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("does not offer AUTH EXTERNAL")
            && reason.contains("only to a client whose certificate the server asked for"),
        "{}",
        run.ctx()
    );
}

// ------------------------------------------------------------------------ a real client

/// Python's smtplib: STARTTLS verified against the sink's CA, AUTH PLAIN, one message.
const SMTPLIB_PLAIN: &str = r#"
import smtplib, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP('127.0.0.1', port, timeout=30)
s.ehlo()
s.starttls(context=ssl.create_default_context(cafile=cafile))
s.ehlo()
print(s.esmtp_features.get('auth', ''))
s.user, s.password = 'pyuser@example.test', 'any-password'
code, _ = s.auth('PLAIN', s.auth_plain)
print(code)
s.sendmail('pyuser@example.test', ['bob@example.test'], b'Subject: smtplib PLAIN\r\n\r\nhi\r\n')
s.quit()
"#;

#[test]
fn python_smtplib_still_logs_in_with_plain() {
    let pki = ClientPki::make();
    // With and without the certificate request that --tls-client-ca adds.
    for extra in [
        vec![],
        vec!["--tls-client-ca".to_string(), pki.path("ca.pem")],
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let sink = Sink::start(&extra);
        let out = Command::new(tool("python3"))
            .arg("-c")
            .arg(SMTPLIB_PLAIN)
            .arg(sink.port.to_string())
            .arg(sink.ca())
            .stdin(Stdio::null())
            .output()
            .expect("run python3");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "python3 smtplib ({extra:?}):\n{text}");
        let mut lines = text.lines();
        let auth = lines.next().unwrap_or_default();
        assert!(
            auth.contains("PLAIN")
                && auth.contains("SCRAM-SHA-256-PLUS")
                && !auth.contains("EXTERNAL"),
            "{text}"
        );
        assert_eq!(lines.next(), Some("235"), "{text}");
        let a = sink.wait_for("client_authenticated", |_| true);
        assert_eq!(a["mechanism"], "PLAIN");
        assert_eq!(a["authcid"], "pyuser@example.test");
        let m = sink.wait_for("message_received", |_| true);
        assert_eq!(m["auth"], "pyuser@example.test");
        assert!(Path::new(m["path"].as_str().unwrap_or_default()).is_file());
    }
}
