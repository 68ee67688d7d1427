//! The client side of one exchange.

use md5::Md5;

use super::oauth::{self, OAuthMechanism, OAuthServerError, OAuthTarget};
use super::scram::{self, Hash, Keys};
use super::{
    ChannelBinding, ClientMessage, Credentials, MAX_MESSAGE_LEN, MAX_NAME_LEN,
    MAX_SCRAM_ITERATIONS, Mechanism, SaslError, quote,
};

/// The prompts draft-murchison-sasl-login specifies. Servers send all sorts of text; the
/// client answers by position, not by text, and only records the deviation.
const LOGIN_PROMPTS: [&[u8]; 2] = [b"Username:", b"Password:"];

/// The client side of one SASL exchange.
///
/// Drive it with the server's messages: [`initial_response`](Self::initial_response) if the
/// protocol allows one, then [`step`](Self::step) for every challenge, and
/// [`handle_success_data`](Self::handle_success_data) when the server reports success (with
/// or without data). Any error ends the exchange; later calls return [`SaslError::Failed`].
#[derive(Debug)]
pub struct ClientSession {
    mech: Mechanism,
    creds: Credentials,
    nonce: String,
    channel_binding: ChannelBinding,
    state: State,
    login_prompts: Vec<Vec<u8>>,
    server_verified: Option<bool>,
    scram_iterations: Option<u32>,
    oauth_target: OAuthTarget,
    oauth_error: Option<OAuthServerError>,
}

#[derive(Debug)]
enum State {
    /// Nothing sent yet.
    Start,
    LoginUsernameSent,
    /// SCRAM client-first sent; the bare part goes into the AuthMessage.
    ScramFirstSent {
        bare: String,
    },
    /// SCRAM client-final sent; waiting for the server to prove itself.
    ScramFinalSent {
        server_signature: Vec<u8>,
    },
    /// XOAUTH2 / OAUTHBEARER: the token went out; the server either reports success or
    /// sends its error challenge.
    OAuthSent,
    /// The OAuth error challenge was acknowledged; the server now fails the exchange.
    OAuthErrorAcknowledged,
    /// Everything sent (and, for SCRAM, the server verified).
    Done,
    Failed,
}

impl ClientSession {
    /// Starts an exchange. `client_nonce` is used only by SCRAM and must then be non-empty
    /// printable ASCII without `,`; the caller makes it random (at least 18 bytes of entropy,
    /// e.g. 24 base64 characters), since the core has no randomness.
    ///
    /// Fails if the credentials cannot be expressed in the mechanism: an empty or over-long
    /// username, NUL in PLAIN or SCRAM names (PLAIN uses NUL as separator), an authzid for
    /// LOGIN, CRAM-MD5, XOAUTH2 or OAUTHBEARER, which have no place for one, a token that is
    /// not visible ASCII; and for the `-PLUS` mechanisms, which need channel binding data
    /// (use [`new_with_channel_binding`](Self::new_with_channel_binding)).
    pub fn new(mech: Mechanism, creds: Credentials, client_nonce: &str) -> Result<Self, SaslError> {
        Self::new_with_channel_binding(mech, creds, client_nonce, ChannelBinding::None)
    }

    /// Starts an exchange with a channel binding for the SCRAM GS2 header: the `-PLUS`
    /// mechanisms need [`ChannelBinding::TlsExporter`] or
    /// [`ChannelBinding::TlsServerEndPoint`] with the data from the TLS layer; the others take
    /// [`ChannelBinding::None`] (`n`) or [`ChannelBinding::NotSupportedByClient`] (`y`: the
    /// client could bind, but the server did not offer `-PLUS`). Any other combination fails.
    pub fn new_with_channel_binding(
        mech: Mechanism,
        creds: Credentials,
        client_nonce: &str,
        channel_binding: ChannelBinding,
    ) -> Result<Self, SaslError> {
        let names = || std::iter::once(&creds.authcid).chain(&creds.authzid);
        let empty_authcid_ok = mech == Mechanism::External;
        if (creds.authcid.is_empty() && !empty_authcid_ok) || creds.authzid.as_deref() == Some("") {
            return Err(SaslError::InvalidCredentials("empty username or authzid"));
        }
        if names().any(|n| n.len() > MAX_NAME_LEN) {
            return Err(SaslError::InvalidCredentials(
                "username or authzid longer than 1 KiB",
            ));
        }
        match mech {
            Mechanism::Plain
                if names()
                    .chain([creds.password.expose()])
                    .any(|s| s.contains('\0')) =>
            {
                return Err(SaslError::InvalidCredentials("PLAIN cannot carry NUL"));
            }
            Mechanism::Login | Mechanism::CramMd5 if creds.authzid.is_some() => {
                return Err(SaslError::InvalidCredentials(
                    "LOGIN and CRAM-MD5 have no authzid",
                ));
            }
            Mechanism::XOauth2 | Mechanism::OAuthBearer => {
                if creds.authzid.is_some() {
                    return Err(SaslError::InvalidCredentials(
                        "XOAUTH2 and OAUTHBEARER name one user: give it as the username",
                    ));
                }
                // The builders check the user and the token; build once to fail early.
                oauth::xoauth2_initial_response(&creds.authcid, &creds.password)?;
            }
            Mechanism::External if creds.authzid.as_deref().is_some_and(|z| z.contains('\0')) => {
                return Err(SaslError::InvalidCredentials(
                    "the EXTERNAL authzid cannot contain NUL",
                ));
            }
            m if m.is_scram() => {
                if names().any(|s| s.contains('\0')) {
                    return Err(SaslError::InvalidCredentials(
                        "SCRAM names cannot contain NUL",
                    ));
                }
                if !scram::valid_nonce(client_nonce) {
                    return Err(SaslError::InvalidParameter(
                        "the client nonce must be non-empty printable ASCII without ','",
                    ));
                }
            }
            _ => {}
        }
        let binds = channel_binding.binding_type().is_some();
        if mech.is_scram_plus() && !binds {
            return Err(SaslError::InvalidParameter(
                "SCRAM -PLUS needs channel binding data from TLS (tls-exporter or tls-server-end-point)",
            ));
        }
        if !mech.is_scram_plus() && binds {
            return Err(SaslError::InvalidParameter(
                "channel binding data goes with the SCRAM -PLUS mechanisms only",
            ));
        }
        if binds && channel_binding.data().is_empty() {
            return Err(SaslError::InvalidParameter("empty channel binding data"));
        }
        Ok(Self {
            mech,
            creds,
            nonce: client_nonce.to_owned(),
            channel_binding,
            state: State::Start,
            login_prompts: Vec::new(),
            server_verified: None,
            scram_iterations: None,
            oauth_target: OAuthTarget::default(),
            oauth_error: None,
        })
    }

    /// Sets what the SCRAM GS2 header says about channel binding: `n` (the default) or `y`
    /// for the non-`PLUS` mechanisms. Binding data given here to a non-`PLUS` mechanism
    /// becomes `y` (the client could bind, but the server did not offer `-PLUS`); for a
    /// `-PLUS` mechanism only binding data replaces what it was made with. Use
    /// [`new_with_channel_binding`](Self::new_with_channel_binding) to be told about misuse.
    pub fn with_channel_binding(mut self, channel_binding: ChannelBinding) -> Self {
        let binds = channel_binding.binding_type().is_some();
        if self.mech.is_scram_plus() {
            if binds && !channel_binding.data().is_empty() {
                self.channel_binding = channel_binding;
            }
        } else if binds {
            self.channel_binding = ChannelBinding::NotSupportedByClient;
        } else {
            self.channel_binding = channel_binding;
        }
        self
    }

    /// OAUTHBEARER: the host and port the client connected to, sent as `host=` and `port=`
    /// (RFC 7628 §3.1; servers may check them). Fails on a host that is not visible ASCII.
    pub fn with_oauth_target(mut self, target: OAuthTarget) -> Result<Self, SaslError> {
        if self.mech == Mechanism::OAuthBearer {
            oauth::oauthbearer_initial_response(
                &self.creds.authcid,
                &target,
                &self.creds.password,
            )?;
        }
        self.oauth_target = target;
        Ok(self)
    }

    /// The channel binding the GS2 header carries.
    pub fn channel_binding(&self) -> &ChannelBinding {
        &self.channel_binding
    }

    /// XOAUTH2 / OAUTHBEARER: the server's error challenge, parsed (its `status`, `scope`,
    /// ...), once one came.
    pub fn oauth_error(&self) -> Option<&OAuthServerError> {
        self.oauth_error.as_ref()
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// The initial response, for mechanisms where the client speaks first (PLAIN: the whole
    /// `authzid NUL authcid NUL password`; SCRAM: client-first). `None` for the others, or
    /// once anything was sent. If the protocol cannot carry it (or the caller prefers not to),
    /// skip this and answer the server's empty challenge with [`step`](Self::step).
    pub fn initial_response(&mut self) -> Option<ClientMessage> {
        (self.mech.client_first() && matches!(self.state, State::Start))
            .then(|| self.first_message())
    }

    /// Answers a server challenge.
    pub fn step(&mut self, server_data: &[u8]) -> Result<ClientMessage, SaslError> {
        if server_data.len() > MAX_MESSAGE_LEN {
            self.state = State::Failed;
            return Err(SaslError::TooLarge(server_data.len()));
        }
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Start if self.mech.client_first() => {
                if !server_data.is_empty() {
                    return Err(SaslError::UnexpectedChallenge(
                        "the client speaks first; the first challenge must be empty",
                    ));
                }
                Ok(self.first_message())
            }
            State::Start if self.mech == Mechanism::Login => {
                self.login_prompts.push(server_data.to_vec());
                self.state = State::LoginUsernameSent;
                let name = &self.creds.authcid;
                Ok(ClientMessage::new(
                    name.as_bytes(),
                    format!("username {}", quote(name.as_bytes())),
                ))
            }
            State::Start => self.cram_md5(server_data),
            State::LoginUsernameSent => {
                self.login_prompts.push(server_data.to_vec());
                self.state = State::Done;
                let password = self.creds.password.expose();
                Ok(ClientMessage::new(
                    password.as_bytes(),
                    format!("{}-byte password", password.len()),
                ))
            }
            State::ScramFirstSent { bare } => self.scram_final(&bare, server_data),
            State::OAuthSent => self.oauth_error_challenge(server_data),
            State::OAuthErrorAcknowledged => Err(SaslError::UnexpectedChallenge(
                "the error challenge was acknowledged; the server must now end the exchange",
            )),
            State::ScramFinalSent { server_signature } => {
                // The server-final message came as a challenge (as SMTP must send it); the
                // answer is an empty response, then the server reports success.
                self.verify_server_final(&server_signature, server_data)?;
                Ok(ClientMessage::new(Vec::new(), ""))
            }
            State::Done => Err(SaslError::UnexpectedChallenge(
                "the exchange is complete; no challenge is left",
            )),
            State::Failed => Err(SaslError::Failed),
        }
    }

    /// Handles the server's success report and the additional data that came with it (empty
    /// if none). For SCRAM this is where the server-final message is verified if it was not
    /// sent as a challenge; success without it is an error, because then the server never
    /// proved that it knows the password.
    pub fn handle_success_data(&mut self, data: &[u8]) -> Result<(), SaslError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::ScramFinalSent { server_signature } if !data.is_empty() => {
                self.verify_server_final(&server_signature, data)
            }
            State::ScramFinalSent { .. } => {
                self.server_verified = Some(false);
                Err(SaslError::MissingServerSignature)
            }
            State::Done | State::OAuthSent if data.is_empty() => {
                self.state = State::Done;
                Ok(())
            }
            State::OAuthErrorAcknowledged => Err(SaslError::SuccessAfterError),
            State::OAuthSent => Err(SaslError::UnexpectedSuccessData(self.mech)),
            State::Done => Err(SaslError::UnexpectedSuccessData(self.mech)),
            State::Failed => Err(SaslError::Failed),
            State::ScramFirstSent { .. } => {
                self.server_verified = Some(false);
                Err(SaslError::PrematureSuccess)
            }
            State::Start | State::LoginUsernameSent => Err(SaslError::PrematureSuccess),
        }
    }

    /// Whether the client has sent everything and, for SCRAM, verified the server.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done | State::OAuthSent)
    }

    /// For SCRAM: `Some(true)` once the server signature checked out, `Some(false)` if it was
    /// wrong or missing; `None` before that and for mechanisms without server authentication.
    pub fn server_verified(&self) -> Option<bool> {
        self.server_verified
    }

    /// LOGIN: the first prompt that was not the specified `Username:` / `Password:` (compared
    /// exactly), for a finding; `None` if all prompts so far were as specified.
    pub fn unexpected_login_prompt(&self) -> Option<&[u8]> {
        self.login_prompts
            .iter()
            .zip(LOGIN_PROMPTS)
            .find(|(got, want)| got != want)
            .map(|(got, _)| got.as_slice())
    }

    /// LOGIN: the prompts received so far, in order.
    pub fn login_prompts(&self) -> &[Vec<u8>] {
        &self.login_prompts
    }

    /// SCRAM: the iteration count the server chose, once known (RFC 7677 asks for at least
    /// 4096; fewer makes stolen verifiers cheaper to crack).
    pub fn scram_iterations(&self) -> Option<u32> {
        self.scram_iterations
    }

    /// PLAIN message, SCRAM client-first, the OAuth initial response or EXTERNAL's authzid.
    fn first_message(&mut self) -> ClientMessage {
        let Credentials {
            authzid,
            authcid,
            password,
        } = &self.creds;
        if let Some(m) = OAuthMechanism::of(self.mech) {
            let built = match m {
                OAuthMechanism::XOAuth2 => oauth::xoauth2_initial_response(authcid, password),
                OAuthMechanism::OAuthBearer => {
                    oauth::oauthbearer_initial_response(authcid, &self.oauth_target, password)
                }
            };
            // `new` and `with_oauth_target` built this message once already, so it builds.
            return match built {
                Ok(msg) => {
                    self.state = State::OAuthSent;
                    msg
                }
                Err(e) => {
                    self.state = State::Failed;
                    ClientMessage::new(Vec::new(), format!("unusable credentials: {e}"))
                }
            };
        }
        if self.mech == Mechanism::External {
            self.state = State::Done;
            let bytes = authzid.clone().unwrap_or_default().into_bytes();
            let redacted = match authzid {
                Some(a) => format!("authzid={}", quote(a.as_bytes())),
                None => "empty: act as the identity of the TLS client certificate".to_owned(),
            };
            return ClientMessage::new(bytes, redacted);
        }
        if self.mech == Mechanism::Plain {
            self.state = State::Done;
            let password = password.expose();
            let bytes = format!(
                "{}\0{authcid}\0{password}",
                authzid.as_deref().unwrap_or("")
            );
            let authzid = authzid
                .as_ref()
                .map(|a| format!("authzid={}, ", quote(a.as_bytes())));
            let redacted = format!(
                "{}authcid={}, {}-byte password",
                authzid.unwrap_or_default(),
                quote(authcid.as_bytes()),
                password.len()
            );
            return ClientMessage::new(bytes, redacted);
        }
        let bare = format!("n={},r={}", scram::escape_saslname(authcid), self.nonce);
        let message = format!("{}{bare}", self.gs2_header());
        self.state = State::ScramFirstSent { bare };
        // Nothing secret in client-first: show it whole.
        ClientMessage::new(
            message.as_bytes(),
            crate::escape::escape(message.as_bytes()),
        )
    }

    /// XOAUTH2 / OAUTHBEARER: the server refused the token with a JSON error challenge;
    /// the client must acknowledge it (empty for XOAUTH2, `0x01` for OAUTHBEARER) so the
    /// server can end the exchange with its failure reply.
    fn oauth_error_challenge(&mut self, data: &[u8]) -> Result<ClientMessage, SaslError> {
        let mech = OAuthMechanism::of(self.mech).ok_or(SaslError::Failed)?;
        // A challenge that is not the JSON object is still acknowledged: the exchange is
        // lost either way, and the acknowledgement lets the server say why.
        self.oauth_error =
            Some(
                oauth::parse_server_error(data).unwrap_or_else(|_| OAuthServerError {
                    members: Vec::new(),
                }),
            );
        self.state = State::OAuthErrorAcknowledged;
        let ack = mech.error_acknowledgement();
        let what = if ack.is_empty() {
            "empty response acknowledging the error"
        } else {
            "^A acknowledging the error"
        };
        Ok(ClientMessage::new(ack, what))
    }

    fn gs2_header(&self) -> String {
        let authzid = self
            .creds
            .authzid
            .as_deref()
            .map(|a| format!("a={}", scram::escape_saslname(a)));
        format!(
            "{},{},",
            self.channel_binding.gs2_flag(),
            authzid.unwrap_or_default()
        )
    }

    /// RFC 2195: `username SP hex(HMAC-MD5(password, challenge))`.
    fn cram_md5(&mut self, challenge: &[u8]) -> Result<ClientMessage, SaslError> {
        if challenge.is_empty() {
            return Err(SaslError::Malformed("empty CRAM-MD5 challenge".into()));
        }
        let digest =
            scram::hmac::<hmac::Hmac<Md5>>(self.creds.password.expose().as_bytes(), challenge);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.state = State::Done;
        let user = &self.creds.authcid;
        Ok(ClientMessage::new(
            format!("{user} {hex}"),
            format!("user {}, HMAC-MD5 digest", quote(user.as_bytes())),
        ))
    }

    /// Reads server-first (`r=,s=,i=`) and builds client-final with the proof.
    fn scram_final(&mut self, bare: &str, data: &[u8]) -> Result<ClientMessage, SaslError> {
        let malformed = SaslError::Malformed;
        let hash = Hash::of(self.mech).ok_or(SaslError::Failed)?;
        let server_first =
            std::str::from_utf8(data).map_err(|_| malformed("server-first is not UTF-8".into()))?;
        let attrs = scram::attributes(server_first).map_err(malformed)?;
        if let Some(('m', _)) = attrs.first() {
            return Err(malformed(
                "server requires an unknown mandatory extension (m=)".into(),
            ));
        }
        let mut attrs = attrs.into_iter();
        let nonce = scram::expect(&mut attrs, 'r', "nonce").map_err(malformed)?;
        let salt = scram::expect(&mut attrs, 's', "salt").and_then(|s| scram::base64(s, "salt"));
        let salt = salt.map_err(malformed)?;
        let iterations =
            scram::expect(&mut attrs, 'i', "iteration count").and_then(scram::iterations);
        let iterations = iterations.map_err(malformed)?;
        // Further attributes are extensions, which RFC 5802 §7 says to ignore.
        if !scram::valid_nonce(nonce)
            || !nonce.starts_with(&self.nonce)
            || nonce.len() == self.nonce.len()
        {
            return Err(SaslError::NonceMismatch);
        }
        if iterations > MAX_SCRAM_ITERATIONS {
            return Err(SaslError::IterationCount(iterations));
        }
        self.scram_iterations = Some(iterations);
        // c= is the GS2 header followed by the channel binding data (RFC 5802 §7,
        // cbind-input), which is empty for `n` and `y`.
        let mut cbind_input = self.gs2_header().into_bytes();
        cbind_input.extend_from_slice(self.channel_binding.data());
        let without_proof = format!("c={},r={nonce}", scram::to_base64(&cbind_input));
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let keys = Keys::derive(hash, self.creds.password.expose(), &salt, iterations);
        let proof = scram::to_base64(&keys.client_proof(&auth_message));
        self.state = State::ScramFinalSent {
            server_signature: keys.server_signature(&auth_message),
        };
        Ok(ClientMessage::new(
            format!("{without_proof},p={proof}"),
            format!(
                "{},p=<proof>",
                crate::escape::escape(without_proof.as_bytes())
            ),
        ))
    }

    /// Checks server-final (`v=` or `e=`); on success the exchange is complete.
    fn verify_server_final(&mut self, expected: &[u8], data: &[u8]) -> Result<(), SaslError> {
        self.server_verified = Some(false);
        let malformed = SaslError::Malformed;
        let text =
            std::str::from_utf8(data).map_err(|_| malformed("server-final is not UTF-8".into()))?;
        let attrs = scram::attributes(text).map_err(malformed)?;
        match attrs.first() {
            Some(('e', error)) => Err(SaslError::ServerError((*error).to_owned())),
            Some(('v', signature)) => {
                if !scram::ct_eq(
                    &scram::base64(signature, "server signature").map_err(malformed)?,
                    expected,
                ) {
                    return Err(SaslError::ServerSignatureMismatch);
                }
                self.server_verified = Some(true);
                self.state = State::Done;
                Ok(())
            }
            _ => Err(malformed("server-final must start with v= or e=".into())),
        }
    }
}
