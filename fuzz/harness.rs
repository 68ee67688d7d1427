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
    ChannelBinding, ChannelBindingData, ClientSession, Credentials, Mechanism, OAuthTarget,
    SaslError, ServerSession, ServerStep, explain,
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
    ("pop3_response", pop3_response),
    ("pop3_client", pop3_client),
    ("imap_framing", imap_framing),
    ("imap_client", imap_client),
    ("smtp_server", smtp_server),
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

/// The mechanism index of a SASL selector: bits 0–2 and 6–7 (five bits, 0–31). The
/// mechanism is `Mechanism::ALL[index % 10]`; `index / 10` picks a variant (see
/// [`Variant`]).
fn mech_index(selector: u8) -> usize {
    usize::from((selector & 7) | ((selector >> 6) << 3))
}

fn mechanism(selector: u8) -> Mechanism {
    Mechanism::ALL[mech_index(selector) % Mechanism::ALL.len()]
}

/// What `index / 10` of a selector changes: the `-PLUS` SCRAMs bind with `tls-exporter` (even)
/// or `tls-server-end-point` (odd); the other SCRAMs say `n` (0, 1) or `y` (2, 3: "I could
/// bind, but you did not offer -PLUS").
#[derive(Clone, Copy)]
struct Variant(usize);

impl Variant {
    fn of(selector: u8) -> Self {
        Variant(mech_index(selector) / Mechanism::ALL.len())
    }
}

/// Fixed channel-binding data, as a TLS layer would give (TLS 1.3: exporter by default).
const CB_EXPORTER: &[u8] = b"\x01fuzz-tls-exporter-32-bytes...\x02";
const CB_END_POINT: &[u8] = b"\x03fuzz-server-end-point-hash\x04";

fn channel_binding_data() -> ChannelBindingData {
    ChannelBindingData {
        tls_exporter: Some(CB_EXPORTER.to_vec()),
        tls_server_end_point: Some(CB_END_POINT.to_vec()),
        tls13: true,
    }
}

/// Where an OAUTHBEARER client says it connected.
fn oauth_target() -> OAuthTarget {
    OAuthTarget {
        host: Some("mx.example.test".into()),
        port: Some(587),
    }
}

/// A client session for any mechanism: `-PLUS` with fixed channel-binding bytes, OAuth with
/// a target, the other SCRAMs with `n` or `y` (by `variant`).
fn client_session(
    mech: Mechanism,
    creds: Credentials,
    nonce: &str,
    variant: Variant,
) -> Result<ClientSession, SaslError> {
    let binding = if mech.is_scram_plus() {
        if variant.0.is_multiple_of(2) {
            ChannelBinding::TlsExporter(CB_EXPORTER.to_vec())
        } else {
            ChannelBinding::TlsServerEndPoint(CB_END_POINT.to_vec())
        }
    } else if mech.is_scram() && variant.0 >= 2 {
        ChannelBinding::NotSupportedByClient
    } else {
        ChannelBinding::None
    };
    let session = ClientSession::new_with_channel_binding(mech, creds, nonce, binding)?;
    if mech.is_oauth() {
        session.with_oauth_target(oauth_target())
    } else {
        Ok(session)
    }
}

/// A server session for any mechanism: `-PLUS` with the channel-binding data the client binds
/// to, EXTERNAL with `identity` (the name from a verified client certificate).
fn server_session(mech: Mechanism, identity: &str) -> Result<ServerSession, SaslError> {
    let mut server = ServerSession::new(mech, "3rfcNHYJY1ZVvWVs7j", "mx.example.test")?;
    if mech.is_scram_plus() {
        server = server.with_channel_binding(channel_binding_data());
    }
    if mech == Mechanism::External {
        server = server.with_external_identity(Some(identity.to_string()));
    }
    Ok(server)
}

/// The client side against arbitrary server challenges. Selector: mechanism (bits 0–2 and
/// 6–7, see [`mech_index`]), bit 3 authzid, bit 4 send the initial response first, bit 5 end with a success report carrying
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
    let Ok(mut session) =
        client_session(mech, creds, "rOprNGfwEbeRWgbNEkqO", Variant::of(selector))
    else {
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
/// client and our server. Selector: mechanism (bits 0–2 and 6–7, see [`mech_index`]), bit 3
/// call `start` first, bit 4 the known user's password comes from the last message
/// (otherwise [`PASSWORD`]).
pub fn sasl_server(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mech = mechanism(selector);
    let msgs = messages(rest);
    let lookup = |u: &str| (u == "user").then(|| Secret::new(String::from(PASSWORD)));
    let iterations = NonZeroU32::MIN;
    let Ok(server) = server_session(mech, "user") else {
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
    roundtrip(mech, Variant::of(selector), &msgs, selector & 16 != 0);
}

/// Our client and our server agree: for any credentials the client accepts, the exchange
/// succeeds with the same identities (and SCRAM verifies the server).
fn roundtrip(mech: Mechanism, variant: Variant, msgs: &[&[u8]], password_from_input: bool) {
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
    // `y` from a non-PLUS SCRAM client is a downgrade only for a server that binds; ours
    // binds only for -PLUS, so the round trip must succeed either way.
    let Ok(mut client) = client_session(mech, creds, "fyko+d2lbbFgONRv9qkxdawL", variant) else {
        return;
    };
    let Ok(server) = server_session(mech, &user) else {
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

// ---------------------------------------------------------------------------------------
// pop3_response: [warn] [line] [response] [multiline bits] server bytes…
// ---------------------------------------------------------------------------------------

/// The POP3 response decoder over the input as a stream of responses, with the default
/// limits and with small ones from the first three bytes; the fourth byte's bits say, in
/// turn, whether each response is multi-line. Never panics; `Complete` has
/// `0 < consumed <= len`, deviations inside the response, a body exactly for a multi-line
/// `+OK`; decoding the consumed prefix alone, or the input fed as a growing buffer in pieces,
/// gives the same result.
pub fn pop3_response(data: &[u8]) {
    use mailscope_proto::pop3::response::{
        Decoded as PopDecoded, Deviation, ResponseDecoder, ResponseLimits, Status, apop_timestamp,
        parse_capa, parse_listing, parse_stat,
    };
    if data.len() < 4 {
        return;
    }
    let (head, stream) = data.split_at(4);
    let small = ResponseLimits {
        status_line_warn: 1 + usize::from(head[0] % 64),
        max_line: 1 + usize::from(head[1] % 96),
        max_response: 1 + 8 * usize::from(head[2]),
    };
    let chunk = 1 + usize::from(head[2] % 7);
    for limits in [ResponseLimits::default(), small] {
        let mut rest = stream;
        let mut i = 0u32;
        while !rest.is_empty() {
            let multiline = head[3].rotate_right(i % 8) & 1 != 0;
            i += 1;
            let whole = ResponseDecoder::new(limits).decode(rest, multiline);
            // The same buffer, growing: the decoder remembers how far it got.
            let mut dec = ResponseDecoder::new(limits);
            let mut grown = dec.decode(&[], multiline);
            assert_eq!(grown, PopDecoded::Incomplete, "an empty buffer decoded");
            let mut end = 0;
            while end < rest.len() && grown == PopDecoded::Incomplete {
                end = (end + chunk).min(rest.len());
                grown = dec.decode(&rest[..end], multiline);
            }
            assert_eq!(
                grown, whole,
                "growing-buffer decoding differs (pieces of {chunk})"
            );
            let PopDecoded::Complete { value, consumed } = whole else {
                break;
            };
            assert!(
                consumed > 0 && consumed <= rest.len(),
                "consumed {consumed}"
            );
            assert_eq!(rest[consumed - 1], b'\n', "a response ends with LF");
            for (o, d) in &value.deviations {
                assert!(*o < consumed, "deviation {d:?} at {o} past {consumed}");
            }
            assert_eq!(
                value.status.is_none(),
                value
                    .deviations
                    .iter()
                    .any(|(_, d)| *d == Deviation::BadStatus),
                "status missing iff BadStatus"
            );
            assert_eq!(
                value.body.is_some(),
                multiline && value.status == Some(Status::Ok),
                "a body exactly for a multi-line +OK"
            );
            if let Some(code) = &value.code {
                assert!(value.text.starts_with(b"["), "a code without [");
                assert!(!code.code.is_empty());
                let _ = code.meaning();
            }
            let again = ResponseDecoder::new(limits).decode(&rest[..consumed], multiline);
            assert_eq!(
                again,
                PopDecoded::Complete {
                    value: value.clone(),
                    consumed
                },
                "decoding the consumed prefix alone differs"
            );
            let _ = (apop_timestamp(&value.text), parse_stat(&value.text));
            if let Some(body) = &value.body {
                let _ = (parse_listing(body), parse_capa(body));
            }
            rest = &rest[consumed..];
        }
    }
}

// ---------------------------------------------------------------------------------------
// pop3_client / imap_client: shared driver.
// ---------------------------------------------------------------------------------------

/// What the client drivers need from a client machine.
trait ClientMachine {
    type Ev: std::fmt::Debug + Clone + PartialEq;
    fn start(&mut self, now: Timestamp);
    fn input(&mut self, now: Timestamp, bytes: &[u8]);
    fn eof(&mut self, now: Timestamp);
    fn timeout(&mut self, now: Timestamp);
    fn deadline(&self) -> Option<Timestamp>;
    fn transmit(&mut self, out: &mut Vec<u8>) -> bool;
    fn event(&mut self) -> Option<Self::Ev>;
    fn finished(&self) -> bool;
    fn tls_established(&mut self, now: Timestamp);
    fn tls_failed(&mut self, now: Timestamp);
    fn transcript(&self) -> &mailscope_proto::Transcript;
    fn findings(&self) -> &[mailscope_proto::Finding];
    fn is_starttls(e: &Self::Ev) -> bool;
    fn is_finish(e: &Self::Ev) -> bool;
}

impl ClientMachine for mailscope_proto::pop3::client::Client {
    type Ev = mailscope_proto::pop3::client::Event;
    fn start(&mut self, now: Timestamp) {
        self.start(now);
    }
    fn input(&mut self, now: Timestamp, bytes: &[u8]) {
        self.handle_input(now, bytes);
    }
    fn eof(&mut self, now: Timestamp) {
        self.handle_eof(now);
    }
    fn timeout(&mut self, now: Timestamp) {
        self.handle_timeout(now);
    }
    fn deadline(&self) -> Option<Timestamp> {
        self.poll_timeout()
    }
    fn transmit(&mut self, out: &mut Vec<u8>) -> bool {
        self.poll_transmit(out)
    }
    fn event(&mut self) -> Option<Self::Ev> {
        self.poll_event()
    }
    fn finished(&self) -> bool {
        self.is_finished()
    }
    fn tls_established(&mut self, now: Timestamp) {
        self.handle_tls_established(now);
    }
    fn tls_failed(&mut self, now: Timestamp) {
        self.handle_tls_failed(now, "fuzz");
    }
    fn transcript(&self) -> &mailscope_proto::Transcript {
        self.transcript()
    }
    fn findings(&self) -> &[mailscope_proto::Finding] {
        self.findings()
    }
    fn is_starttls(e: &Self::Ev) -> bool {
        *e == Self::Ev::StartTlsRequested
    }
    fn is_finish(e: &Self::Ev) -> bool {
        matches!(e, Self::Ev::Finished(_))
    }
}

impl ClientMachine for mailscope_proto::imap::client::Client {
    type Ev = mailscope_proto::imap::client::Event;
    fn start(&mut self, now: Timestamp) {
        self.start(now);
    }
    fn input(&mut self, now: Timestamp, bytes: &[u8]) {
        self.handle_input(now, bytes);
    }
    fn eof(&mut self, now: Timestamp) {
        self.handle_eof(now);
    }
    fn timeout(&mut self, now: Timestamp) {
        self.handle_timeout(now);
    }
    fn deadline(&self) -> Option<Timestamp> {
        self.poll_timeout()
    }
    fn transmit(&mut self, out: &mut Vec<u8>) -> bool {
        self.poll_transmit(out)
    }
    fn event(&mut self) -> Option<Self::Ev> {
        self.poll_event()
    }
    fn finished(&self) -> bool {
        self.is_finished()
    }
    fn tls_established(&mut self, now: Timestamp) {
        self.handle_tls_established_with(now, channel_binding_data());
    }
    fn tls_failed(&mut self, now: Timestamp) {
        self.handle_tls_failed(now, "fuzz");
    }
    fn transcript(&self) -> &mailscope_proto::Transcript {
        self.transcript()
    }
    fn findings(&self) -> &[mailscope_proto::Finding] {
        self.findings()
    }
    fn is_starttls(e: &Self::Ev) -> bool {
        *e == Self::Ev::StartTlsRequested
    }
    fn is_finish(e: &Self::Ev) -> bool {
        matches!(e, Self::Ev::Finished(_))
    }
}

/// One drive of a client machine.
struct Driven<E> {
    sent: Vec<u8>,
    events: Vec<E>,
    starttls: bool,
}

/// How a client drive ends and answers STARTTLS.
#[derive(Clone, Copy)]
struct DriveEnd {
    tls_fails: bool,
    quiet_end: bool,
}

/// Feeds `stream` in pieces of `chunk` bytes, answers STARTTLS at once, ends with timeouts
/// (if `quiet_end`) and EOF; checks the invariants every client machine keeps: finished
/// exactly once, no deadline after the end, transcript = bytes that crossed, finding offsets
/// inside the streams, the password never in a rendering of what the client sent nor (unless
/// the server sent it) in an event.
fn drive_client<M: ClientMachine>(
    mut c: M,
    stream: &[u8],
    chunk: usize,
    end: DriveEnd,
) -> Driven<M::Ev> {
    let now = Timestamp(1_000_000);
    c.start(now);
    let mut d = Driven {
        sent: Vec::new(),
        events: Vec::new(),
        starttls: false,
    };
    let pump = |c: &mut M, d: &mut Driven<M::Ev>| {
        while c.transmit(&mut d.sent) {}
        while let Some(e) = c.event() {
            if M::is_starttls(&e) {
                d.starttls = true;
                if end.tls_fails {
                    c.tls_failed(now);
                } else {
                    c.tls_established(now);
                }
            }
            d.events.push(e);
        }
        while c.transmit(&mut d.sent) {}
    };
    pump(&mut c, &mut d);
    for piece in stream.chunks(chunk.max(1)) {
        c.input(now, piece);
        pump(&mut c, &mut d);
    }
    if end.quiet_end {
        // A few deadlines in a row (an IDLE, then the response timeout, …), bounded.
        for _ in 0..4 {
            let Some(deadline) = c.deadline() else { break };
            c.timeout(deadline);
            pump(&mut c, &mut d);
        }
    }
    c.eof(now);
    pump(&mut c, &mut d);
    assert!(c.finished(), "not finished after EOF");
    assert!(c.deadline().is_none(), "a deadline after the session ended");
    let finished = d.events.iter().filter(|e| M::is_finish(e)).count();
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
    if !mentions_password(stream) {
        for e in &d.events {
            let shown = format!("{e:?}");
            assert!(!shown.contains(PASSWORD), "password in an event: {shown}");
        }
    }
    d
}

/// Whole vs. chunked: unless a STARTTLS handshake happened (the read boundary is then part
/// of the protocol, see fuzz/README.md), the same bytes sent and the same events up to
/// `Finished`.
fn same_whole_and_chunked<E: std::fmt::Debug + Clone + PartialEq>(
    whole: &Driven<E>,
    split: &Driven<E>,
    is_finish: fn(&E) -> bool,
    chunk: usize,
) {
    if whole.starttls || split.starttls {
        return;
    }
    assert_eq!(
        whole.sent, split.sent,
        "bytes sent depend on how the input was cut (chunk {chunk})"
    );
    let until_finished = |events: &[E]| -> Vec<E> {
        let end = events
            .iter()
            .position(is_finish)
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
// pop3_client: [flags] [mode] [cut] server bytes…
// ---------------------------------------------------------------------------------------

/// POP3 client options from two bytes:
/// - `flags` bit 0 STLS, bit 1 implicit TLS, bit 2 plaintext passwords allowed, bit 3 tiny
///   limits, bits 4–7 login (mod 13): none, USER/PASS, APOP, AUTH with `Mechanism::ALL[n-3]`;
/// - `mode` bits 0–2 `--quit-after` (`Stage::ALL`, 5–7 none), bit 3 the TLS handshake
///   fails, bit 4 the session ends with timeouts before EOF, bit 5 loopback peer, bit 6 the
///   second set of actions.
fn pop3_options(flags: u8, mode: u8) -> mailscope_proto::pop3::client::ClientOptions {
    use mailscope_proto::pop3::client::{
        Action, ClientOptions, Login, MsgSet, Part, Stage as PopStage,
    };
    use mailscope_proto::pop3::response::ResponseLimits;
    let user = String::from("user");
    let password = Secret::new(String::from(PASSWORD));
    let login = match (flags >> 4) % 13 {
        0 => None,
        1 => Some(Login::UserPass { user, password }),
        2 => Some(Login::Apop { user, password }),
        n => Some(Login::Sasl {
            mechanism: Mechanism::ALL[usize::from(n - 3)],
            credentials: Credentials::new("user", PASSWORD),
            client_nonce: "rOprNGfwEbeRWgbNEkqO".into(),
        }),
    };
    let set = |s: &str| MsgSet::parse(s).expect("fixed message set");
    let actions = if mode & 64 == 0 {
        vec![
            Action::List,
            Action::Fetch(set("1,3:*"), Part::Full),
            Action::Top(2, 5),
            Action::Delete(set("1")),
        ]
    } else {
        vec![
            Action::Noop,
            Action::Fetch(set("*"), Part::Header),
            Action::Fetch(set("1:2"), Part::Body),
            Action::Rset,
        ]
    };
    let mut limits = ResponseLimits::default();
    if flags & 8 != 0 {
        limits = ResponseLimits {
            status_line_warn: 40,
            max_line: 64,
            max_response: 512,
        };
    }
    ClientOptions {
        implicit_tls: flags & 2 != 0,
        stls: flags & 1 != 0,
        login,
        allow_plaintext_auth: flags & 4 != 0,
        quit_after: PopStage::ALL.get(usize::from(mode & 7)).copied(),
        actions,
        limits,
        step_timeout_us: 30_000_000,
    }
}

/// The POP3 client machine against arbitrary server bytes, fed whole and in pieces of
/// `cut % 16 + 1`: never panics, keeps the client invariants ([`drive_client`]), and the
/// same bytes and events however the input is cut (without STARTTLS).
pub fn pop3_client(data: &[u8]) {
    use mailscope_proto::pop3::client::Client as PopClient;
    let [flags, mode, cut, ref stream @ ..] = *data else {
        return;
    };
    let opts = pop3_options(flags, mode);
    let chunk = usize::from(cut % 16) + 1;
    let end = DriveEnd {
        tls_fails: mode & 8 != 0,
        quiet_end: mode & 16 != 0,
    };
    let new = || {
        let mut c = PopClient::new(opts.clone());
        c.set_peer_is_loopback(mode & 32 != 0);
        c
    };
    let whole = drive_client(new(), stream, usize::MAX, end);
    let split = drive_client(new(), stream, chunk, end);
    same_whole_and_chunked(
        &whole,
        &split,
        <PopClient as ClientMachine>::is_finish,
        chunk,
    );
}

// ---------------------------------------------------------------------------------------
// imap_framing: [line] [literal] [response] server bytes…
// ---------------------------------------------------------------------------------------

/// The IMAP framer over the input as a stream of responses, with the default limits and
/// with small ones from the first three bytes: never panics; `Complete` has
/// `0 < consumed <= len`, ends with LF, literals in order inside the response and announced
/// by the line before them, bare LFs at LFs; framing the consumed prefix alone gives the same
/// frame, and every shorter prefix is `Incomplete`.
pub fn imap_framing(data: &[u8]) {
    use mailscope_proto::imap::framing::{
        FrameLimits, Framed, frame_response, literal_announcement,
    };
    if data.len() < 3 {
        return;
    }
    let (head, stream) = data.split_at(3);
    let small = FrameLimits {
        max_line: 1 + usize::from(head[0] % 96),
        max_literal: u64::from(head[1]),
        max_response: 1 + 4 * u64::from(head[2]),
    };
    for line in stream.split(|&b| b == b'\n') {
        if let Some(n) = literal_announcement(line.strip_suffix(b"\r").unwrap_or(line)) {
            assert!(
                line.contains(&b'{') && n < 10u64.pow(19),
                "announcement {n}"
            );
        }
    }
    for limits in [FrameLimits::default(), small] {
        let mut rest = stream;
        while !rest.is_empty() {
            let Framed::Complete(frame) = frame_response(rest, limits) else {
                break;
            };
            let consumed = frame.consumed;
            assert!(
                consumed > 0 && consumed <= rest.len(),
                "consumed {consumed}"
            );
            assert_eq!(rest[consumed - 1], b'\n', "a response ends with LF");
            let mut after = 0;
            for &(start, len) in &frame.literals {
                assert!(start >= after, "literals overlap or go backwards");
                assert!(start + len < consumed, "literal past the response");
                assert_eq!(rest[start - 1], b'\n', "a literal starts after a line end");
                let line_start = rest[..start - 1]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
                    .max(after);
                let line = &rest[line_start..start - 1];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert_eq!(
                    literal_announcement(line),
                    Some(len as u64),
                    "literal not announced by its line"
                );
                after = start + len;
            }
            for &i in &frame.suspicious_literals {
                assert!(i < frame.literals.len(), "suspicious literal index");
            }
            for &o in &frame.bare_lf {
                assert!(o < consumed && rest[o] == b'\n', "bare LF at {o}");
                // A CR just before the LF may be the literal's last octet, not part of a CRLF.
                assert!(
                    o == 0
                        || rest[o - 1] != b'\r'
                        || frame.literals.iter().any(|&(s, n)| s + n == o),
                    "CRLF reported bare at {o}"
                );
            }
            assert_eq!(
                frame_response(&rest[..consumed], limits),
                Framed::Complete(frame.clone()),
                "framing the consumed prefix alone differs"
            );
            for cut in [consumed - 1, consumed / 2] {
                assert_eq!(
                    frame_response(&rest[..cut], limits),
                    Framed::Incomplete,
                    "a prefix of {cut} of a {consumed}-octet response is not Incomplete"
                );
            }
            rest = &rest[consumed..];
        }
    }
}

// ---------------------------------------------------------------------------------------
// imap_client: [flags] [mode] [cut] server bytes…
// ---------------------------------------------------------------------------------------

/// IMAP client options from two bytes:
/// - `flags` bit 0 STARTTLS, bit 1 implicit TLS, bit 2 plaintext login allowed, bit 3 tiny
///   limits, bits 4–7 login (mod 12): none, AUTH auto, `Mechanism::ALL[n-2]`;
/// - `mode` bits 0–2 `--quit-after` (`Stage::ALL`, 6–7 none), bit 3 the TLS handshake
///   fails, bit 4 the session ends with timeouts before EOF, bit 5 the mailbox actions (ID,
///   NAMESPACE, LIST, STATUS, SEARCH, FETCH, APPEND, IDLE; otherwise none), bit 6 EXAMINE
///   and UID FETCH of the header (otherwise SELECT and FETCH of the whole message), bit 7
///   loopback peer.
fn imap_options(flags: u8, mode: u8) -> mailscope_proto::imap::client::ClientOptions {
    use mailscope_proto::imap::client::{
        AuthOptions as ImapAuth, ClientOptions, Part, Stage as ImapStage,
    };
    use mailscope_proto::imap::framing::FrameLimits;
    let auth = match (flags >> 4) % 12 {
        0 => None,
        n => Some(ImapAuth {
            mechanism: (n >= 2).then(|| Mechanism::ALL[usize::from(n - 2)]),
            credentials: Credentials::new("user", PASSWORD),
            client_nonce: "rOprNGfwEbeRWgbNEkqO".into(),
        }),
    };
    let actions = mode & 32 != 0 && auth.is_some();
    let mut limits = FrameLimits::default();
    if flags & 8 != 0 {
        limits = FrameLimits {
            max_line: 64,
            max_literal: 100,
            max_response: 300,
        };
    }
    ClientOptions {
        implicit_tls: flags & 2 != 0,
        starttls: flags & 1 != 0,
        auth,
        allow_plaintext_auth: flags & 4 != 0,
        quit_after: ImapStage::ALL.get(usize::from(mode & 7)).copied(),
        id: actions,
        namespace: actions,
        list: actions,
        mailbox: "INBOX".into(),
        examine: mode & 64 != 0,
        select: mode & 64 == 0,
        status: actions,
        search: actions,
        fetch: actions.then(|| String::from("1:*")),
        uid: mode & 64 != 0,
        part: if mode & 64 != 0 {
            Part::Header
        } else {
            Part::Full
        },
        append: actions.then(|| b"Subject: fuzz\r\n\r\nbody\r\n".to_vec()),
        idle_us: actions.then_some(1_000_000),
        limits,
        step_timeout_us: 30_000_000,
    }
}

/// The IMAP client machine against arbitrary server bytes, fed whole and in pieces of
/// `cut % 16 + 1`: never panics, keeps the client invariants ([`drive_client`]), and the
/// same bytes and events however the input is cut (without STARTTLS).
pub fn imap_client(data: &[u8]) {
    use mailscope_proto::imap::client::Client as ImapClient;
    let [flags, mode, cut, ref stream @ ..] = *data else {
        return;
    };
    let opts = imap_options(flags, mode);
    let chunk = usize::from(cut % 16) + 1;
    let end = DriveEnd {
        tls_fails: mode & 8 != 0,
        quiet_end: mode & 16 != 0,
    };
    let new = || {
        let mut c = ImapClient::new(opts.clone());
        c.set_peer_is_loopback(mode & 128 != 0);
        if flags & 2 != 0 {
            c.set_channel_binding_data(channel_binding_data());
        }
        c
    };
    let whole = drive_client(new(), stream, usize::MAX, end);
    let split = drive_client(new(), stream, chunk, end);
    same_whole_and_chunked(
        &whole,
        &split,
        <ImapClient as ClientMachine>::is_finish,
        chunk,
    );
}

// ---------------------------------------------------------------------------------------
// smtp_server: [flags] [mode] [cut] client bytes…
// ---------------------------------------------------------------------------------------

/// SMTP server options from two bytes:
/// - `flags` bit 0 LMTP, bit 1 implicit TLS, bit 2 AUTH over plaintext allowed, bit 3 AUTH
///   required, bit 4 confirm storage, bit 5 tiny limits, bits 6–7 bare-LF strictness (off,
///   qmail, Postfix, drop);
/// - `mode` bit 0 passwords looked up (user / [`PASSWORD`]; otherwise accept any), bit 1 a
///   greet pause, bit 2 the TLS handshake fails, bit 3 the TLS layer has no channel binding
///   data and no client certificate, bit 4 storage fails, bit 5 the session ends with
///   timeouts before EOF, bit 6 no PIPELINING/CHUNKING.
fn smtp_server_options(flags: u8, mode: u8) -> mailscope_proto::smtp::server::ServerOptions {
    use mailscope_proto::smtp::receiver::Strict;
    use mailscope_proto::smtp::server::{AuthCheck, ServerOptions};
    let mut o = ServerOptions::new("mx.example.test");
    o.lmtp = flags & 1 != 0;
    o.implicit_tls = flags & 2 != 0;
    o.extensions.starttls = true;
    o.extensions.auth = true;
    if mode & 64 != 0 {
        o.extensions.pipelining = false;
        o.extensions.chunking = false;
    }
    o.insecure_auth_plaintext = flags & 4 != 0;
    o.auth_required = flags & 8 != 0;
    o.confirm_storage = flags & 16 != 0;
    if flags & 32 != 0 {
        o.limits.request.max_line = 48;
        o.limits.request.max_auth_line = 96;
        o.limits.max_recipients = 2;
        o.limits.max_message_size = 64;
        o.limits.max_commands = 12;
        o.limits.max_errors = 3;
    }
    o.strict = match flags >> 6 {
        0 => Strict::Off,
        1 => Strict::Qmail,
        2 => Strict::Postfix,
        _ => Strict::Drop,
    };
    if mode & 1 != 0 {
        o.auth = AuthCheck::Lookup(std::sync::Arc::new(|u: &str| {
            (u == "user").then(|| Secret::new(String::from(PASSWORD)))
        }));
    }
    o.auth_nonce = "3rfcNHYJY1ZVvWVs7j".into();
    if mode & 2 != 0 {
        o.greet_pause_us = 2_000_000;
    }
    o
}

fn tls_facts(mode: u8) -> mailscope_proto::smtp::server::TlsFacts {
    use mailscope_proto::smtp::server::{ClientCertificate, TlsFacts};
    if mode & 8 != 0 {
        return TlsFacts::default();
    }
    TlsFacts {
        channel_binding: channel_binding_data(),
        client_certificate: Some(ClientCertificate {
            subject: "CN=user, O=Example".into(),
            identity: "user".into(),
        }),
    }
}

/// The SMTP server machine (STARTTLS and AUTH on, every mechanism) against arbitrary client
/// bytes fed in pieces of `cut % 16 + 1` (255: whole), STARTTLS answered at once, storage
/// confirmed at once: never panics; closed after EOF with exactly one `Closed`; the
/// transcript's client stream is exactly the input and its server stream exactly what was
/// transmitted; finding and event offsets inside the streams; no deadline after the close.
pub fn smtp_server(data: &[u8]) {
    use mailscope_proto::smtp::server::{Event as SEvent, Server};
    let [flags, mode, cut, ref stream @ ..] = *data else {
        return;
    };
    let opts = smtp_server_options(flags, mode);
    let chunk = if cut == 255 {
        usize::MAX
    } else {
        usize::from(cut % 16) + 1
    };
    let mut now = Timestamp(1_000_000);
    let mut s = Server::new(opts);
    if flags & 2 != 0 {
        s.set_tls_facts(tls_facts(mode));
    }
    s.start(now);
    let mut sent = Vec::new();
    let mut events = Vec::new();
    let pump = |s: &mut Server, sent: &mut Vec<u8>, events: &mut Vec<SEvent>, now: Timestamp| {
        loop {
            while s.poll_transmit(sent) {}
            let Some(e) = s.poll_event() else { break };
            match &e {
                SEvent::StartTlsRequested => {
                    if mode & 4 != 0 {
                        s.handle_tls_failed(now, "fuzz");
                    } else {
                        s.handle_tls_established_with(now, tls_facts(mode));
                    }
                }
                SEvent::MessageReceived(_) if s.confirms_storage() => {
                    let result = if mode & 16 != 0 {
                        Err(String::from("disk full"))
                    } else {
                        Ok(String::from("Q1"))
                    };
                    s.handle_message_stored(now, result);
                }
                _ => {}
            }
            events.push(e);
        }
    };
    pump(&mut s, &mut sent, &mut events, now);
    if mode & 2 != 0 && stream.first().is_some_and(|b| b & 1 != 0) {
        // Let the greet pause pass before the client talks (otherwise it pregreets).
        if let Some(d) = s.poll_timeout() {
            now = d;
            s.handle_timeout(now);
            pump(&mut s, &mut sent, &mut events, now);
        }
    }
    for piece in stream.chunks(chunk) {
        s.handle_input(now, piece);
        pump(&mut s, &mut sent, &mut events, now);
    }
    if mode & 32 != 0 {
        for _ in 0..4 {
            let Some(d) = s.poll_timeout() else { break };
            now = Timestamp(d.0.max(now.0));
            s.handle_timeout(now);
            pump(&mut s, &mut sent, &mut events, now);
        }
    }
    s.handle_eof(now);
    pump(&mut s, &mut sent, &mut events, now);
    assert!(s.is_closed(), "not closed after EOF");
    assert!(s.poll_timeout().is_none(), "a deadline after the close");
    let closed = events
        .iter()
        .filter(|e| matches!(e, SEvent::Closed(_)))
        .count();
    assert_eq!(closed, 1, "Closed must come exactly once");
    let t = s.transcript();
    // The transcript elides stored message content (`Transcript::stream` then lacks those
    // ranges), but its length counts every byte consumed.
    assert_eq!(
        t.len(Direction::ClientToServer),
        stream.len() as u64,
        "transcript length != input consumed"
    );
    let recorded = t.stream(Direction::ClientToServer);
    assert!(
        recorded.len() < stream.len() || recorded == stream,
        "transcript != client bytes; recorded: {}",
        mailscope_proto::escape::escape(&recorded)
    );
    assert_eq!(t.len(Direction::ServerToClient), sent.len() as u64);
    assert_eq!(
        t.stream(Direction::ServerToClient),
        sent,
        "transcript != bytes sent"
    );
    for f in s.findings() {
        if let (Some(dir), Some(o)) = (f.direction, f.offset) {
            assert!(
                o <= t.len(dir),
                "finding {} at {o} past the stream",
                f.kind.id
            );
        }
    }
    for e in &events {
        match e {
            SEvent::CommandReceived { offset, .. } => {
                assert!(
                    *offset < stream.len() as u64,
                    "command offset {offset} past the input"
                );
            }
            SEvent::ReplySent { offset, .. } => {
                assert!(
                    *offset < sent.len() as u64,
                    "reply offset {offset} past the output"
                );
            }
            _ => {}
        }
    }
}
