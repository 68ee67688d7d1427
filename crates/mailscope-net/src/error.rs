//! Typed errors of the connection layer.
//!
//! Messages are lower-case one-liners that name the thing that failed (address, file, host),
//! because the binary prints them as they are after `error: `.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cert::CertInfo;

/// Everything that can go wrong below the TLS handshake: parsing addresses, resolving and
/// connecting, reading trust and key material, building the DNS resolver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The `host[:port]` text given by the user could not be understood.
    #[error("invalid server address {input:?}: {reason}")]
    InvalidAddress {
        /// What the user typed.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// Name resolution itself failed (as opposed to returning no address).
    #[error("cannot resolve host {host}: {source}")]
    Resolve {
        /// The name that was looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// Resolution succeeded but returned nothing to connect to.
    #[error("no address for host {host}")]
    NoAddress {
        /// The name that was looked up.
        host: String,
    },
    /// The peer answered the SYN with a RST: nothing listens there (or a firewall rejects).
    #[error("connection refused to {addr}")]
    Refused {
        /// The address that refused.
        addr: SocketAddr,
    },
    /// Resolving plus connecting did not finish within the allowed time.
    #[error("timed out after {} connecting to {target}", fmt_duration(*after))]
    Timeout {
        /// `host:port` as given (or the address being tried).
        target: String,
        /// The budget that ran out.
        after: Duration,
    },
    /// A listener could not be opened (address in use, no permission, no such address).
    #[error("cannot listen on {listener}: {source}")]
    Listen {
        /// The listener, as `scheme://addr:port`.
        listener: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// Any other socket error while connecting to one address.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address being tried.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The host had several addresses and every one failed; each attempt is listed.
    #[error("cannot connect to {target}: {}", fmt_attempts(attempts))]
    AllAttemptsFailed {
        /// `host:port` as given.
        target: String,
        /// Each address tried, with why it failed, in order.
        attempts: Vec<(SocketAddr, String)>,
    },
    /// A `--tls-ca-path` file could not be read.
    #[error("cannot read CA file {}: {source}", path.display())]
    CaFileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A `--tls-ca-path` file was read but held no PEM certificate.
    #[error(
        "CA file {} contains no PEM certificates (expected -----BEGIN CERTIFICATE----- blocks)",
        path.display()
    )]
    CaFileEmpty {
        /// The file.
        path: PathBuf,
    },
    /// A `--tls-ca-path` file held PEM that is broken or a certificate that cannot be a trust
    /// anchor.
    #[error("CA file {}: {reason}", path.display())]
    CaFileInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key log file could not be opened for appending.
    #[error("cannot open key log file {}: {source}", path.display())]
    KeyLogOpen {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Certificate or key PEM for a TLS server could not be used.
    #[error("invalid server certificate or key: {0}")]
    ServerCertificate(String),
    /// rustls refused the configuration (should not happen with the ring provider; kept
    /// typed rather than panicking).
    #[error("tls configuration: {0}")]
    TlsConfig(String),
    /// The system resolver configuration could not be read or has no name server.
    #[error(
        "cannot use the system DNS configuration (/etc/resolv.conf): {0}; pass --resolver ADDR[:PORT]"
    )]
    SystemResolverConfig(String),
    /// hickory refused to build the resolver.
    #[error("cannot build the DNS resolver: {0}")]
    Resolver(String),
    /// A DNS look-up gave an answer that ends the question (NXDOMAIN, null MX, no address)
    /// or failed (SERVFAIL, timeout); the text says which.
    #[error("{0}")]
    Dns(String),
}

/// Formats a duration the way people write timeouts: `30s`, `1.5s`, `250ms`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

fn fmt_attempts(attempts: &[(SocketAddr, String)]) -> String {
    let mut out = String::new();
    for (i, (addr, why)) in attempts.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{addr}: {why}");
    }
    out
}

/// Why the server's certificate chain was not accepted, mapped from rustls'
/// `CertificateError` into the few cases a mail administrator acts on differently.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// The chain does not lead to a trusted root (self-signed, private CA, missing
    /// intermediate).
    UnknownIssuer,
    /// The leaf is valid but not for the name we connected to.
    NameMismatch {
        /// The name we asked for (SNI or IP).
        expected: String,
        /// The DNS names and IP addresses the leaf names.
        presented: Vec<String>,
    },
    /// A certificate in the chain is past its notAfter.
    Expired {
        /// notAfter, as `YYYY-MM-DD HH:MM:SS UTC`, when rustls or the leaf tells us.
        not_after: Option<String>,
    },
    /// A certificate in the chain is before its notBefore (often a wrong clock).
    NotYetValid {
        /// notBefore, as `YYYY-MM-DD HH:MM:SS UTC`, when known.
        not_before: Option<String>,
    },
    /// A certificate was revoked (only with CRLs, which we do not fetch today).
    Revoked,
    /// Anything else, with rustls' wording.
    Other(String),
}

/// A failed TLS handshake, split by what the user should look at next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// We refused the server's certificate. Carries the parsed chain so the user sees why
    /// *and* what was presented.
    #[error("certificate verification failed: {reason}")]
    CertificateInvalid {
        /// The classified failure.
        kind: VerifyFailure,
        /// One line for humans.
        reason: String,
        /// The chain as the server sent it, leaf first.
        chain: Vec<CertInfo>,
    },
    /// The server aborted the handshake with a fatal alert (other than protocol_version).
    #[error("the server refused the TLS handshake with alert {alert}")]
    AlertReceived {
        /// The alert's RFC 8446 name, e.g. `handshake_failure`.
        alert: String,
    },
    /// No TLS version in common. rustls speaks only TLS 1.2 and 1.3.
    #[error(
        "no common TLS version ({detail}); mailscope's TLS client speaks TLS 1.2 and 1.3 only, the server may offer only older versions"
    )]
    ProtocolVersion {
        /// What rustls saw.
        detail: String,
    },
    /// The server's TLS offer has nothing we can use (suites, groups, signature schemes).
    #[error("the server's TLS parameters are incompatible: {detail}")]
    Incompatible {
        /// What rustls saw.
        detail: String,
    },
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out after {}", fmt_duration(*after))]
    Timeout {
        /// The budget that ran out.
        after: Duration,
    },
    /// The server closed the connection in the middle of the handshake.
    #[error(
        "the server closed the connection during the TLS handshake (is it really speaking TLS on this port?)"
    )]
    Eof,
    /// The server reset the connection in the middle of the handshake (often a TLS-less
    /// service or a middlebox that dislikes the ClientHello).
    #[error("the server reset the connection during the TLS handshake")]
    Reset,
    /// The server answered with something that is not a TLS record.
    #[error(
        "the server did not answer with TLS ({detail}); does this port expect STARTTLS or plain text?"
    )]
    NotTls {
        /// rustls' description.
        detail: String,
    },
    /// Any other protocol error (bad messages, decrypt errors, misbehaving peer).
    #[error("TLS handshake failed: {detail}")]
    Protocol {
        /// rustls' description.
        detail: String,
    },
    /// A socket error during the handshake.
    #[error("i/o error during the TLS handshake: {0}")]
    Io(#[source] io::Error),
    /// The name to verify is neither a DNS name nor an IP address.
    #[error("invalid server name for TLS: {name:?}")]
    InvalidServerName {
        /// The offending name.
        name: String,
    },
    /// The client could not be configured (CA file, key log file).
    #[error(transparent)]
    Config(#[from] NetError),
    /// `upgrade` was called on a stream that is already TLS.
    #[error("the connection is already using TLS")]
    AlreadyTls,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_options() {
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn messages_name_the_address() {
        let addr: SocketAddr = "127.0.0.1:25".parse().expect("literal");
        assert_eq!(
            NetError::Refused { addr }.to_string(),
            "connection refused to 127.0.0.1:25"
        );
        let e = NetError::Timeout {
            target: "mail.example:25".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(
            e.to_string(),
            "timed out after 30s connecting to mail.example:25"
        );
    }
}
