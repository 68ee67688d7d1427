//! TLS output shared by the client commands (smtp, pop3, imap): the `***` lines about a
//! handshake and the certificate chain, the findings a failed or skipped verification gives,
//! and the `tls_established` / `tls_failed` JSON events.

use mailscope_net::smtp::now;
use mailscope_net::{TlsReport, Verification};
use mailscope_proto::finding::{
    Finding, TLS_CERT_EXPIRED, TLS_CERT_EXPIRES_SOON, TLS_CERT_INVALID, TLS_CERT_NAME_MISMATCH,
    TLS_CERT_UNKNOWN_ISSUER,
};
use serde_json::json;

use crate::output::{Reporter, finding_json};

/// Reports an established TLS session: version, suite, chain, verification.
pub fn report_tls(rep: &mut Reporter, r: &TlsReport) {
    let at = now();
    rep.note(
        at,
        &format!(
            "TLS established: {} {}{}{}",
            r.version,
            r.cipher_suite,
            r.key_exchange_group
                .as_deref()
                .map(|g| format!(", group {g}"))
                .unwrap_or_default(),
            r.sni
                .as_deref()
                .map(|s| format!(", SNI {s}"))
                .unwrap_or_else(|| ", no SNI".into()),
        ),
    );
    for (i, cert) in r.chain.iter().enumerate() {
        rep.note(at, &cert_line(i, cert));
    }
    match &r.verification {
        Verification::Verified => {
            rep.note(at, &format!("certificate verified for {}", r.verified_name))
        }
        Verification::Failed { kind, reason } => {
            rep.note(
                at,
                &format!("certificate NOT verified ({reason}); continuing because of --insecure"),
            );
            rep.finding(at, &Finding::new(verify_kind(kind), reason.clone()));
        }
        Verification::NotPerformed { reason } => {
            rep.note(at, &format!("certificate not checked: {reason}"))
        }
    }
    if let Some(na) = r.chain.first().and_then(|leaf| leaf.not_after.as_ref()) {
        let days = (na.unix - (now().0 / 1_000_000) as i64) / 86_400;
        if (0..30).contains(&days) {
            let detail = format!("the leaf expires in {days} days ({})", na.utc);
            rep.finding(at, &Finding::new(TLS_CERT_EXPIRES_SOON, detail));
        }
    }
    if let Some(e) = &r.keylog_error {
        rep.error(at, &format!("writing the key log failed: {e}"));
    }
    rep.event("tls_established", at, tls_json(r));
}

/// The finding kind for a verification failure.
pub fn verify_kind(kind: &mailscope_net::VerifyFailure) -> &'static mailscope_proto::FindingKind {
    use mailscope_net::VerifyFailure as V;
    match kind {
        V::UnknownIssuer => TLS_CERT_UNKNOWN_ISSUER,
        V::NameMismatch { .. } => TLS_CERT_NAME_MISMATCH,
        V::Expired { .. } | V::NotYetValid { .. } => TLS_CERT_EXPIRED,
        _ => TLS_CERT_INVALID,
    }
}

/// Reports a failed handshake, with the chain when the certificate was the reason.
pub fn report_tls_failure(rep: &mut Reporter, e: &mailscope_net::TlsFailure) {
    let at = now();
    rep.error(at, &e.to_string());
    let mut body = json!({ "reason": e.to_string() });
    if let mailscope_net::TlsFailure::CertificateInvalid {
        kind,
        reason,
        chain,
    } = e
    {
        for (i, cert) in chain.iter().enumerate() {
            rep.note(at, &cert_line(i, cert));
        }
        let f = Finding::new(verify_kind(kind), reason.clone());
        rep.finding(at, &f);
        body["finding"] = finding_json(&f);
        body["chain"] = json!(chain.iter().map(cert_json).collect::<Vec<_>>());
    }
    rep.event("tls_failed", at, body);
}

/// One `***` line per certificate.
pub fn cert_line(i: usize, cert: &mailscope_net::CertInfo) -> String {
    format!(
        "  cert {i}: subject {}; issuer {}; SAN {}; valid {} to {}",
        cert.subject,
        cert.issuer,
        if cert.san.is_empty() {
            "-".into()
        } else {
            cert.san.join(", ")
        },
        cert.not_before
            .as_ref()
            .map(|t| t.utc.as_str())
            .unwrap_or("?"),
        cert.not_after
            .as_ref()
            .map(|t| t.utc.as_str())
            .unwrap_or("?"),
    )
}

/// A certificate as JSON.
pub fn cert_json(c: &mailscope_net::CertInfo) -> serde_json::Value {
    json!({
        "subject": c.subject, "issuer": c.issuer, "san": c.san,
        "not_before": c.not_before.as_ref().map(|t| t.rfc3339.clone()),
        "not_after": c.not_after.as_ref().map(|t| t.rfc3339.clone()),
        "serial": c.serial_hex, "sha256": c.sha256_fingerprint,
        "public_key": c.public_key_algorithm, "public_key_bits": c.public_key_bits,
        "signature_algorithm": c.signature_algorithm, "is_ca": c.is_ca, "self_signed": c.self_signed,
    })
}

/// The TLS report as JSON.
pub fn tls_json(r: &TlsReport) -> serde_json::Value {
    let (verified, reason) = match &r.verification {
        Verification::Verified => (json!(true), None),
        Verification::Failed { reason, .. } => (json!(false), Some(reason.clone())),
        Verification::NotPerformed { reason } => (serde_json::Value::Null, Some(reason.clone())),
    };
    json!({
        "version": r.version, "cipher_suite": r.cipher_suite, "key_exchange_group": r.key_exchange_group,
        "alpn": r.alpn, "sni": r.sni, "verified_name": r.verified_name, "handshake": r.handshake_kind,
        "verified": verified, "verification_error": reason,
        "chain": r.chain.iter().map(cert_json).collect::<Vec<_>>(),
        "keylog": r.keylog_path.as_ref().map(|p| p.display().to_string()),
    })
}
