//! The server side of one exchange, for mailscope's test server and for checking clients.

use std::num::NonZeroU32;

use md5::Md5;

use super::oauth::{self, OAuthClientMessage, OAuthMechanism};
use super::scram::{self, Gs2Flag, Hash, Keys};
use super::{
    ChannelBinding, ChannelBindingData, ChannelBindingType, MAX_MESSAGE_LEN, MAX_NAME_LEN,
    Mechanism, SaslError,
};
use crate::secret::Secret;

/// The error challenge sent when an XOAUTH2 or OAUTHBEARER token is refused (RFC 7628
/// §3.2.2; Google's XOAUTH2 sends the same shape).
pub const OAUTH_ERROR_CHALLENGE: &str =
    r#"{"status":"invalid_token","schemes":"bearer","scope":"mail"}"#;

/// RFC 7677's minimum iteration count, the default here.
const DEFAULT_ITERATIONS: NonZeroU32 = NonZeroU32::new(4096).expect("4096 is not zero");

/// Where the server finds a user's password (for XOAUTH2 and OAUTHBEARER: the token it
/// expects from the user; for EXTERNAL: whether the certificate's identity is a user at all).
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
    /// XOAUTH2 / OAUTHBEARER: the bearer token is missing or not the expected one.
    #[error("bearer token refused for {0:?}")]
    InvalidToken(String),
    /// EXTERNAL without an identity established outside SASL (no verified TLS client
    /// certificate).
    #[error("EXTERNAL needs a verified TLS client certificate, and the client presented none")]
    NoExternalIdentity,
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
    channel_binding: ChannelBindingData,
    channel_binding_used: Option<ChannelBindingType>,
    external_identity: Option<String>,
    state: State,
}

#[derive(Debug)]
enum State {
    Start,
    /// XOAUTH2 / OAUTHBEARER: the error challenge went out; the client's acknowledgement
    /// ends the exchange with this failure.
    OAuthErrorSent(SaslFailure),
    CramChallengeSent {
        challenge: String,
    },
    LoginAwaitPassword {
        username: String,
    },
    ScramFirstSent(Box<ScramPending>),
    Done,
}

/// What the server must remember between SCRAM server-first and client-final.
#[derive(Debug)]
struct ScramPending {
    authzid: Option<String>,
    authcid: String,
    gs2_header: String,
    /// The channel binding data the client must have used (empty for `n` and `y`).
    cb_data: Vec<u8>,
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
            channel_binding: ChannelBindingData::default(),
            channel_binding_used: None,
            external_identity: None,
            state: State::Start,
        })
    }

    /// The channel binding data of the connection (from the TLS layer), which means this
    /// server supports channel binding here: the `-PLUS` mechanisms check the client's `c=`
    /// against it, and a non-`PLUS` SCRAM client that says `y` ("I could bind, but you
    /// cannot") is refused as a downgrade (RFC 5802 §6). Give it only when the `-PLUS`
    /// mechanisms were offered; leave it out (empty) outside TLS.
    pub fn with_channel_binding(mut self, data: ChannelBindingData) -> Self {
        self.channel_binding = data;
        self
    }

    /// EXTERNAL: the identity established outside SASL, i.e. the name from the client's
    /// verified TLS certificate; without one EXTERNAL fails.
    pub fn with_external_identity(mut self, identity: Option<String>) -> Self {
        self.external_identity = identity;
        self
    }

    /// The channel binding type a `-PLUS` client used, once its client-first was accepted.
    pub fn channel_binding_used(&self) -> Option<ChannelBindingType> {
        self.channel_binding_used
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
                m if m.is_scram() => self.scram_first(data),
                Mechanism::XOauth2 | Mechanism::OAuthBearer => self.oauth(data, lookup),
                _ => self.external(data, lookup),
            },
            State::OAuthErrorSent(failure) => {
                let mech = OAuthMechanism::of(self.mech)
                    .ok_or(SaslFailure::OutOfSequence("not an OAuth mechanism"))?;
                if data == mech.error_acknowledgement() {
                    Err(failure)
                } else {
                    Err(SaslFailure::Malformed(format!(
                        "expected the acknowledgement of the error challenge ({}), got {} bytes; refused anyway: {failure}",
                        if mech == OAuthMechanism::XOAuth2 {
                            "an empty response"
                        } else {
                            "^A"
                        },
                        data.len()
                    )))
                }
            }
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
        let cb_data = self.check_gs2_flag(&gs2.flag)?;
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
            cb_data,
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
        let binding = binding.map_err(malformed)?;
        let header = pending.gs2_header.as_bytes();
        if !binding.starts_with(header) {
            return Err(SaslFailure::ChannelBinding(
                "c= does not repeat the GS2 header".into(),
            ));
        }
        if !scram::ct_eq(&binding[header.len()..], &pending.cb_data) {
            let what = match self.channel_binding_used {
                Some(ty) => format!(
                    "the client's {ty} data ({} bytes) is not this connection's: the client and the server do not see the same TLS channel (a TLS-terminating proxy, or a man in the middle)",
                    binding.len() - header.len()
                ),
                None => {
                    "c= carries data after the GS2 header, but no channel binding was agreed".into()
                }
            };
            return Err(SaslFailure::ChannelBinding(what));
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

impl ServerSession {
    /// The channel binding data client-first commits to (empty for `n` and `y`), or why the
    /// GS2 flag is refused.
    fn check_gs2_flag(&mut self, flag: &Gs2Flag<'_>) -> Result<Vec<u8>, SaslFailure> {
        let mech = self.mech;
        match (flag, mech.is_scram_plus()) {
            (Gs2Flag::Plus(name), true) => {
                // cb-names are compared as sent: they are case-sensitive on the wire.
                let Some(ty) = ChannelBindingType::ALL
                    .iter()
                    .copied()
                    .find(|t| t.name() == *name)
                else {
                    return Err(SaslFailure::ChannelBinding(format!(
                        "unsupported channel binding type {name:?} (this server: tls-exporter, tls-server-end-point)"
                    )));
                };
                let Some(data) = self.channel_binding.get(ty) else {
                    return Err(SaslFailure::ChannelBinding(format!(
                        "no {ty} data on this connection{}",
                        if self.channel_binding.is_empty() {
                            " (not inside TLS)"
                        } else {
                            ""
                        }
                    )));
                };
                self.channel_binding_used = Some(ty);
                Ok(data.to_vec())
            }
            (Gs2Flag::Plus(name), false) => Err(SaslFailure::ChannelBinding(format!(
                "client requires channel binding {name:?}, which {mech} does not do (its -PLUS variant does)"
            ))),
            (Gs2Flag::Flag(f), true) => Err(SaslFailure::ChannelBinding(format!(
                "{mech} requires channel binding, but the client sent the GS2 flag {:?}",
                f.gs2_flag()
            ))),
            (Gs2Flag::Flag(ChannelBinding::NotSupportedByClient), false)
                if !self.channel_binding.is_empty() =>
            {
                Err(SaslFailure::ChannelBinding(
                    "the client says \"y\" (it could bind to the channel, but thinks this server cannot), yet this server offers -PLUS: a downgrade by a man in the middle, or a client that did not see the offer (RFC 5802 §6)".into(),
                ))
            }
            (Gs2Flag::Flag(_), false) => Ok(Vec::new()),
        }
    }

    /// XOAUTH2 / OAUTHBEARER initial response: the user and token; the token must be the one
    /// `lookup` has for the user. A refusal is the JSON error challenge (RFC 7628 §3.2.2),
    /// and the exchange fails when the client acknowledges it.
    fn oauth(
        &mut self,
        data: &[u8],
        lookup: &dyn PasswordLookup,
    ) -> Result<ServerStep, SaslFailure> {
        let mech = OAuthMechanism::of(self.mech).ok_or(SaslFailure::OutOfSequence("not OAuth"))?;
        let message = oauth::parse_client_message(mech, data).map_err(|e| match e {
            SaslError::Malformed(m) => SaslFailure::Malformed(m),
            other => SaslFailure::Malformed(other.to_string()),
        })?;
        let response = match message {
            OAuthClientMessage::Initial(r) => r,
            OAuthClientMessage::ErrorAcknowledgement => {
                return Err(SaslFailure::OutOfSequence(
                    "an acknowledgement without an error challenge",
                ));
            }
        };
        if response
            .gs2_flag
            .as_deref()
            .is_some_and(|f| f.starts_with("p="))
        {
            return Err(SaslFailure::ChannelBinding(
                "OAUTHBEARER defines no channel binding".into(),
            ));
        }
        let Some(user) = response.user.clone() else {
            return Err(SaslFailure::Malformed(
                "no user (OAUTHBEARER's a= authzid): the server cannot tell whose token it is"
                    .into(),
            ));
        };
        name(user.as_bytes(), "user")?;
        let token = response.bearer_token();
        let verdict = match (lookup.password(&user), token) {
            (None, _) => Err(SaslFailure::UnknownUser(user.clone())),
            (Some(expected), Some(token))
                if !token.expose().is_empty()
                    && scram::ct_eq(expected.expose().as_bytes(), token.expose()) =>
            {
                Ok(())
            }
            (Some(_), _) => Err(SaslFailure::InvalidToken(user.clone())),
        };
        match verdict {
            Ok(()) => Ok(success(None, user, None)),
            Err(failure) => {
                self.state = State::OAuthErrorSent(failure);
                Ok(ServerStep::Challenge(
                    OAUTH_ERROR_CHALLENGE.as_bytes().to_vec(),
                ))
            }
        }
    }

    /// EXTERNAL: the message is the authzid (empty: none); the identity is the one
    /// established outside SASL, which `lookup` must know.
    fn external(
        &mut self,
        data: &[u8],
        lookup: &dyn PasswordLookup,
    ) -> Result<ServerStep, SaslFailure> {
        if data.len() > MAX_NAME_LEN {
            return Err(SaslFailure::TooLarge {
                what: "authzid",
                len: data.len(),
                limit: MAX_NAME_LEN,
            });
        }
        let authzid = utf8(data, "authzid")?;
        if authzid.contains('\0') {
            return Err(SaslFailure::Malformed("NUL in the authzid".into()));
        }
        let identity = self
            .external_identity
            .clone()
            .ok_or(SaslFailure::NoExternalIdentity)?;
        if lookup.password(&identity).is_none() {
            return Err(SaslFailure::UnknownUser(identity));
        }
        let authzid = (!authzid.is_empty()).then(|| authzid.to_owned());
        Ok(success(authzid, identity, None))
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
