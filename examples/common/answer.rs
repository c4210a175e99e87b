//! One plain-text HTTP answer per connection, for the examples whose point is elsewhere.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads the request's head whole (a client may send it in pieces), then answers `body()` with
/// `200 OK` and `Connection: close`. A client that closes first, or sends a head of more than
/// 16 KiB, gets nothing.
pub async fn answer_once(mut conn: daemon::Connection, body: impl FnOnce() -> String) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let body = body();
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(answer.as_bytes()).await
}
