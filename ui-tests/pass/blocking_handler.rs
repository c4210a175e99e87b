//! The classic model: a plain fn handler, one connection at a time per worker.

use std::io::{Read, Write};
use std::net::TcpStream;

#[daemon::main(prefork = 2, listen = "127.0.0.1:7007")]
fn main() {
    stop_before_forking();
}

#[daemon::on_accept]
fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
