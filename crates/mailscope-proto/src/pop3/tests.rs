use super::client::*;
use super::response::*;
use crate::escape::unescape;
use crate::transcript::{Direction, Timestamp};

const SEED002: &str = include_str!("../../../../testdata/golden/pop3/seed002.txt");

struct Golden {
    server: Vec<u8>,
    client: Vec<u8>,
    findings: Vec<String>,
}

fn golden(text: &str) -> Golden {
    let mut g = Golden {
        server: Vec::new(),
        client: Vec::new(),
        findings: Vec::new(),
    };
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("S: ") {
            g.server.extend(unescape(s, false).unwrap());
        } else if let Some(c) = line.strip_prefix("C: ") {
            g.client.extend(unescape(c, false).unwrap());
        } else if let Some(f) = line.strip_prefix("F: ") {
            g.findings.push(f.to_string());
        }
    }
    g
}

fn seed_opts() -> ClientOptions {
    ClientOptions {
        login: Some(Login::UserPass {
            user: "test@mail.server.net".into(),
            password: crate::Secret::new("testpass".into()),
        }),
        actions: vec![
            Action::Noop,
            Action::Fetch(MsgSet::parse("7214").unwrap(), Part::Header),
            Action::Fetch(MsgSet::parse("*").unwrap(), Part::Full),
            Action::Delete(MsgSet::parse("7214").unwrap()),
        ],
        ..ClientOptions::default()
    }
}

/// Runs the machine over the server bytes split into `chunks`; returns what it sent and
/// its events (latencies zeroed).
fn run(opts: ClientOptions, chunks: &[&[u8]]) -> (Vec<u8>, Vec<Event>, Client) {
    let mut c = Client::new(opts);
    c.set_peer_is_loopback(true);
    let t = Timestamp(1_000_000);
    c.start(t);
    let mut sent = Vec::new();
    let mut events = Vec::new();
    let drain = |c: &mut Client, sent: &mut Vec<u8>, events: &mut Vec<Event>| {
        while c.poll_transmit(sent) {}
        while let Some(mut e) = c.poll_event() {
            if let Event::ResponseReceived { latency_us, .. } = &mut e {
                *latency_us = 0;
            }
            if e == Event::StartTlsRequested {
                c.handle_tls_established(t);
            }
            events.push(e);
        }
    };
    for ch in chunks {
        c.handle_input(t, ch);
        drain(&mut c, &mut sent, &mut events);
    }
    c.handle_eof(t);
    drain(&mut c, &mut sent, &mut events);
    (sent, events, c)
}

fn finding_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::FindingRaised(f) => Some(f.kind.id.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn seed002_golden() {
    let g = golden(SEED002);
    let (sent, events, c) = run(seed_opts(), &[&g.server]);
    assert_eq!(
        String::from_utf8_lossy(&sent),
        String::from_utf8_lossy(&g.client)
    );
    assert_eq!(finding_ids(&events), g.findings);
    assert_eq!(
        events.last(),
        Some(&Event::Finished(Outcome::Completed)),
        "{events:#?}"
    );
    assert!(events.contains(&Event::MailboxStat {
        count: 7214,
        size: 174404489
    }));
    let retr: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            Event::MessageRetrieved {
                part: Part::Full,
                bytes,
                ..
            } => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(retr.len(), 1);
    assert!(retr[0].starts_with(b"Return-Path: <>\r\n"));
    assert!(retr[0].ends_with(b"\r\n\r\ntest body\r\n"));
    // The password is in the bytes but redacted in the rendering.
    let shown = c.transcript().to_string();
    assert!(!shown.contains("testpass"), "{shown}");
    assert!(c.transcript().stream(Direction::ClientToServer) == sent);
}

#[test]
fn seed002_split_invariance() {
    let g = golden(SEED002);
    let (want_sent, want_events, _) = run(seed_opts(), &[&g.server]);
    for i in 0..=g.server.len() {
        let (a, b) = g.server.split_at(i);
        let (sent, events, _) = run(seed_opts(), &[a, b]);
        assert_eq!(sent, want_sent, "split at {i}");
        assert_eq!(events, want_events, "split at {i}");
    }
    let bytes: Vec<&[u8]> = g.server.chunks(1).collect();
    let (sent, events, _) = run(seed_opts(), &bytes);
    assert_eq!(sent, want_sent);
    assert_eq!(events, want_events);
}

#[test]
fn decoder_unstuffs_and_reports() {
    let mut d = ResponseDecoder::new(ResponseLimits::default());
    let input = b"+OK here\r\n..dot\r\nbare\nok\r\n.\r\nrest";
    match d.decode(input, true) {
        Decoded::Complete { value, consumed } => {
            assert_eq!(consumed, input.len() - 4);
            assert_eq!(value.status, Some(Status::Ok));
            assert_eq!(value.body.as_deref(), Some(&b".dot\r\nbare\nok\r\n"[..]));
            assert_eq!(value.deviations, vec![(17, Deviation::BareLfInBody)]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.decode(b"+OK partial\r\nline", true), Decoded::Incomplete);
    d.reset();
    match d.decode(b"-ERR [IN-USE] locked\n", true) {
        Decoded::Complete { value, .. } => {
            assert_eq!(value.status, Some(Status::Err));
            assert_eq!(value.code.as_ref().map(|c| c.code.as_str()), Some("IN-USE"));
            assert!(value.code.unwrap().meaning().is_some());
            assert_eq!(value.body, None);
            assert_eq!(value.deviations, vec![(0, Deviation::MissingCrlf)]);
        }
        other => panic!("{other:?}"),
    }
    match d.decode(b"+ok lower\r\n", false) {
        Decoded::Complete { value, .. } => {
            assert_eq!(value.status, None);
            assert_eq!(value.deviations, vec![(0, Deviation::BadStatus)]);
        }
        other => panic!("{other:?}"),
    }
    let mut small = ResponseDecoder::new(ResponseLimits {
        status_line_warn: 512,
        max_line: 16,
        max_response: 64,
    });
    assert!(matches!(
        small.decode(&[b'x'; 40], false),
        Decoded::TooLong { .. }
    ));
}

#[test]
fn apop_digest_rfc1939_example() {
    // RFC 1939 §7.
    assert_eq!(
        apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"),
        "c4c9334bac560ecc979e58001b3e22fb"
    );
    assert_eq!(
        apop_timestamp(b"POP3 server ready <1896.697170952@dbc.mtview.ca.us>").as_deref(),
        Some("<1896.697170952@dbc.mtview.ca.us>")
    );
    assert_eq!(apop_timestamp(b"Dovecot ready."), None);
}

#[test]
fn msgset_resolves() {
    let s = MsgSet::parse("1,3:5,*").unwrap();
    assert_eq!(s.resolve(7), vec![1, 3, 4, 5, 7]);
    assert_eq!(s.resolve(0), Vec::<u32>::new());
    assert!(MsgSet::parse("0").is_err());
    assert!(MsgSet::parse("a").is_err());
}

#[test]
fn stls_read_ahead_and_caps_change() {
    let opts = ClientOptions {
        stls: true,
        ..ClientOptions::default()
    };
    let server: &[&[u8]] = &[
        b"+OK ready\r\n",
        b"+OK caps\r\nUSER\r\nSTLS\r\nTOP\r\n.\r\n",
        b"+OK go ahead\r\n+OK injected\r\n",
        b"+OK caps\r\nUSER\r\nUIDL\r\n.\r\n",
        b"+OK bye\r\n",
    ];
    let (sent, events, _) = run(opts, server);
    assert_eq!(sent, b"CAPA\r\nSTLS\r\nCAPA\r\nQUIT\r\n");
    let ids = finding_ids(&events);
    assert!(ids.contains(&"pop3.user-before-tls".to_string()), "{ids:?}");
    assert!(ids.contains(&"pop3.stls.read-ahead".to_string()), "{ids:?}");
    assert!(
        ids.contains(&"pop3.capa-changed-after-tls".to_string()),
        "{ids:?}"
    );
}

#[test]
fn sasl_plain_initial_response_is_redacted() {
    let opts = ClientOptions {
        implicit_tls: true,
        login: Some(Login::Sasl {
            mechanism: crate::sasl::Mechanism::from_name("PLAIN").unwrap(),
            credentials: crate::sasl::Credentials::new("alice", "secret-pw"),
            client_nonce: "abc".into(),
        }),
        quit_after: Some(Stage::Auth),
        ..ClientOptions::default()
    };
    let server: &[&[u8]] = &[
        b"+OK ready\r\n",
        b"+OK\r\nSASL PLAIN\r\n.\r\n",
        b"+OK logged in\r\n",
        b"+OK bye\r\n",
    ];
    let (sent, events, c) = run(opts, server);
    assert!(sent.starts_with(b"CAPA\r\nAUTH PLAIN AGFsaWNlAHNlY3JldC1wdw==\r\n"));
    assert!(events.contains(&Event::Finished(Outcome::StoppedAfter(Stage::Auth))));
    let shown = c.transcript().to_string();
    assert!(!shown.contains("AGFsaWNl"), "{shown}");
}

#[test]
fn refuses_plaintext_to_remote() {
    let mut c = Client::new(ClientOptions {
        login: Some(Login::UserPass {
            user: "u".into(),
            password: crate::Secret::new("p".into()),
        }),
        ..ClientOptions::default()
    });
    let t = Timestamp(0);
    c.start(t);
    c.handle_input(t, b"+OK hi\r\n+OK\r\nUSER\r\n.\r\n");
    let mut out = Vec::new();
    while c.poll_transmit(&mut out) {}
    assert_eq!(out, b"CAPA\r\nQUIT\r\n");
    c.handle_input(t, b"+OK bye\r\n");
    let mut last = None;
    while let Some(e) = c.poll_event() {
        last = Some(e);
    }
    assert!(matches!(
        last,
        Some(Event::Finished(Outcome::Failed {
            step: FailedStep::Auth,
            ..
        }))
    ));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), ml in any::<bool>()) {
            let mut d = ResponseDecoder::new(ResponseLimits { status_line_warn: 512, max_line: 300, max_response: 1500 });
            let _ = d.decode(&bytes, ml);
        }

        #[test]
        fn machine_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..12),
                                stls in any::<bool>(), sasl in any::<bool>()) {
            let login = if sasl {
                Login::Sasl { mechanism: crate::sasl::Mechanism::from_name("SCRAM-SHA-256").unwrap(),
                    credentials: crate::sasl::Credentials::new("u", "p"), client_nonce: "n0nce".into() }
            } else {
                Login::UserPass { user: "u".into(), password: crate::Secret::new("p".into()) }
            };
            let opts = ClientOptions { stls, login: Some(login), actions: vec![Action::List,
                Action::Fetch(MsgSet::parse("1:3,*").unwrap(), Part::Full)], ..ClientOptions::default() };
            let mut prefix: Vec<Vec<u8>> = vec![b"+OK hi <1.2@x>\r\n".to_vec(), b"+OK\r\nSTLS\r\nUSER\r\n.\r\n".to_vec()];
            prefix.extend(chunks);
            let refs: Vec<&[u8]> = prefix.iter().map(|c| c.as_slice()).collect();
            let _ = run(opts, &refs);
        }
    }
}
