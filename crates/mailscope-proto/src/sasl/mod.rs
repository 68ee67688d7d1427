//! SASL (RFC 4422), both sides: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login),
//! CRAM-MD5 (RFC 2195), SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), their `-PLUS`
//! variants with TLS channel binding (`tls-exporter`, RFC 9266; `tls-server-end-point`,
//! RFC 5929), XOAUTH2 and OAUTHBEARER (RFC 7628; the builders and parsers are in [`oauth`]),
//! and EXTERNAL (RFC 4422 appendix A).
//!
//! Every message here is the **raw** SASL payload: the SMTP, IMAP and POP3 layers do the
//! base64 and the `334`/`+` framing, so this module can be shared by all of them and tested
//! with the RFC vectors directly.
//!
//! Like the rest of the crate it is pure: nonces, salts and iteration counts are passed in
//! by the caller, because the core has no randomness. A [`ClientSession`] or [`ServerSession`]
//! is one authentication exchange; make a new one for every attempt.
//!
//! Secrets stay inside [`Secret`]: what a client sends comes as a [`ClientMessage`] whose
//! `bytes` are secret and whose `redacted` text keeps the structure for transcripts, and
//! [`explain()`] hides passwords and proofs unless asked to show them.
//!
//! Channel binding data is computed by the TLS layer (the core has no TLS) and handed in as
//! [`ChannelBindingData`]; the SCRAM `-PLUS` mechanisms are only usable with it.
//!
//! For XOAUTH2 and OAUTHBEARER, [`Credentials::password`] holds the bearer token; for
//! EXTERNAL only [`Credentials::authzid`] is sent (the identity is the TLS client
//! certificate's).
//!
//! Not done (yet): SASLprep (RFC 4013) normalisation of SCRAM and PLAIN names and passwords
//! (no Unicode tables in the dependency set; ASCII credentials are unaffected), and the
//! `tls-unique` binding type (RFC 5929 §3; unsafe without extended master secret and
//! undefined in TLS 1.3, and rustls does not expose the Finished message).

mod client;
mod explain;
pub mod oauth;
mod scram;
mod server;
#[cfg(test)]
mod tests;

pub use client::ClientSession;
pub use explain::explain;
pub use oauth::{OAuthMechanism, OAuthServerError, OAuthTarget};
pub use server::{PasswordLookup, SaslFailure, ServerSession, ServerStep};

use crate::secret::Secret;

/// Largest SASL message either side accepts from its peer (16 KiB). Real messages are well
/// under 1 KiB; the limit keeps a hostile peer from making us hash or store megabytes.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;

/// Largest authentication or authorization identity accepted (1 KiB).
pub const MAX_NAME_LEN: usize = 1024;

/// Highest SCRAM iteration count the client accepts. The server chooses the count and the
/// client must run PBKDF2 that many times, so a hostile or broken server could otherwise
/// make the client spend minutes of CPU (`i=4294967295`). Real servers use 4096 to ~600 000.
pub const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// A SASL mechanism this module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `PLAIN`: authzid, authcid and password in one message (RFC 4616).
    Plain,
    /// `LOGIN`: username and password, each answering a server prompt (obsolete, but common).
    Login,
    /// `CRAM-MD5`: HMAC-MD5 of a server challenge keyed with the password (RFC 2195).
    CramMd5,
    /// `SCRAM-SHA-1` (RFC 5802).
    ScramSha1,
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-1-PLUS`: SCRAM-SHA-1 bound to the TLS channel (RFC 5802 §6).
    ScramSha1Plus,
    /// `SCRAM-SHA-256-PLUS`: SCRAM-SHA-256 bound to the TLS channel (RFC 7677).
    ScramSha256Plus,
    /// `XOAUTH2`: user and OAuth 2.0 bearer token (Google's, also Microsoft 365's).
    XOauth2,
    /// `OAUTHBEARER`: an OAuth 2.0 bearer token (RFC 7628).
    OAuthBearer,
    /// `EXTERNAL`: the identity established outside SASL, here the TLS client certificate
    /// (RFC 4422 appendix A); the client only names an authzid, if any.
    External,
}

impl Mechanism {
    /// The mechanisms a client picks by itself, best first: the `-PLUS` SCRAMs also prove
    /// that both ends see the same TLS channel (no man in the middle, even with a certificate
    /// the client wrongly trusted), the SCRAMs prove both sides know the password without
    /// revealing it, CRAM-MD5 at least keeps the password off the wire, and PLAIN beats LOGIN
    /// because it is standardised and needs one round trip. The `-PLUS` variants are only
    /// usable with channel binding data, i.e. inside TLS ([`Mechanism::best_of_with`]).
    ///
    /// XOAUTH2, OAUTHBEARER and EXTERNAL are never picked automatically: they need a token or
    /// a client certificate, so they are used only when asked for by name.
    pub const PREFERENCE: &[Mechanism] = &[
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
    ];

    /// Every mechanism: [`Mechanism::PREFERENCE`], then the ones used only by name.
    pub const ALL: &[Mechanism] = &[
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::XOauth2,
        Mechanism::OAuthBearer,
        Mechanism::External,
    ];

    /// The registered name, as offered in `AUTH` / `CAPABILITY` and sent in `AUTH <name>`.
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::XOauth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::External => "EXTERNAL",
        }
    }

    /// Parses a mechanism name case-insensitively (RFC 4422 §3.1 names are upper case, but
    /// servers are seen offering `auth=login` and similar).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }

    /// The best mechanism (by [`Mechanism::PREFERENCE`]) among the offered names, without
    /// channel binding (the `-PLUS` variants are skipped); unknown names are ignored.
    pub fn best_of<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        Self::best_of_with(offered, false)
    }

    /// The best mechanism among the offered names; the `-PLUS` variants count only if
    /// `channel_binding` (the caller has channel binding data, i.e. is inside TLS).
    pub fn best_of_with<'a>(
        offered: impl IntoIterator<Item = &'a str>,
        channel_binding: bool,
    ) -> Option<Self> {
        let offered: Vec<Self> = offered.into_iter().filter_map(Self::from_name).collect();
        Self::PREFERENCE
            .iter()
            .copied()
            .filter(|m| channel_binding || !m.is_scram_plus())
            .find(|m| offered.contains(m))
    }

    /// Whether a secret itself crosses the wire: the password (PLAIN, LOGIN) or a bearer
    /// token (XOAUTH2, OAUTHBEARER, which a thief can replay just the same). Only safe inside
    /// TLS.
    pub const fn sends_password_in_clear(self) -> bool {
        matches!(
            self,
            Mechanism::Plain | Mechanism::Login | Mechanism::XOauth2 | Mechanism::OAuthBearer
        )
    }

    /// Whether the client speaks first, i.e. has an initial response (PLAIN, SCRAM, the OAuth
    /// mechanisms, EXTERNAL). For the others the server's first challenge comes before
    /// anything the client can say.
    pub const fn client_first(self) -> bool {
        !matches!(self, Mechanism::Login | Mechanism::CramMd5)
    }

    /// Whether this is a SCRAM mechanism, `-PLUS` or not (the server proves it knows the
    /// password too).
    pub const fn is_scram(self) -> bool {
        matches!(
            self,
            Mechanism::ScramSha1
                | Mechanism::ScramSha256
                | Mechanism::ScramSha1Plus
                | Mechanism::ScramSha256Plus
        )
    }

    /// Whether this is a SCRAM `-PLUS` mechanism, which needs channel binding data.
    pub const fn is_scram_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }

    /// Whether this is XOAUTH2 or OAUTHBEARER (the "password" is a bearer token).
    pub const fn is_oauth(self) -> bool {
        matches!(self, Mechanism::XOauth2 | Mechanism::OAuthBearer)
    }

    /// The `-PLUS` variant of a SCRAM mechanism (itself if it is one); `None` for the others.
    pub const fn plus(self) -> Option<Self> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(Mechanism::ScramSha1Plus),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(Mechanism::ScramSha256Plus),
            _ => None,
        }
    }

    /// The mechanism without channel binding: SCRAM-SHA-256 for SCRAM-SHA-256-PLUS; any other
    /// is itself.
    pub const fn without_plus(self) -> Self {
        match self {
            Mechanism::ScramSha1Plus => Mechanism::ScramSha1,
            Mechanism::ScramSha256Plus => Mechanism::ScramSha256,
            other => other,
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<OAuthMechanism> for Mechanism {
    fn from(m: OAuthMechanism) -> Self {
        match m {
            OAuthMechanism::XOAuth2 => Mechanism::XOauth2,
            OAuthMechanism::OAuthBearer => Mechanism::OAuthBearer,
        }
    }
}

impl OAuthMechanism {
    /// The OAuth mechanism `mech` is, if it is one.
    pub const fn of(mech: Mechanism) -> Option<Self> {
        match mech {
            Mechanism::XOauth2 => Some(OAuthMechanism::XOAuth2),
            Mechanism::OAuthBearer => Some(OAuthMechanism::OAuthBearer),
            _ => None,
        }
    }
}

/// A TLS channel-binding type (RFC 5056) that SCRAM `-PLUS` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelBindingType {
    /// `tls-exporter` (RFC 9266): 32 bytes of TLS keying material exported with the label
    /// `EXPORTER-Channel-Binding` and no context. The default on TLS 1.3. Over TLS 1.2 it is
    /// only safe with the extended master secret (RFC 7627: without it a man in the middle
    /// can make two sessions share keys); rustls always offers EMS but does not say whether
    /// the peer agreed, so mailscope uses it on TLS 1.2 only when asked to, with a note.
    TlsExporter,
    /// `tls-server-end-point` (RFC 5929 §4): a hash of the server's leaf certificate
    /// (SHA-256 when the certificate is signed with MD5, SHA-1 or SHA-256, else the
    /// signature's own hash). Works with TLS 1.2 and 1.3, but only proves which certificate
    /// the server used, not which connection.
    TlsServerEndPoint,
}

impl ChannelBindingType {
    /// Both, in the order mailscope prefers them on TLS 1.3.
    pub const ALL: &[ChannelBindingType] = &[
        ChannelBindingType::TlsExporter,
        ChannelBindingType::TlsServerEndPoint,
    ];

    /// The registered name (`cb-name` in the GS2 header).
    pub const fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }

    /// Parses a registered name (case-sensitive on the wire, case-insensitive here for the
    /// command line).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for ChannelBindingType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the TLS layer knows about one connection for channel binding: the data of each type
/// it could compute, and the TLS version (which decides the default type). Empty outside
/// TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelBindingData {
    /// `tls-exporter` data (32 bytes), if the TLS layer could export it.
    pub tls_exporter: Option<Vec<u8>>,
    /// `tls-server-end-point` data (the hash of the server's leaf certificate), if there is
    /// a certificate whose signature algorithm defines the hash.
    pub tls_server_end_point: Option<Vec<u8>>,
    /// Whether the connection is TLS 1.3.
    pub tls13: bool,
}

impl ChannelBindingData {
    /// Whether no binding type is available (outside TLS).
    pub fn is_empty(&self) -> bool {
        self.tls_exporter.is_none() && self.tls_server_end_point.is_none()
    }

    /// The data of one type, if available.
    pub fn get(&self, ty: ChannelBindingType) -> Option<&[u8]> {
        match ty {
            ChannelBindingType::TlsExporter => self.tls_exporter.as_deref(),
            ChannelBindingType::TlsServerEndPoint => self.tls_server_end_point.as_deref(),
        }
    }

    /// The type to use when the user did not choose: `tls-exporter` on TLS 1.3 (RFC 9266
    /// makes it the default there), `tls-server-end-point` on TLS 1.2; whichever is
    /// available if the preferred one is not.
    pub fn default_type(&self) -> Option<ChannelBindingType> {
        let (first, second) = if self.tls13 {
            (
                ChannelBindingType::TlsExporter,
                ChannelBindingType::TlsServerEndPoint,
            )
        } else {
            (
                ChannelBindingType::TlsServerEndPoint,
                ChannelBindingType::TlsExporter,
            )
        };
        [first, second].into_iter().find(|t| self.get(*t).is_some())
    }

    /// The GS2 channel binding of type `ty` (the default type if `None`), if its data is
    /// available.
    pub fn binding(&self, ty: Option<ChannelBindingType>) -> Option<ChannelBinding> {
        let ty = ty.or_else(|| self.default_type())?;
        let data = self.get(ty)?.to_vec();
        Some(match ty {
            ChannelBindingType::TlsExporter => ChannelBinding::TlsExporter(data),
            ChannelBindingType::TlsServerEndPoint => ChannelBinding::TlsServerEndPoint(data),
        })
    }
}

/// What the client says about channel binding in the SCRAM GS2 header (RFC 5802 §6), with
/// the binding data for `p=`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ChannelBinding {
    /// `n,,`: the client does not support channel binding.
    #[default]
    None,
    /// `y,,`: the client supports it but believes the server does not; a server that does
    /// support it must then fail the exchange, which detects a downgrade of `-PLUS`.
    NotSupportedByClient,
    /// `p=tls-exporter,,` with the exported keying material (RFC 9266).
    TlsExporter(Vec<u8>),
    /// `p=tls-server-end-point,,` with the hash of the server's certificate (RFC 5929).
    TlsServerEndPoint(Vec<u8>),
}

impl ChannelBinding {
    /// The GS2 channel-binding flag: `n`, `y` or `p=<cb-name>`.
    pub const fn gs2_flag(&self) -> &'static str {
        match self {
            ChannelBinding::None => "n",
            ChannelBinding::NotSupportedByClient => "y",
            ChannelBinding::TlsExporter(_) => "p=tls-exporter",
            ChannelBinding::TlsServerEndPoint(_) => "p=tls-server-end-point",
        }
    }

    /// The binding type, for `p=`.
    pub const fn binding_type(&self) -> Option<ChannelBindingType> {
        match self {
            ChannelBinding::TlsExporter(_) => Some(ChannelBindingType::TlsExporter),
            ChannelBinding::TlsServerEndPoint(_) => Some(ChannelBindingType::TlsServerEndPoint),
            _ => None,
        }
    }

    /// The binding data that follows the GS2 header in `c=` (empty for `n` and `y`).
    pub fn data(&self) -> &[u8] {
        match self {
            ChannelBinding::TlsExporter(d) | ChannelBinding::TlsServerEndPoint(d) => d,
            _ => &[],
        }
    }
}

/// Who is logging in and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Authorization identity: whom to act as, if not the authcid itself (PLAIN, SCRAM,
    /// EXTERNAL only).
    pub authzid: Option<String>,
    /// Authentication identity: the username (for OAUTHBEARER, the GS2 authzid the RFC uses
    /// to name the user; unused by EXTERNAL).
    pub authcid: String,
    /// The password; for XOAUTH2 and OAUTHBEARER the bearer token; unused by EXTERNAL.
    pub password: Secret<String>,
}

impl Credentials {
    /// Username and password, no authzid.
    pub fn new(authcid: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            authzid: None,
            authcid: authcid.into(),
            password: Secret::new(password.into()),
        }
    }

    /// Sets the authorization identity.
    pub fn with_authzid(mut self, authzid: impl Into<String>) -> Self {
        self.authzid = Some(authzid.into());
        self
    }
}

/// One message from the client: the raw bytes to send (secret, since they may contain the
/// password) and a description for transcripts that keeps the structure but not the secret,
/// e.g. `authcid="alice", 8-byte password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// The raw SASL payload (the protocol layer base64-encodes it).
    pub bytes: Secret<Vec<u8>>,
    /// What to show instead of the bytes.
    pub redacted: String,
}

/// Why the client side of an exchange failed. The server side reports [`SaslFailure`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// A parameter from the caller is unusable, e.g. a SCRAM nonce with `,`.
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// The caller's credentials cannot be expressed in this mechanism.
    #[error("invalid credentials: {0}")]
    InvalidCredentials(&'static str),
    /// The server's message does not follow the mechanism's grammar.
    #[error("malformed server message: {0}")]
    Malformed(String),
    /// The server's message exceeds [`MAX_MESSAGE_LEN`].
    #[error("server message of {0} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit")]
    TooLarge(usize),
    /// A challenge arrived where the mechanism has none.
    #[error("unexpected challenge: {0}")]
    UnexpectedChallenge(&'static str),
    /// The SCRAM server nonce does not extend the client nonce: a replayed or foreign
    /// exchange.
    #[error("SCRAM server nonce does not start with the client nonce or adds nothing to it")]
    NonceMismatch,
    /// The SCRAM iteration count is above [`MAX_SCRAM_ITERATIONS`] (0 is malformed).
    #[error("SCRAM iteration count {0} refused (allowed: 1 to {MAX_SCRAM_ITERATIONS})")]
    IterationCount(u32),
    /// The SCRAM server-final message carried `e=`.
    #[error("server reported SCRAM error {0:?}")]
    ServerError(String),
    /// The SCRAM server signature is wrong: the server does not know the password (or the
    /// exchange was tampered with).
    #[error(
        "SCRAM server signature does not match: the server did not prove it knows the password"
    )]
    ServerSignatureMismatch,
    /// The exchange ended in success without the SCRAM server-final message, so the server
    /// never proved it knows the password.
    #[error("success without the SCRAM server signature")]
    MissingServerSignature,
    /// The server signalled success before the client had sent everything.
    #[error("server signalled success before the exchange was finished")]
    PrematureSuccess,
    /// The success reply carried data, which this mechanism does not define.
    #[error("success carried additional data, which {0} does not define")]
    UnexpectedSuccessData(Mechanism),
    /// The server reported success after it had refused the token (OAuth error challenge).
    #[error("the server reported success after refusing the token")]
    SuccessAfterError,
    /// A call after an earlier error ended the exchange.
    #[error("the exchange already failed")]
    Failed,
}

impl ClientMessage {
    fn new(bytes: impl Into<Vec<u8>>, redacted: impl Into<String>) -> Self {
        Self {
            bytes: Secret::new(bytes.into()),
            redacted: redacted.into(),
        }
    }
}

/// `"text"` with the crate's escape grammar, for names shown in redactions and explanations.
fn quote(bytes: &[u8]) -> String {
    format!("\"{}\"", crate::escape::escape(bytes))
}
