//! What operators read: JSON logs that parse line by line and survive a rotation, and the
//! Prometheus metrics, checked by `promtool`, scraped by a real Prometheus server and read back
//! through its HTTP API, and refused to other users.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

#[test]
fn json_logs_parse_line_by_line_and_survive_a_rotation() {
    let dir = TempDir::new("json-logs");
    let d = Detached::start(&dir, &["--workers", "2", "--log-format", "json"]);
    let port = port_of_json(&d);
    let ask = |path: &str| http_get(port, path).map(|(c, _)| c).unwrap_or(0);
    for i in 0..20 {
        assert_eq!(ask(&format!("/before/{i}")), 404);
    }
    // A handler's panic is a JSON line too, not the default hook's text.
    let _ = http_get(port, "/panic");
    // A span of the program's whose fields are named like the line's keys replaces none.
    assert_eq!(ask("/in-span"), 200);
    let rotated = dir.path("lab.log.1");
    std::fs::rename(&d.log, &rotated).expect("rotate the log");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.manager), Signal::SIGUSR1).expect("USR1");
    wait_until(SOON, "the new log file", || d.log_text().contains("log file reopened"));
    for i in 0..20 {
        assert_eq!(ask(&format!("/after/{i}")), 404);
    }
    let out = d.control(&["stop"]);
    assert!(out.status.success(), "{out:?}");

    let mut paths: BTreeMap<String, usize> = BTreeMap::new();
    let mut roles: BTreeMap<String, usize> = BTreeMap::new();
    let mut panicked = false;
    let mut in_span = false;
    for file in [&rotated, &d.log] {
        let text = std::fs::read_to_string(file).expect("a log file");
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            for field in ["timestamp", "level", "message"] {
                assert!(v.get(field).is_some(), "no {field} in {line}");
            }
            // The process that wrote the line, at the top level, as README says.
            assert!(v.get("span").is_none(), "{line}");
            let role = v["role"].as_str().unwrap_or("none").to_string();
            if role == "worker" {
                assert!(v["slot"].is_u64() && v["pid"].is_u64(), "{line}");
            }
            if role == "manager" {
                assert_eq!(v["pid"].as_u64(), Some(u64::from(d.manager as u32)), "{line}");
                // An event's own pid (a worker it spawned) does not hide the manager's.
                if v["message"] == "worker spawned" {
                    assert!(v["field.pid"].is_u64() && v["field.pid"] != v["pid"], "{line}");
                }
            }
            *roles.entry(role).or_default() += 1;
            if v["message"] == "request" {
                *paths.entry(v["path"].as_str().unwrap_or("").to_string()).or_default() += 1;
            }
            panicked |= v["message"] == "panicked" && v["panic"] == "lab: GET /panic";
            if v["message"] == "in a span of the program's" {
                in_span = true;
                assert!(v["level"] == "INFO" && v["path"] == "/in-span" && v["role"] == "worker", "{line}");
                assert!(v["span.level"] == "the span's" && v["span.path"] == "the span's", "{line}");
            }
        }
    }
    assert!(roles.contains_key("manager") && roles.contains_key("worker"), "{roles:?}");
    assert!(panicked, "the panic is a JSON event");
    assert!(in_span, "the event in the program's span was logged");
    for i in 0..20 {
        for when in ["before", "after"] {
            let path = format!("/{when}/{i}");
            assert_eq!(paths.get(&path), Some(&1), "{path} logged {:?} times", paths.get(&path));
        }
    }
}

/// The port in a JSON log's `listening` event.
fn port_of_json(d: &Detached) -> u16 {
    let text = wait_for(SOON, "the listening event", || {
        let t = d.log_text();
        t.contains("\"listening\"").then_some(t)
    });
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "listening")
        .and_then(|v| v["addr"].as_str().and_then(|a| a.parse::<std::net::SocketAddr>().ok()))
        .map(|a| a.port())
        .expect("an address in the listening event")
}

/// GET `path` from `port`, with HTTP/1.0: status and body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut c = connect(port)?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    read_response(&mut c)
}

#[test]
fn the_metrics_pass_promtool_and_count_what_happened() {
    // No minimum lifetime: the kill below is a failure, not a crash of a worker that just started.
    let d = Daemon::serve("lab", &["--workers", "2", "--metrics-listen", "127.0.0.1:0", "--max-rss", "1G", "--min-worker-lifetime", "0s"]);
    let port = metrics_port(&d);
    let workers = d.wait_for_workers(2, SOON);
    for _ in 0..5 {
        assert_eq!(d.get("/").0, 200);
    }
    d.kill_worker(workers[0]);
    d.wait_for_workers(2, SOON);
    let page = wait_for(SOON, "the page to count the death", || {
        let (code, page) = get(port, "/metrics").ok()?;
        assert_eq!(code, 200, "{page}");
        (sample(&page, "daemon_worker_exits_total{cause=\"failed\",pool=\"main\"}") == Some(1.0)).then_some(page)
    });
    assert_eq!(sample(&page, "daemon_workers{pool=\"main\",state=\"idle\"}"), Some(2.0), "{page}");
    assert!(sample(&page, "daemon_connections_total{pool=\"main\"}").is_some_and(|n| n >= 5.0), "{page}");
    assert_eq!(sample(&page, "daemon_workers_spawned_total{pool=\"main\"}"), Some(3.0), "{page}");
    assert!(page.contains("daemon_worker_rss_bytes{pool=\"main\""), "with max_rss, each worker's memory: {page}");
    // Each pool's work: requests by outcome, their durations, its busy time.
    assert!(sample(&page, "daemon_requests_total{outcome=\"ok\",pool=\"main\"}").is_some_and(|n| n >= 5.0), "{page}");
    assert!(sample(&page, "daemon_request_duration_seconds_count{pool=\"main\"}").is_some_and(|n| n >= 5.0), "{page}");
    assert!(sample(&page, "daemon_request_duration_seconds_bucket{pool=\"main\",le=\"+Inf\"}").is_some_and(|n| n >= 5.0), "{page}");
    assert!(sample(&page, "daemon_pool_busy_seconds_total{pool=\"main\"}").is_some_and(|s| s > 0.0), "{page}");

    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; .ci/run installs it)");
    check.stdin.take().expect("its stdin").write_all(page.as_bytes()).expect("feed promtool");
    let out = check.wait_with_output().expect("promtool's verdict");
    assert!(out.status.success(), "promtool check metrics: {}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(get(port, "/").map(|(c, _)| c).ok(), Some(404));
}

/// GET /metrics as the user `nobody`, in a process of its own (bash's /dev/tcp): the status line.
fn get_as_nobody(port: u16) -> String {
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; head -n 1 <&3");
    let out = Command::new("bash").args(["-c", &script]).uid(65534).gid(65534).output().expect("bash as nobody");
    text(&out.stdout)
}

#[test]
fn only_root_and_the_daemons_user_read_the_metrics_unless_told_otherwise() {
    let d = Daemon::serve("lab", &["--workers", "1", "--metrics-listen", "127.0.0.1:0"]);
    let port = metrics_port(&d);
    assert!(get_as_nobody(port).starts_with("HTTP/1.1 403"), "nobody reads the metrics");
    assert_eq!(get(port, "/metrics").map(|(c, _)| c).ok(), Some(200), "root does");
    drop(d);
    let d = Daemon::serve("lab", &["--workers", "1", "--metrics-listen", "127.0.0.1:0", "--metrics-access", "any"]);
    let port = metrics_port(&d);
    assert!(get_as_nobody(port).starts_with("HTTP/1.1 200"), "with metrics_access = any, anyone does");
}

#[test]
fn connections_of_those_refused_the_metrics_cannot_push_out_a_scrape() {
    let d = Daemon::serve("lab", &["--workers", "1", "--metrics-listen", "127.0.0.1:0"]);
    let port = metrics_port(&d);
    // Two processes of nobody's open connections that never send a byte, 200 at a time, over
    // and over, as the owner scrapes.
    let script = format!(
        "while :; do fds=(); for i in $(seq 200); do exec {{f}}<>/dev/tcp/127.0.0.1/{port} && fds+=($f); done; \
         for f in \"${{fds[@]}}\"; do exec {{f}}>&-; done; done"
    );
    let floods: Vec<Killed> = (0..2)
        .map(|_| Killed(Command::new("bash").args(["-c", &script]).uid(65534).gid(65534).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("bash as nobody")))
        .collect();
    let held = |pid: u32| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    wait_until(SOON, "the flood to hold connections", || floods.iter().all(|f| held(f.0.id()) > 50));
    let mut failed = Vec::new();
    for _ in 0..30 {
        match get(port, "/metrics") {
            Ok((200, _)) => {}
            other => failed.push(format!("{other:?}")),
        }
    }
    drop(floods);
    assert!(failed.is_empty(), "{} of 30 scrapes failed: {failed:?}", failed.len());
}

/// A child process, killed and reaped when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn on_a_wildcard_address_the_owner_check_looks_at_the_connection_itself() {
    // The lookup once compared the listener's address (0.0.0.0, ::) with the client's socket,
    // found nothing, and refused even root.
    for wildcard in ["0.0.0.0:0", "[::]:0"] {
        let d = Daemon::serve("lab", &["--workers", "1", "--metrics-listen", wildcard]);
        let port = metrics_port(&d);
        assert_eq!(get(port, "/metrics").map(|(c, _)| c).ok(), Some(200), "root reads the metrics on {wildcard}");
        assert!(get_as_nobody(port).starts_with("HTTP/1.1 403"), "nobody does not, on {wildcard}");
    }
}

#[test]
fn a_slow_metrics_client_does_not_stall_the_manager() {
    let d = Daemon::serve("lab", &["--workers", "1", "--metrics-listen", "127.0.0.1:0"]);
    let port = metrics_port(&d);
    // Half a request, never finished, from as many clients as the manager serves at once.
    let _silent: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = connect(port).expect("connect");
            c.write_all(b"GET /metr").expect("half a request");
            c
        })
        .collect();
    // The manager still supervises (a killed worker is replaced) and answers a whole request.
    let worker = d.wait_for_workers(1, SOON)[0];
    d.kill_worker(worker);
    wait_until(SOON, "the replacement", || d.workers().iter().any(|&w| w != worker));
    assert_eq!(get(port, "/metrics").map(|(c, _)| c).ok(), Some(200));
}

/// A free port, as the OS picks one (bound, read, released).
#[test]
fn a_real_prometheus_scrapes_the_workers_and_answers_for_them() {
    let d = Daemon::serve("lab", &["--workers", "2", "--metrics-listen", "127.0.0.1:0"]);
    let target = metrics_port(&d);
    let dir = TempDir::new("prometheus");
    let prometheus = Prometheus::scraping(&dir, "daemon", target);
    // Its own HTTP API: the sum of the main pool's workers, as scraped.
    let value = wait_for(Duration::from_secs(60), "Prometheus to have scraped the daemon", || {
        prometheus.query("sum(daemon_workers%7Bpool%3D%22main%22%7D)")
    });
    assert_eq!(value, "2", "Prometheus counts two workers");
    let up = wait_for(SOON, "the target's up", || prometheus.query("up%7Bjob%3D%22daemon%22%7D"));
    assert_eq!(up, "1", "the target is up");
    drop(prometheus);
}
