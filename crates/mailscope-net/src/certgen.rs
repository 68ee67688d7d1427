//! Certificates made at start-up for mailscope's own servers (the sink): a private CA and a
//! leaf it signed for the names the server answers to. The CA is written out so a test client
//! can trust it (`--tls-ca-path`), and the leaf's fingerprint is printed, instead of asking
//! the user to turn verification off.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest as _, Sha256};

use crate::error::NetError;

/// A generated CA and leaf, as PEM.
#[derive(Debug, Clone)]
pub struct GeneratedTls {
    /// The CA certificate: give this to clients.
    pub ca_pem: String,
    /// The leaf followed by the CA (what the server presents).
    pub chain_pem: String,
    /// The leaf's private key.
    pub key_pem: String,
    /// SHA-256 of the leaf's DER, lower-case hex.
    pub leaf_sha256: String,
}

/// Makes a CA (`CN=mailscope sink CA (generated)`) and a leaf for `names` (DNS names and IP
/// addresses; the first is the leaf's CN), valid from now for 825 days.
pub fn generate_server_tls(names: &[String]) -> Result<GeneratedTls, NetError> {
    let err = |e: rcgen::Error| NetError::TlsConfig(format!("generating a certificate: {e}"));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailscope sink CA (generated)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;

    let mut leaf = CertificateParams::new(names.to_vec()).map_err(err)?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("localhost"),
    );
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::minutes(5);
    leaf.not_after = now + time::Duration::days(825);
    let key = KeyPair::generate().map_err(err)?;
    let cert = leaf.signed_by(&key, &ca).map_err(err)?;
    let leaf_sha256 = Sha256::digest(cert.der())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(GeneratedTls {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", cert.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
        leaf_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_chain_loads_as_a_server_config() {
        let g = generate_server_tls(&["localhost".into(), "127.0.0.1".into()]).expect("generate");
        assert!(g.chain_pem.matches("BEGIN CERTIFICATE").count() == 2);
        assert_eq!(g.leaf_sha256.len(), 64);
        crate::tls::server_config_from_pem(g.chain_pem.as_bytes(), g.key_pem.as_bytes())
            .expect("server config");
    }
}
