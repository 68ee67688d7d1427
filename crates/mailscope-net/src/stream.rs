//! A TCP stream that is plain now and may become TLS later (STARTTLS), behind one type so
//! drivers read and write without caring which.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::TlsFailure;
use crate::tls::{TlsClient, TlsReport};

/// Plain TCP or client-side TLS over TCP.
#[derive(Debug)]
pub enum MaybeTlsStream {
    /// Before STARTTLS, or a session without TLS.
    Plain(TcpStream),
    /// Implicit TLS or after STARTTLS. Boxed: the TLS state is large.
    Tls(Box<TlsStream<TcpStream>>),
}

impl MaybeTlsStream {
    /// Whether bytes are protected by TLS (the transcript's `~>`/`<~` arrows).
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTlsStream::Tls(_))
    }

    /// The TCP socket underneath (addresses, socket options).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(s) => s,
            MaybeTlsStream::Tls(s) => s.get_ref().0,
        }
    }

    /// The rustls connection, for channel binding (`export_keying_material`) and later
    /// inspection.
    pub fn tls_connection(&self) -> Option<&ClientConnection> {
        match self {
            MaybeTlsStream::Plain(_) => None,
            MaybeTlsStream::Tls(s) => Some(s.get_ref().1),
        }
    }

    /// STARTTLS: runs the client handshake on the plain stream and returns the TLS stream.
    ///
    /// The caller must throw away whatever it has read ahead from the plain stream *before*
    /// calling this: bytes that arrived after the server's go-ahead reply were sent in clear
    /// and must never be treated as if they came through TLS (the STARTTLS command-injection
    /// class of bugs, CVE-2011-0411 and friends). Report them, then discard them.
    ///
    /// Fails with [`TlsFailure::AlreadyTls`] (dropping the stream) if TLS is already on.
    pub async fn upgrade(
        self,
        client: &TlsClient,
        server_name: &str,
        timeout: Duration,
    ) -> Result<(MaybeTlsStream, TlsReport), TlsFailure> {
        match self {
            MaybeTlsStream::Tls(_) => Err(TlsFailure::AlreadyTls),
            MaybeTlsStream::Plain(tcp) => {
                let (tls, report) = client.handshake(tcp, server_name, timeout).await?;
                Ok((MaybeTlsStream::Tls(Box::new(tls)), report))
            }
        }
    }
}

impl From<TcpStream> for MaybeTlsStream {
    fn from(s: TcpStream) -> Self {
        MaybeTlsStream::Plain(s)
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            MaybeTlsStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
