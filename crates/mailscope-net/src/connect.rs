//! TCP connection set-up: parse what the user typed, resolve, try each address in order.
//!
//! Addresses are tried one after the other (no Happy Eyeballs racing) so the transcript can
//! say exactly which address answered and why the others did not; the whole attempt,
//! resolution included, shares one deadline.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::error::NetError;

/// An established TCP connection and what we learned while making it.
#[derive(Debug)]
pub struct Connected {
    /// The socket, ready for plain or TLS use.
    pub stream: TcpStream,
    /// The address that accepted.
    pub peer: SocketAddr,
    /// Our side of the connection.
    pub local: SocketAddr,
    /// Addresses tried before `peer`, with why each failed (for the transcript: a dead
    /// IPv6 address before a working IPv4 one is worth a note).
    pub failed_attempts: Vec<(SocketAddr, String)>,
}

/// Splits `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal (`::1`, several
/// colons, so no port) into host and port. The host comes back without brackets.
pub fn parse_server(s: &str, default_port: u16) -> Result<(String, u16), NetError> {
    let input = s.trim();
    let bad = |reason: &str| NetError::InvalidAddress {
        input: s.to_owned(),
        reason: reason.to_owned(),
    };
    if input.is_empty() {
        return Err(bad("empty host"));
    }
    if let Some(rest) = input.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(bad("missing ']' after an IPv6 address"));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address inside [ ]"));
        }
        let port = match after {
            "" => default_port,
            p => match p.strip_prefix(':') {
                Some(p) => parse_port(p).map_err(&bad)?,
                None => return Err(bad("unexpected text after ']'")),
            },
        };
        return Ok((inside.to_owned(), port));
    }
    match input.matches(':').count() {
        0 => Ok((input.to_owned(), default_port)),
        1 => {
            let (host, port) = input.split_once(':').ok_or_else(|| bad("missing port"))?;
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            Ok((host.to_owned(), parse_port(port).map_err(&bad)?))
        }
        _ => {
            if input.parse::<Ipv6Addr>().is_ok() {
                Ok((input.to_owned(), default_port))
            } else {
                Err(bad(
                    "not an IPv6 address; write [v6]:port to give a port with an IPv6 address",
                ))
            }
        }
    }
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    match p.parse::<u16>() {
        Ok(0) => Err("port 0 is not a port one can connect to"),
        Ok(n) => Ok(n),
        Err(_) => Err("port is not a number from 1 to 65535"),
    }
}

/// Resolves `host` (an IP literal, bracketed or not, or a name through the system resolver)
/// and connects to each address in order until one accepts, all within `timeout`.
///
/// Errors name the failure: `connection refused to 127.0.0.1:25`,
/// `timed out after 30s connecting to mail.example:25`, `no address for host x`.
pub async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<Connected, NetError> {
    connect_tcp_from(host, port, timeout, None).await
}

/// [`connect_tcp`] from a chosen local address (`--local-interface`: "does this relay's IP
/// pass?"). Addresses of the other family than `local` are skipped.
pub async fn connect_tcp_from(
    host: &str,
    port: u16,
    timeout: Duration,
    local: Option<SocketAddr>,
) -> Result<Connected, NetError> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let target = match host.parse::<Ipv6Addr>() {
        Ok(_) => format!("[{host}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    };
    let deadline = Instant::now() + timeout;
    let timed_out = || NetError::Timeout {
        target: target.clone(),
        after: timeout,
    };

    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host, port));
            match tokio::time::timeout_at(deadline, lookup).await {
                Err(_) => return Err(timed_out()),
                Ok(Err(source)) => {
                    return Err(NetError::Resolve {
                        host: host.to_owned(),
                        source,
                    });
                }
                Ok(Ok(iter)) => iter.collect(),
            }
        }
    };
    if addrs.is_empty() {
        return Err(NetError::NoAddress {
            host: host.to_owned(),
        });
    }

    let addrs: Vec<SocketAddr> = match local {
        Some(l) => addrs
            .into_iter()
            .filter(|a| a.is_ipv4() == l.is_ipv4())
            .collect(),
        None => addrs,
    };
    if addrs.is_empty() {
        return Err(NetError::NoAddress {
            host: format!("{host} (none of the family of the local address)"),
        });
    }
    let mut failed: Vec<(SocketAddr, NetError)> = Vec::new();
    for addr in &addrs {
        let attempt = async {
            match local {
                None => TcpStream::connect(addr).await,
                Some(l) => {
                    let socket = if l.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    socket.bind(l).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot bind local address {l}: {e}"))
                    })?;
                    socket.connect(*addr).await
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Err(_) => {
                // The shared budget is gone; later addresses get no chance either.
                return Err(if failed.is_empty() {
                    timed_out()
                } else {
                    failed.push((*addr, timed_out()));
                    all_failed(target, failed)
                });
            }
            Ok(Ok(stream)) => {
                let peer = stream.peer_addr().unwrap_or(*addr);
                let local = stream.local_addr().map_err(|source| NetError::Connect {
                    addr: *addr,
                    source,
                })?;
                return Ok(Connected {
                    stream,
                    peer,
                    local,
                    failed_attempts: failed
                        .into_iter()
                        .map(|(a, e)| (a, e.to_string()))
                        .collect(),
                });
            }
            Ok(Err(source)) => failed.push((*addr, connect_error(*addr, source))),
        }
    }
    Err(all_failed(target, failed))
}

fn connect_error(addr: SocketAddr, source: io::Error) -> NetError {
    if source.kind() == io::ErrorKind::ConnectionRefused {
        NetError::Refused { addr }
    } else {
        NetError::Connect { addr, source }
    }
}

/// One failed address keeps its own precise error; several are listed together.
fn all_failed(target: String, mut failed: Vec<(SocketAddr, NetError)>) -> NetError {
    if failed.len() == 1
        && let Some((_, e)) = failed.pop()
    {
        return e;
    }
    NetError::AllAttemptsFailed {
        target,
        attempts: failed
            .into_iter()
            .map(|(a, e)| (a, short_reason(&e)))
            .collect(),
    }
}

/// The per-address reason without repeating the address, for the combined message.
fn short_reason(e: &NetError) -> String {
    match e {
        NetError::Refused { .. } => "connection refused".to_owned(),
        NetError::Connect { source, .. } => source.to_string(),
        NetError::Timeout { .. } => "timed out".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, u16) {
        parse_server(s, 25).expect("should parse")
    }

    #[test]
    fn server_forms() {
        assert_eq!(ok("mail.example"), ("mail.example".into(), 25));
        assert_eq!(ok("mail.example:587"), ("mail.example".into(), 587));
        assert_eq!(ok("192.0.2.1:2525"), ("192.0.2.1".into(), 2525));
        assert_eq!(ok("[::1]:2525"), ("::1".into(), 2525));
        assert_eq!(ok("[2001:db8::1]"), ("2001:db8::1".into(), 25));
        assert_eq!(ok("::1"), ("::1".into(), 25));
        assert_eq!(ok("2001:db8::25"), ("2001:db8::25".into(), 25));
    }

    #[test]
    fn server_errors() {
        for bad in [
            "",
            ":25",
            "host:",
            "host:0",
            "host:70000",
            "host:smtp",
            "[::1",
            "[::1]x",
            "[nothost]:25",
            "a:b:c",
        ] {
            assert!(parse_server(bad, 25).is_err(), "{bad:?} should not parse");
        }
    }
}
