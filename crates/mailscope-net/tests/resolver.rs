//! The resolver builder's address and port plumbing, against a tiny UDP DNS responder on
//! loopback written here with hand-built answer bytes (a mock: the point is that queries
//! reach *our* address and port, not DNS semantics, which the real DNS server in the peer
//! suite covers).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mailscope_net::build_resolver;
use tokio::net::UdpSocket;

const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 25);

/// Answers every A query with one record (192.0.2.25, TTL 60) and anything else with an
/// empty NOERROR; counts the queries it saw.
async fn responder(bind: &str) -> Option<(SocketAddr, Arc<AtomicUsize>)> {
    let sock = UdpSocket::bind(bind).await.ok()?;
    let addr = sock.local_addr().ok()?;
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            counter.fetch_add(1, Ordering::SeqCst);
            if let Some(reply) = answer(&buf[..n]) {
                let _ = sock.send_to(&reply, from).await;
            }
        }
    });
    Some((addr, seen))
}

fn answer(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    // Walk the QNAME labels to find the end of the (single) question.
    let mut i = 12;
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = q.get(12..i + 4)?;
    let is_a = qtype == 1;
    let mut r = Vec::new();
    r.extend_from_slice(&q[0..2]); // id
    r.push(0x80 | (q[2] & 0x01)); // QR, opcode 0, RD copied
    r.push(0x80); // RA, RCODE 0
    r.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if is_a {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ANSWER.octets());
    }
    Some(r)
}

#[tokio::test]
async fn resolver_queries_the_given_address_and_port() {
    let (addr, seen) = responder("127.0.0.1:0")
        .await
        .expect("bind udp on 127.0.0.1");
    let resolver =
        build_resolver(Some(&addr.to_string()), Duration::from_secs(2)).expect("resolver");
    let lookup = resolver
        .lookup_ip("mail.example.test.")
        .await
        .expect("lookup through the responder");
    let ips: Vec<IpAddr> = lookup.iter().collect();
    assert_eq!(ips, vec![IpAddr::V4(ANSWER)]);
    assert!(seen.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn resolver_accepts_bracketed_ipv6_with_port() {
    let (addr, seen) = responder("[::1]:0")
        .await
        .expect("this test needs an IPv6 loopback (::1)");
    let text = format!("[::1]:{}", addr.port());
    let resolver = build_resolver(Some(&text), Duration::from_secs(2)).expect("resolver");
    let lookup = resolver
        .lookup_ip("mail.example.test.")
        .await
        .expect("lookup through the responder");
    assert_eq!(lookup.iter().collect::<Vec<_>>(), vec![IpAddr::V4(ANSWER)]);
    assert!(seen.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn resolver_address_errors_are_clear() {
    let e = build_resolver(Some("dns.example:53"), Duration::from_secs(1)).expect_err("a name");
    assert!(
        e.to_string().contains("must be given as an IP address"),
        "{e}"
    );
    // The system configuration either works or says which file it wanted.
    if let Err(e) = build_resolver(None, Duration::from_secs(1)) {
        assert!(e.to_string().contains("/etc/resolv.conf"), "{e}");
    }
}
