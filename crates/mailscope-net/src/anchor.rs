//! Certificate-chain verification against one given trust anchor (DANE-TA, RFC 7672 §3.1.2):
//! the chain the server presented must verify up to the anchor the TLSA record names, and the
//! server's certificate must be valid for the MX host name. WebPKI does the work, with the
//! anchor as the only root.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::tls::crypto_provider;

/// Verifies `chain` (leaf first, as presented) up to `anchor` for the name `host`, now.
/// `Err` says why not, in WebPKI's words.
pub fn verify_chain_to_anchor(chain: &[Vec<u8>], anchor: &[u8], host: &str) -> Result<(), String> {
    let leaf = chain
        .first()
        .ok_or_else(|| "the server presented no certificate".to_owned())?;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(anchor.to_vec()))
        .map_err(|e| format!("the trust anchor is not a usable CA certificate: {e}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| format!("cannot build a verifier: {e}"))?;
    let intermediates: Vec<CertificateDer<'static>> = chain
        .iter()
        .skip(1)
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let name = ServerName::try_from(host.trim_end_matches('.').to_owned())
        .map_err(|e| format!("{host:?} is not a valid server name: {e}"))?;
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.clone()),
            &intermediates,
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ders(pem: &str) -> Vec<Vec<u8>> {
        use rustls_pki_types::pem::PemObject as _;
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.expect("pem").to_vec())
            .collect()
    }

    #[test]
    fn verifies_up_to_the_anchor_and_checks_the_name() {
        let g = crate::certgen::generate_server_tls(&["mx.example.test".into()]).expect("tls");
        let chain = ders(&g.chain_pem);
        let ca = ders(&g.ca_pem).remove(0);
        assert_eq!(chain.len(), 2);
        assert_eq!(
            verify_chain_to_anchor(&chain, &ca, "mx.example.test"),
            Ok(())
        );
        let wrong_name = verify_chain_to_anchor(&chain, &ca, "other.example.test");
        assert!(wrong_name.is_err(), "{wrong_name:?}");
        let other = crate::certgen::generate_server_tls(&["x.test".into()]).expect("tls");
        let wrong_anchor =
            verify_chain_to_anchor(&chain, &ders(&other.ca_pem)[0], "mx.example.test");
        assert!(wrong_anchor.is_err(), "{wrong_anchor:?}");
        // Only the leaf presented: the anchor is not reachable without the chain... unless the
        // anchor issued the leaf directly, as here.
        assert_eq!(
            verify_chain_to_anchor(&chain[..1], &ca, "mx.example.test"),
            Ok(())
        );
        assert!(verify_chain_to_anchor(&[], &ca, "mx.example.test").is_err());
    }
}
