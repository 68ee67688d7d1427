//! Human explanations of single SASL messages, for `mailscope sasl decode`.

use super::scram::{self, Gs2Flag};
use super::{ChannelBinding, MAX_SCRAM_ITERATIONS, Mechanism, quote};
use crate::transcript::Direction;

/// Explains one raw (base64-decoded) SASL message of `mech` sent in `direction`: a title
/// line, then one indented line per field. Passwords, CRAM-MD5 digests and SCRAM proofs are
/// shown only if `show_secrets`; otherwise their length stands in. Never fails: malformed
/// input is explained as such.
pub fn explain(mech: Mechanism, direction: Direction, bytes: &[u8], show_secrets: bool) -> String {
    let secret = |b: &[u8]| {
        if show_secrets {
            quote(b)
        } else {
            format!("{} bytes, hidden", b.len())
        }
    };
    let lines: Vec<String> = match (mech, direction) {
        (Mechanism::Plain, Direction::ClientToServer) => plain(bytes, secret),
        (Mechanism::Login, Direction::ClientToServer) => vec![
            "LOGIN response: the username (first response) or the password (second)".into(),
            format!("  value: {}", secret(bytes)),
        ],
        (Mechanism::Login, Direction::ServerToClient) => {
            let what = match bytes {
                b"Username:" => "the specified username prompt",
                b"Password:" => "the specified password prompt",
                _ => "non-standard (\"Username:\" and \"Password:\" are specified; clients answer by position)",
            };
            vec![format!("LOGIN prompt {}: {what}", quote(bytes))]
        }
        (Mechanism::CramMd5, Direction::ServerToClient) => {
            let msg_id = bytes.starts_with(b"<") && bytes.ends_with(b">") && bytes.contains(&b'@');
            vec![
                format!("CRAM-MD5 challenge {}", quote(bytes)),
                if msg_id {
                    "  form: <unique@hostname>, as RFC 2195 specifies".into()
                } else {
                    "  note: not in the <unique@hostname> form of RFC 2195".into()
                },
            ]
        }
        (Mechanism::CramMd5, Direction::ClientToServer) => match bytes.iter().rposition(|&b| b == b' ') {
            Some(at) => vec![
                "CRAM-MD5 response (RFC 2195: username SP hex HMAC-MD5 of the challenge keyed with the password)".into(),
                format!("  user: {}", quote(&bytes[..at])),
                format!("  digest: {}", secret(&bytes[at + 1..])),
            ],
            None => vec!["CRAM-MD5 response, malformed: no space between username and digest".into()],
        },
        (
            Mechanism::ScramSha1
            | Mechanism::ScramSha256
            | Mechanism::ScramSha1Plus
            | Mechanism::ScramSha256Plus,
            _,
        ) => scram_lines(mech, direction, bytes, show_secrets),
        (Mechanism::XOauth2, _) => {
            return super::oauth::explain_oauth(super::OAuthMechanism::XOAuth2, direction, bytes, show_secrets);
        }
        (Mechanism::OAuthBearer, _) => {
            return super::oauth::explain_oauth(super::OAuthMechanism::OAuthBearer, direction, bytes, show_secrets);
        }
        (Mechanism::External, Direction::ClientToServer) => match std::str::from_utf8(bytes) {
            Ok("") => vec![
                "EXTERNAL response (RFC 4422 appendix A): empty, act as the identity the TLS client certificate established".into(),
            ],
            Ok(_) => vec![
                "EXTERNAL response (RFC 4422 appendix A): the authorization identity".into(),
                format!("  authzid: {}", quote(bytes)),
            ],
            Err(_) => vec![format!(
                "EXTERNAL response, malformed: the authzid {} is not UTF-8",
                quote(bytes)
            )],
        },
        (_, Direction::ServerToClient) if bytes.is_empty() => {
            vec![format!("{mech} challenge: empty (the server asks for the initial response)")]
        }
        (_, Direction::ServerToClient) => {
            vec![format!("{mech} challenge {}: {mech} defines no non-empty challenge", quote(bytes))]
        }
    };
    lines.join("\n")
}

fn plain(bytes: &[u8], secret: impl Fn(&[u8]) -> String) -> Vec<String> {
    let parts: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    let [authzid, authcid, password] = parts[..] else {
        return vec![format!(
            "PLAIN response, malformed: {} NUL separators, expected 2 (authzid NUL authcid NUL password)",
            parts.len() - 1
        )];
    };
    let not_utf8 = [
        ("authzid", authzid),
        ("authcid", authcid),
        ("password", password),
    ]
    .into_iter()
    .filter(|(_, v)| std::str::from_utf8(v).is_err())
    .map(|(name, _)| format!("  note: the {name} is not UTF-8, which RFC 4616 requires"));
    [
        "PLAIN response (RFC 4616: authzid NUL authcid NUL password)".into(),
        match authzid {
            [] => "  authzid: none (act as the authcid)".into(),
            _ => format!("  authzid: {}", quote(authzid)),
        },
        format!("  authcid: {}", quote(authcid)),
        format!("  password: {}", secret(password)),
    ]
    .into_iter()
    .chain(not_utf8)
    .collect()
}

fn scram_lines(mech: Mechanism, direction: Direction, bytes: &[u8], show: bool) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return vec![format!("{mech} message, malformed: not UTF-8")];
    };
    let client = direction == Direction::ClientToServer;
    let (title, body) = match text.split(',').next().unwrap_or_default() {
        "" if client => {
            return vec![format!(
                "{mech}: empty response (acknowledges server-final)"
            )];
        }
        "" => {
            return vec![format!(
                "{mech}: empty challenge (the server asks for client-first)"
            )];
        }
        first if client && first.starts_with("c=") => ("client-final", text),
        _ if client => match scram::parse_gs2(text) {
            Ok(gs2) => {
                let flag = match gs2.flag {
                    Gs2Flag::Flag(ChannelBinding::None) => "no channel binding".to_owned(),
                    Gs2Flag::Flag(_) => {
                        "client supports channel binding, but thinks the server does not".to_owned()
                    }
                    Gs2Flag::Plus(name) => format!("channel binding required, type {name:?}"),
                };
                let authzid = gs2
                    .authzid
                    .map(|a| format!(", authzid {}", quote(a.as_bytes())));
                let header = format!(
                    "  gs2 header {}: {flag}{}",
                    quote(gs2.header.as_bytes()),
                    authzid.unwrap_or_default()
                );
                return std::iter::once(format!("{mech} client-first"))
                    .chain([header])
                    .chain(attribute_lines(gs2.rest, show))
                    .collect();
            }
            Err(e) => return vec![format!("{mech} client-first, malformed: {e}")],
        },
        first if first.starts_with("r=") || first.starts_with("m=") => ("server-first", text),
        _ => ("server-final", text),
    };
    std::iter::once(format!("{mech} {title}"))
        .chain(attribute_lines(body, show))
        .collect()
}

fn attribute_lines(text: &str, show: bool) -> Vec<String> {
    let attrs = match scram::attributes(text) {
        Ok(attrs) => attrs,
        Err(e) => return vec![format!("  malformed: {e}")],
    };
    attrs
        .into_iter()
        .map(|(name, value)| format!("  {}", attribute(name, value, show)))
        .collect()
}

fn attribute(name: char, value: &str, show: bool) -> String {
    let bytes = |what| match scram::base64(value, what) {
        Ok(b) => Ok(b),
        Err(e) => Err(format!("{name}={value}: {e}")),
    };
    match name {
        'n' | 'a' => match scram::unescape_saslname(value) {
            Ok(user) => format!(
                "{name}={value}: {} {}",
                if name == 'n' { "username" } else { "authzid" },
                quote(user.as_bytes())
            ),
            Err(e) => format!("{name}={value}: {e}"),
        },
        'r' => format!("r={value}: nonce ({} characters)", value.len()),
        's' => bytes("salt")
            .map(|s| format!("s={value}: salt ({} bytes)", s.len()))
            .unwrap_or_else(|e| e),
        'i' => match scram::iterations(value) {
            Ok(i) if i > MAX_SCRAM_ITERATIONS => format!(
                "i={i}: iteration count, above the {MAX_SCRAM_ITERATIONS} mailscope accepts"
            ),
            Ok(i) if i < 4096 => {
                format!("i={i}: iteration count, below the 4096 RFC 7677 asks for")
            }
            Ok(i) => format!("i={i}: iteration count"),
            Err(e) => format!("i={value}: {e}"),
        },
        'c' => bytes("c=")
            .map(|c| {
                // cbind-input: the GS2 header (up to its second comma), then the binding data.
                let header_end = c
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b',')
                    .nth(1)
                    .map_or(c.len(), |(i, _)| i + 1);
                let (header, data) = c.split_at(header_end);
                if data.is_empty() {
                    format!("c={value}: channel binding: GS2 header {}", quote(header))
                } else {
                    format!(
                        "c={value}: channel binding: GS2 header {} and {} bytes of channel binding data",
                        quote(header),
                        data.len()
                    )
                }
            })
            .unwrap_or_else(|e| e),
        'p' if show => format!("p={value}: client proof"),
        'p' => "p=<proof>: client proof (hidden)".into(),
        'v' => {
            format!("v={value}: server signature (the server's proof that it knows the password)")
        }
        'e' => format!("e={value}: server error"),
        'm' => format!("m={value}: mandatory extension (unknown: the exchange must fail)"),
        _ => format!("{name}={value}: extension"),
    }
}
