//! Every way of running work besides the pre-forked pool, with real processes: post-forking
//! (`postfork`), the supervised worker (`supervised`), the plain daemon (`plain`), task groups
//! beside an HTTP pool (`tasks`), and the manager's hooks.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The live (not zombie) children of `parent`, read from the kernel's list of them.
fn live_children(parent: i32) -> usize {
    let list = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
    list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()).filter(|&p| alive(p)).count()
}

#[test]
fn post_forking_never_exceeds_max_children_under_a_burst_and_loses_no_client() {
    let d = Daemon::serve("postfork", &["--max-children", "3"]);
    d.wait_for_line("postfork: one child per connection", SOON);
    // Twice as many clients as children, each holding its child for a while.
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (most, done, manager) = (Arc::clone(&most), Arc::clone(&done), d.pid());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(live_children(manager), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let clients: Vec<Pending> = (0..6).map(|_| d.get_in_background("/sleep/700")).collect();
    // While the first three are served, the others wait in the listen queue, not refused.
    wait_until(SOON, "three children serving", || live_children(d.pid()) == 3);
    let answers: Vec<(u16, String)> = clients.into_iter().map(|c| c.join().expect("every client is answered")).collect();
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("the sampler");
    for (status, body) in &answers {
        assert_eq!((*status, body.as_str()), (200, "slept 700\n"));
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 3, "{most} children at once with max_children = 3");
    assert_eq!(most, 3, "the burst used every child it could");

    // One child per connection: each has its own pid, and none is left.
    let pids: BTreeSet<String> = (0..4).map(|_| d.get("/pid").1).collect();
    assert_eq!(pids.len(), 4, "a new child for every connection: {pids:?}");
    wait_until(SOON, "every child to have exited", || live_children(d.pid()) == 0);
}

#[test]
fn post_forking_serves_a_classic_handler_and_a_crashed_child_costs_one_client() {
    let d = Daemon::serve("lab_classic", &["--postfork", "--max-children", "2"]);
    d.wait_for_line("manager started", SOON);
    let most = Arc::new(AtomicUsize::new(0));
    let port = d.port();
    let clients: Vec<_> = (0..4).map(|_| std::thread::spawn(move || classic(port, "sleep 600"))).collect();
    while !clients.iter().all(|c| c.is_finished()) {
        most.fetch_max(live_children(d.pid()), Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(2));
    }
    for c in clients {
        assert_eq!(c.join().expect("a client thread").expect("every client is answered"), "slept 600\n");
    }
    let most = most.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} children at once with max_children = 2");
    let a = classic(port, "pid").expect("a pid");
    let b = classic(port, "pid").expect("a pid");
    assert_ne!(a, b, "a child per connection");
    // A child that dies takes its own client only.
    let d2 = Daemon::serve("postfork", &["--max-children", "2"]);
    assert!(d2.try_get("/abort").is_err(), "the aborted child's client gets no answer");
    assert_eq!(d2.get("/"), (200, "hello\n".to_string()));
}

/// Microseconds since midnight of a log line's timestamp (`2026-12-01T09:25:48.253673Z ...`).
fn stamp_us(line: &str) -> i64 {
    let time = line.split('T').nth(1).and_then(|t| t.split('Z').next()).unwrap_or_else(|| panic!("no time in {line:?}"));
    let mut parts = time.split(':');
    let mut field = || parts.next().unwrap_or_else(|| panic!("bad time in {line:?}")).parse::<f64>().unwrap();
    let (h, m, s) = (field(), field(), field());
    ((h * 3600.0 + m * 60.0 + s) * 1e6) as i64
}

#[test]
fn the_supervised_worker_is_started_again_after_respawn_delay() {
    let env = [("SUPERVISED_TICK_MS", "100"), ("SUPERVISED_ROUNDS", "2")];
    let d = Daemon::start_with_env("supervised", &["--respawn-delay", "1500ms"], &env);
    d.wait_for_line("done its rounds: returning", SOON);
    let ended = d.wait_for_line("the supervised worker ended", SOON);
    let spawns = wait_for(SOON, "a second worker", || {
        let s: Vec<String> = d.lines().into_iter().filter(|l| l.contains("worker spawned")).collect();
        (s.len() >= 2).then_some(s)
    });
    let gap_ms = (stamp_us(&spawns[1]) - stamp_us(&ended)).rem_euclid(86_400_000_000) / 1000;
    assert!(gap_ms >= 1490, "started again {gap_ms} ms after it ended, before respawn_delay (1500ms)");
    assert_ne!(spawns[0], spawns[1]);
    d.wait_for_line_where("the new worker running", SOON, |l| l.contains("supervised worker up") && !l.contains(&spawns[0]));
    assert_eq!(d.lines().iter().filter(|l| l.contains("supervised worker on_shutdown")).count(), 1, "on_shutdown ran as it ended");
}

#[test]
fn the_supervised_worker_leaves_by_itself_when_its_supervisor_is_killed() {
    let d = Daemon::start_with_env("supervised", &[], &[("SUPERVISED_TICK_MS", "100")]);
    let worker = d.wait_for_workers(1, SOON)[0];
    d.wait_for_line("tick n=2", SOON);
    d.signal(Signal::SIGKILL);
    wait_until(SOON, "the orphaned worker to leave", || !alive(worker));
    let why = d.wait_for_line_where("the worker's reason", SOON, |l| l.contains("the supervisor is gone") || l.contains("asked to stop: leaving"));
    assert!(why.contains(&format!("pid={worker}")), "{why}");
}

#[test]
fn the_plain_daemon_detaches_reloads_and_stops() {
    let dir = TempDir::new("plain");
    let d = Detached::start_example("plain", &dir, &[]);
    assert_eq!(read_pid(&d.pid_file), Some(d.manager));
    assert_ne!(getsid(d.manager), getsid(std::process::id() as i32), "the daemon has a session of its own");
    wait_until(SOON, "the body to run", || d.log_text().contains("plain daemon running"));
    assert!(children(d.manager).is_empty(), "a plain daemon forks no worker");

    let out = d.control(&["status"]);
    assert!(out.status.success() && text(&out.stdout).contains("plain is running"), "{out:?}");
    let out = d.control(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!((status["mode"].as_str(), status["pid"].as_i64()), (Some("plain"), Some(i64::from(d.manager))));

    // A reload by the control channel, and one by HUP: the body learns of each.
    let out = d.control(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(SOON, "the body to see the reload", || d.log_text().contains("plain daemon reloaded"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.manager), Signal::SIGHUP).expect("HUP");
    wait_until(SOON, "the body to see the second reload", || d.log_text().matches("plain daemon reloaded").count() == 2);

    let out = d.control(&["stop"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!alive(d.manager), "stop returns once the daemon is gone");
    assert!(!d.pid_file.exists(), "the pid file is removed at exit");
    assert!(d.log_text().contains("plain daemon stopping"), "the body returned by itself: {}", d.log_text());
}

/// The tasks example, with its spool, pid file and config file in `dir`.
struct Tasks {
    d: Daemon,
    dir: TempDir,
}

impl Tasks {
    fn start(tag: &str, config: &str, env: &[(&str, &str)]) -> Tasks {
        let dir = TempDir::new(tag);
        write_whole(&dir.path("tasks.toml"), config);
        let (spool, pid, conf) = (dir.path("spool"), dir.path("tasks.pid"), dir.path("tasks.toml"));
        let (spool, pid, conf) = (spool.display().to_string(), pid.display().to_string(), conf.display().to_string());
        let mut all_env = vec![("TASKS_SPOOL", spool.as_str())];
        all_env.extend_from_slice(env);
        let d = Daemon::serve_with_env("tasks", &["--pid-file", &pid, "--config", &conf], &all_env);
        d.wait_for_line("tasks: on_ready", SOON);
        Tasks { d, dir }
    }

    fn job(&self, group: &str, name: &str, ms: u64) {
        let dir = self.dir.path("spool").join(group);
        std::fs::create_dir_all(&dir).expect("the group's spool");
        write_whole(&dir.join(format!("{name}.job")), &ms.to_string());
    }

    fn done(&self, group: &str) -> usize {
        let dir = self.dir.path("spool").join(group);
        std::fs::read_dir(dir).map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "done")).count()).unwrap_or(0)
    }

    fn control(&self, args: &[&str]) -> std::process::Output {
        let pid = self.dir.path("tasks.pid").display().to_string();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--pid-file", &pid]);
        run("tasks", &all)
    }

    fn status(&self) -> Value {
        let out = self.control(&["status", "--json"]);
        assert!(out.status.success(), "status: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status --json: {e}: {}", text(&out.stdout)))
    }

    /// The pools by name, from a status.
    fn pools(status: &Value) -> Vec<(String, Value)> {
        let pools = status["pools"].as_array().cloned().unwrap_or_default();
        pools.into_iter().map(|p| (p["name"].as_str().unwrap_or("?").to_string(), p)).collect()
    }

    fn pool(status: &Value, name: &str) -> Option<Value> {
        Tasks::pools(status).into_iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    /// The pids of a pool's workers.
    fn pids(status: &Value, pool: &str) -> BTreeSet<i64> {
        let workers = status["workers"].as_array().cloned().unwrap_or_default();
        workers.iter().filter(|w| w["pool"].as_str() == Some(pool)).filter_map(|w| w["pid"].as_i64()).collect()
    }

    /// Waits until the pool has `n` workers that are not stopping; returns the status.
    fn wait_size(&self, pool: &str, n: usize) -> Value {
        let mut last = Value::Null;
        let reached = poll_until(SOON, || {
            last = self.status();
            let workers = last["workers"].as_array().cloned().unwrap_or_default();
            let live = workers.iter().filter(|w| w["pool"].as_str() == Some(pool) && w["stopping"].is_null()).count();
            let all = workers.iter().filter(|w| w["pool"].as_str() == Some(pool)).count();
            live == n && all == n
        });
        assert!(reached, "pool {pool}: expected {n} workers; last status: {last:#}");
        last
    }

    fn reload(&self, config: &str) -> std::process::Output {
        write_whole(&self.dir.path("tasks.toml"), config);
        self.control(&["reload"])
    }
}

#[test]
fn an_http_pool_serves_while_two_task_groups_work_and_status_shows_all_three() {
    let t = Tasks::start("three", "", &[]);
    let status = t.status();
    let names: Vec<String> = Tasks::pools(&status).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["main", "convert", "digest"], "{status:#}");
    let kinds: Vec<String> = Tasks::pools(&status).into_iter().map(|(_, p)| p["kind"].as_str().unwrap_or("?").to_string()).collect();
    assert_eq!(kinds, ["prefork", "task (oneshot)", "task (longlived)"]);

    // Both groups at work, and the HTTP pool answers meanwhile.
    for i in 0..3 {
        t.job("convert", &format!("c{i}"), 1500);
        t.job("digest", &format!("d{i}"), 300);
    }
    wait_until(SOON, "some job under way", || {
        let s = t.status();
        let letters = |n: &str| Tasks::pool(&s, n).and_then(|p| p["scoreboard"].as_str().map(String::from)).unwrap_or_default();
        letters("convert").contains('r')
    });
    let (code, body) = t.d.get("/");
    assert_eq!(code, 200, "{body}");
    wait_until(SOON, "every job done", || t.done("convert") == 3 && t.done("digest") == 3);
    assert_eq!(t.d.get("/"), (200, "convert: 3 done, digest: 3 done\n".to_string()));

    // The text status: a line per pool, each with its letters, and the pool of each worker.
    let out = t.control(&["status"]);
    let shown = text(&out.stdout);
    for line in ["  main ", "  convert ", "  digest "] {
        assert!(shown.lines().any(|l| l.starts_with(line) && l.contains('[') && l.contains(']')), "no {line:?} line in:\n{shown}");
    }
    assert!(shown.contains("3 pools"), "{shown}");
}

#[test]
fn a_oneshot_group_grows_with_its_busy_workers_and_shrinks_back() {
    let t = Tasks::start("scale", "", &[]);
    t.wait_size("convert", 1);
    // Six jobs, longer than the scaling checks: the group grows one at a time to max_workers (4).
    for i in 0..6 {
        t.job("convert", &format!("j{i}"), 2500);
    }
    let grown = wait_for(SOON, "four busy convert workers", || {
        let s = t.status();
        let letters = Tasks::pool(&s, "convert")?["scoreboard"].as_str()?.to_string();
        assert!(letters.len() <= 4, "past max_workers: [{letters}]");
        (letters.matches('r').count() == 4).then_some(letters)
    });
    assert_eq!(grown, "rrrr");
    wait_until(SOON, "every job done", || t.done("convert") == 6);
    // Nothing to do: back to `workers` (1), waiting.
    let s = t.wait_size("convert", 1);
    assert_eq!(Tasks::pool(&s, "convert").and_then(|p| p["scoreboard"].as_str().map(String::from)).as_deref(), Some("w"));
    let spawned = t.d.lines().iter().filter(|l| l.contains("worker spawned") && l.contains("pool=convert")).count();
    assert!(spawned >= 7, "each oneshot worker did one job, and one waits: {spawned} spawned");
}

#[test]
fn task_groups_follow_a_reloaded_config_file() {
    let start = "[tasks.extra]\nrun = \"digest\"\nworkers = 2\n";
    let t = Tasks::start("reload", start, &[]);
    let s = t.wait_size("extra", 2);
    let (main, convert, extra) = (Tasks::pids(&s, "main"), Tasks::pids(&s, "convert"), Tasks::pids(&s, "extra"));
    assert_eq!(Tasks::pool(&s, "extra").map(|p| p["group"]["run"].clone()), Some(Value::from("digest")));

    // Resize digest, remove extra: the other pools keep their workers.
    let out = t.reload("[tasks.digest]\nworkers = 3\n");
    assert!(out.status.success(), "{out:?}");
    let s = t.wait_size("digest", 3);
    wait_until(SOON, "the removed group to be gone", || Tasks::pool(&t.status(), "extra").is_none());
    for pid in &extra {
        wait_until(SOON, "a removed group's worker to stop", || !t.d.worker_alive(*pid as i32));
    }
    let line = t.d.wait_for_line_where("the removed group's worker exit", SOON, |l| l.contains("worker exited") && l.contains("pool=extra"));
    assert!(line.contains("exit status 0"), "stopped gracefully: {line}");
    let s2 = t.status();
    assert_eq!(Tasks::pids(&s2, "convert"), convert, "an unchanged group keeps its workers");
    // The HTTP pool's workers are replaced by a new generation on every reload, as before.
    assert!(Tasks::pids(&s2, "main").is_disjoint(&main));
    let digest = Tasks::pids(&s, "digest");

    // A changed group (another function) restarts its workers; the others stay.
    let out = t.reload("[tasks.digest]\nworkers = 3\nrun = \"convert\"\nmodel = \"oneshot\"\nmax_workers = 3\n");
    assert!(out.status.success(), "{out:?}");
    let s = wait_for(SOON, "digest's workers replaced", || {
        let s = t.status();
        let now = Tasks::pids(&s, "digest");
        (now.len() == 3 && now.is_disjoint(&digest)).then_some(s)
    });
    assert_eq!(Tasks::pool(&s, "digest").map(|p| p["group"]["model"].clone()), Some(Value::from("oneshot")));
    assert_eq!(Tasks::pids(&s, "convert"), convert);

    // A broken file changes nothing, and says what is wrong.
    let before = t.status();
    for (broken, says) in [
        ("[tasks.digest]\nworkers = \"many\"\n", "workers"),
        ("[tasks.other]\nrun = \"nosuch\"\n", "nosuch"),
        ("[tasks.digest]\nworkers = 2\nmax_workers = 1\nmodel = \"oneshot\"\n", "max_workers"),
        ("[tasks]\nthis is not toml", "tasks.toml"),
    ] {
        let out = t.reload(broken);
        assert_eq!(out.status.code(), Some(1), "{broken:?} was applied: {out:?}");
        assert!(text(&out.stderr).contains(says), "{broken:?}: {out:?}");
    }
    let after = t.status();
    for pool in ["main", "convert", "digest"] {
        assert_eq!(Tasks::pids(&after, pool), Tasks::pids(&before, pool), "a refused reload moved pool {pool}");
    }
    assert!(Tasks::pool(&after, "other").is_none());
}

#[test]
fn manager_hooks_run_and_one_that_panics_does_not_kill_the_manager() {
    let t = Tasks::start("hooks", "", &[("TASKS_PANIC_ON_RELOAD", "1")]);
    // on_spawn for every first worker (one per pool), before on_ready.
    let lines = t.d.lines();
    let ready_at = lines.iter().position(|l| l.contains("tasks: on_ready")).expect("on_ready ran");
    let spawns = lines[..ready_at].iter().filter(|l| l.contains("tasks: on_spawn")).count();
    assert_eq!(spawns, 3, "{lines:#?}");
    // on_reap sees a worker that failed, with its pool and signal.
    let victim = *Tasks::pids(&t.status(), "digest").iter().next().expect("a digest worker");
    t.d.kill_worker(victim as i32);
    let reaped = t.d.wait_for_line("tasks: on_reap: a worker failed", SOON);
    assert!(reaped.contains("pool=digest") && reaped.contains(&format!("pid={victim}")) && reaped.contains("signal=Some(9)"), "{reaped}");

    // on_reload panics: reported, and the reload and the manager go on.
    let out = t.control(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    let panicked = t.d.wait_for_line("a manager hook panicked; the manager goes on", SOON);
    assert!(panicked.contains("reloaded") && panicked.contains("on_reload panics, as asked"), "{panicked}");
    assert!(alive(t.d.pid()));
    assert_eq!(t.d.get("/").0, 200, "the daemon still serves");

    let mut d = t.d;
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(SOON).success());
    assert!(d.stderr_after_exit().contains("tasks: on_exit"));
    drop(t.dir);
}

#[test]
fn a_group_removed_while_it_works_finishes_its_job_and_is_not_replaced() {
    // A group removed while a job runs: its worker finishes the job, exits 0, and is not
    // replaced; the pool is listed as removed until then.
    let t = Tasks::start("removed", "[tasks.slow]\nrun = \"digest\"\n", &[]);
    t.wait_size("slow", 1);
    t.job("slow", "long", 3000);
    wait_until(SOON, "the job to start", || {
        Tasks::pool(&t.status(), "slow").and_then(|p| p["scoreboard"].as_str().map(|s| s.contains('r'))).unwrap_or(false)
    });
    assert!(t.reload("").status.success());
    let s = t.status();
    assert_eq!(Tasks::pool(&s, "slow").map(|p| p["removed"].clone()), Some(Value::Bool(true)), "{s:#}");
    wait_until(SOON, "the removed group to finish its job", || t.done("slow") == 1);
    wait_until(SOON, "the removed group to be gone", || Tasks::pool(&t.status(), "slow").is_none());
    assert!(!Path::new(&t.dir.path("spool").join("slow").join("long.job")).exists());
}

#[test]
fn print_config_shows_the_task_groups_as_a_file_would_hold_them() {
    let file = ConfigFile::new("tasks-print", "[tasks.extra]\nrun = \"digest\"\nworkers = 2\n");
    let f = file.arg();
    let out = run_program(&example("tasks"), &["--config", &f, "--print-config"]);
    assert!(out.status.success(), "{out:?}");
    let printed = text(&out.stdout);
    for table in ["[tasks.convert]\nrun = \"convert\"\nmodel = \"oneshot\"", "[tasks.digest]\nrun = \"digest\"\nmodel = \"longlived\"", "[tasks.extra]\nrun = \"digest\"\nmodel = \"longlived\"\nworkers = 2"] {
        assert!(printed.contains(table), "no {table:?} in\n{printed}");
    }
    // And it is a config file the program reads back, to the same groups.
    let again = ConfigFile::new("tasks-print-again", &printed);
    let out = run_program(&example("tasks"), &["--config", &again.arg(), "--print-config"]);
    assert!(out.status.success(), "{out:?}");
    let groups = |t: &str| t.find("\n[tasks.").map(|i| t[i..].to_string());
    assert_eq!(groups(&text(&out.stdout)), groups(&printed));
}
