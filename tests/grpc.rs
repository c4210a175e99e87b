//! HTTP/2 and gRPC through `daemon::http::serve`: curl over h2 (TLS with ALPN) and h2c (prior
//! knowledge); the `grpc` example (a tonic service) called by tonic's client (the
//! `grpc_client` example) over TLS and over h2c, across a reload and an upgrade with no failed
//! call; and a stream past `request_timeout` answered alone, the connection serving on.

mod support;

use std::process::{Command, Output, Stdio};

use support::*;

/// `grpc_client` with these arguments, to its end.
fn client(args: &[&str]) -> Output {
    Command::new(example("grpc_client")).args(args).stdin(Stdio::null()).output().expect("grpc_client")
}

fn tls_args(pki: &Pki) -> Vec<String> {
    vec!["--tls-cert".into(), pki.arg("server.pem"), "--tls-key".into(), pki.arg("server.key")]
}

#[test]
fn daemon_http_speaks_http2_with_alpn_and_with_prior_knowledge() {
    let pki = Pki::new("h2-curl");
    pki.issue("server", "ca", "localhost", 1);
    let tls = tls_args(&pki);
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    args.extend_from_slice(&["--workers", "1", "--tls-alpn", "h2,http/1.1"]);
    let d = Daemon::serve("axum", &args);
    d.wait_for_line("pool ready", SOON);
    let curl = |extra: &[&str], url: String| -> String {
        let out = Command::new("curl").args(["-s", "--max-time", "30", "-w", " %{http_version}"]).args(extra).arg(url).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ca = pki.arg("ca.pem");
    let url = format!("https://localhost:{}/", d.port());
    assert_eq!(curl(&["--cacert", &ca, "--http2"], url.clone()), "hello from axum\n 2", "h2 by ALPN");
    assert_eq!(curl(&["--cacert", &ca, "--http1.1"], url), "hello from axum\n 1.1", "HTTP/1.1 by ALPN");
    drop(d);
    // Plaintext: h2c by prior knowledge, HTTP/1.1 otherwise, on the same port.
    let d = Daemon::serve("axum", &["--workers", "1"]);
    d.wait_for_line("pool ready", SOON);
    let url = format!("http://127.0.0.1:{}/", d.port());
    assert_eq!(curl(&["--http2-prior-knowledge"], url.clone()), "hello from axum\n 2");
    assert_eq!(curl(&[], url), "hello from axum\n 1.1");
}

#[test]
fn a_tonic_client_calls_the_grpc_example_over_tls_and_over_h2c() {
    let pki = Pki::new("grpc-once");
    pki.issue("server", "ca", "localhost", 1);
    let tls = tls_args(&pki);
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    args.extend_from_slice(&["--workers", "2"]);
    let d = Daemon::serve("grpc", &args);
    d.wait_for_line("pool ready", SOON);
    let out = client(&["--url", &format!("https://localhost:{}", d.port()), "--ca", &pki.arg("ca.pem")]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).starts_with("hello, world (worker "), "{out:?}");
    drop(d);
    let d = Daemon::serve("grpc", &["--workers", "2"]);
    d.wait_for_line("pool ready", SOON);
    let out = client(&["--url", &format!("http://127.0.0.1:{}", d.port())]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).starts_with("hello, world (worker "), "{out:?}");
}

#[test]
fn grpc_calls_over_tls_survive_reloads_and_an_upgrade() {
    let pki = Pki::new("grpc-load");
    pki.issue("server", "ca", "localhost", 1);
    let tls = tls_args(&pki);
    let args: Vec<&str> = tls.iter().map(String::as_str).collect();
    let app = App::start_example("grpc", "grpc-load", &args, None);
    let url = format!("https://localhost:{}", app.port());
    calls_survive(&app, &["--url", &url, "--ca", &pki.arg("ca.pem")], 2);
}

#[test]
fn grpc_calls_over_h2c_survive_a_reload_and_an_upgrade() {
    let app = App::start_example("grpc", "grpc-h2c", &[], None);
    let url = format!("http://127.0.0.1:{}", app.port());
    calls_survive(&app, &["--url", &url], 1);
}

/// Calls from four tasks of `grpc_client` (with `client_args`), each taking a moment so that
/// some are in hand at each stop, across `reloads` reloads and an upgrade: none fails.
fn calls_survive(app: &App, client_args: &[&str], reloads: usize) {
    let stop = app.dir.path("stop-calling");
    let calling = Command::new(example("grpc_client"))
        .args(client_args)
        .args(["--until", &stop.display().to_string(), "--tasks", "4", "--sleep-ms", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("grpc_client");
    for _ in 0..reloads {
        let g = generation(app);
        let out = app.control(&["reload"]);
        assert!(out.status.success(), "reload: {out:?}");
        wait_until(SOON, "the new generation ready", || grpc_ready_at(app, g + 1));
    }
    let out = app.upgrade(&[]);
    assert!(out.status.success(), "upgrade: {out:?}\n{}", app.log_text());
    app.settle();
    std::fs::write(&stop, "").expect("stop the client");
    let out = calling.wait_with_output().expect("the client's end");
    let said = text(&out.stdout);
    assert!(out.status.success(), "calls failed: {said} {}", text(&out.stderr));
    let ok: u64 = said.split("ok=").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    assert!(ok > 4, "only {ok} calls: {said}");
}

/// Every worker of the pool is of `generation` and ready.
fn grpc_ready_at(app: &App, generation: u64) -> bool {
    let s = app.status();
    let workers = s["workers"].as_array().cloned().unwrap_or_default();
    s["generation"].as_u64() == Some(generation)
        && !workers.is_empty()
        && workers.iter().all(|w| w["generation"].as_u64() == Some(generation) && (w["state"] == "w" || w["state"] == "r" || w["state"] == "k"))
}

#[test]
fn a_stream_past_request_timeout_is_answered_alone() {
    let d = Daemon::serve("grpc", &["--workers", "1", "--request-timeout", "1s"]);
    d.wait_for_line("pool ready", SOON);
    let url = format!("http://127.0.0.1:{}", d.port());
    let out = client(&["--url", &url, "--sleep-ms", "5000"]);
    assert!(!out.status.success(), "a call past request_timeout must fail: {out:?}");
    assert!(text(&out.stderr).contains("503") || text(&out.stderr).contains("Unavailable"), "{out:?}");
    d.wait_for_line("answering a stream 503: its request ran past request_timeout", SOON);
    // The worker and its other streams serve on.
    let out = client(&["--url", &url]);
    assert!(out.status.success(), "{out:?}");
}
