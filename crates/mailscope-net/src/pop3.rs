//! The async driver for the POP3 client machine: connects, does implicit TLS (995) or STLS
//! when the machine asks, feeds every received byte to the machine and writes what it
//! wants sent. No POP3 is parsed here; the machine owns the protocol.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailscope_proto::pop3::client::{Client, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connect::connect_tcp_from;
use crate::error::TlsFailure;
use crate::stream::MaybeTlsStream;
use crate::tls::{TlsClient, TlsReport};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Pop3Target {
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Implicit TLS from the first byte.
    pub implicit_tls: bool,
    /// Budget for the TCP connect and for the TLS handshake.
    pub timeout: Duration,
}

/// What the driver tells the front end, in order.
#[derive(Debug)]
pub enum DriverEvent {
    /// The TCP connection is up.
    Connected {
        /// The server's address.
        peer: SocketAddr,
        /// Ours.
        local: SocketAddr,
        /// Microseconds the connect took.
        elapsed_us: u64,
        /// Addresses that failed before this one, with why.
        failed_attempts: Vec<(SocketAddr, String)>,
    },
    /// A TLS handshake finished (implicit or STARTTLS).
    TlsEstablished(Box<TlsReport>),
    /// A TLS handshake failed; the session is over.
    TlsFailed(Box<TlsFailure>),
    /// Something the machine reported, with the number of transcript chunks recorded when
    /// it happened.
    Machine(usize, Event),
}

pub use crate::smtp::{SessionError, now};

/// Runs one POP3 session to its end. `on_event` sees every driver and machine event, with
/// the machine (for its transcript) as it is right after the event.
///
/// Errors are only for what happens before the machine can start (the TCP connect, the
/// implicit-TLS handshake); everything later is an outcome the machine reports.
pub async fn run_pop3_client(
    target: &Pop3Target,
    tls: &TlsClient,
    client: &mut Client,
    mut on_event: impl FnMut(&Client, DriverEvent),
) -> Result<(), SessionError> {
    let started = Instant::now();
    let connected = connect_tcp_from(&target.host, target.port, target.timeout, None).await?;
    on_event(
        client,
        DriverEvent::Connected {
            peer: connected.peer,
            local: connected.local,
            elapsed_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            failed_attempts: connected.failed_attempts,
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
        // 1. Write what the machine wants sent.
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
        // 2. Hand events to the front end; STLS is the one the driver acts on.
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
        // The TLS handshake (or a failure) may have queued bytes and events: go round again
        // before waiting for the server.
        if client.has_pending_output() {
            continue;
        }
        if client.is_finished() {
            // Drain what the machine queued last (nothing, normally) and leave.
            out.clear();
            while client.poll_transmit(&mut out) {}
            if let Some(s) = stream.as_mut() {
                if !out.is_empty() {
                    let _ = s.write_all(&out).await;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
            }
            while let Some((pos, ev)) = client.poll_event_positioned() {
                on_event(client, DriverEvent::Machine(pos, ev));
            }
            return Ok(());
        }
        // 3. Wait for bytes or the machine's deadline.
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
