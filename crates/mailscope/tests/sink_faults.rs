//! Faults on purpose (docs/scenarios.md) as real clients see them: the built `mailscope
//! sink` is started with scenario files and fault flags, and driven by `mailscope smtp` (our
//! client binary) and Python's smtplib. Each test checks the exact replies, exceptions and
//! exit codes a client gets, what the sink stored, and the notes it wrote about each fault.
//!
//! Every sink runs with `--no-config --json sink --listen smtp://127.0.0.1:0 --store <tmp>`;
//! the port comes from its `sink_started` event, every line it prints is checked to be JSON
//! valid against `docs/events.schema.json`, and it is killed when the test ends. Timing is
//! only ever checked from below (a delay took at least as long as configured).

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::schema_validator;
use serde_json::Value;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/scenarios");
const START_LIMIT: Duration = Duration::from_secs(20);
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailscope")
}

// ------------------------------------------------------------------------------ the sink

/// A running sink; killed on drop.
struct Sink {
    child: Child,
    port: u16,
    store: tempfile::TempDir,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Sink {
    fn start(args: &[&str]) -> Sink {
        let store = tempfile::tempdir().expect("tempdir");
        let store_arg = store.path().display().to_string();
        let mut all = vec![
            "--no-config",
            "--json",
            "sink",
            "--listen",
            "smtp://127.0.0.1:0",
            "--store",
            &store_arg,
        ];
        all.extend_from_slice(args);
        let mut child = Command::new(bin())
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailscope sink");
        let events = Arc::new(Mutex::new(Vec::<Value>::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<u16>();
        {
            let out = child.stdout.take().expect("stdout");
            let events = events.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let ev: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("sink stdout is not JSON ({e}): {line}"));
                    let errors: Vec<String> = schema_validator()
                        .iter_errors(&ev)
                        .map(|e| e.to_string())
                        .collect();
                    assert!(errors.is_empty(), "{line}\n{errors:?}");
                    if ev["type"] == "sink_started" {
                        let l = ev["listeners"][0].as_str().unwrap_or_default().to_string();
                        let port = l.rsplit(':').next().and_then(|p| p.parse().ok());
                        let _ = tx.send(port.unwrap_or(0));
                    }
                    if let Ok(mut e) = events.lock() {
                        e.push(ev);
                    }
                }
            });
        }
        {
            let mut err = child.stderr.take().expect("stderr");
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = stderr.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let port = match rx.recv_timeout(START_LIMIT) {
            Ok(p) if p > 0 => p,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the sink did not start with {all:?}: {}",
                    stderr.lock().map(|s| s.clone()).unwrap_or_default()
                );
            }
        };
        Sink {
            child,
            port,
            store,
            events,
            stderr,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The `note` events' texts.
    fn notes(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["type"] == "note")
            .filter_map(|e| e["text"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until `pred` holds for the events (the sink writes them as it goes).
    fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for {what}; events:\n{}\nstderr:\n{}",
                ev.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `n` sessions to have ended.
    fn wait_closed(&self, n: usize) -> Vec<Value> {
        self.wait_for(&format!("{n} client_closed events"), |ev| {
            ev.iter().filter(|e| e["type"] == "client_closed").count() >= n
        })
    }

    /// Messages in the Maildir.
    fn stored(&self) -> Vec<PathBuf> {
        let dir = self.store.path().join("Maildir/new");
        let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scenario_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write scenario");
    p.display().to_string()
}

// ------------------------------------------------------------------------------ clients

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs a program to the end (killed after [`RUN_LIMIT`]).
fn run(program: &str, args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let reader = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = pipe.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} ran longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
        elapsed,
    }
}

/// `mailscope --no-config --json smtp --server ADDR --timeout 10 ARGS`, its events parsed.
fn our_client(sink: &Sink, args: &[&str]) -> (Run, Vec<Value>) {
    let addr = sink.addr();
    let mut all = vec![
        "--no-config",
        "--json",
        "smtp",
        "--server",
        &addr,
        "--timeout",
        "10",
        "--from",
        "alice@example.test",
    ];
    all.extend_from_slice(args);
    let r = run(bin(), &all);
    let events: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (r, events)
}

fn finding_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "finding")
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

/// Runs a Python 3 script (smtplib) with the sink's port as `PORT`; returns its stdout
/// lines. A failing script fails the test.
fn python(sink: &Sink, script: &str) -> Vec<String> {
    let code = format!("import smtplib, sys, time\nPORT = {}\n{script}", sink.port);
    let r = run("python3", &["-c", &code]);
    assert_eq!(
        r.code, 0,
        "python3 failed:\n{}\n{}\nscript:\n{code}",
        r.stdout, r.stderr
    );
    r.stdout.lines().map(str::to_string).collect()
}

const MESSAGE: &str = "From: alice@example.test\\r\\nTo: bob@example.test\\r\\nSubject: faults\\r\\nDate: Mon, 1 Jan 2024 00:00:00 +0000\\r\\nMessage-ID: <f@example.test>\\r\\n\\r\\nhello\\r\\n";

// ------------------------------------------------------------------------------ tests

#[test]
fn smtplib_sees_reject_and_defer_flags_with_smtp_sink_replies() {
    let sink = Sink::start(&["--reject-at", "rcpt", "-r", "mail"]);
    let out = python(
        &sink,
        r#"
s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
code, text = s.mail('alice@example.test')
print('mail', code, text.decode())
try:
    s.sendmail('alice@example.test', ['bob@example.test'], 'Subject: x\r\n\r\nx\r\n')
except smtplib.SMTPSenderRefused as e:
    print('sendmail', e.smtp_code, e.smtp_error.decode())
s.quit()
"#,
    );
    assert_eq!(
        out,
        [
            "mail 450 4.3.0 Error: command failed",
            "sendmail 450 4.3.0 Error: command failed"
        ]
    );
    let sink = Sink::start(&["-f", "rcpt"]);
    let out = python(
        &sink,
        &format!(
            r#"
s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
try:
    s.sendmail('alice@example.test', ['bob@example.test'], "{MESSAGE}")
except smtplib.SMTPRecipientsRefused as e:
    for rcpt, (code, text) in e.recipients.items():
        print(rcpt, code, text.decode())
s.quit()
"#
        ),
    );
    assert_eq!(out, ["bob@example.test 500 5.3.0 Error: command failed"]);
    sink.wait_closed(1);
    let notes = sink.notes();
    assert!(
        notes.iter().any(|n| n
            == "fault injected at rcpt #1 (--reject-at rcpt): 500 5.3.0 Error: command failed instead of 250 2.1.5 Ok"),
        "{notes:?}"
    );
    assert!(sink.stored().is_empty());
}

#[test]
fn our_client_exits_with_the_stage_that_failed() {
    // MAIL deferred: 23; RCPT rejected: 24; refused after the final dot: 26.
    for (flag, stage, code) in [
        ("--defer-at", "mail", 23),
        ("--reject-at", "rcpt", 24),
        ("--reject-at", "dot", 26),
    ] {
        let sink = Sink::start(&[flag, stage]);
        let (r, events) = our_client(&sink, &["--to", "bob@example.test"]);
        assert_eq!(r.code, code, "{flag} {stage}\n{}", r.stderr);
        let replies: Vec<i64> = events
            .iter()
            .filter(|e| e["type"] == "reply")
            .filter_map(|e| e["code"].as_i64())
            .collect();
        let refusal = if flag == "--defer-at" { 450 } else { 500 };
        assert!(replies.contains(&refusal), "{flag} {stage}: {replies:?}");
        sink.wait_closed(1);
        assert!(sink.stored().is_empty(), "{flag} {stage}");
    }
    // Hang up at RCPT (smtp-sink -q): the connection closed unexpectedly, 6.
    let sink = Sink::start(&["-q", "rcpt"]);
    let (r, events) = our_client(&sink, &["--to", "bob@example.test"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        finding_ids(&events).contains(&"smtp.connection.closed".to_string()),
        "{events:?}"
    );
    // 421 and hang up at MAIL (smtp-sink -Q): MAIL failed, 23.
    let sink = Sink::start(&["-Q", "mail"]);
    let (r, events) = our_client(&sink, &["--to", "bob@example.test"]);
    assert_eq!(r.code, 23, "{}", r.stderr);
    let mail_reply = events
        .iter()
        .find(|e| e["type"] == "reply" && e["command"] == "MAIL")
        .cloned()
        .unwrap_or_default();
    assert_eq!(mail_reply["code"], 421, "{events:?}");
    assert_eq!(mail_reply["enhanced_code"], "4.0.0");
}

#[test]
fn greylisting_defers_the_first_attempt_and_passes_the_retry() {
    let sink = Sink::start(&["--greylist"]);
    let script = format!(
        r#"
for attempt in (1, 2):
    s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
    try:
        s.sendmail('alice@example.test', ['bob@example.test'], "{MESSAGE}")
        print(attempt, 'sent')
    except smtplib.SMTPRecipientsRefused as e:
        for rcpt, (code, text) in e.recipients.items():
            print(attempt, code, text.decode())
    s.quit()
# Another recipient is another triplet: deferred once.
s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
refused = s.sendmail('alice@example.test', ['bob@example.test', 'carol@example.test'], "{MESSAGE}")
for rcpt, (code, text) in refused.items():
    print(3, rcpt, code, text.decode())
s.quit()
"#
    );
    let out = python(&sink, &script);
    assert_eq!(
        out,
        [
            "1 450 4.7.1 Greylisted, try again later",
            "2 sent",
            "3 carol@example.test 450 4.7.1 Greylisted, try again later",
        ]
    );
    sink.wait_for("two stored messages", |ev| {
        ev.iter()
            .filter(|e| e["type"] == "message_received")
            .count()
            >= 2
    });
    assert_eq!(sink.stored().len(), 2);
    let notes = sink.notes();
    assert!(
        notes.iter().any(|n| n.starts_with("fault injected at rcpt #1 (--greylist, greylisted: first attempt of 127.0.0.1 <alice@example.test> <bob@example.test>): 450 4.7.1")),
        "{notes:?}"
    );
}

#[test]
fn greylisting_from_a_scenario_file_waits_for_the_minimum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario_file(
        dir.path(),
        "grey.toml",
        "[[rule]]\nstage = \"rcpt\"\ngreylist = { key = [\"sender\"], min_wait_ms = 1500 }\n",
    );
    let sink = Sink::start(&["--scenario", &file]);
    let script = format!(
        r#"
def attempt(n):
    s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
    try:
        s.sendmail('alice@example.test', ['bob@example.test'], "{MESSAGE}")
        print(n, 'sent')
    except smtplib.SMTPRecipientsRefused as e:
        print(n, [c for (c, t) in e.recipients.values()])
    s.quit()
attempt(1)
attempt(2)
time.sleep(1.6)
attempt(3)
"#
    );
    assert_eq!(python(&sink, &script), ["1 [450]", "2 [450]", "3 sent"]);
}

#[test]
fn delays_hold_the_reply_at_least_as_long_as_configured() {
    let sink = Sink::start(&["--delay-at", "mail:700", "-W", "rcpt:0.3"]);
    let out = python(
        &sink,
        r#"
s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
s.ehlo('client.example.test')
t = time.monotonic(); code, _ = s.mail('alice@example.test'); print('mail', code, int((time.monotonic() - t) * 1000))
t = time.monotonic(); code, _ = s.rcpt('bob@example.test'); print('rcpt', code, int((time.monotonic() - t) * 1000))
t = time.monotonic(); code, _ = s.noop(); print('noop', code)
s.quit()
"#,
    );
    let field = |line: &str, i: usize| -> i64 {
        line.split(' ')
            .nth(i)
            .and_then(|x| x.parse().ok())
            .unwrap_or(-1)
    };
    assert!(out[0].starts_with("mail 250 "), "{out:?}");
    assert!(
        field(&out[0], 2) >= 700,
        "MAIL took {} ms",
        field(&out[0], 2)
    );
    assert!(out[1].starts_with("rcpt 250 "), "{out:?}");
    assert!(
        field(&out[1], 2) >= 300,
        "RCPT took {} ms",
        field(&out[1], 2)
    );
    assert_eq!(out[2], "noop 250");
    sink.wait_closed(1);
    let notes = sink.notes();
    assert!(
        notes.iter().any(|n| n
            == "fault injected at mail #1 (--delay-at mail:700): 250 2.1.0 Ok, delayed by 700 ms"),
        "{notes:?}"
    );
    // Our client, against a scenario file's delay at the end of data.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario_file(
        dir.path(),
        "slow.toml",
        "[[rule]]\nname = \"slow queue\"\nstage = \"end-of-data\"\ndelay_ms = 900\n",
    );
    let sink = Sink::start(&["--scenario", &file]);
    let (r, events) = our_client(&sink, &["--to", "bob@example.test"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dot = events
        .iter()
        .find(|e| e["type"] == "reply" && e["command"] == ".")
        .cloned()
        .unwrap_or_default();
    assert_eq!(dot["code"], 250);
    assert!(dot["latency_us"].as_u64().unwrap_or(0) >= 900_000, "{dot}");
    assert!(r.elapsed >= Duration::from_millis(900));
    sink.wait_for("the message", |ev| {
        ev.iter().any(|e| e["type"] == "message_received")
    });
    assert_eq!(sink.stored().len(), 1);
}

#[test]
fn throttled_reading_slows_the_message_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario_file(
        dir.path(),
        "throttle.toml",
        "[[rule]]\nstage = \"data\"\nthrottle = 4000\n",
    );
    let sink = Sink::start(&["--scenario", &file]);
    // 12,000 octets at 4,000 octets/s: the 250 cannot come before about 3 s (less the first
    // read's 400 octets).
    let out = python(
        &sink,
        r#"
body = ('x' * 78 + '\r\n') * 150
msg = 'From: a@example.test\r\nSubject: slow\r\n\r\n' + body
s = smtplib.SMTP('127.0.0.1', PORT, timeout=30)
t = time.monotonic()
s.sendmail('alice@example.test', ['bob@example.test'], msg)
print(int((time.monotonic() - t) * 1000))
s.quit()
"#,
    );
    let ms: u64 = out[0].parse().unwrap_or(0);
    assert!(ms >= 2_800, "12 KB at 4 KB/s took only {ms} ms");
    sink.wait_for("the message", |ev| {
        ev.iter().any(|e| e["type"] == "message_received")
    });
    let notes = sink.notes();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("reading throttled to 4000 bytes/s until the next reply")),
        "{notes:?}"
    );
}

#[test]
fn accept_but_drop_answers_250_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario_file(
        dir.path(),
        "drop.toml",
        "[[rule]]\nname = \"black hole\"\nstage = \"end-of-data\"\nmessage = 1\naccept_but_drop = true\n",
    );
    let sink = Sink::start(&["--scenario", &file]);
    let out = python(
        &sink,
        &format!(
            r#"
s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
s.sendmail('alice@example.test', ['bob@example.test'], "{MESSAGE}")
code, text = s.docmd('NOOP')
print('first', 'accepted')
s.sendmail('alice@example.test', ['carol@example.test'], "{MESSAGE}")
print('second', 'accepted')
s.quit()
"#
        ),
    );
    assert_eq!(out, ["first accepted", "second accepted"]);
    let ev = sink.wait_closed(1);
    let received: Vec<&Value> = ev
        .iter()
        .filter(|e| e["type"] == "message_received")
        .collect();
    assert_eq!(received.len(), 1, "only the second message is kept");
    assert_eq!(received[0]["rcpts"][0], "carol@example.test");
    assert_eq!(sink.stored().len(), 1);
    let notes = sink.notes();
    assert!(
        notes.iter().any(|n| n.starts_with(
            "fault injected at end-of-data #1 (rule 1 \"black hole\"): 250 2.0.0 Ok: queued as "
        ) && n
            .ends_with(" sent, but the message is dropped: not stored (accept_but_drop)")),
        "{notes:?}"
    );
    // The client was told 250 for both.
    let sent: Vec<String> = ev
        .iter()
        .filter(|e| e["type"] == "client_closed")
        .map(|e| e["messages"].to_string())
        .collect();
    assert_eq!(sent, ["2"]);
}

#[test]
fn disconnect_in_the_middle_of_data_is_a_closed_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario_file(
        dir.path(),
        "crash.toml",
        "[[rule]]\nname = \"crash\"\nstage = \"data\"\ndisconnect_after_bytes = 100\n",
    );
    let sink = Sink::start(&["--scenario", &file]);
    let body = "line of the body that goes on for a while\n".repeat(20);
    let (r, events) = our_client(&sink, &["--to", "bob@example.test", "--body", &body]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        finding_ids(&events).contains(&"smtp.connection.closed".to_string()),
        "{:?}",
        finding_ids(&events)
    );
    // The 354 came, the final reply did not.
    let replies: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "reply")
        .map(|e| format!("{} {}", e["command"], e["code"]))
        .collect();
    assert_eq!(
        replies.last().map(String::as_str),
        Some("\"DATA\" 354"),
        "{replies:?}"
    );
    sink.wait_closed(1);
    assert!(sink.stored().is_empty());
    let notes = sink.notes();
    assert!(
        notes.iter().any(|n| n == "fault injected: closing in the middle of DATA after 100 octets of message content, without a reply (the message is discarded)"),
        "{notes:?}"
    );
    // smtplib: the server went away during the message.
    let out = python(
        &sink,
        r#"
s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
try:
    s.sendmail('alice@example.test', ['bob@example.test'], 'Subject: x\r\n\r\n' + 'y' * 5000 + '\r\n')
    print('sent')
except (smtplib.SMTPServerDisconnected, ConnectionError) as e:
    print('disconnected')
"#,
    );
    assert_eq!(out, ["disconnected"]);
}

#[test]
fn probability_with_a_fixed_seed_is_reproducible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario_file(
        dir.path(),
        "flaky.toml",
        "[[rule]]\nstage = \"rcpt\"\nprobability = 0.5\nreply = { code = 451, enhanced = \"4.3.0\", text = \"flaky\" }\n",
    );
    let script = r#"
s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
s.ehlo('c.example.test')
s.mail('alice@example.test')
codes = [s.rcpt('r%d@example.test' % i)[0] for i in range(30)]
print(' '.join(str(c) for c in codes))
s.quit()
"#;
    let runs: Vec<String> = [7, 7, 8]
        .iter()
        .map(|seed| {
            let seed = seed.to_string();
            let sink = Sink::start(&["--scenario", &file, "--seed", &seed]);
            let out = python(&sink, script);
            let notes = sink.notes();
            assert!(
                notes.iter().any(|n| n
                    == &format!("random choices use seed {seed} (--seed {seed} repeats them)")),
                "{notes:?}"
            );
            out[0].clone()
        })
        .collect();
    assert_eq!(runs[0], runs[1], "same seed, same faults");
    assert_ne!(runs[0], runs[2], "another seed, other faults");
    let codes: Vec<&str> = runs[0].split(' ').collect();
    assert!(
        codes.contains(&"451") && codes.contains(&"250"),
        "{codes:?}"
    );
    assert!(codes.iter().all(|c| *c == "451" || *c == "250"));
}

#[test]
fn reply_and_close_at_the_greeting_and_multiline_replies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario_file(
        dir.path(),
        "greet.toml",
        r#"
[[rule]]
stage = "connect"
connection = 1
reply_and_close = { code = 421, enhanced = "4.3.2", text = "Not now" }

[[rule]]
stage = "rcpt"
recipient = "full*@*"
reply = { code = 452, enhanced = "4.2.2", lines = ["Mailbox full", "Try again tomorrow"] }
"#,
    );
    let sink = Sink::start(&["--scenario", &file]);
    let out = python(
        &sink,
        r#"
try:
    smtplib.SMTP('127.0.0.1', PORT, timeout=10)
except smtplib.SMTPConnectError as e:
    print('connect', e.smtp_code, e.smtp_error.decode())
s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
s.ehlo('c.example.test')
s.mail('alice@example.test')
code, text = s.rcpt('Full.Box@example.test')
print('rcpt', code, text.decode().replace('\n', '|'))
s.quit()
"#,
    );
    assert_eq!(
        out,
        [
            "connect 421 4.3.2 Not now",
            "rcpt 452 4.2.2 Mailbox full|4.2.2 Try again tomorrow",
        ]
    );
}

#[test]
fn check_scenario_validates_and_explains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = scenario_file(
        dir.path(),
        "good.toml",
        "description = \"two rules\"\n\n[[rule]]\nname = \"full\"\nstage = \"rcpt\"\nrecipient = \"full@*\"\nreply = { code = 452, enhanced = \"4.2.2\", text = \"Mailbox full\" }\n\n[[rule]]\nstage = \"data\"\ndisconnect_after_bytes = 10\n",
    );
    let r = run(bin(), &["--no-config", "sink", "--check-scenario", &good]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "{good}: valid, 2 rules\n  two rules\n  rule 1 \"full\": at rcpt, when a recipient matches \"full@*\": reply \"452 4.2.2 Mailbox full\"\n  rule 2: at data: send 354, then close without a word after 10 octets of the message (or at its end)\n"
        )
    );
    let bad = scenario_file(
        dir.path(),
        "bad.toml",
        "[[rule]]\nstage = \"rcpt\"\ndisconnect = true\n\n[[rule]]\nstage = \"mail\"\nreply = { code = 250, enhanced = \"5.7.1\", text = \"no\" }\n",
    );
    let r = run(bin(), &["--no-config", "sink", "--check-scenario", &bad]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr.trim_end(),
        format!(
            "error: {bad}: rule 2 (line 5): reply.enhanced: \"5.7.1\" does not go with reply code 250 (its class must be 2.x.x)"
        )
    );
    let typo = scenario_file(
        dir.path(),
        "typo.toml",
        "[[rule]]\nstage = \"rcpt\"\nrecipent = \"a@b\"\ndisconnect = true\n",
    );
    let r = run(bin(), &["--no-config", "sink", "--check-scenario", &typo]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("rule 1 (line 1): unknown field `recipent`"),
        "{}",
        r.stderr
    );
    // --scenario refuses to start on an invalid file.
    let r = run(
        bin(),
        &[
            "--no-config",
            "sink",
            "--no-store",
            "--listen",
            "smtp://127.0.0.1:0",
            "--scenario",
            &bad,
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("rule 2 (line 5)"), "{}", r.stderr);
    // Every shipped example checks.
    let mut n = 0;
    for entry in std::fs::read_dir(EXAMPLES).expect("examples/scenarios") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "toml") {
            let p = path.display().to_string();
            let r = run(bin(), &["--no-config", "sink", "--check-scenario", &p]);
            assert_eq!(r.code, 0, "{p}: {}", r.stderr);
            assert!(
                r.stdout.starts_with(&format!("{p}: valid, ")),
                "{}",
                r.stdout
            );
            n += 1;
        }
    }
    assert!(n >= 5);
}

#[test]
fn shipped_examples_behave_as_described() {
    // mailbox-full.toml with our client: RCPT to full*@* refused (no recipient: 24).
    let sink = Sink::start(&["--scenario", &format!("{EXAMPLES}/mailbox-full.toml")]);
    let (r, events) = our_client(&sink, &["--to", "full.bob@example.test"]);
    assert_eq!(r.code, 24, "{}", r.stderr);
    let rcpt = events
        .iter()
        .find(|e| e["type"] == "recipient")
        .cloned()
        .unwrap_or_default();
    assert_eq!(rcpt["code"], 452);
    assert_eq!(rcpt["enhanced_code"], "4.2.2");
    // After the dot for *@quota.example: 26.
    let (r, _) = our_client(&sink, &["--to", "bob@quota.example"]);
    assert_eq!(r.code, 26, "{}", r.stderr);
    // Anyone else: delivered.
    let (r, _) = our_client(&sink, &["--to", "bob@example.test"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    sink.wait_for("one message", |ev| {
        ev.iter().any(|e| e["type"] == "message_received")
    });
    assert_eq!(sink.stored().len(), 1);
    // crash-mid-data.toml: the second message of a session is cut.
    let sink = Sink::start(&["--scenario", &format!("{EXAMPLES}/crash-mid-data.toml")]);
    let out = python(
        &sink,
        &format!(
            r#"
s = smtplib.SMTP('127.0.0.1', PORT, timeout=10)
s.sendmail('alice@example.test', ['bob@example.test'], "{MESSAGE}")
print('first sent')
try:
    s.sendmail('alice@example.test', ['bob@example.test'], 'Subject: big\r\n\r\n' + 'z' * 4000 + '\r\n')
    print('second sent')
except (smtplib.SMTPServerDisconnected, ConnectionError):
    print('second lost')
"#
        ),
    );
    assert_eq!(out, ["first sent", "second lost"]);
    sink.wait_closed(1);
    assert_eq!(sink.stored().len(), 1);
}

#[test]
fn flags_and_file_rules_are_announced_at_start() {
    let sink = Sink::start(&[
        "--scenario",
        &format!("{EXAMPLES}/random-421.toml"),
        "--defer-at",
        "quit",
    ]);
    let notes = sink.wait_for("the rule notes", |ev| {
        ev.iter().filter(|e| e["type"] == "note").any(|e| {
            e["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("random choices use seed 1"))
        })
    });
    let texts: Vec<&str> = notes
        .iter()
        .filter(|e| e["type"] == "note")
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("scenario ")
                && t.contains("random-421.toml: 1 rule (10% of replies")),
        "{texts:?}"
    );
    assert!(
        texts
            .contains(&"fault --defer-at quit: at quit: reply \"450 4.3.0 Error: command failed\""),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("fault rule 1 \"flaky\": at connect or mail")),
        "{texts:?}"
    );
    let _ = std::io::stdout().flush();
}
