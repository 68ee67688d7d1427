//! The async driver for the SMTP server machine (the sink): listeners, connection limits with
//! eviction of idle connections, implicit TLS and STARTTLS, and one task per connection that
//! feeds bytes to a [`Server`] machine and writes what it wants sent. No SMTP is parsed here.
//!
//! Connection limits: at most `max_connections` at once and `max_per_ip` from one address.
//! When the total is reached, the connection that has been idle longest is told `421` and
//! closed to make room, so a thousand idle connections from one address never lock out a new
//! client. A client over its per-address limit gets `421 4.7.0` at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailscope_proto::smtp::server::{
    ClientCertificate, CloseReason, Event, ReceivedMessage, Server, TlsFacts,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::error::NetError;
use crate::smtp::{now, server_channel_binding};

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// SMTP with STARTTLS (port 25 style).
    Smtp,
    /// Submission with STARTTLS (port 587 style).
    Submission,
    /// Submission over implicit TLS (port 465 style).
    Submissions,
    /// LMTP.
    Lmtp,
}

impl ListenerKind {
    /// The URL scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            ListenerKind::Smtp => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
            ListenerKind::Lmtp => "lmtp",
        }
    }

    /// Whether TLS starts with the first byte.
    pub fn implicit_tls(self) -> bool {
        self == ListenerKind::Submissions
    }
}

/// One listener: `smtp://127.0.0.1:2525`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSpec {
    /// What it speaks.
    pub kind: ListenerKind,
    /// Where.
    pub addr: SocketAddr,
}

impl ListenerSpec {
    /// Parses `[scheme://]ADDR:PORT`; the scheme defaults to `smtp`. IPv6 as `[::1]:2525`.
    pub fn parse(s: &str) -> Result<ListenerSpec, NetError> {
        let (kind, rest) = match s.split_once("://") {
            Some((scheme, rest)) => {
                let kind = match scheme.to_ascii_lowercase().as_str() {
                    "smtp" => ListenerKind::Smtp,
                    "submission" => ListenerKind::Submission,
                    "submissions" | "smtps" => ListenerKind::Submissions,
                    "lmtp" => ListenerKind::Lmtp,
                    other => {
                        return Err(NetError::InvalidAddress {
                            input: s.to_string(),
                            reason: format!(
                                "unknown listener kind {other:?} (smtp, submission, submissions, lmtp)"
                            ),
                        });
                    }
                };
                (kind, rest)
            }
            None => (ListenerKind::Smtp, s),
        };
        let addr = rest
            .parse::<SocketAddr>()
            .map_err(|e| NetError::InvalidAddress {
                input: s.to_string(),
                reason: format!("expected ADDR:PORT such as 127.0.0.1:2525 or [::1]:2525 ({e})"),
            })?;
        Ok(ListenerSpec { kind, addr })
    }
}

impl std::fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.kind.scheme(), self.addr)
    }
}

/// Limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections at once (default 1000).
    pub max_connections: usize,
    /// Connections at once from one address (default 100).
    pub max_per_ip: usize,
    /// Budget for a TLS handshake (default 30 s).
    pub tls_handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_per_ip: 100,
            tls_handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// Facts about one accepted connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Unique per process run.
    pub id: u64,
    /// The listener it came in on.
    pub listener: ListenerSpec,
    /// The client.
    pub peer: SocketAddr,
    /// Our side.
    pub local: SocketAddr,
}

/// What the front end does with sessions. One value serves every connection.
pub trait SessionHandler: Send + Sync + 'static {
    /// A machine for a new connection.
    fn new_session(&self, conn: &ConnInfo) -> Server;
    /// Stores a message the machine accepted (called only with `confirm_storage`); returns a
    /// queue id for the 250 reply, or why storing failed (the client gets 451).
    fn store(
        &self,
        conn: &ConnInfo,
        server: &Server,
        message: &ReceivedMessage,
    ) -> impl Future<Output = Result<String, String>> + Send;
    /// Every machine event, with the machine as it is right after (for its transcript).
    fn on_event(&self, conn: &ConnInfo, server: &Server, event: &Event);
    /// A TLS handshake finished (`Ok(version and suite)`) or failed.
    fn on_tls(&self, conn: &ConnInfo, result: Result<String, String>);
    /// The connection is gone.
    fn on_closed(&self, conn: &ConnInfo, server: &Server, reason: Option<CloseReason>);
    /// A connection was refused or evicted before or outside a session (limits).
    fn on_refused(&self, peer: SocketAddr, why: &str);
    /// The DER of the certificate the server presents (the leaf), for the
    /// `tls-server-end-point` channel binding; `None`: that binding type is not offered.
    fn tls_certificate(&self) -> Option<&[u8]> {
        None
    }
}

struct Slot {
    ip: IpAddr,
    last_active: Instant,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Registry {
    slots: HashMap<u64, Slot>,
}

/// Binds every listener (failing early with a clear error), then serves until `shutdown`
/// resolves. Returns the bound addresses through `on_bound` before serving (port 0 works).
pub async fn serve<H: SessionHandler>(
    specs: &[ListenerSpec],
    tls: Option<Arc<ServerConfig>>,
    limits: ConnectionLimits,
    handler: Arc<H>,
    on_bound: impl FnOnce(&[ListenerSpec]),
    shutdown: impl Future<Output = ()>,
) -> Result<(), NetError> {
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for spec in specs {
        if spec.kind.implicit_tls() && tls.is_none() {
            return Err(NetError::TlsConfig(format!(
                "{spec} needs a TLS certificate"
            )));
        }
        let l = TcpListener::bind(spec.addr)
            .await
            .map_err(|source| NetError::Listen {
                listener: spec.to_string(),
                source,
            })?;
        let addr = l.local_addr().unwrap_or(spec.addr);
        let spec = ListenerSpec {
            kind: spec.kind,
            addr,
        };
        bound.push(spec);
        listeners.push((spec, l));
    }
    on_bound(&bound);
    let registry = Arc::new(Mutex::new(Registry::default()));
    let ids = Arc::new(AtomicU64::new(1));
    let acceptor = tls.map(TlsAcceptor::from);
    let mut tasks = tokio::task::JoinSet::new();
    for (spec, listener) in listeners {
        let registry = registry.clone();
        let ids = ids.clone();
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        tasks.spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let Some(evict) = admit(&registry, id, peer, &limits, handler.as_ref()) else {
                    tokio::spawn(refuse(tcp, spec.kind.implicit_tls()));
                    continue;
                };
                let local = tcp.local_addr().unwrap_or(spec.addr);
                let conn = ConnInfo {
                    id,
                    listener: spec,
                    peer,
                    local,
                };
                let registry = registry.clone();
                let handler = handler.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    run_connection(
                        conn,
                        tcp,
                        acceptor,
                        limits,
                        handler,
                        registry.clone(),
                        evict,
                    )
                    .await;
                    if let Ok(mut r) = registry.lock() {
                        r.slots.remove(&id);
                    }
                });
            }
        });
    }
    shutdown.await;
    tasks.abort_all();
    Ok(())
}

/// Registers a connection, evicting the longest-idle one when full; `None` refuses it.
fn admit<H: SessionHandler>(
    registry: &Mutex<Registry>,
    id: u64,
    peer: SocketAddr,
    limits: &ConnectionLimits,
    handler: &H,
) -> Option<Arc<Notify>> {
    let mut r = registry.lock().ok()?;
    let from_ip = r.slots.values().filter(|s| s.ip == peer.ip()).count();
    if from_ip >= limits.max_per_ip {
        handler.on_refused(
            peer,
            &format!(
                "{from_ip} connections from {} already (limit {})",
                peer.ip(),
                limits.max_per_ip
            ),
        );
        return None;
    }
    if r.slots.len() >= limits.max_connections {
        // Evict the longest-idle connection, preferring the address with the most.
        let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
        for s in r.slots.values() {
            *per_ip.entry(s.ip).or_default() += 1;
        }
        let victim = r
            .slots
            .iter()
            .max_by_key(|(_, s)| {
                (
                    per_ip.get(&s.ip).copied().unwrap_or(0),
                    std::cmp::Reverse(s.last_active),
                )
            })
            .map(|(k, _)| *k);
        if let Some(v) = victim.and_then(|v| r.slots.remove(&v)) {
            v.evict.notify_one();
            handler.on_refused(
                peer,
                &format!(
                    "connection limit {} reached: evicted an idle connection from {}",
                    limits.max_connections, v.ip
                ),
            );
        }
    }
    let evict = Arc::new(Notify::new());
    r.slots.insert(
        id,
        Slot {
            ip: peer.ip(),
            last_active: Instant::now(),
            evict: evict.clone(),
        },
    );
    Some(evict)
}

async fn refuse(mut tcp: TcpStream, implicit_tls: bool) {
    if !implicit_tls {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tcp.write_all(b"421 4.7.0 Too many connections from your address, try again later\r\n"),
        )
        .await;
    }
    let _ = tcp.shutdown().await;
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
        };
    }
}

async fn tls_accept(
    acceptor: &Option<TlsAcceptor>,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<Conn, String> {
    let Some(a) = acceptor else {
        return Err("no TLS certificate configured".into());
    };
    match tokio::time::timeout(timeout, a.accept(tcp)).await {
        Ok(Ok(s)) => Ok(Conn::Tls(Box::new(s))),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "TLS handshake timed out after {}s",
            timeout.as_secs()
        )),
    }
}

/// What the machine needs to know about a TLS connection: channel binding data and the
/// client's verified certificate.
fn tls_facts(c: &Conn, own_leaf: Option<&[u8]>) -> TlsFacts {
    let Conn::Tls(s) = c else {
        return TlsFacts::default();
    };
    let conn = s.get_ref().1;
    TlsFacts {
        channel_binding: server_channel_binding(conn, own_leaf),
        // rustls hands out the client's chain only after its verifier accepted it.
        client_certificate: conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| client_certificate(leaf)),
    }
}

/// The subject of a client certificate and the identity it establishes for AUTH EXTERNAL:
/// the subject's common name, or else the first subject alternative name.
pub fn client_certificate(der: &[u8]) -> Option<ClientCertificate> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .filter(|cn| !cn.is_empty());
    let san = || {
        let ext = cert.subject_alternative_name().ok()??;
        ext.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some((*s).to_owned())
            }
            _ => None,
        })
    };
    let identity = cn.or_else(san)?;
    Some(ClientCertificate {
        subject: cert.subject().to_string(),
        identity,
    })
}

/// The first certificate of a PEM chain (the leaf), as DER.
pub fn leaf_der_from_pem(pem: &[u8]) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// A server configuration like [`crate::server_config_from_pem`] that also asks clients for
/// a certificate and verifies one against the CA certificates in `client_ca_pem` (for AUTH
/// EXTERNAL). A client without a certificate is still served (it just cannot use EXTERNAL);
/// a client whose certificate does not verify fails the handshake.
pub fn server_config_with_client_ca(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
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
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem) {
        let ca = ca.map_err(|e| NetError::TlsConfig(format!("client CA PEM: {e}")))?;
        roots
            .add(ca)
            .map_err(|e| NetError::TlsConfig(format!("client CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(NetError::TlsConfig(
            "no -----BEGIN CERTIFICATE----- block in the client CA PEM".to_owned(),
        ));
    }
    let provider = crate::crypto_provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| NetError::TlsConfig(format!("client certificate verifier: {e}")))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::TlsConfig(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| NetError::ServerCertificate(e.to_string()))?;
    Ok(Arc::new(config))
}

fn tls_summary(c: &Conn) -> String {
    match c {
        Conn::Tls(s) => {
            let conn = s.get_ref().1;
            let version = match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
                Some(v) => format!("{v:?}"),
                None => "TLS".to_string(),
            };
            let suite = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default();
            let client = conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| client_certificate(leaf))
                .map(|c| format!(", client certificate {} (verified)", c.subject))
                .unwrap_or_default();
            format!("{version} {suite}{client}")
        }
        Conn::Plain(_) => String::new(),
    }
}

async fn run_connection<H: SessionHandler>(
    conn: ConnInfo,
    tcp: TcpStream,
    acceptor: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    handler: Arc<H>,
    registry: Arc<Mutex<Registry>>,
    evict: Arc<Notify>,
) {
    let mut server = handler.new_session(&conn);
    let first = if conn.listener.kind.implicit_tls() {
        match tls_accept(&acceptor, tcp, limits.tls_handshake_timeout).await {
            Ok(s) => {
                handler.on_tls(&conn, Ok(tls_summary(&s)));
                server.set_tls_facts(tls_facts(&s, handler.tls_certificate()));
                s
            }
            Err(e) => {
                handler.on_tls(&conn, Err(e));
                handler.on_closed(&conn, &server, Some(CloseReason::TlsFailed));
                return;
            }
        }
    } else {
        Conn::Plain(tcp)
    };
    server.start(now());
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut reason = None;
    let mut stream = Some(first);
    // A read throttle asked for by the machine (fault injection): small reads, spaced so
    // the client really is read at that rate and its TCP window fills up.
    let mut next_read: Option<tokio::time::Instant> = None;
    'session: loop {
        out.clear();
        while server.poll_transmit(&mut out) {}
        if let Some(s) = stream.as_mut().filter(|_| !out.is_empty())
            && s.write_all(&out).await.is_err()
        {
            server.handle_eof(now());
        }
        while let Some(ev) = server.poll_event() {
            handler.on_event(&conn, &server, &ev);
            match ev {
                Event::StartTlsRequested => {
                    // The 220 went out above; the machine discards anything read ahead.
                    let Some(Conn::Plain(tcp)) = stream.take() else {
                        server.handle_tls_failed(now(), "TLS is already on");
                        continue;
                    };
                    match tls_accept(&acceptor, tcp, limits.tls_handshake_timeout).await {
                        Ok(s) => {
                            handler.on_tls(&conn, Ok(tls_summary(&s)));
                            let facts = tls_facts(&s, handler.tls_certificate());
                            stream = Some(s);
                            server.handle_tls_established_with(now(), facts);
                        }
                        Err(e) => {
                            handler.on_tls(&conn, Err(e.clone()));
                            server.handle_tls_failed(now(), &e);
                        }
                    }
                }
                Event::MessageReceived(m) if server.confirms_storage() => {
                    let result = handler.store(&conn, &server, &m).await;
                    server.handle_message_stored(now(), result);
                }
                Event::Closed(r) => reason = Some(r),
                _ => {}
            }
        }
        if server.has_pending_output() {
            continue;
        }
        if server.is_closed() {
            break 'session;
        }
        let Some(s) = stream.as_mut() else {
            server.handle_eof(now());
            continue;
        };
        let wait = server
            .poll_timeout()
            .map(|t| Duration::from_micros(t.0.saturating_sub(now().0)))
            .unwrap_or(Duration::from_secs(3600));
        let limit = server.read_rate_limit();
        let (max, not_before) = match limit {
            Some(bps) => (
                usize::try_from((bps / 10).max(1))
                    .unwrap_or(buf.len())
                    .min(buf.len()),
                next_read,
            ),
            None => (buf.len(), None),
        };
        // While the machine holds a delayed reply it takes little input: the rest stays in
        // the kernel and the client's window fills, as at a busy server.
        let reading = server.wants_input();
        tokio::select! {
            r = async {
                if let Some(t) = not_before {
                    tokio::time::sleep_until(t).await;
                }
                s.read(&mut buf[..max]).await
            }, if reading => match r {
                Ok(0) | Err(_) => server.handle_eof(now()),
                Ok(n) => {
                    next_read = limit.map(|bps| {
                        tokio::time::Instant::now()
                            + Duration::from_secs_f64(n as f64 / bps.max(1) as f64)
                    });
                    if let Ok(mut reg) = registry.lock()
                        && let Some(slot) = reg.slots.get_mut(&conn.id)
                    {
                        slot.last_active = Instant::now();
                    }
                    server.handle_input(now(), &buf[..n]);
                }
            },
            () = tokio::time::sleep(wait) => server.handle_timeout(now()),
            () = evict.notified() => server.handle_evicted(now()),
        }
    }
    if let Some(s) = stream.as_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
    }
    handler.on_closed(&conn, &server, reason);
}
