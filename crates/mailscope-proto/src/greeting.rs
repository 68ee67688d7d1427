//! Which mail protocol a server's first words belong to (for `mailscope probe` on a port
//! nobody named): SMTP greets with a reply code, POP3 with `+OK`/`-ERR`, IMAP with an
//! untagged `OK`, `PREAUTH` or `BYE`.

/// A mail protocol recognised from a greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreetingProtocol {
    /// `220` (ready), `421` or `554` (refusing) — RFC 5321 §4.2, §3.1.
    Smtp,
    /// `+OK` or `-ERR` — RFC 1939 §4.
    Pop3,
    /// `* OK`, `* PREAUTH` or `* BYE` — RFC 9051 §7.1.
    Imap,
}

/// The protocol of a greeting's first bytes, if it is one of the three. Only the start is
/// looked at, so a partial read of a long greeting is enough.
pub fn classify_greeting(first: &[u8]) -> Option<GreetingProtocol> {
    let starts = |p: &[u8]| first.len() >= p.len() && first[..p.len()].eq_ignore_ascii_case(p);
    let smtp_code = first.len() >= 4
        && [&b"220"[..], b"421", b"554"]
            .iter()
            .any(|c| first.starts_with(c))
        && matches!(first[3], b' ' | b'-' | b'\r' | b'\n');
    if smtp_code {
        Some(GreetingProtocol::Smtp)
    } else if starts(b"+OK") || starts(b"-ERR") {
        Some(GreetingProtocol::Pop3)
    } else if starts(b"* OK") || starts(b"* PREAUTH") || starts(b"* BYE") {
        Some(GreetingProtocol::Imap)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        use GreetingProtocol as G;
        assert_eq!(
            classify_greeting(b"220 mx.example ESMTP\r\n"),
            Some(G::Smtp)
        );
        assert_eq!(classify_greeting(b"220-mx.example\r\n"), Some(G::Smtp));
        assert_eq!(classify_greeting(b"421 busy\r\n"), Some(G::Smtp));
        assert_eq!(classify_greeting(b"+OK Dovecot ready.\r\n"), Some(G::Pop3));
        assert_eq!(classify_greeting(b"-ERR go away\r\n"), Some(G::Pop3));
        assert_eq!(
            classify_greeting(b"* OK [CAPABILITY IMAP4rev1] ready\r\n"),
            Some(G::Imap)
        );
        assert_eq!(classify_greeting(b"* bye\r\n"), Some(G::Imap));
        assert_eq!(classify_greeting(b"SSH-2.0-OpenSSH_9.2\r\n"), None);
        assert_eq!(classify_greeting(b"2200 not smtp"), None);
        assert_eq!(classify_greeting(b""), None);
        assert_eq!(classify_greeting(b"22"), None);
    }
}
