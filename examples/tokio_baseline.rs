//! `tokio_baseline`: the benchmarks' hand-written tokio server. It answers `hello` with the very
//! handler of `examples/hello.rs`, copied verbatim between the two marker comments below
//! (`bench/run` checks that the copy is still identical), in one process, without the framework:
//! no fork, no manager, no scoreboard, no acceptor thread.
//!
//! ```sh
//! cargo run --release --example tokio_baseline -- --listen 127.0.0.1:8082 --workers 2
//! ```
//!
//! `--workers N` starts N serving threads in one process, each running a current-thread tokio
//! runtime, and an acceptor thread that accepts on the listening socket (backlog 1024, like the
//! framework's) and hands the connections to the serving threads in turn, over a channel: the
//! framework's worker (acceptor thread, hand-off, current-thread runtime) without the processes.
//! (`examples/axum_baseline.rs` is the other reference: axum on tokio's work-stealing
//! multi-thread runtime.)
//!
//! The handler talks to a `daemon::Connection`; here that is a thin local type over a tokio
//! `TcpStream` whose `read_or_stop` is a plain read (nothing ever asks this server to stop
//! gracefully: TERM ends it).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let (addr, threads) = match args() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("tokio_baseline: error: {message}");
            eprintln!("usage: tokio_baseline [--listen IP:PORT] [--workers N]");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(addr, threads) {
        eprintln!("tokio_baseline: error: {e}");
        std::process::exit(1);
    }
}

fn args() -> Result<(SocketAddr, usize), String> {
    let mut addr: SocketAddr = "127.0.0.1:8082".parse().expect("a valid default address");
    let mut threads = 4;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or(format!("{name} needs a value"));
        match name.as_str() {
            "--listen" => {
                let v = value()?;
                addr = v.parse().map_err(|_| format!("--listen {v}: not an IP:PORT address"))?;
            }
            "--workers" | "--threads" => {
                let v = value()?;
                threads = match v.parse() {
                    Ok(n) if (1..=4096).contains(&n) => n,
                    _ => return Err(format!("{name} {v}: must be a whole number from 1 to 4096")),
                };
            }
            "--help" | "-h" => {
                println!("usage: tokio_baseline [--listen IP:PORT] [--workers N]");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok((addr, threads))
}

fn run(addr: SocketAddr, threads: usize) -> std::io::Result<()> {
    // tokio's TcpSocket registers with a reactor as it listens: bind in a throwaway runtime, then
    // accept on the plain socket.
    let listener = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(async {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(1024)?.into_std()
        })?;
    listener.set_nonblocking(false)?;
    let mut serving = Vec::with_capacity(threads);
    for i in 0..threads {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || serve_thread(rx))?;
        serving.push(tx);
    }
    eprintln!("tokio_baseline: listening addr={} threads={threads}", listener.local_addr()?);
    // The acceptor: hands the connections to the serving threads in turn.
    let mut next = 0;
    loop {
        match listener.accept() {
            Ok((stream, _peer)) => {
                stream.set_nonblocking(true)?;
                if serving[next].send(stream).is_err() {
                    return Err(std::io::Error::other("a serving thread ended"));
                }
                next = (next + 1) % threads;
            }
            // Out of descriptors or a connection reset before it was accepted: keep accepting.
            Err(e) => {
                eprintln!("tokio_baseline: accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// One serving thread: a current-thread runtime that serves the connections it is handed.
fn serve_thread(
    mut accepted: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        while let Some(stream) = accepted.recv().await {
            let stream = tokio::net::TcpStream::from_std(stream)?;
            tokio::spawn(async move {
                let _ = serve(daemon::Connection::new(stream)).await;
            });
        }
        Ok(())
    })
}

/// What the copied handler needs of `daemon::Connection`, over a plain tokio stream.
mod daemon {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;

    pub struct Connection {
        stream: TcpStream,
    }

    impl Connection {
        pub fn new(stream: TcpStream) -> Self {
            Connection { stream }
        }

        /// Nothing asks this server to stop gracefully.
        pub fn is_stopping(&self) -> bool {
            false
        }

        /// A plain read: there is no graceful stop to race it against.
        pub async fn read_or_stop(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
            self.stream.read(buf).await.map(Some)
        }
    }

    impl AsyncRead for Connection {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
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
}

// ---- begin hello handler: verbatim from examples/hello.rs, between the same markers, less its
// ---- `#[daemon::on_accept]` line (tests/baseline.rs and `bench/run --check` compare them) ----
/// Room for a request head, and for whatever follows it in the same read.
const BUFFER: usize = 8 * 1024;

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n";
/// An HTTP/1.0 client keeps the connection only if the answer says so.
const OK_KEEP_ALIVE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\
      Connection: keep-alive\r\n\r\nhello\n";
const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\
      Connection: close\r\n\r\nhello\n";
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\
      Connection: close\r\n\r\n";

async fn serve(mut conn: daemon::Connection) -> std::io::Result<()> {
    let mut buf = vec![0u8; BUFFER];
    // The answers to the requests found in one read, written at once.
    let mut out: Vec<u8> = Vec::with_capacity(4 * OK_CLOSE.len());
    // `buf[..len]` holds bytes not yet parsed: the start of a request head.
    let mut len = 0;
    // Bytes of a request body still to come, to be skipped.
    let mut skip = 0;
    loop {
        let n = if len == 0 && skip == 0 {
            // Between requests: wait for the next one, unless the worker is asked to stop first.
            match conn.read_or_stop(&mut buf).await? {
                Some(n) => n,
                None => return Ok(()),
            }
        } else {
            conn.read(&mut buf[len..]).await?
        };
        if n == 0 {
            return Ok(()); // the client closed the connection
        }
        len += n;

        let mut pos = 0;
        let mut close = false;
        while pos < len {
            if skip > 0 {
                let k = skip.min(len - pos);
                pos += k;
                skip -= k;
                continue;
            }
            let Some(end) = head_end(&buf[pos..len]) else { break };
            let head = Head::parse(&buf[pos..pos + end]);
            pos += end;
            skip = head.content_length;
            close = !head.keep_alive || conn.is_stopping();
            out.extend_from_slice(if close {
                OK_CLOSE
            } else if head.http_1_0 {
                OK_KEEP_ALIVE
            } else {
                OK
            });
            if close {
                break;
            }
        }
        if !out.is_empty() {
            conn.write_all(&out).await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
        // Keep the start of an incomplete head for the next read.
        buf.copy_within(pos..len, 0);
        len -= pos;
        if len == buf.len() {
            conn.write_all(TOO_LARGE).await?;
            return Ok(());
        }
    }
}

/// The length of the request head at the start of `buf`, blank line included, if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// What this server needs to know about a request.
struct Head {
    http_1_0: bool,
    keep_alive: bool,
    content_length: usize,
}

impl Head {
    fn parse(head: &[u8]) -> Head {
        let mut lines = head.split(|&b| b == b'\n');
        let request_line = lines.next().unwrap_or_default().trim_ascii();
        let http_1_0 = request_line.ends_with(b"HTTP/1.0");
        let mut parsed = Head { http_1_0, keep_alive: !http_1_0, content_length: 0 };
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        parsed.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        parsed.keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                match parse_length(value) {
                    Some(n) => parsed.content_length = n,
                    None => parsed.keep_alive = false, // cannot find the next request: close
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // A chunked body cannot be skipped without decoding it: answer, then close.
                parsed.keep_alive = false;
            }
        }
        // Closing after this answer: nothing after this head needs to be skipped.
        if !parsed.keep_alive {
            parsed.content_length = 0;
        }
        parsed
    }
}

fn parse_length(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + usize::from(d - b'0')))
}
// ---- end hello handler ----
