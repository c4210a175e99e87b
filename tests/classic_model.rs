//! The classic model: the `echo` example's handler is a blocking `fn(TcpStream)`, so a worker
//! serves one connection at a time and concurrent clients need several workers.

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;

use support::{Daemon, SOON};

#[test]
fn echo_serves_concurrent_clients_from_the_pool() {
    let d = Daemon::serve("echo", &["--workers", "2"]);
    d.wait_for_workers(2, SOON);

    // The first client holds its worker for as long as its connection is open...
    let mut first = d.connect();
    first.write_all(b"first\n").unwrap();
    let mut back = [0u8; 6];
    first.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"first\n");

    // ...so the second one, connected while the first is still open, is served by another.
    let mut second = d.connect();
    second.write_all(b"second\n").unwrap();
    let mut back = [0u8; 7];
    second.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"second\n");

    // A megabyte, written on one thread while this one reads it back.
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut writer = second.try_clone().unwrap();
    let sent = payload.clone();
    let writing = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    second.read_to_end(&mut echoed).unwrap();
    writing.join().unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "the echo differs from what was sent");

    // The first connection is still served, and ends when the client does.
    first.write_all(b"again\n").unwrap();
    let mut back = [0u8; 6];
    first.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"again\n");
    first.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "unexpected bytes after the end: {rest:?}");
}
