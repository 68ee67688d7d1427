//! The one DNS resolver builder: every look-up in mailscope (MX, SPF, DKIM, DNSBL, TLSA, …)
//! goes through a resolver made here, so `--resolver ADDR[:PORT]` means the same everywhere.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::connect::parse_server;
use crate::error::NetError;

/// Parses a `--resolver` value: `ADDR` or `ADDR:PORT`, IPv6 as `[::1]:5353` (a bare `::1`
/// means port 53). The address must be an IP: resolving the resolver's name would need a
/// resolver.
pub fn parse_resolver_addr(s: &str) -> Result<SocketAddr, NetError> {
    let (host, port) = parse_server(s, 53)?;
    let ip = host
        .parse::<IpAddr>()
        .map_err(|_| NetError::InvalidAddress {
            input: s.to_owned(),
            reason: "a resolver must be given as an IP address, not a name".to_owned(),
        })?;
    Ok(SocketAddr::new(ip, port))
}

/// Builds the resolver.
///
/// With `server`, queries go only to that address, over UDP with TCP for truncated answers,
/// and `/etc/hosts` is not consulted (the user asked what *that server* says). Without it,
/// the system configuration (`/etc/resolv.conf`) is used; an unreadable file or one without
/// a name server is an error that says so. `timeout` bounds each query attempt.
pub fn build_resolver(server: Option<&str>, timeout: Duration) -> Result<TokioResolver, NetError> {
    let builder = match server {
        Some(s) => {
            let addr = parse_resolver_addr(s)?;
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
            let mut opts = ResolverOpts::default();
            opts.timeout = timeout;
            opts.use_hosts_file = ResolveHosts::Never;
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(opts)
        }
        None => {
            let mut builder = TokioResolver::builder_tokio()
                .map_err(|e| NetError::SystemResolverConfig(e.to_string()))?;
            builder.options_mut().timeout = timeout;
            builder
        }
    };
    builder
        .build()
        .map_err(|e| NetError::Resolver(e.to_string()))
}

/// Where mail for a domain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRoutes {
    /// MX hosts with their preference, best first; or the domain itself for an implicit MX.
    pub hosts: Vec<(u16, String)>,
    /// The domain has no MX record and mail goes to its own address (RFC 5321 §5.1).
    pub implicit: bool,
}

/// Where mail for `domain` goes (RFC 5321 §5.1): its MX hosts by preference, or, when the
/// domain has no MX but has an address, the domain itself (the implicit MX). A null MX
/// (RFC 7505, `MX 0 .`) and a domain that does not exist are errors that say so.
pub async fn mail_routes(resolver: &TokioResolver, domain: &str) -> Result<MailRoutes, NetError> {
    use hickory_resolver::proto::rr::RData;
    match resolver.mx_lookup(domain).await {
        Ok(lookup) => {
            let mut mx: Vec<(u16, String)> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(m) => Some((
                        m.preference,
                        m.exchange.to_utf8().trim_end_matches('.').to_owned(),
                    )),
                    _ => None,
                })
                .collect();
            if mx.iter().any(|(_, h)| h.is_empty()) {
                return Err(NetError::Dns(format!(
                    "{domain} has a null MX (RFC 7505): it accepts no mail"
                )));
            }
            mx.sort();
            if !mx.is_empty() {
                return Ok(MailRoutes {
                    hosts: mx,
                    implicit: false,
                });
            }
        }
        Err(e) if e.is_nx_domain() => {
            return Err(NetError::Dns(format!("{domain} does not exist (NXDOMAIN)")));
        }
        Err(e) if e.is_no_records_found() => {}
        Err(e) => {
            return Err(NetError::Dns(format!(
                "MX look-up for {domain} failed: {e}"
            )));
        }
    }
    // No MX: the implicit MX is the domain itself, if it has an address.
    match resolver.lookup_ip(domain).await {
        Ok(ips) if ips.iter().next().is_some() => Ok(MailRoutes {
            hosts: vec![(0, domain.to_owned())],
            implicit: true,
        }),
        Ok(_) => Err(NetError::Dns(format!(
            "{domain} has no MX and no address: it accepts no mail"
        ))),
        Err(e) if e.is_no_records_found() => Err(NetError::Dns(format!(
            "{domain} has no MX and no address: it accepts no mail"
        ))),
        Err(e) => Err(NetError::Dns(format!(
            "address look-up for {domain} failed: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_addresses() {
        let p = |s: &str| parse_resolver_addr(s).expect("parses");
        assert_eq!(p("127.0.0.1"), "127.0.0.1:53".parse().expect("lit"));
        assert_eq!(p("127.0.0.1:5353"), "127.0.0.1:5353".parse().expect("lit"));
        assert_eq!(p("[::1]:5353"), "[::1]:5353".parse().expect("lit"));
        assert_eq!(p("::1"), "[::1]:53".parse().expect("lit"));
        assert!(parse_resolver_addr("dns.example").is_err());
        assert!(parse_resolver_addr("127.0.0.1:0").is_err());
    }
}
