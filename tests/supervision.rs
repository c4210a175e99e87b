//! Supervision with real processes: heartbeats that catch a spinning async handler and a blocked
//! classic one, a stalled manager that kills nobody, request deadlines in both models, long
//! requests, memory and CPU limits, crash loops, and the stop ladder's exit status.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// Quick heartbeats, so a hang is seen in about a second.
const QUICK: [&str; 6] = ["--heartbeat-interval", "100ms", "--heartbeat-timeout", "1s", "--graceful-timeout", "1s"];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

/// One command line to `lab_classic`, and its answer (the connection closes after it).
fn classic(port: u16, line: &str) -> std::io::Result<String> {
    let mut c = connect(port)?;
    c.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    c.read_to_string(&mut answer)?;
    Ok(answer)
}

/// The worker that answers `/pid` (or `pid` for lab_classic).
fn pid_via(d: &Daemon, classic_model: bool) -> i32 {
    let body = if classic_model { classic(d.port(), "pid").expect("pid") } else { d.get("/pid").1 };
    body.trim().parse().unwrap_or_else(|_| panic!("not a pid: {body:?}"))
}

#[test]
fn a_spinning_async_handler_is_found_hung_and_replaced() {
    let d = Daemon::serve("lab", &with(&QUICK, &["--workers", "1", "--max-children", "2"]));
    let victim = d.wait_for_workers(1, SOON)[0];
    let spinning = d.get_in_background("/spin/30000");
    d.wait_for_request("/spin/30000", SOON);
    let line = d.wait_for_line("worker hung", SOON);
    for field in ["slot=0", &format!("pid={victim}"), "state=r", "request=GET /spin/30000"] {
        assert!(line.contains(field), "{field} in {line}");
    }
    wait_until(SOON, "the hung worker to be gone", || !d.worker_alive(victim));
    // Its connection is lost with it; the pool serves again.
    assert!(spinning.join().is_err(), "the spinning request cannot be answered");
    let replacement = pid_via(&d, false);
    assert_ne!(replacement, victim);
}

#[test]
fn a_blocked_classic_handler_is_found_hung_and_replaced_but_a_beating_one_is_not() {
    let d = Daemon::serve("lab_classic", &with(&QUICK, &["--workers", "1", "--max-children", "2"]));
    let victim = d.wait_for_workers(1, SOON)[0];
    // Long work that says it is alive is left alone...
    assert_eq!(classic(d.port(), "work 2500").expect("work"), "worked 2500\n");
    assert!(d.worker_alive(victim), "a worker that beats its heartbeat was killed");
    assert!(!d.lines().iter().any(|l| l.contains("worker hung")));
    // ...work that blocks without a word is not.
    let port = d.port();
    let blocked = std::thread::spawn(move || classic(port, "sleep 30000"));
    let line = d.wait_for_line("worker hung", SOON);
    assert!(line.contains(&format!("pid={victim}")) && line.contains("request=sleep 30000"), "{line}");
    wait_until(SOON, "the blocked worker to be gone", || !d.worker_alive(victim));
    let _ = blocked.join().expect("the client thread");
    assert_ne!(pid_via(&d, true), victim);
}

#[test]
fn a_stalled_manager_kills_nobody_for_it() {
    let d = Daemon::serve("lab", &with(&QUICK, &["--workers", "2"]));
    let workers = d.wait_for_workers(2, SOON);
    d.wait_for_line("pool ready", SOON);
    // Everything stops (as on a suspended machine): no stamp, no judging, for three timeouts.
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(d.pid()), Signal::SIGSTOP).expect("SIGSTOP the group");
    std::thread::sleep(Duration::from_secs(3)); // the stall itself, not a wait for a condition
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(d.pid()), Signal::SIGCONT).expect("SIGCONT the group");
    d.wait_for_line("the manager was away longer than a timeout", SOON);
    // Two more timeouts after: the same workers serve, none was judged.
    let settled = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < settled {
        assert_eq!(d.get("/").0, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.workers(), workers, "a worker was replaced");
    assert!(!d.lines().iter().any(|l| l.contains("worker hung")), "a worker was judged hung");
}

#[test]
fn a_classic_request_past_its_deadline_kills_its_worker() {
    let d = Daemon::serve("lab_classic", &["--workers", "1", "--max-children", "2", "--request-timeout", "1s", "--graceful-timeout", "1s"]);
    let victim = d.wait_for_workers(1, SOON)[0];
    let port = d.port();
    let overdue = std::thread::spawn(move || classic(port, "sleep 20000"));
    let line = d.wait_for_line("request past request_timeout", SOON);
    assert!(line.contains(&format!("pid={victim}")) && line.contains("request=sleep 20000"), "{line}");
    wait_until(SOON, "the overdue worker to be gone", || !d.worker_alive(victim));
    let answer = overdue.join().expect("the client thread");
    assert!(answer.map_or(true, |a| a.is_empty()), "the overdue request was answered");
    // A long request is judged by long_request_timeout (off here), not request_timeout.
    let worker = pid_via(&d, true);
    assert_eq!(classic(d.port(), "long 2000").expect("long"), "long 2000\n");
    assert!(d.worker_alive(worker));
}

#[test]
fn an_async_request_past_its_deadline_loses_its_connection_not_its_worker() {
    let d = Daemon::serve("lab", &["--workers", "1", "--request-timeout", "1s", "--long-request-timeout", "20s"]);
    let worker = d.wait_for_workers(1, SOON)[0];
    let overdue = d.get_in_background("/sleep/20000");
    let line = d.wait_for_line("its request ran past request_timeout", SOON);
    assert!(line.contains("peer="), "{line}");
    assert!(overdue.join().is_err(), "the overdue request was answered");
    assert_eq!(pid_via(&d, false), worker, "the worker goes on");
    // Marked long: judged by long_request_timeout.
    assert_eq!(d.get("/long/2000"), (200, "long 2000\n".to_string()));
}

#[test]
fn status_shows_request_ages_heartbeats_and_memory() {
    let dir = TempDir::new("status-ages");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve("lab", &["--workers", "1", "--pid-file", &pid_file, "--heartbeat-interval", "100ms"]);
    d.wait_for_line("pool ready", SOON);
    let pending = d.get_in_background("/sleep/3000");
    d.wait_for_request("/sleep/3000", SOON);
    let json = wait_for(SOON, "a request age in the status", || {
        let out = run("lab", &["status", "--json", "--pid-file", &pid_file]);
        let text = text(&out.stdout);
        (text.contains("\"request_age_ms\":") && !text.contains("\"request_age_ms\":null")).then_some(text)
    });
    for field in ["\"last_heartbeat_ms\":", "\"rss\":", "\"cpu_ms\":", "\"crash_loop\":false", "\"request\":\"GET /sleep/3000\""] {
        assert!(json.contains(field), "{field} in {json}");
    }
    assert!(!json.contains("\"rss\":0,"), "memory measured: {json}");
    let shown = text(&run("lab", &["status", "--pid-file", &pid_file]).stdout);
    assert!(shown.contains("request") && shown.contains("rss"), "{shown}");
    assert_eq!(pending.join().expect("the request").0, 200);
}

#[test]
fn a_worker_over_max_rss_is_retired_gracefully_and_replaced() {
    let d = Daemon::serve("lab", &["--workers", "1", "--max-rss", "64M", "--heartbeat-interval", "100ms"]);
    let fat = d.wait_for_workers(1, SOON)[0];
    // The request that grows it is answered: the worker is retired after, gracefully.
    assert_eq!(d.get("/alloc/100").0, 200);
    let line = d.wait_for_line("worker over max_rss", SOON);
    assert!(line.contains(&format!("pid={fat}")), "{line}");
    wait_until(SOON, "the fat worker to be gone", || !d.worker_alive(fat));
    assert!(d.lines().iter().any(|l| l.contains("lab worker on_shutdown") && l.contains(&format!("pid={fat}"))), "retired gracefully");
    assert_ne!(pid_via(&d, false), fat);
}

#[test]
fn a_worker_over_max_cpu_is_retired() {
    let d = Daemon::serve("lab", &["--workers", "1", "--max-cpu", "1s", "--heartbeat-interval", "100ms"]);
    let busy = d.wait_for_workers(1, SOON)[0];
    assert_eq!(d.get("/spin/1500").0, 200);
    let line = d.wait_for_line("worker over max_cpu", SOON);
    assert!(line.contains(&format!("pid={busy}")), "{line}");
    wait_until(SOON, "the busy worker to be gone", || !d.worker_alive(busy));
}

#[test]
fn handlers_that_abort_in_a_loop_put_the_pool_in_a_crash_loop_and_it_recovers() {
    let dir = TempDir::new("crash-loop");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve("lab", &["--workers", "2", "--pid-file", &pid_file, "--min-worker-lifetime", "500ms", "--restart-intensity", "3"]);
    d.wait_for_line("pool ready", SOON);
    let port = d.port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let hammer = std::thread::spawn(move || {
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = http_get(port, "/abort");
        }
    });
    d.wait_for_line("the pool is in a crash loop", SOON);
    let status = text(&run("lab", &["status", "--json", "--pid-file", &pid_file]).stdout);
    assert!(status.contains("\"crash_loop\":true"), "{status}");
    // In the loop, forks come one each 10 s: in the next 4 s, at most one.
    let spawned = || d.lines().iter().filter(|l| l.contains("worker spawned")).count();
    let before = spawned();
    std::thread::sleep(Duration::from_secs(4)); // counting what happens in a window, not waiting
    assert!(spawned() <= before + 1, "{} forks in 4 s of a crash loop", spawned() - before);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hammer.join().expect("the hammer");
    // Identical deaths are counted, not logged one by one.
    d.wait_for_line("more exits like this one", SOON);
    // Once a worker lives past min_worker_lifetime, the loop is over and the pool refills.
    d.wait_for_line("the crash loop is over", SOON);
    d.wait_for_workers(2, SOON);
    assert_eq!(d.get("/").0, 200);
}

#[test]
fn a_stop_that_has_to_kill_says_so_in_the_exit_status() {
    let mut d = Daemon::serve("lab", &["--workers", "1", "--graceful-timeout", "1s", "--heartbeat-timeout", "off"]);
    d.wait_for_line("pool ready", SOON);
    let _spinning = d.get_in_background("/spin/20000");
    d.wait_for_request("/spin/20000", SOON);
    d.signal(Signal::SIGQUIT);
    let status = d.wait_exit(SOON);
    assert_eq!(status.code(), Some(3), "QUIT, TERM after graceful_timeout: {status}");
    assert!(d.stderr_after_exit().contains("worker did not stop in time and was killed"));
}
