//! mailscope's async connection layer (tokio + rustls on the ring provider).
//!
//! - [`connect_tcp`] / [`parse_server`]: resolve and connect with one deadline and errors
//!   that name the address.
//! - [`TlsClient`] / [`tls_handshake`]: TLS 1.2/1.3 with WebPKI verification on by default,
//!   a [`TlsReport`] of what was negotiated and presented, `--insecure` that still records
//!   the verdict, extra trust anchors, ALPN and a key log.
//! - [`MaybeTlsStream`]: one stream type for plain, implicit TLS and STARTTLS.
//! - [`build_resolver`]: the one DNS resolver builder.
//! - [`server_config_from_pem`]: TLS for the sink and other fake servers.
//!
//! Nothing here parses mail protocols; the machines in `mailscope-proto` do.

pub mod anchor;
mod cert;
pub mod certgen;
mod connect;
mod error;
pub mod https;
pub mod imap;
mod keylog;
pub mod pop3;
mod resolver;
pub mod server;
pub mod smtp;
mod stream;
mod tls;

pub use cert::{CertInfo, CertTime};
pub use connect::{Connected, connect_tcp, connect_tcp_from, parse_server};
pub use error::{NetError, TlsFailure, VerifyFailure};
pub use https::{HttpsError, HttpsGet, HttpsResponse, https_get};
pub use keylog::{KeyLogWriter, keylog_path_from_env};
pub use resolver::{MailRoutes, build_resolver, mail_routes, parse_resolver_addr};
pub use stream::MaybeTlsStream;
pub use tls::{
    TlsClient, TlsClientOptions, TlsReport, Verification, crypto_provider, server_config_from_pem,
    tls_handshake,
};

/// Re-exported so callers name the same versions we build on.
pub use hickory_resolver::TokioResolver;
pub use rustls::ServerConfig;
pub use tokio_rustls::client::TlsStream;
