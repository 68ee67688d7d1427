//! Server machine tests: our client machine against the server machine in memory (no
//! sockets), and scripted raw clients for what our client never does on purpose (pipelining,
//! smuggling, BDAT, injection after STARTTLS, garbage).

use std::sync::Arc;

use proptest::prelude::*;

use super::client::{self, AuthOptions, Client, ClientOptions, FailedStep, HelloKind, Outcome};
use super::data::{prepare_normalized, prepare_raw};
use super::receiver::Strict;
use super::reply::ReplyLimits;
use super::server::*;
use crate::sasl::{ChannelBindingData, ChannelBindingType, Credentials, Mechanism};
use crate::secret::Secret;
use crate::transcript::{Direction, RenderOptions, Timestamp, render_chunk};

const T: fn(u64) -> Timestamp = Timestamp;

fn copts() -> ClientOptions {
    ClientOptions {
        helo_name: "client.example.test".into(),
        hello: HelloKind::Ehlo,
        implicit_tls: false,
        starttls: false,
        auth: None,
        allow_plaintext_auth: false,
        from: "alice@example.test".into(),
        to: vec!["bob@example.test".into()],
        data: Some(prepare_normalized(MESSAGE)),
        quit_after: None,
        reply_limits: ReplyLimits::default(),
        step_timeout_us: 30_000_000,
        ..ClientOptions::default()
    }
}

const MESSAGE: &[u8] = b"From: alice@example.test\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <1@example.test>\nSubject: hi\n\n.hidden\n..two dots\n.\nend\n";

/// What `MESSAGE` becomes on the server: CRLF line ends, dots as in the original.
const RECEIVED: &[u8] = b"From: alice@example.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.test>\r\nSubject: hi\r\n\r\n.hidden\r\n..two dots\r\n.\r\nend\r\n";

fn sopts() -> ServerOptions {
    let mut o = ServerOptions::new("sink.example.test");
    o.auth_nonce = "srvnonce".into();
    o
}

struct Pair {
    client: Client,
    server: Server,
    cev: Vec<client::Event>,
    sev: Vec<Event>,
    /// Everything the server sent.
    s2c: Vec<u8>,
}

/// Channel binding data of a simulated TLS connection: exporter bytes 0x00..0x1f and a
/// made-up certificate hash; both ends of a real connection compute the same.
fn binding() -> ChannelBindingData {
    ChannelBindingData {
        tls_exporter: Some((0..32).collect()),
        tls_server_end_point: Some(vec![0x5e; 32]),
        tls13: true,
    }
}

/// Runs our client against our server, delivering bytes in pieces of `chunk`. STARTTLS is
/// simulated: once both machines asked for the handshake, both are told it succeeded, with
/// the same channel binding data and no client certificate.
fn pair(c: ClientOptions, s: ServerOptions, chunk: usize) -> Pair {
    let facts = TlsFacts {
        channel_binding: binding(),
        client_certificate: None,
    };
    pair_tls(c, s, chunk, binding(), facts)
}

/// [`pair`] with what the TLS layer tells each side: the client's channel binding data, and
/// the server's facts (its binding data and the client certificate).
fn pair_tls(
    c: ClientOptions,
    s: ServerOptions,
    chunk: usize,
    client_binding: ChannelBindingData,
    server_facts: TlsFacts,
) -> Pair {
    let mut client = Client::new(c);
    let mut server = Server::new(s);
    let mut now = 1_000u64;
    client.start(T(now));
    server.start(T(now));
    let (mut cev, mut sev, mut s2c) = (Vec::new(), Vec::new(), Vec::new());
    let (mut c_tls, mut s_tls) = (false, false);
    for _ in 0..1000 {
        now += 10;
        let mut moved = false;
        let mut out = Vec::new();
        if server.poll_transmit(&mut out) {
            moved = true;
            s2c.extend_from_slice(&out);
            for piece in out.chunks(chunk.max(1)) {
                client.handle_input(T(now), piece);
            }
        }
        while let Some(e) = server.poll_event() {
            s_tls |= e == Event::StartTlsRequested;
            sev.push(e);
        }
        let mut out = Vec::new();
        if client.poll_transmit(&mut out) {
            moved = true;
            for piece in out.chunks(chunk.max(1)) {
                server.handle_input(T(now), piece);
            }
        }
        while let Some(e) = client.poll_event() {
            c_tls |= e == client::Event::StartTlsRequested;
            cev.push(e);
        }
        if c_tls && s_tls {
            server.handle_tls_established_with(T(now), server_facts.clone());
            client.handle_tls_established_with(T(now), client_binding.clone());
            (c_tls, s_tls) = (false, false);
            moved = true;
        }
        if server.is_closed() && !client.is_finished() && !server.has_pending_output() {
            client.handle_eof(T(now));
            moved = true;
        }
        if client.is_finished() && !client.has_pending_output() && !server.is_closed() {
            server.handle_eof(T(now));
            moved = true;
        }
        if !moved && !server.has_pending_output() && !client.has_pending_output() {
            break;
        }
    }
    while let Some(e) = server.poll_event() {
        sev.push(e);
    }
    while let Some(e) = client.poll_event() {
        cev.push(e);
    }
    Pair {
        client,
        server,
        cev,
        sev,
        s2c,
    }
}

fn outcome(p: &Pair) -> Outcome {
    p.cev
        .iter()
        .find_map(|e| match e {
            client::Event::Finished(o) => Some(o.clone()),
            _ => None,
        })
        .expect("the client finished")
}

fn messages(ev: &[Event]) -> Vec<ReceivedMessage> {
    ev.iter()
        .filter_map(|e| match e {
            Event::MessageReceived(m) => Some((**m).clone()),
            _ => None,
        })
        .collect()
}

fn finding_ids(ev: &[Event]) -> Vec<&'static str> {
    ev.iter()
        .filter_map(|e| match e {
            Event::FindingRaised(f) => Some(f.kind.id),
            _ => None,
        })
        .collect()
}

fn replies(ev: &[Event]) -> Vec<String> {
    ev.iter()
        .filter_map(|e| match e {
            Event::ReplySent { reply, .. } => Some(reply.summary()),
            _ => None,
        })
        .collect()
}

fn closed(ev: &[Event]) -> Option<CloseReason> {
    ev.iter().find_map(|e| match e {
        Event::Closed(r) => Some(*r),
        _ => None,
    })
}

fn users() -> AuthCheck {
    AuthCheck::Lookup(Arc::new(|user: &str| {
        (user == "alice").then(|| Secret::new("s3cret-pw".to_string()))
    }))
}

/// The server transcript rendered without secrets.
fn rendered(server: &Server) -> String {
    let mut s = String::new();
    for c in server.transcript().chunks() {
        for l in render_chunk(
            c,
            RenderOptions {
                escape_all: true,
                show_secrets: false,
            },
        ) {
            s.push_str(&l.text);
            s.push('\n');
        }
    }
    s
}

#[test]
fn plain_session_round_trips_the_message_byte_exact() {
    let p = pair(copts(), sopts(), usize::MAX);
    assert_eq!(outcome(&p), Outcome::Completed);
    let m = messages(&p.sev);
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(m.content, RECEIVED);
    assert_eq!(m.envelope.from.address, "alice@example.test");
    assert_eq!(m.envelope.rcpts.len(), 1);
    assert_eq!(m.envelope.rcpts[0].to.address, "bob@example.test");
    assert_eq!(m.transfer, Transfer::Data);
    assert_eq!(m.helo.as_deref(), Some("client.example.test"));
    assert!(!m.tls && m.auth.is_none());
    assert!(m.findings.is_empty(), "{:?}", m.findings);
    // The content offset points at the content in the client's stream.
    let stream = p.client.transcript().stream(Direction::ClientToServer);
    assert!(stream[m.content_offset as usize..].starts_with(b"From: alice"));
    // Both transcripts agree byte for byte, except that the server keeps the message
    // content once (in the message), not in its transcript: there it is elided, with its
    // length, at the same offsets.
    let server = p.server.transcript();
    assert_eq!(server.len(Direction::ClientToServer), stream.len() as u64);
    let elided: Vec<_> = server
        .chunks()
        .iter()
        .filter(|c| c.elided.is_some())
        .collect();
    assert_eq!(elided.len(), 1, "{elided:?}");
    assert_eq!(elided[0].offset, m.content_offset);
    for c in server
        .chunks()
        .iter()
        .filter(|c| c.direction == Direction::ClientToServer && c.elided.is_none())
    {
        let at = c.offset as usize;
        assert_eq!(
            &stream[at..at + c.bytes.len()],
            c.bytes.as_slice(),
            "chunk at {at}"
        );
    }
    assert_eq!(
        p.server.transcript().stream(Direction::ServerToClient),
        p.client.transcript().stream(Direction::ServerToClient)
    );
    assert_eq!(
        replies(&p.sev),
        vec![
            "220 sink.example.test ESMTP mailscope",
            "250 sink.example.test",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as S.1",
            "221 2.0.0 Bye",
        ]
    );
    assert!(
        String::from_utf8_lossy(&p.s2c).starts_with(
            "220 sink.example.test ESMTP mailscope\r\n250-sink.example.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
        ),
        "{}",
        String::from_utf8_lossy(&p.s2c)
    );
    assert_eq!(closed(&p.sev), Some(CloseReason::Quit));
    assert!(finding_ids(&p.sev).is_empty(), "{:?}", finding_ids(&p.sev));
}

#[test]
fn starttls_then_every_sasl_mechanism_with_right_and_wrong_passwords() {
    for mech in Mechanism::PREFERENCE.iter().copied() {
        for (password, ok) in [("s3cret-pw", true), ("wrong", false)] {
            let mut c = copts();
            c.starttls = true;
            c.auth = Some(AuthOptions {
                mechanism: Some(mech),
                credentials: Credentials::new("alice", password),
                client_nonce: "clientnonce".into(),
            });
            let mut s = sopts();
            s.auth = users();
            let p = pair(c, s, usize::MAX);
            let authed = p.sev.iter().find_map(|e| match e {
                Event::Authenticated {
                    mechanism, authcid, ..
                } => Some((*mechanism, authcid.clone())),
                _ => None,
            });
            if ok {
                assert_eq!(outcome(&p), Outcome::Completed, "{mech}");
                assert_eq!(authed, Some((mech, "alice".to_string())), "{mech}");
                let m = &messages(&p.sev)[0];
                assert!(m.tls);
                assert_eq!(m.auth.as_ref().map(|a| a.authcid.as_str()), Some("alice"));
                if mech.is_scram() {
                    assert!(p.cev.iter().any(|e| matches!(
                        e,
                        client::Event::Authenticated {
                            server_verified: Some(true),
                            ..
                        }
                    )));
                }
            } else {
                match outcome(&p) {
                    Outcome::Failed {
                        step: FailedStep::Auth,
                        ..
                    } => {}
                    o => panic!("{mech}: {o:?}"),
                }
                assert_eq!(authed, None);
                assert!(p.sev.iter().any(|e| matches!(e, Event::AuthFailed { .. })));
                assert!(
                    replies(&p.sev)
                        .iter()
                        .any(|r| r == "535 5.7.8 Error: authentication failed"),
                    "{mech}: {:?}",
                    replies(&p.sev)
                );
            }
            // Inside TLS; AUTH used with TLS: no plaintext finding.
            assert!(
                !finding_ids(&p.sev).contains(&"smtp.auth.used-without-tls"),
                "{mech}"
            );
            // No password or proof in the rendered server transcript.
            let text = rendered(&p.server);
            assert!(!text.contains("s3cret"), "{mech}: {text}");
            assert!(text.contains("<redacted: "), "{mech}: {text}");
            for b64 in ["czNjcmV0LXB3", "d3Jvbmc"] {
                assert!(!text.contains(b64), "{mech}: {text}");
            }
        }
    }
}

#[test]
fn auth_redaction_keeps_structure() {
    let mut c = copts();
    c.starttls = true;
    c.auth = Some(AuthOptions {
        mechanism: Some(Mechanism::Plain),
        credentials: Credentials::new("alice", "s3cret-pw"),
        client_nonce: "n".into(),
    });
    let mut s = sopts();
    s.auth = users();
    let p = pair(c, s, usize::MAX);
    assert!(
        rendered(&p.server)
            .contains("AUTH PLAIN <redacted: authcid=\"alice\", 9-byte password>\\r\\n"),
        "{}",
        rendered(&p.server)
    );
}

#[test]
fn accept_any_auth_for_a_test_server() {
    for (mech, password) in [
        (Mechanism::Plain, "anything"),
        (Mechanism::Login, "anything"),
        (Mechanism::CramMd5, "anything"),
        (Mechanism::ScramSha256, ACCEPT_ANY_SCRAM_PASSWORD),
    ] {
        let mut c = copts();
        c.starttls = true;
        c.auth = Some(AuthOptions {
            mechanism: Some(mech),
            credentials: Credentials::new("whoever", password),
            client_nonce: "cn".into(),
        });
        let p = pair(c, sopts(), usize::MAX);
        assert_eq!(outcome(&p), Outcome::Completed, "{mech}");
    }
    let mut c = copts();
    c.starttls = true;
    c.auth = Some(AuthOptions {
        mechanism: Some(Mechanism::ScramSha1),
        credentials: Credentials::new("whoever", "not-the-fixed-one"),
        client_nonce: "cn".into(),
    });
    let p = pair(c, sopts(), usize::MAX);
    assert!(matches!(
        outcome(&p),
        Outcome::Failed {
            step: FailedStep::Auth,
            ..
        }
    ));
}

#[test]
fn auth_is_offered_only_inside_tls_unless_insecure() {
    let mut c = copts();
    c.auth = Some(AuthOptions {
        mechanism: Some(Mechanism::Plain),
        credentials: Credentials::new("alice", "s3cret-pw"),
        client_nonce: "n".into(),
    });
    c.allow_plaintext_auth = true;
    let p = pair(c.clone(), sopts(), usize::MAX);
    match outcome(&p) {
        Outcome::Failed { step, reason, .. } => {
            assert_eq!(step, FailedStep::Auth);
            assert!(reason.contains("offers no AUTH"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    let mut s = sopts();
    s.insecure_auth_plaintext = true;
    let p = pair(c, s, usize::MAX);
    assert_eq!(outcome(&p), Outcome::Completed);
    assert!(finding_ids(&p.sev).contains(&"smtp.auth.used-without-tls"));
    // Raw: AUTH before TLS without the option is 538.
    let r = script(
        sopts(),
        &[b"EHLO x\r\n", b"AUTH PLAIN AGEAYg==\r\n"],
        usize::MAX,
    );
    assert_eq!(
        r.replies[2],
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
}

#[test]
fn auth_required_refuses_mail_with_530() {
    let mut s = sopts();
    s.auth_required = true;
    let p = pair(copts(), s, usize::MAX);
    match outcome(&p) {
        Outcome::Failed {
            step: FailedStep::Mail,
            reply: Some(r),
            ..
        } => assert_eq!(r.summary(), "530 5.7.0 Authentication required"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn auth_cancel_and_bad_base64() {
    let mut s = sopts();
    s.insecure_auth_plaintext = true;
    let r = script(
        s,
        &[
            b"EHLO x\r\n",
            b"AUTH LOGIN\r\n",
            b"*\r\n",
            b"AUTH PLAIN !!!\r\n",
            b"AUTH LOGIN\r\n",
            b"YWxpY2U=\r\n",
            b"cHc=\r\n",
            b"AUTH PLAIN\r\n",
        ],
        usize::MAX,
    );
    assert_eq!(r.replies[2], "334 VXNlcm5hbWU6\r\n");
    assert_eq!(r.replies[3], "501 5.7.0 Authentication aborted\r\n");
    assert_eq!(
        r.replies[4],
        "501 5.5.2 Error: the initial response is not base64\r\n"
    );
    assert_eq!(r.replies[6], "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(r.replies[7], "235 2.7.0 Authentication successful\r\n");
    assert_eq!(r.replies[8], "503 5.5.1 Error: already authenticated\r\n");
    assert!(
        !r.text.contains("YWxpY2U="),
        "the LOGIN username is redacted too: {}",
        r.text
    );
    assert!(
        r.text.contains("<redacted: username \"alice\">"),
        "{}",
        r.text
    );
    assert!(r.text.contains("<redacted: 2-byte password>"), "{}", r.text);
}

/// A raw client: each step's bytes are fed (in pieces of `chunk`), then everything the
/// server wants to send is collected. `TLS` and `EOF` steps stand for the handshake and the
/// end of the stream.
struct Script {
    server: Server,
    events: Vec<Event>,
    /// Index 0 is the greeting; then one entry per step.
    replies: Vec<String>,
    /// The rendered transcript.
    text: String,
}

const TLS: &[u8] = b"\0<tls>\0";
const EOF: &[u8] = b"\0<eof>\0";

fn script(opts: ServerOptions, steps: &[&[u8]], chunk: usize) -> Script {
    script_tls(opts, steps, chunk, TlsFacts::default())
}

/// [`script`] where the `TLS` step brings `facts`.
fn script_tls(opts: ServerOptions, steps: &[&[u8]], chunk: usize, facts: TlsFacts) -> Script {
    let mut server = Server::new(opts);
    server.start(T(1_000));
    let mut replies = Vec::new();
    let mut out = Vec::new();
    let _ = server.poll_transmit(&mut out);
    replies.push(String::from_utf8_lossy(&out).into_owned());
    for (i, step) in steps.iter().enumerate() {
        let now = T(2_000 + 10 * i as u64);
        if *step == TLS {
            server.handle_tls_established_with(now, facts.clone());
        } else if *step == EOF {
            server.handle_eof(now);
        } else {
            for piece in step.chunks(chunk.max(1)) {
                server.handle_input(now, piece);
            }
        }
        let mut out = Vec::new();
        let _ = server.poll_transmit(&mut out);
        replies.push(String::from_utf8_lossy(&out).into_owned());
    }
    let events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
    let text = rendered(&server);
    Script {
        server,
        events,
        replies,
        text,
    }
}

const ENVELOPE: &[u8] = b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n";

#[test]
fn pipelined_commands_are_answered_in_order() {
    let steps: &[&[u8]] = &[
        b"EHLO client.test\r\n",
        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n",
        b"Subject: x\r\n\r\nbody\r\n.\r\nRSET\r\nQUIT\r\n",
    ];
    let r = script(sopts(), steps, usize::MAX);
    assert_eq!(
        r.replies[2],
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert_eq!(
        r.replies[3],
        "250 2.0.0 Ok: queued as S.1\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"
    );
    // PIPELINING was offered and DATA ended its group: nothing to report about pipelining.
    assert!(
        !finding_ids(&r.events)
            .iter()
            .any(|id| id.contains("pipelining")),
        "{:?}",
        finding_ids(&r.events)
    );
    let m = &messages(&r.events)[0];
    assert_eq!(m.envelope.rcpts.len(), 2);
    // The same without PIPELINING offered: every pipelined command is a finding.
    let mut o = sopts();
    o.extensions.pipelining = false;
    let r2 = script(o, steps, usize::MAX);
    assert_eq!(r2.replies[2], r.replies[2]);
    let ids = finding_ids(&r2.events);
    assert_eq!(
        ids.iter()
            .filter(|id| **id == "smtp.client.pipelining-without-extension")
            .count(),
        3 + 2, // RCPT, RCPT, DATA; then RSET after the final dot and QUIT after RSET
        "{ids:?}"
    );
    // NOOP must end a group (RFC 2920 §3.1), PIPELINING or not.
    let r = script(sopts(), &[b"EHLO x\r\n", b"NOOP\r\nQUIT\r\n"], usize::MAX);
    assert_eq!(
        finding_ids(&r.events),
        vec!["smtp.client.pipelining-after-sync-command"]
    );
}

#[test]
fn pipelining_rules_of_rfc_2920() {
    // Before the EHLO reply.
    let r = script(
        sopts(),
        &[b"EHLO x\r\nMAIL FROM:<a@example.test>\r\n"],
        usize::MAX,
    );
    assert!(finding_ids(&r.events).contains(&"smtp.client.pipelining-after-sync-command"));
    // Content before the 354.
    let r = script(
        sopts(),
        &[b"EHLO x\r\n", ENVELOPE, b"x\r\n.\r\n"],
        usize::MAX,
    );
    assert!(!finding_ids(&r.events).contains(&"smtp.client.pipelining-after-sync-command"));
    let mut all = ENVELOPE.to_vec();
    all.extend_from_slice(b"x\r\n.\r\n");
    let r = script(sopts(), &[b"EHLO x\r\n", &all], usize::MAX);
    let f: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Event::FindingRaised(f) if f.kind.id == "smtp.client.pipelining-after-sync-command" => {
                Some(f.detail.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(f, vec!["message content sent before the 354 reply to DATA"]);
    // Before the greeting (pregreet): bytes given before start.
    let mut s = Server::new(sopts());
    s.handle_input(T(1), b"EHLO early\r\n");
    s.start(T(2));
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(finding_ids(&ev).contains(&"smtp.client.pregreet"));
    // With a greet pause the early talker is caught too, and served after the pause.
    let mut o = sopts();
    o.greet_pause_us = 1_000_000;
    let mut s = Server::new(o);
    s.start(T(0));
    assert_eq!(s.poll_timeout(), Some(T(1_000_000)));
    s.handle_input(T(10), b"EHLO early\r\n");
    let mut out = Vec::new();
    assert!(!s.poll_transmit(&mut out));
    s.handle_timeout(T(1_000_000));
    assert!(s.poll_transmit(&mut out));
    assert!(
        String::from_utf8_lossy(&out)
            .starts_with("220 sink.example.test ESMTP mailscope\r\n250-sink")
    );
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(
        finding_ids(&ev)
            .iter()
            .filter(|i| **i == "smtp.client.pregreet")
            .count(),
        1
    );
}

#[test]
fn starttls_injection_is_discarded_never_executed() {
    let r = script(
        sopts(),
        &[
            b"EHLO x\r\n",
            b"STARTTLS\r\nMAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@example.test>\r\n",
            b"RSET\r\n", // still plaintext, before the handshake: discarded too
            TLS,
            b"MAIL FROM:<a@example.test>\r\n",
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.test>\r\n",
        ],
        usize::MAX,
    );
    assert_eq!(r.replies[2], "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(r.replies[3], "");
    assert_eq!(r.replies[5], "503 5.5.1 Error: send HELO/EHLO first\r\n");
    assert!(r.replies[6].starts_with("250-sink.example.test\r\n"));
    assert!(!r.replies[6].contains("STARTTLS"), "not offered inside TLS");
    assert!(r.replies[6].contains("AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"));
    assert_eq!(r.replies[7], "250 2.1.0 Ok\r\n");
    let inj: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Event::FindingRaised(f) if f.kind.id == "smtp.client.starttls-pipelined" => {
                Some(f.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(inj.len(), 2, "{inj:?}");
    let stream = r.server.transcript().stream(Direction::ClientToServer);
    let at = inj[0].offset.expect("offset") as usize;
    assert!(stream[at..].starts_with(b"MAIL FROM:<evil@"));
    // The injected commands never reached the command parser.
    assert!(!r.events.iter().any(|e| matches!(
        e,
        Event::CommandReceived { request: super::request::Request::Mail { from, .. }, .. } if from.address.starts_with("evil")
    )));
    assert!(finding_ids(&r.events).contains(&"smtp.client.command-before-ehlo"));
    // The discarded bytes are in the transcript, in plaintext.
    let plain_len: u64 = r
        .server
        .transcript()
        .chunks()
        .iter()
        .filter(|c| c.direction == Direction::ClientToServer && !c.tls)
        .map(|c| c.bytes.len() as u64)
        .sum();
    assert_eq!(
        plain_len as usize,
        b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@example.test>\r\nRSET\r\n".len()
    );
}

#[test]
fn data_with_dot_stuffed_lines_round_trips_byte_exact() {
    let content = b"Subject: dots\r\n\r\n..\r\n...\r\n..x\r\n. \r\nno dot\r\n";
    let wire = [
        b"EHLO x\r\n".as_slice(),
        ENVELOPE,
        b"Subject: dots\r\n\r\n...\r\n....\r\n...x\r\n.. \r\nno dot\r\n.\r\n",
    ];
    for chunk in [1, 2, 5, usize::MAX] {
        let r = script(sopts(), &wire, chunk);
        let m = &messages(&r.events)[0];
        assert_eq!(m.content, content, "chunk {chunk}");
        assert!(
            !finding_ids(&r.events).contains(&"smtp.data.unstuffed-dot"),
            "{:?}",
            finding_ids(&r.events)
        );
    }
    // A client that does not stuff: the dot goes, and that is reported.
    let r = script(
        sopts(),
        &[b"EHLO x\r\n", ENVELOPE, b"a\r\n.lost\r\n.\r\n"],
        usize::MAX,
    );
    assert_eq!(messages(&r.events)[0].content, b"a\r\nlost\r\n");
    assert!(finding_ids(&r.events).contains(&"smtp.data.unstuffed-dot"));
}

#[test]
fn bare_lf_under_each_strict_mode_gets_the_exact_reply() {
    let raw = || {
        let mut c = copts();
        c.data = Some(prepare_raw(
            b"From: a@example.test\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <x@y>\n\nhello\n",
        ));
        c
    };
    // Off: accepted, with findings on the message.
    let p = pair(raw(), sopts(), usize::MAX);
    assert_eq!(outcome(&p), Outcome::Completed);
    let m = &messages(&p.sev)[0];
    assert_eq!(
        m.findings
            .iter()
            .filter(|f| f.kind.id == "smtp.data.bare-lf")
            .count(),
        5
    );
    // Postfix: read to the end, then 550 5.5.2.
    let mut s = sopts();
    s.strict = Strict::Postfix;
    let p = pair(raw(), s, usize::MAX);
    match outcome(&p) {
        Outcome::Failed {
            step: FailedStep::Dot,
            reply: Some(r),
            ..
        } => assert_eq!(r.code, 550),
        o => panic!("{o:?}"),
    }
    assert!(
        String::from_utf8_lossy(&p.s2c).contains(
            "354 End data with <CR><LF>.<CR><LF>\r\n550 5.5.2 Error: bare <LF> received\r\n221 2.0.0 Bye\r\n"
        ),
        "{}",
        String::from_utf8_lossy(&p.s2c)
    );
    assert!(messages(&p.sev).is_empty());
    // qmail: 451 at the first bare LF, then close.
    let mut s = sopts();
    s.strict = Strict::Qmail;
    let p = pair(raw(), s, usize::MAX);
    assert!(
        String::from_utf8_lossy(&p.s2c).ends_with(
            "354 End data with <CR><LF>.<CR><LF>\r\n451 See http://pobox.com/~djb/docs/smtplf.html.\r\n"
        ),
        "{}",
        String::from_utf8_lossy(&p.s2c)
    );
    assert_eq!(
        closed(&p.sev),
        Some(CloseReason::StrictBareLf(Strict::Qmail))
    );
    match outcome(&p) {
        Outcome::Failed {
            step: FailedStep::Dot,
            reply: Some(r),
            ..
        } => assert_eq!(r.code, 451),
        o => panic!("{o:?}"),
    }
    // drop: close mid-DATA without a word.
    let mut s = sopts();
    s.strict = Strict::Drop;
    let p = pair(raw(), s, usize::MAX);
    assert!(String::from_utf8_lossy(&p.s2c).ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"));
    assert_eq!(
        closed(&p.sev),
        Some(CloseReason::StrictBareLf(Strict::Drop))
    );
    match outcome(&p) {
        Outcome::Failed { step, .. } => assert_eq!(step.exit_code(), 6),
        o => panic!("{o:?}"),
    }
    // A clean message passes every strict mode.
    for strict in [Strict::Qmail, Strict::Postfix, Strict::Drop] {
        let mut s = sopts();
        s.strict = strict;
        let p = pair(copts(), s, usize::MAX);
        assert_eq!(outcome(&p), Outcome::Completed, "{strict:?}");
    }
}

#[test]
fn every_smuggling_variant_is_found_and_does_not_end_the_message() {
    let variants: [&[u8]; 8] = [
        b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r", b"\r\n.\r", b"\r.\n",
    ];
    for v in variants {
        let mut body = b"Subject: smuggle\r\n\r\nhello".to_vec();
        body.extend_from_slice(v);
        body.extend_from_slice(b"MAIL FROM:<spoof@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nFrom: ceo@example.test\r\n\r\nwire money\r\n.\r\nQUIT\r\n");
        for chunk in [1, 3, usize::MAX] {
            let r = script(sopts(), &[b"EHLO x\r\n", ENVELOPE, &body], chunk);
            let esc = crate::escape::escape(v);
            let ms = messages(&r.events);
            assert_eq!(ms.len(), 1, "{esc}");
            assert!(
                ms[0].content.windows(13).any(|w| w == b"MAIL FROM:<sp"),
                "{esc}: the smuggled text stays message text"
            );
            assert_eq!(
                r.replies[3], "250 2.0.0 Ok: queued as S.1\r\n221 2.0.0 Bye\r\n",
                "{esc} chunk {chunk}"
            );
            let smug: Vec<_> = ms[0]
                .findings
                .iter()
                .filter(|f| f.kind.id == "smtp.data.smuggling")
                .collect();
            assert_eq!(smug.len(), 1, "{esc}: {smug:?}");
            assert!(
                smug[0].detail.starts_with(&esc),
                "{esc}: {}",
                smug[0].detail
            );
            // The offset points at the sequence in the client's stream (the server's
            // transcript no longer holds the delivered content).
            let stream = [&b"EHLO x\r\n"[..], ENVELOPE, &body].concat();
            let at = smug[0].offset.expect("offset") as usize;
            assert!(stream[at..].starts_with(v), "{esc}");
        }
    }
}

#[test]
fn bdat_chunks_with_exact_lengths() {
    let steps: &[&[u8]] = &[
        b"EHLO x\r\n",
        b"MAIL FROM:<a@example.test> BODY=8BITMIME\r\nRCPT TO:<b@example.test>\r\n",
        b"BDAT 16\r\nSubject: x\r\n\r\nab",
        b"BDAT 9 LAST\r\n.\r\nQUIT\r\n",
        b"BDAT 6\r\nQUIT\r\n",
        b"RSET\r\nBDAT 0 LAST\r\n",
        b"QUIT\r\n",
    ];
    let mut whole = None;
    for chunk in [1, 2, 7, usize::MAX] {
        let r = script(sopts(), steps, chunk);
        assert_eq!(r.replies[3], "250 2.0.0 Ok: 16 octets received\r\n");
        assert_eq!(r.replies[4], "250 2.0.0 Ok: queued as S.1\r\n");
        // A chunk without a transaction is read and dropped: the QUIT inside it is data.
        assert_eq!(r.replies[5], "503 5.5.1 Error: need MAIL command\r\n");
        assert_eq!(
            r.replies[6],
            "250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n"
        );
        assert_eq!(r.replies[7], "221 2.0.0 Bye\r\n");
        let m = &messages(&r.events)[0];
        assert_eq!(m.content, b"Subject: x\r\n\r\nab.\r\nQUIT\r\n");
        assert_eq!(m.transfer, Transfer::Bdat);
        let input = steps.concat();
        assert!(input[m.content_offset as usize..].starts_with(b"Subject: x"));
        // The chunks' bytes are stored with the message, so the transcript keeps only their
        // sizes (at their offsets); the BDAT lines, and the refused chunk outside any
        // transaction, stay.
        let t = r.server.transcript();
        assert_eq!(t.len(Direction::ClientToServer), input.len() as u64);
        let elided: Vec<(u64, u64)> = t
            .chunks()
            .iter()
            .filter(|c| c.elided.is_some())
            .map(|c| (c.offset, c.len()))
            .collect();
        let first = m.content_offset;
        let second = input
            .windows(13)
            .position(|w| w == b"BDAT 9 LAST\r\n")
            .expect("second chunk") as u64
            + 13;
        assert_eq!(elided, [(first, 16), (second, 9)], "chunk {chunk}");
        let kept: Vec<u8> = t
            .chunks()
            .iter()
            .filter(|c| c.direction == Direction::ClientToServer && c.elided.is_none())
            .flat_map(|c| c.bytes.clone())
            .collect();
        let kept = String::from_utf8_lossy(&kept);
        assert!(
            kept.contains("BDAT 16\r\n") && kept.contains("BDAT 9 LAST\r\n"),
            "{kept}"
        );
        assert!(!kept.contains("Subject: x"), "{kept}");
        assert!(kept.contains("BDAT 6\r\nQUIT\r\n"), "{kept}");
        let ev = (r.events.clone(), r.replies.clone());
        match &whole {
            None => whole = Some(ev),
            Some(w) => assert_eq!(w, &ev, "chunk {chunk}"),
        }
    }
    // DATA after BDAT in one transaction is out of sequence.
    let r = script(
        sopts(),
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n",
            b"BDAT 1\r\nx",
            b"DATA\r\n",
        ],
        usize::MAX,
    );
    assert_eq!(r.replies[4], "503 5.5.1 Error: DATA after BDAT\r\n");
}

#[test]
fn limits_line_recipients_size_errors() {
    // An over-long line: one 500, the rest of the line discarded, then business as usual.
    let mut long = b"NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 5000));
    long.extend_from_slice(b"\r\nNOOP\r\n");
    for chunk in [1, 100, usize::MAX] {
        let r = script(sopts(), &[&long], chunk);
        assert_eq!(
            r.replies[1], "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n",
            "chunk {chunk}"
        );
        assert!(finding_ids(&r.events).contains(&"smtp.command.line-too-long"));
    }
    // Recipients.
    let mut o = sopts();
    o.limits.max_recipients = 2;
    let r = script(
        o,
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.test>\r\n",
            b"RCPT TO:<1@example.test>\r\n",
            b"RCPT TO:<2@example.test>\r\n",
            b"RCPT TO:<3@example.test>\r\n",
        ],
        usize::MAX,
    );
    assert_eq!(r.replies[5], "452 4.5.3 Error: too many recipients\r\n");
    assert!(finding_ids(&r.events).contains(&"smtp.client.limit-exceeded"));
    // Size, declared and actual.
    let mut o = sopts();
    o.limits.max_message_size = 20;
    let r = script(
        o.clone(),
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.test> SIZE=100\r\n",
            ENVELOPE,
            b"0123456789012345678901234567890123456789\r\n.\r\n",
            b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nBDAT 30 LAST\r\n012345678901234567890123456789",
        ],
        usize::MAX,
    );
    assert!(r.replies[1].contains("250-SIZE 20\r\n"));
    assert_eq!(
        r.replies[2],
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        r.replies[4],
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert!(
        r.replies[5].ends_with("552 5.3.4 Message size exceeds fixed maximum message size\r\n")
    );
    assert!(messages(&r.events).is_empty());
    // Too many errors.
    let mut o = sopts();
    o.limits.max_errors = 3;
    let r = script(o, &[b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n"], usize::MAX);
    assert_eq!(
        r.replies[1],
        "500 5.5.1 Error: command not recognized\r\n500 5.5.1 Error: command not recognized\r\n500 5.5.1 Error: command not recognized\r\n421 4.7.0 sink.example.test Error: too many errors\r\n"
    );
    assert_eq!(closed(&r.events), Some(CloseReason::TooManyErrors));
    // Too many commands.
    let mut o = sopts();
    o.limits.max_commands = 2;
    let r = script(o, &[b"NOOP\r\nNOOP\r\nNOOP\r\n"], usize::MAX);
    assert!(r.replies[1].ends_with("421 4.7.0 sink.example.test Error: too many commands\r\n"));
}

#[test]
fn refusals_carry_the_right_codes() {
    let r = script(
        sopts(),
        &[
            b"MAIL FROM:<a@example.test>\r\n",
            b"EHLO x\r\n",
            b"RCPT TO:<b@example.test>\r\n",
            b"DATA\r\n",
            b"MAIL FROM: <a@example.test>\r\n",
            b"MAIL FROM:<a@example.test>\r\n",
            b"RCPT TO:<b@example.test> X-FOO=1\r\n",
            b"RCPT TO:<>\r\n",
            b"DATA\r\n",
            b"VRFY bob\r\n",
            b"EXPN list\r\n",
            b"HELP\r\n",
            b"XCLIENT ADDR=192.0.2.1\r\n",
            b"FROB\r\n",
            b"BDAT x\r\n",
            b"LHLO x\r\n",
        ],
        usize::MAX,
    );
    let want = [
        "503 5.5.1 Error: send HELO/EHLO first\r\n",
        "",
        "503 5.5.1 Error: need MAIL command\r\n",
        "503 5.5.1 Error: need MAIL command\r\n",
        "250 2.1.0 Ok\r\n",
        "503 5.5.1 Error: nested MAIL command\r\n",
        "555 5.5.4 Error: unsupported parameter X-FOO\r\n",
        "501 5.1.3 Error: empty recipient address\r\n",
        "503 5.5.1 Error: need RCPT command\r\n",
        "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n",
        "502 5.5.1 Error: EXPN not supported\r\n",
        "214 2.0.0 mailscope sink: see RFC 5321\r\n",
        "502 5.5.1 Error: XCLIENT not supported\r\n",
        "500 5.5.1 Error: command not recognized\r\n",
        "501 5.5.4 Error: expected \"BDAT size [LAST]\"\r\n",
        "500 5.5.1 Error: LHLO is LMTP; use EHLO\r\n",
    ];
    for (i, w) in want.iter().enumerate() {
        if i == 1 {
            continue;
        }
        assert_eq!(&r.replies[i + 1], w, "step {i}");
    }
    let ids = finding_ids(&r.events);
    for id in [
        "smtp.client.command-before-ehlo",
        "smtp.client.bad-sequence",
        "smtp.client.space-after-colon",
        "smtp.client.extension-not-offered",
        "smtp.client.address-syntax",
        "smtp.client.unknown-command",
        "smtp.client.command-syntax",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // Without ENHANCEDSTATUSCODES the codes go.
    let mut o = sopts();
    o.extensions.enhanced_status_codes = false;
    let r = script(o, &[b"EHLO x\r\n", b"NOOP\r\n"], usize::MAX);
    assert!(!r.replies[1].contains("ENHANCEDSTATUSCODES"));
    assert_eq!(r.replies[2], "250 Ok\r\n");
    // Turned-off extensions refuse their parameters and commands.
    let mut o = sopts();
    for ext in ["SIZE", "CHUNKING", "8BITMIME"] {
        assert!(o.extensions.set(ext, false));
    }
    let r = script(
        o,
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@example.test> SIZE=10\r\n",
            b"MAIL FROM:<a@example.test> BODY=8BITMIME\r\n",
            b"BDAT 4\r\nQUIT",
        ],
        usize::MAX,
    );
    assert!(!r.replies[1].contains("SIZE") && !r.replies[1].contains("CHUNKING"));
    assert_eq!(
        r.replies[2],
        "555 5.5.4 Error: unsupported parameter SIZE\r\n"
    );
    assert_eq!(
        r.replies[3],
        "555 5.5.4 Error: unsupported parameter BODY\r\n"
    );
    assert_eq!(r.replies[4], "502 5.5.1 Error: command not implemented\r\n");
}

#[test]
fn message_findings_cover_headers_and_envelope() {
    let r = script(
        sopts(),
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:a@example.test\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
            b"Subject: only\r\n\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n",
        ],
        usize::MAX,
    );
    let m = &messages(&r.events)[0];
    let ids: Vec<_> = m.findings.iter().map(|f| f.kind.id).collect();
    for id in [
        "smtp.client.address-syntax",
        "smtp.data.8bit-without-8bitmime",
        "message.missing-date",
        "message.missing-from",
        "message.missing-message-id",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // The next message starts with a clean slate.
    let r = script(
        sopts(),
        &[
            b"EHLO x\r\n",
            b"MAIL FROM:a@example.test\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
            b"x\r\n.\r\n",
            b"MAIL FROM:<a@example.test> BODY=8BITMIME\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
            b"From: a\r\nDate: x\r\nMessage-ID: <a@b>\r\n\r\n\xc3\xa9\r\n.\r\n",
        ],
        usize::MAX,
    );
    let ms = messages(&r.events);
    assert_eq!(ms.len(), 2);
    assert!(ms[1].findings.is_empty(), "{:?}", ms[1].findings);
}

#[test]
fn reply_policy_injects_faults_and_notes_them() {
    let mut s = Server::new(sopts());
    s.set_reply_policy(Box::new(ReplyOverrides(vec![
        ReplyOverride {
            stage: ReplyStage::Rcpt,
            nth: None,
            argument: Some("nobody@example.test".into()),
            action: ReplyAction::Reply(ServerReply::new(550, "5.1.1", "No such user")),
        },
        ReplyOverride {
            stage: ReplyStage::Mail,
            nth: Some(2),
            action: ReplyAction::Reply(ServerReply::new(451, "4.3.0", "Try later")),
            argument: None,
        },
        ReplyOverride {
            stage: ReplyStage::EndOfData,
            nth: Some(1),
            argument: None,
            action: ReplyAction::Disconnect,
        },
    ])));
    s.start(T(0));
    let mut out = Vec::new();
    let _ = s.poll_transmit(&mut out);
    out.clear();
    s.handle_input(T(1), b"EHLO x\r\n");
    let _ = s.poll_transmit(&mut out);
    out.clear();
    s.handle_input(
        T(2),
        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<b@example.test>\r\nRSET\r\nMAIL FROM:<a@example.test>\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nx\r\n.\r\n",
    );
    let _ = s.poll_transmit(&mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n451 4.3.0 Try later\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert!(s.is_closed());
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let notes: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Note(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes[0].contains("rcpt #1") && notes[0].contains("550 5.1.1"));
    assert!(messages(&ev).is_empty(), "disconnected: no message");
    assert_eq!(closed(&ev), Some(CloseReason::Policy));
    // A 554 greeting: everything but QUIT gets 503.
    let mut s = Server::new(sopts());
    s.set_reply_policy(Box::new(ReplyOverrides(vec![ReplyOverride {
        stage: ReplyStage::Connect,
        nth: None,
        argument: None,
        action: ReplyAction::Reply(ServerReply::new(554, "", "sink.example.test no service")),
    }])));
    s.start(T(0));
    let mut out = Vec::new();
    let _ = s.poll_transmit(&mut out);
    s.handle_input(T(1), b"EHLO x\r\nQUIT\r\n");
    let _ = s.poll_transmit(&mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "554 sink.example.test no service\r\n503 5.5.1 Error: no SMTP service here; send QUIT\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(ReplyStage::from_name("dot"), Some(ReplyStage::EndOfData));
    for st in ReplyStage::ALL {
        assert_eq!(ReplyStage::from_name(st.name()), Some(st));
    }
}

#[test]
fn storage_confirmation_holds_the_final_reply() {
    let mut o = sopts();
    o.confirm_storage = true;
    let mut s = Server::new(o);
    s.start(T(0));
    let mut out = Vec::new();
    let _ = s.poll_transmit(&mut out);
    s.handle_input(T(1), b"EHLO x\r\n");
    let _ = s.poll_transmit(&mut out);
    out.clear();
    s.handle_input(T(2), ENVELOPE);
    let _ = s.poll_transmit(&mut out);
    out.clear();
    s.handle_input(T(3), b"x\r\n.\r\nNOOP\r\n");
    assert!(
        !s.poll_transmit(&mut out),
        "nothing before the message is stored"
    );
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(messages(&ev).len(), 1);
    s.handle_message_stored(T(4), Ok("Q123".into()));
    assert!(s.poll_transmit(&mut out));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "250 2.0.0 Ok: queued as Q123\r\n250 2.0.0 Ok\r\n"
    );
    out.clear();
    s.handle_input(T(5), ENVELOPE);
    s.handle_input(T(6), b"y\r\n.\r\n");
    s.handle_message_stored(T(7), Err("disk full".into()));
    let _ = s.poll_transmit(&mut out);
    assert!(String::from_utf8_lossy(&out).ends_with("451 4.3.0 Error: queue file write error\r\n"));
}

#[test]
fn lmtp_answers_once_per_recipient() {
    let mut o = sopts();
    o.lmtp = true;
    let mut s = Server::new(o);
    s.set_reply_policy(Box::new(ReplyOverrides(vec![ReplyOverride {
        stage: ReplyStage::EndOfData,
        nth: None,
        argument: Some("full@example.test".into()),
        action: ReplyAction::Reply(ServerReply::new(452, "4.2.2", "Mailbox full")),
    }])));
    s.start(T(0));
    let mut out = Vec::new();
    let _ = s.poll_transmit(&mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "220 sink.example.test LMTP mailscope\r\n"
    );
    s.handle_input(T(1), b"EHLO x\r\nLHLO x\r\n");
    out.clear();
    let _ = s.poll_transmit(&mut out);
    assert!(
        String::from_utf8_lossy(&out)
            .starts_with("500 5.5.1 Error: this is LMTP; use LHLO\r\n250-sink")
    );
    out.clear();
    s.handle_input(
        T(2),
        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<full@example.test>\r\nDATA\r\nx\r\n.\r\n",
    );
    let _ = s.poll_transmit(&mut out);
    assert!(
        String::from_utf8_lossy(&out)
            .ends_with("354 End data with <CR><LF>.<CR><LF>\r\n250 2.1.5 Ok: queued as S.1\r\n452 4.2.2 Mailbox full\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let m = &messages(&ev)[0];
    assert_eq!(m.envelope.rcpts.len(), 1);
    assert_eq!(m.envelope.rcpts[0].to.address, "b@example.test");
}

#[test]
fn idle_and_session_timeouts() {
    let mut s = Server::new(sopts());
    s.start(T(0));
    assert_eq!(s.poll_timeout(), Some(T(300_000_000)));
    s.handle_input(T(100_000_000), b"NOOP\r\n");
    assert_eq!(s.poll_timeout(), Some(T(400_000_000)));
    s.handle_timeout(T(399_000_000));
    assert!(!s.is_closed());
    s.handle_timeout(T(400_000_000));
    assert!(s.is_closed());
    let mut out = Vec::new();
    let _ = s.poll_transmit(&mut out);
    assert!(
        String::from_utf8_lossy(&out)
            .ends_with("421 4.4.2 sink.example.test Error: timeout exceeded\r\n")
    );
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(closed(&ev), Some(CloseReason::IdleTimeout));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn eviction_answers_421_and_closes() {
    let r = script(sopts(), &[b"EHLO x\r\n"], usize::MAX);
    let mut s = r.server;
    assert!(!s.confirms_storage());
    s.handle_evicted(T(5_000));
    let mut out = Vec::new();
    assert!(s.poll_transmit(&mut out));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "421 4.3.2 sink.example.test Error: too many connections; closing this idle session\r\n"
    );
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(closed(&ev), Some(CloseReason::Evicted));
    assert!(s.is_closed());
}

#[test]
fn client_leaving_without_quit_is_noted() {
    let r = script(
        sopts(),
        &[b"EHLO x\r\n", ENVELOPE, b"partial", EOF],
        usize::MAX,
    );
    assert!(finding_ids(&r.events).contains(&"smtp.client.no-quit"));
    assert_eq!(closed(&r.events), Some(CloseReason::ClientClosed));
    assert!(messages(&r.events).is_empty());
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e, Event::Note(n) if n.contains("middle of the message")))
    );
}

fn pair_with_everything() -> (ClientOptions, ServerOptions) {
    let mut c = copts();
    c.starttls = true;
    c.auth = Some(AuthOptions {
        mechanism: Some(Mechanism::ScramSha256),
        credentials: Credentials::new("alice", "s3cret-pw"),
        client_nonce: "clientnonce".into(),
    });
    c.to = vec!["bob@example.test".into(), "carol@example.test".into()];
    let mut s = sopts();
    s.auth = users();
    (c, s)
}

#[test]
fn split_points_do_not_change_events() {
    let (c, s) = pair_with_everything();
    let whole = pair(c.clone(), s.clone(), usize::MAX);
    assert_eq!(outcome(&whole), Outcome::Completed);
    for chunk in [1, 2, 3, 7, 64] {
        let split = pair(c.clone(), s.clone(), chunk);
        assert_eq!(split.sev, whole.sev, "chunk {chunk}");
        assert_eq!(split.s2c, whole.s2c, "chunk {chunk}");
        assert_eq!(
            split.server.transcript().stream(Direction::ClientToServer),
            whole.server.transcript().stream(Direction::ClientToServer)
        );
    }
    // And for raw scripts with pipelining and smuggling.
    let steps: &[&[u8]] = &[
        b"EHLO x\r\n",
        b"MAIL FROM: <a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
        b"a\n.\nb\r\n..c\r\n.d\r\n.\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nBDAT 3 LAST\r\nxyzQUIT\r\n",
    ];
    let w = script(sopts(), steps, usize::MAX);
    for chunk in [1, 2, 5] {
        let r = script(sopts(), steps, chunk);
        assert_eq!(r.events, w.events, "chunk {chunk}");
        assert_eq!(r.replies, w.replies, "chunk {chunk}");
    }
}

#[test]
fn extensions_can_be_named() {
    let mut e = Extensions::default();
    for name in Extensions::NAMES {
        assert!(e.set(name, false), "{name}");
    }
    assert!(!e.set("X-NOPE", false));
    let mut o = sopts();
    o.extensions = e;
    let r = script(o, &[b"EHLO x\r\n"], usize::MAX);
    assert_eq!(r.replies[1], "250 sink.example.test\r\n");
}

fn start_in(phase: &[u8]) -> Server {
    let mut o = sopts();
    o.insecure_auth_plaintext = true;
    let mut s = Server::new(o);
    s.start(T(0));
    s.handle_input(T(1), phase);
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_the_server(
        prefix in 0usize..5,
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        split in 1usize..64,
    ) {
        let prefixes: [&[u8]; 5] = [
            b"",
            b"EHLO x\r\n",
            b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n",
            b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 1000\r\n",
            b"EHLO x\r\nAUTH LOGIN\r\n",
        ];
        let mut s = start_in(prefixes[prefix]);
        for piece in bytes.chunks(split) {
            s.handle_input(T(2), piece);
            let mut out = Vec::new();
            let _ = s.poll_transmit(&mut out);
            while s.poll_event().is_some() {}
        }
        s.handle_timeout(T(u64::MAX / 2));
        s.handle_eof(T(u64::MAX / 2));
        prop_assert!(s.is_closed());
        let stream = s.transcript().stream(Direction::ClientToServer);
        let mut fed = prefixes[prefix].to_vec();
        fed.extend_from_slice(&bytes);
        prop_assert!(fed.starts_with(&stream));
    }

    #[test]
    fn random_commands_never_panic_the_server(
        lines in proptest::collection::vec("[A-Za-z]{0,9}( [ -~]{0,40})?(\r\n|\n|\r)", 0..40),
    ) {
        let mut s = start_in(b"");
        for l in &lines {
            s.handle_input(T(2), l.as_bytes());
            let mut out = Vec::new();
            let _ = s.poll_transmit(&mut out);
        }
        while s.poll_event().is_some() {}
    }
}

// ------------------------------------------------------------------ channel binding, OAuth, EXTERNAL

fn auth_opts(mech: Option<Mechanism>, user: &str, secret: &str) -> ClientOptions {
    let mut c = copts();
    c.starttls = true;
    c.auth = Some(AuthOptions {
        mechanism: mech,
        credentials: Credentials::new(user, secret),
        client_nonce: "clientnonce".into(),
    });
    c
}

fn client_notes(p: &Pair) -> Vec<String> {
    p.cev
        .iter()
        .filter_map(|e| match e {
            client::Event::Note(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn server_notes(p: &Pair) -> Vec<String> {
    p.sev
        .iter()
        .filter_map(|e| match e {
            Event::Note(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn authenticated(p: &Pair) -> Option<(Mechanism, String)> {
    p.sev.iter().find_map(|e| match e {
        Event::Authenticated {
            mechanism, authcid, ..
        } => Some((*mechanism, authcid.clone())),
        _ => None,
    })
}

fn failed_reason(p: &Pair) -> String {
    match outcome(p) {
        Outcome::Failed {
            step: FailedStep::Auth,
            reason,
            ..
        } => reason,
        o => panic!("{o:?}"),
    }
}

/// The rendered client transcript.
fn client_rendered(c: &Client) -> String {
    let mut s = String::new();
    for ch in c.transcript().chunks() {
        for l in render_chunk(
            ch,
            RenderOptions {
                escape_all: true,
                show_secrets: false,
            },
        ) {
            s.push_str(&l.text);
            s.push('\n');
        }
    }
    s
}

#[test]
fn scram_plus_is_offered_inside_tls_and_picked_by_default() {
    // Plaintext (with AUTH allowed there): no -PLUS, no EXTERNAL on offer.
    let mut s = sopts();
    s.insecure_auth_plaintext = true;
    let r = script(s, &[b"EHLO x\r\n"], usize::MAX);
    assert!(
        r.replies[1].contains(
            "250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 XOAUTH2 OAUTHBEARER\r\n"
        ),
        "{}",
        r.replies[1]
    );
    // Inside TLS with binding data: -PLUS too; the client picks SCRAM-SHA-256-PLUS.
    let mut s = sopts();
    s.auth = users();
    let p = pair(auth_opts(None, "alice", "s3cret-pw"), s, usize::MAX);
    assert_eq!(outcome(&p), Outcome::Completed);
    assert!(
        String::from_utf8_lossy(&p.s2c).contains(
            "250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 SCRAM-SHA-1-PLUS SCRAM-SHA-256-PLUS XOAUTH2 OAUTHBEARER\r\n"
        ),
        "{}",
        String::from_utf8_lossy(&p.s2c)
    );
    assert_eq!(
        authenticated(&p),
        Some((Mechanism::ScramSha256Plus, "alice".into()))
    );
    assert!(p.cev.iter().any(|e| matches!(
        e,
        client::Event::Authenticated {
            mechanism: Mechanism::ScramSha256Plus,
            server_verified: Some(true)
        }
    )));
    assert!(
        client_notes(&p)
            .iter()
            .any(|n| n.contains("channel binding tls-exporter (32 bytes)")),
        "{:?}",
        client_notes(&p)
    );
    assert!(
        server_notes(&p)
            .iter()
            .any(|n| n.contains("channel binding tls-exporter checked")),
        "{:?}",
        server_notes(&p)
    );
    // The client-first says p=tls-exporter; the client-final carries header + data.
    let text = rendered(&p.server);
    assert!(text.contains("AUTH SCRAM-SHA-256-PLUS <redacted: p=tls-exporter,,n=alice,"));
    assert!(text.contains(
        "<redacted: c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f,r="
    ));
}

#[test]
fn scram_plus_pairs_with_each_binding_type() {
    for mech in [Mechanism::ScramSha1Plus, Mechanism::ScramSha256Plus] {
        for ty in [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ] {
            for (password, ok) in [("s3cret-pw", true), ("wrong", false)] {
                let mut c = auth_opts(Some(mech), "alice", password);
                c.channel_binding = Some(ty);
                let mut s = sopts();
                s.auth = users();
                let p = pair(c, s, 5);
                if ok {
                    assert_eq!(outcome(&p), Outcome::Completed, "{mech} {ty}");
                    assert_eq!(authenticated(&p), Some((mech, "alice".into())));
                    assert!(
                        server_notes(&p)
                            .iter()
                            .any(|n| n.contains(&format!("channel binding {ty} checked"))),
                        "{mech} {ty}: {:?}",
                        server_notes(&p)
                    );
                } else {
                    assert!(failed_reason(&p).contains("535 5.7.8"), "{mech} {ty}");
                }
            }
        }
    }
    // TLS 1.2 without a choice: tls-server-end-point.
    let mut data = binding();
    data.tls13 = false;
    let facts = TlsFacts {
        channel_binding: data.clone(),
        client_certificate: None,
    };
    let mut s = sopts();
    s.auth = users();
    let p = pair_tls(auth_opts(None, "alice", "s3cret-pw"), s, 64, data, facts);
    assert_eq!(outcome(&p), Outcome::Completed);
    assert!(
        rendered(&p.server).contains("p=tls-server-end-point,,n=alice"),
        "{}",
        rendered(&p.server)
    );
}

#[test]
fn scram_plus_fails_when_the_channels_differ() {
    // A TLS-terminating proxy between them: each side has its own exporter bytes.
    let mut theirs = binding();
    theirs.tls_exporter = Some(vec![0xee; 32]);
    let facts = TlsFacts {
        channel_binding: theirs,
        client_certificate: None,
    };
    let mut s = sopts();
    s.auth = users();
    let p = pair_tls(
        auth_opts(Some(Mechanism::ScramSha256Plus), "alice", "s3cret-pw"),
        s,
        usize::MAX,
        binding(),
        facts,
    );
    assert!(failed_reason(&p).contains("535 5.7.8"));
    let why = p
        .sev
        .iter()
        .find_map(|e| match e {
            Event::AuthFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .unwrap();
    assert!(why.contains("do not see the same TLS channel"), "{why}");
    // No binding data on the client side: -PLUS cannot be asked for, and auto picks plain SCRAM.
    let mut s = sopts();
    s.auth = users();
    let p = pair_tls(
        auth_opts(Some(Mechanism::ScramSha256Plus), "alice", "s3cret-pw"),
        s.clone(),
        usize::MAX,
        ChannelBindingData::default(),
        TlsFacts {
            channel_binding: binding(),
            client_certificate: None,
        },
    );
    assert!(
        failed_reason(&p).contains("needs channel binding"),
        "{}",
        failed_reason(&p)
    );
    let p = pair_tls(
        auth_opts(None, "alice", "s3cret-pw"),
        s,
        usize::MAX,
        ChannelBindingData::default(),
        TlsFacts {
            channel_binding: binding(),
            client_certificate: None,
        },
    );
    assert_eq!(outcome(&p), Outcome::Completed);
    assert_eq!(
        authenticated(&p),
        Some((Mechanism::ScramSha256, "alice".into()))
    );
}

#[test]
fn scram_y_flag_where_plus_is_offered_is_refused_as_a_downgrade() {
    // Someone stripped -PLUS from the EHLO reply: the client says "y", the server (which
    // offered -PLUS) must refuse (RFC 5802 §6).
    let first = b"AUTH SCRAM-SHA-256 eSwsbj1hbGljZSxyPWFiYw==\r\n"; // y,,n=alice,r=abc
    let facts = TlsFacts {
        channel_binding: binding(),
        client_certificate: None,
    };
    let mut s = sopts();
    s.auth = users();
    let r = script_tls(
        s.clone(),
        &[b"EHLO x\r\n", b"STARTTLS\r\n", TLS, b"EHLO x\r\n", first],
        usize::MAX,
        facts,
    );
    assert_eq!(r.replies[5], "535 5.7.8 Error: authentication failed\r\n");
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e, Event::AuthFailed { reason, .. } if reason.contains("downgrade")))
    );
    // Where -PLUS is not offered (no binding data), "y" is fine.
    let r = script(
        s,
        &[b"EHLO x\r\n", b"STARTTLS\r\n", TLS, b"EHLO x\r\n", first],
        usize::MAX,
    );
    assert!(r.replies[5].starts_with("334 "), "{}", r.replies[5]);
    // Our client never says "y" when it picked plain SCRAM although -PLUS was offered.
    let mut s = sopts();
    s.auth = users();
    let p = pair(
        auth_opts(Some(Mechanism::ScramSha256), "alice", "s3cret-pw"),
        s,
        usize::MAX,
    );
    assert_eq!(outcome(&p), Outcome::Completed);
    assert!(rendered(&p.server).contains("<redacted: n,,n=alice,"));
    assert!(
        client_notes(&p)
            .iter()
            .any(|n| n.contains("SCRAM-SHA-256-PLUS, but SCRAM-SHA-256 was asked for"))
    );
    // -PLUS is refused outside TLS even when named.
    let mut s = sopts();
    s.insecure_auth_plaintext = true;
    let r = script(
        s,
        &[b"EHLO x\r\n", b"AUTH SCRAM-SHA-256-PLUS\r\n"],
        usize::MAX,
    );
    assert_eq!(
        r.replies[2],
        "504 5.5.4 Unrecognized authentication type\r\n"
    );
}

#[test]
fn oauth_mechanisms_accept_any_token_without_a_users_file() {
    for mech in [Mechanism::XOauth2, Mechanism::OAuthBearer] {
        let mut c = auth_opts(Some(mech), "someone@example.test", "ya29.SECRET-TOKEN");
        c.oauth_target = crate::sasl::OAuthTarget {
            host: Some("sink.example.test".into()),
            port: Some(587),
        };
        let p = pair(c, sopts(), usize::MAX);
        assert_eq!(outcome(&p), Outcome::Completed, "{mech}");
        assert_eq!(
            authenticated(&p),
            Some((mech, "someone@example.test".into()))
        );
        assert!(
            server_notes(&p)
                .iter()
                .any(|n| n.contains("accepted without checking") && n.contains("any bearer token")),
            "{:?}",
            server_notes(&p)
        );
        for text in [rendered(&p.server), client_rendered(&p.client)] {
            assert!(!text.contains("SECRET"), "{mech}: {text}");
            assert!(text.contains("17-byte bearer token"), "{mech}: {text}");
        }
    }
}

#[test]
fn oauth_with_a_users_file_checks_the_token_and_explains_the_refusal() {
    for mech in [Mechanism::XOauth2, Mechanism::OAuthBearer] {
        let mut s = sopts();
        s.auth = users();
        let p = pair(
            auth_opts(Some(mech), "alice", "s3cret-pw"),
            s.clone(),
            usize::MAX,
        );
        assert_eq!(outcome(&p), Outcome::Completed, "{mech}");

        let p = pair(auth_opts(Some(mech), "alice", "stale-token"), s, 3);
        let reason = failed_reason(&p);
        assert!(
            reason.contains("AUTH")
                && reason.contains("token refused: status \"invalid_token\", scope \"mail\"")
                && reason.contains("535 5.7.8"),
            "{mech}: {reason}"
        );
        let s2c = String::from_utf8_lossy(&p.s2c);
        assert!(
            s2c.contains("334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIi"),
            "{mech}: {s2c}"
        );
        // The acknowledgement went out: empty for XOAUTH2, ^A for OAUTHBEARER.
        let sent = p.client.transcript().stream(Direction::ClientToServer);
        let ack: &[u8] = if mech == Mechanism::XOauth2 {
            b"\r\n\r\n"
        } else {
            b"\r\nAQ==\r\n"
        };
        assert!(
            sent.windows(ack.len()).any(|w| w == ack),
            "{mech}: {}",
            String::from_utf8_lossy(&sent)
        );
        assert!(
            client_notes(&p)
                .iter()
                .any(|n| n.contains("the server refused the token")),
            "{:?}",
            client_notes(&p)
        );
        assert!(!client_rendered(&p.client).contains("stale-token"));
        assert!(!rendered(&p.server).contains("stale-token"));
    }
}

#[test]
fn external_is_offered_with_a_verified_client_certificate_only() {
    let cert = crate::smtp::server::ClientCertificate {
        subject: "CN=alice, O=Example".into(),
        identity: "alice".into(),
    };
    let facts = TlsFacts {
        channel_binding: binding(),
        client_certificate: Some(cert),
    };
    let mut c = auth_opts(Some(Mechanism::External), "", "");
    c.client_certificate = true;
    let p = pair_tls(c.clone(), sopts(), usize::MAX, binding(), facts.clone());
    assert_eq!(outcome(&p), Outcome::Completed);
    assert_eq!(
        authenticated(&p),
        Some((Mechanism::External, "alice".into()))
    );
    assert!(String::from_utf8_lossy(&p.s2c).contains(" EXTERNAL\r\n"));
    assert!(
        rendered(&p.server).contains("AUTH EXTERNAL =\\r\\n"),
        "{}",
        rendered(&p.server)
    );
    assert!(
        server_notes(&p).iter().any(|n| n.contains(
            "EXTERNAL as \"alice\" from the verified client certificate (CN=alice, O=Example)"
        )),
        "{:?}",
        server_notes(&p)
    );
    // With an authzid, and with a users file that knows (or does not know) the identity.
    let mut with_z = auth_opts(Some(Mechanism::External), "", "");
    if let Some(a) = with_z.auth.as_mut() {
        a.credentials = Credentials::new("", "").with_authzid("shared@example.test");
    }
    let mut s = sopts();
    s.auth = users();
    let p = pair_tls(with_z, s.clone(), usize::MAX, binding(), facts.clone());
    assert_eq!(outcome(&p), Outcome::Completed);
    assert_eq!(
        p.server.auth().and_then(|a| a.authzid.clone()).as_deref(),
        Some("shared@example.test")
    );
    let stranger = TlsFacts {
        channel_binding: binding(),
        client_certificate: Some(crate::smtp::server::ClientCertificate {
            subject: "CN=mallory".into(),
            identity: "mallory".into(),
        }),
    };
    let p = pair_tls(c.clone(), s, usize::MAX, binding(), stranger);
    assert!(failed_reason(&p).contains("535"));
    // No certificate: not offered, and the client says why.
    let p = pair(
        auth_opts(Some(Mechanism::External), "", ""),
        sopts(),
        usize::MAX,
    );
    let reason = failed_reason(&p);
    assert!(
        reason.contains("does not offer AUTH EXTERNAL") && reason.contains("--tls-cert"),
        "{reason}"
    );
    // A raw AUTH EXTERNAL without a certificate: 504, with the reason in a finding.
    let r = script_tls(
        sopts(),
        &[
            b"EHLO x\r\n",
            b"STARTTLS\r\n",
            TLS,
            b"EHLO x\r\n",
            b"AUTH EXTERNAL =\r\n",
        ],
        usize::MAX,
        TlsFacts::default(),
    );
    assert_eq!(
        r.replies[5],
        "504 5.5.4 Unrecognized authentication type\r\n"
    );
}

#[test]
fn without_data_of_the_chosen_binding_type_plain_scram_says_n() {
    // The user wants tls-server-end-point, but the certificate's algorithm defines no hash
    // (Ed25519): auto picks plain SCRAM and, since -PLUS is on offer, says "n", not "y".
    let mut client_data = binding();
    client_data.tls_server_end_point = None;
    let mut c = auth_opts(None, "alice", "s3cret-pw");
    c.channel_binding = Some(ChannelBindingType::TlsServerEndPoint);
    let mut s = sopts();
    s.auth = users();
    let facts = TlsFacts {
        channel_binding: binding(),
        client_certificate: None,
    };
    let p = pair_tls(c, s, usize::MAX, client_data, facts);
    assert_eq!(outcome(&p), Outcome::Completed);
    assert_eq!(
        authenticated(&p),
        Some((Mechanism::ScramSha256, "alice".into()))
    );
    assert!(rendered(&p.server).contains("<redacted: n,,n=alice,"));
    assert!(
        client_notes(&p)
            .iter()
            .any(|n| n.contains("no channel binding data of the chosen type")),
        "{:?}",
        client_notes(&p)
    );
}
