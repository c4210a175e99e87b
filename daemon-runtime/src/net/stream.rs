//! A connection's stream, TCP or Unix: blocking for a plain handler, async for a `Connection`.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Peer;

/// A client connection as a plain (blocking) `on_accept` handler takes it,
/// `fn(daemon::net::Stream) -> std::io::Result<()>`: whichever kind of socket it came through.
/// A handler that takes a `std::net::TcpStream` instead serves TCP listeners only.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

/// Calls the same method on whichever stream it is.
macro_rules! either {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Stream::Tcp($s) => $e,
            Stream::Unix($s) => $e,
        }
    };
}

impl Stream {
    /// A connection just accepted (`fd`, of the kind its listener is).
    pub(crate) fn from_accepted(fd: OwnedFd, unix: bool) -> Stream {
        if unix {
            Stream::Unix(fd.into())
        } else {
            Stream::Tcp(fd.into())
        }
    }

    /// Who connected (`None` if the client is already gone).
    pub fn peer(&self) -> Option<Peer> {
        Peer::of(self.as_fd())
    }

    /// Limits each read to `timeout` (the worker sets `idle_timeout` here before the handler runs).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(self, s => s.set_read_timeout(timeout))
    }

    /// Limits each write to `timeout`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(self, s => s.set_write_timeout(timeout))
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        either!(self, s => s.set_nonblocking(nonblocking))
    }

    /// Shuts down reading, writing or both.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        either!(self, s => s.shutdown(how))
    }

    /// The TCP stream, if it is one.
    pub fn tcp(&self) -> Option<&std::net::TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Unix(_) => None,
        }
    }

    /// The Unix stream, if it is one.
    pub fn unix(&self) -> Option<&std::os::unix::net::UnixStream> {
        match self {
            Stream::Tcp(_) => None,
            Stream::Unix(s) => Some(s),
        }
    }

    /// The same connection for tokio (it must be non-blocking already): over TLS, if TLS is on
    /// (`tls_cert`) and it came through a TCP listener.
    pub(crate) fn into_async(self) -> io::Result<AsyncStream> {
        Ok(match self {
            Stream::Tcp(s) => {
                let tcp = tokio::net::TcpStream::from_std(s)?;
                #[cfg(feature = "tls")]
                if let Some(config) = crate::tls::current() {
                    return Ok(AsyncStream::Tls(crate::tls::TlsStream::new(tcp, config)));
                }
                AsyncStream::Tcp(tcp)
            }
            Stream::Unix(s) => AsyncStream::Unix(tokio::net::UnixStream::from_std(s)?),
        })
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        either!(self, s => s.as_fd())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(self, s => s.read(buf))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        either!(self, s => s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        either!(self, s => s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        either!(self, s => s.flush())
    }
}

/// A client connection's stream on the worker's tokio runtime, inside a
/// [`Connection`](crate::Connection): TCP, Unix, or TLS over TCP (with the `tls` feature and
/// `tls_cert`).
#[derive(Debug)]
#[non_exhaustive]
pub enum AsyncStream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
    #[cfg(feature = "tls")]
    Tls(crate::tls::TlsStream),
}

macro_rules! either_async {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            AsyncStream::Tcp($s) => $e,
            AsyncStream::Unix($s) => $e,
            #[cfg(feature = "tls")]
            AsyncStream::Tls($s) => $e,
        }
    };
}

impl AsyncStream {
    /// The TCP stream, if it is one, or the one under TLS (for its socket options: `nodelay()`,
    /// `set_linger()`...).
    pub fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        match self {
            AsyncStream::Tcp(s) => Some(s),
            AsyncStream::Unix(_) => None,
            #[cfg(feature = "tls")]
            AsyncStream::Tls(s) => s.tcp(),
        }
    }

    /// The Unix stream, if it is one.
    pub fn unix(&self) -> Option<&tokio::net::UnixStream> {
        match self {
            AsyncStream::Unix(s) => Some(s),
            _ => None,
        }
    }

    /// The TLS stream, if the connection is one.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&crate::tls::TlsStream> {
        match self {
            AsyncStream::Tls(s) => Some(s),
            _ => None,
        }
    }
}

impl AsyncRead for AsyncStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        either_async!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for AsyncStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        either_async!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        either_async!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        either_async!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either_async!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either_async!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}
