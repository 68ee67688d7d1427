//! DANE for SMTP (RFC 7672, RFC 6698, RFC 7671): TLSA records of an MX host matched against
//! the certificate chain its STARTTLS presents.
//!
//! DNSSEC: mailscope does not validate signatures itself. It asks the resolver the user
//! chose (`--resolver`) with the AD bit set and trusts the AD bit of the answer (RFC 6840
//! §5.7), as Postfix and Exim do with their local validating resolver. TLSA records that come
//! back without AD are reported as "not authenticated": a DANE sender ignores them. Point
//! `--resolver` at a validating resolver on a path you trust (a local unbound).

use std::fmt;

use mailscope_proto::Finding;
use mailscope_proto::finding as kinds;
use sha2::{Digest as _, Sha256, Sha512};

use crate::dns::Tlsa;

/// The TLSA owner name for SMTP on port 25 of `host` (RFC 7672 §2.2.3).
pub fn tlsa_name(host: &str, port: u16) -> String {
    format!("_{port}._tcp.{}", host.trim_end_matches('.'))
}

impl fmt::Display for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        for b in &self.data {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Names of a TLSA record's fields, for reports: `DANE-EE(3) SPKI(1) SHA2-256(1)`.
pub fn describe(t: &Tlsa) -> String {
    let usage = match t.usage {
        0 => "PKIX-TA(0)",
        1 => "PKIX-EE(1)",
        2 => "DANE-TA(2)",
        3 => "DANE-EE(3)",
        _ => "unknown usage",
    };
    let selector = match t.selector {
        0 => "Cert(0)",
        1 => "SPKI(1)",
        _ => "unknown selector",
    };
    let matching = match t.matching {
        0 => "Full(0)",
        1 => "SHA2-256(1)",
        2 => "SHA2-512(2)",
        _ => "unknown matching type",
    };
    format!("{usage} {selector} {matching}")
}

/// Lints one TLSA record set for SMTP (RFC 7672 §3.1): usages 0 and 1 are not for SMTP,
/// unknown parameters make a record unusable, and a digest of the wrong length never
/// matches.
pub fn lint(host: &str, records: &[Tlsa]) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in records {
        if t.usage <= 1 {
            out.push(Finding::new(
                kinds::DANE_TLSA_PKIX_USAGE,
                format!("{host}: {t} ({})", describe(t)),
            ));
        }
        let known = t.usage <= 3 && t.selector <= 1 && t.matching <= 2;
        let len_ok = match t.matching {
            1 => t.data.len() == 32,
            2 => t.data.len() == 64,
            _ => !t.data.is_empty(),
        };
        if !known || !len_ok {
            out.push(Finding::new(
                kinds::DANE_TLSA_MALFORMED,
                format!(
                    "{host}: {t} ({}): {}",
                    describe(t),
                    if known {
                        format!(
                            "{} octets of association data for matching type {}",
                            t.data.len(),
                            t.matching
                        )
                    } else {
                        "unknown parameter values; the record is unusable".to_owned()
                    }
                ),
            ));
        }
    }
    if !records.is_empty() && !records.iter().any(usable) {
        out.push(Finding::new(
            kinds::DANE_TLSA_NO_USABLE,
            format!("{host}: no DANE-TA/DANE-EE record with valid parameters"),
        ));
    }
    out
}

/// Whether SMTP can use this record: DANE-TA(2) or DANE-EE(3), known selector and matching
/// type, and association data of the right length (RFC 7672 §3.1, RFC 7671 §4).
pub fn usable(t: &Tlsa) -> bool {
    let len_ok = match t.matching {
        0 => !t.data.is_empty(),
        1 => t.data.len() == 32,
        2 => t.data.len() == 64,
        _ => false,
    };
    (t.usage == 2 || t.usage == 3) && t.selector <= 1 && len_ok
}

/// What a TLSA record is compared with: the whole DER certificate (selector 0) or its
/// SubjectPublicKeyInfo (selector 1).
fn selected(cert_der: &[u8], selector: u8) -> Result<Vec<u8>, String> {
    match selector {
        0 => Ok(cert_der.to_vec()),
        1 => {
            let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
                .map_err(|e| format!("certificate does not parse: {e}"))?;
            Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
        }
        s => Err(format!("unknown selector {s}")),
    }
}

/// Whether `t` matches `cert_der` by its selector and matching type (usage not considered).
pub fn matches(t: &Tlsa, cert_der: &[u8]) -> Result<bool, String> {
    let sel = selected(cert_der, t.selector)?;
    Ok(match t.matching {
        0 => sel == t.data,
        1 => Sha256::digest(&sel).as_slice() == t.data.as_slice(),
        2 => Sha512::digest(&sel).as_slice() == t.data.as_slice(),
        m => return Err(format!("unknown matching type {m}")),
    })
}

/// The association data a record with these parameters would need for `cert_der` (shown
/// when nothing matches, so the administrator can compare or publish it).
pub fn association(cert_der: &[u8], selector: u8, matching: u8) -> Result<Vec<u8>, String> {
    let sel = selected(cert_der, selector)?;
    Ok(match matching {
        0 => sel,
        1 => Sha256::digest(&sel).to_vec(),
        2 => Sha512::digest(&sel).to_vec(),
        m => return Err(format!("unknown matching type {m}")),
    })
}

/// How a chain fared against a TLSA record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaneMatch {
    /// A DANE-EE(3) record matches the server's own certificate (no name or expiry checks
    /// apply, RFC 7672 §3.1.1).
    EndEntity {
        /// The record that matched.
        record: Tlsa,
    },
    /// A DANE-TA(2) record matches a certificate in the chain at `depth` (0 = the server's
    /// own); the chain must still be verified up to it and the name checked.
    TrustAnchor {
        /// The record that matched.
        record: Tlsa,
        /// Where in the presented chain.
        depth: usize,
    },
    /// No usable record matches any certificate.
    None,
}

/// Matches the usable records (DANE-TA and DANE-EE; PKIX ones are ignored for SMTP) against
/// the chain the server presented (leaf first). DANE-EE is tried first: it needs no further
/// checks.
pub fn match_chain(records: &[Tlsa], chain: &[Vec<u8>]) -> DaneMatch {
    for t in records.iter().filter(|t| t.usage == 3 && usable(t)) {
        if let Some(leaf) = chain.first()
            && matches(t, leaf).unwrap_or(false)
        {
            return DaneMatch::EndEntity { record: t.clone() };
        }
    }
    for t in records.iter().filter(|t| t.usage == 2 && usable(t)) {
        for (depth, cert) in chain.iter().enumerate() {
            if matches(t, cert).unwrap_or(false) {
                return DaneMatch::TrustAnchor {
                    record: t.clone(),
                    depth,
                };
            }
        }
    }
    DaneMatch::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["mx.example.test".to_owned()]).expect("params");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn selectors_and_matching_types() {
        let der = cert();
        for selector in 0..=1 {
            for matching in 0..=2 {
                let data = association(&der, selector, matching).expect("association");
                let t = Tlsa {
                    usage: 3,
                    selector,
                    matching,
                    data: data.clone(),
                };
                assert!(matches(&t, &der).expect("matches"), "{t}");
                let mut wrong = data;
                wrong[0] ^= 1;
                let t = Tlsa {
                    usage: 3,
                    selector,
                    matching,
                    data: wrong,
                };
                assert!(!matches(&t, &der).expect("matches"), "{t}");
            }
        }
        // The SPKI differs from the whole certificate.
        assert_ne!(
            association(&der, 0, 1).expect("a"),
            association(&der, 1, 1).expect("a")
        );
    }

    #[test]
    fn chain_matching_prefers_end_entity_and_finds_anchors() {
        let leaf = cert();
        let ca = cert();
        let ee = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: association(&leaf, 1, 1).expect("a"),
        };
        let ta = Tlsa {
            usage: 2,
            selector: 0,
            matching: 1,
            data: association(&ca, 0, 1).expect("a"),
        };
        let chain = vec![leaf.clone(), ca.clone()];
        assert_eq!(
            match_chain(&[ta.clone(), ee.clone()], &chain),
            DaneMatch::EndEntity { record: ee }
        );
        assert_eq!(
            match_chain(std::slice::from_ref(&ta), &chain),
            DaneMatch::TrustAnchor {
                record: ta.clone(),
                depth: 1
            }
        );
        // PKIX-EE is ignored for SMTP even when it matches.
        let pkix = Tlsa {
            usage: 1,
            selector: 1,
            matching: 1,
            data: association(&leaf, 1, 1).expect("a"),
        };
        assert_eq!(
            match_chain(std::slice::from_ref(&pkix), &chain),
            DaneMatch::None
        );
        assert_eq!(match_chain(&[ta], &[leaf]), DaneMatch::None);
    }

    #[test]
    fn lints() {
        let short = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![1, 2, 3],
        };
        let pkix = Tlsa {
            usage: 1,
            selector: 1,
            matching: 1,
            data: vec![0; 32],
        };
        let ids = |v: Vec<Finding>| v.iter().map(|f| f.kind.id).collect::<Vec<_>>();
        assert_eq!(
            ids(lint("mx", std::slice::from_ref(&short))),
            ["dane.tlsa.malformed", "dane.tlsa.no-usable"]
        );
        let good = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0; 32],
        };
        assert_eq!(ids(lint("mx", &[short, good])), ["dane.tlsa.malformed"]);
        assert_eq!(
            ids(lint("mx", &[pkix])),
            ["dane.tlsa.pkix-usage", "dane.tlsa.no-usable"]
        );
        assert!(lint("mx", &[]).is_empty());
        assert_eq!(
            tlsa_name("mx.example.test.", 25),
            "_25._tcp.mx.example.test"
        );
    }
}
