//! A TLS connection whose handshake happens in its first reads and writes, so that the worker
//! sees it as what it is: a client that has not sent its first request yet. It is bounded by
//! `keepalive_timeout` like any client that sends nothing, let go first when a full worker
//! needs room, and closed at a graceful stop's drain: a client that never finishes its handshake
//! holds nothing longer than a silent one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client connection over TLS (`tls_cert`), inside a [`Connection`](crate::Connection).
pub struct TlsStream {
    state: State,
}

enum State {
    Handshaking(tokio_rustls::Accept<TcpStream>),
    Ready(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Failed,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Handshaking(_) => "handshaking",
            State::Ready(_) => "ready",
            State::Failed => "failed",
        };
        f.debug_struct("TlsStream").field("state", &state).finish()
    }
}

/// What the handshake settled: the name the client asked for (SNI), the application protocol
/// agreed (ALPN), the client's certificate chain (with `tls_client_ca`), and the version and
/// cipher suite.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub server_name: Option<String>,
    pub alpn: Option<Vec<u8>>,
    pub client_certificates: Vec<CertificateDer<'static>>,
    pub version: Option<String>,
    pub cipher_suite: Option<String>,
    /// Whether the client resumed an earlier session (a session ticket) instead of a full
    /// handshake.
    pub resumed: bool,
}

impl TlsStream {
    pub(crate) fn new(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> TlsStream {
        TlsStream { state: State::Handshaking(tokio_rustls::TlsAcceptor::from(config).accept(tcp)) }
    }

    /// The TCP stream under it.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match &self.state {
            State::Handshaking(accept) => accept.get_ref(),
            State::Ready(s) => Some(s.get_ref().0),
            State::Failed => None,
        }
    }

    /// What the handshake settled; `None` until it is done.
    pub fn info(&self) -> Option<TlsInfo> {
        let State::Ready(s) = &self.state else { return None };
        let conn = s.get_ref().1;
        Some(TlsInfo {
            server_name: conn.server_name().map(str::to_string),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            client_certificates: conn.peer_certificates().map(|c| c.iter().map(|c| c.clone().into_owned()).collect()).unwrap_or_default(),
            version: conn.protocol_version().map(|v| format!("{v:?}")),
            cipher_suite: conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())),
            resumed: matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
        })
    }

    /// Drives the handshake; `Ready(Ok(()))` once it is done.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Ready(_) => return Poll::Ready(Ok(())),
                State::Failed => return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed"))),
                State::Handshaking(accept) => match Pin::new(accept).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(stream)) => self.state = State::Ready(Box::new(stream)),
                    Poll::Ready(Err(e)) => {
                        self.state = State::Failed;
                        return Poll::Ready(Err(e));
                    }
                },
            }
        }
    }

    fn ready(&mut self) -> &mut tokio_rustls::server::TlsStream<TcpStream> {
        match &mut self.state {
            State::Ready(s) => s,
            // Only called after poll_handshake said Ready(Ok).
            _ => unreachable!("the handshake is done"),
        }
    }
}

use std::future::Future;

impl AsyncRead for TlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_handshake(cx))?;
        // A read of nothing only waits for the handshake (`Connection::tls`).
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        Pin::new(this.ready()).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_handshake(cx))?;
        Pin::new(this.ready()).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_handshake(cx))?;
        Pin::new(this.ready()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(s) => Pin::new(s.as_mut()).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            State::Handshaking(accept) => match accept.get_mut() {
                Some(tcp) => Pin::new(tcp).poll_shutdown(cx),
                None => Poll::Ready(Ok(())),
            },
            State::Failed => Poll::Ready(Ok(())),
        }
    }
}
