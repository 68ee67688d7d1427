//! Tests of the reply explainer: the registries, a corpus of real refusal replies
//! (`testdata/refusals/`), and robustness on arbitrary text.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::finding::{REGISTRY, Severity};
use crate::smtp::explain::{
    Category, Context, ENHANCED_CODES, Pat, REPLY_CODES, RULES, ReplyClass, SUBJECTS,
    enhanced_code_info, explain, lookup_enhanced, reply_code_info, subject_info,
};
use crate::smtp::reply::{
    Decoded, EnhancedCode, LineEnding, Reply, ReplyLimits, ReplyLine, decode_reply,
};

fn reply(input: &[u8]) -> Reply {
    match decode_reply(input, &ReplyLimits::default()) {
        Ok(Decoded::Complete { value, consumed }) => {
            assert_eq!(consumed, input.len(), "trailing bytes after the reply");
            value.reply
        }
        other => panic!("not one complete reply: {other:?}"),
    }
}

fn ids(input: &[u8], context: Context) -> Vec<&'static str> {
    explain(&reply(input), context)
        .findings
        .iter()
        .map(|f| f.kind.id)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Registries
// ---------------------------------------------------------------------------------------

#[test]
fn refused_bearer_tokens_get_token_advice_not_password_advice() {
    let r = reply(b"535 5.7.8 Username and Password not accepted\r\n");
    let plain = explain(&r, Context::Auth);
    assert!(
        plain.next.iter().any(|n| n.contains("password")),
        "{:?}",
        plain.next
    );
    let token = explain(&r, Context::Auth).for_bearer_token();
    assert!(token.next[0].contains("bearer token"), "{:?}", token.next);
    assert!(token.next[1].contains("sasl decode"), "{:?}", token.next);
    assert!(
        !token.next.iter().any(|n| n.contains("password")),
        "{:?}",
        token.next
    );
    // Other refusals are left alone.
    let other = explain(&reply(b"550 5.7.1 Relaying denied\r\n"), Context::Rcpt);
    assert_eq!(other.clone().for_bearer_token().next, other.next);
}

#[test]
fn enhanced_codes_are_unique_and_documented() {
    let mut seen = HashSet::new();
    for c in ENHANCED_CODES {
        assert!(seen.insert((c.subject, c.detail)), "duplicate {}", c.code());
        assert!(
            subject_info(c.subject).is_some(),
            "{} has no subject",
            c.code()
        );
        assert!(
            !c.title.is_empty() && !c.description.is_empty(),
            "{}",
            c.code()
        );
        assert!(
            c.reference.starts_with("RFC ") || c.reference.starts_with("draft-"),
            "{} reference {:?}",
            c.code(),
            c.reference
        );
    }
    // Every subject of RFC 3463 has its X.y.0.
    for s in SUBJECTS {
        assert!(
            enhanced_code_info(s.subject, 0).is_some(),
            "X.{}.0",
            s.subject
        );
    }
    // The registry as of 2024: X.1.0–X.1.10, X.2.0–4, X.3.0–6, X.4.0–7, X.5.0–6,
    // X.6.0–10, X.7.0–30.
    let expected: &[(u16, u16)] = &[
        (0, 0),
        (1, 10),
        (2, 4),
        (3, 6),
        (4, 7),
        (5, 6),
        (6, 10),
        (7, 30),
    ];
    for &(subject, last) in expected {
        for detail in 0..=last {
            if subject == 0 && detail > 0 {
                continue;
            }
            assert!(
                enhanced_code_info(subject, detail).is_some(),
                "X.{subject}.{detail} missing"
            );
        }
        assert!(enhanced_code_info(subject, last + 1).is_none());
    }
    assert_eq!(ENHANCED_CODES.len(), 1 + 11 + 5 + 7 + 8 + 7 + 11 + 31);
}

#[test]
fn enhanced_lookup_ignores_the_class() {
    for c in ENHANCED_CODES {
        for class in [2, 4, 5] {
            let e = EnhancedCode {
                class,
                subject: c.subject,
                detail: c.detail,
            };
            assert_eq!(lookup_enhanced(&e), Some(c));
        }
    }
    let dmarc = lookup_enhanced(&EnhancedCode {
        class: 4,
        subject: 7,
        detail: 26,
    })
    .expect("X.7.26");
    assert_eq!(dmarc.title, "Multiple authentication checks failed");
    assert_eq!(dmarc.reference, "RFC 7372");
    assert_eq!(
        enhanced_code_info(7, 30).map(|c| c.reference),
        Some("RFC 8689")
    );
    assert_eq!(
        enhanced_code_info(7, 27).map(|c| c.reference),
        Some("RFC 7505")
    );
    assert_eq!(
        enhanced_code_info(1, 10).map(|c| c.code()),
        Some("X.1.10".into())
    );
    assert!(enhanced_code_info(7, 500).is_none());
}

#[test]
fn reply_codes_are_unique_and_cover_rfc5321() {
    let mut seen = HashSet::new();
    for r in REPLY_CODES {
        assert!(seen.insert(r.code), "duplicate {}", r.code);
        assert!((200..600).contains(&r.code));
        assert!(r.reference.starts_with("RFC "));
    }
    for code in [
        211, 214, 220, 221, 250, 251, 252, 354, 421, 450, 451, 452, 455, 500, 501, 502, 503, 504,
        550, 551, 552, 553, 554, 555,
    ] {
        assert!(
            reply_code_info(code).is_some_and(|r| r.reference.contains("RFC 5321")),
            "{code}"
        );
    }
    assert_eq!(ReplyClass::of(421), ReplyClass::Transient);
    assert_eq!(ReplyClass::of(554), ReplyClass::Permanent);
    assert_eq!(ReplyClass::of(0), ReplyClass::Invalid);
}

#[test]
fn one_rule_per_category_with_lowercase_patterns() {
    let mut seen = HashSet::new();
    for (i, rule) in RULES.iter().enumerate() {
        assert!(
            seen.insert(rule.category),
            "two rules for {}",
            rule.category
        );
        assert_eq!(
            Category::ALL[i],
            rule.category,
            "Category::ALL is in rule order"
        );
        assert!(
            !rule.strong.is_empty() || !rule.codes.is_empty(),
            "{} recognises nothing specific",
            rule.category
        );
        assert!(!rule.next.is_empty(), "{} has no advice", rule.category);
        for p in rule.strong.iter().chain(rule.weak) {
            let t = p.text();
            // The text is matched lower-cased: an upper-case pattern would never match.
            assert_eq!(t, t.to_ascii_lowercase(), "{} pattern {t:?}", rule.category);
            assert!(!t.trim().is_empty());
            if let Pat::Word(w) = p {
                assert!(w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            }
        }
        // Every category's finding kind is registered (and so documented).
        assert!(REGISTRY.contains(&rule.category.kind()));
        assert!(rule.category.kind().id.starts_with("smtp.reply."));
    }
    assert_eq!(seen.len(), Category::ALL.len());
}

#[test]
fn contexts_round_trip_by_name() {
    for c in Context::ALL {
        assert_eq!(Context::from_name(c.name()), Some(c));
    }
    assert_eq!(Context::from_name("HELO"), Some(Context::Ehlo));
    assert_eq!(Context::from_name("dot"), Some(Context::EndOfData));
    assert_eq!(Context::from_name("nonsense"), None);
}

// ---------------------------------------------------------------------------------------
// Behaviour
// ---------------------------------------------------------------------------------------

#[test]
fn blocklist_name_link_and_ip_are_extracted() {
    let r = reply(b"554 5.7.1 Service unavailable; Client host [203.0.113.45] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/203.0.113.45\r\n");
    let e = explain(&r, Context::Rcpt);
    assert_eq!(e.class, ReplyClass::Permanent);
    assert_eq!(e.category, Some(Category::Blocklisted));
    assert_eq!(e.ip, Some("203.0.113.45".parse().expect("ip")));
    let list = e.blocklist.as_ref().expect("blocklist");
    assert_eq!(list.name.as_deref(), Some("zen.spamhaus.org"));
    assert_eq!(
        list.url.as_deref(),
        Some("https://www.spamhaus.org/query/ip/203.0.113.45")
    );
    assert!(
        e.next
            .iter()
            .any(|n| n.contains("mailscope dnsbl 203.0.113.45")),
        "{:?}",
        e.next
    );
    assert!(e.summary.contains("at RCPT TO"), "{}", e.summary);
    assert!(e.summary.contains("zen.spamhaus.org"), "{}", e.summary);
    assert_eq!(e.enhanced.map(|(c, _)| c.to_string()), Some("5.7.1".into()));

    // Barracuda: the bracket holds a host name; the address is in the link.
    let r = reply(b"554 Service unavailable; Client host [server1.mail.com] blocked using Barracuda Reputation; http://bbl.barracudacentral.com/q.cgi?ip=192.168.1.1\r\n");
    let e = explain(&r, Context::Data);
    assert_eq!(e.ip, Some("192.168.1.1".parse().expect("ip")));
    let list = e.blocklist.expect("blocklist");
    assert_eq!(list.name.as_deref(), Some("Barracuda Reputation"));
    assert_eq!(
        list.url.as_deref(),
        Some("http://bbl.barracudacentral.com/q.cgi?ip=192.168.1.1")
    );

    // Yahoo: the name comes from the known-list table; no address to extract.
    let r = reply(b"553 5.7.1 [BL21] Connections will not be accepted from X.X.X.X, because the ip is in Spamhaus's list\r\n");
    let e = explain(&r, Context::Other);
    assert_eq!(e.blocklist.and_then(|b| b.name), Some("Spamhaus".into()));
    assert_eq!(e.ip, None);
}

#[test]
fn diagnostic_numbers_are_not_taken_for_addresses() {
    // Yahoo's 4.16.55.1 is a diagnostic code; the masked IP is not an address.
    let r = reply(b"421 4.7.0 [TSS04] Messages from ********* temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes\r\n");
    let e = explain(&r, Context::Mail);
    assert_eq!(e.ip, None);
    assert_eq!(e.links, vec!["https://postmaster.yahooinc.com/error-codes"]);
    // IPv6 in brackets.
    let r = reply(b"550-5.7.25 [2001:db8::25] The IP address sending this message does not have a\r\n550 5.7.25 PTR record setup.\r\n");
    let e = explain(&r, Context::Other);
    assert_eq!(e.ip, Some("2001:db8::25".parse().expect("ip")));
    assert!(
        e.next
            .iter()
            .any(|n| n.contains("mailscope fcrdns 2001:db8::25"))
    );
}

#[test]
fn phrases_wrapped_across_lines_still_match() {
    // "does not exist" is split by the line break and the code prefix of the next line.
    let input =
        b"550-5.1.1 The email account that you tried to reach does\r\n550 5.1.1 not exist.\r\n";
    let e = explain(&reply(input), Context::Rcpt);
    assert_eq!(e.category, Some(Category::UnknownUser));
    let f = &e.findings[0];
    assert!(f.detail.contains("does not exist"), "{}", f.detail);
    assert!(f.detail.contains("enhanced code 5.1.1"), "{}", f.detail);
}

#[test]
fn most_specific_first_and_weak_hints_only_alone() {
    // SPF named outright beats the generic X.7.26; both are reported.
    let input = b"550 5.7.26 This message fails to pass SPF checks for an SPF record with a hard fail policy (-all).\r\n";
    assert_eq!(
        ids(input, Context::EndOfData),
        ["smtp.reply.spf-fail", "smtp.reply.dmarc-fail"]
    );
    // "SPF or DKIM" in passing is only a weak hint: DMARC alone.
    let input = b"550 5.7.26 This message does not have authentication information or fails to pass authentication checks (SPF or DKIM).\r\n";
    assert_eq!(ids(input, Context::EndOfData), ["smtp.reply.dmarc-fail"]);
    // A weak hint alone is still reported.
    assert_eq!(ids(b"550 SPF\r\n", Context::Mail), ["smtp.reply.spf-fail"]);
    // "spam" inside "Spamhaus" is not the word spam.
    assert_eq!(
        ids(
            b"550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus.\r\n",
            Context::Rcpt
        ),
        ["smtp.reply.blocklisted"]
    );
}

#[test]
fn context_decides_what_a_code_means() {
    // 5.7.9 at AUTH: the mechanism is too weak. Yahoo uses 5.7.9 for policy after the data.
    assert_eq!(
        ids(
            b"534 5.7.9 Authentication mechanism is too weak\r\n",
            Context::Auth
        ),
        ["smtp.reply.auth-failed"]
    );
    assert_eq!(
        ids(b"550 5.7.9 Nope\r\n", Context::EndOfData),
        Vec::<&str>::new()
    );
    // A bare 552 after the data is a size limit; at RCPT it is not.
    assert_eq!(
        ids(b"552 Requested mail action aborted\r\n", Context::EndOfData),
        ["smtp.reply.message-too-big"]
    );
    assert_eq!(
        ids(b"552 Requested mail action aborted\r\n", Context::Rcpt),
        Vec::<&str>::new()
    );
    // 530 alone: authentication required; with STARTTLS in the text: TLS first.
    assert_eq!(
        ids(b"530 Access denied\r\n", Context::Mail),
        ["smtp.reply.auth-required"]
    );
    assert_eq!(
        ids(
            b"530 5.7.0 Must issue a STARTTLS command first\r\n",
            Context::Mail
        ),
        ["smtp.reply.tls-required"]
    );
}

#[test]
fn greylisting_is_a_deferral_only() {
    assert_eq!(
        ids(
            b"451 4.7.1 Greylisting in action, please come back later\r\n",
            Context::Rcpt
        ),
        ["smtp.reply.greylisted"]
    );
    assert_eq!(
        ids(b"550 5.7.1 Greylisting failed\r\n", Context::Rcpt),
        Vec::<&str>::new()
    );
}

#[test]
fn transient_refusals_are_at_most_warnings() {
    let e = explain(
        &reply(b"454 4.7.1 <a@example.org>: Relay access denied\r\n"),
        Context::Rcpt,
    );
    assert_eq!(e.findings[0].kind.id, "smtp.reply.relay-denied");
    assert_eq!(e.findings[0].kind.severity, Severity::Error);
    assert_eq!(e.findings[0].severity, Severity::Warning);
    let e = explain(
        &reply(b"554 5.7.1 <a@example.org>: Relay access denied\r\n"),
        Context::Rcpt,
    );
    assert_eq!(e.findings[0].severity, Severity::Error);
}

#[test]
fn positive_replies_are_not_refusals() {
    let e = explain(
        &reply(b"250 2.0.0 Ok: queued as spam-free\r\n"),
        Context::EndOfData,
    );
    assert_eq!(e.class, ReplyClass::Success);
    assert!(e.findings.is_empty() && e.categories.is_empty());
    assert_eq!(
        e.summary,
        "250 2.0.0: accepted after the message data: Other undefined Status (X.0.0)"
    );
    let e = explain(
        &reply(b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        Context::Data,
    );
    assert_eq!(e.class, ReplyClass::Intermediate);
    assert!(e.findings.is_empty());
}

#[test]
fn unregistered_enhanced_codes_are_reported() {
    let e = explain(
        &reply(b"550 5.7.606 Access denied, banned sending IP [192.0.2.7].\r\n"),
        Context::Other,
    );
    assert_eq!(
        e.findings.iter().map(|f| f.kind.id).collect::<Vec<_>>(),
        ["smtp.reply.blocklisted", "smtp.reply.unknown-enhanced-code"]
    );
    assert!(e.enhanced.is_none());
    assert_eq!(e.subject.map(|s| s.subject), Some(7));
    // Without a category the summary falls back to the subject.
    let e = explain(&reply(b"550 5.7.999 Whatever\r\n"), Context::Other);
    assert_eq!(
        e.summary,
        "550 5.7.999: refused (5xx: retrying unchanged will not help): security or policy status (unregistered detail)"
    );
    assert_eq!(e.findings.len(), 1);
    assert!(!e.next.is_empty());
}

// ---------------------------------------------------------------------------------------
// Corpus of real refusal replies
// ---------------------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/refusals")
}

struct Case {
    source: String,
    expect: Vec<String>,
    context: Context,
    reply: Vec<u8>,
}

fn parse_case(bytes: &[u8]) -> Result<Case, String> {
    let mut rest = bytes;
    let (mut source, mut expect, mut context) = (None, None, Context::Other);
    while rest.starts_with(b"#") {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("header line without CRLF")?;
        let line = std::str::from_utf8(&rest[1..end])
            .map_err(|e| e.to_string())?
            .trim();
        rest = &rest[end + 2..];
        let (key, value) = line.split_once(':').ok_or("header line without ':'")?;
        let value = value.trim();
        match key.trim() {
            "source" => source = Some(value.to_string()),
            "expect" => {
                expect = Some(
                    value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty() && s != "none")
                        .collect(),
                )
            }
            "context" => {
                context = Context::from_name(value).ok_or(format!("unknown context {value:?}"))?
            }
            "note" => {}
            other => return Err(format!("unknown header {other:?}")),
        }
    }
    let source = source.ok_or("no '# source:' line")?;
    if !source.starts_with("http://") && !source.starts_with("https://") {
        return Err(format!("source is not a URL: {source}"));
    }
    Ok(Case {
        source,
        expect: expect.ok_or("no '# expect:' line")?,
        context,
        reply: rest.to_vec(),
    })
}

#[test]
fn corpus_of_real_refusals() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    // An empty corpus proves nothing: refuse to pass.
    assert!(
        files.len() >= 40,
        "{} holds {} replies; the corpus needs at least 40",
        dir.display(),
        files.len()
    );

    let mut failures = Vec::new();
    let mut seen_categories = HashSet::new();
    let mut sources = HashSet::new();
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        let name = path.display().to_string();
        let case = match parse_case(&bytes) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        sources.insert(case.source.clone());
        let decoded = match decode_reply(&case.reply, &ReplyLimits::default()) {
            Ok(Decoded::Complete { value, consumed }) if consumed == case.reply.len() => value,
            other => {
                failures.push(format!("{name}: not exactly one complete reply: {other:?}"));
                continue;
            }
        };
        if !decoded.garbage.is_empty()
            || decoded
                .reply
                .lines
                .iter()
                .any(|l| l.ending != LineEnding::CrLf)
        {
            failures.push(format!(
                "{name}: every reply line must be a CRLF-terminated reply line"
            ));
            continue;
        }
        let e = explain(&decoded.reply, case.context);
        seen_categories.extend(e.categories.iter().copied());
        let got: Vec<String> = e.findings.iter().map(|f| f.kind.id.to_string()).collect();
        let actual_path = PathBuf::from(format!("{name}.actual"));
        if got == case.expect {
            let _ = std::fs::remove_file(&actual_path);
        } else {
            let mut out = format!("# expect: {}\n", got.join(","));
            let _ = writeln!(out, "# summary: {}", e.summary);
            for f in &e.findings {
                let _ = writeln!(out, "# finding: {f}");
            }
            for n in &e.next {
                let _ = writeln!(out, "# next: {n}");
            }
            let _ = writeln!(out, "# ip: {:?}\n# blocklist: {:?}", e.ip, e.blocklist);
            std::fs::write(&actual_path, out).expect("write .actual");
            failures.push(format!(
                "{name}: expected {:?}, got {got:?} (see {})",
                case.expect,
                actual_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus mismatches:\n{}",
        failures.join("\n")
    );
    // The corpus exercises every category.
    for c in Category::ALL {
        assert!(seen_categories.contains(&c), "no corpus reply for {c}");
    }
    assert!(
        sources.len() >= 20,
        "only {} distinct sources",
        sources.len()
    );
}

// ---------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------

fn arbitrary_reply(code: u16, lines: Vec<Vec<u8>>) -> Reply {
    let enhanced = lines
        .first()
        .and_then(|l| EnhancedCode::parse_prefix(l).map(|(e, _)| e));
    Reply {
        code,
        enhanced,
        lines: lines
            .into_iter()
            .enumerate()
            .map(|(i, text)| ReplyLine {
                code,
                text,
                offset: i,
                ending: LineEnding::CrLf,
            })
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_panic_on_arbitrary_bytes(
        code in 0u16..1000,
        lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4),
        ctx in 0usize..Context::ALL.len(),
    ) {
        let r = arbitrary_reply(code, lines);
        let e = explain(&r, Context::ALL[ctx]);
        prop_assert!(!e.summary.is_empty());
    }

    #[test]
    fn no_panic_on_text_made_of_pattern_pieces(
        code in prop::sample::select(vec![421u16, 450, 451, 452, 454, 530, 535, 550, 552, 553, 554]),
        enh in prop::sample::select(vec!["", "5.7.1 ", "4.7.28 ", "5.7.26 ", "5.7.606 ", "4.7.500 ", "2.0.0 ", "5.1.10 "]),
        words in prop::collection::vec(prop::sample::select(vec![
            "spam", "spamhaus", "[", "]", "1.2.3.4", "2001:db8::1", "http://", "https://x.y/ip/9.9.9.9",
            "blocked using", ";", ".", " ", "é", "\u{fffd}", "listed at", "greylisted", "PTR", "from",
            "?ip=", "::", "...", "quota", "dmarc", "SPF", "5.7.26", "\t", "(", ")",
        ]), 0..40),
        ctx in 0usize..Context::ALL.len(),
    ) {
        let text = format!("{enh}{}", words.concat());
        let r = arbitrary_reply(code, vec![text.into_bytes()]);
        let e = explain(&r, Context::ALL[ctx]);
        prop_assert!(e.findings.len() <= Category::ALL.len() + 1);
        for l in &e.links {
            prop_assert!(l.starts_with("http"));
        }
    }

    #[test]
    fn decoded_replies_never_panic(input in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Decoded::Complete { value, .. }) = decode_reply(&input, &ReplyLimits::default()) {
            for ctx in Context::ALL {
                let _ = explain(&value.reply, ctx);
            }
        }
    }
}
