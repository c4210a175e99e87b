//! One accepted connection, as an async handler receives it.

use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::stop::{Slot, Stop};

/// A client connection, served by an `async fn(daemon::Connection)` handler.
///
/// It reads and writes like a [`tokio::net::TcpStream`] (it implements `AsyncRead` and
/// `AsyncWrite`, and derefs to the stream), and it knows whether its worker has been asked to
/// stop. A handler that loops over keep-alive requests should wait for the next request with
/// [`Connection::read_or_stop`] (or check [`Connection::is_stopping`] between requests), so that
/// a graceful stop (QUIT, recycling, retirement) finishes the request in hand but does not wait
/// for an idle client.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    stop: Arc<Stop>,
    /// Where a read waiting between requests leaves its waker for the stop.
    slot: Arc<Slot>,
    /// A copy of the waker left in `slot`: the same task parks again without touching the slot.
    parked: Option<Waker>,
    /// Whether a read has returned data yet: a connection accepted before a stop gets its first
    /// request read and served, whatever the stop.
    has_read: bool,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, stop: Arc<Stop>) -> Self {
        let slot = stop.slot();
        Connection { stream, peer, stop, slot, parked: None, has_read: false }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the worker has been asked to stop gracefully: finish the request in hand, then
    /// return.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_raised()
    }

    /// A future that completes when the worker is asked to stop gracefully (at once if it
    /// already was). It borrows nothing, so it can be raced against reads and writes on this
    /// connection, or moved into another task.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.stop.raised()
    }

    /// Reads into `buf` like [`tokio::io::AsyncReadExt::read`], unless the worker is asked to stop
    /// gracefully while the connection is idle between requests: then `Ok(None)`. The way to wait
    /// for the next request on a keep-alive connection.
    ///
    /// The first read of a connection is never given up: the worker accepted it, so its request
    /// is served (a stop is bounded by `graceful_timeout`). Data that has already arrived is read
    /// even when a stop is pending.
    pub async fn read_or_stop(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let read = std::future::poll_fn(|cx| {
            let mut out = ReadBuf::new(&mut *buf);
            // The read first: data that has arrived is served, stop or not.
            if let Poll::Ready(done) = Pin::new(&mut self.stream).poll_read(cx, &mut out) {
                return Poll::Ready(done.map(|()| Some(out.filled().len())));
            }
            if !self.has_read {
                return Poll::Pending;
            }
            // Only the stop takes a waker out of the slot, so while ours is the same, the slot
            // still holds it, or the stop has been raised and the check below sees it.
            if !self.parked.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                self.slot.park(cx.waker());
                self.parked = Some(cx.waker().clone());
            }
            if self.stop.is_raised() {
                return Poll::Ready(Ok(None));
            }
            Poll::Pending
        })
        .await;
        if matches!(read, Ok(Some(n)) if n > 0) {
            self.has_read = true;
        }
        read
    }

    /// The underlying stream.
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

impl Deref for Connection {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.stream
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
