//! Only as many async workers accept as there are CPUs: the others are warm standbys, and one
//! takes a turn as soon as an accepting worker fills up, stalls or dies. And `prefork = auto`.
//! The daemon runs under `taskset -c 0` (one CPU: one turn), so the tests mean the same on any
//! machine.

mod support;

use std::io::Write;
use std::net::TcpStream;

use serde_json::Value;
use support::*;

/// One test at a time: they all pin their daemon to CPU 0, and one of them spins a worker
/// there for seconds, which would hold the others' runtimes back past the stall bound and move
/// their turns for reasons of its own.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn status(pid_file: &str) -> Value {
    let out = run("lab", &["status", "--json", "--pid-file", pid_file]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The pids of the workers holding a turn to accept, and of every ready worker.
fn turns(pid_file: &str) -> (Vec<i64>, Vec<i64>) {
    let s = status(pid_file);
    let workers = s["workers"].as_array().cloned().unwrap_or_default();
    let ready: Vec<&Value> = workers.iter().filter(|w| matches!(w["state"].as_str(), Some("w" | "r"))).collect();
    let pid = |w: &&Value| w["pid"].as_i64();
    (ready.iter().filter(|w| w["accepting"].as_bool() == Some(true)).filter_map(pid).collect(), ready.iter().filter_map(pid).collect())
}

/// The worker that answers `GET /pid` on a new connection.
fn answering(d: &Daemon) -> i64 {
    let (code, body) = d.get("/pid");
    assert_eq!(code, 200, "{body}");
    body.trim().parse().expect("a pid")
}

/// A keep-alive connection that has been answered once (its worker holds it), and that worker.
fn held(d: &Daemon) -> (TcpStream, i64) {
    let mut conn = d.connect();
    conn.write_all(b"GET /pid HTTP/1.1\r\nHost: lab\r\n\r\n").expect("ask");
    let pid = read_one_response(&mut conn).trim().parse().expect("a pid");
    (conn, pid)
}

fn one_cpu_pool(dir: &TempDir, extra: &[&str]) -> (Daemon, String) {
    let pid_file = dir.path("lab.pid").display().to_string();
    let mut args = vec!["--workers", "3", "--pid-file", &pid_file];
    args.extend_from_slice(extra);
    let d = Daemon::serve_on_cpus("lab", "0", &args);
    d.wait_for_workers(3, SOON);
    wait_until(SOON, "three ready workers, one of them accepting", || {
        let (accepting, ready) = turns(&pid_file);
        ready.len() == 3 && accepting.len() == 1
    });
    (d, pid_file)
}

#[test]
fn on_one_cpu_one_worker_accepts_and_the_others_wait_warm() {
    let _one = one_at_a_time();
    let dir = TempDir::new("standby-idle");
    let (d, pid_file) = one_cpu_pool(&dir, &[]);
    let (accepting, _) = turns(&pid_file);
    // Light load: every connection goes to the one accepting worker.
    for _ in 0..20 {
        assert_eq!(answering(&d), accepting[0]);
    }
    let s = status(&pid_file);
    assert_eq!(s["pools"][0]["accept_cap"].as_u64(), Some(1), "{s}");
    let standbys_served: u64 = s["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["pid"].as_i64() != Some(accepting[0]))
        .map(|w| w["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(standbys_served, 0, "a standby took a connection: {s}");
    let shown = text(&run("lab", &["status", "--pid-file", &pid_file]).stdout);
    assert!(shown.contains("accepting: 1 of 3 workers, at most 1 (one per CPU)"), "{shown}");
}

#[test]
fn a_full_worker_hands_its_turn_to_a_standby() {
    let _one = one_at_a_time();
    let dir = TempDir::new("standby-full");
    let (d, pid_file) = one_cpu_pool(&dir, &["--clients", "2"]);
    let (first, _) = turns(&pid_file);
    // Fill the accepting worker: two keep-alive connections it holds.
    let (a, pa) = held(&d);
    let (b, pb) = held(&d);
    assert_eq!((pa, pb), (first[0], first[0]), "both went to the accepting worker");
    // The next connection is a standby's, which now holds the turn.
    let next = answering(&d);
    assert_ne!(next, first[0]);
    wait_until(SOON, "the standby holding the turn", || turns(&pid_file).0 == vec![next]);
    // The full worker, with room again, is a standby itself: one turn still.
    drop((a, b));
    wait_until(SOON, "one turn, among three ready workers", || {
        let (accepting, ready) = turns(&pid_file);
        accepting.len() == 1 && ready.len() == 3
    });
    assert_eq!(answering(&d), next);
}

#[test]
fn a_stalled_worker_s_place_is_taken() {
    let _one = one_at_a_time();
    let dir = TempDir::new("standby-stall");
    let (d, pid_file) = one_cpu_pool(&dir, &["--heartbeat-timeout", "60s"]);
    let (first, _) = turns(&pid_file);
    // The accepting worker's runtime spins for 4 s.
    let spinning = d.get_in_background("/spin/4000");
    wait_for(SOON, "the spin under way", || {
        status(&pid_file)["workers"].as_array()?.iter().find(|w| w["request"].as_str() == Some("GET /spin/4000")).map(|_| ())
    });
    // Its acceptor may take one more connection before it sees the runtime stuck; that one
    // waits for the spin. Every other is answered by the standby that took the turn, well
    // before the spin ends.
    let caught = d.get_in_background("/pid");
    let taken = wait_for(SOON, "a standby with the turn", || turns(&pid_file).0.into_iter().find(|&p| p != first[0]));
    for _ in 0..10 {
        assert_eq!(answering(&d), taken, "a connection went elsewhere than the worker with the turn");
    }
    assert!(!spinning.is_finished(), "the spin ended before the standby was seen serving: the test proves nothing");
    assert_eq!(spinning.join().expect("the spin").0, 200);
    assert_eq!(caught.join().expect("the connection taken before the stall was seen").0, 200);
    // The stalled worker turns again and waits as a standby: still one turn.
    wait_until(SOON, "one turn again", || {
        let (accepting, ready) = turns(&pid_file);
        accepting == vec![taken] && ready.len() == 3
    });
}

#[test]
fn a_dead_worker_s_turn_passes_to_a_standby() {
    let _one = one_at_a_time();
    let dir = TempDir::new("standby-kill");
    let (d, pid_file) = one_cpu_pool(&dir, &[]);
    let (first, _) = turns(&pid_file);
    d.kill_worker(first[0] as i32);
    let next = wait_for(SOON, "another worker with the turn", || turns(&pid_file).0.into_iter().find(|&p| p != first[0]));
    assert_eq!(answering(&d), next);
    // The replacement is a standby: the turn is not counted twice.
    wait_until(SOON, "three ready workers, one turn", || {
        let (accepting, ready) = turns(&pid_file);
        accepting.len() == 1 && ready.len() == 3
    });
}

#[test]
fn a_frozen_worker_s_turn_is_taken_by_a_standby() {
    let _one = one_at_a_time();
    // A stopped process cannot give its turn back, and with heartbeats off nothing would stop
    // it: a standby sees connections wait while the pool accepts none, and accepts too.
    let dir = TempDir::new("standby-frozen");
    let (d, pid_file) = one_cpu_pool(&dir, &["--heartbeat-interval", "200ms", "--heartbeat-timeout", "off"]);
    let (first, _) = turns(&pid_file);
    d.signal_worker(first[0] as i32, Signal::SIGSTOP);
    let waiting = d.get_in_background("/pid");
    let (code, body) = waiting.join().expect("a connection while the turn holder is frozen");
    let frozen = first[0];
    let thawed = || d.signal_worker(frozen as i32, Signal::SIGCONT);
    if code != 200 || body.trim().parse::<i64>().ok() == Some(frozen) {
        thawed();
        panic!("answered {code} {body:?} while {frozen} was frozen");
    }
    d.wait_for_line("this standby accepts too", SOON);
    assert_ne!(answering(&d), frozen);
    // Thawed, the old holder serves again; the turns settle back to the bound as they are
    // given back.
    thawed();
    wait_until(SOON, "every worker ready again", || turns(&pid_file).1.len() == 3);
    for _ in 0..5 {
        assert_eq!(d.get("/").0, 200);
    }
}

#[test]
fn prefork_auto_is_one_worker_per_cpu_and_says_why() {
    let _one = one_at_a_time();
    let dir = TempDir::new("auto");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve_on_cpus("lab", "0", &["--workers", "auto", "--pid-file", &pid_file]);
    d.wait_for_workers(1, SOON);
    let s = wait_for(SOON, "status", || Some(status(&pid_file)).filter(|s| !s.is_null()));
    assert_eq!(s["pools"][0]["limits"]["workers"].as_u64(), Some(1), "{s}");
    let why = s["pools"][0]["workers_auto"].as_str().unwrap_or_default();
    assert!(why.contains("affinity 1 of"), "{s}");
    let shown = text(&run("lab", &["status", "--pid-file", &pid_file]).stdout);
    assert!(shown.contains("prefork = auto: 1 worker (1 CPU: affinity 1 of"), "{shown}");
    assert_eq!(d.get("/").0, 200);

    // Every source takes the word; --print-config shows it and the number it gave.
    let config = dir.path("lab.toml");
    std::fs::write(&config, "workers = \"auto\"\n").expect("config");
    let c = config.display().to_string();
    for (args, env) in [
        (vec!["--print-config", "--workers", "auto"], vec![]),
        (vec!["--print-config"], vec![("DAEMON_PREFORK", "auto")]),
        (vec!["--print-config", "--config", c.as_str()], vec![]),
    ] {
        let out = std::process::Command::new("taskset")
            .args(["-c", "0"])
            .arg(example("lab"))
            .args(&args)
            .envs(env)
            .output()
            .expect("lab --print-config");
        let printed = text(&out.stdout);
        assert!(printed.contains("prefork = \"auto\"") && printed.contains("auto = 1: 1 CPU: affinity 1 of"), "{args:?}: {printed}");
    }
    // At most max_children, and said so.
    let out = std::process::Command::new(example("lab")).args(["--print-config", "--workers", "auto", "--max-children", "1"]).output().expect("lab");
    let printed = text(&out.stdout);
    assert!(printed.contains("auto = 1: 1 CPU:") || printed.contains("at most max_children (1)"), "{printed}");
    // A word that is not a number nor auto is refused with the rule.
    let out = std::process::Command::new(example("lab")).args(["--print-config", "--workers", "many"]).output().expect("lab");
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("or auto"), "{}", text(&out.stderr));
}
