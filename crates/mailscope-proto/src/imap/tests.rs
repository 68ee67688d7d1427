//! Unit tests: the seed 002 IMAP sessions as goldens (with split-point invariance), literal
//! handling, STARTTLS read-ahead, and a proptest that random bytes never panic.

use super::client::{AuthOptions, Client, ClientOptions, Event, FailedStep, Outcome, Part};
use crate::sasl::Credentials;
use crate::transcript::{Direction, Timestamp};

/// Drives a client against scripted server responses: each element is what the server sends
/// after the client's n-th write (the first: the greeting). Input is delivered in pieces of
/// `split` bytes.
fn run(opts: ClientOptions, server: &[&[u8]], split: usize) -> (Client, Vec<Event>) {
    let mut c = Client::new(opts);
    c.set_peer_is_loopback(true);
    let mut t = 1_000u64;
    c.start(Timestamp(t));
    let mut events = Vec::new();
    let mut script = server.iter();
    let mut out = Vec::new();
    loop {
        while let Some(e) = c.poll_event() {
            if e == Event::StartTlsRequested {
                c.handle_tls_established(Timestamp(t));
            }
            events.push(e);
        }
        if c.is_finished() {
            break;
        }
        let Some(chunk) = script.next() else {
            c.handle_eof(Timestamp(t));
            continue;
        };
        for piece in chunk.chunks(split.max(1)) {
            t += 1;
            c.handle_input(Timestamp(t), piece);
        }
        out.clear();
        while c.poll_transmit(&mut out) {}
    }
    (c, events)
}

fn seed_opts() -> ClientOptions {
    ClientOptions {
        auth: Some(AuthOptions {
            mechanism: None,
            credentials: Credentials::new("user@mail.server.net", "testpass"),
            client_nonce: "abc".into(),
        }),
        mailbox: "Inbox".into(),
        fetch: Some("7214".into()),
        part: Part::Header,
        ..ClientOptions::default()
    }
}

const HEADER: &[u8] = b"Return-Path: <>\r\nX-Real-To: user@mail.server.net\r\nSUBJECT: test mail from test subject\r\n\r\n";

fn seed_server() -> Vec<Vec<u8>> {
    let mut fetch =
        format!("* 7214 FETCH (UID 9 BODY[HEADER] {{{}}}\r\n", HEADER.len()).into_bytes();
    fetch.extend_from_slice(HEADER);
    fetch.extend_from_slice(b" FLAGS (\\Seen))\r\na004 OK completed\r\n");
    vec![
        b"* OK IMAP Server at mail.server.net ready\r\n".to_vec(),
        b"* CAPABILITY IMAP4 IMAP4REV1 ACL NAMESPACE UIDPLUS IDLE LITERAL+ QUOTA ID MULTIAPPEND CHILDREN BINARY LOGIN-REFERRALS STARTTLS AUTH=LOGIN AUTH=PLAIN AUTH=CRAM-MD5\r\na001 OK completed\r\n".to_vec(),
        b"a002 OK completed\r\n".to_vec(),
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $MDNSent)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $MDNSent)] limited\r\n* 7214 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 306349424] UIDs valid\r\n* OK [UNSEEN 1] message 1 is first unseen\r\na003 OK [READ-WRITE] SELECT completed\r\n".to_vec(),
        fetch,
        b"* BYE IMAP closing connection\r\na005 OK completed\r\n".to_vec(),
    ]
}

fn summary(c: &Client, events: &[Event]) -> String {
    let mut s = String::new();
    for e in events {
        match e {
            Event::CommandSent { command, tag, .. } => {
                s.push_str(&format!("sent {tag} {command}\n"))
            }
            Event::FindingRaised(f) => s.push_str(&format!("finding {}\n", f.kind.id)),
            Event::MailboxSelected(m) => s.push_str(&format!(
                "selected {} exists={:?} recent={:?} uidvalidity={:?}\n",
                m.name, m.exists, m.recent, m.uidvalidity
            )),
            Event::MessageFetched { seq, uid, data } => {
                s.push_str(&format!("fetched {seq} uid={uid:?} {} bytes\n", data.len()))
            }
            Event::Finished(o) => s.push_str(&format!("finished {o:?}\n")),
            _ => {}
        }
    }
    s.push_str(&format!(
        "client stream: {}\n",
        crate::escape::escape(&c.transcript().stream(Direction::ClientToServer))
    ));
    s
}

#[test]
fn seed_002_session_golden_and_split_invariant() {
    let server = seed_server();
    let refs: Vec<&[u8]> = server.iter().map(Vec::as_slice).collect();
    let (c, events) = run(seed_opts(), &refs, usize::MAX);
    let golden = summary(&c, &events);
    let expected = "\
sent a001 CAPABILITY
finding imap.logindisabled-missing
finding imap.login-before-tls
sent a002 LOGIN
sent a003 SELECT
selected Inbox exists=Some(7214) recent=Some(0) uidvalidity=Some(306349424)
sent a004 FETCH
fetched 7214 uid=Some(9) 90 bytes
sent a005 LOGOUT
finished Completed
client stream: a001 CAPABILITY\\r\\na002 LOGIN user@mail.server.net testpass\\r\\na003 SELECT Inbox\\r\\na004 FETCH 7214 (UID BODY.PEEK[HEADER])\\r\\na005 LOGOUT\\r\\n
";
    assert_eq!(golden, expected);
    let fetched = events.iter().find_map(|e| match e {
        Event::MessageFetched { data, .. } => Some(data.clone()),
        _ => None,
    });
    assert_eq!(fetched.as_deref(), Some(HEADER));
    for split in 1..64 {
        let (c2, ev2) = run(seed_opts(), &refs, split);
        assert_eq!(summary(&c2, &ev2), golden, "split {split}");
    }
    // The password is redacted in the transcript.
    let red: Vec<_> = c
        .transcript()
        .chunks()
        .iter()
        .flat_map(|ch| ch.redactions.clone())
        .collect();
    assert_eq!(red.len(), 1);
    assert!(red[0].replacement.contains("8-byte password"));
}

#[test]
fn dovecot_greeting_with_capabilities_skips_capability() {
    let server: Vec<&[u8]> = vec![
        b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE STARTTLS AUTH=PLAIN AUTH=LOGIN AUTH=DIGEST-MD5 AUTH=CRAM-MD5] Dovecot ready.\r\n",
        b"* BYE Logging out\r\na001 OK Logout completed.\r\n",
    ];
    let (c, events) = run(ClientOptions::default(), &server, 7);
    let s = summary(&c, &events);
    assert!(
        s.starts_with("finding imap.logindisabled-missing\nsent a001 LOGOUT\nfinished Completed"),
        "{s}"
    );
    assert!(
        c.findings()
            .iter()
            .all(|f| f.kind.id != "imap.response.syntax")
    );
}

#[test]
fn starttls_read_ahead_is_discarded_and_caps_compared() {
    let server: Vec<&[u8]> = vec![
        b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN] hi\r\n",
        b"a001 OK go\r\n* OK injected\r\n",
        b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=SCRAM-SHA-256\r\na002 OK done\r\n",
        b"a003 OK bye\r\n",
    ];
    let opts = ClientOptions {
        starttls: true,
        ..ClientOptions::default()
    };
    let (c, events) = run(opts, &server, usize::MAX);
    let ids: Vec<&str> = c.findings().iter().map(|f| f.kind.id).collect();
    assert!(ids.contains(&"imap.starttls.read-ahead"), "{ids:?}");
    assert!(
        ids.contains(&"imap.capability-changed-after-tls"),
        "{ids:?}"
    );
    assert!(events.contains(&Event::Finished(Outcome::Completed)));
}

#[test]
fn login_uses_literals_for_8bit_and_waits_for_continuation() {
    let opts = ClientOptions {
        auth: Some(AuthOptions {
            mechanism: None,
            credentials: Credentials::new("bob", "p\u{e4}ss"),
            client_nonce: "x".into(),
        }),
        quit_after: Some(super::client::Stage::Auth),
        ..ClientOptions::default()
    };
    let server: Vec<&[u8]> = vec![
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
        b"+ go ahead\r\n",
        b"a001 OK logged in\r\n",
        b"a002 OK bye\r\n",
    ];
    let (c, events) = run(opts, &server, usize::MAX);
    let sent = c.transcript().stream(Direction::ClientToServer);
    assert_eq!(
        sent,
        "a001 LOGIN bob {5}\r\np\u{e4}ss\r\na002 LOGOUT\r\n".as_bytes()
    );
    assert!(events.contains(&Event::Finished(Outcome::StoppedAfter(
        super::client::Stage::Auth
    ))));
    let redacted: usize = c
        .transcript()
        .chunks()
        .iter()
        .map(|ch| ch.redactions.len())
        .sum();
    assert_eq!(redacted, 1);
}

#[test]
fn failed_login_is_auth_failure() {
    let mut opts = seed_opts();
    opts.fetch = None;
    let server: Vec<&[u8]> = vec![
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
        b"a001 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        b"a002 OK bye\r\n",
    ];
    let (_, events) = run(opts, &server, usize::MAX);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Finished(Outcome::Failed {
            step: FailedStep::Auth,
            ..
        })
    )));
}

#[test]
fn lying_literal_and_syntax_error_are_findings() {
    let mut opts = seed_opts();
    opts.fetch = Some("1".into());
    let server: Vec<&[u8]> = vec![
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
        b"a001 OK in\r\n",
        b"* 1 EXISTS\r\na002 OK sel\r\n",
        b"* 1 FETCH (BODY[HEADER] {3}\r\nhello)\r\n* garbage ((\r\na003 OK done\r\n",
        b"a004 OK bye\r\n",
    ];
    let (c, _) = run(opts, &server, usize::MAX);
    let ids: Vec<&str> = c.findings().iter().map(|f| f.kind.id).collect();
    assert!(
        ids.contains(&"imap.response.literal-length-mismatch"),
        "{ids:?}"
    );
    assert!(ids.contains(&"imap.response.syntax"), "{ids:?}");
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8)) {
            let mut c = Client::new(seed_opts());
            c.start(Timestamp(1));
            for (i, ch) in chunks.iter().enumerate() {
                c.handle_input(Timestamp(2 + i as u64), ch);
                let mut out = Vec::new();
                while c.poll_transmit(&mut out) {}
                while c.poll_event().is_some() {}
            }
            c.handle_timeout(Timestamp(u64::MAX / 2));
            c.handle_eof(Timestamp(u64::MAX / 2));
            while c.poll_event().is_some() {}
        }

        #[test]
        fn imapish_bytes_never_panic(lines in proptest::collection::vec("(\\* |\\+ |a00[1-5] )(OK|NO|BAD|BYE|CAPABILITY|[0-9]+ FETCH|[0-9]+ EXISTS)( \\[[A-Z ]*\\]?)?( \\{[0-9]{1,3}\\+?\\})?[ -~]{0,20}\r?\n", 0..20)) {
            let mut c = Client::new(seed_opts());
            c.start(Timestamp(1));
            for l in &lines {
                c.handle_input(Timestamp(2), l.as_bytes());
                let mut out = Vec::new();
                while c.poll_transmit(&mut out) {}
                while c.poll_event().is_some() {}
            }
            c.handle_eof(Timestamp(3));
        }
    }
}
