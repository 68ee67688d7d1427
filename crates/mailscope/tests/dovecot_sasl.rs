//! The SASL mechanisms that need more than a password, against Dovecot's second instance
//! (`PEER_SASL_SUBMISSION`, STARTTLS submission) started by `scripts/peers start`:
//! EXTERNAL with a client certificate from the peers' client CA (`PEER_CLIENT_CERT`,
//! `PEER_CLIENT_KEY`; Dovecot takes the login name from its commonName), and XOAUTH2 /
//! OAUTHBEARER with an HS256 JWT that Dovecot's oauth2 passdb validates locally
//! (`PEER_OAUTH_TOKEN_FILE`).
//!
//! Like the other peer tests these never skip; see `common`.

mod common;

use common::*;
use serde_json::Value;

/// `mailscope --no-config smtp --timeout 10 --server PEER_SASL_SUBMISSION --tls
/// --tls-ca-path PEER_CA --quit-after auth ARGS`.
fn sasl_smtp(args: &[&str]) -> Run {
    let (server, ca) = (peer("PEER_SASL_SUBMISSION"), file_var("PEER_CA"));
    let mut all = vec![
        "--no-config",
        "smtp",
        "--timeout",
        "10",
        "--server",
        &server,
        "--tls",
        "--tls-ca-path",
        &ca,
        "--quit-after",
        "auth",
    ];
    all.extend_from_slice(args);
    mailscope(&all)
}

/// Base64 (RFC 4648, padded): the form a token takes inside an AUTH line.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn token() -> String {
    let path = file_var("PEER_OAUTH_TOKEN_FILE");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{path} does not hold a JWT");
    token
}

/// The token, its signature alone, and the base64 wire forms of both mechanisms'
/// initial responses: none of these may show up in any output.
fn token_forms(token: &str, user: &str) -> Vec<String> {
    let signature = token.rsplit('.').next().expect("signature").to_string();
    vec![
        token.to_string(),
        signature,
        base64(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes()),
        base64(format!("n,a={user},\x01auth=Bearer {token}\x01\x01").as_bytes()),
    ]
}

fn assert_no_token(run: &Run, token: &str, user: &str) {
    for secret in token_forms(token, user) {
        run.assert_no_secret(&secret);
    }
}

/// The last `sent` AUTH event.
fn auth_sent(run: &Run) -> Value {
    let found = run
        .of_type("sent")
        .into_iter()
        .rfind(|e| e["text"].as_str().unwrap_or_default().starts_with("AUTH "));
    found
        .unwrap_or_else(|| panic!("no AUTH sent\n{}", run.ctx()))
        .clone()
}

#[test]
fn external_with_client_certificate_authenticates() {
    let (cert, key) = (file_var("PEER_CLIENT_CERT"), file_var("PEER_CLIENT_KEY"));
    let run = sasl_smtp(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--auth",
        "EXTERNAL",
        "--json",
    ]);
    run.expect_code(0);
    let chosen = run.one("auth_mechanism_chosen");
    assert_eq!(chosen["mechanism"], "EXTERNAL", "{}", run.ctx());
    assert_eq!(chosen["explicit"], true, "{}", run.ctx());
    assert_eq!(
        run.one("authenticated")["mechanism"],
        "EXTERNAL",
        "{}",
        run.ctx()
    );
    assert_eq!(run.reply_to("AUTH")["code"], 235, "{}", run.ctx());
    assert_eq!(run.ended()["exit_code"], 0, "{}", run.ctx());
}

#[test]
fn external_without_client_certificate_fails_at_auth() {
    let run = sasl_smtp(&["--auth", "EXTERNAL", "--json"]);
    assert!(
        run.code == 28 || run.code == 29,
        "EXTERNAL without a client certificate: want exit 28 or 29\n{}",
        run.ctx()
    );
    assert!(run.of_type("authenticated").is_empty(), "{}", run.ctx());
    // Dovecot refuses it (the server knows no user name without a certificate).
    assert_eq!(run.reply_to("AUTH")["code"], 535, "{}", run.ctx());

    let human = sasl_smtp(&["--auth", "EXTERNAL"]);
    assert_eq!(human.code, run.code, "{}", human.ctx());
    assert!(
        human.all_output().contains("AUTH EXTERNAL failed"),
        "the failure should name the mechanism\n{}",
        human.ctx()
    );
}

fn bearer_ok(mech: &str) {
    let (user, token_file, token) = (user(), file_var("PEER_OAUTH_TOKEN_FILE"), token());
    let base = [
        "--auth",
        mech,
        "--auth-user",
        &user,
        "--auth-token-file",
        &token_file,
    ];

    let run = sasl_smtp(&[&base[..], &["--json"]].concat());
    run.expect_code(0);
    let chosen = run.one("auth_mechanism_chosen");
    assert_eq!(chosen["mechanism"], mech, "{}", run.ctx());
    assert_eq!(chosen["explicit"], true, "{}", run.ctx());
    assert_eq!(run.one("authenticated")["mechanism"], mech, "{}", run.ctx());
    assert_eq!(run.reply_to("AUTH")["code"], 235, "{}", run.ctx());
    assert_eq!(auth_sent(&run)["redacted"], true, "{}", run.ctx());
    assert_no_token(&run, &token, &user);

    let human = sasl_smtp(&base);
    human.expect_code(0);
    assert!(
        human.stdout.contains(&format!("authenticated with {mech}")),
        "{}",
        human.ctx()
    );
    assert_no_token(&human, &token, &user);
}

fn bearer_wrong_token(mech: &str) {
    let (user, token) = (user(), token());
    // Same header and claims, a signature that does not match.
    let (signed, signature) = token.rsplit_once('.').expect("JWT");
    let flipped: String = signature
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    let wrong = format!("{signed}.{flipped}");
    let dir = std::env::temp_dir().join(unique_token("oauth"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wrong_file = dir.join("token");
    std::fs::write(&wrong_file, format!("{wrong}\n")).expect("write wrong token");
    let wrong_path = wrong_file.to_str().expect("UTF-8 temp path");
    let base = [
        "--auth",
        mech,
        "--auth-user",
        &user,
        "--auth-token-file",
        wrong_path,
    ];

    let run = sasl_smtp(&[&base[..], &["--json"]].concat());
    let human = sasl_smtp(&base);
    let _ = std::fs::remove_dir_all(&dir);

    run.expect_code(28);
    assert!(run.of_type("authenticated").is_empty(), "{}", run.ctx());
    assert_eq!(run.reply_to("AUTH")["code"], 535, "{}", run.ctx());
    assert_eq!(run.ended()["exit_code"], 28, "{}", run.ctx());
    // The explanation speaks of tokens, not passwords.
    let explained = run.one("reply_explained");
    let next: Vec<&str> = explained["next"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(
        next.first().is_some_and(|n| n.contains("bearer token")),
        "{next:?}\n{}",
        run.ctx()
    );
    assert!(
        !next.iter().any(|n| n.contains("password")),
        "{next:?}\n{}",
        run.ctx()
    );
    assert_no_token(&run, &wrong, &user);
    assert_no_token(&run, &token, &user);

    human.expect_code(28);
    assert!(
        human.all_output().contains(&format!("AUTH {mech} failed")),
        "{}",
        human.ctx()
    );
    assert_no_token(&human, &wrong, &user);
    assert_no_token(&human, &token, &user);
}

#[test]
fn xoauth2_with_valid_token_authenticates() {
    bearer_ok("XOAUTH2");
}

#[test]
fn oauthbearer_with_valid_token_authenticates() {
    bearer_ok("OAUTHBEARER");
}

#[test]
fn xoauth2_with_wrong_token_is_refused() {
    bearer_wrong_token("XOAUTH2");
}

#[test]
fn oauthbearer_with_wrong_token_is_refused() {
    bearer_wrong_token("OAUTHBEARER");
}
