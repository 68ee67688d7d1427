//! Certificate details for humans, parsed with x509-parser from the DER the peer sent.
//!
//! Parsing never fails the caller: a certificate we cannot parse is still shown (size,
//! fingerprint, the parse error) because "the server sent garbage" is itself a diagnosis.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// A point in time as certificates state it: UTC, whole seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTime {
    /// Seconds since the Unix epoch (negative before 1970).
    pub unix: i64,
    /// `YYYY-MM-DD HH:MM:SS UTC`, the form used in messages.
    pub utc: String,
    /// RFC 3339, `YYYY-MM-DDTHH:MM:SSZ`, the form used in JSON.
    pub rfc3339: String,
}

impl CertTime {
    /// Builds both text forms from Unix seconds.
    pub fn from_unix(unix: i64) -> Self {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (secs / 3600, secs % 3600 / 60, secs % 60);
        Self {
            unix,
            utc: format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC"),
            rfc3339: format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
        }
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm), so
/// that formatting needs no date crate and works for any year a certificate can name.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    // d is in 1..=31 and m in 1..=12 by construction.
    (y, m as u32, d as u32)
}

/// One certificate of a presented chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN, OpenSSL-like (`CN=localhost, O=Example`).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Subject alternative names, prefixed by type: `DNS:mail.example`, `IP:192.0.2.1`,
    /// `email:...`, `URI:...`.
    pub san: Vec<String>,
    /// notBefore; `None` only when the certificate could not be parsed.
    pub not_before: Option<CertTime>,
    /// notAfter; `None` only when the certificate could not be parsed.
    pub not_after: Option<CertTime>,
    /// Serial number, lower-case hex without separators, as encoded.
    pub serial_hex: String,
    /// SHA-256 over the DER, lower-case hex without separators (what `sha256sum` and DANE
    /// 3 0 1 records show).
    pub sha256_fingerprint: String,
    /// `RSA`, `EC P-256`, `Ed25519`, or the algorithm's OID name.
    pub public_key_algorithm: String,
    /// Key size in bits, when the algorithm has one we can read.
    pub public_key_bits: Option<u32>,
    /// Signature algorithm name, e.g. `sha256WithRSAEncryption`, `ecdsa-with-SHA256`.
    pub signature_algorithm: String,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// Subject equals issuer (a root or a self-signed leaf).
    pub self_signed: bool,
    /// The certificate as sent, for PEM output and DANE matching.
    pub der: Vec<u8>,
    /// Why the DER could not be parsed, if it could not; the fields above are then empty.
    pub parse_error: Option<String>,
}

impl CertInfo {
    /// Describes one DER certificate. Never fails: unparsable input yields `parse_error`.
    pub fn from_der(der: &[u8]) -> Self {
        let sha256_fingerprint = hex(&Sha256::digest(der));
        let mut info = CertInfo {
            subject: String::new(),
            issuer: String::new(),
            san: Vec::new(),
            not_before: None,
            not_after: None,
            serial_hex: String::new(),
            sha256_fingerprint,
            public_key_algorithm: String::new(),
            public_key_bits: None,
            signature_algorithm: String::new(),
            is_ca: false,
            self_signed: false,
            der: der.to_vec(),
            parse_error: None,
        };
        let cert = match X509Certificate::from_der(der) {
            Ok((_, cert)) => cert,
            Err(e) => {
                info.parse_error = Some(format!(
                    "cannot parse certificate ({} bytes): {e}",
                    der.len()
                ));
                return info;
            }
        };
        info.subject = cert.subject().to_string();
        info.issuer = cert.issuer().to_string();
        info.self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
        info.not_before = Some(CertTime::from_unix(cert.validity().not_before.timestamp()));
        info.not_after = Some(CertTime::from_unix(cert.validity().not_after.timestamp()));
        info.serial_hex = hex(cert.raw_serial());
        info.is_ca = cert.is_ca();
        info.signature_algorithm = oid_name(&cert.signature_algorithm.algorithm);
        let spki = cert.public_key();
        info.public_key_algorithm = key_algorithm_name(
            &spki.algorithm.algorithm,
            spki.algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok()),
        );
        info.public_key_bits = spki
            .parsed()
            .ok()
            .map(|k| match k {
                // Ed25519 keys parse as Unknown; their size is fixed by the algorithm.
                PublicKey::Unknown(_) if info.public_key_algorithm == "Ed25519" => 256,
                k => k.key_size(),
            })
            .filter(|&bits| bits > 0)
            .and_then(|bits| u32::try_from(bits).ok());
        match cert.subject_alternative_name() {
            Ok(Some(ext)) => {
                info.san = ext.value.general_names.iter().map(general_name).collect();
            }
            Ok(None) => {}
            Err(e) => info.parse_error = Some(format!("cannot parse subjectAltName: {e}")),
        }
        info
    }

    /// The DNS names and IP addresses of the SAN list without their `DNS:`/`IP:` prefix —
    /// the names a verifier matches against.
    pub fn names(&self) -> Vec<String> {
        self.san
            .iter()
            .filter_map(|s| s.strip_prefix("DNS:").or_else(|| s.strip_prefix("IP:")))
            .map(str::to_owned)
            .collect()
    }
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(s) => format!("DNS:{s}"),
        GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
            Some(ip) => format!("IP:{ip}"),
            None => format!("IP:<{} bytes: {}>", bytes.len(), hex(bytes)),
        },
        GeneralName::RFC822Name(s) => format!("email:{s}"),
        GeneralName::URI(s) => format!("URI:{s}"),
        GeneralName::DirectoryName(n) => format!("DirName:{n}"),
        GeneralName::RegisteredID(oid) => format!("RID:{oid}"),
        GeneralName::OtherName(oid, _) => format!("othername:{}", oid_name(oid)),
        GeneralName::X400Address(_) => "X400Name:<unsupported>".to_owned(),
        GeneralName::EDIPartyName(_) => "EdiPartyName:<unsupported>".to_owned(),
        GeneralName::Invalid(_, bytes) => format!("invalid:{}", hex(bytes)),
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

fn oid_name(oid: &Oid<'_>) -> String {
    oid2sn(oid, oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

fn key_algorithm_name(alg: &Oid<'_>, curve: Option<Oid<'_>>) -> String {
    match alg.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".to_owned(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".to_owned(),
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        "1.2.840.10045.2.1" => match curve.as_ref().map(|c| c.to_id_string()).as_deref() {
            Some("1.2.840.10045.3.1.7") => "EC P-256".to_owned(),
            Some("1.3.132.0.34") => "EC P-384".to_owned(),
            Some("1.3.132.0.35") => "EC P-521".to_owned(),
            Some(_) => format!("EC {}", curve.as_ref().map(oid_name).unwrap_or_default()),
            None => "EC".to_owned(),
        },
        _ => oid_name(alg),
    }
}

/// Lower-case hex without separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_both_ways() {
        let t = CertTime::from_unix(1_704_067_200);
        assert_eq!(t.utc, "2024-01-01 00:00:00 UTC");
        assert_eq!(t.rfc3339, "2024-01-01T00:00:00Z");
        assert_eq!(CertTime::from_unix(0).utc, "1970-01-01 00:00:00 UTC");
        assert_eq!(CertTime::from_unix(-1).utc, "1969-12-31 23:59:59 UTC");
        assert_eq!(
            CertTime::from_unix(951_825_599).utc,
            "2000-02-29 11:59:59 UTC"
        );
        // rcgen's default notAfter.
        assert_eq!(
            CertTime::from_unix(67_090_118_400).utc,
            "4096-01-01 00:00:00 UTC"
        );
    }

    #[test]
    fn garbage_is_described_not_fatal() {
        let info = CertInfo::from_der(b"\x30\x03\x02\x01");
        assert!(info.parse_error.is_some());
        assert_eq!(info.sha256_fingerprint.len(), 64);
        assert!(info.subject.is_empty());
    }
}
