//! Output: the human transcript (direction marks by role, `***` notes, findings inline) and
//! NDJSON events (`--json`, schema `mailscope/1`, docs/events.md). With `--json`, stdout
//! carries only events and the human text goes to stderr.

use std::io::Write;

use mailscope_proto::transcript::{RenderOptions, Role, Transcript, direction_mark, render_chunk};
use mailscope_proto::{Finding, Severity, Timestamp};
use owo_colors::OwoColorize as _;
use serde_json::{Value, json};

/// Renders one session's output.
pub struct Reporter {
    json: bool,
    role: Role,
    render: RenderOptions,
    show_time: bool,
    printed_chunks: usize,
    session: String,
    start: Option<Timestamp>,
    findings: Vec<Finding>,
    /// The last `ts` written: event times never go backwards in the stream, although a byte
    /// chunk's own time (when the machine queued it) can be a few microseconds older than the
    /// event printed before it.
    last_ts: std::cell::Cell<Timestamp>,
    hide: Hide,
    /// Human text goes to stderr even without `--json` (stdout carries other data, such as
    /// a batch's CSV).
    human_to_stderr: bool,
}

/// swaks' `--hide-*`: what not to print on the terminal (JSON is never filtered).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hide {
    /// What mailscope sent.
    pub send: bool,
    /// What the peer sent.
    pub receive: bool,
    /// Notes and the summary.
    pub informational: bool,
    /// Everything.
    pub all: bool,
}

impl Reporter {
    pub fn new(
        json: bool,
        role: Role,
        render: RenderOptions,
        show_time: bool,
        session: String,
    ) -> Self {
        Self {
            json,
            role,
            render,
            show_time,
            printed_chunks: 0,
            session,
            start: None,
            findings: Vec::new(),
            last_ts: std::cell::Cell::new(Timestamp(0)),
            hide: Hide::default(),
            human_to_stderr: false,
        }
    }

    /// Sends human text to stderr (stdout is for other data).
    pub fn set_human_to_stderr(&mut self, yes: bool) {
        self.human_to_stderr = yes;
    }

    /// Sets what not to print.
    pub fn set_hide(&mut self, hide: Hide) {
        self.hide = hide;
    }

    /// Human text: to stdout, or to stderr with `--json`.
    fn human(&self, line: &str) {
        write_human(self.json || self.human_to_stderr, line);
    }

    /// One NDJSON event with the envelope.
    pub fn event(&self, ty: &str, at: Timestamp, body: Value) {
        if !self.json {
            return;
        }
        let at = at.max(self.last_ts.get());
        self.last_ts.set(at);
        let mut obj = json!({
            "schema": "mailscope/1",
            "type": ty,
            "ts": rfc3339(at),
            "session": self.session,
        });
        if let (Value::Object(o), Value::Object(b)) = (&mut obj, body) {
            o.extend(b);
        }
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, &obj);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }

    /// A `***` note.
    pub fn note(&mut self, at: Timestamp, text: &str) {
        if !(self.hide.informational || self.hide.all) {
            self.human_note(text);
        }
        self.event("note", at, json!({ "text": text }));
    }

    fn human_note(&self, text: &str) {
        self.human(&format!("{}", format!("*** {text}").cyan()));
    }

    /// An error line (`*** error: ...`).
    pub fn error(&mut self, at: Timestamp, text: &str) {
        if !self.hide.all {
            self.human_error(text);
        }
        self.event("note", at, json!({ "text": format!("error: {text}") }));
    }

    fn human_error(&self, text: &str) {
        self.human(&format!("{}", format!("*** error: {text}").red().bold()));
    }

    /// A finding, inline.
    pub fn finding(&mut self, at: Timestamp, f: &Finding) {
        let line = format!("*** finding {f}");
        let styled = match f.severity {
            Severity::Info => format!("{}", line.dimmed()),
            Severity::Warning => format!("{}", line.yellow()),
            Severity::Error | Severity::Critical => format!("{}", line.red()),
        };
        if !self.hide.all {
            self.human(&styled);
        }
        self.event("finding", at, finding_json(f));
        self.findings.push(f.clone());
    }

    /// Prints the transcript chunks recorded since the last call.
    pub fn transcript(&mut self, t: &Transcript) {
        self.transcript_upto(t, usize::MAX);
    }

    /// Prints the transcript chunks recorded since the last call, up to chunk `upto`.
    pub fn transcript_upto(&mut self, t: &Transcript, upto: usize) {
        let chunks = &t.chunks()[..upto.min(t.chunks().len())];
        // Times count from the session's start (set by `session_started`), or else from the
        // first byte; never from an empty transcript's zero.
        if self.start.is_none() {
            self.start = chunks.first().map(|c| c.at);
        }
        let start = self.start.unwrap_or_default();
        for c in &chunks[self.printed_chunks.min(chunks.len())..] {
            let mark = direction_mark(self.role, c.direction, c.tls);
            // What mailscope sent is the client side for a client and the server side for a
            // server; --hide-send/--hide-receive follow that.
            let ours = (self.role == Role::Server)
                == (c.direction == mailscope_proto::Direction::ServerToClient);
            let hidden = self.hide.all || (ours && self.hide.send) || (!ours && self.hide.receive);
            // One write per chunk, not per line.
            let mut block = String::new();
            for l in render_chunk(c, self.render).into_iter().filter(|_| !hidden) {
                let time = if self.show_time {
                    format!("[{:>9.3}] ", l.at.micros_since(start) as f64 / 1000.0)
                } else {
                    String::new()
                };
                let text = format!("{time}{mark}{}", l.text);
                if !block.is_empty() {
                    block.push('\n');
                }
                if mark.contains('>') {
                    block.push_str(&format!("{}", text.green()));
                } else {
                    block.push_str(&text);
                }
            }
            if !block.is_empty() {
                self.human(&block);
            }
            if self.json {
                // JSON text is always fully escaped so it is exact; secrets stay redacted
                // unless asked.
                let exact = RenderOptions {
                    escape_all: true,
                    show_secrets: self.render.show_secrets,
                };
                let text: String = render_chunk(c, exact).into_iter().map(|l| l.text).collect();
                let ty = match c.direction {
                    mailscope_proto::Direction::ClientToServer => "sent",
                    mailscope_proto::Direction::ServerToClient => "received",
                };
                let redacted = !c.redactions.is_empty() && !self.render.show_secrets;
                self.event(
                    ty,
                    c.at,
                    json!({
                        "direction": c.direction.as_str(),
                        "offset": c.offset,
                        "length": c.len(),
                        "tls": c.tls,
                        "text": text,
                        "redacted": redacted,
                    }),
                );
            }
        }
        self.printed_chunks = chunks.len();
    }

    /// A reporter for a client command (`smtp`, `pop3`, `imap`), from the global options.
    pub fn for_client(global: &crate::cli::GlobalArgs) -> Self {
        let render = RenderOptions {
            escape_all: global.escape,
            show_secrets: global.show_secrets,
        };
        Self::new(
            global.json,
            Role::Client,
            render,
            global.show_time,
            crate::random_hex(8),
        )
    }

    /// The first event of a client session, then the key-log and connecting notes.
    #[allow(clippy::too_many_arguments)]
    pub fn session_started(
        &mut self,
        command: &str,
        host: &str,
        port: u16,
        tls_on_connect: bool,
        starttls: bool,
        quit_after: Option<&str>,
        keylog: Option<&std::path::Path>,
    ) {
        let t0 = mailscope_net::smtp::now();
        self.start = Some(t0);
        self.event(
            "session_started",
            t0,
            json!({ "command": command, "server": host, "port": port, "tls_on_connect": tls_on_connect,
                    "starttls": starttls, "quit_after": quit_after }),
        );
        if let Some(p) = keylog {
            self.note(
                t0,
                &format!("writing TLS key log (session secrets) to {}", p.display()),
            );
        }
        self.note(t0, &format!("connecting to {host} port {port}"));
    }

    /// The TCP connection is up: a note per failed address, the `connected` note and event.
    pub fn connected(
        &mut self,
        at: Timestamp,
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
        elapsed_us: u64,
        failed_attempts: &[(std::net::SocketAddr, String)],
    ) {
        for (addr, why) in failed_attempts {
            self.note(at, &format!("{addr} failed: {why}"));
        }
        self.note(
            at,
            &format!("connected to {peer} from {local} in {}", ms(elapsed_us)),
        );
        self.event(
            "connected",
            at,
            json!({ "peer": peer.to_string(), "local": local.to_string(), "elapsed_us": elapsed_us }),
        );
    }

    /// A plain human line (summary blocks; hidden with --hide-informational).
    pub fn line(&self, text: &str) {
        if !(self.hide.informational || self.hide.all) {
            self.human(text);
        }
    }

    /// The findings reported so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The most severe finding, if any.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Writes one human line to stdout or stderr, colours stripped unless the stream is a
/// terminal that wants them. The streams are set up once: `anstream::stdout()` per line
/// would ask the terminal (an ioctl) for every line.
pub fn write_human(to_stderr: bool, line: &str) {
    use std::sync::{Mutex, OnceLock};
    static OUT: OnceLock<Mutex<anstream::AutoStream<std::io::Stdout>>> = OnceLock::new();
    static ERR: OnceLock<Mutex<anstream::AutoStream<std::io::Stderr>>> = OnceLock::new();
    if to_stderr {
        let m = ERR.get_or_init(|| Mutex::new(anstream::AutoStream::auto(std::io::stderr())));
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(s, "{line}");
    } else {
        let m = OUT.get_or_init(|| Mutex::new(anstream::AutoStream::auto(std::io::stdout())));
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(s, "{line}");
    }
}

/// A finding as JSON.
pub fn finding_json(f: &Finding) -> Value {
    json!({
        "id": f.kind.id,
        "severity": f.severity.as_str(),
        "reference": f.kind.reference,
        "summary": f.kind.summary,
        "detail": f.detail,
        "fix": (!f.kind.fix.is_empty()).then_some(f.kind.fix),
        "direction": f.direction.map(|d| d.as_str()),
        "offset": f.offset,
    })
}

/// RFC 3339 UTC with microseconds.
pub fn rfc3339(t: Timestamp) -> String {
    let nanos = i128::from(t.0) * 1000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(dt) => {
            let f = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
            );
            dt.format(&f).unwrap_or_else(|_| t.0.to_string())
        }
        Err(_) => t.0.to_string(),
    }
}

/// Milliseconds with one decimal, from microseconds.
pub fn ms(us: u64) -> String {
    format!("{:.1}ms", us as f64 / 1000.0)
}
