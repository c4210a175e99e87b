//! Clients cannot starve the pool: slow and idle clients, as a hostile client would send them,
//! against the classic `echo` and the async `hello`, with the limits the framework can enforce
//! without parsing the protocol (idle_timeout, request_timeout, keepalive_timeout, and a full
//! worker letting its longest-waiting keep-alive connection go for a new client).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// One line through `echo`: sent, and read back.
fn echo_once(port: u16) -> std::io::Result<String> {
    let mut c = connect(port)?;
    c.write_all(b"ping\n")?;
    let mut back = [0u8; 5];
    c.read_exact(&mut back)?;
    Ok(String::from_utf8_lossy(&back).into_owned())
}

/// Reads until the server closes the connection; returns what came.
fn until_closed(c: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    all
}

#[test]
fn an_idle_client_holds_a_classic_worker_no_longer_than_idle_timeout() {
    let d = Daemon::serve("echo", &["--workers", "1", "--max-children", "1", "--idle-timeout", "1s"]);
    d.wait_for_workers(1, SOON);
    // It connects, and says nothing: the pool's only worker is its.
    let mut idle = d.connect();
    wait_until(SOON, "the idle client to be accepted", || d.holder(&idle).is_some());
    // A new client is served once the idle one's read has timed out.
    assert_eq!(echo_once(d.port()).expect("the new client is served"), "ping\n");
    assert!(until_closed(&mut idle).is_empty());
}

#[test]
fn clients_trickling_a_byte_a_second_are_cut_off_by_request_timeout() {
    let d = Daemon::serve(
        "echo",
        &["--workers", "4", "--max-children", "4", "--idle-timeout", "1s", "--request-timeout", "2s", "--graceful-timeout", "1s"],
    );
    d.wait_for_workers(4, SOON);
    let stop = Arc::new(AtomicBool::new(false));
    let port = d.port();
    let trickles: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let Ok(mut c) = connect(port) else { return };
                // A byte every 300 ms: never idle for idle_timeout, never done.
                while !stop.load(Ordering::Relaxed) && c.write_all(b"x").is_ok() {
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();
    d.wait_for_line("request past request_timeout", SOON);
    // The pool serves a new client again.
    assert_eq!(
        wait_for(SOON, "a new client to be served", || echo_once(d.port()).ok()),
        "ping\n"
    );
    stop.store(true, Ordering::Relaxed);
    for t in trickles {
        t.join().expect("a trickling client");
    }
}

/// A keep-alive request on `c`, whose answer is read whole.
fn hello_request(c: &mut TcpStream) -> std::io::Result<()> {
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"hello\n") {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

#[test]
fn idle_keep_alive_clients_give_their_place_to_a_new_one() {
    let d = Daemon::serve(
        "hello",
        &["--workers", "1", "--max-children", "1", "--clients", "4", "--keepalive-timeout", "10m"],
    );
    d.wait_for_workers(1, SOON);
    // Four keep-alive clients fill the only worker, each idle after one request.
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = d.connect();
            hello_request(&mut c).expect("a first request");
            c
        })
        .collect();
    // A fifth is admitted: the worker lets go of the one that has waited longest.
    let mut fifth = d.connect();
    hello_request(&mut fifth).expect("the new client is served while the worker was full");
    let closed = idle
        .iter_mut()
        .filter_map(|c| {
            c.set_read_timeout(Some(Duration::from_millis(200))).expect("a timeout");
            let mut b = [0u8; 1];
            matches!(c.read(&mut b), Ok(0)).then_some(())
        })
        .count();
    assert_eq!(closed, 1, "exactly one idle client was let go");
    d.wait_for_line("the pool is saturated", SOON);
    assert_eq!(d.lines().iter().filter(|l| l.contains("the pool is saturated")).count(), 1, "said once per episode");
}

#[test]
fn keepalive_and_idle_timeouts_close_async_connections() {
    let d = Daemon::serve("hello", &["--workers", "1", "--keepalive-timeout", "1s", "--idle-timeout", "1s"]);
    d.wait_for_workers(1, SOON);
    // Waiting for its next request: let go after keepalive_timeout (its handler returns).
    let mut kept = d.connect();
    hello_request(&mut kept).expect("a request");
    assert!(until_closed(&mut kept).is_empty(), "the idle keep-alive connection is closed");
    // Connected, never a byte: an idle client too, let go after keepalive_timeout.
    let mut silent = d.connect();
    assert!(until_closed(&mut silent).is_empty());
    // Half a request, then nothing: its handler's read waits idle_timeout.
    let mut half = d.connect();
    half.write_all(b"GET / HTTP/1.1\r\n").expect("half a request");
    assert!(until_closed(&mut half).is_empty());
    d.wait_for_line("its client sent nothing within idle_timeout", SOON);
    assert_eq!(d.get("/").0, 200);
}

#[test]
fn silent_clients_hold_a_post_forked_pool_no_longer_than_keepalive_timeout() {
    // Each child serves one connection; at max_children the manager accepts no more. Clients that
    // connect and send nothing are idle clients: they hold their children for keepalive_timeout,
    // not idle_timeout (60 s here), so the service is not down for a minute.
    let d = Daemon::serve("postfork", &["--max-children", "2", "--keepalive-timeout", "1s"]);
    d.wait_for_line("manager started", SOON);
    let silent: Vec<TcpStream> = (0..2).map(|_| d.connect()).collect();
    wait_until(SOON, "both silent clients to hold a child", || d.workers().len() == 2);
    assert_eq!(wait_for(SOON, "a new client to be served", || d.try_get("/").ok()), (200, "hello\n".to_string()));
    for mut c in silent {
        assert!(until_closed(&mut c).is_empty(), "a silent client got an answer");
    }
}
