//! EHLO reply → capabilities (RFC 5321 §4.1.1.1). Every keyword is kept, known or not, with
//! its parameters exactly as sent: a diagnostic tool must show what the server offers, not
//! what we happen to understand.

use crate::smtp::reply::Reply;

/// One advertised extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The keyword as sent (case kept; compare with [`Extension::is`]).
    pub keyword: String,
    /// Parameters, split on spaces, as sent.
    pub params: Vec<String>,
}

impl Extension {
    /// Case-insensitive keyword comparison.
    pub fn is(&self, keyword: &str) -> bool {
        self.keyword.eq_ignore_ascii_case(keyword)
    }
}

/// What an EHLO reply says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// The first line: the server's domain and greeting text.
    pub greeting: String,
    /// The extensions, in the order sent.
    pub extensions: Vec<Extension>,
}

impl Capabilities {
    /// Parses the lines after the first of a positive EHLO reply.
    pub fn from_reply(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        for (i, line) in reply.lines.iter().enumerate() {
            let text = String::from_utf8_lossy(&line.text);
            if i == 0 {
                caps.greeting = text.into_owned();
                continue;
            }
            let mut words = text.split([' ', '\t']).filter(|w| !w.is_empty());
            let Some(keyword) = words.next() else {
                continue;
            };
            // Old servers (and some still) write `AUTH=LOGIN PLAIN`: keep the keyword as
            // sent but split the first parameter off so lookups find it.
            let (keyword, first_param) = match keyword.split_once('=') {
                Some((k, p)) => (k, Some(p)),
                None => (keyword, None),
            };
            let mut params: Vec<String> = first_param
                .filter(|p| !p.is_empty())
                .map(String::from)
                .into_iter()
                .collect();
            params.extend(words.map(String::from));
            let keyword = if first_param.is_some() {
                format!("{keyword}=")
            } else {
                keyword.to_owned()
            };
            caps.extensions.push(Extension { keyword, params });
        }
        caps
    }

    /// Whether `keyword` is offered (case-insensitive; `AUTH=` counts as `AUTH`).
    pub fn has(&self, keyword: &str) -> bool {
        self.extensions.iter().any(|e| e.is(keyword))
    }

    /// The parameters of `keyword`, if offered.
    pub fn params(&self, keyword: &str) -> Option<&[String]> {
        self.extensions
            .iter()
            .find(|e| e.is(keyword))
            .map(|e| e.params.as_slice())
    }

    /// AUTH mechanisms offered, from `AUTH` and the old `AUTH=` form, upper-cased, unique.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self
            .extensions
            .iter()
            .filter(|e| e.is("AUTH") || e.is("AUTH="))
        {
            for p in &e.params {
                let m = p.to_ascii_uppercase();
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// Whether AUTH is offered in either form.
    pub fn offers_auth(&self) -> bool {
        self.has("AUTH") || self.has("AUTH=")
    }

    /// SIZE limit, if advertised with a number (0 means no fixed limit, RFC 1870).
    pub fn size_limit(&self) -> Option<u64> {
        self.params("SIZE")?.first()?.parse().ok()
    }

    /// Keywords as one line, for summaries.
    pub fn keywords(&self) -> Vec<String> {
        self.extensions
            .iter()
            .map(|e| match (e.params.is_empty(), e.keyword.ends_with('=')) {
                (true, _) => e.keyword.clone(),
                // `AUTH=PLAIN LOGIN`, as sent.
                (false, true) => format!("{}{}", e.keyword, e.params.join(" ")),
                (false, false) => format!("{} {}", e.keyword, e.params.join(" ")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::{Decoded, ReplyLimits, decode_reply};

    fn caps(bytes: &[u8]) -> Capabilities {
        match decode_reply(bytes, &ReplyLimits::default()) {
            Ok(Decoded::Complete { value, .. }) => Capabilities::from_reply(&value.reply),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keeps_unknown_keywords_and_parameters() {
        let c = caps(
            b"250-mail.example.net Hello [192.0.2.1]\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-X-FANCY a b=c\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=LOGIN CRAM-MD5\r\n250 STARTTLS\r\n",
        );
        assert_eq!(c.greeting, "mail.example.net Hello [192.0.2.1]");
        assert!(c.has("pipelining") && c.has("STARTTLS") && !c.has("CHUNKING"));
        assert_eq!(
            c.params("x-fancy"),
            Some(&["a".to_string(), "b=c".to_string()][..])
        );
        assert_eq!(c.auth_mechanisms(), vec!["PLAIN", "LOGIN", "CRAM-MD5"]);
        assert_eq!(c.size_limit(), Some(10_240_000));
        assert_eq!(c.keywords()[3], "AUTH PLAIN LOGIN");
    }

    #[test]
    fn single_line_reply_has_no_extensions() {
        let c = caps(b"250 mail.example.net\r\n");
        assert!(c.extensions.is_empty());
        assert!(!c.offers_auth());
    }
}
