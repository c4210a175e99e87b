//! The lab's HTTP routes, shared by `lab` (pre-forked workers) and `postfork` (a child per
//! connection). See `lab.rs` for the table of routes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Memory that `/alloc/MB` keeps for the worker's life.
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// This binary's identity: a hash of the executable the process runs (`/proc/self/exe`, which
/// stays the file it was started from even when another has replaced it on disk), so a test can
/// tell which binary answered after an upgrade.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read("/proc/self/exe").unwrap_or_default().hash(&mut h);
        format!("lab-{:016x}", h.finish())
    })
}

/// The longest request head the lab reads.
const MAX_HEAD: usize = 16 * 1024;

/// Serves one connection: requests, kept alive, until the client closes or the worker stops.
pub async fn serve(mut conn: daemon::Connection) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0; // bytes of buf read but not yet used
    loop {
        // Read until a whole request head is in the buffer.
        let head_len = loop {
            if let Some(i) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if len == buf.len() {
                let answer = response(431, "request head too large\n", true);
                return conn.write_all(&answer).await;
            }
            let n = if len == 0 {
                // Idle between requests: a graceful stop does not wait for this client.
                match conn.read_or_stop(&mut buf).await? {
                    Some(n) => n,
                    None => return Ok(()),
                }
            } else {
                conn.read(&mut buf[len..]).await?
            };
            if n == 0 {
                return Ok(());
            }
            len += n;
        };
        let Some(request) = Request::parse(&buf[..head_len]) else {
            let answer = response(400, "bad request\n", true);
            return conn.write_all(&answer).await;
        };
        buf.copy_within(head_len..len, 0);
        len -= head_len;

        // Skip the body: first what is already buffered, then the rest from the socket (never
        // reading past it, which would eat the next request).
        let buffered = request.content_length.min(len);
        buf.copy_within(buffered..len, 0);
        len -= buffered;
        let mut remaining = request.content_length - buffered;
        while remaining > 0 {
            let want = remaining.min(buf.len());
            let n = conn.read(&mut buf[..want]).await?;
            if n == 0 {
                return Ok(());
            }
            remaining -= n;
        }

        let (method, path) = (request.method.as_str(), request.path.as_str());
        tracing::info!(method, path, "request");
        // For the manager's log, should this request hang its worker or run past a deadline.
        conn.describe_request(&format!("{method} {path}"));
        if path.starts_with("/long/") {
            conn.long();
        }
        let (status, body) = match path {
            // Whether this connection has TCP_NODELAY (`tcp_nodelay`).
            "/nodelay" => match conn.tcp() {
                Some(tcp) => (200, format!("{}\n", tcp.nodelay().map_or_else(|e| e.to_string(), |on| on.to_string()))),
                None => (200, "not tcp\n".to_string()),
            },
            // Who connected: a TCP address, or a Unix socket client's pid, uid and gid.
            "/peer" => (200, format!("{}\n", conn.peer())),
            // What the TLS handshake settled (with the `tls` feature).
            #[cfg(feature = "tls")]
            "/tls" => match conn.tls().await? {
                Some(t) => (
                    200,
                    format!(
                        "sni={} alpn={} resumed={} client_certs={} pid={}\n",
                        t.server_name.as_deref().unwrap_or("-"),
                        t.alpn.as_deref().map_or("-".to_string(), |a| String::from_utf8_lossy(a).into_owned()),
                        t.resumed,
                        t.client_certificates.len(),
                        std::process::id()
                    ),
                ),
                None => (200, "plaintext\n".to_string()),
            },
            _ => route(method, path).await,
        };
        let close = request.close || conn.is_stopping();
        conn.write_all(&response(status, &body, close)).await?;
        if close {
            return Ok(());
        }
    }
}

async fn route(method: &str, path: &str) -> (u16, String) {
    if method != "GET" {
        return (405, "only GET\n".to_string());
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (first, arg) = (parts.next().unwrap_or(""), parts.next());
    match (first, arg) {
        ("", None) => (200, "hello\n".to_string()),
        ("pid", None) => (200, format!("{}\n", std::process::id())),
        ("version", None) => (200, format!("{}\n", version())),
        // A log event in a span of the program's own whose fields are named like the line's.
        ("in-span", None) => {
            let span = tracing::info_span!("job", level = "the span's", path = "the span's");
            let _entered = span.enter();
            tracing::info!(path, "in a span of the program's");
            (200, "logged\n".to_string())
        }
        ("sleep", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                (200, format!("slept {ms}\n"))
            }
            Err(_) => (400, "usage: /sleep/MILLISECONDS\n".to_string()),
        },
        ("long", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                (200, format!("long {ms}\n"))
            }
            Err(_) => (400, "usage: /long/MILLISECONDS\n".to_string()),
        },
        // A blocking call in an async handler, the common mistake: the runtime stops, the CPU
        // does not spin.
        ("block", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                (200, format!("blocked {ms}\n"))
            }
            Err(_) => (400, "usage: /block/MILLISECONDS\n".to_string()),
        },
        ("spin", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => {
                spin_for(Duration::from_millis(ms));
                (200, format!("spun {ms}\n"))
            }
            Err(_) => (400, "usage: /spin/MILLISECONDS\n".to_string()),
        },
        // A busy loop until this thread has used MS of CPU, however long that takes on a busy
        // machine (the tests of max_cpu: /spin's wall-clock MS may be less CPU than that).
        ("burn", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => {
                let start = thread_cpu();
                while thread_cpu().saturating_sub(start) < Duration::from_millis(ms) {
                    std::hint::spin_loop();
                }
                (200, format!("burned {ms}\n"))
            }
            Err(_) => (400, "usage: /burn/MILLISECONDS\n".to_string()),
        },
        // What a program this worker starts inherits: the blocked and ignored signal masks of a
        // `cat` started with std's Command, as it is and through daemon::default_signals
        // (blocking the worker for the few ms they take).
        ("signals", None) => {
            let masks = |command: &mut std::process::Command| -> std::io::Result<String> {
                let out = command.arg("/proc/self/status").output()?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("?").trim().to_string();
                Ok(format!("blocked {} ignored {}", field("SigBlk:"), field("SigIgn:")))
            };
            let inherited = masks(&mut std::process::Command::new("cat"));
            let cleaned = masks(daemon::default_signals(&mut std::process::Command::new("cat")));
            match (inherited, cleaned) {
                (Ok(a), Ok(b)) => (200, format!("inherited {a}\ndefault_signals {b}\n")),
                (Err(e), _) | (_, Err(e)) => (500, format!("cannot start cat: {e}\n")),
            }
        }
        // A process the worker leaves behind: the shell that started it exits at once, so it is
        // an orphan (re-parented to the manager, a child subreaper).
        ("leave" | "leave-deaf" | "leave-relay", Some(secs)) if secs.parse::<u32>().is_ok() => {
            // The background process lets go of the answer's pipe only once its trap is set, so
            // the answer (read to its end) comes after it: a test may signal it at once.
            let script = match first {
                "leave" => format!("(exec sleep {secs} >/dev/null 2>&1) & echo $!"),
                "leave-deaf" => format!("(trap '' TERM; exec sleep {secs} >/dev/null 2>&1) & echo $!"),
                // TERM starts another like it: a stop must still end.
                _ => "relay() { trap 'relay &' TERM; exec >/dev/null 2>&1 </dev/null; while :; do sleep 1 & wait $!; done; }; (relay) & echo $!".to_string(),
            };
            match std::process::Command::new("sh").args(["-c", &script]).output() {
                Ok(out) => (200, String::from_utf8_lossy(&out.stdout).into_owned()),
                Err(e) => (500, format!("cannot start sh: {e}\n")),
            }
        }
        ("abort", None) => std::process::abort(),
        ("panic", None) => panic!("lab: GET /panic"),
        ("exit", Some(code)) => match code.parse::<i32>() {
            Ok(code) => std::process::exit(code),
            Err(_) => (400, "usage: /exit/CODE\n".to_string()),
        },
        ("alloc", Some(mb)) => match mb.parse::<usize>() {
            Ok(mb) if mb <= 64 * 1024 => {
                let mut block = vec![0u8; mb << 20];
                // Zeroed memory is only reserved; writing to every page makes it resident.
                for page in block.chunks_mut(4096) {
                    page[0] = 1;
                }
                let mut hoard = HOARD.lock().unwrap_or_else(|e| e.into_inner());
                hoard.push(block);
                let total: usize = hoard.iter().map(|b| b.len() >> 20).sum();
                (200, format!("allocated {mb} MiB, holding {total} MiB\n"))
            }
            _ => (400, "usage: /alloc/MEBIBYTES (at most 65536)\n".to_string()),
        },
        _ => (404, "not found\n".to_string()),
    }
}

fn response(status: u16, body: &str, close: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        500 => "Internal Server Error",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Unknown",
    };
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the lab needs to know about a request.
struct Request {
    method: String,
    path: String,
    close: bool,
    content_length: usize,
}

impl Request {
    /// Parses a request head (the blank line included). None if it is not HTTP/1.x.
    fn parse(head: &[u8]) -> Option<Request> {
        let head = std::str::from_utf8(head).ok()?;
        let mut lines = head.split("\r\n");
        let mut words = lines.next()?.split(' ');
        let (method, target, version) = (words.next()?, words.next()?, words.next()?);
        if !version.starts_with("HTTP/1.") || words.next().is_some() {
            return None;
        }
        // The path alone, without a query.
        let path = target.split('?').next().unwrap_or(target);
        let mut request = Request {
            method: method.to_string(),
            path: path.to_string(),
            close: version == "HTTP/1.0",
            content_length: 0,
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        request.close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        request.close = false;
                    }
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                request.content_length = value.parse().ok()?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return None; // chunked bodies are not part of the lab
            }
        }
        Some(request)
    }
}

/// The CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime(2) with a valid pointer to a timespec; this clock always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A busy loop (`/spin/MS`), a function of its own so a hung worker's stack names it.
#[inline(never)]
pub fn spin_for(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}
