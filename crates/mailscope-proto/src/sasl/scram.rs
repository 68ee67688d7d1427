//! SCRAM building blocks shared by the client, the server and [`super::explain()`]: the key
//! derivation (RFC 5802 §3), the message grammar (§7) and saslname escaping.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{ChannelBinding, Mechanism};

/// The hash function a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    pub(crate) fn of(mech: Mechanism) -> Option<Self> {
        match mech {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(Hash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(Hash::Sha256),
            _ => None,
        }
    }

    /// Output length in bytes, which is also the length of a proof or signature.
    pub(crate) fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => hmac::<Hmac<Sha1>>(key, data),
            Hash::Sha256 => hmac::<Hmac<Sha256>>(key, data),
        }
    }

    /// `Hi()` of RFC 5802 §2.2, which is PBKDF2 with HMAC and a one-hash-long output.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        match self {
            Hash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            Hash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        }
        out
    }
}

/// HMAC of `data` keyed with `key`; shared with CRAM-MD5.
pub(crate) fn hmac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The keys both sides derive from the password (RFC 5802 §3). A server that stores only
/// `StoredKey` and `ServerKey` would need no password; the lookup here hands out passwords,
/// so both sides simply derive everything.
pub(crate) struct Keys {
    hash: Hash,
    client_key: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Keys {
    pub(crate) fn derive(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Keys {
            hash,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
            client_key,
        }
    }

    /// `ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage)`.
    pub(crate) fn client_proof(&self, auth_message: &str) -> Vec<u8> {
        let signature = self.hash.hmac(&self.stored_key, auth_message.as_bytes());
        xor(&self.client_key, &signature)
    }

    /// `ServerSignature = HMAC(ServerKey, AuthMessage)`.
    pub(crate) fn server_signature(&self, auth_message: &str) -> Vec<u8> {
        self.hash.hmac(&self.server_key, auth_message.as_bytes())
    }

    /// The server's check: recover `ClientKey` from the proof and compare its hash with
    /// `StoredKey` (RFC 5802 §3), in constant time.
    pub(crate) fn verify_proof(&self, auth_message: &str, proof: &[u8]) -> bool {
        let signature = self.hash.hmac(&self.stored_key, auth_message.as_bytes());
        proof.len() == signature.len()
            && ct_eq(&self.hash.digest(&xor(proof, &signature)), &self.stored_key)
    }
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Compares without an early exit, so timing does not tell how many leading bytes of a
/// guess were right.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `s` is a usable nonce: non-empty printable ASCII without `,` (RFC 5802 §7).
pub(crate) fn valid_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Escapes a name for `n=` or `a=`: `=` → `=3D`, `,` → `=2C` (RFC 5802 §5.1).
pub(crate) fn escape_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// Reverses [`escape_saslname`]; any other `=` sequence is invalid.
pub(crate) fn unescape_saslname(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if after.starts_with("=2C") {
            out.push(',');
        } else if after.starts_with("=3D") {
            out.push('=');
        } else {
            return Err(format!(
                "bad escape in saslname {s:?}: only =2C and =3D are allowed"
            ));
        }
        rest = &after[3..];
    }
    out.push_str(rest);
    if out.contains('\0') {
        return Err("NUL in saslname".into());
    }
    Ok(out)
}

/// Splits `a=1,b=2` into `[('a', "1"), ('b', "2")]`; every attribute is one ASCII letter.
pub(crate) fn attributes(msg: &str) -> Result<Vec<(char, &str)>, String> {
    msg.split(',')
        .map(|field| {
            let mut chars = field.chars();
            match (chars.next(), chars.next()) {
                (Some(name), Some('=')) if name.is_ascii_alphabetic() => Ok((name, &field[2..])),
                _ => Err(format!("{field:?} is not an attribute=value pair")),
            }
        })
        .collect()
}

/// Takes the value of attribute `name`, which must come next.
pub(crate) fn expect<'a>(
    attrs: &mut impl Iterator<Item = (char, &'a str)>,
    name: char,
    what: &str,
) -> Result<&'a str, String> {
    match attrs.next() {
        Some((n, value)) if n == name => Ok(value),
        Some((n, _)) => Err(format!("expected {name}= ({what}), found {n}=")),
        None => Err(format!("missing {name}= ({what})")),
    }
}

/// Decodes base64 that must be there.
pub(crate) fn base64(value: &str, what: &str) -> Result<Vec<u8>, String> {
    B64.decode(value)
        .map_err(|e| format!("{what} is not valid base64: {e}"))
}

pub(crate) fn to_base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Parses an iteration count (`posit-number`: no sign, no leading zero).
pub(crate) fn iterations(value: &str) -> Result<u32, String> {
    if value.starts_with('0') || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "iteration count {value:?} is not a positive number"
        ));
    }
    value
        .parse()
        .map_err(|_| format!("iteration count {value} is too large"))
}

/// The channel-binding flag of a GS2 header as received: `n` or `y`, or `p=` with the
/// channel-binding type name as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gs2Flag<'a> {
    Flag(ChannelBinding),
    Plus(&'a str),
}

/// A parsed GS2 header (RFC 5802 §7): flag, authzid, and the header text itself (which the
/// client repeats, base64-encoded, in `c=`).
pub(crate) struct Gs2Header<'a> {
    pub flag: Gs2Flag<'a>,
    pub authzid: Option<String>,
    pub header: &'a str,
    pub rest: &'a str,
}

/// Splits a client-first message into its GS2 header and the bare part.
pub(crate) fn parse_gs2(msg: &str) -> Result<Gs2Header<'_>, String> {
    let mut parts = msg.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("no GS2 header (expected \"n,,\" or similar)".into());
    };
    let flag = match flag {
        "n" => Gs2Flag::Flag(ChannelBinding::None),
        "y" => Gs2Flag::Flag(ChannelBinding::NotSupportedByClient),
        _ => match flag.strip_prefix("p=") {
            Some(name) if !name.is_empty() => Gs2Flag::Plus(name),
            _ => return Err(format!("bad GS2 channel-binding flag {flag:?}")),
        },
    };
    let authzid = match authzid {
        "" => None,
        _ => match authzid.strip_prefix("a=") {
            Some(name) if !name.is_empty() => Some(unescape_saslname(name)?),
            _ => return Err(format!("bad GS2 authzid {authzid:?}")),
        },
    };
    let header = &msg[..msg.len() - rest.len()];
    Ok(Gs2Header {
        flag,
        authzid,
        header,
        rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_round_trip() {
        for name in ["user", "a,b=c", "=2C", ",,==", ""] {
            assert_eq!(
                unescape_saslname(&escape_saslname(name)).as_deref(),
                Ok(name)
            );
        }
        assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
        assert!(unescape_saslname("a=2").is_err());
        assert!(unescape_saslname("a=41").is_err());
        assert!(unescape_saslname("a=").is_err());
    }

    #[test]
    fn gs2_headers() {
        let h = parse_gs2("n,a=bob=2C,n=u,r=x").expect("valid");
        assert_eq!(
            (h.authzid.as_deref(), h.header, h.rest),
            (Some("bob,"), "n,a=bob=2C,", "n=u,r=x")
        );
        assert_eq!(
            parse_gs2("p=tls-unique,,n=u").expect("valid").flag,
            Gs2Flag::Plus("tls-unique")
        );
        for bad in ["", "n", "n,", "x,,n=u", "p=,,n=u", "n,b=x,n=u", "n,a=,n=u"] {
            assert!(parse_gs2(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn iteration_counts() {
        assert_eq!(iterations("4096"), Ok(4096));
        for bad in ["", "0", "04096", "-1", "+1", "4294967296", "1e3"] {
            assert!(iterations(bad).is_err(), "{bad:?}");
        }
    }
}
