//! HTTP in one line: `daemon::http::serve(conn, app).await` serves an axum `Router` over
//! hyper's HTTP/1.1 or HTTP/2 on one accepted connection, with the daemon's stops and deadlines.
//! HTTP/2 when TLS's ALPN agreed on `h2` (`tls_alpn`), or when a plaintext client opens with
//! HTTP/2's preface (prior knowledge, `h2c`, as gRPC clients do); HTTP/1.1 otherwise. On HTTP/2,
//! a graceful stop sends GOAWAY and finishes the streams in hand, and `request_timeout` bounds
//! each stream (an overdue one is answered 503), not the connection.
//!
//! What it adds to `hyper::server::conn::http1` (and what `axum::serve` leaves to its user):
//! - `app` is called once per worker (the first connection builds the router; the others share
//!   it), so a router that opens a pool or reads a file does it after fork, in the worker.
//! - A graceful stop (QUIT, recycling, a new generation) finishes the request in hand and
//!   answers it with `Connection: close`; an idle keep-alive connection stays open for
//!   `drain_timeout` and a request that arrives meanwhile is served the same way (hyper's own
//!   `graceful_shutdown` closes an idle connection at once, in the instant its client may be
//!   sending the next request); then the connection ends cleanly, between two requests.
//! - The worker sees where requests begin and end, as with `Connection::read_or_stop`:
//!   `request_timeout` bounds a request, `keepalive_timeout` the wait for the next one, a full
//!   worker can let an idle connection go, and the scoreboard says which request a worker
//!   serves (`GET /path`), for the log line of a verdict against it.

use std::any::TypeId;
use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use axum::routing::future::RouteFuture;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::scoreboard::Outcome;
use crate::worker::connection::{Connection, Wait};
use crate::worker::track::{Tracked, Tracker};

/// Requests served, beside the daemon's `daemon_connections_total`: a keep-alive connection
/// carries many.
static REQUESTS: crate::metrics::Counter = crate::metrics::Counter::own(crate::metrics::HTTP_REQUESTS, "HTTP requests daemon::http served (a connection may carry many)");

thread_local! {
    /// Each worker's routers, one per `app` function, built by the first connection. A worker
    /// runs its handlers on one thread; the manager never builds one.
    static APPS: RefCell<Vec<(TypeId, Router)>> = const { RefCell::new(Vec::new()) };
}

/// Serves HTTP/1.1 on `conn` with the router `app` makes (once per worker), until the client
/// closes the connection or the worker stops. Keep-alive and pipelining as hyper does them.
/// `daemon::http` (the facade) shows it in a program.
///
/// A client that goes away mid-request, or sends what is not HTTP, ends its connection
/// quietly (`Ok`); other errors of hyper's are returned, for the worker to log.
pub async fn serve<F>(mut conn: Connection, app: F) -> io::Result<()>
where
    F: Fn() -> Router + 'static,
{
    let router = router_of(&app);
    let Some((h2, prefix)) = protocol(&mut conn).await else {
        // Let go, or stopped, before it said anything; or its handshake failed.
        return Ok(());
    };
    let (tracker, tracked) = conn.handles();
    // Each HTTP request (or HTTP/2 stream) is measured here, not the connection.
    tracked.measured_elsewhere();
    if h2 {
        // Each stream has its own deadline (`Stream`): the connection, which carries many at
        // once, is never one request.
        tracked.request_done();
    }
    let stop = tracker.stop.raised();
    let shared = Arc::new(Shared { phase: AtomicU8::new(FIRST), tracker, tracked, h2, streams: AtomicU32::new(0), had_stream: AtomicBool::new(false) });
    let service = Service { router, shared: shared.clone() };
    let io = TokioIo::new(Io { conn, shared, prefix, at: 0 });
    let served = if h2 {
        let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        // A graceful stop: GOAWAY, then the streams in hand run to their end.
        tokio::select! {
            served = connection.as_mut() => served,
            () = stop => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    } else {
        hyper::server::conn::http1::Builder::new().serve_connection(io, service).await
    };
    match served {
        Ok(()) => Ok(()),
        Err(e) if e.is_incomplete_message() || e.is_parse() || e.is_canceled() || client_gone(&e) => Ok(()),
        Err(e) => Err(io::Error::other(e)),
    }
}

/// What every HTTP/2 connection opens with (RFC 9113, 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which HTTP the client speaks: HTTP/2 if TLS's ALPN chose `h2`, or if a plaintext client
/// opens with the preface; with the bytes read to tell, which the server reads again. `None`:
/// the wait for the client ended first (its first request is waited for as always: a let-go,
/// the drain, `keepalive_timeout`), or its TLS handshake failed.
async fn protocol(conn: &mut Connection) -> Option<(bool, Vec<u8>)> {
    #[cfg(feature = "tls")]
    if std::ops::Deref::deref(conn).tls().is_some() {
        let info = conn.tls().await.ok()??;
        return Some((info.alpn.as_deref() == Some(b"h2"), Vec::new()));
    }
    let mut seen = Vec::new();
    loop {
        let mut chunk = [0u8; PREFACE.len()];
        let want = PREFACE.len() - seen.len();
        let read = std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut chunk[..want]);
            conn.poll_wait(cx, &mut buf, Wait::First).map(|r| r.map(|done| done.map(|()| buf.filled().len())))
        })
        .await;
        let n = match read {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            // hyper sees the error again on its first read.
            Err(_) => return Some((false, seen)),
        };
        seen.extend_from_slice(&chunk[..n]);
        if n == 0 || !PREFACE.starts_with(&seen) {
            return Some((false, seen));
        }
        if seen.len() == PREFACE.len() {
            return Some((true, seen));
        }
    }
}

/// Serves HTTP/1.1 on `conn` with the `Router` this worker's `on_child` hook returned: the
/// router is built once per worker, before the worker is ready, so a router that cannot be
/// built (a database that will not open) fails the worker's start with the reason instead of
/// its first request. Limit the hook to the serving pool (`#[daemon::on_child(pools =
/// ["main"])]`) so that task workers do not build one.
///
/// A worker without a `Router` in its state answers no request: each connection ends with an
/// error naming the fix, which the worker logs.
pub async fn serve_router(conn: Connection) -> io::Result<()> {
    let Some(router) = crate::worker::state::state::<Router>() else {
        return Err(io::Error::other(
            "daemon::http::serve_router: this worker has no axum::Router: return one from an #[daemon::on_child] hook \
             (`fn routes(child: &daemon::Child) -> Result<Router, E>`), or call daemon::http::serve(conn, app)",
        ));
    };
    serve(conn, || router.clone()).await
}

fn router_of<F: Fn() -> Router + 'static>(app: &F) -> Router {
    let id = TypeId::of::<F>();
    if let Some(router) = APPS.with_borrow(|apps| apps.iter().find(|(k, _)| *k == id).map(|(_, r)| r.clone())) {
        return router;
    }
    // Built outside the borrow: a router's constructor may serve nothing, but may do anything.
    // Its handlers made into routes once (as `axum::serve` does), not at every request.
    let router = app().with_state(());
    APPS.with_borrow_mut(|apps| apps.push((id, router.clone())));
    router
}

fn client_gone(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    e.source().and_then(|s| s.downcast_ref::<io::Error>()).is_some_and(|e| {
        matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof)
    })
}

/// Where the connection is, between the reads (which see the client) and the service (which
/// sees hyper's parsed requests).
const FIRST: u8 = 0;
const IN_REQUEST: u8 = 1;
/// The router has answered; hyper is still writing the answer. Nothing ends a read yet: an
/// end-of-file now could cut the answer's body short.
const ANSWERED: u8 = 2;
/// The answer is flushed: a wait for the next request.
const BETWEEN: u8 = 3;

/// What the reads and the service share: one allocation per connection, one reference count
/// per request.
struct Shared {
    phase: AtomicU8,
    tracker: Arc<Tracker>,
    tracked: Arc<Tracked>,
    /// HTTP/2: many requests (streams) at once; the phases above are HTTP/1.1's.
    h2: bool,
    /// HTTP/2: the streams in hand, and whether there was one yet.
    streams: AtomicU32,
    had_stream: AtomicBool,
}

/// The connection as hyper reads it: a wait for a request, the first or a next one, ends at
/// the drain's end (or a let-go) as end-of-file, which hyper takes as the client's clean close.
struct Io {
    conn: Connection,
    shared: Arc<Shared>,
    /// What was read to tell which HTTP the client speaks, read again first.
    prefix: Vec<u8>,
    at: usize,
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.shared.phase.load(Ordering::Relaxed);
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if !this.shared.h2 {
                this.shared.phase.store(IN_REQUEST, Ordering::Relaxed);
            }
            return Poll::Ready(Ok(()));
        }
        if this.shared.h2 {
            // Streams in hand: only data ends a read (idle_timeout). None: the connection waits
            // for a request, as an idle HTTP/1.1 one does.
            let wait = if this.shared.streams.load(Ordering::Relaxed) > 0 {
                Wait::InRequest
            } else if this.shared.had_stream.load(Ordering::Relaxed) {
                Wait::Between
            } else {
                Wait::First
            };
            return this.conn.poll_wait(cx, buf, wait).map_ok(|_| ());
        }
        let before = buf.filled().len();
        let wait = match phase {
            FIRST => Wait::First,
            BETWEEN => Wait::Between,
            _ => Wait::InRequest,
        };
        // A stop that ends the wait is end-of-file to hyper.
        let read = this.conn.poll_wait(cx, buf, wait).map_ok(|_| ());
        if phase != IN_REQUEST && matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // The next request's first bytes (BETWEEN marked its start in the read).
            if phase == ANSWERED {
                this.shared.tracked.request_begins(this.shared.tracker.now());
            }
            this.shared.phase.store(IN_REQUEST, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.conn).poll_flush(cx);
        // hyper flushes once it has written an answer whole: from now on the connection waits.
        if matches!(flushed, Poll::Ready(Ok(()))) {
            let _ = this.shared.phase.compare_exchange(ANSWERED, BETWEEN, Ordering::Relaxed, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_shutdown(cx)
    }
}

/// The router, with the request's begin and end marked for the worker.
struct Service {
    router: Router,
    shared: Arc<Shared>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        let shared = &self.shared;
        let mut stream = None;
        if shared.h2 {
            // A stream begins; the connection's reads wait for data only while any is in hand.
            shared.streams.fetch_add(1, Ordering::Relaxed);
            shared.had_stream.store(true, Ordering::Relaxed);
            let limit = crate::worker::track::STREAM_REQUEST_MS.load(Ordering::Relaxed);
            let deadline = (limit > 0).then(|| Box::pin(tokio::time::sleep(std::time::Duration::from_millis(limit))));
            stream = Some(Stream { shared: shared.clone(), deadline, path: request.uri().path().to_string() });
        } else if matches!(shared.phase.swap(IN_REQUEST, Ordering::Relaxed), ANSWERED | BETWEEN) {
            // A pipelined request, parsed from bytes read with the last one: it begins now.
            shared.tracked.request_begins(shared.tracker.now());
        }
        describe(&request);
        REQUESTS.inc();
        let mut router = self.router.clone();
        let answer = tower_service::Service::call(&mut router, request);
        let measure = Measure { shared: shared.clone(), began: crate::sys::monotonic_ns(), outcome: None };
        Answer { answer, shared: shared.clone(), stream, measure }
    }
}

/// One HTTP/2 stream in hand: its deadline (`request_timeout`, which the worker's ticker
/// applies to a whole HTTP/1.1 connection), and its end (however its future ends: answered, or
/// dropped when the client resets the stream).
struct Stream {
    shared: Arc<Shared>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    path: String,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /path` on the worker's scoreboard slot, without an allocation or formatting.
fn describe(request: &Request<Incoming>) {
    let mut line = [0u8; 96];
    let mut len = 0;
    for part in [request.method().as_str().as_bytes(), b" ", request.uri().path().as_bytes()] {
        let n = part.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    let written = &line[..len];
    // A path cut inside a character loses the character, not the line.
    let text = match std::str::from_utf8(written) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&written[..e.valid_up_to()]).unwrap_or_default(),
    };
    crate::worker::describe_request(text);
}

pin_project_lite::pin_project! {
    /// The router's answer to one request; when it is ready, the request is done.
    struct Answer {
        #[pin]
        answer: RouteFuture<Infallible>,
        shared: Arc<Shared>,
        stream: Option<Stream>,
        measure: Measure,
    }
}

/// One request's duration and outcome, for the worker's slot: given when its answer is ready,
/// or when it is dropped unanswered (the client went away: an error; the connection cut by
/// `request_timeout`: a timeout).
struct Measure {
    shared: Arc<Shared>,
    began: u64,
    outcome: Option<Outcome>,
}

impl Measure {
    fn answered(&mut self, status: axum::http::StatusCode) {
        self.outcome = Some(if status.is_server_error() { Outcome::Error } else { Outcome::Ok });
    }
}

impl Drop for Measure {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(if self.shared.tracked.was_dropped() { Outcome::Timeout } else { Outcome::Error });
        if let Some(slot) = crate::worker::current::current() {
            slot.request_finished(crate::sys::monotonic_ns().saturating_sub(self.began), outcome);
        }
    }
}

impl Future for Answer {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(stream) = this.stream.as_mut() {
            let overdue = stream.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
            if overdue {
                tracing::info!(path = %stream.path, "answering a stream 503: its request ran past request_timeout");
                let mut late = Response::new(Body::from("request_timeout: the request took too long\n"));
                *late.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
                this.stream.take();
                this.measure.outcome = Some(Outcome::Timeout);
                return Poll::Ready(Ok(late));
            }
            let Poll::Ready(Ok(response)) = this.answer.poll(cx) else {
                return Poll::Pending;
            };
            this.stream.take();
            this.measure.answered(response.status());
            return Poll::Ready(Ok(response));
        }
        let Poll::Ready(Ok(mut response)) = this.answer.poll(cx) else {
            return Poll::Pending;
        };
        this.measure.answered(response.status());
        let shared = &**this.shared;
        shared.tracked.request_done();
        shared.phase.store(ANSWERED, Ordering::Relaxed);
        // The worker stops: this is the connection's last answer, and the client is told so.
        if shared.tracker.stop.is_raised() {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}
