//! `daemon::http::serve` (the `http` feature) with real processes and sockets: the axum example
//! under keep-alive clients, graceful stops, the drain window, request deadlines and clients
//! that send nothing or garbage.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::*;

fn request(stream: &mut TcpStream, path: &str) {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).expect("a request");
}

/// One response (its head lowercased) with its `content-length` body.
fn response(stream: &mut TcpStream) -> (String, String) {
    let head = read_head(stream).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("the body");
    (head, String::from_utf8_lossy(&body).into_owned())
}

fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(stream.read(&mut b), Ok(0))
}

#[test]
fn keep_alive_requests_share_one_connection_and_one_router_per_worker() {
    let d = Daemon::serve("axum", &["--workers", "1"]);
    let mut c = d.connect();
    let mut pids = Vec::new();
    for _ in 0..5 {
        request(&mut c, "/worker");
        let (head, body) = response(&mut c);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        pids.push(body);
    }
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "one worker served them all: {pids:?}");
    // Pipelined: two requests in one write, two answers in order.
    c.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n").expect("two requests");
    assert_eq!(response(&mut c).1, "hello\n");
    assert_eq!(response(&mut c).1, "hello from axum\n");
}

#[test]
fn a_stop_answers_the_request_in_hand_with_connection_close() {
    let mut d = Daemon::serve("axum", &["--workers", "1"]);
    let mut c = d.connect();
    request(&mut c, "/sleep/1500");
    d.wait_for_line("sleeping ms=1500", SOON);
    d.signal(Signal::SIGQUIT);
    let (head, body) = response(&mut c);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "slept 1500\n");
    assert!(head.contains("connection: close"), "the last answer says so: {head}");
    assert!(closed_by_server(&mut c), "then the connection ends");
    assert!(d.wait_exit(SOON).success());
}

#[test]
fn an_idle_keep_alive_client_that_asks_during_the_drain_is_served_then_closed() {
    let mut d = Daemon::serve("axum", &["--workers", "1", "--drain-timeout", "20s"]);
    let mut c = d.connect();
    request(&mut c, "/hello");
    assert_eq!(response(&mut c).1, "hello\n");
    d.signal(Signal::SIGQUIT);
    d.wait_for_line("worker stopping gracefully", SOON);
    // The worker is stopping, the connection idle: its next request is still served.
    request(&mut c, "/hello");
    let (head, body) = response(&mut c);
    assert_eq!(body, "hello\n");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_by_server(&mut c));
    assert!(d.wait_exit(SOON).success());
}

#[test]
fn at_the_drain_end_idle_and_silent_connections_are_closed_cleanly() {
    let mut d = Daemon::serve("axum", &["--workers", "1", "--drain-timeout", "300ms", "--graceful-timeout", "60s"]);
    // One that has had an answer and waits, one that never sent a byte.
    let mut idle = d.connect();
    request(&mut idle, "/hello");
    assert_eq!(response(&mut idle).1, "hello\n");
    let mut silent = d.connect();
    // Both are the worker's before the stop: a request on a third proves the accept happened.
    let mut probe = d.connect();
    request(&mut probe, "/hello");
    assert_eq!(response(&mut probe).1, "hello\n");
    let asked = Instant::now();
    d.signal(Signal::SIGQUIT);
    assert!(closed_by_server(&mut idle), "the idle keep-alive connection is closed, without an answer");
    assert!(closed_by_server(&mut silent), "the silent one too");
    // Long before graceful_timeout: nothing held the stop.
    assert!(d.wait_exit(SOON).success());
    assert!(asked.elapsed() < Duration::from_secs(30), "the stop took {:?}", asked.elapsed());
}

#[test]
fn request_timeout_closes_a_request_past_it_and_the_worker_goes_on() {
    let d = Daemon::serve("axum", &["--workers", "1", "--request-timeout", "500ms"]);
    let pid = d.wait_for_workers(1, SOON)[0];
    let mut slow = d.connect();
    request(&mut slow, "/sleep/20000");
    d.wait_for_line("sleeping ms=20000", SOON);
    // Closed without an answer, well before the handler's 20 s.
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer: {:?}", String::from_utf8_lossy(&rest));
    d.wait_for_line("ran past request_timeout", SOON);
    let mut c = d.connect();
    request(&mut c, "/worker");
    assert_eq!(response(&mut c).1, format!("pid {pid}\n"), "the same worker serves on");
}

#[test]
fn garbage_and_half_requests_cost_the_worker_nothing() {
    let d = Daemon::serve("axum", &["--workers", "1"]);
    let pid = d.wait_for_workers(1, SOON)[0];
    let mut bad = d.connect();
    bad.write_all(b"\x16\x03\x01 not http at all\r\n\r\n").expect("garbage");
    let mut rest = Vec::new();
    let _ = bad.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 400"), "{text}");
    let mut half = d.connect();
    half.write_all(b"GET /hello HTTP/1.1\r\nHo").expect("half a request");
    drop(half);
    let mut c = d.connect();
    request(&mut c, "/worker");
    assert_eq!(response(&mut c).1, format!("pid {pid}\n"));
    assert_eq!(d.wait_for_workers(1, SOON), vec![pid], "no worker was replaced");
}

#[test]
fn axum_serves_from_the_pool_and_stops_gracefully() {
    let mut d = Daemon::serve("axum", &["--workers", "2"]);
    assert_eq!(d.get("/"), (200, "hello from axum\n".to_string()));
    let (status, body) = d.get("/worker");
    assert_eq!(status, 200);
    assert!(body.starts_with("pid "), "{body}");
    d.wait_for_line_where("a request log line", SOON, |l| l.contains("request") && l.contains("status=200") && l.contains("path=\"/worker\""));
    let pending = d.get_in_background("/sleep/1000");
    d.wait_for_line("sleeping ms=1000", SOON);
    d.signal(Signal::SIGQUIT);
    let (status, body) = pending.join().expect("the in-flight request");
    assert_eq!((status, body.as_str()), (200, "slept 1000\n"));
    assert!(d.wait_exit(SOON).success());
}
