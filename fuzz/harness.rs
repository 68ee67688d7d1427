//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz) and by
//! `crates/mailscope-proto/tests/fuzz_corpus.rs`, which replays every corpus file through the
//! same code as an ordinary test. Both include this file with `#[path]`.
//!
//! Every function takes arbitrary bytes, must never panic on them, and asserts the properties
//! that must hold whatever the peer sent. Input layouts are documented per target; a corpus
//! file is just such an input.

#![allow(dead_code)] // each fuzz target uses one function

use std::num::NonZeroU32;

use mailscope_proto::escape::{escape, escape_lines, unescape};
use mailscope_proto::sasl::{
    ClientSession, Credentials, Mechanism, ServerSession, ServerStep, explain,
};
use mailscope_proto::secret::Secret;
use mailscope_proto::smtp::client::{AuthOptions, Client, ClientOptions, Event, HelloKind, Stage};
use mailscope_proto::smtp::data::{prepare_normalized, prepare_raw};
use mailscope_proto::smtp::ehlo::Capabilities;
use mailscope_proto::smtp::reply::{Decoded, ReplyLimits, decode_reply};
use mailscope_proto::transcript::{Direction, Timestamp};

/// The password the harnesses log in with: long and odd, so that finding it in an output
/// means it leaked rather than that the fuzzer happened to write it.
pub const PASSWORD: &str = "pencil-Zq8#Lw2!vX";

/// The targets, by name, for the corpus replay.
/// A target body.
pub type Target = fn(&[u8]);

pub const TARGETS: &[(&str, Target)] = &[
    ("smtp_reply", smtp_reply),
    ("smtp_ehlo", smtp_ehlo),
    ("smtp_client", smtp_client),
    ("sasl_client", sasl_client),
    ("sasl_server", sasl_server),
    ("escape", escape_target),
];

// ---------------------------------------------------------------------------------------
// smtp_reply: the whole input is server bytes.
// ---------------------------------------------------------------------------------------

/// `decode_reply` with the default limits and with small ones (taken from the first two
/// bytes), over the whole input as a stream of replies.
pub fn smtp_reply(data: &[u8]) {
    let small = ReplyLimits {
        max_line: 1 + usize::from(data.first().copied().unwrap_or(0) % 64),
        max_lines: 1 + usize::from(data.get(1).copied().unwrap_or(0) % 8),
        ..ReplyLimits::default()
    };
    for limits in [ReplyLimits::default(), small] {
        let mut rest = data;
        while !rest.is_empty() {
            match check_one_reply(rest, &limits) {
                Some(consumed) => rest = &rest[consumed..],
                None => break,
            }
        }
    }
}

/// Decodes one reply and checks it; returns how much it consumed.
fn check_one_reply(input: &[u8], limits: &ReplyLimits) -> Option<usize> {
    let decoded = decode_reply(input, limits);
    let Ok(Decoded::Complete { value, consumed }) = decoded else {
        return None;
    };
    assert!(consumed > 0, "Complete with nothing consumed");
    assert!(
        consumed <= input.len(),
        "consumed {consumed} of {} bytes",
        input.len()
    );
    let reply = &value.reply;
    if let Some(first) = reply.lines.first() {
        assert_eq!(reply.code, first.code, "reply code is not the first line's");
        assert!(
            (200..=599).contains(&reply.code),
            "reply code {}",
            reply.code
        );
    }
    assert!(
        reply.lines.len() <= limits.max_lines,
        "more lines than the limit"
    );
    for l in &reply.lines {
        assert!(l.offset < consumed, "line offset past the reply");
        assert!(!l.text.contains(&b'\n'), "LF inside a line's text");
    }
    for f in &value.findings {
        if let Some(o) = f.offset {
            assert!(
                o < consumed as u64,
                "finding offset {o} past the reply ({consumed})"
            );
        }
    }
    let _ = (
        reply.text(),
        reply.summary(),
        reply.is_positive(),
        reply.class(),
    );
    // The reply ends where it says: decoding exactly those bytes gives the same result.
    let again = decode_reply(&input[..consumed], limits);
    assert_eq!(
        again,
        Ok(Decoded::Complete {
            value: value.clone(),
            consumed
        }),
        "decoding the consumed prefix alone differs"
    );
    Some(consumed)
}

// ---------------------------------------------------------------------------------------
// smtp_ehlo: the whole input is server bytes.
// ---------------------------------------------------------------------------------------

/// Decodes replies and reads each as an EHLO reply.
pub fn smtp_ehlo(data: &[u8]) {
    let limits = ReplyLimits::default();
    let mut rest = data;
    while let Ok(Decoded::Complete { value, consumed }) = decode_reply(rest, &limits) {
        let caps = Capabilities::from_reply(&value.reply);
        assert!(
            caps.extensions.len() < value.reply.lines.len().max(1),
            "more extensions than lines after the first"
        );
        for e in &caps.extensions {
            assert!(!e.keyword.is_empty(), "empty keyword");
            assert!(e.is(&e.keyword), "a keyword is not itself");
            assert!(caps.has(&e.keyword));
        }
        assert_eq!(caps.keywords().len(), caps.extensions.len());
        for m in caps.auth_mechanisms() {
            assert_eq!(m, m.to_ascii_uppercase());
            let _ = Mechanism::from_name(&m);
        }
        let _ = (caps.size_limit(), caps.offers_auth(), caps.params("SIZE"));
        let _ = Mechanism::best_of(caps.auth_mechanisms().iter().map(String::as_str));
        rest = &rest[consumed..];
    }
}

// ---------------------------------------------------------------------------------------
// smtp_client: [flags] [cut] server bytes…
// ---------------------------------------------------------------------------------------

/// Client options from the two leading bytes:
/// - `flags` bit 0 STARTTLS, bit 1 implicit TLS, bits 2–4 AUTH (none, PLAIN, LOGIN,
///   CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256, auto, none), bit 5 plaintext AUTH allowed,
///   bit 6 raw message data (with bare LFs and a lone dot), bit 7 tiny reply limits;
/// - `cut` bits 0–3: chunk size − 1 for the split feeding; bits 4–7: a `--quit-after` stage
///   (0–9), none (10), HELO (11), LHLO (12), the TLS handshake fails (13), the session ends
///   with a timeout instead of EOF (14, 15).
fn client_options(flags: u8, cut: u8) -> ClientOptions {
    let mechanism = match (flags >> 2) & 7 {
        1 => Some(Some(Mechanism::Plain)),
        2 => Some(Some(Mechanism::Login)),
        3 => Some(Some(Mechanism::CramMd5)),
        4 => Some(Some(Mechanism::ScramSha1)),
        5 => Some(Some(Mechanism::ScramSha256)),
        6 => Some(None),
        _ => None,
    };
    let message: &[u8] = b"Subject: fuzz\n\nbody\n.\nend \xe9\r\n";
    let mut reply_limits = ReplyLimits::default();
    if flags & 128 != 0 {
        reply_limits.max_line = 64;
        reply_limits.max_lines = 4;
    }
    let which = usize::from(cut >> 4);
    ClientOptions {
        helo_name: "client.example.test".into(),
        hello: match which {
            11 => HelloKind::Helo,
            12 => HelloKind::Lhlo,
            _ => HelloKind::Ehlo,
        },
        implicit_tls: flags & 2 != 0,
        starttls: flags & 1 != 0,
        auth: mechanism.map(|mechanism| AuthOptions {
            mechanism,
            credentials: Credentials::new("user", PASSWORD),
            client_nonce: "rOprNGfwEbeRWgbNEkqO".into(),
        }),
        allow_plaintext_auth: flags & 32 != 0,
        from: "alice@example.test".into(),
        to: vec!["bob@example.test".into(), "carol@example.test".into()],
        data: Some(if flags & 64 != 0 {
            prepare_raw(message)
        } else {
            prepare_normalized(message)
        }),
        quit_after: Stage::ALL.get(which).copied(),
        reply_limits,
        step_timeout_us: 30_000_000,
        ..ClientOptions::default()
    }
}

/// What one drive of the machine produced.
struct Drive {
    sent: Vec<u8>,
    events: Vec<Event>,
    starttls: bool,
}

/// Feeds `stream` in pieces of `chunk` bytes, answers STARTTLS at once (the handshake fails
/// if `tls_fails`), ends with a timeout (if `quiet_end`) and EOF; checks the machine's own
/// invariants on the way.
fn drive(
    opts: ClientOptions,
    stream: &[u8],
    chunk: usize,
    tls_fails: bool,
    quiet_end: bool,
) -> Drive {
    let now = Timestamp(1_000_000);
    let mut c = Client::new(opts);
    c.start(now);
    let mut d = Drive {
        sent: Vec::new(),
        events: Vec::new(),
        starttls: false,
    };
    let pump = |c: &mut Client, d: &mut Drive| {
        let _ = c.poll_transmit(&mut d.sent);
        while let Some(e) = c.poll_event() {
            if e == Event::StartTlsRequested {
                d.starttls = true;
                if tls_fails {
                    c.handle_tls_failed(now, "fuzz");
                } else {
                    c.handle_tls_established(now);
                }
            }
            d.events.push(e);
        }
        let _ = c.poll_transmit(&mut d.sent);
    };
    pump(&mut c, &mut d);
    for piece in stream.chunks(chunk.max(1)) {
        c.handle_input(now, piece);
        pump(&mut c, &mut d);
    }
    if let Some(deadline) = c.poll_timeout().filter(|_| quiet_end) {
        c.handle_timeout(deadline);
        pump(&mut c, &mut d);
    }
    c.handle_eof(now);
    pump(&mut c, &mut d);
    assert!(c.is_finished(), "not finished after EOF");
    assert!(
        c.poll_timeout().is_none(),
        "a deadline after the session ended"
    );
    let finished = d
        .events
        .iter()
        .filter(|e| matches!(e, Event::Finished(_)))
        .count();
    assert_eq!(finished, 1, "Finished must come exactly once");
    let t = c.transcript();
    assert_eq!(
        t.stream(Direction::ClientToServer),
        d.sent,
        "transcript != bytes sent"
    );
    assert_eq!(
        t.stream(Direction::ServerToClient),
        stream,
        "transcript != bytes received"
    );
    for f in c.findings() {
        if let (Some(dir), Some(o)) = (f.direction, f.offset) {
            assert!(
                o <= t.len(dir),
                "finding {} at {o} past the stream",
                f.kind.id
            );
        }
    }
    // The password never reaches a rendering of what the client sent, nor an event.
    let b64 = base64(PASSWORD.as_bytes());
    for chunk in t
        .chunks()
        .iter()
        .filter(|c| c.direction == Direction::ClientToServer)
    {
        let opts = mailscope_proto::transcript::RenderOptions {
            escape_all: true,
            show_secrets: false,
        };
        for l in mailscope_proto::transcript::render_chunk(chunk, opts) {
            assert!(
                !l.text.contains(PASSWORD),
                "password in transcript: {}",
                l.text
            );
            assert!(
                !l.text.contains(&b64),
                "base64 password in transcript: {}",
                l.text
            );
        }
    }
    // Events quote the server, which may send the password itself (the fuzzer learns it
    // from these very comparisons); only when it did not must no event show it.
    if !mentions_password(stream) {
        for e in &d.events {
            let shown = format!("{e:?}");
            assert!(!shown.contains(PASSWORD), "password in an event: {shown}");
        }
    }
    d
}

/// Whether `bytes` contain the password, as is or base64-encoded at any alignment.
fn mentions_password(bytes: &[u8]) -> bool {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    has(PASSWORD.as_bytes())
        || (0..3).any(|pad| {
            let mut v = vec![b'x'; pad];
            v.extend_from_slice(PASSWORD.as_bytes());
            let enc = base64(&v);
            // The middle does not depend on the bytes around the password.
            has(&enc.as_bytes()[4..enc.len() - 4])
        })
}

/// The client machine against arbitrary server bytes: never panics, keeps its invariants,
/// and (unless a STARTTLS handshake happened mid-stream, where the read boundary is part of
/// the protocol) produces the same events and bytes however the input is cut.
pub fn smtp_client(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&cut, stream)) = rest.split_first() else {
        return;
    };
    let opts = client_options(flags, cut);
    let chunk = usize::from(cut & 15) + 1;
    let (tls_fails, quiet_end) = (cut >> 4 == 13, cut >> 4 >= 14);
    let whole = drive(opts.clone(), stream, usize::MAX, tls_fails, quiet_end);
    let split = drive(opts, stream, chunk, tls_fails, quiet_end);
    if whole.starttls || split.starttls {
        return;
    }
    assert_eq!(
        whole.sent, split.sent,
        "bytes sent depend on how the input was cut"
    );
    // Up to the end of the session: bytes after it are reported per read (see
    // fuzz/README.md, known differences).
    let until_finished = |events: &[Event]| -> Vec<Event> {
        let end = events
            .iter()
            .position(|e| matches!(e, Event::Finished(_)))
            .map_or(events.len(), |i| i + 1);
        events[..end].to_vec()
    };
    assert_eq!(
        until_finished(&whole.events),
        until_finished(&split.events),
        "events depend on how the input was cut (chunk {chunk})"
    );
}

// ---------------------------------------------------------------------------------------
// sasl_client / sasl_server: [selector] then messages, each [len] bytes…
// ---------------------------------------------------------------------------------------

/// Splits `[len][bytes]…` framing; a short last message takes what is left.
fn messages(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        out.push(&tail[..n]);
        rest = &tail[n..];
    }
    out
}

/// SCRAM server-first with an iteration count above this is skipped: each would cost the
/// fuzzer up to a second of PBKDF2 (the client's cap, 1 000 000, is unit-tested in sasl).
const FUZZ_MAX_ITERATIONS: u64 = 10_000;

fn too_many_iterations(msg: &[u8]) -> bool {
    msg.windows(2).enumerate().any(|(i, w)| {
        if w != b"i=" {
            return false;
        }
        let digits: Vec<u8> = msg[i + 2..]
            .iter()
            .copied()
            .take_while(u8::is_ascii_digit)
            .collect();
        digits.len() > 5
            || std::str::from_utf8(&digits)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|n| n > FUZZ_MAX_ITERATIONS)
    })
}

fn mechanism(selector: u8) -> Mechanism {
    Mechanism::PREFERENCE[usize::from(selector & 7) % Mechanism::PREFERENCE.len()]
}

/// The client side against arbitrary server challenges. Selector: mechanism (bits 0–2, mod 5), bit 3
/// authzid, bit 4 send the initial response first, bit 5 end with a success report carrying
/// the last message as additional data.
pub fn sasl_client(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mech = mechanism(selector);
    let mut creds = Credentials::new("user", PASSWORD);
    if selector & 8 != 0 {
        creds = creds.with_authzid("admin");
    }
    let Ok(mut session) = ClientSession::new(mech, creds, "rOprNGfwEbeRWgbNEkqO") else {
        return;
    };
    let check = |m: &mailscope_proto::sasl::ClientMessage| {
        assert!(
            !m.redacted.contains(PASSWORD),
            "password in redaction: {}",
            m.redacted
        );
        let shown = explain(mech, Direction::ClientToServer, m.bytes.expose(), false);
        assert!(!shown.contains(PASSWORD), "password in explain: {shown}");
    };
    if selector & 16 != 0
        && let Some(m) = session.initial_response()
    {
        check(&m);
    }
    let msgs = messages(rest);
    for msg in &msgs {
        for show in [false, true] {
            let _ = explain(mech, Direction::ServerToClient, msg, show);
        }
        if mech.is_scram() && too_many_iterations(msg) {
            continue;
        }
        if let Ok(m) = session.step(msg) {
            check(&m);
        }
    }
    if selector & 32 != 0 {
        let _ = session.handle_success_data(msgs.last().copied().unwrap_or_default());
    }
    let _ = (
        session.is_complete(),
        session.server_verified(),
        session.unexpected_login_prompt(),
        session.login_prompts(),
        session.scram_iterations(),
    );
}

/// The server side against arbitrary client messages, then a real exchange between our
/// client and our server. Selector: mechanism (bits 0–2, mod 5), bit 3 call `start` first, bit 4 the
/// known user's password comes from the last message (otherwise [`PASSWORD`]).
pub fn sasl_server(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mech = mechanism(selector);
    let msgs = messages(rest);
    let lookup = |u: &str| (u == "user").then(|| Secret::new(String::from(PASSWORD)));
    let iterations = NonZeroU32::MIN;
    let Ok(server) = ServerSession::new(mech, "3rfcNHYJY1ZVvWVs7j", "mx.example.test") else {
        return;
    };
    let mut server = server.with_scram_salt(b"salt".to_vec(), iterations);
    if selector & 8 != 0 {
        let _ = server.start();
    }
    for msg in &msgs {
        for show in [false, true] {
            let _ = explain(mech, Direction::ClientToServer, msg, show);
        }
        if let ServerStep::Failure(f) = server.step(msg, &lookup) {
            // Failures name users, never the password (unless the client sent it as a name).
            let shown = f.to_string();
            let sent_it = rest
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes());
            assert!(
                sent_it || !shown.contains(PASSWORD),
                "password in a failure: {shown}"
            );
        }
    }
    roundtrip(mech, &msgs, selector & 16 != 0);
}

/// Our client and our server agree: for any credentials the client accepts, the exchange
/// succeeds with the same identities (and SCRAM verifies the server).
fn roundtrip(mech: Mechanism, msgs: &[&[u8]], password_from_input: bool) {
    let text = |i: usize, default: &str| {
        msgs.get(i)
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_else(|| default.to_string())
    };
    let user = text(0, "user");
    let want_user = user.clone();
    let authzid = msgs.get(1).map(|m| String::from_utf8_lossy(m).into_owned());
    let password = if password_from_input {
        text(msgs.len().saturating_sub(1), PASSWORD)
    } else {
        String::from(PASSWORD)
    };
    if password.is_empty() {
        // Our client sends an empty password (useful to probe servers); our server, like
        // RFC 4616's `passwd = 1*SAFE`, refuses it. Not a disagreement worth a crash.
        return;
    }
    let mut creds = Credentials::new(user.clone(), password.clone());
    if let Some(z) = authzid.clone().filter(|z| !z.is_empty()) {
        creds = creds.with_authzid(z);
    }
    let want_authzid = creds.authzid.clone();
    let Ok(mut client) = ClientSession::new(mech, creds, "fyko+d2lbbFgONRv9qkxdawL") else {
        return;
    };
    let Ok(server) = ServerSession::new(mech, "3rfcNHYJY1ZVvWVs7j", "mx.example.test") else {
        return;
    };
    let mut server = server.with_scram_salt(b"QSXCR+Q6sek8bf92".to_vec(), NonZeroU32::MIN);
    let stored = password.clone();
    let lookup = move |u: &str| (u == user).then(|| Secret::new(stored.clone()));
    let mut to_server = match client.initial_response() {
        Some(m) => m,
        None => match server.start() {
            ServerStep::Challenge(c) => match client.step(&c) {
                Ok(m) => m,
                Err(e) => panic!("{mech}: client refused the first challenge: {e}"),
            },
            other => panic!("{mech}: start gave {other:?}"),
        },
    };
    for _ in 0..8 {
        match server.step(to_server.bytes.expose(), &lookup) {
            ServerStep::Challenge(c) => match client.step(&c) {
                Ok(m) => to_server = m,
                Err(e) => panic!("{mech}: client refused our server's challenge: {e}"),
            },
            ServerStep::Success {
                authzid,
                authcid,
                additional_data,
            } => {
                assert_eq!(authcid, want_user, "{mech}: authcid changed on the way");
                if mech != Mechanism::Login && mech != Mechanism::CramMd5 {
                    assert_eq!(authzid, want_authzid, "{mech}: authzid changed on the way");
                }
                if let Some(d) = additional_data
                    && let Err(e) = client.handle_success_data(&d)
                {
                    panic!("{mech}: client refused our server's success data: {e}");
                }
                if mech.is_scram() {
                    assert_eq!(client.server_verified(), Some(true), "{mech}: not verified");
                }
                return;
            }
            ServerStep::Failure(f) => panic!("{mech}: our server refused our client: {f}"),
        }
    }
    panic!("{mech}: no result after 8 steps");
}

/// Standard base64 with padding, to look for encoded secrets.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let b = |i: usize| u32::from(c.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// escape: any bytes.
// ---------------------------------------------------------------------------------------

/// `unescape(escape(x)) == x` (also for the line-keeping form), and `unescape` of any text
/// never panics and, when it succeeds, round-trips.
pub fn escape_target(data: &[u8]) {
    let e = escape(data);
    assert!(
        e.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        "escape output not printable"
    );
    assert_eq!(
        unescape(&e, false).as_deref(),
        Ok(data),
        "round trip failed"
    );
    let lines = escape_lines(data);
    assert_eq!(
        unescape(&lines, true).as_deref(),
        Ok(data),
        "line round trip failed"
    );
    let text = String::from_utf8_lossy(data);
    for newlines in [false, true] {
        if let Ok(bytes) = unescape(&text, newlines) {
            assert_eq!(unescape(&escape(&bytes), false), Ok(bytes));
        }
    }
}
