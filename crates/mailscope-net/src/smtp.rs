//! The async driver for the SMTP client machine: connects, does implicit TLS or STARTTLS
//! when the machine asks, feeds every received byte to the machine and writes what it
//! wants sent. No SMTP is parsed here; the machine owns the protocol.
//!
//! Also the TLS channel binding data both SMTP drivers (this one and the sink's in
//! [`crate::server`]) hand to their machines for SCRAM `-PLUS`: [`client_channel_binding`],
//! [`server_channel_binding`], [`tls_server_end_point`].

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailscope_proto::Timestamp;
use mailscope_proto::sasl::ChannelBindingData;
use mailscope_proto::smtp::client::{Client, Event};
use rustls::ProtocolVersion;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::connect::connect_tcp_from;
use crate::error::{NetError, TlsFailure};
use crate::stream::MaybeTlsStream;
use crate::tls::{TlsClient, TlsReport};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SmtpTarget {
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Implicit TLS from the first byte.
    pub implicit_tls: bool,
    /// Budget for the TCP connect and for the TLS handshake.
    pub timeout: Duration,
    /// Local address to connect from (`--local-interface`).
    pub local: Option<SocketAddr>,
    /// PROXY protocol header to send before the first byte: version (1 or 2), and the source
    /// and destination to claim (default: the real addresses of the connection).
    pub proxy: Option<(u8, Option<SocketAddr>, Option<SocketAddr>)>,
}

/// What the driver tells the front end, in order.
#[derive(Debug)]
pub enum DriverEvent {
    /// The TCP connection is up.
    Connected {
        /// The server's address.
        peer: SocketAddr,
        /// Ours.
        local: SocketAddr,
        /// Microseconds the connect took.
        elapsed_us: u64,
        /// Addresses that failed before this one, with why.
        failed_attempts: Vec<(SocketAddr, String)>,
    },
    /// A TLS handshake finished (implicit or STARTTLS).
    TlsEstablished(Box<TlsReport>),
    /// A TLS handshake failed; the session is over.
    TlsFailed(Box<TlsFailure>),
    /// Something the machine reported, with the number of transcript chunks recorded when
    /// it happened.
    Machine(usize, Event),
}

/// The current time as the machines want it: microseconds since the Unix epoch.
pub fn now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    Timestamp(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// Runs one SMTP session to its end. `on_event` sees every driver and machine event, with
/// the machine (for its transcript) as it is right after the event.
///
/// Errors are only for what happens before the machine can start (the TCP connect, the
/// implicit-TLS handshake); everything later is an outcome the machine reports.
pub async fn run_smtp_client(
    target: &SmtpTarget,
    tls: &TlsClient,
    client: &mut Client,
    mut on_event: impl FnMut(&Client, DriverEvent),
) -> Result<(), SessionError> {
    let started = Instant::now();
    let connected =
        connect_tcp_from(&target.host, target.port, target.timeout, target.local).await?;
    on_event(
        client,
        DriverEvent::Connected {
            peer: connected.peer,
            local: connected.local,
            elapsed_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            failed_attempts: connected.failed_attempts,
        },
    );
    client.set_peer_is_loopback(connected.peer.ip().is_loopback());
    let mut stream = MaybeTlsStream::Plain(connected.stream);
    if let Some((version, src, dst)) = target.proxy {
        // The PROXY header precedes everything, TLS included (HAProxy spec §2).
        let (src, dst) = (
            src.unwrap_or(connected.local),
            dst.unwrap_or(connected.peer),
        );
        let header = match version {
            1 => mailscope_proto::smtp::client::proxy::encode_proxy_v1(src, dst),
            _ => mailscope_proto::smtp::client::proxy::encode_proxy_v2(src, dst),
        };
        client.send_preamble(now(), &header);
        let mut out = Vec::new();
        while client.poll_transmit(&mut out) {}
        if let Err(e) = stream.write_all(&out).await {
            return Err(SessionError::Connect(NetError::Connect {
                addr: connected.peer,
                source: e,
            }));
        }
    }
    if target.implicit_tls {
        match stream.upgrade(tls, &target.host, target.timeout).await {
            Ok((s, report)) => {
                stream = s;
                if let Some(conn) = stream.tls_connection() {
                    client.set_channel_binding_data(client_channel_binding(conn));
                }
                on_event(client, DriverEvent::TlsEstablished(Box::new(report)));
            }
            Err(e) => return Err(SessionError::ImplicitTls(Box::new(e))),
        }
    }
    client.start(now());
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut stream = Some(stream);
    loop {
        // 1. Write what the machine wants sent.
        out.clear();
        while client.poll_transmit(&mut out) {}
        if let Some(s) = stream.as_mut().filter(|_| !out.is_empty()) {
            let written = async {
                s.write_all(&out).await?;
                s.flush().await
            };
            if tokio::time::timeout(target.timeout, written)
                .await
                .map_or(true, |r| r.is_err())
            {
                client.handle_eof(now());
            }
        }
        // 2. Hand events to the front end; STARTTLS is the one the driver acts on.
        while let Some((pos, ev)) = client.poll_event_positioned() {
            let starttls = matches!(ev, Event::StartTlsRequested);
            on_event(client, DriverEvent::Machine(pos, ev));
            if starttls {
                let Some(plain) = stream.take() else { break };
                match plain.upgrade(tls, &target.host, target.timeout).await {
                    Ok((s, report)) => {
                        let binding = s
                            .tls_connection()
                            .map(client_channel_binding)
                            .unwrap_or_default();
                        stream = Some(s);
                        on_event(client, DriverEvent::TlsEstablished(Box::new(report)));
                        client.handle_tls_established_with(now(), binding);
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        on_event(client, DriverEvent::TlsFailed(Box::new(e)));
                        client.handle_tls_failed(now(), &reason);
                    }
                }
            }
        }
        // The TLS handshake (or a failure) may have queued bytes and events: go round again
        // before waiting for the server.
        if client.has_pending_output() {
            continue;
        }
        if client.is_finished() {
            // Drain what the machine queued last (nothing, normally) and leave.
            out.clear();
            while client.poll_transmit(&mut out) {}
            if let Some(s) = stream.as_mut() {
                if !out.is_empty() {
                    let _ = s.write_all(&out).await;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
            }
            while let Some((pos, ev)) = client.poll_event_positioned() {
                on_event(client, DriverEvent::Machine(pos, ev));
            }
            return Ok(());
        }
        // 3. Wait for bytes or the machine's deadline.
        let Some(s) = stream.as_mut() else {
            client.handle_eof(now());
            continue;
        };
        let wait = client
            .poll_timeout()
            .map(|t| Duration::from_micros(t.0.saturating_sub(now().0)))
            .unwrap_or(target.timeout);
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Err(e)) if tls_alert(&e).is_some() => {
                let reason = tls_alert(&e).unwrap_or_default();
                client.handle_tls_failed(now(), &reason);
            }
            Ok(Ok(0)) | Ok(Err(_)) => client.handle_eof(now()),
            Ok(Ok(n)) => client.handle_input(now(), &buf[..n]),
            Err(_) => client.handle_timeout(now()),
        }
    }
}

/// A fatal TLS alert from the server after the handshake looked done from our side: with
/// TLS 1.3 a server checks the client certificate after the client's Finished, so a refused
/// certificate shows up as an alert on the first read, not as a handshake error.
fn tls_alert(e: &std::io::Error) -> Option<String> {
    use rustls::AlertDescription as A;
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    let rustls::Error::AlertReceived(alert) = inner else {
        return None;
    };
    // RFC 8446 §6 names, for the alerts about the client's certificate.
    let certificate_alert = match alert {
        A::BadCertificate => Some("bad_certificate"),
        A::UnsupportedCertificate => Some("unsupported_certificate"),
        A::CertificateRevoked => Some("certificate_revoked"),
        A::CertificateExpired => Some("certificate_expired"),
        A::CertificateUnknown => Some("certificate_unknown"),
        A::UnknownCA => Some("unknown_ca"),
        A::CertificateRequired => Some("certificate_required"),
        A::AccessDenied => Some("access_denied"),
        _ => None,
    };
    Some(match certificate_alert {
        Some(name) => format!(
            "the server sent the TLS alert {name}: it refused the client certificate (--tls-cert; does it trust the certificate's CA?)"
        ),
        None => format!("the server sent the TLS alert {alert:?}"),
    })
}

/// Failures before the session could start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The TCP connection failed.
    #[error(transparent)]
    Connect(#[from] NetError),
    /// The implicit-TLS handshake failed.
    #[error("{0}")]
    ImplicitTls(Box<TlsFailure>),
}

/// The label of RFC 9266's `tls-exporter` channel binding.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// Channel binding data of a client connection: `tls-exporter` (32 bytes of exported keying
/// material, RFC 9266: the label `EXPORTER-Channel-Binding`, no context) and
/// `tls-server-end-point` (the hash of the server's leaf certificate, RFC 5929 §4).
///
/// rustls exports keying material for TLS 1.3 and 1.2 alike. RFC 9266 allows TLS 1.2 only
/// with the extended master secret; rustls always offers it but does not report whether the
/// server agreed, so the client machine uses `tls-exporter` on TLS 1.2 only when asked
/// (the default there is `tls-server-end-point`) and notes the caveat.
pub fn client_channel_binding(conn: &rustls::ClientConnection) -> ChannelBindingData {
    ChannelBindingData {
        tls_exporter: conn
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
            .ok()
            .map(|k| k.to_vec()),
        tls_server_end_point: conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| tls_server_end_point(leaf)),
        tls13: conn.protocol_version() == Some(ProtocolVersion::TLSv1_3),
    }
}

/// Channel binding data of a server connection (the sink): the same exporter, and the hash
/// of the certificate the server presents, `own_leaf` (rustls does not hand a server its own
/// certificate back, so the caller, who configured it, passes its DER).
pub fn server_channel_binding(
    conn: &rustls::ServerConnection,
    own_leaf: Option<&[u8]>,
) -> ChannelBindingData {
    ChannelBindingData {
        tls_exporter: conn
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
            .ok()
            .map(|k| k.to_vec()),
        tls_server_end_point: own_leaf.and_then(tls_server_end_point),
        tls13: conn.protocol_version() == Some(ProtocolVersion::TLSv1_3),
    }
}

/// `tls-server-end-point` data for a DER certificate (RFC 5929 §4.1): its hash with the hash
/// function of its signature algorithm, except that MD5 and SHA-1 become SHA-256. `None` when
/// the algorithm names no single hash (Ed25519, Ed448) or is unknown, or the DER does not
/// parse: then there is no such binding for this certificate.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let alg = &cert.signature_algorithm;
    let oid = alg.algorithm.to_id_string();
    let hash = match oid.as_str() {
        // RSASSA-PSS names its hash in the parameters (SHA-1 when absent, RFC 4055).
        "1.2.840.113549.1.1.10" => {
            let params = alg.parameters.as_ref()?;
            let pss = x509_parser::signature_algorithm::RsaSsaPssParams::try_from(params).ok()?;
            hash_of_oid(&pss.hash_algorithm_oid().to_id_string())?
        }
        other => signature_hash(other)?,
    };
    Some(match hash {
        "sha224" => sha2::Sha224::digest(cert_der).to_vec(),
        "sha384" => sha2::Sha384::digest(cert_der).to_vec(),
        "sha512" => sha2::Sha512::digest(cert_der).to_vec(),
        // MD5, SHA-1 and SHA-256 all map to SHA-256.
        _ => sha2::Sha256::digest(cert_der).to_vec(),
    })
}

/// The hash of a signature algorithm OID: `md5`, `sha1`, `sha224`, `sha256`, `sha384`,
/// `sha512`.
fn signature_hash(oid: &str) -> Option<&'static str> {
    Some(match oid {
        // PKCS #1 RSA
        "1.2.840.113549.1.1.4" => "md5",
        "1.2.840.113549.1.1.5" => "sha1",
        "1.2.840.113549.1.1.11" => "sha256",
        "1.2.840.113549.1.1.12" => "sha384",
        "1.2.840.113549.1.1.13" => "sha512",
        "1.2.840.113549.1.1.14" => "sha224",
        // ECDSA (ANSI X9.62)
        "1.2.840.10045.4.1" => "sha1",
        "1.2.840.10045.4.3.1" => "sha224",
        "1.2.840.10045.4.3.2" => "sha256",
        "1.2.840.10045.4.3.3" => "sha384",
        "1.2.840.10045.4.3.4" => "sha512",
        // DSA
        "1.2.840.10040.4.3" => "sha1",
        "2.16.840.1.101.3.4.3.1" => "sha224",
        "2.16.840.1.101.3.4.3.2" => "sha256",
        _ => return None,
    })
}

/// The name of a hash algorithm OID (for RSASSA-PSS parameters).
fn hash_of_oid(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.2.840.113549.2.5" => "md5",
        "1.3.14.3.2.26" => "sha1",
        "2.16.840.1.101.3.4.2.4" => "sha224",
        "2.16.840.1.101.3.4.2.1" => "sha256",
        "2.16.840.1.101.3.4.2.2" => "sha384",
        "2.16.840.1.101.3.4.2.3" => "sha512",
        _ => return None,
    })
}

#[cfg(test)]
mod channel_binding_tests {
    use super::*;

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        // rcgen signs with ECDSA P-256 / SHA-256 by default: SHA-256 of the DER.
        let g = crate::certgen::generate_server_tls(&["localhost".into()]).expect("generate");
        let leaf = crate::server::leaf_der_from_pem(g.chain_pem.as_bytes()).expect("leaf");
        let h = tls_server_end_point(&leaf).expect("hash");
        assert_eq!(h, sha2::Sha256::digest(&leaf).to_vec());
        assert_eq!(
            h.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            g.leaf_sha256
        );
        // ECDSA P-384 with SHA-384: SHA-384 of the DER.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["x.test".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(
            tls_server_end_point(cert.der()),
            Some(sha2::Sha384::digest(cert.der()).to_vec())
        );
        // Ed25519 names no single hash: no tls-server-end-point.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["x.test".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(tls_server_end_point(cert.der()), None);
        assert_eq!(tls_server_end_point(b"not DER"), None);
        assert_eq!(signature_hash("1.2.840.113549.1.1.5"), Some("sha1"));
    }

    /// A real handshake in memory (TLS 1.3 and 1.2): client and server compute the same
    /// channel binding data, and the server sees the client certificate's identity.
    #[tokio::test]
    async fn both_ends_of_a_handshake_agree() {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa,
            KeyPair,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let g = crate::certgen::generate_server_tls(&["localhost".into()]).expect("generate");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &g.ca_pem).expect("write ca");
        // A client CA and a client certificate for CN=alice.
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "client CA");
        let client_ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let mut leaf = CertificateParams::new(vec!["alice.example.test".to_string()]).expect("p");
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name.push(DnType::CommonName, "alice");
        let client_key = KeyPair::generate().expect("key");
        let client_cert = leaf.signed_by(&client_key, &client_ca).expect("sign");
        let cert_path = dir.path().join("client.pem");
        let key_path = dir.path().join("client.key");
        std::fs::write(&cert_path, client_cert.pem()).expect("write");
        std::fs::write(&key_path, client_key.serialize_pem()).expect("write");
        let server_config = crate::server::server_config_with_client_ca(
            g.chain_pem.as_bytes(),
            g.key_pem.as_bytes(),
            client_ca.pem().as_bytes(),
        )
        .expect("server config");
        let own_leaf = crate::server::leaf_der_from_pem(g.chain_pem.as_bytes()).expect("leaf");
        for (version, tls13) in [("TLSv1.3", true), ("TLSv1.2", false)] {
            let client = crate::TlsClient::new(&crate::TlsClientOptions {
                extra_ca_files: vec![ca_path.clone()],
                versions: vec![version.into()],
                client_cert: Some((cert_path.clone(), key_path.clone())),
                ..Default::default()
            })
            .expect("client");
            let (a, b) = tokio::io::duplex(64 * 1024);
            let acceptor = tokio_rustls::TlsAcceptor::from(server_config.clone());
            let server = tokio::spawn(async move { acceptor.accept(b).await });
            let (tls, _) = client
                .handshake(a, "localhost", Duration::from_secs(10))
                .await
                .expect("client handshake");
            let server_tls = server.await.expect("join").expect("server handshake");
            let c = client_channel_binding(tls.get_ref().1);
            let s = server_channel_binding(server_tls.get_ref().1, Some(&own_leaf));
            assert_eq!(c.tls13, tls13);
            assert_eq!(c, s, "{version}");
            assert_eq!(c.tls_exporter.as_ref().map(Vec::len), Some(32));
            assert_eq!(c.tls_server_end_point.as_ref().map(Vec::len), Some(32));
            let peer = server_tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| crate::server::client_certificate(leaf))
                .expect("client certificate");
            assert_eq!(peer.identity, "alice");
            assert!(peer.subject.contains("CN=alice"), "{}", peer.subject);
        }
    }
}
