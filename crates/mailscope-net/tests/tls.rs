//! TLS client, verification reports, key log, STARTTLS upgrade and TCP errors, against
//! tokio-rustls servers on 127.0.0.1 started by the tests themselves (a mock peer: these
//! tests are about our verifier plumbing, which needs certificates no real server here has).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailscope_net::{
    MaybeTlsStream, NetError, TlsClient, TlsClientOptions, TlsFailure, TlsReport, Verification,
    VerifyFailure, connect_tcp, parse_server, server_config_from_pem, tls_handshake,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const T: Duration = Duration::from_secs(10);

/// A private CA and leaves it issued.
struct Pki {
    ca_pem: String,
    /// leaf + CA, PEM.
    good_chain: String,
    good_key: String,
    expired_chain: String,
    expired_key: String,
    self_signed: String,
    self_signed_key: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailscope test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
        .expect("ca cert");

    let leaf = |expired: bool| {
        let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("leaf params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        if expired {
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2024, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, &ca).expect("sign leaf");
        (format!("{}{}", cert.pem(), ca.pem()), key.serialize_pem())
    };
    let (good_chain, good_key) = leaf(false);
    let (expired_chain, expired_key) = leaf(true);
    let ss = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed");
    Pki {
        ca_pem: ca.pem(),
        good_chain,
        good_key,
        expired_chain,
        expired_key,
        self_signed: ss.cert.pem(),
        self_signed_key: ss.signing_key.serialize_pem(),
    }
}

/// Serves TLS on 127.0.0.1:0: optionally a plain greeting first (STARTTLS style), then the
/// handshake, then `220 tls ok\r\n`, then waits for the client to close.
async fn serve(config: Arc<rustls::ServerConfig>, plain_greeting: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if plain_greeting {
                    let _ = tcp.write_all(b"220 ready for TLS\r\n").await;
                }
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"220 tls ok\r\n").await;
                    let mut sink = Vec::new();
                    let _ = tls.read_to_end(&mut sink).await;
                }
            });
        }
    });
    port
}

async fn serve_pem(chain: &str, key: &str) -> u16 {
    let cfg = server_config_from_pem(chain.as_bytes(), key.as_bytes()).expect("server config");
    serve(cfg, false).await
}

async fn tcp(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect")
}

fn ca_file(dir: &tempfile::TempDir, pem: &str) -> PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pem).expect("write ca");
    path
}

async fn read_line<S: tokio::io::AsyncRead + Unpin>(s: S) -> String {
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .await
        .expect("read line");
    line
}

fn assert_leaf(report: &TlsReport) {
    let leaf = report.chain.first().expect("leaf");
    assert_eq!(leaf.subject, "CN=localhost");
    assert_eq!(leaf.issuer, "CN=mailscope test CA");
    assert_eq!(leaf.san, vec!["DNS:localhost", "IP:127.0.0.1"]);
    assert_eq!(leaf.public_key_algorithm, "EC P-256");
    assert_eq!(leaf.public_key_bits, Some(256));
    assert_eq!(leaf.signature_algorithm, "ecdsa-with-SHA256");
    assert!(!leaf.is_ca);
    assert_eq!(leaf.sha256_fingerprint.len(), 64);
    assert!(leaf.parse_error.is_none());
    let ca = &report.chain[1];
    assert_eq!(ca.subject, "CN=mailscope test CA");
    assert!(ca.is_ca && ca.self_signed);
}

#[tokio::test]
async fn private_ca_is_refused_by_default() {
    let pki = pki();
    let port = serve_pem(&pki.good_chain, &pki.good_key).await;
    let err = tls_handshake(
        tcp(port).await,
        "localhost",
        &TlsClientOptions::default(),
        T,
    )
    .await
    .expect_err("must not verify");
    let TlsFailure::CertificateInvalid {
        kind,
        reason,
        chain,
    } = &err
    else {
        panic!("wrong failure: {err:?}");
    };
    assert_eq!(*kind, VerifyFailure::UnknownIssuer);
    assert_eq!(
        reason,
        "unknown issuer: the chain does not lead to a trusted root; pass --tls-ca-path FILE to trust a private CA, or --insecure"
    );
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].subject, "CN=localhost");
    assert!(
        err.to_string()
            .starts_with("certificate verification failed: unknown issuer"),
        "{err}"
    );
}

#[tokio::test]
async fn self_signed_is_refused_and_named() {
    let pki = pki();
    let port = serve_pem(&pki.self_signed, &pki.self_signed_key).await;
    let err = tls_handshake(
        tcp(port).await,
        "localhost",
        &TlsClientOptions::default(),
        T,
    )
    .await
    .expect_err("must not verify");
    let TlsFailure::CertificateInvalid {
        kind,
        reason,
        chain,
    } = err
    else {
        panic!("wrong failure: {err:?}");
    };
    assert_eq!(kind, VerifyFailure::UnknownIssuer);
    assert!(reason.contains("self-signed"), "{reason}");
    assert_eq!(chain.len(), 1);
    assert!(chain[0].self_signed);
}

#[tokio::test]
async fn extra_ca_file_verifies_and_reports() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve_pem(&pki.good_chain, &pki.good_key).await;
    let opts = TlsClientOptions {
        extra_ca_files: vec![ca_file(&dir, &pki.ca_pem)],
        ..Default::default()
    };
    let (tls, report) = tls_handshake(tcp(port).await, "localhost", &opts, T)
        .await
        .expect("handshake");
    assert_eq!(report.verification, Verification::Verified);
    assert_eq!(report.version, "TLSv1.3");
    assert!(
        report.cipher_suite.starts_with("TLS13_"),
        "{}",
        report.cipher_suite
    );
    assert_eq!(report.key_exchange_group.as_deref(), Some("X25519"));
    assert_eq!(report.sni.as_deref(), Some("localhost"));
    assert_eq!(report.verified_name, "localhost");
    assert_eq!(report.handshake_kind, "full");
    assert_eq!(report.alpn, None);
    assert!(report.keylog_path.is_none());
    assert_eq!(report.chain.len(), 2);
    assert_leaf(&report);
    let leaf = &report.chain[0];
    let (nb, na) = (
        leaf.not_before.as_ref().expect("notBefore"),
        leaf.not_after.as_ref().expect("notAfter"),
    );
    assert_eq!(nb.utc, "1975-01-01 00:00:00 UTC");
    assert_eq!(nb.rfc3339, "1975-01-01T00:00:00Z");
    assert_eq!(na.utc, "4096-01-01 00:00:00 UTC");
    assert!(nb.unix < na.unix);
    assert_eq!(read_line(tls).await, "220 tls ok\r\n");
}

#[tokio::test]
async fn ip_literal_verifies_ip_san_without_sni() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve_pem(&pki.good_chain, &pki.good_key).await;
    let opts = TlsClientOptions {
        extra_ca_files: vec![ca_file(&dir, &pki.ca_pem)],
        ..Default::default()
    };
    let (_tls, report) = tls_handshake(tcp(port).await, "127.0.0.1", &opts, T)
        .await
        .expect("handshake");
    assert_eq!(report.verification, Verification::Verified);
    assert_eq!(report.sni, None);
    assert_eq!(report.verified_name, "127.0.0.1");
}

#[tokio::test]
async fn wrong_name_is_a_name_mismatch_listing_the_names() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve_pem(&pki.good_chain, &pki.good_key).await;
    let opts = TlsClientOptions {
        extra_ca_files: vec![ca_file(&dir, &pki.ca_pem)],
        sni: Some("wrong.example".to_owned()),
        ..Default::default()
    };
    let err = tls_handshake(tcp(port).await, "127.0.0.1", &opts, T)
        .await
        .expect_err("wrong name");
    let TlsFailure::CertificateInvalid {
        kind,
        reason,
        chain,
    } = err
    else {
        panic!("wrong failure: {err:?}");
    };
    assert_eq!(
        kind,
        VerifyFailure::NameMismatch {
            expected: "wrong.example".to_owned(),
            presented: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        }
    );
    assert_eq!(
        reason,
        "certificate is not valid for name \"wrong.example\" (it names: localhost, 127.0.0.1)"
    );
    assert_eq!(chain.len(), 2);
}

#[tokio::test]
async fn expired_leaf_is_expired() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve_pem(&pki.expired_chain, &pki.expired_key).await;
    let opts = TlsClientOptions {
        extra_ca_files: vec![ca_file(&dir, &pki.ca_pem)],
        ..Default::default()
    };
    let err = tls_handshake(tcp(port).await, "localhost", &opts, T)
        .await
        .expect_err("expired");
    let TlsFailure::CertificateInvalid { kind, reason, .. } = err else {
        panic!("wrong failure: {err:?}");
    };
    assert_eq!(
        kind,
        VerifyFailure::Expired {
            not_after: Some("2024-01-01 00:00:00 UTC".to_owned())
        }
    );
    assert_eq!(
        reason,
        "certificate has expired (notAfter 2024-01-01 00:00:00 UTC)"
    );
}

#[tokio::test]
async fn insecure_continues_and_records_the_failure() {
    let pki = pki();
    let port = serve_pem(&pki.good_chain, &pki.good_key).await;
    let opts = TlsClientOptions {
        insecure: true,
        ..Default::default()
    };
    let (tls, report) = tls_handshake(tcp(port).await, "localhost", &opts, T)
        .await
        .expect("insecure handshake");
    let Verification::Failed { kind, reason } = &report.verification else {
        panic!("failure not recorded: {:?}", report.verification);
    };
    assert_eq!(*kind, VerifyFailure::UnknownIssuer);
    assert!(reason.starts_with("unknown issuer"), "{reason}");
    assert_leaf(&report);
    assert_eq!(read_line(tls).await, "220 tls ok\r\n");
}

#[tokio::test]
async fn keylog_gets_tls13_secrets() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let keylog = dir.path().join("keys.log");
    let port = serve_pem(&pki.good_chain, &pki.good_key).await;
    let opts = TlsClientOptions {
        extra_ca_files: vec![ca_file(&dir, &pki.ca_pem)],
        keylog: Some(keylog.clone()),
        ..Default::default()
    };
    let (tls, report) = tls_handshake(tcp(port).await, "localhost", &opts, T)
        .await
        .expect("handshake");
    assert_eq!(read_line(tls).await, "220 tls ok\r\n");
    assert_eq!(report.keylog_path.as_deref(), Some(keylog.as_path()));
    assert_eq!(report.keylog_error, None);
    let text = std::fs::read_to_string(&keylog).expect("read key log");
    for label in [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(label)),
            "{label} missing:\n{text}"
        );
    }
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!(fields[1].len(), 64, "client random is 32 bytes: {line}");
        assert!(fields[2].chars().all(|c| c.is_ascii_hexdigit()), "{line}");
    }
}

#[tokio::test]
async fn tls12_and_alpn_are_reported_and_keylog_has_client_random() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let keylog = dir.path().join("keys.log");
    let certs: Vec<_> =
        rustls::pki_types::pem::PemObject::pem_slice_iter(pki.good_chain.as_bytes())
            .collect::<Result<Vec<rustls::pki_types::CertificateDer<'static>>, _>>()
            .expect("certs");
    let key = <rustls::pki_types::PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(
        pki.good_key.as_bytes(),
    )
    .expect("key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(mailscope_net::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("tls12")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    cfg.alpn_protocols = vec![b"smtp".to_vec()];
    let port = serve(Arc::new(cfg), false).await;
    let opts = TlsClientOptions {
        extra_ca_files: vec![ca_file(&dir, &pki.ca_pem)],
        alpn: vec![b"imap".to_vec(), b"smtp".to_vec()],
        keylog: Some(keylog.clone()),
        ..Default::default()
    };
    let (tls, report) = tls_handshake(tcp(port).await, "localhost", &opts, T)
        .await
        .expect("handshake");
    assert_eq!(report.version, "TLSv1.2");
    assert!(
        report.cipher_suite.starts_with("TLS_ECDHE_ECDSA_WITH_"),
        "{}",
        report.cipher_suite
    );
    assert_eq!(report.alpn.as_deref(), Some("smtp"));
    assert_eq!(report.verification, Verification::Verified);
    assert_eq!(read_line(tls).await, "220 tls ok\r\n");
    let text = std::fs::read_to_string(&keylog).expect("read key log");
    assert!(text.starts_with("CLIENT_RANDOM "), "{text}");
}

#[tokio::test]
async fn starttls_upgrade_of_a_plain_stream() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = server_config_from_pem(pki.good_chain.as_bytes(), pki.good_key.as_bytes())
        .expect("server config");
    let port = serve(cfg, true).await;
    let client = TlsClient::new(&TlsClientOptions {
        extra_ca_files: vec![ca_file(&dir, &pki.ca_pem)],
        ..Default::default()
    })
    .expect("client");
    let connected = connect_tcp("127.0.0.1", port, T).await.expect("connect");
    assert_eq!(connected.peer.port(), port);
    assert!(connected.failed_attempts.is_empty());
    let mut stream = MaybeTlsStream::from(connected.stream);
    assert!(!stream.is_tls());
    // Read the plain greeting byte by byte so nothing of the TLS stream is read ahead.
    let mut greeting = Vec::new();
    while !greeting.ends_with(b"\n") {
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.expect("greeting");
        greeting.push(b[0]);
    }
    assert_eq!(greeting, b"220 ready for TLS\r\n");
    let (stream, report) = stream
        .upgrade(&client, "localhost", T)
        .await
        .expect("upgrade");
    assert!(stream.is_tls());
    assert!(stream.tls_connection().is_some());
    assert_eq!(report.verification, Verification::Verified);
    assert_eq!(read_line(stream).await, "220 tls ok\r\n");
}

#[tokio::test]
async fn plaintext_server_eof_and_silence_are_distinct_failures() {
    // A server that speaks SMTP, not TLS.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let plain_port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"220 plain smtp here\r\n").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let err = tls_handshake(
        tcp(plain_port).await,
        "localhost",
        &TlsClientOptions::default(),
        T,
    )
    .await
    .expect_err("not tls");
    assert!(matches!(err, TlsFailure::NotTls { .. }), "{err:?}");
    assert!(
        err.to_string().contains("does this port expect STARTTLS"),
        "{err}"
    );

    // A server that reads the ClientHello and closes (a clean FIN, not a reset).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let eof_port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut hello = [0u8; 4096];
            let _ = s.read(&mut hello).await;
            let _ = s.shutdown().await;
        }
    });
    let err = tls_handshake(
        tcp(eof_port).await,
        "localhost",
        &TlsClientOptions::default(),
        T,
    )
    .await
    .expect_err("eof");
    assert!(matches!(err, TlsFailure::Eof), "{err:?}");

    // A server that accepts and says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            keep.push(s);
        }
    });
    let short = Duration::from_millis(300);
    let err = tls_handshake(
        tcp(silent_port).await,
        "localhost",
        &TlsClientOptions::default(),
        short,
    )
    .await
    .expect_err("timeout");
    assert!(matches!(err, TlsFailure::Timeout { .. }), "{err:?}");
    assert_eq!(err.to_string(), "TLS handshake timed out after 300ms");
}

#[tokio::test]
async fn server_alert_is_reported_by_name() {
    let pki = pki();
    let mut cfg = (*server_config_from_pem(pki.good_chain.as_bytes(), pki.good_key.as_bytes())
        .expect("server config"))
    .clone();
    cfg.alpn_protocols = vec![b"imap".to_vec()];
    let port = serve(Arc::new(cfg), false).await;
    let opts = TlsClientOptions {
        insecure: true,
        alpn: vec![b"smtp".to_vec()],
        ..Default::default()
    };
    let err = tls_handshake(tcp(port).await, "localhost", &opts, T)
        .await
        .expect_err("alert");
    let TlsFailure::AlertReceived { alert } = &err else {
        panic!("wrong failure: {err:?}");
    };
    assert_eq!(alert, "no_application_protocol");
    assert_eq!(
        err.to_string(),
        "the server refused the TLS handshake with alert no_application_protocol"
    );
}

#[tokio::test]
async fn closed_port_is_refused_not_timed_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let err = connect_tcp("127.0.0.1", port, T)
        .await
        .expect_err("refused");
    assert!(matches!(err, NetError::Refused { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("connection refused to 127.0.0.1:{port}")
    );
    let err = connect_tcp("[127.0.0.1]", port, T)
        .await
        .expect_err("refused");
    assert!(matches!(err, NetError::Refused { .. }), "{err:?}");
}

#[tokio::test]
async fn connect_over_ipv6_loopback() {
    let listener = TcpListener::bind("[::1]:0")
        .await
        .expect("this test needs an IPv6 loopback (::1)");
    let port = listener.local_addr().expect("addr").port();
    let connected = connect_tcp("[::1]", port, T).await.expect("connect");
    assert!(connected.peer.is_ipv6());
    let connected = connect_tcp("::1", port, T).await.expect("connect");
    assert!(connected.peer.is_ipv6());
}

#[test]
fn parse_server_cases() {
    let p = |s: &str| parse_server(s, 25).expect("parses");
    assert_eq!(p("localhost"), ("localhost".to_owned(), 25));
    assert_eq!(p("localhost:2525"), ("localhost".to_owned(), 2525));
    assert_eq!(p("127.0.0.1:587"), ("127.0.0.1".to_owned(), 587));
    assert_eq!(p("[::1]:2525"), ("::1".to_owned(), 2525));
    assert_eq!(p("[::1]"), ("::1".to_owned(), 25));
    assert_eq!(p("::1"), ("::1".to_owned(), 25));
    assert_eq!(p("fe80::1:2:3"), ("fe80::1:2:3".to_owned(), 25));
    let e = parse_server("[::1]:x", 25).expect_err("bad port");
    assert_eq!(
        e.to_string(),
        "invalid server address \"[::1]:x\": port is not a number from 1 to 65535"
    );
    assert!(parse_server("mail.example:99999", 25).is_err());
    assert!(parse_server("1:2:3", 25).is_err());
}
