//! `hello`: a pre-forked HTTP/1.1 server that answers `hello` to every request.
//!
//! ```sh
//! cargo run --release --example hello                # 127.0.0.1:8080
//! curl 127.0.0.1:8080/
//! cargo run --release --example hello -- --workers 8 --listen 0.0.0.0:8080
//! ```
//!
//! It keeps connections alive, answers pipelined requests in order, skips request bodies by their
//! `Content-Length`, and honours `Connection: close`. On a graceful stop (QUIT to the manager) it
//! finishes the request in hand and does not wait for idle keep-alive clients.
//!
//! The loop is lean on purpose, as it is benchmarked against nginx: one buffer per connection,
//! reused for every request; no allocation per request; the answers are constants; all the
//! answers to the requests of one read go out in one write.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[daemon::main(listen = "127.0.0.1:8080")]
fn main() {
    // Runs once in the manager, before the workers are forked. Nothing to load here.
}

// ---- begin hello handler (examples/tokio_baseline.rs serves the same code; tests/baseline.rs checks it) ----
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

#[daemon::on_accept]
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
