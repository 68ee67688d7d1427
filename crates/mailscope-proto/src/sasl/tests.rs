//! Known-answer tests from the RFCs, in-memory round trips, failure cases, and a proptest
//! that no input makes either side panic.

#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use proptest::prelude::*;

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
    let mut c = ClientSession::new(mech, creds, "cNonce/+=~")?;
    let mut s = ServerSession::new(mech, "sNonce", "mx.example")?
        .with_scram_salt(*b"salt", NonZeroU32::MIN);
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

/// Lots of SCRAM-looking text, so the fuzzing reaches past the first parse.
fn scramish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[nyprsivcpmae=,0-9A-Za-z+/_<>@ \\x00]{0,48}".prop_map(String::into_bytes),
        "(n|y|p=x),(a=[a-z=2CD]{0,4})?,(n=[a-z=]{0,4},r=cNonce[a-z]{0,3}|m=1)(,[a-z]=[a-z]{0,3}){0,2}"
            .prop_map(String::into_bytes),
        "(c=(biws|eSws|!),)?r=cNonce[a-z]{0,4}(,s=[A-Za-z0-9+/=]{0,8})?(,i=[0-9]{0,3})?(,p=[A-Za-z0-9+/=]{0,30})?"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn no_input_panics(
        mech_index in 0..Mechanism::PREFERENCE.len(),
        start in any::<bool>(),
        messages in proptest::collection::vec(scramish(), 0..5),
    ) {
        let mech = Mechanism::PREFERENCE[mech_index];
        let mut s = ServerSession::new(mech, "sNonce", "mx.example").unwrap().with_scram_salt(*b"s", NonZeroU32::MIN);
        if start {
            s.start();
        }
        let mut c = client(mech, "user", "pencil", "cNonce");
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
