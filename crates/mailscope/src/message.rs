//! The message `mailscope smtp` sends, as swaks builds it: a default test message when no
//! `--data` is given (Date, To, From, Subject, Message-Id, X-Mailer and a body), `--body`,
//! `--attach` (MIME through mail-builder), `--header` (replace or add) and `--add-header`
//! (always add), and swaks' tokens in `--data` (`%DATE%`, `%FROM_ADDRESS%`, `%TO_ADDRESS%`,
//! `%MESSAGEID%`, `%NEW_HEADERS%`, `%NEW_BODY%`). `--raw` (alias `--no-data-fixup`) turns all
//! of this off: the bytes go out as they are.

use anyhow::{Context, Result, bail};
use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;

/// Everything that shapes the message.
#[derive(Debug, Default, Clone)]
pub struct MessageSpec {
    /// Envelope sender, for From: and %FROM_ADDRESS%.
    pub from: String,
    /// Recipients, for To: and %TO_ADDRESS%.
    pub to: Vec<String>,
    /// The HELO name, for the Message-Id's right side.
    pub helo: String,
    /// `--header "Name: value"`: replaces a header of that name, or adds it.
    pub headers: Vec<String>,
    /// `--add-header "Name: value"`: always added.
    pub add_headers: Vec<String>,
    /// `--body TEXT|@FILE`.
    pub body: Option<Vec<u8>>,
    /// `--attach [TYPE:]@FILE` or TEXT.
    pub attach: Vec<Attachment>,
    /// Random hex for the Message-Id (the caller's randomness).
    pub nonce: String,
    /// Seconds since the Unix epoch, for Date: (the caller's clock).
    pub unix_time: i64,
}

/// One attachment.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// MIME type.
    pub content_type: String,
    /// File name shown to the recipient.
    pub filename: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Attachment {
    /// Parses `--attach`: `@FILE`, `TYPE:@FILE`, or text (attached as `text/plain`).
    pub fn parse(spec: &str) -> Result<Attachment> {
        let (content_type, rest) = match spec.split_once(":@") {
            Some((t, p)) if t.contains('/') => (Some(t.to_string()), format!("@{p}")),
            _ => (None, spec.to_string()),
        };
        if let Some(path) = rest.strip_prefix('@') {
            let bytes = std::fs::read(path).with_context(|| format!("reading --attach {path}"))?;
            let filename = std::path::Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into());
            let content_type = content_type.unwrap_or_else(|| guess_type(&filename).to_string());
            Ok(Attachment {
                content_type,
                filename,
                bytes,
            })
        } else {
            Ok(Attachment {
                content_type: content_type.unwrap_or_else(|| "text/plain".into()),
                filename: "attachment.txt".into(),
                bytes: rest.into_bytes(),
            })
        }
    }
}

fn guess_type(name: &str) -> &'static str {
    let ext = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "zip" => "application/zip",
        "eml" => "message/rfc822",
        "json" => "application/json",
        "csv" => "text/csv",
        _ => "application/octet-stream",
    }
}

/// RFC 5322 date in UTC.
fn rfc5322_date(unix: i64) -> String {
    let f = time::format_description::well_known::Rfc2822;
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|d| d.format(&f).ok())
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

fn split_header(h: &str) -> Result<(&str, &str)> {
    let Some((name, value)) = h.split_once(':') else {
        bail!(crate::UsageError(format!(
            "header {h:?} is not \"Name: value\""
        )));
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        bail!(crate::UsageError(format!(
            "header name {name:?} is not valid (RFC 5322 §3.6.8)"
        )));
    }
    Ok((name, value.trim_start()))
}

impl MessageSpec {
    fn message_id(&self) -> String {
        format!("{}.{}@{}", self.unix_time, self.nonce, self.helo)
    }

    /// The default message (no `--data`), with `--body`, `--attach` and the headers applied.
    pub fn build_default(&self) -> Result<Vec<u8>> {
        let date = rfc5322_date(self.unix_time);
        let body = self
            .body
            .clone()
            .unwrap_or_else(|| b"This is a test mailing\r\n".to_vec());
        let bytes = if self.attach.is_empty() {
            let mut m = format!(
                "Date: {date}\r\nTo: {}\r\nFrom: {}\r\nSubject: test {date}\r\nMessage-Id: <{}>\r\nX-Mailer: mailscope {}\r\n\r\n",
                self.to.join(", "),
                self.from,
                self.message_id(),
                env!("CARGO_PKG_VERSION"),
            )
            .into_bytes();
            m.extend_from_slice(&body);
            m
        } else {
            let text = String::from_utf8_lossy(&body).into_owned();
            let mut b = MessageBuilder::new()
                .from(self.from.as_str())
                .to(self.to.iter().map(String::as_str).collect::<Vec<_>>())
                .subject(format!("test {date}"))
                .date(self.unix_time)
                .message_id(self.message_id())
                .header(
                    "X-Mailer",
                    Raw::new(format!("mailscope {}", env!("CARGO_PKG_VERSION"))),
                )
                .text_body(text);
            for a in &self.attach {
                b = b.attachment(
                    a.content_type.as_str(),
                    a.filename.as_str(),
                    a.bytes.as_slice(),
                );
            }
            b.write_to_vec().context("building the MIME message")?
        };
        self.apply_headers(&bytes)
    }

    /// `--data` in normal (not raw) mode: swaks' tokens replaced, then the headers applied.
    pub fn fix_up(&self, data: &[u8]) -> Result<Vec<u8>> {
        let date = rfc5322_date(self.unix_time);
        let new_headers: String = self
            .add_headers
            .iter()
            .chain(&self.headers)
            .map(|h| format!("{h}\r\n"))
            .collect();
        let body = self
            .body
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(data);
        // Tokens are ASCII; a message that is not UTF-8 keeps its bytes when it has none.
        let replaced = if text.contains('%') {
            text.replace("%DATE%", &date)
                .replace("%FROM_ADDRESS%", &self.from)
                .replace("%TO_ADDRESS%", &self.to.join(", "))
                .replace("%MESSAGEID%", &self.message_id())
                .replace("%NEW_HEADERS%", new_headers.trim_end())
                .replace("%NEW_BODY%", &body)
                .into_bytes()
        } else {
            data.to_vec()
        };
        let used_header_token = data.windows(13).any(|w| w == b"%NEW_HEADERS%");
        if used_header_token {
            Ok(replaced)
        } else {
            self.apply_headers(&replaced)
        }
    }

    /// `--header` replaces (or adds) and `--add-header` adds, in the header block.
    fn apply_headers(&self, message: &[u8]) -> Result<Vec<u8>> {
        if self.headers.is_empty() && self.add_headers.is_empty() {
            return Ok(message.to_vec());
        }
        // The header block ends at the first empty line (CRLF CRLF or LF LF).
        let end = find_header_end(message);
        let (head, rest) = message.split_at(end);
        let eol: &[u8] = if head.windows(2).any(|w| w == b"\r\n") || head.is_empty() {
            b"\r\n"
        } else {
            b"\n"
        };
        let mut lines: Vec<Vec<u8>> = split_fields(head);
        for h in &self.headers {
            let (name, value) = split_header(h)?;
            let field = format!("{name}: {value}").into_bytes();
            let lname = name.to_ascii_lowercase();
            let mut replaced = false;
            lines.retain_mut(|l| {
                let is = field_name(l).is_some_and(|n| n.eq_ignore_ascii_case(&lname));
                if is && !replaced {
                    replaced = true;
                    *l = field.clone();
                    return true;
                }
                !is
            });
            if !replaced {
                lines.push(field);
            }
        }
        for h in &self.add_headers {
            let (name, value) = split_header(h)?;
            lines.push(format!("{name}: {value}").into_bytes());
        }
        let mut out = Vec::with_capacity(message.len() + 128);
        for l in lines {
            out.extend_from_slice(&l);
            out.extend_from_slice(eol);
        }
        if rest.is_empty() {
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(rest);
        Ok(out)
    }
}

/// Offset of the empty line that ends the header block (pointing at it), or the end.
fn find_header_end(m: &[u8]) -> usize {
    let mut i = 0;
    let mut line_start = 0;
    while i < m.len() {
        if m[i] == b'\n' {
            let line = &m[line_start..i];
            if line.is_empty() || line == b"\r" {
                return line_start;
            }
            line_start = i + 1;
        }
        i += 1;
    }
    m.len()
}

/// Header fields with folded continuation lines joined to their field (line ends removed).
fn split_fields(head: &[u8]) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        match (line.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => {
                last.extend_from_slice(b"\r\n");
                last.extend_from_slice(line);
            }
            _ => fields.push(line.to_vec()),
        }
    }
    fields
}

fn field_name(field: &[u8]) -> Option<String> {
    let colon = field.iter().position(|&b| b == b':')?;
    std::str::from_utf8(&field[..colon])
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MessageSpec {
        MessageSpec {
            from: "a@example.test".into(),
            to: vec!["b@example.test".into(), "c@example.test".into()],
            helo: "client.example.test".into(),
            nonce: "abc123".into(),
            unix_time: 1_795_000_000,
            ..MessageSpec::default()
        }
    }

    #[test]
    fn default_message_like_swaks() {
        let m = String::from_utf8(spec().build_default().unwrap()).unwrap();
        assert!(m.starts_with("Date: "), "{m}");
        assert!(m.contains(
            "\r\nTo: b@example.test, c@example.test\r\nFrom: a@example.test\r\nSubject: test "
        ));
        assert!(m.contains("\r\nMessage-Id: <1795000000.abc123@client.example.test>\r\n"));
        assert!(m.ends_with("\r\n\r\nThis is a test mailing\r\n"));
    }

    #[test]
    fn headers_replace_and_add() {
        let mut s = spec();
        s.headers = vec!["Subject: replaced".into(), "X-New: 1".into()];
        s.add_headers = vec!["X-Added: 2".into()];
        let m = s
            .fix_up(b"Subject: old\r\nX-Other: folded\r\n  more\r\n\r\nbody\r\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "Subject: replaced\r\nX-Other: folded\r\n  more\r\nX-New: 1\r\nX-Added: 2\r\n\r\nbody\r\n"
        );
        assert!(s.fix_up(b"x").is_ok());
        s.headers = vec!["no colon".into()];
        assert!(s.fix_up(b"a: b\r\n\r\n").is_err());
    }

    #[test]
    fn swaks_tokens() {
        let mut s = spec();
        s.body = Some(b"the body".to_vec());
        let m = String::from_utf8(
            s.fix_up(b"From: %FROM_ADDRESS%\nTo: %TO_ADDRESS%\n\n%NEW_BODY%\n")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            m,
            "From: a@example.test\nTo: b@example.test, c@example.test\n\nthe body\n"
        );
    }

    #[test]
    fn attachments_make_mime() {
        let mut s = spec();
        s.attach = vec![Attachment {
            content_type: "application/octet-stream".into(),
            filename: "x.bin".into(),
            bytes: vec![0, 1, 2, 255],
        }];
        let m = String::from_utf8(s.build_default().unwrap()).unwrap();
        assert!(m.contains("multipart/mixed"), "{m}");
        assert!(m.contains("x.bin") && m.contains("This is a test mailing"));
        assert!(Attachment::parse("text/csv:@/nonexistent/file").is_err());
        let a = Attachment::parse("hello").unwrap();
        assert_eq!(
            (a.content_type.as_str(), a.bytes.as_slice()),
            ("text/plain", &b"hello"[..])
        );
    }
}
