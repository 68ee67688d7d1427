//! The server side of one exchange, for mailscope's test server and for checking clients.

use std::num::NonZeroU32;

use md5::Md5;

use super::scram::{self, Gs2Flag, Hash, Keys};
use super::{MAX_MESSAGE_LEN, MAX_NAME_LEN, Mechanism, SaslError};
use crate::secret::Secret;

/// RFC 7677's minimum iteration count, the default here.
const DEFAULT_ITERATIONS: NonZeroU32 = NonZeroU32::new(4096).expect("4096 is not zero");

/// Where the server finds a user's password.
pub trait PasswordLookup {
    /// The password of `authcid`, or `None` if there is no such user.
    fn password(&self, authcid: &str) -> Option<Secret<String>>;
}

impl<F: Fn(&str) -> Option<Secret<String>>> PasswordLookup for F {
    fn password(&self, authcid: &str) -> Option<Secret<String>> {
        self(authcid)
    }
}

/// What the server does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Send this challenge (raw; the protocol layer base64-encodes it) and wait for the
    /// client's response.
    Challenge(Vec<u8>),
    /// Authenticated. The caller decides whether `authcid` may act as `authzid`.
    Success {
        /// The identity to act as, if the client asked for one other than `authcid`.
        authzid: Option<String>,
        /// The authenticated username.
        authcid: String,
        /// SCRAM server-final (`v=…`). Protocols that can't send data with success (SMTP)
        /// send it as one more challenge and report success after the empty response.
        additional_data: Option<Vec<u8>>,
    },
    /// Failed; the exchange is over.
    Failure(SaslFailure),
}

/// Why a server-side exchange failed: detail for the operator's transcript. Tell the client
/// no more than "authentication failed" — in particular, answer [`UnknownUser`] and
/// [`WrongPassword`] alike, or the difference reveals which users exist.
///
/// [`UnknownUser`]: SaslFailure::UnknownUser
/// [`WrongPassword`]: SaslFailure::WrongPassword
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslFailure {
    /// The client message does not follow the mechanism's grammar; says what was wrong.
    #[error("malformed client message: {0}")]
    Malformed(String),
    /// The client message or a name in it is over the limit.
    #[error("{what} of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// No such user.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// The password (or proof, or digest) does not match.
    #[error("wrong password for {0:?}")]
    WrongPassword(String),
    /// The SCRAM client-final nonce is not the one of this exchange (a replay).
    #[error("SCRAM client-final nonce does not match this exchange")]
    NonceMismatch,
    /// The SCRAM channel-binding data is wrong or asks for binding this mechanism lacks.
    #[error("channel binding: {0}")]
    ChannelBinding(String),
    /// A call that does not fit the state of the exchange.
    #[error("out of sequence: {0}")]
    OutOfSequence(&'static str),
}

/// The server side of one SASL exchange.
///
/// Call [`start`](Self::start) for the first challenge unless the client sent an initial
/// response, then [`step`](Self::step) with every client message until it returns
/// [`ServerStep::Success`] or [`ServerStep::Failure`]. Never panics on client input.
#[derive(Debug)]
pub struct ServerSession {
    mech: Mechanism,
    nonce: String,
    hostname: String,
    salt: Vec<u8>,
    iterations: NonZeroU32,
    state: State,
}

#[derive(Debug)]
enum State {
    Start,
    CramChallengeSent { challenge: String },
    LoginAwaitPassword { username: String },
    ScramFirstSent(Box<ScramPending>),
    Done,
}

/// What the server must remember between SCRAM server-first and client-final.
#[derive(Debug)]
struct ScramPending {
    authzid: Option<String>,
    authcid: String,
    gs2_header: String,
    /// `client-first-bare "," server-first`: the start of the AuthMessage.
    auth_prefix: String,
    nonce: String,
}

impl ServerSession {
    /// Starts an exchange. `nonce` is the server's random part (the caller supplies it; the
    /// core has no randomness): the CRAM-MD5 challenge is `<nonce@hostname>` as RFC 2195
    /// suggests, and SCRAM appends it to the client nonce. It must be non-empty printable
    /// ASCII without `,`; `hostname` likewise, without `<`, `>` or `@`.
    ///
    /// The SCRAM salt defaults to the nonce's bytes and the iteration count to 4096 (RFC 7677's
    /// minimum); see [`with_scram_salt`](Self::with_scram_salt).
    pub fn new(mech: Mechanism, nonce: &str, hostname: &str) -> Result<Self, SaslError> {
        if !scram::valid_nonce(nonce) {
            return Err(SaslError::InvalidParameter(
                "the server nonce must be non-empty printable ASCII without ','",
            ));
        }
        if !scram::valid_nonce(hostname) || hostname.contains(['<', '>', '@']) {
            return Err(SaslError::InvalidParameter(
                "the hostname must be printable ASCII",
            ));
        }
        Ok(Self {
            mech,
            nonce: nonce.to_owned(),
            hostname: hostname.to_owned(),
            salt: nonce.as_bytes().to_vec(),
            iterations: DEFAULT_ITERATIONS,
            state: State::Start,
        })
    }

    /// Sets the SCRAM salt and iteration count announced in server-first. A real server keeps
    /// one salt per user; this one derives the keys from the looked-up password on the fly,
    /// so any salt works.
    pub fn with_scram_salt(mut self, salt: impl Into<Vec<u8>>, iterations: NonZeroU32) -> Self {
        self.salt = salt.into();
        self.iterations = iterations;
        self
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// The first challenge, when the client gave no initial response: `Username:` for LOGIN,
    /// `<nonce@hostname>` for CRAM-MD5, and an empty challenge ("send your initial response")
    /// for PLAIN and SCRAM.
    pub fn start(&mut self) -> ServerStep {
        if !matches!(self.state, State::Start) {
            self.state = State::Done;
            return ServerStep::Failure(SaslFailure::OutOfSequence(
                "start after the exchange began",
            ));
        }
        match self.mech {
            Mechanism::Login => ServerStep::Challenge(b"Username:".to_vec()),
            Mechanism::CramMd5 => {
                let challenge = format!("<{}@{}>", self.nonce, self.hostname);
                let bytes = challenge.clone().into_bytes();
                self.state = State::CramChallengeSent { challenge };
                ServerStep::Challenge(bytes)
            }
            _ => ServerStep::Challenge(Vec::new()),
        }
    }

    /// Handles one client message (the initial response or the answer to a challenge).
    pub fn step(&mut self, client_data: &[u8], lookup: &dyn PasswordLookup) -> ServerStep {
        self.try_step(client_data, lookup)
            .unwrap_or_else(ServerStep::Failure)
    }

    fn try_step(
        &mut self,
        data: &[u8],
        lookup: &dyn PasswordLookup,
    ) -> Result<ServerStep, SaslFailure> {
        if data.len() > MAX_MESSAGE_LEN {
            self.state = State::Done;
            let len = data.len();
            return Err(SaslFailure::TooLarge {
                what: "client message",
                len,
                limit: MAX_MESSAGE_LEN,
            });
        }
        // Every path that does not set a new state leaves the exchange over.
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start => match self.mech {
                Mechanism::Plain => plain(data, lookup),
                // Many clients send the username as an initial response; accept it.
                Mechanism::Login => {
                    let username = name(data, "username")?.to_owned();
                    self.state = State::LoginAwaitPassword { username };
                    Ok(ServerStep::Challenge(b"Password:".to_vec()))
                }
                Mechanism::CramMd5 => Err(SaslFailure::OutOfSequence(
                    "CRAM-MD5 has no initial response",
                )),
                Mechanism::ScramSha1 | Mechanism::ScramSha256 => self.scram_first(data),
            },
            State::LoginAwaitPassword { username } => {
                let password = utf8(data, "password")?;
                check_password(lookup, &username, password.as_bytes())?;
                Ok(success(None, username, None))
            }
            State::CramChallengeSent { challenge } => cram_md5(&challenge, data, lookup),
            State::ScramFirstSent(pending) => self.scram_final(*pending, data, lookup),
            State::Done => Err(SaslFailure::OutOfSequence("the exchange is over")),
        }
    }

    /// client-first: GS2 header, `n=`, `r=`; answers server-first. The password is looked up
    /// only at client-final, so unknown users get a normal-looking server-first and the
    /// failure at the same point as a wrong password (RFC 5802 §5.1, against user probing).
    fn scram_first(&mut self, data: &[u8]) -> Result<ServerStep, SaslFailure> {
        let malformed = SaslFailure::Malformed;
        let gs2 = scram::parse_gs2(utf8(data, "client-first")?).map_err(malformed)?;
        if let Gs2Flag::Plus(name) = gs2.flag {
            return Err(SaslFailure::ChannelBinding(format!(
                "client requires channel binding {name:?}, which {} does not do",
                self.mech
            )));
        }
        if let Some(authzid) = &gs2.authzid {
            name(authzid.as_bytes(), "authzid")?;
        }
        let attrs = scram::attributes(gs2.rest).map_err(malformed)?;
        if let Some(('m', _)) = attrs.first() {
            return Err(malformed("unsupported mandatory extension m=".into()));
        }
        let mut attrs = attrs.into_iter();
        let username =
            scram::expect(&mut attrs, 'n', "username").and_then(scram::unescape_saslname);
        let authcid = username.map_err(malformed)?;
        name(authcid.as_bytes(), "username")?;
        let client_nonce = scram::expect(&mut attrs, 'r', "nonce").map_err(malformed)?;
        if !scram::valid_nonce(client_nonce) {
            return Err(malformed("the client nonce must be printable ASCII".into()));
        }
        let nonce = format!("{client_nonce}{}", self.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            scram::to_base64(&self.salt),
            self.iterations
        );
        self.state = State::ScramFirstSent(Box::new(ScramPending {
            authzid: gs2.authzid,
            authcid,
            gs2_header: gs2.header.to_owned(),
            auth_prefix: format!("{},{server_first}", gs2.rest),
            nonce,
        }));
        Ok(ServerStep::Challenge(server_first.into_bytes()))
    }

    /// client-final: `c=`, `r=`, extensions, `p=` last; checks binding, nonce and proof.
    fn scram_final(
        &mut self,
        pending: ScramPending,
        data: &[u8],
        lookup: &dyn PasswordLookup,
    ) -> Result<ServerStep, SaslFailure> {
        let malformed = SaslFailure::Malformed;
        let hash = Hash::of(self.mech).ok_or(SaslFailure::OutOfSequence("not SCRAM"))?;
        let text = utf8(data, "client-final")?;
        let (without_proof, proof) = text
            .rsplit_once(',')
            .and_then(|(rest, proof)| Some((rest, proof.strip_prefix("p=")?)))
            .ok_or_else(|| malformed("the proof p= must be the last attribute".into()))?;
        let proof = scram::base64(proof, "proof").map_err(malformed)?;
        if proof.len() != hash.len() {
            return Err(malformed(format!(
                "proof of {} bytes, expected {}",
                proof.len(),
                hash.len()
            )));
        }
        let mut attrs = scram::attributes(without_proof)
            .map_err(malformed)?
            .into_iter();
        let binding =
            scram::expect(&mut attrs, 'c', "channel binding").and_then(|c| scram::base64(c, "c="));
        if binding.map_err(malformed)? != pending.gs2_header.as_bytes() {
            return Err(SaslFailure::ChannelBinding(
                "c= does not repeat the GS2 header".into(),
            ));
        }
        if scram::expect(&mut attrs, 'r', "nonce").map_err(malformed)? != pending.nonce {
            return Err(SaslFailure::NonceMismatch);
        }
        let password = lookup.password(&pending.authcid);
        let password = password.ok_or_else(|| SaslFailure::UnknownUser(pending.authcid.clone()))?;
        let keys = Keys::derive(hash, password.expose(), &self.salt, self.iterations.get());
        let auth_message = format!("{},{without_proof}", pending.auth_prefix);
        if !keys.verify_proof(&auth_message, &proof) {
            return Err(SaslFailure::WrongPassword(pending.authcid));
        }
        let server_final = format!(
            "v={}",
            scram::to_base64(&keys.server_signature(&auth_message))
        );
        Ok(success(
            pending.authzid,
            pending.authcid,
            Some(server_final.into_bytes()),
        ))
    }
}

fn success(authzid: Option<String>, authcid: String, data: Option<Vec<u8>>) -> ServerStep {
    ServerStep::Success {
        authzid,
        authcid,
        additional_data: data,
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`, all UTF-8.
fn plain(data: &[u8], lookup: &dyn PasswordLookup) -> Result<ServerStep, SaslFailure> {
    let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let [authzid, authcid, password] = parts[..] else {
        return Err(SaslFailure::Malformed(format!(
            "PLAIN needs 2 NUL separators, found {}",
            parts.len() - 1
        )));
    };
    let authzid = match authzid {
        [] => None,
        _ => Some(name(authzid, "authzid")?.to_owned()),
    };
    let authcid = name(authcid, "authcid")?.to_owned();
    if password.is_empty() {
        return Err(SaslFailure::Malformed("empty password".into()));
    }
    utf8(password, "password")?;
    check_password(lookup, &authcid, password)?;
    Ok(success(authzid, authcid, None))
}

/// RFC 2195: `username SP 32-hex-digit HMAC-MD5`.
fn cram_md5(
    challenge: &str,
    data: &[u8],
    lookup: &dyn PasswordLookup,
) -> Result<ServerStep, SaslFailure> {
    let malformed =
        || SaslFailure::Malformed("expected \"username SP 32-hex-digit digest\"".into());
    let (user, hex) = utf8(data, "CRAM-MD5 response")?
        .rsplit_once(' ')
        .ok_or_else(malformed)?;
    let user = name(user.as_bytes(), "username")?.to_owned();
    let digest = decode_hex(hex)
        .filter(|d| d.len() == 16)
        .ok_or_else(malformed)?;
    let password = lookup
        .password(&user)
        .ok_or_else(|| SaslFailure::UnknownUser(user.clone()))?;
    let expected =
        scram::hmac::<hmac::Hmac<Md5>>(password.expose().as_bytes(), challenge.as_bytes());
    if !scram::ct_eq(&digest, &expected) {
        return Err(SaslFailure::WrongPassword(user));
    }
    Ok(success(None, user, None))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

fn check_password(
    lookup: &dyn PasswordLookup,
    authcid: &str,
    given: &[u8],
) -> Result<(), SaslFailure> {
    let password = lookup
        .password(authcid)
        .ok_or_else(|| SaslFailure::UnknownUser(authcid.into()))?;
    if scram::ct_eq(password.expose().as_bytes(), given) {
        Ok(())
    } else {
        Err(SaslFailure::WrongPassword(authcid.into()))
    }
}

fn utf8<'a>(data: &'a [u8], what: &str) -> Result<&'a str, SaslFailure> {
    std::str::from_utf8(data)
        .map_err(|e| SaslFailure::Malformed(format!("{what} is not UTF-8: {e}")))
}

/// A username or authzid: UTF-8, not empty, at most [`MAX_NAME_LEN`] bytes.
fn name<'a>(data: &'a [u8], what: &'static str) -> Result<&'a str, SaslFailure> {
    if data.len() > MAX_NAME_LEN {
        return Err(SaslFailure::TooLarge {
            what,
            len: data.len(),
            limit: MAX_NAME_LEN,
        });
    }
    if data.is_empty() {
        return Err(SaslFailure::Malformed(format!("empty {what}")));
    }
    utf8(data, what)
}
