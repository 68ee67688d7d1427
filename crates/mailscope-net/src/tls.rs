//! TLS client with full inspection, and the server configuration the sink uses.
//!
//! Everything is built on an explicit ring `CryptoProvider`: relying on the process default
//! panics at run time as soon as two crates in the tree enable different providers.
//!
//! Verification is on by default and is done by rustls' own WebPKI verifier; we wrap it only
//! to *record* its verdict and the presented chain, so a refused certificate can be explained
//! (kind, one-line reason, chain) and `--insecure` can continue while still reporting what
//! would have failed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, HandshakeKind, InvalidMessage,
    PeerIncompatible, ProtocolVersion, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::cert::{CertInfo, CertTime};
use crate::error::{NetError, TlsFailure, VerifyFailure};
use crate::keylog::{KeyLogWriter, keylog_path_from_env};

/// The one crypto provider of mailscope (see the module documentation for why explicit).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the user asked of the TLS client.
#[derive(Debug, Clone, Default)]
pub struct TlsClientOptions {
    /// Continue when the certificate does not verify (the failure is still recorded).
    pub insecure: bool,
    /// PEM files whose certificates are trusted in addition to the webpki roots
    /// (`--tls-ca-path`), for private CAs and test servers.
    pub extra_ca_files: Vec<PathBuf>,
    /// Name to send as SNI and to verify; defaults to the host connected to. An IP address
    /// is verified against the certificate's IP SANs and sends no SNI (RFC 6066 forbids
    /// IP literals in SNI).
    pub sni: Option<String>,
    /// ALPN protocols to offer, in preference order; empty offers none.
    pub alpn: Vec<Vec<u8>>,
    /// Append the session secrets to this file (NSS key log format).
    pub keylog: Option<PathBuf>,
    /// Append the session secrets to `$SSLKEYLOGFILE` when set (ignored if `keylog` is set).
    pub keylog_from_env: bool,
    /// TLS versions to offer (`--tls-protocol`): `TLSv1.2`, `TLSv1.3`; empty offers both.
    pub versions: Vec<String>,
    /// Cipher suites to offer (`--tls-cipher`), rustls/IANA names (`TLS13_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`) or OpenSSL names (`ECDHE-RSA-AES128-GCM-SHA256`,
    /// `TLS_AES_128_GCM_SHA256`); empty offers rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// Client certificate chain and key (PEM), for servers that ask (and AUTH EXTERNAL).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// OpenSSL's names for the suites rustls speaks, mapped to rustls' names.
const OPENSSL_SUITE_NAMES: &[(&str, &str)] = &[
    ("TLS_AES_128_GCM_SHA256", "TLS13_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS13_AES_256_GCM_SHA384"),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS13_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// A provider offering only the named suites (a clear error for names rustls cannot speak).
fn provider_with_suites(names: &[String]) -> Result<CryptoProvider, NetError> {
    let base = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(base);
    }
    let known: Vec<String> = base
        .cipher_suites
        .iter()
        .filter_map(|s| s.suite().as_str().map(str::to_owned))
        .collect();
    let mut chosen = Vec::new();
    for name in names
        .iter()
        .flat_map(|n| n.split([':', ',']))
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let wanted = OPENSSL_SUITE_NAMES
            .iter()
            .find(|(o, _)| o.eq_ignore_ascii_case(name))
            .map(|(_, r)| *r)
            .unwrap_or(name);
        let Some(suite) = base.cipher_suites.iter().find(|s| {
            s.suite()
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
        }) else {
            return Err(NetError::TlsConfig(format!(
                "--tls-cipher {name}: not a suite mailscope's TLS client speaks (rustls: TLS 1.2 ECDHE with AES-GCM or ChaCha20, and TLS 1.3; no CBC, RSA key exchange or export suites); it speaks: {}",
                known.join(", ")
            )));
        };
        chosen.push(*suite);
    }
    Ok(CryptoProvider {
        cipher_suites: chosen,
        ..base
    })
}

/// The protocol versions to offer.
fn versions(names: &[String]) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, NetError> {
    if names.is_empty() {
        return Ok(rustls::DEFAULT_VERSIONS.to_vec());
    }
    let mut out = Vec::new();
    for n in names
        .iter()
        .flat_map(|n| n.split([':', ',']))
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let v = match n.to_ascii_lowercase().replace(['_', ' '], "").as_str() {
            "tlsv1.2" | "tls1.2" | "tlsv12" | "tls12" | "1.2" => &rustls::version::TLS12,
            "tlsv1.3" | "tls1.3" | "tlsv13" | "tls13" | "1.3" => &rustls::version::TLS13,
            "sslv2" | "sslv3" | "tlsv1" | "tlsv1.0" | "tls1.0" | "tlsv1.1" | "tls1.1" | "1.0"
            | "1.1" => {
                return Err(NetError::TlsConfig(format!(
                    "--tls-protocol {n}: mailscope's TLS client speaks TLS 1.2 and 1.3 only (rustls); older versions are detected by `mailscope probe`"
                )));
            }
            _ => {
                return Err(NetError::TlsConfig(format!(
                    "--tls-protocol {n}: unknown version (TLSv1.2, TLSv1.3)"
                )));
            }
        };
        if !out
            .iter()
            .any(|x: &&rustls::SupportedProtocolVersion| std::ptr::eq(*x, v))
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// The verdict on the server's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The chain leads to a trusted root and names the server.
    Verified,
    /// Verification failed. In a successful handshake this only happens with `insecure`.
    Failed {
        /// The classified failure.
        kind: VerifyFailure,
        /// One line for humans.
        reason: String,
    },
    /// No certificate was checked in this handshake (a resumed session).
    NotPerformed {
        /// Why.
        reason: String,
    },
}

/// What was negotiated and presented, for the transcript and `--json`.
#[derive(Debug, Clone)]
pub struct TlsReport {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// rustls/IANA-style suite name, e.g. `TLS13_AES_256_GCM_SHA384`,
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
    /// Key exchange group, e.g. `X25519`, `secp256r1`.
    pub key_exchange_group: Option<String>,
    /// ALPN protocol the server selected.
    pub alpn: Option<String>,
    /// The SNI we sent (`None` for IP addresses).
    pub sni: Option<String>,
    /// The name the certificate was verified against (DNS name or IP address).
    pub verified_name: String,
    /// `full`, `full-with-hello-retry-request` or `resumed`.
    pub handshake_kind: String,
    /// The chain as the server sent it, leaf first.
    pub chain: Vec<CertInfo>,
    /// The verification verdict (recorded even when `insecure` carried on).
    pub verification: Verification,
    /// The key log file being written for this session, if any: the caller prints a `***`
    /// note so writing secrets is never silent.
    pub keylog_path: Option<PathBuf>,
    /// The first error writing the key log, if any.
    pub keylog_error: Option<String>,
}

/// A configured TLS client: trust store, verifier policy, ALPN and key log, built once and
/// used for any number of handshakes (blast reuses one for thousands of connections).
#[derive(Debug, Clone)]
pub struct TlsClient {
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    webpki: Arc<WebPkiServerVerifier>,
    insecure: bool,
    sni: Option<String>,
    alpn: Vec<Vec<u8>>,
    keylog: Option<Arc<KeyLogWriter>>,
}

impl TlsClient {
    /// Loads the trust store (webpki roots plus `extra_ca_files`) and opens the key log.
    /// Files are read synchronously here, once, so errors surface before any connection.
    pub fn new(opts: &TlsClientOptions) -> Result<Self, NetError> {
        let provider = Arc::new(provider_with_suites(&opts.cipher_suites)?);
        let versions = versions(&opts.versions)?;
        let client_auth = match &opts.client_cert {
            Some((cert, key)) => Some(load_client_cert(cert, key)?),
            None => None,
        };
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for path in &opts.extra_ca_files {
            add_ca_file(&mut roots, path)?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| NetError::TlsConfig(e.to_string()))?;
        let keylog_path = match &opts.keylog {
            Some(p) => Some(p.clone()),
            None if opts.keylog_from_env => keylog_path_from_env(),
            None => None,
        };
        let keylog = match keylog_path {
            Some(p) => Some(Arc::new(KeyLogWriter::create(&p)?)),
            None => None,
        };
        Ok(Self {
            provider,
            versions,
            client_auth,
            webpki,
            insecure: opts.insecure,
            sni: opts.sni.clone(),
            alpn: opts.alpn.clone(),
            keylog,
        })
    }

    /// The key log file this client writes, if any.
    pub fn keylog_path(&self) -> Option<&Path> {
        self.keylog.as_deref().map(KeyLogWriter::path)
    }

    /// Runs the client handshake on `io` (a fresh TCP stream for implicit TLS, or the plain
    /// stream right after the server's STARTTLS go-ahead).
    ///
    /// `server_name` is the host connected to (brackets around IPv6 are accepted); the
    /// `sni` option overrides it. The whole handshake is bounded by `timeout`.
    pub async fn handshake<S>(
        &self,
        io: S,
        server_name: &str,
        timeout: Duration,
    ) -> Result<(TlsStream<S>, TlsReport), TlsFailure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.sni.as_deref().unwrap_or(server_name);
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        let server_name =
            ServerName::try_from(name.to_owned()).map_err(|_| TlsFailure::InvalidServerName {
                name: name.to_owned(),
            })?;

        let recorder = Arc::new(RecordingVerifier {
            inner: self.webpki.clone(),
            insecure: self.insecure,
            seen: Mutex::new(None),
        });
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| {
                NetError::TlsConfig(format!("{e} (check --tls-protocol against --tls-cipher)"))
            })?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone());
        let mut config = match &self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| NetError::TlsConfig(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        if let Some(k) = &self.keylog {
            config.key_log = k.clone();
        }

        let connector = TlsConnector::from(Arc::new(config));
        let connecting = connector.connect(server_name.clone(), io);
        let stream = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => return Err(TlsFailure::Timeout { after: timeout }),
            Ok(Err(e)) => return Err(classify_failure(e, &recorder, &server_name)),
            Ok(Ok(s)) => s,
        };

        let (_, conn) = stream.get_ref();
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_owned(),
        };
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .map(|s| {
                let suite = s.suite();
                suite
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("0x{:04x}", u16::from(suite)))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let key_exchange_group = conn.negotiated_key_exchange_group().map(|g| {
            let group = g.name();
            group
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("0x{:04x}", u16::from(group)))
        });
        let alpn = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let handshake_kind = match conn.handshake_kind() {
            Some(HandshakeKind::Full) => "full",
            Some(HandshakeKind::FullWithHelloRetryRequest) => "full-with-hello-retry-request",
            Some(HandshakeKind::Resumed) => "resumed",
            None => "unknown",
        }
        .to_owned();
        let chain: Vec<CertInfo> = conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| CertInfo::from_der(c))
            .collect();
        let verification = match recorder.take() {
            Some(Seen {
                verdict: Ok(()), ..
            }) => Verification::Verified,
            Some(Seen {
                verdict: Err(e),
                chain: seen_chain,
            }) => {
                let parsed = if chain.is_empty() {
                    seen_chain
                } else {
                    chain.clone()
                };
                let (kind, reason) = describe_certificate_error(&e, &parsed, &server_name);
                Verification::Failed { kind, reason }
            }
            None => Verification::NotPerformed {
                reason: "no certificate was verified in this handshake (resumed session)"
                    .to_owned(),
            },
        };
        let report = TlsReport {
            version,
            cipher_suite,
            key_exchange_group,
            alpn,
            sni: match &server_name {
                ServerName::DnsName(d) => Some(d.as_ref().to_owned()),
                _ => None,
            },
            verified_name: name_text(&server_name),
            handshake_kind,
            chain,
            verification,
            keylog_path: self.keylog.as_deref().map(|k| k.path().to_owned()),
            keylog_error: self.keylog.as_deref().and_then(KeyLogWriter::error),
        };
        Ok((stream, report))
    }
}

/// One-shot form of [`TlsClient::new`] + [`TlsClient::handshake`].
pub async fn tls_handshake<S>(
    io: S,
    server_name: &str,
    opts: &TlsClientOptions,
    timeout: Duration,
) -> Result<(TlsStream<S>, TlsReport), TlsFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    TlsClient::new(opts)?
        .handshake(io, server_name, timeout)
        .await
}

/// Reads a client certificate chain and its private key (PEM).
fn load_client_cert(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>), NetError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| NetError::TlsConfig(format!("--tls-cert {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| NetError::TlsConfig(format!("--tls-cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(NetError::TlsConfig(format!(
            "--tls-cert {}: no certificate in the file",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| NetError::TlsConfig(format!("--tls-key {}: {e}", key.display())))?;
    Ok((chain, Arc::new(key)))
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), NetError> {
    let pem = std::fs::read(path).map_err(|source| NetError::CaFileRead {
        path: path.to_owned(),
        source,
    })?;
    let mut count = 0usize;
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| NetError::CaFileInvalid {
            path: path.to_owned(),
            reason: format!("broken PEM: {e}"),
        })?;
        roots.add(cert).map_err(|e| NetError::CaFileInvalid {
            path: path.to_owned(),
            reason: format!("certificate #{} cannot be a trust anchor: {e}", i + 1),
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(NetError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// What the verifier saw during one handshake.
struct Seen {
    chain: Vec<CertInfo>,
    verdict: Result<(), rustls::Error>,
}

/// Delegates every check to rustls' WebPKI verifier and remembers the chain and verdict.
///
/// With `insecure`, a failed *certificate* check is overridden; handshake signatures are
/// still checked by the inner verifier, so a server that cannot prove possession of the key
/// still fails.
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    insecure: bool,
    seen: Mutex<Option<Seen>>,
}

impl RecordingVerifier {
    fn take(&self) -> Option<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl fmt::Debug for RecordingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingVerifier")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| CertInfo::from_der(c))
            .collect();
        let recorded = verdict.as_ref().map(|_| ()).map_err(Clone::clone);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen {
            chain,
            verdict: recorded,
        });
        match verdict {
            Ok(v) => Ok(v),
            Err(_) if self.insecure => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// Maps a handshake error to what the user should look at.
fn classify_failure(
    e: io::Error,
    recorder: &RecordingVerifier,
    server_name: &ServerName<'_>,
) -> TlsFailure {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => return TlsFailure::Eof,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            return TlsFailure::Reset;
        }
        _ => {}
    }
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return TlsFailure::Io(e);
    };
    match tls {
        rustls::Error::InvalidCertificate(cert_err) => {
            let chain = recorder.take().map(|s| s.chain).unwrap_or_default();
            let (kind, reason) = describe_certificate_error(
                &rustls::Error::InvalidCertificate(cert_err.clone()),
                &chain,
                server_name,
            );
            TlsFailure::CertificateInvalid {
                kind,
                reason,
                chain,
            }
        }
        rustls::Error::AlertReceived(alert) => {
            let name = alert_name(alert.as_str(), u8::from(*alert));
            if *alert == rustls::AlertDescription::ProtocolVersion {
                TlsFailure::ProtocolVersion {
                    detail: "the server answered with alert protocol_version".to_owned(),
                }
            } else {
                TlsFailure::AlertReceived { alert: name }
            }
        }
        rustls::Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13)
        | rustls::Error::PeerIncompatible(
            PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
        ) => TlsFailure::ProtocolVersion {
            detail: format!("{tls}"),
        },
        rustls::Error::PeerIncompatible(p) => TlsFailure::Incompatible {
            detail: format!("{p:?}"),
        },
        rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
        ) => TlsFailure::NotTls {
            detail: tls.to_string(),
        },
        other => TlsFailure::Protocol {
            detail: other.to_string(),
        },
    }
}

/// `HandshakeFailure` -> `handshake_failure`, the RFC's spelling people search for.
fn alert_name(camel: Option<&str>, code: u8) -> String {
    let Some(camel) = camel else {
        return format!("unknown({code})");
    };
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Classifies a certificate error and writes the one-line reason.
fn describe_certificate_error(
    e: &rustls::Error,
    chain: &[CertInfo],
    server_name: &ServerName<'_>,
) -> (VerifyFailure, String) {
    let rustls::Error::InvalidCertificate(ce) = e else {
        return (VerifyFailure::Other(e.to_string()), e.to_string());
    };
    let leaf = chain.first();
    match ce {
        CertificateError::UnknownIssuer => {
            let reason = if chain.len() == 1 && leaf.is_some_and(|l| l.self_signed) {
                "unknown issuer: the certificate is self-signed and not trusted; pass --tls-ca-path FILE to trust it, or --insecure"
            } else {
                "unknown issuer: the chain does not lead to a trusted root; pass --tls-ca-path FILE to trust a private CA, or --insecure"
            };
            (VerifyFailure::UnknownIssuer, reason.to_owned())
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            // Our own parse of the leaf gives plain `localhost`, `127.0.0.1`; rustls' context
            // carries Debug forms (`DnsName("localhost")`), used only if we could not parse.
            let presented = match (leaf.filter(|l| l.parse_error.is_none()), ce) {
                (Some(l), _) => l.names(),
                (None, CertificateError::NotValidForNameContext { presented, .. }) => {
                    presented.clone()
                }
                (None, _) => Vec::new(),
            };
            let expected = name_text(server_name);
            let reason = if presented.is_empty() {
                format!(
                    "certificate is not valid for name {expected:?} (it names no DNS name or IP address)"
                )
            } else {
                format!(
                    "certificate is not valid for name {expected:?} (it names: {})",
                    presented.join(", ")
                )
            };
            (
                VerifyFailure::NameMismatch {
                    expected,
                    presented,
                },
                reason,
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let not_after = match ce {
                CertificateError::ExpiredContext { not_after, .. } => {
                    i64::try_from(not_after.as_secs())
                        .ok()
                        .map(|s| CertTime::from_unix(s).utc)
                }
                _ => leaf
                    .and_then(|l| l.not_after.as_ref())
                    .map(|t| t.utc.clone()),
            };
            let reason = match &not_after {
                Some(t) => format!("certificate has expired (notAfter {t})"),
                None => "certificate has expired".to_owned(),
            };
            (VerifyFailure::Expired { not_after }, reason)
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            let not_before = match ce {
                CertificateError::NotValidYetContext { not_before, .. } => {
                    i64::try_from(not_before.as_secs())
                        .ok()
                        .map(|s| CertTime::from_unix(s).utc)
                }
                _ => leaf
                    .and_then(|l| l.not_before.as_ref())
                    .map(|t| t.utc.clone()),
            };
            let reason = match &not_before {
                Some(t) => format!(
                    "certificate is not valid yet (notBefore {t}); check this machine's clock"
                ),
                None => "certificate is not valid yet; check this machine's clock".to_owned(),
            };
            (VerifyFailure::NotYetValid { not_before }, reason)
        }
        CertificateError::Revoked => (
            VerifyFailure::Revoked,
            "certificate has been revoked".to_owned(),
        ),
        CertificateError::BadSignature => other(
            "a certificate in the chain has a bad signature (it was not issued by the key it names)",
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            other("certificate is not valid for TLS server authentication (extended key usage)")
        }
        CertificateError::UnhandledCriticalExtension => {
            other("certificate has a critical extension we do not understand")
        }
        CertificateError::BadEncoding => other("certificate is not valid DER"),
        _ => other(&format!("certificate rejected: {e}")),
    }
}

fn other(reason: &str) -> (VerifyFailure, String) {
    (VerifyFailure::Other(reason.to_owned()), reason.to_owned())
}

/// A rustls server configuration from PEM certificate chain and private key (PKCS#8,
/// PKCS#1 or SEC1), on the ring provider, for the sink and other fake servers.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, NetError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::ServerCertificate(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(NetError::ServerCertificate(
            "no -----BEGIN CERTIFICATE----- block in the certificate PEM".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| NetError::ServerCertificate(format!("private key PEM: {e}")))?;
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::TlsConfig(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| NetError::ServerCertificate(e.to_string()))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_follow_the_rfc() {
        assert_eq!(
            alert_name(Some("HandshakeFailure"), 40),
            "handshake_failure"
        );
        assert_eq!(alert_name(Some("ProtocolVersion"), 70), "protocol_version");
        assert_eq!(alert_name(None, 200), "unknown(200)");
    }

    #[test]
    fn pem_errors_are_clear() {
        let e = server_config_from_pem(b"", b"").expect_err("empty");
        assert!(
            e.to_string().contains("no -----BEGIN CERTIFICATE-----"),
            "{e}"
        );
    }

    #[test]
    fn missing_ca_file_is_named() {
        let opts = TlsClientOptions {
            extra_ca_files: vec!["/nonexistent/ca.pem".into()],
            ..Default::default()
        };
        let e = TlsClient::new(&opts).expect_err("missing file");
        assert!(
            e.to_string()
                .starts_with("cannot read CA file /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn empty_ca_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let opts = TlsClientOptions {
            extra_ca_files: vec![path],
            ..Default::default()
        };
        let e = TlsClient::new(&opts).expect_err("empty file");
        assert!(
            e.to_string().contains("contains no PEM certificates"),
            "{e}"
        );
    }
}
