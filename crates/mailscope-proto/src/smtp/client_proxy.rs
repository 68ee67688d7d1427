//! PROXY protocol headers, versions 1 (text) and 2 (binary), as HAProxy's
//! `doc/proxy-protocol.txt` defines them. The driver writes one before the first SMTP byte
//! (swaks' `--proxy`), so a server behind a proxy (Postfix `smtpd_upstream_proxy_protocol`,
//! Exim `hosts_proxy`) sees `src` as the client; [`crate::smtp::client::Client::send_preamble`]
//! records it in the transcript.
//!
//! Pure encoders: the addresses are the caller's (the real connection's, or made up for a
//! test), nothing is looked up.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The 12-octet signature that starts every version 2 header (§2.2).
pub const PROXY_V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Both addresses in one family: the spec's header carries one family, so when one side is
/// IPv4 and the other IPv6, the IPv4 one is written as an IPv4-mapped IPv6 address.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (IpAddr, IpAddr) {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V6(d)) => (IpAddr::V6(s.to_ipv6_mapped()), IpAddr::V6(d)),
        (IpAddr::V6(s), IpAddr::V4(d)) => (IpAddr::V6(s), IpAddr::V6(d.to_ipv6_mapped())),
        (s, d) => (s, d),
    }
}

/// IPv6 in the spec's text form: groups of hex digits, the longest run (two or more) of zero
/// groups as `::`. Unlike `Ipv6Addr`'s `Display`, never the dotted IPv4 tail that some
/// receivers would not parse.
fn ipv6_text(a: Ipv6Addr) -> String {
    let g = a.segments();
    let (mut best, mut best_len, mut i) = (0usize, 0usize, 0usize);
    while i < 8 {
        if g[i] == 0 {
            let start = i;
            while i < 8 && g[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    let hex = |r: &[u16]| {
        r.iter()
            .map(|x| format!("{x:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best_len < 2 {
        return hex(&g);
    }
    format!("{}::{}", hex(&g[..best]), hex(&g[best + best_len..]))
}

/// A version 1 header (§2.1): `PROXY TCP4|TCP6 src dst sport dport\r\n`.
pub fn encode_proxy_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let line = match same_family(src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => format!("PROXY TCP4 {s} {d}"),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            format!("PROXY TCP6 {} {}", ipv6_text(s), ipv6_text(d))
        }
        // `same_family` never returns mixed families.
        _ => "PROXY UNKNOWN".to_string(),
    };
    format!("{line} {} {}\r\n", src.port(), dst.port()).into_bytes()
}

/// The version 1 header for a connection whose endpoints cannot be given (§2.1, short form).
pub fn encode_proxy_v1_unknown() -> Vec<u8> {
    b"PROXY UNKNOWN\r\n".to_vec()
}

/// A version 2 header (§2.2) with the PROXY command for a TCP connection: signature,
/// `\x21` (version 2, PROXY), `\x11` (TCP over IPv4) or `\x21` (TCP over IPv6), the address
/// block length, then source and destination addresses and ports in network byte order.
pub fn encode_proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&PROXY_V2_SIGNATURE);
    out.push(0x21);
    let mut block = Vec::with_capacity(36);
    let family = match same_family(src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x21
        }
        _ => 0x00,
    };
    block.extend_from_slice(&src.port().to_be_bytes());
    block.extend_from_slice(&dst.port().to_be_bytes());
    out.push(family);
    // At most 36 octets: always fits the 16-bit length.
    out.extend_from_slice(&u16::try_from(block.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

/// A version 2 header with the LOCAL command (§2.2: a connection the proxy made on its own,
/// e.g. a health check): family UNSPEC and no address block.
pub fn encode_proxy_v2_local() -> Vec<u8> {
    let mut out = PROXY_V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn v1_matches_the_spec_example() {
        // proxy-protocol.txt §2.1: "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".
        assert_eq!(
            encode_proxy_v1(sa("192.168.0.1:56324"), sa("192.168.0.11:443")),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
        assert_eq!(encode_proxy_v1_unknown(), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v1_worst_cases_fit_the_spec_lengths() {
        // §2.1: at most 56 characters for TCP4 and 104 for TCP6, CRLF included.
        let v4 = encode_proxy_v1(sa("255.255.255.255:65535"), sa("255.255.255.255:65535"));
        assert_eq!(
            v4,
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        );
        assert_eq!(v4.len(), 56);
        let max = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        let v6 = encode_proxy_v1(sa(max), sa(max));
        assert_eq!(v6.len(), 104);
        assert_eq!(
            encode_proxy_v1(sa("[2001:db8::1]:56324"), sa("[2001:db8::11]:25")),
            b"PROXY TCP6 2001:db8::1 2001:db8::11 56324 25\r\n"
        );
        // Mixed families: IPv4 as IPv4-mapped IPv6, in hex groups (no dotted tail).
        assert_eq!(
            encode_proxy_v1(sa("192.0.2.1:1024"), sa("[2001:db8::25]:25")),
            b"PROXY TCP6 ::ffff:c000:201 2001:db8::25 1024 25\r\n"
        );
    }

    #[test]
    fn ipv6_text_compresses_the_longest_zero_run_only() {
        let t = |s: &str| ipv6_text(s.parse().unwrap_or(Ipv6Addr::UNSPECIFIED));
        assert_eq!(t("::"), "::");
        assert_eq!(t("::1"), "::1");
        assert_eq!(t("1::"), "1::");
        assert_eq!(t("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(t("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
    }

    #[test]
    fn v2_tcp4_layout_follows_section_2_2() {
        let h = encode_proxy_v2(sa("192.168.0.1:56324"), sa("192.168.0.11:443"));
        let want: Vec<u8> = [
            &PROXY_V2_SIGNATURE[..],
            &[0x21, 0x11, 0x00, 0x0C],
            &[192, 168, 0, 1, 192, 168, 0, 11],
            &56324u16.to_be_bytes(),
            &443u16.to_be_bytes(),
        ]
        .concat();
        assert_eq!(h, want);
        assert_eq!(h.len(), 16 + 12);
        assert_eq!(
            &h[..12],
            b"\r\n\r\n\x00\r\nQUIT\n",
            "the signature as the spec spells it"
        );
    }

    #[test]
    fn v2_tcp6_and_local() {
        let h = encode_proxy_v2(sa("[2001:db8::1]:1234"), sa("[2001:db8::2]:25"));
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 0x24]);
        assert_eq!(h.len(), 16 + 36);
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(&h[16..32], &src.octets());
        assert_eq!(&h[48..], &[0x04, 0xD2, 0x00, 0x19]);
        let l = encode_proxy_v2_local();
        assert_eq!(&l[12..], &[0x20, 0x00, 0x00, 0x00]);
    }
}
