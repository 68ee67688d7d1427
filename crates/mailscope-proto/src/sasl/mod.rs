//! SASL (RFC 4422), both sides: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login),
//! CRAM-MD5 (RFC 2195), SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677).
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
//! Not done (yet): SASLprep (RFC 4013) normalisation of SCRAM and PLAIN names and passwords
//! (no Unicode tables in the dependency set; ASCII credentials are unaffected), and channel
//! binding (`-PLUS`; [`ChannelBinding`] is where it will go).

mod client;
mod explain;
pub mod oauth;
mod scram;
mod server;
#[cfg(test)]
mod tests;

pub use client::ClientSession;
pub use explain::explain;
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
}

impl Mechanism {
    /// Every mechanism, best first: the SCRAMs prove both sides know the password without
    /// revealing it, CRAM-MD5 at least keeps the password off the wire, and PLAIN beats LOGIN
    /// because it is standardised and needs one round trip.
    pub const PREFERENCE: &[Mechanism] = &[
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::CramMd5,
        Mechanism::Plain,
        Mechanism::Login,
    ];

    /// The registered name, as offered in `AUTH` / `CAPABILITY` and sent in `AUTH <name>`.
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    /// Parses a mechanism name case-insensitively (RFC 4422 §3.1 names are upper case, but
    /// servers are seen offering `auth=login` and similar).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::PREFERENCE
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }

    /// The best mechanism (by [`Mechanism::PREFERENCE`]) among the offered names; unknown
    /// names are ignored.
    pub fn best_of<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let offered: Vec<Self> = offered.into_iter().filter_map(Self::from_name).collect();
        Self::PREFERENCE
            .iter()
            .copied()
            .find(|m| offered.contains(m))
    }

    /// Whether the password itself crosses the wire (PLAIN, LOGIN): only safe inside TLS.
    pub const fn sends_password_in_clear(self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login)
    }

    /// Whether the client speaks first, i.e. has an initial response (PLAIN, SCRAM). For the
    /// others the server's first challenge comes before anything the client can say.
    pub const fn client_first(self) -> bool {
        matches!(
            self,
            Mechanism::Plain | Mechanism::ScramSha1 | Mechanism::ScramSha256
        )
    }

    /// Whether this is a SCRAM mechanism (the server proves it knows the password too).
    pub const fn is_scram(self) -> bool {
        matches!(self, Mechanism::ScramSha1 | Mechanism::ScramSha256)
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the client says about channel binding in the SCRAM GS2 header (RFC 5802 §6).
///
/// Only the non-`PLUS` mechanisms exist so far; binding to the TLS channel
/// (`p=tls-exporter` with the exporter bytes) will be a further variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ChannelBinding {
    /// `n,,`: the client does not support channel binding.
    #[default]
    None,
    /// `y,,`: the client supports it but believes the server does not; a server that does
    /// support it must then fail the exchange, which detects a downgrade of `-PLUS`.
    NotSupportedByClient,
}

impl ChannelBinding {
    /// The GS2 channel-binding flag: `n` or `y`.
    pub const fn gs2_flag(self) -> &'static str {
        match self {
            ChannelBinding::None => "n",
            ChannelBinding::NotSupportedByClient => "y",
        }
    }
}

/// Who is logging in and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Authorization identity: whom to act as, if not the authcid itself (PLAIN, SCRAM only).
    pub authzid: Option<String>,
    /// Authentication identity: the username.
    pub authcid: String,
    /// The password.
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
