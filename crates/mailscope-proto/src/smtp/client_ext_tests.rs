//! Client machine tests for pipelining, BDAT, ESMTP parameters, LMTP, drop-after, XCLIENT,
//! the PROXY preamble, `lax` and SMTP smuggling probes, against a scripted server that
//! parses what the client sends (command lines, DATA content, BDAT chunks) and answers each
//! command. Every scenario is also run with the server's bytes cut at small split points.

use super::super::client::*;
use super::super::data::{prepare_normalized, prepare_raw};
use crate::sasl::{Credentials, Mechanism};
use crate::transcript::{Direction, Timestamp};

/// What the scripted server parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cmd {
    /// A command line, without its CRLF.
    Line(String),
    /// DATA content up to (without) the end-of-data sequence that ended it.
    Data(Vec<u8>),
    /// One BDAT chunk.
    Bdat {
        size: usize,
        last: bool,
        data: Vec<u8>,
    },
}

/// The scripted server's answer to one command.
enum Ans {
    Reply(Vec<u8>),
    /// Nothing (e.g. a line inside a smuggled message a vulnerable server reads as text).
    Silent,
    Close,
}

fn r(s: &str) -> Ans {
    Ans::Reply(s.as_bytes().to_vec())
}

enum Mode {
    Command,
    Data,
    Bdat { size: usize, last: bool },
}

type Answer = Box<dyn FnMut(&Cmd, bool) -> Ans>;

struct Server {
    buf: Vec<u8>,
    mode: Mode,
    answer: Answer,
    /// Sequences the server takes as the end of data (`\r\n.\r\n` for a correct one);
    /// matched after the content's last line end, or at its very start.
    terminators: Vec<&'static [u8]>,
    log: Vec<Cmd>,
}

impl Server {
    fn new(answer: Answer) -> Self {
        Self {
            buf: Vec::new(),
            mode: Mode::Command,
            answer,
            terminators: vec![b"\r\n.\r\n"],
            log: Vec::new(),
        }
    }

    /// The end of data in `buf`: (content length, terminator length).
    fn end_of_data(&self) -> Option<(usize, usize)> {
        if self.buf.starts_with(b".\r\n") {
            return Some((0, 3));
        }
        let mut best: Option<(usize, usize)> = None;
        for t in &self.terminators {
            if let Some(i) = self.buf.windows(t.len()).position(|w| w == *t) {
                // The line end before the dot is the content's own.
                let lead = t.iter().take_while(|&&b| b != b'.').count();
                let cand = (i + lead, t.len() - lead);
                if best.is_none_or(|b| cand.0 < b.0) {
                    best = Some(cand);
                }
            }
        }
        best
    }

    /// Feeds client bytes; returns the replies, or `None` when the server hangs up.
    fn feed(&mut self, bytes: &[u8], tls: bool) -> Option<Vec<u8>> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let cmd = match self.mode {
                Mode::Command => {
                    let Some(i) = self.buf.iter().position(|&b| b == b'\n') else {
                        break;
                    };
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    let upper = text.to_ascii_uppercase();
                    if let Some(rest) = upper.strip_prefix("BDAT ") {
                        let mut w = rest.split_whitespace();
                        let size = w.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                        let last = w.next() == Some("LAST");
                        self.mode = Mode::Bdat { size, last };
                        continue;
                    }
                    Cmd::Line(text)
                }
                Mode::Data => {
                    let Some((len, tlen)) = self.end_of_data() else {
                        break;
                    };
                    let content = self.buf[..len].to_vec();
                    self.buf.drain(..len + tlen);
                    self.mode = Mode::Command;
                    Cmd::Data(content)
                }
                Mode::Bdat { size, last } => {
                    if self.buf.len() < size {
                        break;
                    }
                    let data: Vec<u8> = self.buf.drain(..size).collect();
                    self.mode = Mode::Command;
                    Cmd::Bdat { size, last, data }
                }
            };
            self.log.push(cmd.clone());
            match (self.answer)(&cmd, tls) {
                Ans::Reply(bytes) => {
                    if matches!(&cmd, Cmd::Line(l) if l.eq_ignore_ascii_case("DATA"))
                        && bytes.starts_with(b"354")
                    {
                        self.mode = Mode::Data;
                    }
                    out.extend_from_slice(&bytes);
                }
                Ans::Silent => {}
                Ans::Close => return None,
            }
        }
        Some(out)
    }

    fn lines(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Cmd::Line(l) => Some(l.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A well-behaved ESMTP server offering `keywords` (one EHLO line each).
fn esmtp(keywords: &'static [&'static str]) -> Answer {
    esmtp_with(keywords, |_, _| None)
}

/// Like [`esmtp`], with `over` answering first where it wants to.
fn esmtp_with(
    keywords: &'static [&'static str],
    mut over: impl FnMut(&Cmd, bool) -> Option<Ans> + 'static,
) -> Answer {
    Box::new(move |cmd, tls| {
        if let Some(a) = over(cmd, tls) {
            return a;
        }
        match cmd {
            Cmd::Line(l) => {
                let verb = l
                    .split([' ', ':'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                match verb.as_str() {
                    "EHLO" | "LHLO" => {
                        let mut s = String::from("250-mx.example.test\r\n");
                        for (i, k) in keywords.iter().enumerate() {
                            let sep = if i + 1 == keywords.len() { ' ' } else { '-' };
                            s.push_str(&format!("250{sep}{k}\r\n"));
                        }
                        if keywords.is_empty() {
                            s = "250 mx.example.test\r\n".into();
                        }
                        Ans::Reply(s.into_bytes())
                    }
                    "HELO" => r("250 mx.example.test\r\n"),
                    "STARTTLS" => r("220 2.0.0 go ahead\r\n"),
                    "AUTH" => r("235 2.7.0 ok\r\n"),
                    "XCLIENT" => r("220 mx.example.test ESMTP\r\n"),
                    "MAIL" => r("250 2.1.0 sender ok\r\n"),
                    "RCPT" => r("250 2.1.5 recipient ok\r\n"),
                    "DATA" => r("354 go ahead\r\n"),
                    "RSET" | "NOOP" => r("250 2.0.0 ok\r\n"),
                    "QUIT" => r("221 2.0.0 bye\r\n"),
                    _ => r("500 5.5.2 unknown command\r\n"),
                }
            }
            Cmd::Data(_) => r("250 2.0.0 queued as A1\r\n"),
            Cmd::Bdat { size, last, .. } => Ans::Reply(
                if *last {
                    "250 2.0.0 queued as B1\r\n".to_string()
                } else {
                    format!("250 2.0.0 {size} octets received\r\n")
                }
                .into_bytes(),
            ),
        }
    })
}

struct Sim {
    sent: Vec<u8>,
    /// Each write the machine asked for, as one piece.
    writes: Vec<Vec<u8>>,
    events: Vec<Event>,
    client: Client,
    server: Server,
}

impl Sim {
    fn outcome(&self) -> Outcome {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::Finished(o) => Some(o.clone()),
                _ => None,
            })
            .expect("finished")
    }

    fn ids(&self) -> Vec<&'static str> {
        self.client.findings().iter().map(|f| f.kind.id).collect()
    }

    fn notes(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Note(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    fn sent_text(&self) -> String {
        String::from_utf8_lossy(&self.sent).into_owned()
    }

    fn step(&self) -> Option<FailedStep> {
        match self.outcome() {
            Outcome::Failed { step, .. } => Some(step),
            _ => None,
        }
    }
}

const GREETING: &[u8] = b"220 mx.example.test ESMTP\r\n";

/// Drives the machine against `server`, feeding its replies in pieces of `chunk` bytes; the
/// machine's deadline is honoured when it waits for a reply that will not come.
fn sim_with(opts: ClientOptions, mut server: Server, chunk: usize, preamble: &[u8]) -> Sim {
    let mut c = Client::new(opts);
    let mut now = 1_000_000u64;
    c.send_preamble(Timestamp(now), preamble);
    c.start(Timestamp(now));
    let mut sent = Vec::new();
    let mut writes = Vec::new();
    let mut events = Vec::new();
    let mut pending: Vec<u8> = GREETING.to_vec();
    let mut eof = false;
    let mut skip = preamble.len();
    for _ in 0..2000 {
        now += 10;
        for piece in pending.chunks(chunk.max(1)) {
            c.handle_input(Timestamp(now), piece);
        }
        pending.clear();
        if eof {
            c.handle_eof(Timestamp(now));
        }
        let mut out = Vec::new();
        let _ = c.poll_transmit(&mut out);
        while let Some(e) = c.poll_event() {
            if e == Event::StartTlsRequested {
                c.handle_tls_established(Timestamp(now));
                let _ = c.poll_transmit(&mut out);
            }
            events.push(e);
        }
        if !out.is_empty() {
            // A proxy-aware server consumes the PROXY header before SMTP.
            let smtp = out[skip.min(out.len())..].to_vec();
            skip = skip.saturating_sub(out.len());
            sent.extend_from_slice(&out);
            writes.push(out.clone());
            if !eof {
                match server.feed(&smtp, c.is_tls()) {
                    Some(bytes) => pending = bytes,
                    None => eof = true,
                }
            }
        }
        if c.is_finished() && !c.has_pending_output() {
            break;
        }
        if out.is_empty()
            && pending.is_empty()
            && !eof
            && let Some(t) = c.poll_timeout()
        {
            now = t.0;
            c.handle_timeout(t);
        }
    }
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    Sim {
        sent,
        writes,
        events,
        client: c,
        server,
    }
}

fn sim(opts: ClientOptions, answer: Answer) -> Sim {
    sim_with(opts, Server::new(answer), usize::MAX, b"")
}

/// Runs the scenario whole and cut at small split points: the same bytes sent, the same
/// events (the split-point invariant).
fn sim_checked(opts: ClientOptions, make: impl Fn() -> Server) -> Sim {
    let whole = sim_with(opts.clone(), make(), usize::MAX, b"");
    for chunk in [1, 2, 3, 7] {
        let split = sim_with(opts.clone(), make(), chunk, b"");
        assert_eq!(split.sent, whole.sent, "chunk {chunk}: bytes sent differ");
        assert_eq!(split.events, whole.events, "chunk {chunk}: events differ");
    }
    assert_eq!(
        whole.client.transcript().stream(Direction::ClientToServer),
        whole.sent,
        "transcript = bytes sent"
    );
    whole
}

fn base() -> ClientOptions {
    ClientOptions {
        helo_name: "client.example.test".into(),
        from: "alice@example.test".into(),
        to: vec!["bob@example.test".into(), "carol@example.test".into()],
        data: Some(prepare_normalized(b"Subject: hi\n\n.dot line\nhello\n")),
        ..ClientOptions::default()
    }
}

const FULL: &[&str] = &[
    "PIPELINING",
    "SIZE 100000",
    "8BITMIME",
    "CHUNKING",
    "BINARYMIME",
    "DSN",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
];

// ---------------------------------------------------------------------------------------
// Pipelining
// ---------------------------------------------------------------------------------------

#[test]
fn pipelining_sends_the_envelope_in_one_write_when_offered() {
    let mut o = base();
    o.pipeline = true;
    let s = sim_checked(o, || Server::new(esmtp(FULL)));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(
        s.writes.iter().any(|w| w.as_slice()
            == b"MAIL FROM:<alice@example.test> SIZE=33\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n"),
        "{:?}",
        s.sent_text()
    );
    assert!(s.notes().iter().any(|n| n.contains("MAIL, 2 RCPT, DATA")));
    let answered: Vec<_> = s
        .events
        .iter()
        .filter_map(|e| match e {
            Event::RecipientAnswered { to, accepted, .. } => Some((to.clone(), *accepted)),
            _ => None,
        })
        .collect();
    assert_eq!(
        answered,
        vec![
            ("bob@example.test".to_string(), true),
            ("carol@example.test".to_string(), true)
        ]
    );
    // Replies were matched to the right commands, in order.
    let verbs: Vec<_> = s
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ReplyReceived { command, .. } => Some(command.unwrap_or("greeting")),
            _ => None,
        })
        .collect();
    assert_eq!(
        verbs,
        vec![
            "greeting", "EHLO", "MAIL", "RCPT", "RCPT", "DATA", ".", "QUIT"
        ]
    );
}

#[test]
fn without_the_offer_pipelining_is_a_note_or_with_lax_a_finding() {
    let mut o = base();
    o.pipeline = true;
    let s = sim_checked(o.clone(), || Server::new(esmtp(&["8BITMIME"])));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(
        s.notes()
            .iter()
            .any(|n| n.contains("does not offer PIPELINING"))
    );
    assert!(
        s.writes.iter().all(
            |w| w.windows(2).filter(|p| p == b"\r\n").count() <= 1 || w.starts_with(b"Subject")
        ),
        "one command per write"
    );
    o.lax = true;
    let s = sim_checked(o, || Server::new(esmtp(&["8BITMIME"])));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(s.ids().contains(&"smtp.client.lax-unadvertised"));
    assert!(
        s.writes
            .iter()
            .any(|w| w.starts_with(b"MAIL") && w.ends_with(b"DATA\r\n"))
    );
}

#[test]
fn pipelined_refusals_keep_per_recipient_outcomes_and_exit_codes() {
    // One recipient refused: the transaction goes on, the refusal is explained.
    let mut o = base();
    o.pipeline = true;
    let s = sim_checked(o.clone(), || {
        Server::new(esmtp_with(FULL, |c, _| match c {
            Cmd::Line(l) if l.contains("bob@") => Some(r("550 5.1.1 no such user\r\n")),
            _ => None,
        }))
    });
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(s.ids().contains(&"smtp.reply.unknown-user"));
    assert!(s.events.iter().any(|e| matches!(
        e,
        Event::ReplyExplained {
            command: Some("RCPT"),
            ..
        }
    )));
    // Every recipient refused, DATA answered 503: exit 24 after all replies, then QUIT.
    let s = sim_checked(o.clone(), || {
        Server::new(esmtp_with(FULL, |c, _| match c {
            Cmd::Line(l) if l.starts_with("RCPT") => Some(r("550 5.1.1 no\r\n")),
            Cmd::Line(l) if l == "DATA" => Some(r("503 5.5.1 no valid recipients\r\n")),
            _ => None,
        }))
    });
    assert_eq!(s.step().map(FailedStep::exit_code), Some(24));
    assert!(s.sent.ends_with(b"DATA\r\nQUIT\r\n"));
    // ...and a server that answers 354 anyway gets a lone dot first.
    let s = sim_checked(o.clone(), || {
        Server::new(esmtp_with(FULL, |c, _| match c {
            Cmd::Line(l) if l.starts_with("RCPT") => Some(r("550 5.1.1 no\r\n")),
            Cmd::Data(_) => Some(r("554 5.5.1 no valid recipients\r\n")),
            _ => None,
        }))
    });
    assert_eq!(s.step(), Some(FailedStep::Rcpt));
    assert!(
        s.sent.ends_with(b"DATA\r\n.\r\nQUIT\r\n"),
        "{}",
        s.sent_text()
    );
    // MAIL refused: exit 23, after the RCPT and DATA replies.
    let s = sim_checked(o.clone(), || {
        Server::new(esmtp_with(FULL, |c, _| match c {
            Cmd::Line(l) if l.starts_with("MAIL") => Some(r("553 5.1.8 bad sender\r\n")),
            Cmd::Line(l) if l.starts_with("RCPT") || l == "DATA" => {
                Some(r("503 5.5.1 need MAIL\r\n"))
            }
            _ => None,
        }))
    });
    assert_eq!(s.step().map(FailedStep::exit_code), Some(23));
    assert!(s.sent.ends_with(b"DATA\r\nQUIT\r\n"));
    // A stop point ends the group there.
    o.quit_after = Some(Stage::Mail);
    let s = sim_checked(o, || Server::new(esmtp(FULL)));
    assert_eq!(s.outcome(), Outcome::StoppedAfter(Stage::Mail));
    assert!(!s.sent_text().contains("RCPT"));
}

// ---------------------------------------------------------------------------------------
// BDAT
// ---------------------------------------------------------------------------------------

fn bdat_data(s: &Sim) -> Vec<u8> {
    s.server
        .log
        .iter()
        .filter_map(|c| match c {
            Cmd::Bdat { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}

#[test]
fn bdat_sends_the_content_unstuffed_in_chunks() {
    let mut o = base();
    o.chunking = true;
    o.chunk_size = 10;
    for pipeline in [false, true] {
        o.pipeline = pipeline;
        let s = sim_checked(o.clone(), || Server::new(esmtp(FULL)));
        assert_eq!(s.outcome(), Outcome::Completed, "pipeline {pipeline}");
        // No dot-stuffing and no terminator: the message as normalised.
        assert_eq!(bdat_data(&s), b"Subject: hi\r\n\r\n.dot line\r\nhello\r\n");
        let sizes: Vec<_> = s
            .server
            .log
            .iter()
            .filter_map(|c| match c {
                Cmd::Bdat { size, last, .. } => Some((*size, *last)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sizes,
            vec![(10, false), (10, false), (10, false), (3, true)]
        );
        let chunks = s
            .events
            .iter()
            .filter(|e| matches!(e, Event::ChunkSent { .. }))
            .count();
        assert_eq!(chunks, 4);
        assert!(!s.sent_text().contains("DATA"));
        // The leading dot is not a finding with BDAT; the CRLF cut between chunks is fine.
        assert!(
            s.ids().iter().all(|i| !i.starts_with("smtp.data")),
            "{:?}",
            s.ids()
        );
    }
    // Pipelined: everything in the first write after EHLO's reply.
    assert!(s_pipelined_group(&o));
}

fn s_pipelined_group(o: &ClientOptions) -> bool {
    let s = sim(o.clone(), esmtp(FULL));
    s.writes
        .iter()
        .any(|w| w.starts_with(b"MAIL") && w.windows(4).filter(|x| x == b"BDAT").count() == 4)
}

#[test]
fn bdat_raw_and_empty_and_binarymime() {
    let mut o = base();
    o.chunking = true;
    o.data = Some(prepare_raw(b"a\nb\r.\r\n..x"));
    let s = sim_checked(o.clone(), || Server::new(esmtp(FULL)));
    assert_eq!(bdat_data(&s), b"a\nb\r.\r\n..x", "raw goes as is");
    assert!(s.sent_text().contains("BDAT 10 LAST\r\n"));
    // Bare LF in BDAT content is still linted, at its real offset.
    let lf = s
        .client
        .findings()
        .iter()
        .find(|f| f.kind.id == "smtp.data.bare-lf")
        .and_then(|f| f.offset)
        .expect("bare lf");
    assert_eq!(s.sent[lf as usize - 1..=lf as usize], *b"a\n");
    o.data = Some(prepare_normalized(b""));
    let s = sim(o.clone(), esmtp(FULL));
    assert!(
        s.sent_text().contains("BDAT 0 LAST\r\nQUIT"),
        "{}",
        s.sent_text()
    );
    assert_eq!(s.outcome(), Outcome::Completed);
    // BINARYMIME implies BDAT and declares BODY=BINARYMIME.
    let mut b = base();
    b.body_type = Some(BodyType::BinaryMime);
    b.data = Some(prepare_raw(b"\x00\x01\xff binary"));
    let s = sim(b.clone(), esmtp(FULL));
    assert!(s.sent_text().contains(" BODY=BINARYMIME"));
    assert!(
        s.sent
            .windows(24)
            .any(|w| w == b"BDAT 10 LAST\r\n\x00\x01\xff binary")
    );
    assert!(!s.ids().contains(&"smtp.data.8bit-without-8bitmime"));
    // Without CHUNKING: refused before MAIL (exit 25), or with lax sent and marked.
    let s = sim(b.clone(), esmtp(&["8BITMIME", "BINARYMIME"]));
    assert_eq!(s.step().map(FailedStep::exit_code), Some(25));
    assert!(!s.sent_text().contains("MAIL"));
    b.lax = true;
    let s = sim(b, esmtp(&["8BITMIME", "BINARYMIME"]));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(s.ids().contains(&"smtp.client.lax-unadvertised"));
}

#[test]
fn bdat_refusals_map_to_data_and_dot() {
    let mut o = base();
    o.chunking = true;
    o.chunk_size = 10;
    let s = sim_checked(o.clone(), || {
        Server::new(esmtp_with(FULL, |c, _| match c {
            Cmd::Bdat { last: false, .. } => Some(r("552 5.3.4 too much\r\n")),
            _ => None,
        }))
    });
    assert_eq!(s.step(), Some(FailedStep::Data));
    let s = sim_checked(o, || {
        Server::new(esmtp_with(FULL, |c, _| match c {
            Cmd::Bdat { last: true, .. } => Some(r("554 5.7.1 spam\r\n")),
            _ => None,
        }))
    });
    match s.outcome() {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step.exit_code(), 26);
            assert!(reason.contains("BDAT LAST"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// ESMTP parameters
// ---------------------------------------------------------------------------------------

#[test]
fn esmtp_parameters_go_on_the_wire() {
    let mut o = base();
    o.dsn = DsnOptions {
        notify: vec![DsnNotify::Failure, DsnNotify::Delay],
        ret: Some(DsnRet::Hdrs),
        envid: Some("id 1".into()),
        orcpt: true,
    };
    o.mail_params = vec!["MT-PRIORITY=2".into()];
    o.rcpt_params = vec!["RRVS=2025-01-01T00:00:00Z".into()];
    let keywords: &'static [&'static str] = &["SIZE", "DSN", "MT-PRIORITY", "RRVS"];
    let s = sim_checked(o, move || Server::new(esmtp(keywords)));
    assert_eq!(s.outcome(), Outcome::Completed);
    let lines = s.server.lines();
    assert!(lines.contains(
        &"MAIL FROM:<alice@example.test> SIZE=33 RET=HDRS ENVID=id+201 MT-PRIORITY=2".to_string()
    ));
    assert!(lines.contains(
        &"RCPT TO:<bob@example.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.test RRVS=2025-01-01T00:00:00Z".to_string()
    ));
}

#[test]
fn smtputf8_is_automatic_for_non_ascii_addresses_and_refused_without_the_offer() {
    let mut o = base();
    o.to = vec!["jöe@exämple.test".into()];
    let s = sim(o.clone(), esmtp(&["SMTPUTF8", "8BITMIME"]));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(
        s.server
            .lines()
            .contains(&"MAIL FROM:<alice@example.test> SMTPUTF8".to_string())
    );
    assert!(s.notes().iter().any(|n| n.contains("not ASCII")));
    let s = sim(o, esmtp(&["8BITMIME"]));
    match s.outcome() {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step, FailedStep::Mail);
            assert!(
                reason.contains("SMTPUTF8") && reason.contains("jöe"),
                "{reason}"
            );
        }
        o => panic!("{o:?}"),
    }
    assert!(
        !s.sent_text().contains("MAIL"),
        "nothing of the transaction was sent"
    );
}

#[test]
fn requiretls_needs_tls_and_size_over_the_limit_is_refused_early() {
    let mut o = base();
    o.requiretls = true;
    let s = sim(o.clone(), esmtp(&["REQUIRETLS", "STARTTLS"]));
    assert_eq!(s.step(), Some(FailedStep::Mail));
    o.starttls = true;
    let s = sim(o, esmtp(&["REQUIRETLS", "STARTTLS"]));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(s.server.lines().iter().any(|l| l.ends_with(" REQUIRETLS")));
    let s = sim(base(), esmtp(&["SIZE 20"]));
    match s.outcome() {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step.exit_code(), 23);
            assert!(reason.contains("33 octets") && reason.contains("SIZE limit of 20"));
        }
        o => panic!("{o:?}"),
    }
    assert!(s.sent.ends_with(b"EHLO client.example.test\r\nQUIT\r\n"));
}

// ---------------------------------------------------------------------------------------
// LMTP
// ---------------------------------------------------------------------------------------

fn lmtp_server(after_dot: &'static [&'static str]) -> Server {
    Server::new(esmtp_with(
        &["PIPELINING", "8BITMIME", "CHUNKING"],
        move |c, _| match c {
            Cmd::Line(l) if l.contains("dave@") => Some(r("550 5.1.1 unknown\r\n")),
            Cmd::Data(_) | Cmd::Bdat { last: true, .. } => {
                Some(Ans::Reply(after_dot.concat().into_bytes()))
            }
            _ => None,
        },
    ))
}

#[test]
fn lmtp_reads_one_reply_per_accepted_recipient() {
    let mut o = base();
    o.hello = HelloKind::Lhlo;
    o.to = vec![
        "bob@example.test".into(),
        "dave@example.test".into(),
        "carol@example.test".into(),
    ];
    for (pipeline, chunking) in [(false, false), (true, false), (false, true), (true, true)] {
        o.pipeline = pipeline;
        o.chunking = chunking;
        let s = sim_checked(o.clone(), || {
            lmtp_server(&[
                "250 2.0.0 <bob> delivered\r\n",
                "452 4.2.2 <carol> over quota\r\n",
            ])
        });
        assert_eq!(s.outcome(), Outcome::Completed, "{pipeline} {chunking}");
        let delivered: Vec<_> = s
            .events
            .iter()
            .filter_map(|e| match e {
                Event::RecipientDelivered {
                    to,
                    accepted,
                    reply,
                } => Some((to.clone(), *accepted, reply.code)),
                _ => None,
            })
            .collect();
        assert_eq!(
            delivered,
            vec![
                ("bob@example.test".to_string(), true, 250),
                ("carol@example.test".to_string(), false, 452)
            ]
        );
        assert!(
            s.notes()
                .iter()
                .any(|n| n.contains("1 of 2 recipients refused"))
        );
        assert!(s.ids().contains(&"smtp.reply.mailbox-full"));
        assert!(s.sent.starts_with(b"LHLO client.example.test\r\n"));
    }
    let s = sim_checked(o, || {
        lmtp_server(&["550 5.1.1 gone\r\n", "452 4.2.2 over quota\r\n"])
    });
    match s.outcome() {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step.exit_code(), 26);
            assert!(reason.contains("every recipient"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// drop-after
// ---------------------------------------------------------------------------------------

#[test]
fn drop_after_closes_without_quit_at_every_stage() {
    let cases: [(Stage, &str); 10] = [
        (Stage::Connect, ""),
        (Stage::Banner, ""),
        (Stage::FirstEhlo, "EHLO client.example.test\r\n"),
        (Stage::Tls, "STARTTLS\r\n"),
        (Stage::Ehlo, "STARTTLS\r\nEHLO client.example.test\r\n"),
        (Stage::Auth, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        (Stage::Mail, "MAIL FROM:<alice@example.test> SIZE=33\r\n"),
        (Stage::Rcpt, "RCPT TO:<carol@example.test>\r\n"),
        (Stage::Data, "DATA\r\n"),
        (Stage::Dot, "\r\n.\r\n"),
    ];
    for (stage, tail) in cases {
        let mut o = base();
        o.starttls = true;
        o.allow_plaintext_auth = true;
        o.auth = Some(AuthOptions {
            mechanism: Some(Mechanism::Plain),
            credentials: Credentials::new("alice", "secret"),
            client_nonce: "n".into(),
        });
        o.drop_after = Some(stage);
        let s = sim_checked(o, || {
            Server::new(esmtp(&["STARTTLS", "AUTH PLAIN", "SIZE"]))
        });
        assert_eq!(s.outcome(), Outcome::Dropped(stage), "{stage:?}");
        assert!(
            s.sent_text().ends_with(tail),
            "{stage:?}: {}",
            s.sent_text()
        );
        assert!(!s.sent_text().contains("QUIT"), "{stage:?}");
        if stage == Stage::Connect {
            assert!(
                s.sent.is_empty()
                    && s.events
                        .iter()
                        .all(|e| !matches!(e, Event::ReplyReceived { .. }))
            );
        }
    }
    let mut o = base();
    o.quit_after = Some(Stage::Mail);
    o.drop_after = Some(Stage::Rcpt);
    let s = sim(o, esmtp(FULL));
    assert_eq!(s.step(), Some(FailedStep::Options));
    assert!(s.sent.is_empty());
}

#[test]
fn drop_after_send_hangs_up_before_the_reply() {
    // The last line sent is the stage's command; its reply is never read.
    let cases: [(Stage, &str, &str); 8] = [
        (Stage::FirstEhlo, "EHLO client.example.test\r\n", "EHLO"),
        (Stage::Tls, "STARTTLS\r\n", "STARTTLS"),
        (
            Stage::Ehlo,
            "STARTTLS\r\nEHLO client.example.test\r\n",
            "EHLO",
        ),
        (Stage::Auth, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "AUTH"),
        (
            Stage::Mail,
            "MAIL FROM:<alice@example.test> SIZE=33\r\n",
            "MAIL",
        ),
        (Stage::Rcpt, "RCPT TO:<carol@example.test>\r\n", "RCPT"),
        (Stage::Data, "DATA\r\n", "DATA"),
        (Stage::Dot, "\r\n.\r\n", "."),
    ];
    for (stage, tail, verb) in cases {
        let mut o = base();
        o.starttls = true;
        o.allow_plaintext_auth = true;
        o.auth = Some(AuthOptions {
            mechanism: Some(Mechanism::Plain),
            credentials: Credentials::new("alice", "secret"),
            client_nonce: "n".into(),
        });
        o.drop_after_send = Some(stage);
        let s = sim_checked(o, || {
            Server::new(esmtp(&["STARTTLS", "AUTH PLAIN", "SIZE"]))
        });
        assert_eq!(s.outcome(), Outcome::Dropped(stage), "{stage:?}");
        assert!(
            s.sent_text().ends_with(tail),
            "{stage:?}: {}",
            s.sent_text()
        );
        assert!(!s.sent_text().contains("QUIT"), "{stage:?}");
        // No reply to the last command was taken in: one command more than replies (for
        // dot, the message after DATA's 354 is not a command).
        let sent: Vec<&str> = s
            .events
            .iter()
            .filter_map(|e| match e {
                Event::CommandSent { command, .. } => Some(*command),
                _ => None,
            })
            .collect();
        let replies = s
            .events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::ReplyReceived {
                        command: Some(_),
                        ..
                    }
                )
            })
            .count();
        let unanswered = usize::from(stage != Stage::Dot);
        assert_eq!(sent.len(), replies + unanswered, "{stage:?}: {sent:?}");
        if stage != Stage::Dot {
            assert_eq!(sent.last(), Some(&verb), "{stage:?}");
        }
    }
    // With pipelining the group stops at the stage: no RCPT after MAIL.
    let mut o = base();
    o.pipeline = true;
    o.drop_after_send = Some(Stage::Mail);
    let s = sim(o, esmtp(&["PIPELINING", "SIZE"]));
    assert_eq!(s.outcome(), Outcome::Dropped(Stage::Mail));
    assert!(!s.sent_text().contains("RCPT"), "{}", s.sent_text());
    // One stop only; nothing is sent at connect or banner.
    for (q, d, ds) in [
        (Some(Stage::Mail), None, Some(Stage::Rcpt)),
        (None, Some(Stage::Mail), Some(Stage::Rcpt)),
        (None, None, Some(Stage::Banner)),
    ] {
        let mut o = base();
        o.quit_after = q;
        o.drop_after = d;
        o.drop_after_send = ds;
        let s = sim(o, esmtp(FULL));
        assert_eq!(s.step(), Some(FailedStep::Options), "{q:?} {d:?} {ds:?}");
        assert!(s.sent.is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// XCLIENT, PROXY
// ---------------------------------------------------------------------------------------

#[test]
fn xclient_restarts_the_session_with_ehlo() {
    let mut o = base();
    o.starttls = true;
    o.xclient = vec![
        ("name".into(), "spike.porcupine.org".into()),
        ("ADDR".into(), "168.100.189.2".into()),
        ("HELO".into(), "a helo=name".into()),
        ("LOGIN".into(), "[UNAVAILABLE]".into()),
    ];
    let kw: &'static [&'static str] = &["STARTTLS", "XCLIENT NAME ADDR PROTO HELO LOGIN", "SIZE"];
    let s = sim_checked(o.clone(), move || Server::new(esmtp(kw)));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(s.sent_text().starts_with(
        "EHLO client.example.test\r\nSTARTTLS\r\nEHLO client.example.test\r\nXCLIENT NAME=spike.porcupine.org ADDR=168.100.189.2 HELO=a+20helo+3Dname LOGIN=[UNAVAILABLE]\r\nEHLO client.example.test\r\nMAIL"
    ), "{}", s.sent_text());
    // Before STARTTLS (swaks' --xclient-before-starttls): EHLO, XCLIENT, EHLO, STARTTLS,
    // EHLO; the stages still come in order, and drop-after-send ehlo means the last EHLO.
    let mut before = o.clone();
    before.xclient_before_tls = true;
    let s = sim_checked(before.clone(), move || Server::new(esmtp(kw)));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(s.sent_text().starts_with(
        "EHLO client.example.test\r\nXCLIENT NAME=spike.porcupine.org ADDR=168.100.189.2 HELO=a+20helo+3Dname LOGIN=[UNAVAILABLE]\r\nEHLO client.example.test\r\nSTARTTLS\r\nEHLO client.example.test\r\nMAIL"
    ), "{}", s.sent_text());
    before.drop_after_send = Some(Stage::Ehlo);
    let s = sim_checked(before.clone(), move || Server::new(esmtp(kw)));
    assert_eq!(s.outcome(), Outcome::Dropped(Stage::Ehlo));
    assert!(
        s.sent_text()
            .ends_with("STARTTLS\r\nEHLO client.example.test\r\n"),
        "{}",
        s.sent_text()
    );
    let mut no_tls = o.clone();
    no_tls.starttls = false;
    no_tls.xclient_before_tls = true;
    assert!(no_tls.validate().is_err());
    // Not offered: exit 33 before sending it; an attribute not offered, too.
    let s = sim(o.clone(), esmtp(&["STARTTLS"]));
    assert_eq!(s.step().map(FailedStep::exit_code), Some(33));
    assert!(!s.sent_text().contains("XCLIENT"));
    let s = sim(o.clone(), esmtp(&["STARTTLS", "XCLIENT NAME ADDR"]));
    match s.outcome() {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step, FailedStep::Xclient);
            assert!(reason.contains("HELO"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    // Refused: 33; the EHLO after it refused: 34.
    let s = sim(
        o.clone(),
        esmtp_with(kw, |c, _| match c {
            Cmd::Line(l) if l.starts_with("XCLIENT") => Some(r("550 5.7.0 not authorized\r\n")),
            _ => None,
        }),
    );
    assert_eq!(s.step().map(FailedStep::exit_code), Some(33));
    let mut ehlos = 0;
    let s = sim(
        o.clone(),
        esmtp_with(kw, move |c, _| match c {
            Cmd::Line(l) if l.starts_with("EHLO") => {
                ehlos += 1;
                (ehlos == 3).then(|| r("421 4.3.0 bye\r\n"))
            }
            _ => None,
        }),
    );
    assert_eq!(s.step().map(FailedStep::exit_code), Some(34));
    // lax: sent although not offered, and marked.
    o.lax = true;
    let s = sim(o, esmtp(&["STARTTLS", "XCLIENT NAME"]));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert_eq!(
        s.ids()
            .iter()
            .filter(|i| **i == "smtp.client.lax-unadvertised")
            .count(),
        3
    );
}

#[test]
fn a_proxy_header_goes_first_and_is_in_the_transcript() {
    let src: std::net::SocketAddr = "192.0.2.10:40000"
        .parse()
        .unwrap_or_else(|_| unreachable!());
    let dst: std::net::SocketAddr = "198.51.100.25:25"
        .parse()
        .unwrap_or_else(|_| unreachable!());
    for header in [
        proxy::encode_proxy_v1(src, dst),
        proxy::encode_proxy_v2(src, dst),
    ] {
        let s = sim_with(base(), Server::new(esmtp(FULL)), usize::MAX, &header);
        assert!(s.sent.starts_with(&header));
        assert!(s.sent[header.len()..].starts_with(b"EHLO"));
        assert_eq!(s.outcome(), Outcome::Completed);
        assert!(s.notes()[0].contains("PROXY protocol v"), "{:?}", s.notes());
        assert_eq!(
            s.client.transcript().stream(Direction::ClientToServer),
            s.sent
        );
    }
}

// ---------------------------------------------------------------------------------------
// lax
// ---------------------------------------------------------------------------------------

#[test]
fn lax_tries_auth_that_is_not_offered() {
    let mut o = base();
    o.allow_plaintext_auth = true;
    o.auth = Some(AuthOptions {
        mechanism: Some(Mechanism::Plain),
        credentials: Credentials::new("alice", "secret"),
        client_nonce: "n".into(),
    });
    let s = sim(o.clone(), esmtp(&["SIZE"]));
    match s.outcome() {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step.exit_code(), 28);
            assert!(reason.contains("--lax"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    assert!(!s.sent_text().contains("AUTH"));
    o.lax = true;
    let s = sim(o.clone(), esmtp(&["SIZE"]));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(s.sent_text().contains("AUTH PLAIN "));
    assert!(s.ids().contains(&"smtp.client.lax-unadvertised"));
    // Offered, but not this one.
    let s = sim(o, esmtp(&["AUTH LOGIN"]));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(s.sent_text().contains("AUTH PLAIN "));
}

#[test]
fn raw_commands_at_one_stage_go_one_at_a_time() {
    // Two injected commands at one stage are not pipelined: the second goes after the
    // first's reply (a server that forbids unannounced pipelining would drop the session).
    let mut o = base();
    o.lax = true;
    o.quit_after = Some(Stage::FirstEhlo);
    o.raw_commands = vec![
        RawCommand {
            stage: Stage::FirstEhlo,
            bytes: b"MAIL FROM:<>\r\n".to_vec(),
        },
        RawCommand {
            stage: Stage::FirstEhlo,
            bytes: b"RSET\r\n".to_vec(),
        },
    ];
    let s = sim_checked(o, || Server::new(esmtp(FULL)));
    let order: Vec<String> = s
        .events
        .iter()
        .filter_map(|e| match e {
            Event::CommandSent { command, .. } => Some(format!("sent {command}")),
            Event::ReplyReceived {
                command: Some(c), ..
            } => Some(format!("reply {c}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "sent EHLO",
            "reply EHLO",
            "sent MAIL",
            "reply MAIL",
            "sent RSET",
            "reply RSET",
            "sent QUIT",
            "reply QUIT"
        ],
        "{}",
        s.sent_text()
    );
}

#[test]
fn raw_commands_need_lax_and_are_injected_at_their_stage() {
    let mut o = base();
    o.raw_commands = vec![RawCommand {
        stage: Stage::Mail,
        bytes: b"DATA\r\n".to_vec(),
    }];
    let s = sim(o.clone(), esmtp(FULL));
    match s.outcome() {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step, FailedStep::Options);
            assert_eq!(step.exit_code(), 1);
            assert!(reason.contains("--lax"));
        }
        o => panic!("{o:?}"),
    }
    assert!(s.sent.is_empty(), "nothing is sent");
    o.lax = true;
    o.raw_commands.push(RawCommand {
        stage: Stage::Connect,
        bytes: b"NOOP\r\n".to_vec(),
    });
    let s = sim_checked(o, || {
        let mut first = true;
        Server::new(esmtp_with(FULL, move |c, _| match c {
            Cmd::Line(l) if l == "DATA" && first => {
                first = false;
                Some(r("503 5.5.1 need RCPT first\r\n"))
            }
            _ => None,
        }))
    });
    assert_eq!(s.outcome(), Outcome::Completed);
    let text = s.sent_text();
    assert!(
        text.starts_with("NOOP\r\nEHLO"),
        "talks before the greeting: {text}"
    );
    assert!(
        text.contains("SIZE=33\r\nDATA\r\nRCPT TO:<bob@example.test>"),
        "DATA injected between MAIL and RCPT: {text}"
    );
    assert_eq!(
        s.ids()
            .iter()
            .filter(|i| **i == "smtp.client.lax-out-of-order")
            .count(),
        2
    );
    // Replies matched: NOOP's after the greeting, then EHLO's; the injected DATA's 503.
    let verbs: Vec<_> = s
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ReplyReceived { command, reply, .. } => {
                Some((command.unwrap_or("greeting"), reply.code))
            }
            _ => None,
        })
        .take(5)
        .collect();
    assert_eq!(
        verbs,
        vec![
            ("greeting", 220),
            ("NOOP", 250),
            ("EHLO", 250),
            ("MAIL", 250),
            ("DATA", 503)
        ]
    );
}

#[test]
fn oversize_command_lines_are_refused_unless_lax() {
    let mut o = base();
    o.helo_name = format!("{}.example", "h".repeat(600));
    let s = sim(o.clone(), esmtp(FULL));
    match s.outcome() {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step, FailedStep::Ehlo);
            assert!(reason.contains("512"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(s.sent, b"QUIT\r\n");
    o.lax = true;
    let s = sim(o, esmtp(FULL));
    assert_eq!(s.outcome(), Outcome::Completed);
    assert!(s.ids().contains(&"smtp.client.lax-oversize"));
    assert!(s.ids().contains(&"smtp.command.line-too-long"));
    let mut o = base();
    o.to = vec![format!("{}@example.test", "r".repeat(520))];
    let s = sim(o, esmtp(FULL));
    assert_eq!(s.step(), Some(FailedStep::Rcpt));
    assert!(!s.sent_text().contains("MAIL"), "refused before MAIL");
}

#[test]
fn validate_catches_contradictions() {
    let ok = base();
    assert_eq!(ok.validate(), Ok(()));
    type Set = Box<dyn Fn(&mut ClientOptions)>;
    let bad: Vec<Set> = vec![
        Box::new(|o| o.chunk_size = 0),
        Box::new(|o| o.dsn.notify = vec![DsnNotify::Never, DsnNotify::Success]),
        Box::new(|o| o.xclient = vec![("NA ME".into(), "x".into())]),
        Box::new(|o| {
            o.probe_smuggling = SmugglingVariant::ALL.to_vec();
            o.hello = HelloKind::Lhlo;
        }),
        Box::new(|o| {
            o.probe_smuggling = SmugglingVariant::ALL.to_vec();
            o.chunking = true;
        }),
        Box::new(|o| {
            o.probe_smuggling = SmugglingVariant::ALL.to_vec();
            o.quit_after = Some(Stage::Rcpt);
        }),
    ];
    for (i, set) in bad.into_iter().enumerate() {
        let mut o = base();
        set(&mut o);
        assert!(o.validate().is_err(), "case {i}");
    }
}

// ---------------------------------------------------------------------------------------
// Smuggling probes
// ---------------------------------------------------------------------------------------

fn probe_opts() -> ClientOptions {
    let mut o = base();
    o.to = vec!["bob@example.test".into()];
    o.probe_smuggling = SmugglingVariant::ALL.to_vec();
    o
}

fn verdicts(s: &Sim) -> Vec<(SmugglingVariant, SmugglingVerdict)> {
    s.events
        .iter()
        .filter_map(|e| match e {
            Event::SmugglingProbeResult {
                variant, verdict, ..
            } => Some((*variant, *verdict)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_correct_server_keeps_every_lookalike_in_the_message() {
    let s = sim_checked(probe_opts(), || Server::new(esmtp(FULL)));
    assert_eq!(s.outcome(), Outcome::Completed);
    let v = verdicts(&s);
    assert_eq!(v.len(), 8);
    assert!(v.iter().all(|(_, v)| *v == SmugglingVerdict::Safe), "{v:?}");
    assert!(s.ids().iter().all(|i| !i.starts_with("smtp.server.")));
    // Eight messages, each with its lookalike and the smuggled transaction inside.
    let data: Vec<_> = s
        .server
        .log
        .iter()
        .filter_map(|c| match c {
            Cmd::Data(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(data.len(), 8);
    for (d, variant) in data.iter().zip(SmugglingVariant::ALL) {
        let at = d
            .windows(variant.bytes().len())
            .position(|w| w == variant.bytes())
            .expect("lookalike inside");
        assert!(d[at + variant.bytes().len()..].starts_with(
            b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        ));
    }
    // An EHLO after each probe synchronises (and resets the transaction).
    let ehlos = s
        .server
        .lines()
        .iter()
        .filter(|l| l.starts_with("EHLO"))
        .count();
    assert_eq!(ehlos, 9);
    assert!(
        s.notes().iter().any(|n| n.contains("not sent")),
        "the given message is not sent"
    );
}

#[test]
fn a_server_that_ends_data_at_bare_lf_dot_lf_is_vulnerable() {
    let make = || {
        let mut srv = Server::new(esmtp(FULL));
        srv.terminators = vec![b"\r\n.\r\n", b"\n.\n"];
        srv
    };
    let s = sim_checked(probe_opts(), make);
    assert_eq!(s.outcome(), Outcome::Completed);
    let vulnerable: Vec<_> = verdicts(&s)
        .into_iter()
        .filter(|(_, v)| *v == SmugglingVerdict::Vulnerable)
        .map(|(v, _)| v)
        .collect();
    // `\r\n.\n` contains `\n.\n` too.
    assert_eq!(
        vulnerable,
        vec![SmugglingVariant::LfDotLf, SmugglingVariant::CrLfDotLf]
    );
    let f: Vec<_> = s
        .client
        .findings()
        .iter()
        .filter(|f| f.kind.id == "smtp.server.smuggling-accepted")
        .collect();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].severity, crate::Severity::Critical);
    let stream = s.client.transcript().stream(Direction::ClientToServer);
    let at = f[0].offset.expect("offset") as usize;
    assert!(stream[at..].starts_with(b"\n.\nMAIL FROM:"));
    // The smuggled message reached the server as a message of its own.
    assert!(
        s.server
            .log
            .iter()
            .any(|c| matches!(c, Cmd::Data(d) if d.windows(16).any(|w| w == b"SMUGGLED message")))
    );
    let replies = s.events.iter().find_map(|e| match e {
        Event::SmugglingProbeResult {
            replies,
            verdict: SmugglingVerdict::Vulnerable,
            ..
        } => Some(replies.iter().map(|r| r.code).collect::<Vec<_>>()),
        _ => None,
    });
    assert_eq!(replies, Some(vec![250, 250, 250, 354, 250]));
}

#[test]
fn a_server_that_ends_data_early_but_refuses_what_follows() {
    let make = || {
        // After a message cut short, the server refuses everything up to the next EHLO (the
        // smuggled MAIL is the one without SIZE=).
        let mut refusing = false;
        let mut srv = Server::new(esmtp_with(FULL, move |c, _| match c {
            Cmd::Line(l) if l == "MAIL FROM:<alice@example.test>" => {
                refusing = true;
                Some(r("503 5.5.1 improper command pipelining\r\n"))
            }
            Cmd::Line(l) if l.starts_with("EHLO") => {
                refusing = false;
                None
            }
            Cmd::Line(_) if refusing => Some(r("503 5.5.1 improper command pipelining\r\n")),
            _ => None,
        }));
        srv.terminators = vec![b"\r\n.\r\n", b"\r.\r"];
        srv
    };
    let s = sim_checked(probe_opts(), make);
    let v = verdicts(&s);
    assert!(
        v.contains(&(SmugglingVariant::CrDotCr, SmugglingVerdict::EndedEarly)),
        "{v:?}"
    );
    assert!(s.ids().contains(&"smtp.server.end-of-data-variant"));
    assert!(!s.ids().contains(&"smtp.server.smuggling-accepted"));
}

#[test]
fn refusing_and_closing_servers() {
    // Postfix-like: bare LF or CR in DATA refused after the end of data.
    let make = || {
        Server::new(esmtp_with(FULL, |c, _| match c {
            Cmd::Data(d)
                if d.windows(2).enumerate().any(|(i, w)| {
                    (w[1] == b'\n' && w[0] != b'\r')
                        || (w[0] == b'\r' && w[1] != b'\n')
                        || (i == 0 && w[0] == b'\n')
                }) =>
            {
                Some(r("550 5.5.2 Error: bare <LF> received\r\n"))
            }
            _ => None,
        }))
    };
    let s = sim_checked(probe_opts(), make);
    let v = verdicts(&s);
    assert_eq!(v.len(), 8);
    for (variant, verdict) in &v {
        let want = if *variant == SmugglingVariant::CrLfNulDotCrLf {
            SmugglingVerdict::Safe
        } else {
            SmugglingVerdict::Refused
        };
        assert_eq!(*verdict, want, "{variant:?}");
    }
    assert!(s.ids().contains(&"smtp.reply.bare-lf-refused"), "explained");
    // qmail-like: a bare LF in DATA drops the connection.
    let make = || {
        Server::new(esmtp_with(FULL, |c, _| match c {
            Cmd::Data(_) => Some(Ans::Close),
            _ => None,
        }))
    };
    let s = sim_checked(probe_opts(), make);
    assert_eq!(
        verdicts(&s),
        vec![(SmugglingVariant::LfDotLf, SmugglingVerdict::Closed)]
    );
    assert_eq!(s.step(), Some(FailedStep::ConnectionClosed));
    assert_eq!(s.client.smuggling_remaining().len(), 7);
    assert_eq!(s.client.smuggling_remaining()[0], SmugglingVariant::CrDotCr);
    assert!(s.notes().iter().any(|n| n.contains("fresh session")));
}

#[test]
fn a_sync_reply_that_never_comes_is_inconclusive() {
    let make = || {
        let mut n = 0;
        Server::new(esmtp_with(FULL, move |c, _| match c {
            Cmd::Line(l) if l.starts_with("EHLO") => {
                n += 1;
                (n > 1).then_some(Ans::Silent)
            }
            _ => None,
        }))
    };
    let s = sim_checked(probe_opts(), make);
    assert_eq!(
        verdicts(&s),
        vec![(SmugglingVariant::LfDotLf, SmugglingVerdict::Inconclusive)]
    );
    match s.outcome() {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step, FailedStep::Dot);
            assert!(reason.contains("timed out"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn raw_bytes_after_354_are_message_text_and_after_dot_are_answered() {
    let mut o = base();
    o.lax = true;
    o.raw_commands = vec![
        RawCommand {
            stage: Stage::Data,
            bytes: b"X-Injected: yes\r\n".to_vec(),
        },
        RawCommand {
            stage: Stage::Dot,
            bytes: b"NOOP\r\n".to_vec(),
        },
    ];
    let s = sim_checked(o, || Server::new(esmtp(FULL)));
    assert_eq!(s.outcome(), Outcome::Completed);
    let data = s.server.log.iter().find_map(|c| match c {
        Cmd::Data(d) => Some(d.clone()),
        _ => None,
    });
    assert_eq!(
        data.as_deref(),
        Some(&b"X-Injected: yes\r\nSubject: hi\r\n\r\n..dot line\r\nhello\r\n"[..])
    );
    assert!(s.sent.ends_with(b"hello\r\n.\r\nNOOP\r\nQUIT\r\n"));
}

#[test]
fn probes_run_pipelined_and_after_tls_and_auth() {
    let mut o = probe_opts();
    o.probe_smuggling = vec![SmugglingVariant::LfDotLf, SmugglingVariant::CrLfDotCr];
    o.pipeline = true;
    o.starttls = true;
    o.auth = Some(AuthOptions {
        mechanism: Some(Mechanism::Plain),
        credentials: Credentials::new("alice", "secret"),
        client_nonce: "n".into(),
    });
    let make = || {
        let mut srv = Server::new(esmtp(&["PIPELINING", "STARTTLS", "AUTH PLAIN", "SIZE"]));
        srv.terminators = vec![b"\r\n.\r\n", b"\n.\n"];
        srv
    };
    let s = sim_checked(o, make);
    assert_eq!(s.outcome(), Outcome::Completed);
    assert_eq!(
        verdicts(&s),
        vec![
            (SmugglingVariant::LfDotLf, SmugglingVerdict::Vulnerable),
            (SmugglingVariant::CrLfDotCr, SmugglingVerdict::Safe)
        ]
    );
    assert!(
        s.writes
            .iter()
            .any(|w| w.starts_with(b"MAIL") && w.ends_with(b"DATA\r\n"))
    );
    // The synchronising EHLO is answered inside TLS, after AUTH, like the session's own.
    assert!(s.sent_text().contains("AUTH PLAIN "));
}
