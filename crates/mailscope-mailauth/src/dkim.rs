//! DKIM (RFC 6376): key records looked up, parsed and linted; selector discovery from a list
//! of common selectors; verification of every signature of a message with an explanation of
//! why it failed.
//!
//! Verification itself is Stalwart's mail-auth (`MessageAuthenticator::verify_dkim`); its own
//! key look-ups use the same resolver but bypass the [`Dns`] trace, so every signature's key is
//! also looked up here through [`Dns`] (traced) and linted. What mail-auth does not give —
//! key sizes, flags, tag lints, the reason behind a failure in words — is built here.

use std::sync::Arc;

use mail_auth::common::crypto::Algorithm;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::{Canonicalization, DkimError, Signature};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use mailscope_proto::Finding;
use mailscope_proto::finding as fk;

use crate::dns::{Answer, Dns};

/// Common selectors tried by discovery, with who uses them. Providers that use per-domain
/// random selectors (Amazon SES' 32-character tokens, Postmark's dated `…pm` selectors,
/// HubSpot's `hs1-NNN`) cannot be found this way: read the selector from a signed message
/// (`--message`).
pub const COMMON_SELECTORS: &[(&str, &str)] = &[
    (
        "default",
        "cPanel, Plesk, many hosting panels and OpenDKIM setups",
    ),
    ("dkim", "generic"),
    ("mail", "generic; Brevo (Sendinblue), Yandex"),
    ("smtp", "generic; Mailgun"),
    ("email", "generic"),
    ("key1", "generic"),
    ("key2", "generic"),
    ("google", "Google Workspace"),
    ("selector1", "Microsoft 365"),
    ("selector2", "Microsoft 365"),
    ("k1", "Mailchimp, Mailgun"),
    ("k2", "Mailchimp"),
    ("k3", "Mailchimp"),
    ("mandrill", "Mandrill (Mailchimp Transactional)"),
    ("s1", "SendGrid"),
    ("s2", "SendGrid"),
    ("smtpapi", "SendGrid (legacy)"),
    ("mxvault", "MXroute, mxvault"),
    ("everlytickey1", "Everlytic"),
    ("everlytickey2", "Everlytic"),
    ("zoho", "Zoho Mail"),
    ("zmail", "Zoho Mail"),
    ("protonmail", "Proton Mail"),
    ("protonmail2", "Proton Mail"),
    ("protonmail3", "Proton Mail"),
    ("fm1", "Fastmail"),
    ("fm2", "Fastmail"),
    ("fm3", "Fastmail"),
    ("sig1", "iCloud custom domains"),
    ("mailjet", "Mailjet"),
    ("cm", "Campaign Monitor"),
    ("ml", "MailerLite"),
    ("litesrv", "MailerLite"),
    ("mte1", "Mailtrap"),
    ("pic", "Mailgun"),
    ("krs", "Mailgun"),
    ("sf1", "Salesforce"),
    ("sf2", "Salesforce"),
    ("zendesk1", "Zendesk"),
    ("zendesk2", "Zendesk"),
    ("turbo-smtp", "turboSMTP"),
    ("s1024", "Yahoo"),
    ("s2048", "Yahoo"),
    ("dkim1", "generic"),
    ("dkim2", "generic"),
    ("mesmtp", "Fastmail (legacy), Messagingengine"),
];

/// At most this many selectors per discovery run (`--selector` and a message's signatures
/// included).
pub const MAX_SELECTORS: usize = 200;
/// At most this many DKIM-Signature header fields of one message are verified.
pub const MAX_SIGNATURES: usize = 50;
/// At most this many concurrent selector look-ups.
const PARALLEL: usize = 16;
/// A signature timestamp more than this many seconds ahead is "in the future".
const CLOCK_SKEW: u64 = 300;

/// A DKIM key record, parsed tag by tag (RFC 6376 §3.6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRecord {
    /// The record as published (lossy UTF-8).
    pub raw: String,
    /// Every tag in order, `(name, value)` with whitespace trimmed.
    pub tags: Vec<(String, String)>,
    /// `k=` (default `rsa`).
    pub key_type: String,
    /// The key size in bits (RSA modulus; 256 for Ed25519), when the key could be decoded.
    pub bits: Option<u32>,
    /// `h=` hash algorithms (empty: all).
    pub hashes: Vec<String>,
    /// `t=` flags (`y`, `s`).
    pub flags: Vec<String>,
    /// `s=` service types (empty: `*`).
    pub services: Vec<String>,
    /// `n=` notes.
    pub notes: Option<String>,
    /// `p=` is empty.
    pub revoked: bool,
    /// Tags DKIM does not define.
    pub unknown_tags: Vec<String>,
    /// Syntax errors, each in words.
    pub errors: Vec<String>,
}

/// The outcome of looking up one selector.
#[derive(Debug, Clone)]
pub struct KeyCheck {
    /// The selector.
    pub selector: String,
    /// The signing domain.
    pub domain: String,
    /// The name asked for: `SELECTOR._domainkey.DOMAIN`.
    pub name: String,
    /// The DNS outcome word ([`Answer::outcome`]).
    pub outcome: String,
    /// The name is a CNAME to this target.
    pub cname: Option<String>,
    /// Every TXT record at the name (lossy UTF-8).
    pub records: Vec<String>,
    /// The first record, parsed (when there is one).
    pub key: Option<KeyRecord>,
    /// What is wrong.
    pub findings: Vec<Finding>,
    /// One word: `ok`, `weak`, `revoked`, `invalid`, `missing`, `temperror`.
    pub verdict: &'static str,
}

impl KeyCheck {
    /// A key was found (whatever its quality).
    pub fn found(&self) -> bool {
        !self.records.is_empty()
    }
}

/// Parses a key record's tag list. Never fails: problems are in [`KeyRecord::errors`].
pub fn parse_key(txt: &[u8]) -> KeyRecord {
    let raw = String::from_utf8_lossy(txt).into_owned();
    let mut rec = KeyRecord {
        raw: raw.clone(),
        key_type: "rsa".into(),
        ..Default::default()
    };
    let mut p_value: Option<String> = None;
    let mut seen: Vec<String> = Vec::new();
    for (idx, part) in raw.split(';').enumerate() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once('=') else {
            rec.errors
                .push(format!("\"{part}\" is not a tag=value pair"));
            continue;
        };
        let name = name.trim().to_owned();
        let value = value.trim().to_owned();
        if !valid_tag_name(&name) {
            rec.errors
                .push(format!("\"{name}\" is not a valid tag name"));
            continue;
        }
        if seen.iter().any(|s| s == &name) {
            rec.errors.push(format!("tag {name}= appears twice"));
            continue;
        }
        seen.push(name.clone());
        rec.tags.push((name.clone(), value.clone()));
        match name.as_str() {
            "v" => {
                if value != "DKIM1" {
                    rec.errors.push(format!("v={value}: must be v=DKIM1"));
                } else if idx != 0 {
                    rec.errors.push("v=DKIM1 must be the first tag".into());
                }
            }
            "k" => rec.key_type = value.to_ascii_lowercase(),
            "h" => rec.hashes = colon_list(&value),
            "t" => rec.flags = colon_list(&value),
            "s" => rec.services = colon_list(&value),
            "n" => rec.notes = Some(value.clone()),
            "p" => p_value = Some(value.clone()),
            "g" => {} // RFC 4871's granularity, removed by RFC 6376 but harmless
            _ => rec.unknown_tags.push(name.clone()),
        }
    }
    match p_value {
        None => rec.errors.push("no p= tag (the public key)".into()),
        Some(p) if p.chars().all(char::is_whitespace) => rec.revoked = true,
        Some(p) => match base64_decode(&p) {
            None => rec.errors.push("p= is not valid base64".into()),
            Some(der) => match rec.key_type.as_str() {
                "rsa" => match rsa_bits(&der) {
                    Some(bits) => rec.bits = Some(bits),
                    None => rec
                        .errors
                        .push("p= does not hold an RSA public key (SubjectPublicKeyInfo or RSAPublicKey DER)".into()),
                },
                "ed25519" => {
                    if der.len() == 32 {
                        rec.bits = Some(256);
                    } else {
                        rec.errors.push(format!(
                            "an Ed25519 p= must be the raw 32-octet key (RFC 8463 §4.2), not {} octets",
                            der.len()
                        ));
                    }
                }
                other => rec
                    .errors
                    .push(format!("k={other}: unknown key type (rsa or ed25519)")),
            },
        },
    }
    for h in &rec.hashes {
        if h != "sha1" && h != "sha256" {
            rec.errors
                .push(format!("h= lists \"{h}\", not a DKIM hash (sha1, sha256)"));
        }
    }
    for f in &rec.flags {
        if f != "y" && f != "s" {
            rec.unknown_tags.push(format!("t={f}"));
        }
    }
    rec
}

/// The findings for one parsed key record.
pub fn lint_key(rec: &KeyRecord, name: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    if !rec.errors.is_empty() {
        out.push(Finding::new(
            fk::DKIM_KEY_SYNTAX,
            format!("{name}: {}", rec.errors.join("; ")),
        ));
    } else if !rec.revoked
        && let Err(e) = DomainKey::parse(rec.raw.as_bytes())
    {
        // Our tag parser saw nothing wrong but the verifier's parser refuses the record.
        out.push(Finding::new(
            fk::DKIM_KEY_SYNTAX,
            format!("{name}: a verifier (mail-auth) refuses the record: {e}"),
        ));
    }
    if rec.revoked {
        out.push(Finding::new(
            fk::DKIM_KEY_REVOKED,
            format!("{name} has an empty p="),
        ));
    }
    if rec.key_type == "rsa"
        && let Some(bits) = rec.bits
    {
        if bits < 1024 {
            out.push(Finding::new(
                fk::DKIM_KEY_RSA_TOO_SHORT,
                format!("{name}: RSA {bits} bits"),
            ));
        } else if bits < 2048 {
            out.push(Finding::new(
                fk::DKIM_KEY_RSA_1024,
                format!("{name}: RSA {bits} bits"),
            ));
        }
    }
    if rec.flags.iter().any(|f| f == "y") {
        out.push(Finding::new(fk::DKIM_KEY_TESTING, format!("{name}: t=y")));
    }
    if rec.flags.iter().any(|f| f == "s") {
        out.push(Finding::new(
            fk::DKIM_KEY_NO_SUBDOMAINS,
            format!("{name}: t=s"),
        ));
    }
    if !rec.hashes.is_empty() && rec.hashes.iter().all(|h| h == "sha1") {
        out.push(Finding::new(
            fk::DKIM_KEY_SHA1_ONLY,
            format!("{name}: h={}", rec.hashes.join(":")),
        ));
    }
    if !rec.services.is_empty() && !rec.services.iter().any(|s| s == "email" || s == "*") {
        out.push(Finding::new(
            fk::DKIM_KEY_SYNTAX,
            format!(
                "{name}: s={} does not include email or *: the key may not be used for mail",
                rec.services.join(":")
            ),
        ));
    }
    if !rec.unknown_tags.is_empty() {
        out.push(Finding::new(
            fk::DKIM_KEY_UNKNOWN_TAG,
            format!("{name}: {}", rec.unknown_tags.join(", ")),
        ));
    }
    out
}

/// Looks up and lints `SELECTOR._domainkey.DOMAIN`; with `cname` also asks whether the name
/// is a CNAME (only when a key was found, to keep discovery at one query per selector).
pub async fn check_key(dns: &Dns, domain: &str, selector: &str, cname: bool) -> KeyCheck {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let name = format!("{selector}._domainkey.{domain}");
    let answer = dns.txt(&name).await;
    let mut check = KeyCheck {
        selector: selector.to_owned(),
        domain: domain.clone(),
        name: name.clone(),
        outcome: answer.outcome(),
        cname: None,
        records: answer
            .records()
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect(),
        key: None,
        findings: Vec::new(),
        verdict: "missing",
    };
    match &answer {
        Answer::Records(recs) => {
            if cname
                && let Answer::Records(targets) = dns
                    .raw(&name, hickory_resolver::proto::rr::RecordType::CNAME)
                    .await
            {
                check.cname = targets.first().map(|t| t.trim_end_matches('.').to_owned());
            }
            if recs.len() > 1 {
                check.findings.push(Finding::new(
                    fk::DKIM_KEY_MULTIPLE,
                    format!("{name}: {} TXT records", recs.len()),
                ));
            }
            if let Some(first) = recs.first() {
                let rec = parse_key(first);
                check.findings.extend(lint_key(&rec, &name));
                check.key = Some(rec);
            }
            check.verdict = key_verdict(&check);
        }
        Answer::NxDomain | Answer::NoData => {
            check.verdict = "missing";
        }
        Answer::Failed(_) => check.verdict = "temperror",
    }
    check
}

fn key_verdict(check: &KeyCheck) -> &'static str {
    use mailscope_proto::Severity;
    if check.key.as_ref().is_some_and(|k| k.revoked) {
        return "revoked";
    }
    let worst = check.findings.iter().map(|f| f.severity).max();
    match worst {
        Some(s) if s >= Severity::Error => "invalid",
        Some(s) if s >= Severity::Warning => "weak",
        _ => "ok",
    }
}

/// What selector discovery found.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The domain.
    pub domain: String,
    /// How many selectors were tried.
    pub tried: usize,
    /// The selectors that answered with a record, in the order tried.
    pub found: Vec<KeyCheck>,
    /// Selectors whose look-up failed (timeout, SERVFAIL): `(selector, outcome)`.
    pub failed: Vec<(String, String)>,
    /// A wildcard answers for every selector (a made-up selector had a key too).
    pub wildcard: bool,
    /// Findings about the discovery itself (wildcard, nothing found).
    pub findings: Vec<Finding>,
}

/// Tries every selector in `selectors` concurrently (at most [`MAX_SELECTORS`]), plus one
/// made-up selector to detect a wildcard.
pub async fn discover(dns: &Arc<Dns>, domain: &str, selectors: &[String]) -> Discovery {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut list: Vec<String> = Vec::new();
    for s in selectors {
        let s = s.trim().to_ascii_lowercase();
        if !s.is_empty() && !list.contains(&s) && list.len() < MAX_SELECTORS {
            list.push(s);
        }
    }
    let probe = format!("mailscope-probe-{}", probe_token());
    let mut all = list.clone();
    all.push(probe.clone());
    let mut results: Vec<Option<KeyCheck>> = vec![None; all.len()];
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < all.len() || !set.is_empty() {
        while next < all.len() && set.len() < PARALLEL {
            let dns = Arc::clone(dns);
            let d = domain.clone();
            let s = all[next].clone();
            let i = next;
            set.spawn(async move { (i, check_key(&dns, &d, &s, true).await) });
            next += 1;
        }
        if let Some(Ok((i, c))) = set.join_next().await
            && let Some(slot) = results.get_mut(i)
        {
            *slot = Some(c);
        }
    }
    let mut found = Vec::new();
    let mut failed = Vec::new();
    let mut wildcard = false;
    for c in results.into_iter().flatten() {
        if c.selector == probe {
            wildcard = c.found();
            continue;
        }
        if c.found() {
            found.push(c);
        } else if c.verdict == "temperror" {
            failed.push((c.selector.clone(), c.outcome.clone()));
        }
    }
    let mut findings = Vec::new();
    if wildcard {
        let same = found.windows(2).all(|w| w[0].records == w[1].records);
        findings.push(Finding::new(
            fk::DKIM_SELECTOR_WILDCARD,
            format!(
                "a made-up selector ({probe}) has a key too{}",
                if same && found.len() > 1 {
                    format!(
                        "; all {} selectors tried answer with the same key",
                        found.len()
                    )
                } else {
                    String::new()
                }
            ),
        ));
    } else if found.is_empty() {
        findings.push(Finding::new(
            fk::DKIM_SELECTOR_NONE_FOUND,
            format!("{} selectors tried under {domain}", list.len()),
        ));
    }
    Discovery {
        domain,
        tried: list.len(),
        found,
        failed,
        wildcard,
        findings,
    }
}

fn probe_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:08x}{:04x}", nanos, std::process::id() & 0xffff)
}

/// The default selector list as owned strings.
pub fn common_selectors() -> Vec<String> {
    COMMON_SELECTORS
        .iter()
        .map(|(s, _)| (*s).to_owned())
        .collect()
}

/// Who uses a selector, from [`COMMON_SELECTORS`].
pub fn selector_hint(selector: &str) -> Option<&'static str> {
    COMMON_SELECTORS
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(selector))
        .map(|(_, who)| *who)
}

// ------------------------------------------------------------------------------ verification

/// One DKIM-Signature, verified and explained.
#[derive(Debug, Clone)]
pub struct SignatureCheck {
    /// 1-based position among the message's DKIM-Signature fields.
    pub index: usize,
    /// `d=`.
    pub d: String,
    /// `s=`.
    pub s: String,
    /// `a=`.
    pub a: String,
    /// `c=` as `header/body`.
    pub c: String,
    /// `h=`, the signed header fields.
    pub h: Vec<String>,
    /// `bh=` in base64.
    pub bh: String,
    /// `i=` (empty when absent).
    pub i: String,
    /// `l=` when present.
    pub l: Option<u64>,
    /// `t=` when present.
    pub t: Option<u64>,
    /// `x=` when present.
    pub x: Option<u64>,
    /// `pass`, `fail`, `neutral`, `permerror`, `temperror` (RFC 8601 words).
    pub result: String,
    /// Why, in words.
    pub reason: String,
    /// The key, looked up through the traced resolver.
    pub key: Option<KeyCheck>,
    /// What is wrong.
    pub findings: Vec<Finding>,
}

/// A DKIM-Signature field that could not be used at all.
#[derive(Debug, Clone)]
pub struct BrokenSignature {
    /// The header field's value, shortened.
    pub value: String,
    /// Why.
    pub error: String,
}

/// Every signature of a message.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    /// The From: addresses.
    pub from: Vec<String>,
    /// Usable signatures, verified.
    pub signatures: Vec<SignatureCheck>,
    /// Signatures that could not be parsed.
    pub broken: Vec<BrokenSignature>,
    /// Message-level findings (unsigned, malformed signatures).
    pub findings: Vec<Finding>,
}

/// The message cannot be checked: no header section could be parsed, or it carries more
/// DKIM signatures than are checked (each costs a DNS look-up and a body hash).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NotAMessage(pub String);

impl NotAMessage {
    fn unparsable() -> Self {
        Self("not an RFC 5322 message: no header fields could be parsed".into())
    }
}

/// Refuses a message with more than [`MAX_SIGNATURES`] DKIM-Signature header fields before
/// it is parsed: parsing hashes the body once per distinct `c=`/`l=`, and verifying costs a
/// DNS look-up per signature.
pub fn check_signature_count(raw: &[u8]) -> Result<(), NotAMessage> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len());
    let n = raw[..head_end]
        .split(|&b| b == b'\n')
        .filter(|line| line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"dkim-signature:"))
        .count();
    if n > MAX_SIGNATURES {
        return Err(NotAMessage(format!(
            "the message has {n} DKIM-Signature header fields; at most {MAX_SIGNATURES} are checked"
        )));
    }
    Ok(())
}

/// Verifies every DKIM signature of `raw` (at most [`MAX_SIGNATURES`]) and explains each
/// outcome. `now` is the current UNIX time in seconds (for t= and x=).
pub async fn verify_message(dns: &Dns, raw: &[u8], now: u64) -> Result<Verification, NotAMessage> {
    // Not strict: signatures with l= are verified too (and flagged), not dropped.
    check_signature_count(raw)?;
    let msg = AuthenticatedMessage::parse_with_opts(raw, None, false)
        .ok_or_else(NotAMessage::unparsable)?;
    let auth = MessageAuthenticator(dns.resolver().clone());
    let outputs = auth.verify_dkim(&msg).await;
    let mut v = Verification {
        from: msg.from.clone(),
        ..Default::default()
    };
    for err in msg.errors.iter().take(MAX_SIGNATURES) {
        if let mail_auth::Error::Dkim(_) | mail_auth::Error::ParseError | mail_auth::Error::Base64 =
            &err.header
        {
            let value = String::from_utf8_lossy(err.value);
            let value: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
            let short: String = value.chars().take(120).collect();
            v.findings.push(Finding::new(
                fk::DKIM_SIGNATURE_SYNTAX,
                format!("{}: {}", explain_parse_error(&err.header), short),
            ));
            v.broken.push(BrokenSignature {
                value: short,
                error: explain_parse_error(&err.header),
            });
        }
    }
    let outs: Vec<_> = outputs
        .iter()
        .filter_map(|o| o.signature().map(|s| (s, o.result().clone())))
        .take(MAX_SIGNATURES)
        .collect();
    if outs.is_empty() && v.broken.is_empty() {
        v.findings.push(Finding::new(
            fk::DKIM_MESSAGE_UNSIGNED,
            "no DKIM-Signature header field",
        ));
    }
    for (n, (sig, result)) in outs.into_iter().enumerate() {
        let key = check_key(dns, &sig.d, &sig.s, true).await;
        v.signatures
            .push(explain_signature(n + 1, sig, &result, key, now));
    }
    Ok(v)
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

fn canon_name(c: Canonicalization) -> &'static str {
    match c {
        Canonicalization::Relaxed => "relaxed",
        Canonicalization::Simple => "simple",
    }
}

fn explain_parse_error(e: &mail_auth::Error) -> String {
    match e {
        mail_auth::Error::Dkim(DkimError::UnsupportedVersion) => {
            "unsupported v= (must be 1)".into()
        }
        mail_auth::Error::Dkim(DkimError::UnsupportedAlgorithm) => {
            "unsupported a= (rsa-sha256, ed25519-sha256 or rsa-sha1)".into()
        }
        mail_auth::Error::Dkim(DkimError::UnsupportedCanonicalization) => {
            "unsupported c= (simple or relaxed)".into()
        }
        mail_auth::Error::Base64 => "b= or bh= is not valid base64".into(),
        mail_auth::Error::MissingParameters => {
            "a required tag is missing (v, a, b, bh, d, h, s)".into()
        }
        other => format!("malformed DKIM-Signature: {other}"),
    }
}

fn explain_signature(
    index: usize,
    sig: &Signature,
    result: &DkimResult,
    key: KeyCheck,
    now: u64,
) -> SignatureCheck {
    let c = format!("{}/{}", canon_name(sig.ch), canon_name(sig.cb));
    let mut out = SignatureCheck {
        index,
        d: sig.d.clone(),
        s: sig.s.clone(),
        a: alg_name(sig.a).into(),
        c: c.clone(),
        h: sig.h.clone(),
        bh: base64_encode(&sig.bh),
        i: sig.i.clone(),
        l: (sig.l > 0).then_some(sig.l),
        t: (sig.t > 0).then_some(sig.t),
        x: (sig.x > 0).then_some(sig.x),
        result: String::new(),
        reason: String::new(),
        key: None,
        findings: Vec::new(),
    };
    let who = format!("d={} s={}", sig.d, sig.s);
    let lnote = match sig.l {
        0 => "no l= (the whole body is signed)".to_owned(),
        l => format!("l={l} (only the first {l} octets of the body are signed)"),
    };
    let (word, reason) = match result {
        DkimResult::Pass => (
            "pass",
            format!("the signature verifies with the key at {}", key.name),
        ),
        DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::SignatureExpired)) => {
            out.findings.push(Finding::new(
                fk::DKIM_SIGNATURE_EXPIRED,
                format!("{who}: x={} is {} s ago", sig.x, now.saturating_sub(sig.x)),
            ));
            (
                "fail",
                format!(
                    "the signature expired: x={} ({}), now {now}",
                    sig.x,
                    unix_date(sig.x)
                ),
            )
        }
        DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            out.findings.push(Finding::new(
                fk::DKIM_SIGNATURE_BODY_HASH,
                format!(
                    "{who}: body canonicalization {}, {lnote}",
                    canon_name(sig.cb)
                ),
            ));
            (
                "fail",
                format!(
                    "body hash mismatch: the body was changed after signing (a footer or \
                     disclaimer added, line ends or transfer encoding rewritten); the body was \
                     hashed with {} canonicalization{}; {lnote}",
                    canon_name(sig.cb),
                    if sig.cb == Canonicalization::Simple {
                        ", which tolerates no change at all (relaxed tolerates whitespace changes)"
                    } else {
                        ", which tolerates whitespace changes only"
                    }
                ),
            )
        }
        DkimResult::Fail(mail_auth::Error::Crypto(
            mail_auth::common::crypto::CryptoError::IncompatibleAlgorithms,
        )) => {
            let kt = key
                .key
                .as_ref()
                .map(|k| k.key_type.clone())
                .unwrap_or_default();
            out.findings.push(Finding::new(
                fk::DKIM_SIGNATURE_ALGORITHM_MISMATCH,
                format!("{who}: a={} but the key is k={kt}", alg_name(sig.a)),
            ));
            (
                "fail",
                format!(
                    "algorithm/key mismatch: a={} cannot be verified with the {kt} key at {}",
                    alg_name(sig.a),
                    key.name
                ),
            )
        }
        DkimResult::Fail(mail_auth::Error::Dkim(DkimError::FailedAuidMatch)) => {
            out.findings.push(Finding::new(
                fk::DKIM_SIGNATURE_AUID,
                format!("{who}: i={}", sig.i),
            ));
            (
                "fail",
                format!(
                    "i={} is not allowed: it must be d= or (unless the key says t=s) a subdomain of d=",
                    sig.i
                ),
            )
        }
        DkimResult::Fail(e) => {
            out.findings.push(Finding::new(
                fk::DKIM_SIGNATURE_MISMATCH,
                format!("{who}: header canonicalization {}", canon_name(sig.ch)),
            ));
            (
                "fail",
                format!(
                    "signature mismatch ({e}): the body hash matches, so the body is intact, but \
                     the signature over the header fields does not verify: a signed header \
                     field ({}) was changed or added in transit, or the key at {} is not the \
                     signer's key; header canonicalization {}",
                    sig.h.join(":"),
                    key.name,
                    canon_name(sig.ch)
                ),
            )
        }
        DkimResult::PermError(mail_auth::Error::Dkim(DkimError::RevokedPublicKey)) => (
            "permerror",
            format!("the key at {} is revoked (empty p=)", key.name),
        ),
        DkimResult::PermError(mail_auth::Error::Dns(_)) if !key.found() => {
            if key.verdict != "temperror" {
                out.findings.push(Finding::new(
                    fk::DKIM_KEY_NOT_FOUND,
                    format!("{} ({})", key.name, key.outcome),
                ));
            }
            (
                "permerror",
                format!("key not found: {} answered {}", key.name, key.outcome),
            )
        }
        DkimResult::PermError(e) => (
            "permerror",
            format!("the key at {} cannot be used: {e}", key.name),
        ),
        DkimResult::TempError(e) => ("temperror", format!("the key could not be looked up: {e}")),
        DkimResult::Neutral(e) => ("neutral", format!("not verified: {e}")),
        DkimResult::None => ("none", "no result".into()),
    };
    let (mut word, mut reason) = (word, reason);
    // mail-auth does not apply the key's h= list: a key that does not list the signature's
    // hash must not verify it (RFC 6376 §3.6.1).
    let sig_hash = if sig.a == Algorithm::RsaSha1 {
        "sha1"
    } else {
        "sha256"
    };
    if word == "pass"
        && let Some(k) = &key.key
        && !k.hashes.is_empty()
        && !k.hashes.iter().any(|h| h == sig_hash)
    {
        word = "fail";
        reason = format!(
            "the key at {} allows only h={}, but the signature uses a={}: verifiers must not \
             accept it (RFC 6376 §3.6.1), although the signature itself is correct",
            key.name,
            k.hashes.join(":"),
            alg_name(sig.a)
        );
    } else if word == "pass" && sig.a == Algorithm::RsaSha1 {
        reason.push_str(
            "; but it uses rsa-sha1, which verifiers following RFC 8301 must not accept, so \
             many receivers treat it as failed",
        );
    }
    out.result = word.into();
    out.reason = reason;
    if sig.a == Algorithm::RsaSha1 {
        out.findings.push(Finding::new(
            fk::DKIM_SIGNATURE_SHA1,
            format!("{who}: a=rsa-sha1"),
        ));
    }
    if sig.l > 0 {
        out.findings.push(Finding::new(
            fk::DKIM_SIGNATURE_BODY_LENGTH,
            format!("{who}: l={}", sig.l),
        ));
    }
    if sig.t > now.saturating_add(CLOCK_SKEW) {
        out.findings.push(Finding::new(
            fk::DKIM_SIGNATURE_FUTURE,
            format!(
                "{who}: t={} ({}) is {} s ahead",
                sig.t,
                unix_date(sig.t),
                sig.t - now
            ),
        ));
    }
    let from_count = sig
        .h
        .iter()
        .filter(|h| h.eq_ignore_ascii_case("from"))
        .count();
    if from_count < 2 {
        out.findings.push(Finding::new(
            fk::DKIM_SIGNATURE_FROM_NOT_OVERSIGNED,
            format!("{who}: From appears {from_count} time(s) in h="),
        ));
    }
    // Key lints belong to the signature when the key is there (weak, testing, ...).
    out.findings.extend(key.findings.iter().cloned());
    out.key = Some(key);
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a UNIX time.
pub fn unix_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant), for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

// ------------------------------------------------------------------------------ helpers

fn valid_tag_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

fn colon_list(v: &str) -> Vec<String> {
    v.split(':')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decodes base64 ignoring whitespace (as DKIM allows); `None` when it is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut n = 0u32;
    let mut pad = 0;
    for c in s.bytes() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            pad += 1;
            continue;
        }
        if pad > 0 {
            return None;
        }
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match (n, pad) {
        (0, 0) => {}
        (2, 0..=2) => out.push((acc >> 4) as u8),
        (3, 0..=1) => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => return None,
    }
    Some(out)
}

/// Encodes base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// One DER element: (tag, content, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The modulus size of an RSA public key in SubjectPublicKeyInfo or PKCS#1 RSAPublicKey DER.
pub fn rsa_bits(key: &[u8]) -> Option<u32> {
    let (tag, seq, _) = der(key)?;
    if tag != 0x30 {
        return None;
    }
    let (t1, c1, rest) = der(seq)?;
    let rsa_pub = match t1 {
        // PKCS#1 RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }
        0x02 => return modulus_bits(c1),
        // SPKI: SEQUENCE { AlgorithmIdentifier, BIT STRING }
        0x30 => {
            // rsaEncryption 1.2.840.113549.1.1.1
            let (ot, oid, _) = der(c1)?;
            if ot != 0x06 || oid != [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01] {
                return None;
            }
            let (bt, bits, _) = der(rest)?;
            if bt != 0x03 || bits.first() != Some(&0) {
                return None;
            }
            &bits[1..]
        }
        _ => return None,
    };
    let (tag, seq, _) = der(rsa_pub)?;
    let (it, n, _) = der(seq)?;
    if tag != 0x30 || it != 0x02 {
        return None;
    }
    modulus_bits(n)
}

fn modulus_bits(n: &[u8]) -> Option<u32> {
    let start = n.iter().position(|&b| b != 0)?;
    let n = &n[start..];
    let lead = n.first()?.leading_zeros();
    u32::try_from(n.len())
        .ok()?
        .checked_mul(8)?
        .checked_sub(lead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for data in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            &[0xff, 0, 0x10, 0x80],
        ] {
            let e = base64_encode(data);
            assert_eq!(base64_decode(&e).as_deref(), Some(data), "{e}");
        }
        assert_eq!(
            base64_decode("QUJD\n REVG").as_deref(),
            Some(&b"ABCDEF"[..])
        );
        assert!(base64_decode("not!base64").is_none());
        assert!(base64_decode("QQ=A").is_none());
    }

    #[test]
    fn key_tags() {
        let k = parse_key(b"v=DKIM1; k=rsa; t=y:s; h=sha1; x=1; p=");
        assert!(k.revoked);
        assert_eq!(k.flags, ["y", "s"]);
        assert_eq!(k.hashes, ["sha1"]);
        assert_eq!(k.unknown_tags, ["x"]);
        let k = parse_key(b"k=rsa; v=DKIM1; p=QUJD");
        assert!(
            k.errors.iter().any(|e| e.contains("first")),
            "{:?}",
            k.errors
        );
        assert!(k.errors.iter().any(|e| e.contains("RSA")), "{:?}", k.errors);
        let k = parse_key(b"v=DKIM1; k=ed25519; p=QUJD");
        assert!(
            k.errors.iter().any(|e| e.contains("32-octet")),
            "{:?}",
            k.errors
        );
        let k = parse_key(b"v=DKIM1; k=dsa; p=QUJD; junk");
        assert_eq!(k.errors.len(), 2, "{:?}", k.errors);
        assert!(
            parse_key(b"v=DKIM1")
                .errors
                .iter()
                .any(|e| e.contains("no p="))
        );
    }

    #[test]
    fn dates() {
        assert_eq!(unix_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(unix_date(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
