//! The tool commands, run as the built binary: `sasl` (seed 001's vectors, the RFC and
//! provider examples), `base64` (binary round trips: seed 001's nkf trap), `completions`,
//! `man`, and the conventions every subcommand follows (examples in --help, quiet exit on a
//! closed pipe).
//!
//! `MAILSCOPE_BLESS=1 cargo test -p mailscope --test cli_tools` rewrites docs/man.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary with `--no-config` and no password or token in its environment.
fn mailscope(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailscope"));
    cmd.arg("--no-config")
        .args(args)
        .env_remove("MAILSCOPE_PASSWORD")
        .env_remove("MAILSCOPE_TOKEN")
        .stdin(Stdio::null());
    cmd
}

/// Runs with `stdin` as input and returns what came out.
fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // A writer thread, so a child that writes much before reading cannot deadlock us.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn ok(cmd: Command, stdin: &[u8]) -> String {
    let out = run(cmd, stdin);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn with_password(args: &[&str], password: &str) -> Command {
    let mut cmd = mailscope(args);
    cmd.env("MAILSCOPE_PASSWORD", password);
    cmd
}

fn b64(bytes: &[u8]) -> String {
    // The test's own encoder, independent of the binary's.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

// ---- sasl: what one types by hand ----

#[test]
fn sasl_plain_seed_vectors() {
    // The seed's vector: authzid and authcid "test", password "testpass".
    let out = ok(
        with_password(
            &["sasl", "plain", "--user", "test", "--authzid", "test"],
            "testpass",
        ),
        b"",
    );
    assert!(
        out.contains("\nAUTH PLAIN dGVzdAB0ZXN0AHRlc3RwYXNz\n"),
        "{out}"
    );
    assert!(
        out.contains("\na1 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3RwYXNz\n"),
        "{out}"
    );
    assert!(out.contains("Base64 is not encryption"), "{out}");
    // Seed 001: printf 'username\0username\0password' | base64.
    let out = ok(
        with_password(
            &[
                "sasl",
                "plain",
                "-u",
                "username",
                "--authzid",
                "username",
                "--base64",
            ],
            "password",
        ),
        b"",
    );
    assert_eq!(out, "dXNlcm5hbWUAdXNlcm5hbWUAcGFzc3dvcmQ=\n");
    // No authzid: it is left empty, as RFC 4616 intends.
    let out = ok(
        with_password(&["sasl", "plain", "--user", "test", "--base64"], "testpass"),
        b"",
    );
    assert_eq!(out, format!("{}\n", b64(b"\0test\0testpass")));
}

#[test]
fn sasl_password_from_a_file_never_from_an_argument() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "testpass\nsecond line is ignored\n").unwrap();
    let out = ok(
        mailscope(&[
            "sasl",
            "plain",
            "--user",
            "test",
            "--authzid",
            "test",
            "--base64",
            "--password-file",
            file.to_str().unwrap(),
        ]),
        b"",
    );
    assert_eq!(out, "dGVzdAB0ZXN0AHRlc3RwYXNz\n");

    // Neither file nor variable nor terminal: a clear error, exit 1.
    let out = run(mailscope(&["sasl", "plain", "--user", "test"]), b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MAILSCOPE_PASSWORD"), "{err}");
    assert!(out.stdout.is_empty());

    // There is no option that takes the password itself.
    let out = run(
        mailscope(&["sasl", "plain", "--user", "test", "--password", "x"]),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sasl_login_seed_vectors() {
    // Seed 001: 334 VXNlcm5hbWU6 is answered with dXNlcm5hbWU=, 334 UGFzc3dvcmQ6 with cGFzc3dvcmQ=.
    let out = ok(
        with_password(&["sasl", "login", "--user", "username"], "password"),
        b"",
    );
    assert!(
        out.contains(
            "\nAUTH LOGIN\n*** Answer the first prompt, 334 VXNlcm5hbWU6 (\"Username:\"), with:\ndXNlcm5hbWU=\n*** Answer the second prompt, 334 UGFzc3dvcmQ6 (\"Password:\"), with:\ncGFzc3dvcmQ=\n"
        ),
        "{out}"
    );
    let out = ok(
        with_password(
            &["sasl", "login", "--user", "username", "--base64"],
            "password",
        ),
        b"",
    );
    assert_eq!(out, "dXNlcm5hbWU=\ncGFzc3dvcmQ=\n");
}

const CRAM_CHALLENGE: &str = "PDMzMjE2NDkzMTA1OTExNDQuMTQxNDc5NTExOUBtYWlsLnNlcnZlci5uZXQ+";
const CRAM_RESPONSE: &str = "dGVzdCAxNTU0YTQwNzA1NTgxZjUwZmI1MmNjZDhlZDhjM2EyYg==";

#[test]
fn sasl_cram_md5_seed_vector() {
    let out = ok(
        with_password(
            &[
                "sasl",
                "cram-md5",
                "--user",
                "test",
                "--challenge",
                CRAM_CHALLENGE,
            ],
            "testpass",
        ),
        b"",
    );
    assert!(
        out.contains("CRAM-MD5 challenge \"<3321649310591144.1414795119@mail.server.net>\""),
        "{out}"
    );
    assert!(out.ends_with(&format!("\n{CRAM_RESPONSE}\n")), "{out}");
    // The challenge pasted on stdin, as the server sent it.
    let out = ok(
        with_password(
            &["sasl", "cram-md5", "--user", "test", "--base64"],
            "testpass",
        ),
        format!("334 {CRAM_CHALLENGE}\r\n").as_bytes(),
    );
    assert_eq!(out, format!("{CRAM_RESPONSE}\n"));
    // A refusal instead of a challenge: exit 28, as mailscope smtp's AUTH stage.
    let out = run(
        with_password(&["sasl", "cram-md5", "--user", "test"], "testpass"),
        b"504 5.5.4 Unrecognized authentication type\n",
    );
    assert_eq!(out.status.code(), Some(28));
}

/// RFC 7677 §3: user "user", password "pencil", client nonce "rOprNGfwEbeRWgbNEkqO".
const RFC7677_SERVER_FIRST: &[u8] =
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC7677_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC7677_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

#[test]
fn sasl_scram_rfc_7677_exchange() {
    let args = [
        "sasl",
        "scram",
        "--mech",
        "SCRAM-SHA-256",
        "--user",
        "user",
        "--nonce",
        "rOprNGfwEbeRWgbNEkqO",
    ];
    let stdin = format!(
        "334 {}\n334 {}\n",
        b64(RFC7677_SERVER_FIRST),
        b64(RFC7677_SERVER_FINAL)
    );
    let out = ok(with_password(&args, "pencil"), stdin.as_bytes());
    assert!(
        out.contains(&format!(
            "\nAUTH SCRAM-SHA-256 {}\n",
            b64(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("\n{}\n", b64(RFC7677_CLIENT_FINAL))),
        "{out}"
    );
    assert!(out.contains("Server signature verified"), "{out}");

    // IMAP continuations, raw server-first, and a server that does not know the password.
    let stdin = format!(
        "+ {}\n+ {}\n",
        String::from_utf8_lossy(RFC7677_SERVER_FIRST),
        b64(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    );
    let mut base64_only = args.to_vec();
    base64_only.push("--base64");
    let out = run(with_password(&base64_only, "pencil"), stdin.as_bytes());
    assert_eq!(out.status.code(), Some(28));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "{}\n{}\n",
            b64(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
            b64(RFC7677_CLIENT_FINAL)
        )
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature does not match"));

    // Success without server-final proves nothing: exit 28 too.
    let stdin = format!("334 {}\n235 2.7.0 ok\n", b64(RFC7677_SERVER_FIRST));
    let out = run(with_password(&args, "pencil"), stdin.as_bytes());
    assert_eq!(out.status.code(), Some(28));
}

#[test]
fn sasl_xoauth2_googles_example() {
    let mut cmd = mailscope(&[
        "sasl",
        "xoauth2",
        "--user",
        "someuser@example.com",
        "--base64",
    ]);
    cmd.env(
        "MAILSCOPE_TOKEN",
        "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\n",
    );
    assert_eq!(
        ok(cmd, b""),
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\n"
    );
    let out = run(mailscope(&["sasl", "xoauth2", "--user", "a@b"]), b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAILSCOPE_TOKEN"));
}

#[test]
fn sasl_oauthbearer_rfc_7628_example() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\n").unwrap();
    let out = ok(
        mailscope(&[
            "sasl",
            "oauthbearer",
            "--user",
            "user@example.com",
            "--host",
            "server.example.com",
            "--port",
            "143",
            "--token-file",
            file.to_str().unwrap(),
        ]),
        b"",
    );
    assert!(
        out.contains("\na1 AUTHENTICATE OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB\n"),
        "{out}"
    );
    assert!(out.ends_with("\nAQ==\n"), "{out}");
}

// ---- sasl decode ----

fn decode(input: &str, extra: &[&str]) -> String {
    let mut args = vec!["sasl", "decode"];
    args.extend_from_slice(extra);
    ok(mailscope(&args), input.as_bytes())
}

#[test]
fn sasl_decode_plain_seed_redacts_unless_asked() {
    let out = decode("AUTH PLAIN dGVzdAB0ZXN0AHRlc3RwYXNz\n", &[]);
    assert_eq!(
        out,
        "C: AUTH PLAIN <redacted>\n   \
         PLAIN response (RFC 4616: authzid NUL authcid NUL password)\n     \
         authzid: \"test\"\n     \
         authcid: \"test\"\n     \
         password: 8 bytes, hidden\n"
    );
    let out = decode("AUTH PLAIN dGVzdAB0ZXN0AHRlc3RwYXNz\n", &["--show-secrets"]);
    assert!(
        out.starts_with("C: AUTH PLAIN dGVzdAB0ZXN0AHRlc3RwYXNz\n"),
        "{out}"
    );
    assert!(out.contains("password: \"testpass\""), "{out}");
    // A bare line: the mechanism is recognised from the content.
    let out = decode("dGVzdAB0ZXN0AHRlc3RwYXNz\n", &[]);
    assert!(out.contains("guessed from the content: PLAIN"), "{out}");
    assert!(
        !out.contains("testpass") && !out.contains("dGVzdAB0"),
        "{out}"
    );
}

#[test]
fn sasl_decode_cram_md5_seed() {
    let input = format!(
        "AUTH CRAM-MD5\n334 {CRAM_CHALLENGE}\n{CRAM_RESPONSE}\n235 2.7.0 Authentication successful\n"
    );
    let out = decode(&input, &[]);
    assert_eq!(
        out,
        format!(
            "C: AUTH CRAM-MD5\n\
             S: 334 {CRAM_CHALLENGE}\n   \
             CRAM-MD5 challenge \"<3321649310591144.1414795119@mail.server.net>\"\n     \
             form: <unique@hostname>, as RFC 2195 specifies\n\
             C: <redacted>\n   \
             CRAM-MD5 response (RFC 2195: username SP hex HMAC-MD5 of the challenge keyed with the password)\n     \
             user: \"test\"\n     \
             digest: 32 bytes, hidden\n\
             S: 235 2.7.0 Authentication successful\n   \
             authentication succeeded\n"
        )
    );
    let out = decode(&input, &["--show-secrets"]);
    assert!(
        out.contains("digest: \"1554a40705581f50fb52ccd8ed8c3a2b\""),
        "{out}"
    );
}

#[test]
fn sasl_decode_login_prompts_and_transcript_prefixes() {
    let out = decode(
        "C: AUTH LOGIN\r\nS: 334 VXNlcm5hbWU6\r\nC: dXNlcm5hbWU=\r\nS: 334 UGFzc3dvcmQ6\r\nC: cGFzc3dvcmQ=\r\nS: 535 5.7.8 Error: authentication failed\r\n",
        &[],
    );
    assert!(
        out.contains(
            "S: 334 VXNlcm5hbWU6\n   LOGIN prompt \"Username:\": the specified username prompt\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "S: 334 UGFzc3dvcmQ6\n   LOGIN prompt \"Password:\": the specified password prompt\n"
        ),
        "{out}"
    );
    assert!(out.ends_with("   authentication failed\n"), "{out}");
    assert!(!out.contains("cGFzc3dvcmQ="), "{out}");
    // The prompts alone, without any context.
    let out = decode("334 VXNlcm5hbWU6\n334 UGFzc3dvcmQ6\n", &[]);
    assert!(out.contains("guessed from the content: LOGIN"), "{out}");
    assert!(out.contains("LOGIN prompt \"Password:\""), "{out}");
}

#[test]
fn sasl_decode_imap_oauthbearer_failure_from_rfc_7628() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("capture.txt");
    std::fs::write(
        &file,
        "S: * OK IMAP4rev1 Server Ready\n\
         C: t1 AUTHENTICATE OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9AQE=\n\
         S: + eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=\n\
         C: AQ==\n\
         S: t1 NO SASL authentication failed\n",
    )
    .unwrap();
    let out = ok(mailscope(&["sasl", "decode", file.to_str().unwrap()]), b"");
    for expected in [
        "authzid \"user@example.com\"",
        "port: 143",
        "auth: empty: asks the server which scope it needs",
        "status: \"invalid_token\"",
        "scope: \"example_scope\"",
        "dummy response",
        "S: t1 NO SASL authentication failed\n   authentication failed",
    ] {
        assert!(out.contains(expected), "{expected:?} missing:\n{out}");
    }
}

#[test]
fn sasl_decode_without_any_sasl_message_fails() {
    let out = run(mailscope(&["sasl", "decode"]), b"EHLO example.com\nQUIT\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SASL message"));
    let out = run(mailscope(&["sasl", "decode", "/nonexistent/capture"]), b"");
    assert_eq!(out.status.code(), Some(1));
}

// ---- base64 ----

/// xorshift64*: reproducible bytes without a dependency.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn encode_bin(data: &[u8], extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["base64", "encode"];
    args.extend_from_slice(extra);
    let out = run(mailscope(&args), data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn decode_bin(text: &[u8], extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["base64", "decode"];
    args.extend_from_slice(extra);
    let out = run(mailscope(&args), text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn base64_round_trips_binary_data_byte_for_byte() {
    let all_bytes: Vec<u8> = (0..=255).collect();
    let mut inputs = vec![all_bytes.clone(), all_bytes.iter().rev().copied().collect()];
    for (i, len) in [0, 1, 2, 3, 4, 5, 56, 57, 58, 75, 76, 77, 1000, 65_537]
        .into_iter()
        .enumerate()
    {
        inputs.push(random_bytes(len, 0x9e37_79b9_7f4a_7c15 ^ i as u64));
    }
    let options: [&[&str]; 5] = [
        &[],
        &["--wrap", "0"],
        &["--wrap", "7"],
        &["--url"],
        &["--url", "--no-pad"],
    ];
    for data in &inputs {
        for opts in options {
            let text = encode_bin(data, opts);
            let decode_opts: &[&str] = if opts.contains(&"--url") {
                &["--url"]
            } else {
                &[]
            };
            assert_eq!(
                decode_bin(&text, decode_opts),
                *data,
                "{} bytes with {opts:?}",
                data.len()
            );
        }
        // Default: standard alphabet, 76 characters per line, like GNU base64.
        let text = String::from_utf8(encode_bin(data, &[])).unwrap();
        assert_eq!(text.replace('\n', ""), b64(data));
        assert!(text.lines().all(|l| l.len() <= 76));
        assert_eq!(text.is_empty(), data.is_empty());
    }
    // One byte, exactly.
    assert_eq!(encode_bin(b"\xff", &[]), b"/w==\n");
    assert_eq!(decode_bin(b"/w==", &[]), b"\xff");
    assert_eq!(encode_bin(b"", &[]), b"");
}

#[test]
fn base64_files_and_whitespace() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("1.zip");
    let data = random_bytes(10_000, 42);
    std::fs::write(&zip, &data).unwrap();
    let text = ok(mailscope(&["base64", "encode", zip.to_str().unwrap()]), b"");
    let b64_file = dir.path().join("1.b64");
    // CRLF line ends, indentation and trailing blanks are all skipped.
    let mangled = format!("  {}  \r\n\r\n", text.replace('\n', "\r\n\t"));
    std::fs::write(&b64_file, mangled).unwrap();
    let out = run(
        mailscope(&["base64", "decode", b64_file.to_str().unwrap()]),
        b"",
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, data);
    // `-` is stdin.
    assert_eq!(decode_bin(text.as_bytes(), &["-"]), data);
}

#[test]
fn base64_decode_errors_name_the_position() {
    let cases: [(&[u8], &[&str], &str); 5] = [
        (
            b"Zm9v\nYm!y\n",
            &[],
            "invalid base64 character '!' (0x21) at line 2, column 3 (byte offset 7)",
        ),
        (
            b"Zg==Zg==",
            &[],
            "glued together?) at line 1, column 5 (byte offset 4)",
        ),
        (
            b"Zm9vY",
            &[],
            "a character is missing) at line 1, column 6 (byte offset 5)",
        ),
        (b"ab-_", &[], "add --url"),
        (b"ab+/", &["--url"], "drop --url"),
    ];
    for (input, opts, expected) in cases {
        let mut args = vec!["base64", "decode"];
        args.extend_from_slice(opts);
        let out = run(mailscope(&args), input);
        assert_eq!(out.status.code(), Some(1), "{input:?}");
        assert!(out.stdout.is_empty(), "{input:?}: partial output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{input:?}: {err}");
        assert!(err.starts_with("error: stdin: "), "{err}");
    }
}

// ---- completions, man, help ----

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = ok(mailscope(&["completions", shell]), b"");
        assert!(out.len() > 1000, "{shell}: {} bytes", out.len());
        assert!(out.contains("mailscope"), "{shell}");
        assert!(
            out.contains("base64") && out.contains("cram-md5"),
            "{shell}"
        );
    }
    let out = run(mailscope(&["completions", "tcsh"]), b"");
    assert_eq!(out.status.code(), Some(1));
}

/// Runs with stdout closed before the child writes: every write gets EPIPE.
fn closed_stdout(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = mailscope(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: Vec::new(),
        stderr: stderr.into_bytes(),
    }
}

#[test]
fn a_closed_pipe_ends_the_tool_commands_quietly() {
    let big = random_bytes(300_000, 7);
    let encoded = encode_bin(&big, &[]);
    let cases: [(&[&str], &[u8]); 6] = [
        (&["completions", "bash"], b""),
        (&["completions", "powershell"], b""),
        (&["man"], b""),
        (&["base64", "encode"], &big),
        (&["base64", "decode"], &encoded),
        (
            &["sasl", "decode"],
            b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3RwYXNz\n",
        ),
    ];
    for (args, stdin) in cases {
        let out = closed_stdout(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    // And as a shell pipeline (pipefail: the exit status of mailscope counts).
    let bin = env!("CARGO_BIN_EXE_mailscope");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{bin}' --no-config completions bash | head -1"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn docs_man() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/man")
}

fn man_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "1"))
                .map(|p| {
                    (
                        p.file_name().unwrap().to_string_lossy().into_owned(),
                        std::fs::read(&p).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn committed_man_pages_are_current() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        mailscope(&["man", "--dir", dir.path().to_str().unwrap()]),
        b"",
    );
    let fresh = man_files(dir.path());
    assert!(fresh.len() >= 12, "only {} pages", fresh.len());
    let committed_dir = docs_man();
    if std::env::var_os("MAILSCOPE_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&committed_dir).unwrap();
        for (name, _) in man_files(&committed_dir) {
            std::fs::remove_file(committed_dir.join(name)).unwrap();
        }
        for (name, page) in &fresh {
            std::fs::write(committed_dir.join(name), page).unwrap();
        }
        return;
    }
    let committed = man_files(&committed_dir);
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&fresh),
        "docs/man is out of date: run MAILSCOPE_BLESS=1 cargo test -p mailscope --test cli_tools"
    );
    for ((name, old), (_, new)) in committed.iter().zip(&fresh) {
        assert!(
            old == new,
            "docs/man/{name} is out of date: run MAILSCOPE_BLESS=1 cargo test -p mailscope --test cli_tools"
        );
    }
    // Without --dir: the top page on stdout.
    let page = ok(mailscope(&["man"]), b"");
    assert!(page.contains(".TH mailscope 1"), "{page}");
}

/// The subcommand names listed under "Commands:" in a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_subcommand_shows_examples_in_help() {
    let mut queue: Vec<Vec<String>> = subcommands(&ok(mailscope(&["--help"]), b""))
        .into_iter()
        .map(|s| vec![s])
        .collect();
    let mut seen = Vec::new();
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = ok(mailscope(&args), b"");
        assert!(
            help.contains("Examples:"),
            "`mailscope {}` has no examples",
            path.join(" ")
        );
        for sub in subcommands(&help) {
            let mut deeper = path.clone();
            deeper.push(sub);
            queue.push(deeper);
        }
        seen.push(path.join(" "));
    }
    for expected in [
        "smtp",
        "demo",
        "sasl",
        "sasl plain",
        "sasl decode",
        "base64 decode",
        "completions",
        "man",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected} not checked: {seen:?}"
        );
    }
}
