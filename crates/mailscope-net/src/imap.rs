//! The async driver for the IMAP client machine: connects, does implicit TLS or STARTTLS
//! when the machine asks, feeds every received byte to the machine and writes what it wants
//! sent. No IMAP is parsed here.

use std::time::{Duration, Instant};

use mailscope_proto::imap::client::{Client, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connect::connect_tcp;
use crate::error::TlsFailure;
use crate::smtp::{SessionError, now};
use crate::stream::MaybeTlsStream;
use crate::tls::{TlsClient, TlsReport};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ImapTarget {
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Implicit TLS from the first byte (port 993).
    pub implicit_tls: bool,
    /// Budget for the TCP connect and the TLS handshake.
    pub timeout: Duration,
}

/// What the driver tells the front end, in order.
#[derive(Debug)]
pub enum DriverEvent {
    /// The TCP connection is up.
    Connected {
        /// The server's address.
        peer: std::net::SocketAddr,
        /// Ours.
        local: std::net::SocketAddr,
        /// Microseconds the connect took.
        elapsed_us: u64,
    },
    /// A TLS handshake finished.
    TlsEstablished(Box<TlsReport>),
    /// A TLS handshake failed; the session is over.
    TlsFailed(Box<TlsFailure>),
    /// A machine event, with the number of transcript chunks recorded when it happened.
    Machine(usize, Event),
}

/// Runs one IMAP session to its end. Errors are only for what happens before the machine
/// can start (the TCP connect, the implicit-TLS handshake).
pub async fn run_imap_client(
    target: &ImapTarget,
    tls: &TlsClient,
    client: &mut Client,
    mut on_event: impl FnMut(&Client, DriverEvent),
) -> Result<(), SessionError> {
    let started = Instant::now();
    let connected = connect_tcp(&target.host, target.port, target.timeout).await?;
    on_event(
        client,
        DriverEvent::Connected {
            peer: connected.peer,
            local: connected.local,
            elapsed_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        },
    );
    client.set_peer_is_loopback(connected.peer.ip().is_loopback());
    let mut stream = MaybeTlsStream::Plain(connected.stream);
    if target.implicit_tls {
        match stream.upgrade(tls, &target.host, target.timeout).await {
            Ok((s, report)) => {
                stream = s;
                on_event(client, DriverEvent::TlsEstablished(Box::new(report)));
            }
            Err(e) => return Err(SessionError::ImplicitTls(Box::new(e))),
        }
    }
    client.start(now());
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut stream = Some(stream);
    loop {
        out.clear();
        while client.poll_transmit(&mut out) {}
        if let Some(s) = stream.as_mut().filter(|_| !out.is_empty()) {
            let written = async {
                s.write_all(&out).await?;
                s.flush().await
            };
            if tokio::time::timeout(target.timeout, written)
                .await
                .map_or(true, |r| r.is_err())
            {
                client.handle_eof(now());
            }
        }
        while let Some((pos, ev)) = client.poll_event_positioned() {
            let starttls = matches!(ev, Event::StartTlsRequested);
            on_event(client, DriverEvent::Machine(pos, ev));
            if starttls {
                let Some(plain) = stream.take() else { break };
                match plain.upgrade(tls, &target.host, target.timeout).await {
                    Ok((s, report)) => {
                        stream = Some(s);
                        on_event(client, DriverEvent::TlsEstablished(Box::new(report)));
                        client.handle_tls_established(now());
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        on_event(client, DriverEvent::TlsFailed(Box::new(e)));
                        client.handle_tls_failed(now(), &reason);
                    }
                }
            }
        }
        if client.has_pending_output() {
            continue;
        }
        if client.is_finished() {
            if let Some(s) = stream.as_mut() {
                let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
            }
            while let Some((pos, ev)) = client.poll_event_positioned() {
                on_event(client, DriverEvent::Machine(pos, ev));
            }
            return Ok(());
        }
        let Some(s) = stream.as_mut() else {
            client.handle_eof(now());
            continue;
        };
        let wait = client
            .poll_timeout()
            .map(|t| Duration::from_micros(t.0.saturating_sub(now().0)))
            .unwrap_or(target.timeout);
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => client.handle_eof(now()),
            Ok(Ok(n)) => client.handle_input(now(), &buf[..n]),
            Err(_) => client.handle_timeout(now()),
        }
    }
}
