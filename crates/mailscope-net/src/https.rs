//! A minimal HTTPS GET, for the one web resource mail checks fetch: the MTA-STS policy
//! (RFC 8461 §3.3). No redirects are followed (the RFC forbids it), no connection is reused,
//! every size the server controls is capped, and the whole exchange shares one deadline.
//!
//! The caller resolves the host (through its own DNS, so `--resolver` applies) and hands the
//! addresses in; the host name is used for SNI and for certificate verification. The TLS
//! verdict comes back in the [`TlsReport`]: build the [`TlsClient`] with `insecure` to fetch
//! anyway and report what a sender would have refused.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::connect::connect_tcp;
use crate::error::{NetError, TlsFailure, fmt_duration};
use crate::tls::{TlsClient, TlsReport};

/// At most this many octets of status line and headers.
pub const MAX_HEAD: usize = 16 * 1024;
/// At most this many header fields.
pub const MAX_HEADERS: usize = 100;
/// At most this many interim (1xx) responses are skipped before the final one.
const MAX_INTERIM: usize = 5;

/// What to fetch.
#[derive(Debug, Clone)]
pub struct HttpsGet<'a> {
    /// Host name: sent as `Host:`, as SNI, and verified against the certificate.
    pub host: &'a str,
    /// Addresses of `host`, tried in order until one accepts.
    pub addrs: &'a [IpAddr],
    /// TCP port (443 normally).
    pub port: u16,
    /// Absolute path, e.g. `/.well-known/mta-sts.txt`.
    pub path: &'a str,
    /// Budget for the whole exchange: connect, handshake, request and response.
    pub timeout: Duration,
    /// At most this many body octets are kept; a longer body is cut and flagged.
    pub max_body: usize,
}

/// The server's answer.
#[derive(Debug, Clone)]
pub struct HttpsResponse {
    /// The address that answered.
    pub peer: SocketAddr,
    /// Addresses that failed before it, with why.
    pub failed_attempts: Vec<(SocketAddr, String)>,
    /// What TLS negotiated, and the certificate verdict.
    pub tls: TlsReport,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Status code.
    pub status: u16,
    /// Reason phrase (may be empty).
    pub reason: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked, at most `max_body` octets.
    pub body: Vec<u8>,
    /// The body was longer than `max_body` and was cut.
    pub body_truncated: bool,
    /// The connection ended without a TLS close_notify while the body length was given by
    /// the end of the connection: the body may have been cut by an attacker or a crash.
    pub unclean_close: bool,
}

impl HttpsResponse {
    /// The first header field of that name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The media type of `Content-Type` in lower case, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// Why nothing usable came back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpsError {
    /// No address to connect to.
    #[error("no address for {host}")]
    NoAddress {
        /// The host.
        host: String,
    },
    /// TCP failed for every address.
    #[error(transparent)]
    Connect(#[from] NetError),
    /// The TLS handshake failed (with a verifying client this includes a refused
    /// certificate).
    #[error(transparent)]
    Tls(#[from] TlsFailure),
    /// The exchange did not finish in time.
    #[error("no complete HTTP response within {}", fmt_duration(*after))]
    Timeout {
        /// The budget.
        after: Duration,
    },
    /// A socket or TLS error after the handshake.
    #[error("i/o error reading the HTTP response: {0}")]
    Io(String),
    /// The response is not HTTP/1.x as RFC 9112 writes it.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
}

/// Fetches `https://host:port/path` with `GET`, over `client`.
pub async fn https_get(
    client: &TlsClient,
    req: &HttpsGet<'_>,
) -> Result<HttpsResponse, HttpsError> {
    if req.addrs.is_empty() {
        return Err(HttpsError::NoAddress {
            host: req.host.to_owned(),
        });
    }
    let deadline = Instant::now() + req.timeout;
    let mut failed: Vec<(SocketAddr, String)> = Vec::new();
    let mut last_err = None;
    let mut connected = None;
    for ip in req.addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match connect_tcp(&ip.to_string(), req.port, left).await {
            Ok(c) => {
                connected = Some(c);
                break;
            }
            Err(e) => {
                failed.push((SocketAddr::new(*ip, req.port), e.to_string()));
                last_err = Some(e);
            }
        }
    }
    let Some(conn) = connected else {
        return Err(match (failed.len(), last_err) {
            (1, Some(e)) => HttpsError::Connect(e),
            (0, _) => HttpsError::Timeout { after: req.timeout },
            _ => HttpsError::Connect(NetError::AllAttemptsFailed {
                target: format!("{}:{}", req.host, req.port),
                attempts: failed,
            }),
        });
    };
    let peer = conn.peer;
    let left = deadline.saturating_duration_since(Instant::now());
    let (mut tls, report) = client.handshake(conn.stream, req.host, left).await?;

    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: mailscope/{}\r\nAccept: text/plain\r\n\r\n",
        req.path,
        host_header(req.host, req.port),
        env!("CARGO_PKG_VERSION")
    );
    let exchange = async {
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| HttpsError::Io(e.to_string()))?;
        tls.flush()
            .await
            .map_err(|e| HttpsError::Io(e.to_string()))?;
        read_response(&mut tls, req.max_body).await
    };
    let parsed = match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => return Err(HttpsError::Timeout { after: req.timeout }),
        Ok(r) => r?,
    };
    Ok(HttpsResponse {
        peer,
        failed_attempts: failed,
        tls: report,
        version: parsed.head.version,
        status: parsed.head.status,
        reason: parsed.head.reason,
        headers: parsed.head.headers,
        body: parsed.body,
        body_truncated: parsed.truncated,
        unclean_close: parsed.unclean_close,
    })
}

fn host_header(host: &str, port: u16) -> String {
    let h = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == 443 {
        h
    } else {
        format!("{h}:{port}")
    }
}

/// A parsed status line and header block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    version: String,
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

struct Parsed {
    head: Head,
    body: Vec<u8>,
    truncated: bool,
    unclean_close: bool,
}

/// How the body's end is found (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

async fn read_response<S>(s: &mut S, max_body: usize) -> Result<Parsed, HttpsError>
where
    S: tokio::io::AsyncRead + Unpin,
{
    // Chunk framing adds overhead; allow for it without letting it grow without bound.
    let raw_cap = MAX_HEAD
        .saturating_add(max_body.saturating_mul(2))
        .saturating_add(4096);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut eof = false;
    let mut unclean = false;
    let mut interim = 0usize;
    loop {
        // 1. The head.
        let (head, head_len) = loop {
            if let Some((head, len)) = parse_head(&buf)? {
                break (head, len);
            }
            if buf.len() > MAX_HEAD {
                return Err(HttpsError::Malformed(format!(
                    "status line and headers longer than {MAX_HEAD} octets"
                )));
            }
            if eof {
                return Err(HttpsError::Malformed(if buf.is_empty() {
                    "the server closed the connection without answering".to_owned()
                } else {
                    "the connection ended inside the response headers".to_owned()
                }));
            }
            read_more(s, &mut buf, &mut chunk, &mut eof, &mut unclean).await?;
        };
        if (100..200).contains(&head.status) {
            interim += 1;
            if interim > MAX_INTERIM {
                return Err(HttpsError::Malformed(format!(
                    "more than {MAX_INTERIM} interim (1xx) responses"
                )));
            }
            buf.drain(..head_len);
            continue;
        }
        let framing = framing(&head)?;
        // 2. The body.
        loop {
            let raw = buf.get(head_len..).unwrap_or_default();
            match framing {
                Framing::None => {
                    return Ok(Parsed {
                        head,
                        body: Vec::new(),
                        truncated: false,
                        unclean_close: false,
                    });
                }
                Framing::Length(n) => {
                    let want = usize::try_from(n).unwrap_or(usize::MAX);
                    if raw.len() >= want || raw.len() >= max_body {
                        let keep = want.min(max_body).min(raw.len());
                        return Ok(Parsed {
                            body: raw.get(..keep).unwrap_or_default().to_vec(),
                            truncated: want > max_body,
                            unclean_close: false,
                            head,
                        });
                    }
                    if eof {
                        return Err(HttpsError::Malformed(format!(
                            "the connection ended after {} of {n} body octets (Content-Length)",
                            raw.len()
                        )));
                    }
                }
                Framing::Chunked => match dechunk(raw, max_body)? {
                    Dechunked::Done(body, truncated) => {
                        return Ok(Parsed {
                            head,
                            body,
                            truncated,
                            unclean_close: false,
                        });
                    }
                    Dechunked::Incomplete => {
                        if eof {
                            return Err(HttpsError::Malformed(
                                "the connection ended inside the chunked body".to_owned(),
                            ));
                        }
                    }
                },
                Framing::UntilClose => {
                    if eof || raw.len() > max_body {
                        let keep = raw.len().min(max_body);
                        return Ok(Parsed {
                            body: raw.get(..keep).unwrap_or_default().to_vec(),
                            truncated: raw.len() > max_body,
                            unclean_close: eof && unclean,
                            head,
                        });
                    }
                }
            }
            if buf.len() > raw_cap {
                return Err(HttpsError::Malformed(format!(
                    "chunked body framing exceeds {raw_cap} octets"
                )));
            }
            read_more(s, &mut buf, &mut chunk, &mut eof, &mut unclean).await?;
        }
    }
}

async fn read_more<S>(
    s: &mut S,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    eof: &mut bool,
    unclean: &mut bool,
) -> Result<(), HttpsError>
where
    S: tokio::io::AsyncRead + Unpin,
{
    match s.read(chunk).await {
        Ok(0) => *eof = true,
        Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        // rustls reports a close without close_notify this way.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            *eof = true;
            *unclean = true;
        }
        Err(e) => return Err(HttpsError::Io(e.to_string())),
    }
    Ok(())
}

/// Parses the head once it is complete: `Ok(None)` while the blank line has not arrived.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpsError> {
    let end = match find_head_end(buf) {
        Some(e) => e,
        None => return Ok(None),
    };
    let text = buf.get(..end.0).unwrap_or_default();
    let text = std::str::from_utf8(text)
        .map_err(|_| HttpsError::Malformed("headers are not valid UTF-8".to_owned()))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpsError::Malformed(format!(
            "status line {:?} does not start with HTTP/1.1 or HTTP/1.0",
            clip(status_line)
        )));
    }
    let code = parts.next().unwrap_or_default();
    let status = match code.parse::<u16>() {
        Ok(c) if code.len() == 3 && (100..600).contains(&c) => c,
        _ => {
            return Err(HttpsError::Malformed(format!(
                "status line {:?} has no three-digit status code",
                clip(status_line)
            )));
        }
    };
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err(HttpsError::Malformed(
                "obsolete header line folding (RFC 9112 §5.2)".to_owned(),
            ));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpsError::Malformed(format!(
                "header line {:?} has no colon",
                clip(line)
            )));
        };
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(HttpsError::Malformed(format!(
                "header name {:?} is not a token",
                clip(name)
            )));
        }
        if headers.len() == MAX_HEADERS {
            return Err(HttpsError::Malformed(format!(
                "more than {MAX_HEADERS} header fields"
            )));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(Some((
        Head {
            version: version.to_owned(),
            status,
            reason,
            headers,
        },
        end.1,
    )))
}

/// Where the head ends: (length of the head without the blank line, length with it).
/// A bare LF line end is accepted (RFC 9112 §2.2 allows recipients to).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf.get(i) == Some(&b'\n') {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

fn framing(head: &Head) -> Result<Framing, HttpsError> {
    if head.status == 204 || head.status == 304 {
        return Ok(Framing::None);
    }
    let te: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if !te.is_empty() {
        if te.len() == 1
            && te
                .first()
                .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            return Ok(Framing::Chunked);
        }
        return Err(HttpsError::Malformed(format!(
            "unsupported Transfer-Encoding {:?} (only chunked is understood)",
            clip(&te.join(", "))
        )));
    }
    let mut length: Option<u64> = None;
    for (_, v) in head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        for part in v.split(',').map(str::trim) {
            let n =
                if !part.is_empty() && part.len() <= 19 && part.bytes().all(|b| b.is_ascii_digit())
                {
                    part.parse::<u64>().ok()
                } else {
                    None
                };
            let Some(n) = n else {
                return Err(HttpsError::Malformed(format!(
                    "Content-Length {:?} is not a number",
                    clip(v)
                )));
            };
            if length.is_some_and(|l| l != n) {
                return Err(HttpsError::Malformed(
                    "several different Content-Length values".to_owned(),
                ));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

enum Dechunked {
    Done(Vec<u8>, bool),
    Incomplete,
}

/// Decodes a chunked body (RFC 9112 §7.1) from `raw`, keeping at most `max_body` octets.
fn dechunk(raw: &[u8], max_body: usize) -> Result<Dechunked, HttpsError> {
    let mut body = Vec::new();
    let mut truncated = false;
    let mut pos = 0usize;
    loop {
        let Some(line_end) = find_lf(raw, pos) else {
            if raw.len() - pos > 1024 {
                return Err(HttpsError::Malformed("chunk size line too long".to_owned()));
            }
            return Ok(Dechunked::Incomplete);
        };
        let line = raw.get(pos..line_end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > 1024 {
            return Err(HttpsError::Malformed("chunk size line too long".to_owned()));
        }
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let size_text = std::str::from_utf8(size_text).unwrap_or_default().trim();
        if size_text.is_empty()
            || size_text.len() > 15
            || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(HttpsError::Malformed(format!(
                "chunk size {:?} is not a hexadecimal number",
                clip(&String::from_utf8_lossy(line))
            )));
        }
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpsError::Malformed("chunk size out of range".to_owned()))?;
        pos = line_end + 1;
        if size == 0 {
            // Trailer fields until an empty line; their content is ignored.
            loop {
                let Some(end) = find_lf(raw, pos) else {
                    return Ok(Dechunked::Incomplete);
                };
                let l = raw.get(pos..end).unwrap_or_default();
                pos = end + 1;
                if l.is_empty() || l == b"\r" {
                    return Ok(Dechunked::Done(body, truncated));
                }
            }
        }
        let data_end = pos.saturating_add(size);
        if raw.len() < data_end {
            if body.len().saturating_add(raw.len() - pos) > max_body {
                // Enough to know the body is too long: keep what fits.
                let room = max_body.saturating_sub(body.len());
                body.extend_from_slice(
                    raw.get(pos..pos + room.min(raw.len() - pos))
                        .unwrap_or_default(),
                );
                return Ok(Dechunked::Done(body, true));
            }
            return Ok(Dechunked::Incomplete);
        }
        let data = raw.get(pos..data_end).unwrap_or_default();
        let room = max_body.saturating_sub(body.len());
        if data.len() > room {
            body.extend_from_slice(data.get(..room).unwrap_or_default());
            truncated = true;
            return Ok(Dechunked::Done(body, truncated));
        }
        body.extend_from_slice(data);
        pos = data_end;
        match (raw.get(pos), raw.get(pos + 1)) {
            (Some(b'\r'), Some(b'\n')) => pos += 2,
            (Some(b'\n'), _) => pos += 1,
            (None, _) | (Some(b'\r'), None) => return Ok(Dechunked::Incomplete),
            _ => {
                return Err(HttpsError::Malformed(
                    "chunk data is not followed by CRLF".to_owned(),
                ));
            }
        }
    }
}

fn find_lf(raw: &[u8], from: usize) -> Option<usize> {
    raw.get(from..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8], max: usize) -> Result<Parsed, HttpsError> {
        let mut r: &[u8] = bytes;
        read_response(&mut r, max).await
    }

    #[tokio::test]
    async fn content_length_body() {
        let p = parse(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
            100,
        )
        .await
        .expect("parse");
        assert_eq!(p.head.status, 200);
        assert_eq!(p.body, b"hello");
        assert!(!p.truncated);
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let p = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nversi\r\n3\r\non:\r\n0\r\nX-T: 1\r\n\r\n",
            100,
        )
        .await;
        // "4" then "versi" is 5 octets: the framing is wrong and must be refused.
        assert!(p.is_err());
        let p = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nvers\r\n3\r\nion\r\n0\r\nX-T: 1\r\n\r\n",
            100,
        )
        .await
        .expect("parse");
        assert_eq!(p.body, b"version");
    }

    #[tokio::test]
    async fn until_close_and_caps() {
        let p = parse(b"HTTP/1.0 200 ok\nContent-type: text/plain\n\nabcdef", 4)
            .await
            .expect("parse");
        assert_eq!(p.body, b"abcd");
        assert!(p.truncated);
        assert_eq!(p.head.headers.len(), 1);
    }

    #[tokio::test]
    async fn interim_responses_are_skipped() {
        let p = parse(
            b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            10,
        )
        .await
        .expect("parse");
        assert_eq!(p.head.status, 404);
        assert!(p.body.is_empty());
    }

    #[tokio::test]
    async fn malformed_responses_are_refused() {
        for bad in [
            &b"SMTP/1.0 200 x\r\n\r\n"[..],
            b"HTTP/1.1 20 x\r\n\r\n",
            b"HTTP/1.1 200 x\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 x\r\nA: 1\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 x\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 x\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"",
            b"HTTP/1.1 200 x\r\nA: 1",
        ] {
            assert!(
                parse(bad, 100).await.is_err(),
                "{:?} should be refused",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn header_block_is_capped() {
        let mut big = b"HTTP/1.1 200 x\r\n".to_vec();
        while big.len() <= MAX_HEAD + 10 {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let e = parse(&big, 100).await.err().expect("refused");
        assert!(e.to_string().contains("header"), "{e}");
    }

    #[test]
    fn host_header_carries_non_default_port() {
        assert_eq!(host_header("mta-sts.example", 443), "mta-sts.example");
        assert_eq!(host_header("mta-sts.example", 8443), "mta-sts.example:8443");
    }
}
