//! Golden transcripts: real sessions (the seeds, the RFC examples, broken servers) replayed
//! against the SMTP client machine. The format is described in `testdata/golden/README.md`.
//!
//! For every `testdata/golden/smtp/*.txt`:
//! - the machine is built from the `# key: value` header and driven through the session: each
//!   run of `S:` lines is fed once the machine has sent exactly what the `C:` lines before it
//!   say, and all it sends must equal the `C:` bytes;
//! - its events and findings are rendered one per line and compared with `<name>.expected`
//!   (a mismatch writes `<name>.actual` beside it; `MAILSCOPE_BLESS=1` rewrites the expected
//!   files);
//! - the server bytes are fed again byte by byte and split at every point (sampled splits
//!   for goldens over 16 KiB): the rendering must not change.
//!
//! The runner refuses to pass on an empty directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mailscope_proto::escape::{escape, unescape};
use mailscope_proto::sasl::{Credentials, Mechanism};
use mailscope_proto::smtp::client::{
    AuthOptions, Client, ClientOptions, Event, HelloKind, Outcome, Stage,
};
use mailscope_proto::smtp::data::{prepare_normalized, prepare_raw};
use mailscope_proto::smtp::reply::{Reply, ReplyLimits};
use mailscope_proto::transcript::{Direction, RenderOptions, Timestamp, render_chunk};

/// Goldens whose server stream is longer than this are split at sampled points only.
const EVERY_SPLIT_LIMIT: usize = 16 * 1024;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden/smtp")
}

fn bless() -> bool {
    std::env::var_os("MAILSCOPE_BLESS").is_some_and(|v| v != "0" && !v.is_empty())
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// One step of a golden session, with the line it came from.
#[derive(Debug, Clone)]
enum Step {
    /// Consecutive `C:` lines: what the machine must have sent.
    Client(Vec<u8>),
    /// Consecutive `S:` lines: fed to the machine as one run.
    Server(Vec<u8>),
    /// `-- tls --`: the TLS handshake after STARTTLS succeeds.
    Tls,
    /// `-- tls-failed --`: the handshake fails.
    TlsFailed,
    /// `-- eof --`: the server closes the connection.
    Eof,
    /// `-- timeout --`: the machine's deadline passes.
    Timeout,
}

struct Golden {
    name: String,
    path: PathBuf,
    opts: ClientOptions,
    /// Strings that must never appear in the rendering (password and its encodings).
    secrets: Vec<String>,
    steps: Vec<(usize, Step)>,
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

fn parse_golden(path: &Path) -> Result<Golden, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut opts = ClientOptions {
        helo_name: "client.example.test".into(),
        hello: HelloKind::Ehlo,
        implicit_tls: false,
        starttls: false,
        auth: None,
        allow_plaintext_auth: false,
        from: String::new(),
        to: Vec::new(),
        data: None,
        quit_after: None,
        reply_limits: ReplyLimits::default(),
        step_timeout_us: 30_000_000,
        ..ClientOptions::default()
    };
    let mut data: Option<Vec<u8>> = None;
    let mut raw = false;
    let mut auth_mech: Option<String> = None;
    let mut auth_user = String::new();
    let mut auth_password = String::new();
    let mut auth_authzid: Option<String> = None;
    let mut auth_nonce = String::from("golden-client-nonce");
    let mut steps: Vec<(usize, Step)> = Vec::new();
    let mut in_header = true;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let err = |m: String| format!("{}:{n}: {m}", path.display());
        if line.starts_with("##") {
            continue; // a comment
        }
        if let Some(rest) = line.strip_prefix('#') {
            // `# key: value` sets an option, in the header only.
            let option = rest.strip_prefix(' ').and_then(|r| {
                let (k, v) = r.split_once(':')?;
                let is_key =
                    !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
                is_key.then(|| (k, v.strip_prefix(' ').unwrap_or(v)))
            });
            let Some((key, value)) = option else {
                return Err(err(format!(
                    "`#` lines are `# key: value` options; comments start with `##`: {line:?}"
                )));
            };
            if !in_header {
                return Err(err(format!("option `{key}` after the session started")));
            }
            match key {
                "helo" => opts.helo_name = value.to_string(),
                "hello" => {
                    opts.hello = match value {
                        "ehlo" => HelloKind::Ehlo,
                        "helo" => HelloKind::Helo,
                        "lhlo" => HelloKind::Lhlo,
                        v => return Err(err(format!("hello must be ehlo, helo or lhlo: {v:?}"))),
                    }
                }
                "from" => opts.from = value.to_string(),
                "to" => {
                    opts.to = value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                }
                "data" => {
                    data = Some(unescape(value, false).map_err(|e| err(format!("data: {e}")))?)
                }
                "data-file" => {
                    let p = path.with_file_name(value);
                    data = Some(
                        std::fs::read(&p)
                            .map_err(|e| err(format!("data-file {}: {e}", p.display())))?,
                    );
                }
                "raw" => raw = parse_bool(value).map_err(err)?,
                "starttls" => opts.starttls = parse_bool(value).map_err(err)?,
                "implicit-tls" => opts.implicit_tls = parse_bool(value).map_err(err)?,
                "insecure-auth-plaintext" => {
                    opts.allow_plaintext_auth = parse_bool(value).map_err(err)?
                }
                "auth-mech" => auth_mech = Some(value.to_string()),
                "auth-user" => auth_user = value.to_string(),
                "auth-password" => auth_password = value.to_string(),
                "auth-authzid" => auth_authzid = Some(value.to_string()),
                "auth-nonce" => auth_nonce = value.to_string(),
                "quit-after" => {
                    opts.quit_after = Some(
                        Stage::from_name(value)
                            .ok_or_else(|| err(format!("unknown quit-after stage {value:?}")))?,
                    )
                }
                "drop-after" => {
                    opts.drop_after = Some(
                        Stage::from_name(value)
                            .ok_or_else(|| err(format!("unknown drop-after stage {value:?}")))?,
                    )
                }
                "pipeline" => opts.pipeline = parse_bool(value).map_err(err)?,
                "chunking" => opts.chunking = parse_bool(value).map_err(err)?,
                "chunk-size" => {
                    opts.chunk_size = value.parse().map_err(|e| err(format!("chunk-size: {e}")))?
                }
                "reply-max-line" => {
                    opts.reply_limits.max_line = value
                        .parse()
                        .map_err(|e| err(format!("reply-max-line: {e}")))?
                }
                "reply-max-lines" => {
                    opts.reply_limits.max_lines = value
                        .parse()
                        .map_err(|e| err(format!("reply-max-lines: {e}")))?
                }
                k => return Err(err(format!("unknown option `{k}`"))),
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        in_header = false;
        let marker = match line.trim_end() {
            "-- tls --" => Some(Step::Tls),
            "-- tls-failed --" => Some(Step::TlsFailed),
            "-- eof --" => Some(Step::Eof),
            "-- timeout --" => Some(Step::Timeout),
            _ => None,
        };
        if let Some(m) = marker {
            steps.push((n, m));
            continue;
        }
        let (is_client, escaped) = match (line.strip_prefix("C: "), line.strip_prefix("S: ")) {
            (Some(c), _) => (true, c),
            (_, Some(s)) => (false, s),
            // An empty protocol line would have to be written `C: \r\n`; a bare `C:` is a typo.
            _ => return Err(err(format!("not a C:/S: line, marker or # line: {line:?}"))),
        };
        let bytes = unescape(escaped, false).map_err(|e| err(e.to_string()))?;
        if bytes.iter().rev().skip(1).any(|&b| b == b'\n') {
            return Err(err(
                "one protocol line per text line: LF only at the end".into()
            ));
        }
        match (steps.last_mut(), is_client) {
            (Some((_, Step::Client(buf))), true) | (Some((_, Step::Server(buf))), false) => {
                buf.extend_from_slice(&bytes)
            }
            (_, true) => steps.push((n, Step::Client(bytes))),
            (_, false) => steps.push((n, Step::Server(bytes))),
        }
    }
    if let Some(d) = data {
        opts.data = Some(if raw {
            prepare_raw(&d)
        } else {
            prepare_normalized(&d)
        });
    } else if raw {
        return Err(format!(
            "{}: `raw` without `data`/`data-file`",
            path.display()
        ));
    }
    let mut secrets = Vec::new();
    if let Some(m) = auth_mech {
        let mechanism = match m.as_str() {
            "auto" => None,
            name => Some(
                Mechanism::from_name(name)
                    .ok_or_else(|| format!("{}: unknown auth-mech {name:?}", path.display()))?,
            ),
        };
        if !auth_password.is_empty() {
            secrets.push(base64(auth_password.as_bytes()));
            let plain = format!(
                "{}\0{auth_user}\0{auth_password}",
                auth_authzid.as_deref().unwrap_or("")
            );
            secrets.push(base64(plain.as_bytes()));
            secrets.push(auth_password.clone());
        }
        let mut credentials = Credentials::new(auth_user, auth_password);
        if let Some(z) = auth_authzid {
            credentials = credentials.with_authzid(z);
        }
        opts.auth = Some(AuthOptions {
            mechanism,
            credentials,
            client_nonce: auth_nonce,
        });
    }
    Ok(Golden {
        name,
        path: path.to_path_buf(),
        opts,
        secrets,
        steps,
    })
}

/// Standard base64 with padding (the test needs it only to look for leaked secrets).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

/// How the server runs are cut into `handle_input` calls.
#[derive(Debug, Clone, Copy)]
enum Feed {
    /// Each run in one call.
    Whole,
    /// One byte per call.
    ByteByByte,
    /// Whole runs, except that the run holding server stream offset `p` is cut there.
    SplitAt(usize),
}

impl Feed {
    fn pieces(self, run: &[u8], run_offset: usize) -> Vec<&[u8]> {
        match self {
            Feed::Whole => vec![run],
            Feed::ByteByByte => run.chunks(1).collect(),
            Feed::SplitAt(p) if p > run_offset && p < run_offset + run.len() => {
                let (a, b) = run.split_at(p - run_offset);
                vec![a, b]
            }
            Feed::SplitAt(_) => vec![run],
        }
    }
}

struct Runner<'g> {
    golden: &'g Golden,
    client: Client,
    sent: Vec<u8>,
    out: String,
    finding_events: usize,
}

impl Runner<'_> {
    /// Collects what the machine sends and renders its events.
    fn drain(&mut self) {
        let _ = self.client.poll_transmit(&mut self.sent);
        while let Some(e) = self.client.poll_event() {
            let line = render_event(&self.client, &e);
            if matches!(e, Event::FindingRaised(_)) {
                self.finding_events += 1;
            }
            self.out.push_str(&line);
            self.out.push('\n');
        }
        // Nothing the events asked for may be left unsent (e.g. QUIT after a failure).
        let _ = self.client.poll_transmit(&mut self.sent);
    }

    fn check_sent(&self, want: &[u8], line: usize) -> Result<(), String> {
        if self.sent == want {
            return Ok(());
        }
        let common = self
            .sent
            .iter()
            .zip(want)
            .take_while(|(a, b)| a == b)
            .count();
        Err(format!(
            "{}:{line}: the machine's bytes differ from the C: lines before this point at client \
             offset {common}:\n  C: lines say: {}\n  machine sent: {}\n  events so far:\n{}",
            self.golden.path.display(),
            escape(&want[common.saturating_sub(20)..]),
            escape(&self.sent[common.saturating_sub(20)..]),
            self.out
        ))
    }
}

/// Runs a golden with the given feeding; returns the rendering.
fn run(golden: &Golden, feed: Feed) -> Result<String, String> {
    let mut r = Runner {
        golden,
        client: Client::new(golden.opts.clone()),
        sent: Vec::new(),
        out: String::new(),
        finding_events: 0,
    };
    // The clock moves only between steps, so every feeding sees the same times.
    let mut now = 1_000_000u64;
    r.client.start(Timestamp(now));
    r.drain();
    let mut want_sent: Vec<u8> = Vec::new();
    let mut want_server: Vec<u8> = Vec::new();
    for (line, step) in &golden.steps {
        if !matches!(step, Step::Client(_)) {
            r.check_sent(&want_sent, *line)?;
            now += 1_000;
        }
        match step {
            Step::Client(bytes) => want_sent.extend_from_slice(bytes),
            Step::Server(bytes) => {
                for piece in feed.pieces(bytes, want_server.len()) {
                    r.client.handle_input(Timestamp(now), piece);
                    r.drain();
                }
                want_server.extend_from_slice(bytes);
            }
            Step::Tls => {
                r.out.push_str("-- tls --\n");
                r.client.handle_tls_established(Timestamp(now));
                r.drain();
            }
            Step::TlsFailed => {
                r.out.push_str("-- tls-failed --\n");
                r.client
                    .handle_tls_failed(Timestamp(now), "handshake failure (golden)");
                r.drain();
            }
            Step::Eof => {
                r.out.push_str("-- eof --\n");
                r.client.handle_eof(Timestamp(now));
                r.drain();
            }
            Step::Timeout => {
                r.out.push_str("-- timeout --\n");
                let deadline = r.client.poll_timeout().unwrap_or(Timestamp(now));
                r.client.handle_timeout(deadline);
                r.drain();
            }
        }
    }
    let last = golden.steps.last().map_or(0, |s| s.0);
    r.check_sent(&want_sent, last)?;
    if !r.client.is_finished() {
        r.out
            .push_str("unfinished: the session ended while the machine still waited\n");
    }
    // The transcript holds exactly the bytes that crossed, in both directions.
    let t = r.client.transcript();
    if t.stream(Direction::ClientToServer) != r.sent {
        return Err(format!(
            "{}: transcript (client) differs from the bytes sent",
            golden.path.display()
        ));
    }
    if t.stream(Direction::ServerToClient) != want_server {
        return Err(format!(
            "{}: transcript (server) differs from the S: bytes",
            golden.path.display()
        ));
    }
    if r.client.findings().len() != r.finding_events {
        return Err(format!(
            "{}: findings() has {} entries but {} FindingRaised events were polled",
            golden.path.display(),
            r.client.findings().len(),
            r.finding_events
        ));
    }
    Ok(r.out)
}

// ---------------------------------------------------------------------------------------
// Rendering: one line per event, stable and diff-friendly
// ---------------------------------------------------------------------------------------

fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", escape(bytes))
}

fn reply_text(reply: &Reply) -> String {
    let lines: Vec<String> = reply
        .lines
        .iter()
        .map(|l| {
            let mut s = String::new();
            if l.code != reply.code {
                let _ = write!(s, "[{}] ", l.code);
            }
            s.push_str(&quoted(&l.text));
            s
        })
        .collect();
    lines.join(" ")
}

/// The command line as the transcript shows it: every byte escaped, secrets redacted.
fn sent_line(client: &Client, offset: u64) -> String {
    let opts = RenderOptions {
        escape_all: true,
        show_secrets: false,
    };
    let chunk = client
        .transcript()
        .chunks()
        .iter()
        .find(|c| c.direction == Direction::ClientToServer && c.offset == offset);
    match chunk {
        Some(c) => {
            let text: String = render_chunk(c, opts).into_iter().map(|l| l.text).collect();
            format!("\"{text}\"")
        }
        None => "<no transcript chunk at this offset>".into(),
    }
}

fn render_event(client: &Client, e: &Event) -> String {
    match e {
        Event::ReplyReceived {
            command,
            reply,
            offset,
            ..
        } => format!(
            "reply {} {} server@{offset} {}",
            command.unwrap_or("greeting"),
            reply.code,
            reply_text(reply)
        ),
        Event::CommandSent { command, offset } => {
            format!(
                "sent {command} client@{offset} {}",
                sent_line(client, *offset)
            )
        }
        Event::CapabilitiesReceived { capabilities, tls } => format!(
            "capabilities{} {} [{}]",
            if *tls { " tls" } else { "" },
            quoted(capabilities.greeting.as_bytes()),
            capabilities.keywords().join(", ")
        ),
        Event::StartTlsRequested => "starttls-requested".into(),
        Event::AuthMechanismChosen {
            mechanism,
            offered,
            explicit,
        } => format!(
            "auth-mechanism {mechanism} {} offered [{}]",
            if *explicit { "named" } else { "picked" },
            offered.join(" ")
        ),
        Event::Authenticated {
            mechanism,
            server_verified,
        } => format!(
            "authenticated {mechanism} server-verified={}",
            match server_verified {
                Some(true) => "yes",
                Some(false) => "no",
                None => "n/a",
            }
        ),
        Event::RecipientAnswered {
            to,
            accepted,
            reply,
        } => format!(
            "recipient <{to}> {} {}",
            if *accepted { "accepted" } else { "refused" },
            reply.code
        ),
        Event::DataSent {
            offset,
            content_len,
            raw,
            terminator,
        } => format!(
            "data-sent client@{offset} {content_len} bytes {} then {terminator}",
            if *raw { "raw" } else { "normalized" }
        ),
        Event::FindingRaised(f) => {
            let mut s = format!("finding {} {}", f.kind.id, f.severity);
            if let (Some(d), Some(o)) = (f.direction, f.offset) {
                let _ = write!(s, " {}@{o}", d.as_str());
            }
            if !f.detail.is_empty() {
                let _ = write!(s, ": {}", f.detail);
            }
            s
        }
        Event::RecipientDelivered {
            to,
            accepted,
            reply,
        } => format!(
            "delivered <{to}> {} {}",
            if *accepted { "accepted" } else { "refused" },
            reply.code
        ),
        Event::ChunkSent { offset, len, last } => format!(
            "chunk-sent client@{offset} {len} bytes{}",
            if *last { " last" } else { "" }
        ),
        Event::SmugglingProbeResult {
            variant,
            verdict,
            replies,
        } => format!(
            "smuggling-probe {} {} [{}]",
            variant.name(),
            verdict.name(),
            replies
                .iter()
                .map(|r| r.code.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Event::Note(n) => format!("note {n}"),
        Event::Finished(o) => match o {
            Outcome::Completed => "finished completed".into(),
            Outcome::StoppedAfter(stage) => format!("finished stopped-after {}", stage.name()),
            Outcome::Dropped(stage) => format!("finished dropped-after {}", stage.name()),
            Outcome::Failed {
                step,
                reason,
                reply,
            } => format!(
                "finished failed {} exit={}{}: {reason}",
                step.name(),
                step.exit_code(),
                reply
                    .as_ref()
                    .map(|r| format!(" reply={}", r.code))
                    .unwrap_or_default()
            ),
        },
        Event::ReplyExplained {
            command,
            explanation,
        } => format!(
            "explained {} {:?} {:?}: {} | next: {}",
            command.unwrap_or("greeting"),
            explanation.class,
            explanation.categories,
            explanation.summary,
            explanation.next.join(" | ")
        ),
        // `Event` may grow; render new variants visibly rather than fail to compile.
        #[allow(unreachable_patterns)]
        other => format!("event {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

fn first_difference(a: &str, b: &str) -> String {
    let (al, bl): (Vec<_>, Vec<_>) = (a.lines().collect(), b.lines().collect());
    let i = al.iter().zip(&bl).take_while(|(x, y)| x == y).count();
    format!(
        "first difference at output line {}:\n  expected: {}\n  got:      {}",
        i + 1,
        al.get(i).copied().unwrap_or("<end>"),
        bl.get(i).copied().unwrap_or("<end>")
    )
}

fn check_golden(golden: &Golden) -> Result<(), String> {
    let whole = run(golden, Feed::Whole)?;
    let shown = whole.replace("-byte password", "");
    for s in &golden.secrets {
        if shown.contains(s.as_str()) {
            return Err(format!(
                "{}: the rendering shows a secret ({} characters): redaction failed",
                golden.path.display(),
                s.len()
            ));
        }
    }
    let expected_path = golden.path.with_extension("expected");
    let actual_path = golden.path.with_extension("actual");
    if bless() {
        std::fs::write(&expected_path, &whole).map_err(|e| format!("write: {e}"))?;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    if expected != whole {
        std::fs::write(&actual_path, &whole).map_err(|e| format!("write: {e}"))?;
        return Err(format!(
            "{}: events differ from {}; the actual output is in {} (MAILSCOPE_BLESS=1 accepts \
             it)\n{}",
            golden.name,
            expected_path.display(),
            actual_path.display(),
            first_difference(&expected, &whole)
        ));
    }
    let _ = std::fs::remove_file(&actual_path);

    let server_len: usize = golden
        .steps
        .iter()
        .map(|(_, s)| match s {
            Step::Server(b) => b.len(),
            _ => 0,
        })
        .sum();
    let mut feeds = vec![Feed::ByteByByte];
    if server_len <= EVERY_SPLIT_LIMIT {
        feeds.extend((1..server_len).map(Feed::SplitAt));
    } else {
        // A fixed pseudo-random sample, the same on every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            feeds.push(Feed::SplitAt(1 + (x % server_len as u64) as usize));
        }
    }
    // The runs are independent: spread them over the cores (SCRAM goldens run PBKDF2 once
    // per feeding, which is slow in debug builds).
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let per_thread = feeds.len().div_ceil(threads).max(1);
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = feeds
            .chunks(per_thread)
            .map(|part| scope.spawn(|| check_feeds(golden, &whole, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(format!("{}: a feeding panicked", golden.name)))
            })
            .collect()
    });
    results.into_iter().collect::<Result<(), String>>()?;
    let _ = std::fs::remove_file(golden.path.with_extension("split.actual"));
    Ok(())
}

/// Runs `feeds` one after the other; the first whose rendering differs from `whole` fails.
fn check_feeds(golden: &Golden, whole: &str, feeds: &[Feed]) -> Result<(), String> {
    for &feed in feeds {
        let got = run(golden, feed).map_err(|e| format!("{e} (fed {feed:?})"))?;
        if got != whole {
            let path = golden.path.with_extension("split.actual");
            let _ = std::fs::write(&path, &got);
            return Err(format!(
                "{}: fed {feed:?}, the events differ from the whole-run feed (written to {})\n{}",
                golden.name,
                path.display(),
                first_difference(whole, &got)
            ));
        }
    }
    Ok(())
}

fn golden_files() -> Vec<PathBuf> {
    let dir = golden_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

#[test]
fn smtp_goldens() {
    let files = golden_files();
    assert!(
        files.len() >= 8,
        "only {} golden transcripts in {}: the runner refuses to pass on an (almost) empty corpus",
        files.len(),
        golden_dir().display()
    );
    let mut failures = Vec::new();
    for path in &files {
        let result = parse_golden(path).and_then(|g| {
            if g.steps.is_empty() {
                return Err(format!("{}: no session lines", path.display()));
            }
            check_golden(&g)
        });
        if let Err(e) = result {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} goldens failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_expected_file_has_its_golden() {
    let dir = golden_dir();
    for e in std::fs::read_dir(&dir).expect("golden dir").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "expected") {
            assert!(
                p.with_extension("txt").exists(),
                "{} has no golden beside it",
                p.display()
            );
        }
    }
}

#[test]
fn parser_rejects_typos() {
    let dir = std::env::temp_dir().join(format!("mailscope-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases: [(&str, &str); 5] = [
        ("# hleo: x\nS: 220 hi\\r\\n\n", "unknown option"),
        ("# a comment\nS: 220 hi\\r\\n\n", "comments start with `##`"),
        ("S: 220 hi\\r\\n\nX: what\n", "not a C:/S: line"),
        (
            "S: 220 a\\r\\n250 b\\r\\n\n",
            "one protocol line per text line",
        ),
        ("S: 220 a\\q\n", "unknown escape"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = dir.join(format!("case{i}.txt"));
        std::fs::write(&p, text).expect("write case");
        match parse_golden(&p) {
            Err(e) => assert!(e.contains(want), "case {i}: {e}"),
            Ok(_) => panic!("case {i} parsed"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn base64_helper_matches_the_seed_vectors() {
    assert_eq!(
        base64(b"username\0username\0password"),
        "dXNlcm5hbWUAdXNlcm5hbWUAcGFzc3dvcmQ="
    );
    assert_eq!(base64(b"test"), "dGVzdA==");
    assert_eq!(base64(b"testpass"), "dGVzdHBhc3M=");
}

fn golden(name: &str) -> Golden {
    parse_golden(&golden_dir().join(format!("{name}.txt"))).unwrap_or_else(|e| panic!("{e}"))
}

/// The STARTTLS reply and the injected line arrive in two reads, both before the TLS
/// handshake. Bytes handed to the machine between the 220 and the handshake are plaintext
/// read-ahead however they were cut, and must never join the reply read inside TLS
/// (CVE-2011-0411 class). Split-invariance of the injection golden checks the same.
#[test]
fn starttls_read_ahead_in_a_later_read_is_discarded() {
    let g = golden("starttls-read-ahead-injection");
    // Server stream offset just after `220 go\r\n`.
    let out = run(&g, Feed::SplitAt(86)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.contains("finding smtp.starttls.read-ahead"),
        "no read-ahead finding:\n{out}"
    );
    assert!(
        !out.contains("\"injected\""),
        "the injected plaintext line became part of the EHLO reply inside TLS:\n{out}"
    );
}

/// SCRAM's point is that the server proves it knows the password too: a 235 without the
/// server-final message must not count as a verified success (the SASL session itself says
/// `MissingServerSignature` when given the success).
#[test]
fn scram_success_without_server_signature_is_not_verified() {
    let g = golden("rfc7677-scram-no-server-signature");
    let out = run(&g, Feed::Whole).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !out.contains("authenticated SCRAM-SHA-256 server-verified=n/a"),
        "SCRAM success without server signature was accepted as unverified-but-fine:\n{out}"
    );
    assert!(
        out.contains("server-verified=no") || out.contains("finished failed auth"),
        "the missing server signature is neither reported nor a failure:\n{out}"
    );
}
