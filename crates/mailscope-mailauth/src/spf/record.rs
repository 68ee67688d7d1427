//! SPF record syntax: record selection (RFC 7208 §4.5), the split into terms, and a strict
//! check of each term against the ABNF of RFC 7208 §4.6.1, §5, §6, §7.1 that says *which*
//! term is wrong and why. Each checked term becomes mail-auth's SPF AST ([`Directive`],
//! [`Mechanism`], [`Macro`]), its domain-specs parsed by mail-auth's macro-string parser.
//! (mail-auth's record parser splits `a:`/`mx:` arguments at the first `/`, so
//! `a:foo:bar/baz.example.com` — a valid domain-spec — would not parse; the CIDR suffix is
//! taken from the end here, as the ABNF requires.)

use mail_auth::spf::{Directive, Macro, Mechanism, Qualifier};

/// At most this many terms per record; a TXT record of [`crate::dns::MAX_TXT_LEN`] octets
/// cannot hold more than this anyway.
pub const MAX_TERMS: usize = 8 * 1024;

/// One term of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// 1-based position among the terms after `v=spf1`.
    pub position: usize,
    /// Byte offset of the term in the record text.
    pub offset: usize,
    /// The term as written.
    pub text: String,
    /// What it is.
    pub kind: TermKind,
}

/// What a term is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermKind {
    /// A mechanism with its qualifier.
    Directive(Directive),
    /// `redirect=domain-spec`.
    Redirect(Macro),
    /// `exp=domain-spec`.
    Exp(Macro),
    /// A modifier SPF does not define (ignored, RFC 7208 §6).
    Unknown(String),
}

impl Term {
    /// Whether evaluating the term costs a DNS-querying term (RFC 7208 §4.6.4).
    pub fn queries_dns(&self) -> bool {
        match &self.kind {
            TermKind::Directive(d) => matches!(
                d.mechanism,
                Mechanism::Include { .. }
                    | Mechanism::A { .. }
                    | Mechanism::Mx { .. }
                    | Mechanism::Ptr { .. }
                    | Mechanism::Exists { .. }
            ),
            TermKind::Redirect(_) => true,
            TermKind::Exp(_) | TermKind::Unknown(_) => false,
        }
    }
}

/// A parsed SPF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record text.
    pub text: String,
    /// Its terms, in order.
    pub terms: Vec<Term>,
}

impl Record {
    /// The `redirect=` term, if any.
    pub fn redirect(&self) -> Option<(&Term, &Macro)> {
        self.terms.iter().find_map(|t| match &t.kind {
            TermKind::Redirect(m) => Some((t, m)),
            _ => None,
        })
    }

    /// The `exp=` term, if any.
    pub fn exp(&self) -> Option<(&Term, &Macro)> {
        self.terms.iter().find_map(|t| match &t.kind {
            TermKind::Exp(m) => Some((t, m)),
            _ => None,
        })
    }

    /// The `all` directives.
    pub fn alls(&self) -> impl Iterator<Item = (&Term, &Directive)> {
        self.terms.iter().filter_map(|t| match &t.kind {
            TermKind::Directive(d) if d.mechanism == Mechanism::All => Some((t, d)),
            _ => None,
        })
    }
}

/// A syntax error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based term position (0: the version tag itself).
    pub position: usize,
    /// Byte offset in the record.
    pub offset: usize,
    /// The offending term.
    pub term: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.position == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(
                f,
                "term {} `{}` (offset {}): {}",
                self.position, self.term, self.offset, self.reason
            )
        }
    }
}

/// Whether a TXT string is an SPF record: `v=spf1` (any case) followed by a space or the
/// end (RFC 7208 §4.5).
pub fn is_spf(txt: &[u8]) -> bool {
    txt.len() >= 6 && txt[..6].eq_ignore_ascii_case(b"v=spf1") && (txt.len() == 6 || txt[6] == b' ')
}

/// Parses a record that [`is_spf`] accepted.
pub fn parse(txt: &[u8]) -> Result<Record, SyntaxError> {
    let text = String::from_utf8_lossy(txt).into_owned();
    if !is_spf(txt) {
        return Err(SyntaxError {
            position: 0,
            offset: 0,
            term: String::new(),
            reason: "the record does not start with v=spf1".into(),
        });
    }
    let mut terms = Vec::new();
    let mut redirect_seen = false;
    let mut exp_seen = false;
    let mut offset = 6;
    for piece in txt[6..].split(|&b| b == b' ') {
        let start = offset;
        offset += piece.len() + 1;
        if piece.is_empty() {
            continue;
        }
        let position = terms.len() + 1;
        let term_text = String::from_utf8_lossy(piece).into_owned();
        let err = |reason: String| SyntaxError {
            position,
            offset: start,
            term: term_text.clone(),
            reason,
        };
        if terms.len() >= MAX_TERMS {
            return Err(err(format!("more than {MAX_TERMS} terms")));
        }
        let kind = check_term(piece).map_err(err)?;
        match &kind {
            TermKind::Redirect(_) if redirect_seen => {
                return Err(err(
                    "a second redirect= modifier (at most one is allowed)".into()
                ));
            }
            TermKind::Exp(_) if exp_seen => {
                return Err(err("a second exp= modifier (at most one is allowed)".into()));
            }
            TermKind::Redirect(_) => redirect_seen = true,
            TermKind::Exp(_) => exp_seen = true,
            _ => {}
        }
        terms.push(Term {
            position,
            offset: start,
            text: term_text,
            kind,
        });
    }
    Ok(Record { text, terms })
}

/// Checks one term and parses it with mail-auth.
fn check_term(t: &[u8]) -> Result<TermKind, String> {
    if let Some(&b) = t.iter().find(|&&b| !(0x21..=0x7e).contains(&b)) {
        return Err(if b >= 0x80 {
            "non-ASCII octet (SPF records are US-ASCII)".into()
        } else {
            format!("control character 0x{b:02x}")
        });
    }
    // A modifier is `name=...`; the first of `:`, `/`, `=` decides.
    let first_stop = t.iter().position(|&b| matches!(b, b':' | b'/' | b'='));
    if let Some(i) = first_stop
        && t[i] == b'='
        && is_name(&t[..i])
    {
        let name = String::from_utf8_lossy(&t[..i]).to_ascii_lowercase();
        let value = &t[i + 1..];
        return match name.as_str() {
            "redirect" | "exp" => {
                check_domain_spec(value).map_err(|e| format!("{name}=: {e}"))?;
                let m = macro_of(value)?;
                Ok(if name == "redirect" {
                    TermKind::Redirect(m)
                } else {
                    TermKind::Exp(m)
                })
            }
            _ => {
                check_macro_string(value, false).map_err(|e| format!("modifier {name}=: {e}"))?;
                Ok(TermKind::Unknown(name))
            }
        };
    }
    let (qualifier, body) = match t.first() {
        Some(b'+') => (Qualifier::Pass, &t[1..]),
        Some(b'-') => (Qualifier::Fail, &t[1..]),
        Some(b'~') => (Qualifier::SoftFail, &t[1..]),
        Some(b'?') => (Qualifier::Neutral, &t[1..]),
        _ => (Qualifier::Pass, t),
    };
    let name_end = body
        .iter()
        .position(|&b| matches!(b, b':' | b'/' | b'='))
        .unwrap_or(body.len());
    let name = String::from_utf8_lossy(&body[..name_end]).to_ascii_lowercase();
    let rest = &body[name_end..];
    let mechanism = match name.as_str() {
        "all" => {
            if !rest.is_empty() {
                return Err("all takes no argument".into());
            }
            Mechanism::All
        }
        "include" | "exists" => {
            let Some(spec) = rest.strip_prefix(b":") else {
                return Err(format!("{name} needs :domain"));
            };
            check_domain_spec(spec)?;
            let macro_string = macro_of(spec)?;
            if name == "include" {
                Mechanism::Include { macro_string }
            } else {
                Mechanism::Exists { macro_string }
            }
        }
        "a" | "mx" => {
            let (spec, cidr) = match rest.first() {
                None => (None, (None, None)),
                Some(b':') => {
                    let (spec, cidr) = split_dual_cidr(&rest[1..]);
                    (Some(spec), cidr)
                }
                Some(b'/') => {
                    let (spec, cidr) = split_dual_cidr(rest);
                    if !spec.is_empty() {
                        return Err(format!("bad CIDR length in {name}"));
                    }
                    (None, cidr)
                }
                Some(_) => return Err(format!("{name} must be followed by :domain or /cidr")),
            };
            let macro_string = match spec {
                Some(spec) => {
                    check_domain_spec(spec)?;
                    macro_of(spec)?
                }
                None => Macro::None,
            };
            let v4 = match cidr.0 {
                Some(c) => check_cidr(c, 32)?,
                None => 32,
            };
            let v6 = match cidr.1 {
                Some(c) => check_cidr(c, 128)?,
                None => 128,
            };
            let (ip4_mask, ip6_mask) = (mask4(v4), mask6(v6));
            if name == "a" {
                Mechanism::A {
                    macro_string,
                    ip4_mask,
                    ip6_mask,
                }
            } else {
                Mechanism::Mx {
                    macro_string,
                    ip4_mask,
                    ip6_mask,
                }
            }
        }
        "ptr" => match rest.first() {
            None => Mechanism::Ptr {
                macro_string: Macro::None,
            },
            Some(b':') => {
                check_domain_spec(&rest[1..])?;
                Mechanism::Ptr {
                    macro_string: macro_of(&rest[1..])?,
                }
            }
            Some(_) => return Err("ptr takes only an optional :domain".into()),
        },
        "ip4" => {
            let Some(arg) = rest.strip_prefix(b":") else {
                return Err("ip4 needs :address".into());
            };
            let slash = arg.iter().position(|&b| b == b'/').unwrap_or(arg.len());
            let addr = check_ip4(&arg[..slash])?;
            let len = if slash < arg.len() {
                check_cidr(&arg[slash + 1..], 32)?
            } else {
                32
            };
            Mechanism::Ip4 {
                addr,
                mask: mask4(len),
            }
        }
        "ip6" => {
            let Some(arg) = rest.strip_prefix(b":") else {
                return Err("ip6 needs :address".into());
            };
            let slash = arg.iter().position(|&b| b == b'/').unwrap_or(arg.len());
            let text = std::str::from_utf8(&arg[..slash]).unwrap_or("");
            let Ok(addr) = text.parse::<std::net::Ipv6Addr>() else {
                return Err(format!("{text:?} is not an IPv6 address"));
            };
            let len = if slash < arg.len() {
                check_cidr(&arg[slash + 1..], 128)?
            } else {
                128
            };
            Mechanism::Ip6 {
                addr,
                mask: mask6(len),
            }
        }
        "" => return Err("empty mechanism name".into()),
        other => {
            return Err(if rest.first() == Some(&b'=') {
                format!("{other:?} is not a valid modifier name")
            } else {
                format!("unknown mechanism {other:?}")
            });
        }
    };
    Ok(TermKind::Directive(Directive::new(qualifier, mechanism)))
}

/// A checked domain-spec as mail-auth's macro AST. Its explanation-string parser is used:
/// unlike the record parser it does not stop at `/`, and the letters it additionally
/// allows (c, r, t) were already refused by [`check_domain_spec`].
fn macro_of(spec: &[u8]) -> Result<Macro, String> {
    use mail_auth::common::parse::TxtRecordParser;
    Macro::parse(spec).map_err(|e| format!("mail-auth's macro parser rejected it ({e})"))
}

fn mask4(len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    }
}

fn mask6(len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128))
    }
}

/// The digits of an IPv4 and an IPv6 CIDR length, each if present.
type DualCidr<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Splits `domain-spec dual-cidr-length` from the end: `(/N)?(//N)?` with digits only.
fn split_dual_cidr(arg: &[u8]) -> (&[u8], DualCidr<'_>) {
    let digits_after =
        |s: &[u8], i: usize| -> bool { s.len() > i && s[i..].iter().all(u8::is_ascii_digit) };
    let mut s = arg;
    let mut v6 = None;
    if let Some(i) = find_last(s, b"//")
        && digits_after(s, i + 2)
    {
        v6 = Some(&s[i + 2..]);
        s = &s[..i];
    }
    let mut v4 = None;
    if let Some(i) = s.iter().rposition(|&b| b == b'/')
        && digits_after(s, i + 1)
    {
        v4 = Some(&s[i + 1..]);
        s = &s[..i];
    }
    (s, (v4, v6))
}

fn find_last(h: &[u8], n: &[u8]) -> Option<usize> {
    (0..=h.len().checked_sub(n.len())?)
        .rev()
        .find(|&i| &h[i..i + n.len()] == n)
}

/// `name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )`
fn is_name(n: &[u8]) -> bool {
    n.first().is_some_and(u8::is_ascii_alphabetic)
        && n.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_ip4(a: &[u8]) -> Result<std::net::Ipv4Addr, String> {
    let s = std::str::from_utf8(a).unwrap_or("");
    let parts: Vec<&str> = s.split('.').collect();
    let ok = parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|v| v <= 255)
        });
    match s.parse() {
        Ok(addr) if ok => Ok(addr),
        _ => Err(format!("{s:?} is not a dotted-quad IPv4 address")),
    }
}

fn check_cidr(c: &[u8], max: u32) -> Result<u32, String> {
    let s = std::str::from_utf8(c).unwrap_or("");
    let ok_form = !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s.len() == 1 || !s.starts_with('0'));
    match s.parse::<u32>() {
        Ok(v) if ok_form && v <= max => Ok(v),
        _ => Err(format!("CIDR length /{s} is not a number from 0 to {max}")),
    }
}

/// One piece of a macro-string.
enum Piece {
    Literal,
    Expand,
}

/// Checks `macro-string` (RFC 7208 §7.1) and returns its pieces. `exp` allows the letters
/// c, r and t, which are for explanation strings only.
fn check_macro_string(s: &[u8], exp: bool) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'%' {
            let printable = (0x21..=0x7e).contains(&s[i]) || (exp && s[i] == b' ');
            if !printable {
                return Err(format!("character 0x{:02x} not allowed", s[i]));
            }
            out.push(Piece::Literal);
            i += 1;
            continue;
        }
        match s.get(i + 1) {
            Some(b'%' | b'_' | b'-') => {
                out.push(Piece::Expand);
                i += 2;
            }
            Some(b'{') => {
                let Some(close) = s[i..].iter().position(|&b| b == b'}') else {
                    return Err("unterminated macro %{".into());
                };
                let inner = &s[i + 2..i + close];
                check_macro_expand(inner, exp)?;
                out.push(Piece::Expand);
                i += close + 1;
            }
            Some(&c) => {
                return Err(format!(
                    "bad macro %{} (use %% for a literal percent sign)",
                    c as char
                ));
            }
            None => return Err("a lone % at the end (use %% for a literal percent sign)".into()),
        }
    }
    Ok(out)
}

/// The inside of `%{...}`: `macro-letter transformers *delimiter`.
fn check_macro_expand(inner: &[u8], exp: bool) -> Result<(), String> {
    let Some((&letter, rest)) = inner.split_first() else {
        return Err("empty macro %{}".into());
    };
    let l = letter.to_ascii_lowercase();
    match l {
        b's' | b'l' | b'o' | b'd' | b'i' | b'p' | b'h' | b'v' => {}
        b'c' | b'r' | b't' if exp => {}
        b'c' | b'r' | b't' => {
            return Err(format!(
                "macro letter {} is only allowed in explanation text",
                letter as char
            ));
        }
        _ => return Err(format!("unknown macro letter {:?}", letter as char)),
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 {
        let n = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse::<u32>().ok());
        match n {
            Some(n) if (1..=128).contains(&n) => {}
            _ => return Err("macro digit transformer must be from 1 to 128".into()),
        }
    }
    let mut rest = &rest[digits..];
    if let Some(r) = rest.strip_prefix(b"r").or_else(|| rest.strip_prefix(b"R")) {
        rest = r;
    }
    if let Some(&b) = rest
        .iter()
        .find(|&&b| !matches!(b, b'.' | b'-' | b'+' | b',' | b'/' | b'_' | b'='))
    {
        return Err(format!(
            "bad macro transformer or delimiter {:?}",
            b as char
        ));
    }
    Ok(())
}

/// `domain-spec = macro-string domain-end`,
/// `domain-end = ( "." toplabel [ "." ] ) / macro-expand`.
fn check_domain_spec(s: &[u8]) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty domain".into());
    }
    let pieces = check_macro_string(s, false)?;
    if matches!(pieces.last(), Some(Piece::Expand)) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(s);
    let body = text.strip_suffix('.').unwrap_or(&text);
    let Some(dot) = body.rfind('.') else {
        return Err(format!("{text:?} is not a domain name (no dot)"));
    };
    let top = &body[dot + 1..];
    if top.contains('}') || top.contains('%') {
        // The last label is partly a macro: the domain-end rule needs a macro at the very
        // end, which is not the case here.
        return Err(format!(
            "{text:?}: the last label must be a name or a macro"
        ));
    }
    if !is_toplabel(top) {
        return Err(format!(
            "{text:?}: the last label {top:?} is not a valid top-level label (letters, digits, inner hyphens, not all digits)"
        ));
    }
    Ok(())
}

/// `toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )`
pub(crate) fn is_toplabel(l: &str) -> bool {
    let b = l.as_bytes();
    if b.is_empty() || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
        return false;
    }
    if !b.contains(&b'-') {
        return b.iter().any(u8::is_ascii_alphabetic);
    }
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Checks an explanation string (the TXT record `exp=` points at).
pub fn check_explanation(s: &[u8]) -> Result<Macro, String> {
    check_macro_string(s, true)?;
    if s.is_empty() {
        return Err("empty explanation".into());
    }
    macro_of(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_and_positions() {
        let r = parse(b"v=spf1 ip4:192.0.2.0/24 include:_spf.example.test  -all").expect("ok");
        assert_eq!(r.terms.len(), 3);
        assert_eq!(r.terms[2].text, "-all");
        assert_eq!(r.terms[2].position, 3);
        assert!(r.terms[1].queries_dns());
        assert!(!r.terms[0].queries_dns());
    }

    #[test]
    fn syntax_errors_name_the_term() {
        let e = parse(b"v=spf1 a ip4:192.0.2.300 -all").expect_err("bad ip");
        assert_eq!(e.position, 2);
        assert_eq!(e.term, "ip4:192.0.2.300");
        let e = parse(b"v=spf1 mx/33 -all").expect_err("bad cidr");
        assert_eq!(e.position, 1);
        assert!(parse(b"v=spf1 include:foo -all").is_err());
        assert!(parse(b"v=spf1 a:foo.123 -all").is_err());
        assert!(parse(b"v=spf1 exists:%{i}.%{c}.example.com").is_err());
        assert!(parse(b"v=spf1 redirect=a.example redirect=b.example").is_err());
        assert!(parse(b"v=spf1 foo=%{x}").is_err());
        assert!(parse(b"v=spf1 foo=bar -all").is_ok());
        assert!(parse(b"v=spf1 a:%{d}").is_ok());
        assert!(parse(b"v=spf1 ip6:2001:db8::/32 mx//64 a/24//64 -all").is_ok());
    }

    #[test]
    fn selection() {
        assert!(is_spf(b"v=spf1"));
        assert!(is_spf(b"V=SPF1 -all"));
        assert!(!is_spf(b"v=spf10"));
        assert!(!is_spf(b"v=spf1\t-all"));
    }
}
