//! Supervision with real processes: heartbeats that catch a spinning async handler and a blocked
//! classic one, a stalled manager that kills nobody, request deadlines in both models, long
//! requests, memory and CPU limits, crash loops, and the stop ladder's exit status.

mod support;

use std::io::Write;
use std::time::Duration;

use support::*;

/// Quick heartbeats, so a hang is seen in about a second.
const QUICK: [&str; 6] = ["--heartbeat-interval", "100ms", "--heartbeat-timeout", "1s", "--graceful-timeout", "1s"];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
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
fn a_blocked_async_worker_takes_at_most_one_client_nobody_serves() {
    // A handler blocks its worker's runtime (a blocking call in an async fn). No heartbeat
    // timeout: the worker stays blocked for the whole test. Its acceptor thread still runs, but
    // once its runtime has not taken up one connection, it takes no more, and the others accept
    // the rest.
    let d = Daemon::serve("lab", &["--workers", "2", "--max-children", "2", "--heartbeat-timeout", "off"]);
    d.wait_for_workers(2, SOON);
    // Idle keep-alive clients on both workers raise each one's fair share of connections, so
    // the share alone would let the blocked worker take several more (3 to 5 of 10 before the rule).
    let mut idle: Vec<std::net::TcpStream> = (0..8).map(|_| d.connect()).collect();
    for c in &mut idle {
        c.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n").expect("a request");
        assert_eq!(read_one_response(c), "hello\n");
    }
    let mut block = d.connect();
    block.write_all(b"GET /block/600000 HTTP/1.1\r\nHost: lab\r\n\r\n").expect("the blocking request");
    d.wait_for_request("/block/600000", SOON);
    let blocked = d.wait_for_holders(std::slice::from_ref(&block), SOON)[0];
    // A burst of new clients: all are accepted, and the blocked worker holds one of them at most.
    let burst: Vec<std::net::TcpStream> = (0..10).map(|_| d.connect()).collect();
    let holders = d.wait_for_holders(&burst, SOON);
    let taken = holders.iter().filter(|&&h| h == blocked).count();
    assert!(taken <= 1, "the blocked worker took {taken} of 10 new clients that it cannot serve: {holders:?}");
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
    // A long request is judged by long_request_timeout (off here), not request_timeout. (Which
    // worker answers is not asked: a spare that answered an earlier request may be retired.)
    assert_eq!(classic(d.port(), "long 2000").expect("long"), "long 2000\n");
    let judged = d.lines().into_iter().filter(|l| l.contains("request past request_timeout")).collect::<Vec<_>>();
    assert!(judged.iter().all(|l| !l.contains("request=long")), "the long request was judged: {judged:?}");
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

/// A verdict on a limit comes within a bounded time of the crossing, whatever else is set: not
/// at the next unrelated wake-up of the manager (a heartbeat deadline), nor never (none).
const PROMPTLY: Duration = Duration::from_secs(10);

#[test]
fn max_rss_acts_within_a_heartbeat_interval_even_without_heartbeat_timeouts() {
    // One worker with spares to spare: nothing about the pool wakes the manager when it grows.
    let d = Daemon::serve(
        "lab",
        &["--workers", "1", "--max-spare", "1", "--max-children", "2", "--max-rss", "64M", "--heartbeat-interval", "1s", "--heartbeat-timeout", "off"],
    );
    let fat = d.wait_for_workers(1, SOON)[0];
    assert_eq!(d.get("/alloc/100").0, 200);
    let line = d.wait_for_line("worker over max_rss", PROMPTLY);
    assert!(line.contains(&format!("pid={fat}")), "{line}");
    wait_until(SOON, "the fat worker to be gone", || !d.worker_alive(fat));
}

#[test]
fn max_cpu_acts_within_a_heartbeat_interval_in_a_pool_of_four() {
    let d = Daemon::serve("lab", &["--workers", "4", "--max-cpu", "1s", "--heartbeat-interval", "1s", "--heartbeat-timeout", "off"]);
    d.wait_for_workers(4, SOON);
    // Keep-alive: the same worker answers both.
    let mut conn = d.connect();
    conn.write_all(b"GET /pid HTTP/1.1\r\nHost: lab\r\n\r\n").expect("a request");
    let pid: i32 = read_one_response(&mut conn).trim().parse().expect("a pid");
    conn.write_all(b"GET /burn/1500 HTTP/1.1\r\nHost: lab\r\n\r\n").expect("a request");
    assert!(read_one_response(&mut conn).contains("burned"));
    let line = d.wait_for_line("worker over max_cpu", PROMPTLY);
    assert!(line.contains(&format!("pid={pid}")), "{line}");
}

/// The request's age a verdict's log line gives (`request_age=1003ms`).
fn request_age_ms(line: &str) -> Option<u64> {
    line.split("request_age=").nth(1)?.split("ms").next()?.parse().ok()
}

/// A classic request past request_timeout is killed close to its deadline, however many
/// workers the pool has (with one, the pool's own wake-up used to hide the defect; with two or
/// more, the verdict waited for the next heartbeat deadline).
fn classic_deadline_is_kept_with(workers: &str) {
    let d = Daemon::serve("lab_classic", &["--workers", workers, "--request-timeout", "1s", "--graceful-timeout", "1s"]);
    d.wait_for_line("pool ready", SOON);
    let port = d.port();
    let overdue = std::thread::spawn(move || classic(port, "sleep 20000"));
    let line = d.wait_for_line("request past request_timeout", PROMPTLY);
    let age = request_age_ms(&line).unwrap_or_else(|| panic!("a request age in milliseconds: {line}"));
    assert!((1_000..3_000).contains(&age), "killed {age} ms into a request with a 1 s deadline: {line}");
    let answer = overdue.join().expect("the client thread");
    assert!(answer.map_or(true, |a| a.is_empty()), "the overdue request was answered");
}

#[test]
fn a_classic_deadline_is_kept_with_one_worker() {
    classic_deadline_is_kept_with("1");
}

#[test]
fn a_classic_deadline_is_kept_with_two_workers() {
    classic_deadline_is_kept_with("2");
}

#[test]
fn a_classic_deadline_is_kept_with_four_workers() {
    classic_deadline_is_kept_with("4");
}

#[test]
fn a_retiring_classic_worker_keeps_its_request_deadline() {
    // A reload retires the worker that serves a request: the request is still cut at its
    // deadline (2 s), not at the end of graceful_timeout (20 s).
    let file = ConfigFile::new("retiring-deadline", "request_timeout = \"2s\"\n");
    let d = Daemon::serve("lab_classic", &["--workers", "2", "--config", &file.arg(), "--graceful-timeout", "20s"]);
    d.wait_for_line("pool ready", SOON);
    let port = d.port();
    let overdue = std::thread::spawn(move || classic(port, "sleep 60000"));
    d.wait_for_line("sleep 60000", SOON);
    d.signal(Signal::SIGHUP);
    d.wait_for_line("configuration applied", SOON);
    let line = d.wait_for_line("request past request_timeout", PROMPTLY);
    let age = request_age_ms(&line);
    assert!(age.is_some_and(|a| (2_000..5_000).contains(&a)), "cut at {age:?} ms: {line}");
    assert!(overdue.join().expect("the client").map_or(true, |a| a.is_empty()));
}

#[test]
fn after_a_stall_a_new_request_is_judged_by_its_own_deadline() {
    // The manager alone stops (SIGSTOP) for longer than the heartbeat timeout: stamps from before
    // wait one more timeout, but a request that starts after its return is cut at its deadline.
    let dir = TempDir::new("stall-deadline");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve(
        "lab_classic",
        &["--workers", "2", "--request-timeout", "1s", "--heartbeat-interval", "1s", "--heartbeat-timeout", "6s", "--graceful-timeout", "1s", "--pid-file", &pid_file],
    );
    d.wait_for_line("pool ready", SOON);
    // Until both workers have stamped, the manager need not look within a timeout (a worker's
    // first stamp wakes it if a verdict could come sooner): a stop then would not be "away
    // longer than a timeout". A status answered after both stamped is followed by a look that
    // plans by their stamps.
    wait_until(SOON, "both workers' first heartbeats in the status", || {
        let json: serde_json::Value = serde_json::from_slice(&run("lab_classic", &["status", "--json", "--pid-file", &pid_file]).stdout).unwrap_or_default();
        let workers = json["workers"].as_array().cloned().unwrap_or_default();
        workers.len() == 2 && workers.iter().all(|w| w["state"] == "w" && w["last_heartbeat_ms"].as_u64().is_some_and(|a| a < 6_000))
    });
    d.signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(14)); // the stall itself, not a wait for a condition
    d.signal(Signal::SIGCONT);
    d.wait_for_line("the manager was away longer than a timeout", SOON);
    let port = d.port();
    let overdue = std::thread::spawn(move || classic(port, "sleep 60000"));
    let line = d.wait_for_line("request past request_timeout", PROMPTLY);
    let age = request_age_ms(&line);
    assert!(age.is_some_and(|a| (1_000..3_000).contains(&a)), "cut at {age:?} ms, not held by the stall guard: {line}");
    assert!(overdue.join().expect("the client").map_or(true, |a| a.is_empty()));
}

#[test]
fn a_worker_over_max_cpu_is_retired() {
    let d = Daemon::serve("lab", &["--workers", "1", "--max-cpu", "1s", "--heartbeat-interval", "100ms"]);
    let busy = d.wait_for_workers(1, SOON)[0];
    assert_eq!(d.get("/burn/1500").0, 200);
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
    d.wait_for_line("more like this in the last", SOON);
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

/// Processes of nobody's that hold places under a limit of processes, until dropped.
struct Blockers(Vec<std::process::Child>);

impl Blockers {
    fn start(n: usize) -> Blockers {
        use std::os::unix::process::CommandExt;
        Blockers(
            (0..n)
                .map(|_| {
                    std::process::Command::new("sleep")
                        .arg("1000")
                        .uid(65534)
                        .gid(65534)
                        .stdin(std::process::Stdio::null())
                        .spawn()
                        .expect("start sleep as nobody")
                })
                .collect(),
        )
    }
}

impl Drop for Blockers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn one_nobody_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static NOBODY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    NOBODY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Processes of `uid` alive now.
fn processes_of(uid: u32) -> u64 {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|u| u.split_whitespace().next() == Some(&uid.to_string())))
                .unwrap_or(false)
        })
        .count() as u64
}

/// The fork limit needs a user other than root (root is never refused a fork), and only root
/// can start a daemon as another user (the suite runs as root, as CI does).
/// The daemon runs as nobody, with a limit of nobody's processes that leaves `room` places
/// once `blockers` of nobody's own hold theirs: dropping the blockers makes room again.
/// Hold `one_nobody_at_a_time()` for as long as the daemon runs: the limit counts every process
/// of nobody's, so two of these tests at once would change each other's room.
fn fork_limit_test(example_name: &str, extra: &[&str], room: u64, blockers: usize) -> (Daemon, Blockers) {
    assert!(nix::unistd::geteuid().is_root(), "the fork limit test runs the daemon as nobody: run the tests as root");
    let blockers = Blockers::start(blockers);
    let limit = (processes_of(65534) + room).to_string();
    let mut args = vec!["--listen", "127.0.0.1:0", "--user", "nobody"];
    args.extend_from_slice(extra);
    (Daemon::start_with_env(example_name, &args, &[("LAB_NPROC", limit.as_str())]), blockers)
}

#[test]
fn failed_forks_are_retried_with_a_backoff_logged_once_and_the_pool_refills() {
    // The manager and two classic workers fit under the limit; the other two forks fail.
    let dir = TempDir::new("fork-limit");
    let pid_file = dir.path("lab.pid").display().to_string();
    let _nobody = one_nobody_at_a_time();
    let (d, blockers) = fork_limit_test("lab_classic", &["--workers", "4", "--max-children", "4", "--pid-file", &pid_file], 3, 2);
    d.wait_for_line("fork failed; retrying with a backoff", SOON);
    wait_until(SOON, "two workers under the limit", || d.workers().len() == 2);
    wait_until(SOON, "three failed forks in a row", || {
        let status = text(&run("lab_classic", &["status", "--json", "--pid-file", &pid_file, "--user", "nobody"]).stdout);
        status.split("\"fork_failures\":").nth(1).and_then(|n| n.split([',', '}']).next()?.parse::<u32>().ok()).is_some_and(|n| n >= 3)
    });
    // Forks work again: the pool refills at the next try.
    drop(blockers);
    let again = d.wait_for_line("fork works again", SOON);
    let failed: u32 = again.split("failed=").nth(1).and_then(|n| n.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    assert!(failed >= 3, "retried: {again}");
    // Every failure counted, one line said.
    assert_eq!(d.lines().iter().filter(|l| l.contains("fork failed")).count(), 1);
    d.wait_for_workers(4, SOON);
    d.wait_for_line("pool ready", SOON);
}

#[test]
fn a_worker_that_cannot_start_its_thread_is_a_crash_with_its_reason() {
    // The manager and one async worker (two threads) fit; the next worker forks, but cannot start
    // its acceptor thread.
    let _nobody = one_nobody_at_a_time();
    let (d, blockers) = fork_limit_test("lab", &["--workers", "2", "--max-children", "2"], 4, 3);
    let line = d.wait_for_line("worker crashed", SOON);
    assert!(line.contains("cannot start the acceptor thread"), "{line}");
    assert!(!d.lines().iter().any(|l| l.contains("worker ended while stopping")));
    drop(blockers);
    d.wait_for_workers(2, SOON);
    d.wait_for_line("pool ready", SOON);
}

/// The processes whose parent is `pid`, with their state letters.
fn children_states(pid: i32) -> Vec<(i32, char)> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut f = rest.split_whitespace();
            let state = f.next()?.chars().next()?;
            let ppid: i32 = f.next()?.parse().ok()?;
            (ppid == pid).then_some((p, state))
        })
        .collect()
}

#[test]
fn as_pid_1_the_manager_reaps_orphans_and_counts_none_as_a_worker() {
    // A PID namespace of its own, where the manager is the first process, as in a container
    // (the tests run as root, as CI does; a machine that cannot make one fails here, not silently).
    let lab = example("lab");
    let lab = lab.display().to_string();
    let mut d = Daemon::start_program(
        std::path::Path::new("/usr/bin/unshare"),
        "lab as PID 1",
        &["--pid", "--fork", "--mount-proc", "--", &lab, "--listen", "127.0.0.1:0", "--workers", "2"],
        &[("LAB_ORPHANS", "5"), ("RUST_LOG", "debug")],
    );
    // unshare's one child is the manager, PID 1 inside.
    let manager = wait_for(SOON, "the manager inside the namespace", || children(d.pid()).first().copied());
    let line = d.wait_for_line("manager started", SOON);
    assert!(line.contains("manager{pid=1}"), "the manager is PID 1 in its namespace: {line}");
    d.wait_for_line("pool ready", SOON);
    // The orphans come to the manager, die, and are reaped: no zombie stays.
    // Five shells (its own children) and the five sleeps they left (orphans it inherited).
    wait_until(SOON, "ten strangers reaped", || d.lines().iter().filter(|l| l.contains("that was not a worker")).count() >= 10);
    wait_until(SOON, "the two workers alone, and no zombie", || {
        let kids = children_states(manager);
        kids.len() == 2 && kids.iter().all(|(_, s)| *s != 'Z')
    });
    assert!(!d.lines().iter().any(|l| l.contains("worker died") || l.contains("worker crashed")), "a stranger counted as a worker");
    // TERM from outside reaches it (blocked signals are never dropped, even for an init).
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(manager), Signal::SIGTERM).expect("TERM the manager");
    assert!(d.wait_exit(SOON).success());
}

#[test]
fn supervision_settings_are_applied_on_reload() {
    let dir = TempDir::new("supervision-reload");
    let config = dir.path("lab.toml");
    std::fs::write(&config, "prefork = 1\nmax_children = 2\n").expect("write the config");
    let c = config.display().to_string();
    let d = Daemon::serve("lab_classic", &["--config", &c, "--graceful-timeout", "1s"]);
    d.wait_for_line("pool ready", SOON);
    assert_eq!(classic(d.port(), "sleep 1500").expect("no deadline yet"), "slept 1500\n");
    std::fs::write(&config, "prefork = 1\nmax_children = 2\nrequest_timeout = \"1s\"\n").expect("rewrite the config");
    d.signal(Signal::SIGHUP);
    wait_until(SOON, "the new generation to be ready", || d.lines().iter().filter(|l| l.contains("pool ready")).count() >= 2);
    let port = d.port();
    let overdue = std::thread::spawn(move || classic(port, "sleep 20000"));
    d.wait_for_line("request past request_timeout", SOON);
    let _ = overdue.join().expect("the client thread");
}
