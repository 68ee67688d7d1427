//! Client machine tests against scripted servers: every stop point, failures at every step,
//! STARTTLS read-ahead, AUTH redaction, split-point invariance.

use super::client::*;
use super::data::{prepare_normalized, prepare_raw};
use super::reply::ReplyLimits;
use crate::sasl::{Credentials, Mechanism};
use crate::transcript::{Direction, RenderOptions, Role, Timestamp, direction_mark, render_chunk};

// Pipelining, BDAT, ESMTP parameters, LMTP, drop-after, XCLIENT, PROXY, lax, smuggling.
#[path = "client_ext_tests.rs"]
mod ext;

fn opts() -> ClientOptions {
    ClientOptions {
        helo_name: "client.example.test".into(),
        hello: HelloKind::Ehlo,
        implicit_tls: false,
        starttls: false,
        auth: None,
        allow_plaintext_auth: false,
        from: "alice@example.test".into(),
        to: vec!["bob@example.test".into()],
        data: Some(prepare_normalized(b"Subject: hi\n\nhello\n")),
        quit_after: None,
        reply_limits: ReplyLimits::default(),
        step_timeout_us: 30_000_000,
        ..ClientOptions::default()
    }
}

const EHLO: &[u8] = b"250-mx.example.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n";
const EHLO_TLS: &[u8] = b"250-mx.example.test\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n";

/// A scripted server: answers each command line (or data block) the client sends with the
/// next scripted reply, chosen by the verb it starts with. `chunk` feeds replies in pieces of
/// that many bytes (split-point invariance).
struct Run {
    sent: Vec<u8>,
    events: Vec<Event>,
    client: Client,
}

fn run(
    opts: ClientOptions,
    greeting: &[u8],
    answer: impl Fn(&[u8], bool) -> Option<Vec<u8>>,
    chunk: usize,
) -> Run {
    let mut c = Client::new(opts);
    let mut now = 1_000u64;
    c.start(Timestamp(now));
    let mut sent = Vec::new();
    let mut events = Vec::new();
    let mut pending: Vec<u8> = greeting.to_vec();
    let mut eof = false;
    for _ in 0..200 {
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
        if c.is_finished() {
            break;
        }
        sent.extend_from_slice(&out);
        if !out.is_empty() {
            match answer(&out, c.is_tls()) {
                Some(r) => pending = r,
                None => eof = true,
            }
        }
    }
    Run {
        sent,
        events,
        client: c,
    }
}

/// A well-behaved server.
fn good(line: &[u8], tls: bool) -> Option<Vec<u8>> {
    Some(match line {
        l if l.starts_with(b"EHLO") => {
            if tls {
                EHLO_TLS.to_vec()
            } else {
                EHLO.to_vec()
            }
        }
        l if l.starts_with(b"STARTTLS") => b"220 2.0.0 Ready to start TLS\r\n".to_vec(),
        l if l.starts_with(b"AUTH PLAIN") => b"235 2.7.0 Authentication successful\r\n".to_vec(),
        l if l.starts_with(b"MAIL") || l.starts_with(b"RCPT") => b"250 2.1.0 Ok\r\n".to_vec(),
        l if l.starts_with(b"DATA") => b"354 End data with <CR><LF>.<CR><LF>\r\n".to_vec(),
        l if l.ends_with(b"\r\n.\r\n") || l == b".\r\n" => {
            b"250 2.0.0 Ok: queued as ABC\r\n".to_vec()
        }
        l if l.starts_with(b"QUIT") => b"221 2.0.0 Bye\r\n".to_vec(),
        _ => b"500 5.5.2 what?\r\n".to_vec(),
    })
}

fn outcome(r: &Run) -> Outcome {
    r.events
        .iter()
        .find_map(|e| match e {
            Event::Finished(o) => Some(o.clone()),
            _ => None,
        })
        .expect("finished")
}

fn finding_ids(r: &Run) -> Vec<(&'static str, Option<u64>)> {
    r.client
        .findings()
        .iter()
        .map(|f| (f.kind.id, f.offset))
        .collect()
}

const GREETING: &[u8] = b"220 mx.example.test ESMTP\r\n";

#[test]
fn complete_session_sends_exact_bytes() {
    let r = run(opts(), GREETING, good, usize::MAX);
    assert_eq!(outcome(&r), Outcome::Completed);
    assert_eq!(
        String::from_utf8_lossy(&r.sent),
        "EHLO client.example.test\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
         Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n"
    );
    let ids: Vec<_> = finding_ids(&r).into_iter().map(|f| f.0).collect();
    // The EHLO offers STARTTLS, so only the plaintext AUTH offer is a finding.
    assert_eq!(ids, vec!["smtp.auth.offered-without-tls"]);
    assert_eq!(
        r.client.transcript().stream(Direction::ClientToServer),
        r.sent
    );
}

#[test]
fn every_split_point_gives_the_same_events() {
    let whole = run(opts(), GREETING, good, usize::MAX);
    for chunk in [1, 2, 3, 7] {
        let split = run(opts(), GREETING, good, chunk);
        assert_eq!(split.sent, whole.sent, "chunk {chunk}");
        assert_eq!(finding_ids(&split), finding_ids(&whole));
        assert_eq!(outcome(&split), outcome(&whole));
    }
}

#[test]
fn every_quit_after_stage_stops_there_and_quits() {
    let cases: [(Stage, &str); 9] = [
        (Stage::Connect, "QUIT"),
        (Stage::Banner, "QUIT"),
        (Stage::FirstEhlo, "EHLO client.example.test\r\nQUIT"),
        (Stage::Tls, "EHLO client.example.test\r\nSTARTTLS\r\nQUIT"),
        (Stage::Ehlo, "STARTTLS\r\nEHLO client.example.test\r\nQUIT"),
        (Stage::Auth, "AUTH PLAIN"),
        (Stage::Mail, "MAIL FROM:<alice@example.test>\r\nQUIT"),
        (Stage::Rcpt, "RCPT TO:<bob@example.test>\r\nQUIT"),
        (Stage::Dot, ".\r\nQUIT"),
    ];
    for (stage, tail) in cases {
        let mut o = opts();
        o.starttls = true;
        o.allow_plaintext_auth = true;
        o.auth = Some(AuthOptions {
            mechanism: Some(Mechanism::Plain),
            credentials: Credentials::new("alice", "secret"),
            client_nonce: "abcdefgh".into(),
        });
        o.quit_after = Some(stage);
        let r = run(o, GREETING, good, usize::MAX);
        assert_eq!(outcome(&r), Outcome::StoppedAfter(stage), "{stage:?}");
        let sent = String::from_utf8_lossy(&r.sent);
        assert!(sent.contains(tail), "{stage:?}: {sent}");
        if stage != Stage::Auth {
            assert!(sent.ends_with("QUIT\r\n"), "{stage:?}: {sent}");
        }
    }
    let mut o = opts();
    o.quit_after = Some(Stage::Data);
    let r = run(o, GREETING, good, usize::MAX);
    assert_eq!(outcome(&r), Outcome::StoppedAfter(Stage::Data));
    assert!(r.sent.ends_with(b"DATA\r\n"), "no QUIT inside DATA");
}

#[test]
fn failures_map_to_swaks_exit_codes() {
    let refuse = |verb: &'static [u8], reply: &'static [u8]| {
        move |l: &[u8], tls: bool| {
            if l.starts_with(verb) {
                Some(reply.to_vec())
            } else {
                good(l, tls)
            }
        }
    };
    type Answer = Box<dyn Fn(&[u8], bool) -> Option<Vec<u8>>>;
    let cases: Vec<(Answer, &[u8], u8)> = vec![
        (Box::new(good), b"554 5.3.2 go away\r\n", 21),
        (
            Box::new(refuse(b"EHLO", b"421 4.3.2 busy\r\n")),
            GREETING,
            22,
        ),
        (
            Box::new(refuse(b"MAIL", b"553 5.1.8 bad sender\r\n")),
            GREETING,
            23,
        ),
        (
            Box::new(refuse(b"RCPT", b"550 5.1.1 no such user\r\n")),
            GREETING,
            24,
        ),
        (
            Box::new(refuse(b"DATA", b"503 5.5.1 no valid recipients\r\n")),
            GREETING,
            25,
        ),
        (
            Box::new(refuse(b"Subject", b"550 5.7.1 spam\r\n")),
            GREETING,
            26,
        ),
    ];
    for (answer, greeting, code) in cases {
        let r = run(opts(), greeting, answer, usize::MAX);
        match outcome(&r) {
            Outcome::Failed { step, .. } => assert_eq!(step.exit_code(), code),
            o => panic!("expected failure {code}, got {o:?}"),
        }
        assert!(r.sent.ends_with(b"QUIT\r\n"));
    }
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    let answer = |l: &[u8], tls: bool| {
        if l.starts_with(b"EHLO") {
            Some(b"502 5.5.2 no\r\n".to_vec())
        } else if l.starts_with(b"HELO") {
            Some(b"250 mx\r\n".to_vec())
        } else {
            good(l, tls)
        }
    };
    let r = run(opts(), GREETING, answer, usize::MAX);
    assert_eq!(outcome(&r), Outcome::Completed);
    assert!(finding_ids(&r).iter().any(|f| f.0 == "smtp.ehlo.refused"));
}

#[test]
fn raw_bare_lf_data_is_linted_at_exact_offsets_and_refusal_is_26() {
    let mut o = opts();
    o.data = Some(prepare_raw(b"Subject: x\n\nhello\n"));
    let answer = |l: &[u8], tls: bool| {
        if l.ends_with(b"\r\n.\r\n") && l.starts_with(b"Subject") {
            Some(b"550 5.5.2 Error: bare <LF> received\r\n".to_vec())
        } else {
            good(l, tls)
        }
    };
    let r = run(o, GREETING, answer, usize::MAX);
    match outcome(&r) {
        Outcome::Failed {
            step,
            reply: Some(reply),
            ..
        } => {
            assert_eq!(step, FailedStep::Dot);
            assert_eq!(reply.code, 550);
        }
        o => panic!("{o:?}"),
    }
    let client_stream = r.client.transcript().stream(Direction::ClientToServer);
    let lf: Vec<u64> = r
        .client
        .findings()
        .iter()
        .filter(|f| f.kind.id == "smtp.data.bare-lf")
        .filter_map(|f| f.offset)
        .collect();
    assert_eq!(lf.len(), 3);
    for off in lf {
        assert_eq!(client_stream[off as usize], b'\n');
        assert_ne!(client_stream[off as usize - 1], b'\r');
    }
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e, Event::Note(n) if n.contains("\\r\\n.\\r\\n")))
    );
}

#[test]
fn server_dropping_mid_data_is_connection_closed() {
    let answer = |l: &[u8], tls: bool| {
        if l.starts_with(b"Subject") {
            None
        } else {
            good(l, tls)
        }
    };
    let r = run(opts(), GREETING, answer, usize::MAX);
    match outcome(&r) {
        Outcome::Failed { step, .. } => assert_eq!(step.exit_code(), 6),
        o => panic!("{o:?}"),
    }
    assert!(
        finding_ids(&r)
            .iter()
            .any(|f| f.0 == "smtp.connection.closed")
    );
}

#[test]
fn starttls_read_ahead_is_discarded_and_reported() {
    let mut o = opts();
    o.starttls = true;
    let answer = |l: &[u8], tls: bool| {
        if l.starts_with(b"STARTTLS") {
            Some(b"220 go ahead\r\n250 injected\r\n".to_vec())
        } else {
            good(l, tls)
        }
    };
    let r = run(o, GREETING, answer, usize::MAX);
    assert_eq!(outcome(&r), Outcome::Completed);
    let f = r
        .client
        .findings()
        .iter()
        .find(|f| f.kind.id == "smtp.starttls.read-ahead")
        .expect("finding");
    let server = r.client.transcript().stream(Direction::ServerToClient);
    assert_eq!(
        &server[f.offset.unwrap_or(0) as usize..][..14],
        b"250 injected\r\n"
    );
    // The EHLO after TLS was answered by the real reply, not the injected one.
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e, Event::CapabilitiesReceived { tls: true, .. }))
    );
}

#[test]
fn tls_required_but_not_offered_fails_29() {
    let mut o = opts();
    o.starttls = true;
    let answer = |l: &[u8], tls: bool| {
        if l.starts_with(b"EHLO") {
            Some(b"250-mx\r\n250 8BITMIME\r\n".to_vec())
        } else {
            good(l, tls)
        }
    };
    let r = run(o, GREETING, answer, usize::MAX);
    match outcome(&r) {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step.exit_code(), 29);
            assert!(reason.contains("does not offer STARTTLS"));
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn auth_plain_is_redacted_and_refused_in_plaintext_unless_allowed() {
    let mut o = opts();
    o.auth = Some(AuthOptions {
        mechanism: None,
        credentials: Credentials::new("alice", "hunter2"),
        client_nonce: "n".into(),
    });
    let r = run(o.clone(), GREETING, good, usize::MAX);
    match outcome(&r) {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step, FailedStep::Auth);
            assert!(reason.contains("without TLS"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    o.starttls = true;
    // Without a mechanism the best offered after TLS is picked: CRAM-MD5 over PLAIN/LOGIN.
    let r = run(o.clone(), GREETING, good, usize::MAX);
    let chosen = r.events.iter().find_map(|e| match e {
        Event::AuthMechanismChosen {
            mechanism,
            explicit,
            ..
        } => Some((*mechanism, *explicit)),
        _ => None,
    });
    assert_eq!(chosen, Some((Mechanism::CramMd5, false)));
    if let Some(a) = o.auth.as_mut() {
        a.mechanism = Some(Mechanism::Plain);
    }
    let r = run(o, GREETING, good, usize::MAX);
    assert_eq!(outcome(&r), Outcome::Completed);
    for c in r.client.transcript().chunks() {
        for l in render_chunk(
            c,
            RenderOptions {
                escape_all: true,
                show_secrets: false,
            },
        ) {
            assert!(
                !l.text.contains("aHVudGVyMg") && !l.text.contains("hunter2"),
                "secret leaked: {}",
                l.text
            );
            let _ = direction_mark(Role::Client, c.direction, c.tls);
        }
    }
}

#[test]
fn timeout_fails_the_waiting_step() {
    let mut c = Client::new(opts());
    c.start(Timestamp(0));
    assert_eq!(c.poll_timeout(), Some(Timestamp(30_000_000)));
    c.handle_timeout(Timestamp(29_000_000));
    assert!(!c.is_finished());
    c.handle_timeout(Timestamp(30_000_000));
    let ev: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e, Event::Finished(Outcome::Failed { step: FailedStep::Banner, reason, .. }) if reason.contains("timed out"))));
}

#[test]
fn garbage_and_oversized_replies_do_not_panic() {
    let mut o = opts();
    o.reply_limits = ReplyLimits {
        max_line: 64,
        max_lines: 4,
        ..ReplyLimits::default()
    };
    let mut c = Client::new(o);
    c.start(Timestamp(0));
    c.handle_input(Timestamp(1), &[b'x'; 100]);
    assert!(c.is_finished());
    let mut c = Client::new(opts());
    c.start(Timestamp(0));
    c.handle_input(Timestamp(1), b"\xff\xfe garbage\r\n220 ok\r\n");
    let mut out = Vec::new();
    assert!(c.poll_transmit(&mut out));
    assert!(out.starts_with(b"EHLO"));
}

#[test]
fn a_peer_repeating_junk_is_capped_in_findings_and_bytes() {
    let mut o = opts();
    o.reply_limits.max_session_bytes = 100_000;
    let mut c = Client::new(o);
    c.start(Timestamp(0));
    let junk = b"junk line\r\n".repeat(1000);
    for i in 0..20 {
        c.handle_input(Timestamp(i), &junk);
    }
    let syntax = c
        .findings()
        .iter()
        .filter(|f| f.kind.id == "smtp.reply.syntax")
        .count();
    assert_eq!(syntax, MAX_FINDINGS_PER_KIND);
    assert!(c.is_finished(), "over the byte cap the session ends");
    let ev: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Note(n) if n.contains("more not shown")))
    );
    assert!(ev.iter().any(|e| matches!(e, Event::Finished(Outcome::Failed { reason, .. }) if reason.contains("more than 100000 bytes"))));
}
