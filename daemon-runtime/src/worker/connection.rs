//! One accepted connection, as an async handler receives it.

use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::{AsyncStream, Peer, PeerCred};

use super::stop::Slot;
use crate::scoreboard::Outcome;
use super::track::{Tracked, Tracker};

/// A client connection, served by an `async fn(daemon::Connection)` handler.
///
/// It reads and writes like a [`tokio::net::TcpStream`] (it implements `AsyncRead` and
/// `AsyncWrite`, and derefs to the [`AsyncStream`], TCP or Unix, whichever the listener is),
/// and it knows whether its worker has been asked to stop. A handler that loops over keep-alive requests should wait for the next request with
/// [`Connection::read_or_stop`] (or check [`Connection::is_stopping`] between requests), so that
/// a graceful stop (QUIT, recycling, retirement) finishes the request in hand but does not wait
/// for an idle client.
///
/// `read_or_stop` is also where the worker learns where one request ends and the next begins:
/// `request_timeout` bounds the time from a request's first bytes (or the connection's start) to
/// the handler's next `read_or_stop`, `keepalive_timeout` the wait for the next request, and
/// `idle_timeout` any other wait for the client. A handler that never calls it serves one
/// request per connection, as far as those limits are concerned.
#[derive(Debug)]
pub struct Connection {
    stream: AsyncStream,
    peer: Peer,
    tracker: Arc<Tracker>,
    tracked: Arc<Tracked>,
    /// Where a read waiting between requests leaves its waker for the stop.
    slot: Arc<Slot>,
    /// A copy of the waker left in `slot`: the same task parks again without touching the slot.
    parked: Option<Waker>,
    /// Whether a read has returned data yet: a connection accepted before a stop gets its first
    /// request read and served, whatever the stop.
    has_read: bool,
}

/// What a read of a connection waits for, which decides what else than data ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The connection's first request: the drain's end, or a let-go. A client that connects and
    /// sends nothing is an idle client like a kept-alive one: `keepalive_timeout` bounds the
    /// wait, and a full worker of a saturated pool may let it go for a new client.
    First,
    /// The next request on a keep-alive connection: the drain's end, or a let-go.
    Between,
    /// The rest of a request (its body), or a read the handler makes on its own: only data.
    InRequest,
}

/// Marks the end of a wait for the client, however the wait ends (data, a stop, or the future
/// dropped by a `select!`).
struct Waiting<'a>(&'a mut Connection);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.tracked.waited(&self.0.tracker);
    }
}

impl Connection {
    pub(crate) fn new(stream: AsyncStream, peer: Peer, tracker: Arc<Tracker>, tracked: Arc<Tracked>, slot: Arc<Slot>) -> Self {
        Connection { stream, peer, tracker, tracked, slot, parked: None, has_read: false }
    }

    /// Who connected: a TCP client's address, or a Unix socket client's credentials.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// The TCP client's address; `None` on a Unix socket.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.addr()
    }

    /// The credentials (pid, uid, gid) of the process that connected to a Unix socket, as the
    /// kernel took them at `connect(2)` (`SO_PEERCRED`); `None` on TCP. A handler may decide
    /// by them whom it serves.
    pub fn peer_cred(&self) -> Option<PeerCred> {
        self.peer.cred()
    }

    /// Whether the worker has been asked to stop gracefully: finish the request in hand, then
    /// return.
    pub fn is_stopping(&self) -> bool {
        self.tracker.stop.is_raised()
    }

    /// A future that completes when the worker is asked to stop gracefully (at once if it
    /// already was). It borrows nothing, so it can be raced against reads and writes on this
    /// connection, or moved into another task.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.tracker.stop.raised()
    }

    /// Marks the request in hand long (POE's `update_status('long')`; the worker's scoreboard
    /// letter becomes `l`): it is judged by `long_request_timeout` instead of `request_timeout`,
    /// until the handler waits for its next request.
    pub fn long(&self) {
        self.tracked.mark_long();
        if let Some(slot) = super::current::current() {
            slot.set_long(true);
        }
    }

    /// The `T` this worker's `on_child` hook returned (a database handle, a router), built
    /// once after fork and kept for the worker's life: [`daemon::state`](crate::state).
    pub fn state<T: 'static>(&self) -> Option<&'static T> {
        super::state::state::<T>()
    }

    /// Says what this request is (`GET /report`), for the log line of a verdict against the
    /// worker (a hang, a deadline): the scoreboard keeps the last one described.
    pub fn describe_request(&self, what: &str) {
        if let Some(slot) = super::current::current() {
            slot.describe_request(what);
        }
    }

    /// Reads into `buf` like [`tokio::io::AsyncReadExt::read`], unless the worker is stopping
    /// gracefully and the connection stays idle between requests: then `Ok(None)`. The way to
    /// wait for the next request on a keep-alive connection. A stop does not end the wait at
    /// once: for `drain_timeout` (1 s) the next request is still read, and should be answered
    /// with `Connection: close` ([`Connection::is_stopping`] is true by then), so a client that
    /// sent it as the stop came is served, not cut off. It also returns `Ok(None)` when this
    /// connection alone is let go: it waited longer than `keepalive_timeout`, or its worker is
    /// full and needs its place for a new client.
    ///
    /// The first read of a connection waits through the drain too: the worker accepted it, so a
    /// request that comes within `drain_timeout` of the stop is served; a client that has sent
    /// nothing by then is closed (`Ok(None)`), so a silent client cannot hold a stopping worker
    /// for `graceful_timeout`. Data that has already arrived is read even when a stop is pending.
    pub async fn read_or_stop(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let between = self.has_read;
        if between {
            self.tracked.request_done();
            self.tracked.measure_done(super::current::current().map(|s| &**s), Outcome::Ok);
        }
        let wait = if between { Wait::Between } else { Wait::First };
        let waiting = Waiting(self);
        let read = std::future::poll_fn(|cx| {
            let mut out = ReadBuf::new(&mut *buf);
            waiting.0.poll_wait(cx, &mut out, wait).map(|r| r.map(|done| done.map(|()| out.filled().len())))
        })
        .await;
        if matches!(read, Ok(Some(n)) if n > 0) {
            waiting.0.has_read = true;
            waiting.0.tracked.measure_begins();
        }
        read
    }

    /// One poll of a read whose wait is `wait`: `Ready(Ok(Some(())))` when the read is done
    /// (data, or the client's end, as `poll_read`), `Ready(Ok(None))` when the stop ends the
    /// wait: the drain's end, or between requests a let-go. Data that has arrived is read first,
    /// stop or not. The one read of `read_or_stop`, of `AsyncRead` and of `daemon::http`.
    pub(crate) fn poll_wait(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>, wait: Wait) -> Poll<io::Result<Option<()>>> {
        let before = buf.filled().len();
        if let Poll::Ready(done) = Pin::new(&mut self.stream).poll_read(cx, buf) {
            self.tracked.waited(&self.tracker);
            if wait == Wait::Between && done.is_ok() && buf.filled().len() > before {
                self.tracked.request_begins(self.tracker.now());
            }
            return Poll::Ready(done.map(Some));
        }
        // Waiting for a request, the first or the next: an idle client (keepalive_timeout, and
        // the first to be let go for a new one).
        let idle_client = wait != Wait::InRequest;
        self.tracked.waits(&self.tracker, idle_client);
        if !idle_client {
            return Poll::Pending;
        }
        // Only the stop (or a let-go) takes a waker out of the slot, so while ours is the same,
        // the slot still holds it, or the flag is set and the check below sees it.
        if !self.parked.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.slot.park(cx.waker());
            self.parked = Some(cx.waker().clone());
        }
        // A client that has sent nothing by the drain's end is not waited for either (nginx
        // closes such connections at a graceful stop too); a let-go is for idle clients.
        if self.tracker.stop.is_closing() || self.slot.is_let_go() {
            self.tracked.waited(&self.tracker);
            return Poll::Ready(Ok(None));
        }
        Poll::Pending
    }

    /// Over TLS (the `tls` feature and `tls_cert`): completes the handshake if it is not done
    /// yet, and says what it settled (SNI, ALPN, the client's certificate with `tls_client_ca`,
    /// whether the session was resumed). `Ok(None)` on a plaintext connection. The handshake
    /// also completes on the first read or write; waiting for it is waiting for the client's
    /// first request, so `keepalive_timeout`, a let-go or a stop's drain end it as they end a
    /// silent client's wait.
    #[cfg(feature = "tls")]
    pub async fn tls(&mut self) -> io::Result<Option<crate::tls::TlsInfo>> {
        if self.stream.tls().is_none() {
            return Ok(None);
        }
        let wait = if self.has_read { Wait::Between } else { Wait::First };
        let waiting = Waiting(self);
        let done = std::future::poll_fn(|cx| waiting.0.poll_wait(cx, &mut ReadBuf::new(&mut []), wait)).await?;
        drop(waiting);
        match done {
            Some(()) => Ok(self.stream.tls().and_then(crate::tls::TlsStream::info)),
            None => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the connection was let go before its TLS handshake ended")),
        }
    }

    /// For `daemon::http`: the handles a request's service needs, which outlive borrows of this.
    #[cfg(feature = "http")]
    pub(crate) fn handles(&self) -> (Arc<Tracker>, Arc<Tracked>) {
        (self.tracker.clone(), self.tracked.clone())
    }

    /// The underlying stream.
    pub fn into_inner(self) -> AsyncStream {
        self.stream
    }
}

impl Deref for Connection {
    type Target = AsyncStream;
    fn deref(&self) -> &AsyncStream {
        &self.stream
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut AsyncStream {
        &mut self.stream
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // Stamps for idle_timeout: since when this read has waited for the client.
        self.get_mut().poll_wait(cx, buf, Wait::InRequest).map_ok(|_| ())
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
