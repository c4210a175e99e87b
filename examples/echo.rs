//! `echo`: the classic pre-forking model, as in Apache's prefork MPM. The handler is a plain,
//! blocking function: each worker serves one connection at a time, and the manager forks more
//! workers when too few are left idle.
//!
//! ```sh
//! cargo run --example echo                 # 127.0.0.1:7007
//! nc 127.0.0.1 7007                        # type lines; they come back
//! cargo run --example echo -- --listen unix:/tmp/echo.sock   # or on a Unix socket
//! nc -U /tmp/echo.sock
//! ```
//!
//! The handler takes a `daemon::net::Stream`, so it serves TCP and Unix sockets alike; one that
//! takes a `std::net::TcpStream` serves TCP only.
//!
//! A blocking handler does not see a graceful stop: a worker asked to stop finishes the
//! connection in hand, and is killed if that takes longer than `graceful_timeout`.

use std::io::{Read, Write};

#[daemon::main(prefork = 2, listen = "127.0.0.1:7007")]
fn main() {}

#[daemon::on_accept]
fn serve(mut stream: daemon::net::Stream) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(()); // the client is done sending
        }
        stream.write_all(&buf[..n])?;
    }
}
