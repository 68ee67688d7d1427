//! Known-answer tests from the RFCs, in-memory round trips, failure cases, and a proptest
//! that no input makes either side panic.

#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use proptest::prelude::*;

use super::server::OAUTH_ERROR_CHALLENGE;
use super::*;
use crate::transcript::Direction;

fn users(authcid: &str) -> Option<Secret<String>> {
    match authcid {
        "user" => Some(Secret::new("pencil".into())),
        "tim" => Some(Secret::new("tanstaaftanstaaf".into())),
        "test" => Some(Secret::new("testpass".into())),
        "a,b=c" => Some(Secret::new("pässwörd".into())),
        _ => None,
    }
}

fn text(m: &ClientMessage) -> &str {
    std::str::from_utf8(m.bytes.expose()).unwrap()
}

fn client(mech: Mechanism, user: &str, password: &str, nonce: &str) -> ClientSession {
    ClientSession::new(mech, Credentials::new(user, password), nonce).unwrap()
}

fn success(authcid: &str) -> ServerStep {
    ServerStep::Success {
        authzid: None,
        authcid: authcid.into(),
        additional_data: None,
    }
}

#[test]
fn mechanism_names_and_preference() {
    assert_eq!(
        Mechanism::from_name("scram-sha-256"),
        Some(Mechanism::ScramSha256)
    );
    assert_eq!(Mechanism::from_name("Cram-Md5"), Some(Mechanism::CramMd5));
    assert_eq!(Mechanism::from_name("GSSAPI"), None);
    for &m in Mechanism::PREFERENCE {
        assert_eq!(Mechanism::from_name(m.name()), Some(m));
    }
    assert_eq!(
        Mechanism::best_of(["LOGIN", "PLAIN", "cram-md5", "XOAUTH2"]),
        Some(Mechanism::CramMd5)
    );
    assert_eq!(
        Mechanism::best_of(["LOGIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]),
        Some(Mechanism::ScramSha256)
    );
    assert_eq!(Mechanism::best_of(["GSSAPI"]), None);
    assert!(
        Mechanism::Login.sends_password_in_clear() && !Mechanism::CramMd5.sends_password_in_clear()
    );
    assert!(Mechanism::Plain.client_first() && !Mechanism::Login.client_first());
    for &m in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(m.name()), Some(m));
    }
    assert_eq!(
        Mechanism::from_name("scram-sha-256-plus"),
        Some(Mechanism::ScramSha256Plus)
    );
    // -PLUS only with channel binding; the OAuth mechanisms and EXTERNAL never by themselves.
    let offered = [
        "PLAIN",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256",
        "SCRAM-SHA-256-PLUS",
        "XOAUTH2",
        "OAUTHBEARER",
        "EXTERNAL",
    ];
    assert_eq!(Mechanism::best_of(offered), Some(Mechanism::ScramSha256));
    assert_eq!(
        Mechanism::best_of_with(offered, true),
        Some(Mechanism::ScramSha256Plus)
    );
    assert_eq!(
        Mechanism::best_of_with(["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256"], true),
        Some(Mechanism::ScramSha1Plus)
    );
    assert_eq!(
        Mechanism::best_of_with(["XOAUTH2", "OAUTHBEARER", "EXTERNAL"], true),
        None
    );
    assert!(Mechanism::XOauth2.sends_password_in_clear());
    assert!(!Mechanism::External.sends_password_in_clear());
    assert_eq!(Mechanism::ScramSha1.plus(), Some(Mechanism::ScramSha1Plus));
    assert_eq!(
        Mechanism::ScramSha256Plus.without_plus(),
        Mechanism::ScramSha256
    );
    assert_eq!(
        ChannelBindingType::from_name("TLS-Exporter"),
        Some(ChannelBindingType::TlsExporter)
    );
}

/// Channel binding data both sides of an in-memory test share: exporter bytes 0x00..0x1f and
/// the SHA-256 of "not a certificate" standing in for the certificate hash.
fn fixed_binding() -> ChannelBindingData {
    ChannelBindingData {
        tls_exporter: Some((0..32).collect()),
        tls_server_end_point: Some(
            (0..32)
                .map(|i| {
                    u8::from_str_radix(
                        &"47209c9b7af839de69e9a9cd625e9182c1ad63dae79ed88a2dd680fe34218620"
                            [i * 2..i * 2 + 2],
                        16,
                    )
                    .unwrap()
                })
                .collect(),
        ),
        tls13: true,
    }
}

#[test]
fn channel_binding_data_defaults() {
    let mut d = fixed_binding();
    assert_eq!(d.default_type(), Some(ChannelBindingType::TlsExporter));
    d.tls13 = false;
    assert_eq!(
        d.default_type(),
        Some(ChannelBindingType::TlsServerEndPoint)
    );
    d.tls_server_end_point = None;
    assert_eq!(d.default_type(), Some(ChannelBindingType::TlsExporter));
    assert_eq!(d.binding(Some(ChannelBindingType::TlsServerEndPoint)), None);
    let b = d.binding(None).unwrap();
    assert_eq!(b.gs2_flag(), "p=tls-exporter");
    assert_eq!(b.data().len(), 32);
    assert!(ChannelBindingData::default().is_empty());
    assert_eq!(ChannelBindingData::default().binding(None), None);
}

#[test]
fn plain_seed_vectors() {
    for (user, password, expected) in [
        ("test", "testpass", "dGVzdAB0ZXN0AHRlc3RwYXNz"),
        (
            "username",
            "password",
            "dXNlcm5hbWUAdXNlcm5hbWUAcGFzc3dvcmQ=",
        ),
    ] {
        let creds = Credentials::new(user, password).with_authzid(user);
        let mut c = ClientSession::new(Mechanism::Plain, creds, "").unwrap();
        let m = c.initial_response().unwrap();
        assert_eq!(B64.encode(m.bytes.expose()), expected);
        assert_eq!(
            m.redacted,
            format!(
                "authzid=\"{user}\", authcid=\"{user}\", {}-byte password",
                password.len()
            )
        );
        assert!(c.is_complete() && c.initial_response().is_none());
        assert_eq!(c.handle_success_data(b""), Ok(()));
    }
    let mut c = client(Mechanism::Plain, "alice", "hunter22", "");
    let m = c.initial_response().unwrap();
    assert_eq!(m.bytes.expose(), b"\0alice\0hunter22");
    assert_eq!(m.redacted, "authcid=\"alice\", 8-byte password");
}

#[test]
fn cram_md5_rfc2195() {
    let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
    let mut c = client(Mechanism::CramMd5, "tim", "tanstaaftanstaaf", "");
    assert!(c.initial_response().is_none());
    let m = c.step(challenge).unwrap();
    assert_eq!(text(&m), "tim b913a602c7eda7a495b4e6e7334d3890");
    assert_eq!(m.redacted, "user \"tim\", HMAC-MD5 digest");
    assert!(c.is_complete());

    let mut s = ServerSession::new(
        Mechanism::CramMd5,
        "1896.697170952",
        "postoffice.reston.mci.net",
    )
    .unwrap();
    assert_eq!(s.start(), ServerStep::Challenge(challenge.to_vec()));
    assert_eq!(s.step(m.bytes.expose(), &users), success("tim"));
}

#[test]
fn cram_md5_seed_vectors() {
    for (challenge, response) in [
        (
            "PDMzMjE2NDkzMTA1OTExNDQuMTQxNDc5NTExOUBtYWlsLnNlcnZlci5uZXQ+",
            "dGVzdCAxNTU0YTQwNzA1NTgxZjUwZmI1MmNjZDhlZDhjM2EyYg==",
        ),
        (
            "PDgxOTAyMjA2NTYwNzcyMzEuMTQxNDc5NzA3MkBtYWlsLnNlcnZlci5uZXQ+",
            "dGVzdCA1YTZlNjYwMDlmZGJlZWNjYWRlNDY5M2FlMjU5YTA2ZQ==",
        ),
    ] {
        let challenge = B64.decode(challenge).unwrap();
        let mut c = client(Mechanism::CramMd5, "test", "testpass", "");
        assert_eq!(
            B64.encode(c.step(&challenge).unwrap().bytes.expose()),
            response
        );

        // The server builds the same challenge from its parts and accepts the response.
        let inner = std::str::from_utf8(&challenge[1..challenge.len() - 1]).unwrap();
        let (nonce, host) = inner.split_once('@').unwrap();
        let mut s = ServerSession::new(Mechanism::CramMd5, nonce, host).unwrap();
        assert_eq!(s.start(), ServerStep::Challenge(challenge));
        assert_eq!(
            s.step(&B64.decode(response).unwrap(), &users),
            success("test")
        );
    }
}

/// Runs the RFC example on both sides and checks every message.
fn scram_known_answer(
    mech: Mechanism,
    client_nonce: &str,
    server_nonce: &str,
    salt: &str,
    server_first: &str,
    client_final: &str,
    server_final: &str,
) {
    let mut c = client(mech, "user", "pencil", client_nonce);
    let first = c.initial_response().unwrap();
    assert_eq!(text(&first), format!("n,,n=user,r={client_nonce}"));
    assert_eq!(first.redacted, text(&first));

    let mut s = ServerSession::new(mech, server_nonce, "mx.example")
        .unwrap()
        .with_scram_salt(B64.decode(salt).unwrap(), NonZeroU32::new(4096).unwrap());
    assert_eq!(
        s.step(first.bytes.expose(), &users),
        ServerStep::Challenge(server_first.into())
    );

    let last = c.step(server_first.as_bytes()).unwrap();
    assert_eq!(text(&last), client_final);
    let (without_proof, _) = client_final.rsplit_once(',').unwrap();
    assert_eq!(last.redacted, format!("{without_proof},p=<proof>"));
    assert_eq!(c.scram_iterations(), Some(4096));
    assert!(!c.is_complete() && c.server_verified().is_none());

    assert_eq!(
        s.step(client_final.as_bytes(), &users),
        ServerStep::Success {
            authzid: None,
            authcid: "user".into(),
            additional_data: Some(server_final.into())
        }
    );
    c.handle_success_data(server_final.as_bytes()).unwrap();
    assert!(c.is_complete());
    assert_eq!(c.server_verified(), Some(true));
}

#[test]
fn scram_sha1_rfc5802() {
    scram_known_answer(
        Mechanism::ScramSha1,
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "QSXCR+Q6sek8bf92",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    );
}

#[test]
fn scram_sha256_rfc7677() {
    scram_known_answer(
        Mechanism::ScramSha256,
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
}

/// Drives both sides in memory the way SMTP does: initial response if the mechanism has
/// one, else `start`; SCRAM server-final goes through `handle_success_data`. Returns the
/// server's last step, or the client's error.
fn exchange(mech: Mechanism, creds: Credentials) -> Result<ServerStep, SaslError> {
    let binding = if mech.is_scram_plus() {
        fixed_binding().binding(None).unwrap()
    } else {
        ChannelBinding::None
    };
    let mut c = ClientSession::new_with_channel_binding(mech, creds, "cNonce/+=~", binding)?;
    let mut s = ServerSession::new(mech, "sNonce", "mx.example")?
        .with_scram_salt(*b"salt", NonZeroU32::MIN);
    if mech.is_scram_plus() {
        s = s.with_channel_binding(fixed_binding());
    }
    let mut step = match c.initial_response() {
        Some(m) => s.step(m.bytes.expose(), &users),
        None => s.start(),
    };
    loop {
        step = match step {
            ServerStep::Challenge(challenge) => s.step(c.step(&challenge)?.bytes.expose(), &users),
            ServerStep::Success {
                ref additional_data,
                ..
            } => {
                c.handle_success_data(additional_data.as_deref().unwrap_or_default())?;
                assert!(c.is_complete());
                assert_eq!(c.server_verified(), mech.is_scram().then_some(true));
                return Ok(step);
            }
            ServerStep::Failure(_) => return Ok(step),
        }
    }
}

#[test]
fn round_trips() {
    for &mech in Mechanism::PREFERENCE {
        let step = exchange(mech, Credentials::new("test", "testpass")).unwrap();
        let ServerStep::Success {
            authcid,
            authzid: None,
            additional_data,
        } = step
        else {
            panic!("{mech}: {step:?}")
        };
        assert_eq!(
            (authcid.as_str(), additional_data.is_some()),
            ("test", mech.is_scram())
        );

        let step = exchange(mech, Credentials::new("test", "wrong")).unwrap();
        assert_eq!(
            step,
            ServerStep::Failure(SaslFailure::WrongPassword("test".into())),
            "{mech}"
        );
        let step = exchange(mech, Credentials::new("nobody", "x")).unwrap();
        assert_eq!(
            step,
            ServerStep::Failure(SaslFailure::UnknownUser("nobody".into())),
            "{mech}"
        );
    }
    // authzid and saslname escaping, non-ASCII password.
    for mech in [
        Mechanism::Plain,
        Mechanism::ScramSha1,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256Plus,
    ] {
        let step = exchange(
            mech,
            Credentials::new("a,b=c", "pässwörd").with_authzid("x=y,z"),
        )
        .unwrap();
        let ServerStep::Success {
            authcid, authzid, ..
        } = step
        else {
            panic!("{mech}: {step:?}")
        };
        assert_eq!(
            (authcid.as_str(), authzid.as_deref()),
            ("a,b=c", Some("x=y,z"))
        );
    }
}

#[test]
fn scram_server_final_as_challenge() {
    let mut c = client(Mechanism::ScramSha256, "user", "pencil", "abc");
    let mut s = ServerSession::new(Mechanism::ScramSha256, "def", "mx").unwrap();
    // No initial response: the server's empty challenge asks for client-first.
    assert_eq!(s.start(), ServerStep::Challenge(Vec::new()));
    let first = c.step(b"").unwrap();
    let ServerStep::Challenge(server_first) = s.step(first.bytes.expose(), &users) else {
        panic!()
    };
    let last = c.step(&server_first).unwrap();
    let ServerStep::Success {
        additional_data: Some(v),
        ..
    } = s.step(last.bytes.expose(), &users)
    else {
        panic!()
    };
    let ack = c.step(&v).unwrap();
    assert!(ack.bytes.expose().is_empty() && c.is_complete());
    assert_eq!(c.handle_success_data(b""), Ok(()));
    assert_eq!(c.server_verified(), Some(true));
}

/// A client that has sent client-final for the RFC 5802 example.
fn scram_client_after_final() -> ClientSession {
    let mut c = client(
        Mechanism::ScramSha1,
        "user",
        "pencil",
        "fyko+d2lbbFgONRv9qkxdawL",
    );
    c.initial_response().unwrap();
    c.step(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
        .unwrap();
    c
}

#[test]
fn scram_client_rejects_bad_server_final() {
    let mut c = scram_client_after_final();
    assert_eq!(
        c.handle_success_data(b"v=rmF9pqV8S7suAoZWja4dJRkFsKA="),
        Err(SaslError::ServerSignatureMismatch)
    );
    assert_eq!((c.server_verified(), c.is_complete()), (Some(false), false));
    assert_eq!(c.handle_success_data(b""), Err(SaslError::Failed));

    let mut c = scram_client_after_final();
    assert_eq!(
        c.handle_success_data(b""),
        Err(SaslError::MissingServerSignature)
    );
    assert_eq!(c.server_verified(), Some(false));

    let mut c = scram_client_after_final();
    assert_eq!(
        c.step(b"e=invalid-proof"),
        Err(SaslError::ServerError("invalid-proof".into()))
    );

    let mut c = scram_client_after_final();
    assert!(matches!(
        c.handle_success_data(b"x=1"),
        Err(SaslError::Malformed(_))
    ));

    let mut c = client(Mechanism::ScramSha1, "user", "pencil", "abc");
    c.initial_response().unwrap();
    assert_eq!(c.handle_success_data(b""), Err(SaslError::PrematureSuccess));
    assert_eq!(c.server_verified(), Some(false));
}

#[test]
fn scram_client_rejects_bad_server_first() {
    let run = |server_first: &str| {
        let mut c = client(Mechanism::ScramSha256, "user", "pencil", "abc");
        c.initial_response().unwrap();
        c.step(server_first.as_bytes()).map(|_| ())
    };
    assert_eq!(run("r=abcdef,s=c2FsdA==,i=1"), Ok(()));
    assert_eq!(run("r=abcdef,s=c2FsdA==,i=1,x=ext"), Ok(()));
    assert_eq!(
        run("r=xbcdef,s=c2FsdA==,i=1"),
        Err(SaslError::NonceMismatch)
    );
    assert_eq!(run("r=abc,s=c2FsdA==,i=1"), Err(SaslError::NonceMismatch));
    assert_eq!(
        run("r=abcdef,s=c2FsdA==,i=1000001"),
        Err(SaslError::IterationCount(1_000_001))
    );
    for bad in [
        "r=abcdef,s=c2FsdA==,i=0",
        "r=abcdef,s=c2FsdA==,i=4294967296",
        "r=abcdef,s=c2FsdA=,i=1",
        "r=abcdef,i=1",
        "m=x,r=abcdef,s=c2FsdA==,i=1",
        "r=abcdef,s=c2FsdA==",
        "",
        "garbage",
    ] {
        assert!(
            matches!(run(bad), Err(SaslError::Malformed(_))),
            "{bad:?}: {:?}",
            run(bad)
        );
    }
    assert!(matches!(
        run("r=abcdef\u{0},s=c2FsdA==,i=1"),
        Err(SaslError::NonceMismatch)
    ));
    let mut c = client(Mechanism::ScramSha256, "user", "pencil", "abc");
    c.initial_response().unwrap();
    assert!(matches!(
        c.step(b"r=abc\xff,s=,i=1"),
        Err(SaslError::Malformed(_))
    ));
}

#[test]
fn client_rejects_bad_parameters_and_sequence() {
    let new = |mech, creds, nonce| ClientSession::new(mech, creds, nonce).err();
    let creds = || Credentials::new("u", "p");
    assert!(matches!(
        new(Mechanism::ScramSha1, creds(), "a,b"),
        Some(SaslError::InvalidParameter(_))
    ));
    assert!(matches!(
        new(Mechanism::ScramSha1, creds(), ""),
        Some(SaslError::InvalidParameter(_))
    ));
    assert!(matches!(
        new(Mechanism::ScramSha1, creds(), "a b"),
        Some(SaslError::InvalidParameter(_))
    ));
    assert_eq!(new(Mechanism::Plain, creds(), ""), None);
    assert!(new(Mechanism::Plain, Credentials::new("u", "p\0q"), "").is_some());
    assert!(new(Mechanism::Login, creds().with_authzid("z"), "").is_some());
    assert!(new(Mechanism::Plain, Credentials::new("", "p"), "").is_some());
    assert!(
        new(
            Mechanism::Plain,
            Credentials::new("u".repeat(1025), "p"),
            ""
        )
        .is_some()
    );

    let mut c = client(Mechanism::Plain, "u", "p", "");
    assert!(matches!(
        c.step(b"hello"),
        Err(SaslError::UnexpectedChallenge(_))
    ));
    assert_eq!(c.step(b""), Err(SaslError::Failed));

    let mut c = client(Mechanism::Plain, "u", "p", "");
    assert_eq!(c.step(b"").unwrap().bytes.expose(), b"\0u\0p");
    assert!(matches!(
        c.step(b""),
        Err(SaslError::UnexpectedChallenge(_))
    ));

    let mut c = client(Mechanism::Plain, "u", "p", "");
    c.initial_response().unwrap();
    assert_eq!(
        c.handle_success_data(b"data"),
        Err(SaslError::UnexpectedSuccessData(Mechanism::Plain))
    );

    let mut c = client(Mechanism::CramMd5, "u", "p", "");
    assert!(matches!(c.step(b""), Err(SaslError::Malformed(_))));
    let mut c = client(Mechanism::CramMd5, "u", "p", "");
    assert_eq!(
        c.step(&[b'x'; MAX_MESSAGE_LEN + 1]),
        Err(SaslError::TooLarge(MAX_MESSAGE_LEN + 1))
    );
}

#[test]
fn login_prompts() {
    let mut c = client(Mechanism::Login, "alice", "hunter22", "");
    assert!(c.initial_response().is_none());
    let m = c.step(b"Username:").unwrap();
    assert_eq!(
        (m.bytes.expose().as_slice(), m.redacted.as_str()),
        (&b"alice"[..], "username \"alice\"")
    );
    assert_eq!(c.handle_success_data(b""), Err(SaslError::PrematureSuccess));

    let mut c = client(Mechanism::Login, "alice", "hunter22", "");
    c.step(b"Username:").unwrap();
    let m = c.step(b"Password:").unwrap();
    assert_eq!(
        (m.bytes.expose().as_slice(), m.redacted.as_str()),
        (&b"hunter22"[..], "8-byte password")
    );
    assert_eq!(c.unexpected_login_prompt(), None);
    assert!(c.is_complete());

    // Answered by position whatever the text; the odd prompt is recorded.
    let mut c = client(Mechanism::Login, "alice", "hunter22", "");
    assert_eq!(c.step(b"User Name\0").unwrap().bytes.expose(), b"alice");
    assert_eq!(c.step(b"\xff\xfe").unwrap().bytes.expose(), b"hunter22");
    assert_eq!(c.unexpected_login_prompt(), Some(&b"User Name\0"[..]));
    assert_eq!(c.login_prompts().len(), 2);
    assert!(matches!(
        c.step(b"Password:"),
        Err(SaslError::UnexpectedChallenge(_))
    ));
}

#[test]
fn server_login_and_initial_username() {
    let mut s = ServerSession::new(Mechanism::Login, "n", "h").unwrap();
    assert_eq!(s.start(), ServerStep::Challenge(b"Username:".to_vec()));
    assert_eq!(
        s.step(b"test", &users),
        ServerStep::Challenge(b"Password:".to_vec())
    );
    assert_eq!(s.step(b"testpass", &users), success("test"));
    assert_eq!(
        s.step(b"again", &users),
        ServerStep::Failure(SaslFailure::OutOfSequence("the exchange is over"))
    );

    // Username sent as an initial response (AUTH LOGIN dGVzdA==).
    let mut s = ServerSession::new(Mechanism::Login, "n", "h").unwrap();
    assert_eq!(
        s.step(b"test", &users),
        ServerStep::Challenge(b"Password:".to_vec())
    );
}

fn server_failure(mech: Mechanism, messages: &[&[u8]]) -> SaslFailure {
    let mut s = ServerSession::new(mech, "srv", "mx.example").unwrap();
    if !mech.client_first() {
        s.start();
    }
    let mut last = None;
    for m in messages {
        last = Some(s.step(m, &users));
    }
    match last {
        Some(ServerStep::Failure(f)) => f,
        other => panic!("{mech} {messages:?}: {other:?}"),
    }
}

#[test]
fn server_rejects_malformed_input() {
    use Mechanism::*;
    let malformed = |mech, messages: &[&[u8]]| {
        matches!(server_failure(mech, messages), SaslFailure::Malformed(_))
    };
    assert!(malformed(Plain, &[b"test\0testpass"]));
    assert!(malformed(Plain, &[b"\0test\0test\0pass"]));
    assert!(malformed(Plain, &[b"\0te\xffst\0testpass"]));
    assert!(malformed(Plain, &[b"\0test\0\xff"]));
    assert!(malformed(Plain, &[b"\0test\0"]));
    assert!(malformed(Plain, &[b"\0\0testpass"]));
    assert!(malformed(Plain, &[b""]));
    assert!(malformed(Login, &[b"\xc3\x28"]));
    assert!(malformed(Login, &[b"test", b"test\xff"]));
    assert!(malformed(Login, &[b""]));
    assert!(malformed(CramMd5, &[b"test"]));
    assert!(malformed(
        CramMd5,
        &[b"test 1554a40705581f50fb52ccd8ed8c3a2"]
    ));
    assert!(malformed(
        CramMd5,
        &[b"test 1554a40705581f50fb52ccd8ed8c3a2g"]
    ));
    assert!(malformed(
        CramMd5,
        &[b"test \xc3\xa91554a40705581f50fb52ccd8ed8c3a"]
    ));
    assert!(malformed(CramMd5, &[b" 1554a40705581f50fb52ccd8ed8c3a2b"]));
    for bad in [
        &b"x,,n=user,r=abc"[..],
        b"n,,n=user",
        b"n,,r=abc,n=user",
        b"n,,n=us=er,r=abc",
        b"n,,m=x,n=user,r=abc",
    ] {
        assert!(malformed(ScramSha256, &[bad]), "{bad:?}");
    }
    assert!(malformed(ScramSha256, &[b"n,,n=user,r=a\x7fb"]));
    assert!(matches!(
        server_failure(ScramSha256, &[b"p=tls-unique,,n=user,r=abc"]),
        SaslFailure::ChannelBinding(_)
    ));

    let too_big = vec![b'a'; MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        server_failure(Plain, &[&too_big]),
        SaslFailure::TooLarge { .. }
    ));
    let long_user = [b"\0".as_slice(), &[b'u'; MAX_NAME_LEN + 1], b"\0pass"].concat();
    assert!(matches!(
        server_failure(Plain, &[&long_user]),
        SaslFailure::TooLarge {
            what: "authcid",
            ..
        }
    ));
    let mut s = ServerSession::new(CramMd5, "n", "h").unwrap();
    assert!(matches!(
        s.step(b"test 00", &users),
        ServerStep::Failure(SaslFailure::OutOfSequence(_))
    ));
}

#[test]
fn server_checks_scram_client_final() {
    let mech = Mechanism::ScramSha1;
    let first: &[u8] = b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
    let fail = |last: &str| {
        let mut s = ServerSession::new(mech, "3rfcNHYJY1ZVvWVs7j", "h")
            .unwrap()
            .with_scram_salt(
                B64.decode("QSXCR+Q6sek8bf92").unwrap(),
                NonZeroU32::new(4096).unwrap(),
            );
        assert!(matches!(s.step(first, &users), ServerStep::Challenge(_)));
        match s.step(last.as_bytes(), &users) {
            ServerStep::Failure(f) => f,
            other => panic!("{last}: {other:?}"),
        }
    };
    let nonce = "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
    assert_eq!(
        fail(&format!("c=biws,r={nonce},p=v0X8v3Bz2T0CJGbJQyF0X+HI4TQ=")),
        SaslFailure::WrongPassword("user".into())
    );
    assert_eq!(
        fail("c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="),
        SaslFailure::NonceMismatch
    );
    assert!(matches!(
        fail(&format!("c=eSws,r={nonce},p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")),
        SaslFailure::ChannelBinding(_)
    ));
    for bad in [
        format!("c=biws,r={nonce}"),
        format!("p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=,c=biws,r={nonce}"),
        format!("c=biws,r={nonce},p=AAAA"),
        format!("c=biws,r={nonce},p=!!!"),
        format!("r={nonce},p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="),
        "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=".into(),
    ] {
        assert!(matches!(fail(&bad), SaslFailure::Malformed(_)), "{bad}");
    }
    // `y` (client could bind, thinks the server can't) is fine while no -PLUS is offered.
    let creds = Credentials::new("user", "pencil");
    let mut c = ClientSession::new(mech, creds, "abc")
        .unwrap()
        .with_channel_binding(ChannelBinding::NotSupportedByClient);
    let mut s = ServerSession::new(mech, "def", "h").unwrap();
    let first = c.initial_response().unwrap();
    assert!(text(&first).starts_with("y,,n=user,"));
    let ServerStep::Challenge(server_first) = s.step(first.bytes.expose(), &users) else {
        panic!()
    };
    let last = c.step(&server_first).unwrap();
    assert!(text(&last).starts_with("c=eSws,"));
    assert!(matches!(
        s.step(last.bytes.expose(), &users),
        ServerStep::Success { .. }
    ));
}

#[test]
fn server_parameters() {
    assert!(ServerSession::new(Mechanism::CramMd5, "a,b", "h").is_err());
    assert!(ServerSession::new(Mechanism::CramMd5, "n", "h>").is_err());
    assert!(ServerSession::new(Mechanism::CramMd5, "n", "").is_err());
    let mut s = ServerSession::new(Mechanism::Plain, "n", "h").unwrap();
    assert_eq!(s.start(), ServerStep::Challenge(Vec::new()));
    assert_eq!(s.step(b"\0test\0testpass", &users), success("test"));
    assert!(matches!(
        s.start(),
        ServerStep::Failure(SaslFailure::OutOfSequence(_))
    ));
}

#[test]
fn explanations() {
    let e = explain(
        Mechanism::Plain,
        Direction::ClientToServer,
        b"\0alice\0hunter22",
        false,
    );
    assert_eq!(
        e,
        "PLAIN response (RFC 4616: authzid NUL authcid NUL password)\n  authzid: none (act as the authcid)\n  \
         authcid: \"alice\"\n  password: 8 bytes, hidden"
    );
    assert!(
        explain(
            Mechanism::Plain,
            Direction::ClientToServer,
            b"\0alice\0hunter22",
            true
        )
        .contains("\"hunter22\"")
    );
    assert!(
        explain(Mechanism::Plain, Direction::ClientToServer, b"alice", false).contains("malformed")
    );
    assert!(
        explain(
            Mechanism::Plain,
            Direction::ClientToServer,
            b"\0al\xffice\0pw",
            false
        )
        .contains("authcid is not UTF-8")
    );

    let e = explain(
        Mechanism::Login,
        Direction::ServerToClient,
        b"Username:",
        false,
    );
    assert_eq!(
        e,
        "LOGIN prompt \"Username:\": the specified username prompt"
    );
    assert!(
        explain(
            Mechanism::Login,
            Direction::ServerToClient,
            b"User Name\0",
            false
        )
        .contains("non-standard")
    );
    assert!(
        !explain(
            Mechanism::Login,
            Direction::ClientToServer,
            b"hunter22",
            false
        )
        .contains("hunter22")
    );

    let e = explain(
        Mechanism::CramMd5,
        Direction::ClientToServer,
        b"tim b913a602c7eda7a495b4e6e7334d3890",
        false,
    );
    assert!(e.contains("user: \"tim\"") && e.contains("32 bytes, hidden") && !e.contains("b913"));
    assert!(
        explain(
            Mechanism::CramMd5,
            Direction::ServerToClient,
            b"<1.2@h>",
            false
        )
        .contains("RFC 2195 specifies")
    );

    let e = explain(
        Mechanism::ScramSha1,
        Direction::ClientToServer,
        b"n,a=adm=2Cin,n=user,r=fyko",
        false,
    );
    assert_eq!(
        e,
        "SCRAM-SHA-1 client-first\n  gs2 header \"n,a=adm=2Cin,\": no channel binding, authzid \"adm,in\"\n  \
         n=user: username \"user\"\n  r=fyko: nonce (4 characters)"
    );
    let e = explain(
        Mechanism::ScramSha1,
        Direction::ServerToClient,
        b"r=fykoxyz,s=QSXCR+Q6sek8bf92,i=1024",
        false,
    );
    assert!(
        e.starts_with("SCRAM-SHA-1 server-first")
            && e.contains("salt (12 bytes)")
            && e.contains("below the 4096")
    );
    let e = explain(
        Mechanism::ScramSha256,
        Direction::ClientToServer,
        b"c=biws,r=ab,p=dHzbZapW",
        false,
    );
    assert!(e.contains("GS2 header \"n,,\"") && e.contains("p=<proof>") && !e.contains("dHzb"));
    assert!(
        explain(
            Mechanism::ScramSha256,
            Direction::ClientToServer,
            b"c=biws,r=ab,p=dHzbZapW",
            true
        )
        .contains("p=dHzbZapW")
    );
    assert!(
        explain(
            Mechanism::ScramSha256,
            Direction::ServerToClient,
            b"v=6rri",
            false
        )
        .starts_with("SCRAM-SHA-256 server-final")
    );
    assert!(
        explain(
            Mechanism::ScramSha256,
            Direction::ServerToClient,
            b"e=invalid-proof",
            false
        )
        .contains("server error")
    );
}

/// SCRAM -PLUS with fixed channel binding data: every message built by hand (the expected
/// values were computed independently with Python's hashlib/hmac from RFC 5802 §3: c= is
/// base64 of the GS2 header followed by the binding data).
#[allow(clippy::too_many_arguments)]
fn scram_plus_known_answer(
    mech: Mechanism,
    binding: ChannelBinding,
    client_nonce: &str,
    server_nonce: &str,
    salt: &str,
    client_first: &str,
    server_first: &str,
    client_final: &str,
    server_final: &str,
) {
    let mut c = ClientSession::new_with_channel_binding(
        mech,
        Credentials::new("user", "pencil"),
        client_nonce,
        binding,
    )
    .unwrap();
    let first = c.initial_response().unwrap();
    assert_eq!(text(&first), client_first);
    let mut s = ServerSession::new(mech, server_nonce, "mx.example")
        .unwrap()
        .with_scram_salt(B64.decode(salt).unwrap(), NonZeroU32::new(4096).unwrap())
        .with_channel_binding(fixed_binding());
    assert_eq!(
        s.step(first.bytes.expose(), &users),
        ServerStep::Challenge(server_first.into())
    );
    let last = c.step(server_first.as_bytes()).unwrap();
    assert_eq!(text(&last), client_final);
    assert_eq!(
        s.step(client_final.as_bytes(), &users),
        ServerStep::Success {
            authzid: None,
            authcid: "user".into(),
            additional_data: Some(server_final.into())
        }
    );
    assert!(s.channel_binding_used().is_some());
    // SMTP's way: server-final as a challenge, answered with an empty response.
    assert_eq!(text(&c.step(server_final.as_bytes()).unwrap()), "");
    assert_eq!(c.server_verified(), Some(true));
}

#[test]
fn scram_sha256_plus_tls_exporter_known_answer() {
    let exporter: Vec<u8> = (0..32).collect();
    // "p=tls-exporter,," then 0x00..0x1f, in base64.
    let c = "cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f";
    let mut input = b"p=tls-exporter,,".to_vec();
    input.extend_from_slice(&exporter);
    assert_eq!(B64.encode(&input), c);
    scram_plus_known_answer(
        Mechanism::ScramSha256Plus,
        ChannelBinding::TlsExporter(exporter),
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        &format!(
            "c={c},r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=QC6CS20quADQRb3mT99YUH+n3VJxUvzuK0K0E1Vrs2M="
        ),
        "v=2GiAgapEppLVlUXbxUDksL3VgYHzuqiK5tR4mhJGgvs=",
    );
}

#[test]
fn scram_sha1_plus_tls_server_end_point_known_answer() {
    let hash = fixed_binding().tls_server_end_point.unwrap();
    let c = "cD10bHMtc2VydmVyLWVuZC1wb2ludCwsRyCcm3r4Od5p6anNYl6RgsGtY9rnntiKLdaA/jQhhiA=";
    let mut input = b"p=tls-server-end-point,,".to_vec();
    input.extend_from_slice(&hash);
    assert_eq!(B64.encode(&input), c);
    scram_plus_known_answer(
        Mechanism::ScramSha1Plus,
        ChannelBinding::TlsServerEndPoint(hash),
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "QSXCR+Q6sek8bf92",
        "p=tls-server-end-point,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        &format!(
            "c={c},r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=RFhc2OCKumbDZodi+nKFVzacAYk="
        ),
        "v=MnjqZHMppYCFvI4GnLRPWgmip0Q=",
    );
}

/// Runs one SCRAM exchange: the client with `binding`, the server with `server_data`;
/// returns the server's final step (or its refusal of client-first).
fn plus_exchange(
    mech: Mechanism,
    binding: ChannelBinding,
    server_data: ChannelBindingData,
) -> ServerStep {
    let mut c = ClientSession::new_with_channel_binding(
        mech,
        Credentials::new("user", "pencil"),
        "cNonce",
        binding,
    )
    .unwrap();
    let mut s = ServerSession::new(mech, "sNonce", "h")
        .unwrap()
        .with_scram_salt(*b"salt", NonZeroU32::MIN)
        .with_channel_binding(server_data);
    let first = c.initial_response().unwrap();
    let server_first = match s.step(first.bytes.expose(), &users) {
        ServerStep::Challenge(c) => c,
        refused => return refused,
    };
    let last = c.step(&server_first).unwrap();
    s.step(last.bytes.expose(), &users)
}

#[test]
fn scram_plus_refuses_mismatched_or_missing_binding() {
    let mech = Mechanism::ScramSha256Plus;
    // The other end of a different TLS connection: exporter bytes differ.
    let mut other = fixed_binding();
    other.tls_exporter = Some(vec![0xee; 32]);
    let step = plus_exchange(mech, fixed_binding().binding(None).unwrap(), other);
    let ServerStep::Failure(SaslFailure::ChannelBinding(why)) = step else {
        panic!("{step:?}")
    };
    assert!(why.contains("not this connection's"), "{why}");
    // The server has no end-point hash (say, an Ed25519 certificate).
    let mut no_hash = fixed_binding();
    no_hash.tls_server_end_point = None;
    let step = plus_exchange(
        mech,
        fixed_binding()
            .binding(Some(ChannelBindingType::TlsServerEndPoint))
            .unwrap(),
        no_hash,
    );
    assert!(
        matches!(&step, ServerStep::Failure(SaslFailure::ChannelBinding(w)) if w.contains("no tls-server-end-point")),
        "{step:?}"
    );
    // No TLS at all.
    let step = plus_exchange(
        mech,
        fixed_binding().binding(None).unwrap(),
        ChannelBindingData::default(),
    );
    assert!(
        matches!(&step, ServerStep::Failure(SaslFailure::ChannelBinding(w)) if w.contains("not inside TLS")),
        "{step:?}"
    );
    // A -PLUS server refuses "n" and "y", and unknown binding types.
    for first in [
        &b"n,,n=user,r=x"[..],
        b"y,,n=user,r=x",
        b"p=tls-unique,,n=user,r=x",
    ] {
        let mut s = ServerSession::new(mech, "s", "h")
            .unwrap()
            .with_channel_binding(fixed_binding());
        assert!(
            matches!(
                s.step(first, &users),
                ServerStep::Failure(SaslFailure::ChannelBinding(_))
            ),
            "{first:?}"
        );
    }
    // The client cannot make a -PLUS session without data, nor bind a non-PLUS one.
    assert!(ClientSession::new(mech, Credentials::new("u", "p"), "n").is_err());
    assert!(
        ClientSession::new_with_channel_binding(
            Mechanism::ScramSha256,
            Credentials::new("u", "p"),
            "n",
            fixed_binding().binding(None).unwrap()
        )
        .is_err()
    );
    // with_channel_binding on a non-PLUS mechanism turns data into "y".
    let mut c = ClientSession::new(Mechanism::ScramSha256, Credentials::new("u", "p"), "n")
        .unwrap()
        .with_channel_binding(fixed_binding().binding(None).unwrap());
    assert!(text(&c.initial_response().unwrap()).starts_with("y,,"));
}

#[test]
fn scram_y_is_a_downgrade_where_plus_is_offered() {
    // RFC 5802 §6: "y" means "I can bind, but you can't". A server that can (it offered
    // -PLUS) must fail the exchange: someone removed -PLUS from the list on the way.
    let step = plus_exchange(
        Mechanism::ScramSha256,
        ChannelBinding::NotSupportedByClient,
        fixed_binding(),
    );
    let ServerStep::Failure(SaslFailure::ChannelBinding(why)) = step else {
        panic!("{step:?}")
    };
    assert!(why.contains("downgrade"), "{why}");
    // "n" (the client cannot bind) is fine, and "y" where the server cannot bind either.
    for (binding, data) in [
        (ChannelBinding::None, fixed_binding()),
        (
            ChannelBinding::NotSupportedByClient,
            ChannelBindingData::default(),
        ),
    ] {
        let step = plus_exchange(Mechanism::ScramSha256, binding, data);
        assert!(matches!(step, ServerStep::Success { .. }), "{step:?}");
    }
}

#[test]
fn explains_plus_messages() {
    let e = explain(
        Mechanism::ScramSha256Plus,
        Direction::ClientToServer,
        b"p=tls-exporter,,n=user,r=abc",
        false,
    );
    assert!(
        e.contains("channel binding required, type \"tls-exporter\""),
        "{e}"
    );
    let e = explain(
        Mechanism::ScramSha256Plus,
        Direction::ClientToServer,
        b"c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f,r=abc,p=AAAA",
        false,
    );
    assert!(
        e.contains("GS2 header \"p=tls-exporter,,\" and 32 bytes of channel binding data"),
        "{e}"
    );
    let e = explain(Mechanism::External, Direction::ClientToServer, b"", false);
    assert!(e.contains("empty"), "{e}");
    let e = explain(
        Mechanism::External,
        Direction::ClientToServer,
        b"bob",
        false,
    );
    assert!(e.contains("authzid: \"bob\""), "{e}");
    let e = explain(
        Mechanism::XOauth2,
        Direction::ClientToServer,
        b"user=u\x01auth=Bearer secret-token\x01\x01",
        false,
    );
    assert!(
        e.starts_with("XOAUTH2 initial response") && !e.contains("secret-token"),
        "{e}"
    );
}

/// The user's password doubles as the expected bearer token.
fn oauth_exchange(mech: Mechanism, user: &str, token: &str) -> (ServerStep, ClientSession) {
    let mut c = ClientSession::new(mech, Credentials::new(user, token), "")
        .unwrap()
        .with_oauth_target(OAuthTarget {
            host: Some("mx.example".into()),
            port: Some(587),
        })
        .unwrap();
    let mut s = ServerSession::new(mech, "sNonce", "mx.example").unwrap();
    let first = c.initial_response().unwrap();
    assert!(
        !first.redacted.contains(token) || token.len() < 4,
        "{}",
        first.redacted
    );
    let mut step = s.step(first.bytes.expose(), &users);
    if let ServerStep::Challenge(json) = &step {
        let ack = c.step(json).unwrap();
        assert_eq!(
            ack.bytes.expose().as_slice(),
            OAuthMechanism::of(mech).unwrap().error_acknowledgement()
        );
        step = s.step(ack.bytes.expose(), &users);
    } else {
        assert!(c.is_complete());
        c.handle_success_data(b"").unwrap();
    }
    (step, c)
}

#[test]
fn oauth_round_trips_and_error_challenge() {
    for mech in [Mechanism::XOauth2, Mechanism::OAuthBearer] {
        let (step, c) = oauth_exchange(mech, "test", "testpass");
        assert_eq!(step, success("test"), "{mech}");
        assert!(c.oauth_error().is_none());

        let (step, c) = oauth_exchange(mech, "test", "expired-token");
        assert_eq!(
            step,
            ServerStep::Failure(SaslFailure::InvalidToken("test".into())),
            "{mech}"
        );
        let e = c.oauth_error().unwrap();
        assert_eq!(e.get("status"), Some("invalid_token"));
        assert_eq!(e.get("scope"), Some("mail"));

        let (step, _) = oauth_exchange(mech, "nobody", "x");
        assert_eq!(
            step,
            ServerStep::Failure(SaslFailure::UnknownUser("nobody".into())),
            "{mech}"
        );
    }
    // The initial response carries what the RFCs say.
    let mut c = ClientSession::new(Mechanism::OAuthBearer, Credentials::new("u@x", "tok"), "")
        .unwrap()
        .with_oauth_target(OAuthTarget {
            host: Some("mx.example".into()),
            port: Some(587),
        })
        .unwrap();
    let m = c.initial_response().unwrap();
    assert_eq!(
        m.bytes.expose().as_slice(),
        b"n,a=u@x,\x01host=mx.example\x01port=587\x01auth=Bearer tok\x01\x01"
    );
    assert_eq!(m.redacted, "authzid=\"u@x\", 3-byte bearer token");
    // Success after an error challenge is not believed.
    assert!(c.step(OAUTH_ERROR_CHALLENGE.as_bytes()).is_ok());
    assert_eq!(
        c.handle_success_data(b""),
        Err(SaslError::SuccessAfterError)
    );
    // No authzid and no spaces in tokens.
    assert!(
        ClientSession::new(
            Mechanism::XOauth2,
            Credentials::new("u", "t").with_authzid("z"),
            ""
        )
        .is_err()
    );
    assert!(ClientSession::new(Mechanism::XOauth2, Credentials::new("u", "a b"), "").is_err());
    // A server that gets something else than the acknowledgement still fails.
    let mut s = ServerSession::new(Mechanism::XOauth2, "n", "h").unwrap();
    assert!(matches!(
        s.step(b"user=test\x01auth=Bearer nope\x01\x01", &users),
        ServerStep::Challenge(_)
    ));
    assert!(matches!(
        s.step(b"junk", &users),
        ServerStep::Failure(SaslFailure::Malformed(_))
    ));
    // OAUTHBEARER with channel binding is refused outright.
    let mut s = ServerSession::new(Mechanism::OAuthBearer, "n", "h").unwrap();
    assert!(matches!(
        s.step(
            b"p=tls-exporter,a=test,\x01auth=Bearer testpass\x01\x01",
            &users
        ),
        ServerStep::Failure(SaslFailure::ChannelBinding(_))
    ));
}

#[test]
fn external_uses_the_certificate_identity() {
    let run = |authzid: Option<&str>, identity: Option<&str>, initial: bool| {
        let mut creds = Credentials::new("", "");
        if let Some(z) = authzid {
            creds = creds.with_authzid(z);
        }
        let mut c = ClientSession::new(Mechanism::External, creds, "").unwrap();
        let mut s = ServerSession::new(Mechanism::External, "n", "h")
            .unwrap()
            .with_external_identity(identity.map(str::to_owned));
        let msg = if initial {
            c.initial_response().unwrap()
        } else {
            assert_eq!(s.start(), ServerStep::Challenge(Vec::new()));
            c.step(b"").unwrap()
        };
        let step = s.step(msg.bytes.expose(), &users);
        assert!(c.is_complete());
        (msg, step)
    };
    let (msg, step) = run(None, Some("test"), true);
    assert!(msg.bytes.expose().is_empty());
    assert_eq!(step, success("test"));
    let (msg, step) = run(Some("user"), Some("test"), false);
    assert_eq!(msg.bytes.expose().as_slice(), b"user");
    assert_eq!(msg.redacted, "authzid=\"user\"");
    assert_eq!(
        step,
        ServerStep::Success {
            authzid: Some("user".into()),
            authcid: "test".into(),
            additional_data: None
        }
    );
    let (_, step) = run(None, None, true);
    assert_eq!(step, ServerStep::Failure(SaslFailure::NoExternalIdentity));
    let (_, step) = run(None, Some("stranger"), true);
    assert_eq!(
        step,
        ServerStep::Failure(SaslFailure::UnknownUser("stranger".into()))
    );
}

/// Lots of SCRAM-looking text, so the fuzzing reaches past the first parse.
fn scramish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[nyprsivcpmae=,0-9A-Za-z+/_<>@ \\x00]{0,48}".prop_map(String::into_bytes),
        "(n|y|p=x|p=tls-exporter|p=tls-server-end-point),(a=[a-z=2CD]{0,4})?,(n=[a-z=]{0,4},r=cNonce[a-z]{0,3}|m=1)(,[a-z]=[a-z]{0,3}){0,2}"
            .prop_map(String::into_bytes),
        "(n,a=user,\x01|user=user\x01)(host=x\x01)?(auth=Bearer (pencil|x)?\x01)?\x01?"
            .prop_map(String::into_bytes),
        "(c=(biws|eSws|cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f|!),)?r=cNonce[a-z]{0,4}(,s=[A-Za-z0-9+/=]{0,8})?(,i=[0-9]{0,3})?(,p=[A-Za-z0-9+/=]{0,30})?"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn no_input_panics(
        mech_index in 0..Mechanism::ALL.len(),
        start in any::<bool>(),
        messages in proptest::collection::vec(scramish(), 0..5),
    ) {
        let mech = Mechanism::ALL[mech_index];
        let mut s = ServerSession::new(mech, "sNonce", "mx.example")
            .unwrap()
            .with_scram_salt(*b"s", NonZeroU32::MIN)
            .with_channel_binding(fixed_binding())
            .with_external_identity(Some("user".into()));
        if start {
            s.start();
        }
        let binding = if mech.is_scram_plus() {
            fixed_binding().binding(None).unwrap()
        } else {
            ChannelBinding::None
        };
        let mut c = ClientSession::new_with_channel_binding(
            mech,
            Credentials::new("user", "pencil"),
            "cNonce",
            binding,
        )
        .unwrap();
        if start {
            c.initial_response();
        }
        for m in &messages {
            s.step(m, &users);
            let _ = c.step(m);
            let _ = explain(mech, Direction::ClientToServer, m, true);
            let _ = explain(mech, Direction::ServerToClient, m, false);
        }
        let _ = c.handle_success_data(messages.first().map_or(&[][..], |m| m));
        let _ = (c.is_complete(), c.server_verified(), c.unexpected_login_prompt());
    }
}
