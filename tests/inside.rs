//! Seeing inside (issue 21) with real processes: the stack of a hung worker in the log before it
//! is stopped (an async handler that spins, a classic one blocked in a system call), `dump` of a
//! live worker and of the manager.

mod support;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use support::*;

/// Quick heartbeats, so a hang is seen in about a second.
const QUICK: [&str; 6] = ["--heartbeat-interval", "100ms", "--heartbeat-timeout", "1s", "--graceful-timeout", "1s"];

/// The log's stack line and the frames after it, once the whole stack is there.
fn logged_stack(d: &Daemon) -> String {
    d.wait_for_line("stack of the worker, taken before it was stopped", SOON);
    wait_for(SOON, "the stack's frames", || {
        let lines = d.lines();
        let start = lines.iter().position(|l| l.contains("stack of the worker"))?;
        let stack: Vec<&String> = lines[start..].iter().take_while(|l| !l.contains(" verdict=")).collect();
        let end = lines[start..].iter().find(|l| l.contains(" verdict="))?;
        Some(format!("{}\n{end}", stack.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n")))
    })
}

#[test]
fn a_spinning_async_handler_is_logged_with_its_stack_before_it_is_stopped() {
    let d = Daemon::serve("lab", &[&QUICK[..], &["--workers", "1", "--max-children", "2"]].concat());
    let victim = d.wait_for_workers(1, SOON)[0];
    let _spinning = d.get_in_background("/spin/30000");
    d.wait_for_request("/spin/30000", SOON);
    let verdict = d.wait_for_line("worker hung", SOON);
    assert!(verdict.contains("taking its stack"), "{verdict}");
    let stack = logged_stack(&d);
    // The spinning function by name, with its file and line (the examples have debug info),
    // and the thread that ran it.
    assert!(stack.contains("lab::routes::spin_for"), "the spinning function in:\n{stack}");
    assert!(stack.contains("lab_routes.rs:"), "its file and line in:\n{stack}");
    assert!(stack.contains(&format!("pid={victim}")) && stack.contains("verdict=no heartbeat"), "{stack}");
    // Every thread of the worker: the acceptor too, found in its wait.
    assert!(stack.contains("\"acceptor\"") && stack.contains("epoll_wait"), "{stack}");
    // Then it is stopped and replaced, as before.
    wait_until(SOON, "the hung worker to be gone", || !d.worker_alive(victim));
    assert_ne!(d.get("/pid").1.trim(), victim.to_string());
}

#[test]
fn a_classic_handler_blocked_in_a_system_call_shows_the_call() {
    let d = Daemon::serve("lab_classic", &["--workers", "1", "--max-children", "2", "--request-timeout", "1s"]);
    let victim = d.wait_for_workers(1, SOON)[0];
    let port = d.port();
    let blocked = std::thread::spawn(move || classic(port, "sleep 30000"));
    let verdict = d.wait_for_line("request past request_timeout", SOON);
    assert!(verdict.contains(&format!("pid={victim}")), "{verdict}");
    let stack = logged_stack(&d);
    // The kernel's view, read before the signal interrupted it, and the frame in the C library.
    assert!(stack.contains(&format!("syscall clock_nanosleep ({})", libc::SYS_clock_nanosleep)), "the system call in:\n{stack}");
    assert!(stack.contains("clock_nanosleep ["), "the call's frame in:\n{stack}");
    assert!(stack.contains("lab_classic::serve"), "the handler in:\n{stack}");
    assert!(blocked.join().expect("the client").is_err() || !d.worker_alive(victim));
    wait_until(SOON, "the blocked worker to be gone", || !d.worker_alive(victim));
}

#[test]
fn dump_shows_a_live_workers_stack_and_leaves_it_serving() {
    let dir = TempDir::new("dump");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve("lab", &["--workers", "2", "--pid-file", &pid_file]);
    let workers = d.wait_for_workers(2, SOON);
    let target = workers[0];
    let target_arg = target.to_string();
    let out = run("lab", &["dump", "--pid", &target_arg, "--pid-file", &pid_file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("thread {target} ")), "the worker's main thread in:\n{shown}");
    assert!(shown.contains("daemon_runtime::worker"), "the worker's frames in:\n{shown}");
    // As JSON, by slot, with every thread answered.
    let out = run("lab", &["dump", "--slot", "0", "--json", "--pid-file", &pid_file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let threads = dump["threads"].as_array().expect("threads");
    assert!(threads.len() >= 2 && threads.iter().all(|t| t["answered"] == true), "{dump}");
    assert_eq!(dump["symbolized"], true, "{dump}");
    // The worker was not stopped: it serves on, and the pool is what it was.
    assert!(d.worker_alive(target));
    for _ in 0..10 {
        assert_eq!(d.get("/").0, 200);
    }
    assert_eq!(d.workers().len(), 2);
    assert!(!d.lines().iter().any(|l| l.contains("worker exited") || l.contains("worker died")), "a worker ended");
    // No pid but its own workers': not the manager, not a stranger.
    for stranger in [d.pid().to_string(), "1".to_string(), std::process::id().to_string()] {
        let out = run("lab", &["dump", "--pid", &stranger, "--pid-file", &pid_file]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(text(&out.stderr).contains("not a live worker of this manager"), "{out:?}");
    }
}

#[test]
fn dump_alone_shows_the_managers_state_and_its_next_wake_up() {
    let dir = TempDir::new("dump-manager");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve("lab", &["--workers", "2", "--heartbeat-timeout", "10s", "--pid-file", &pid_file]);
    d.wait_for_workers(2, SOON);
    let out = run("lab", &["dump", "--json", "--pid-file", &pid_file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(dump["processes"].as_array().map(Vec::len), Some(2), "{dump}");
    assert_eq!(dump["pools"][0]["name"], "main", "{dump}");
    // With heartbeats on, the manager wakes for the next heartbeat deadline, and says so.
    let next = dump["next_wake"]["in_ms"].as_i64().expect("a next wake-up");
    assert!((0..=10_000).contains(&next), "{dump}");
    assert!(dump["next_wake_why"].as_str().is_some_and(|w| w.contains("verdict")), "{dump}");
    let out = run("lab", &["dump", "--pid-file", &pid_file]);
    assert!(text(&out.stdout).contains("next wake-up"), "{out:?}");
}

#[test]
fn utilization_reaches_a_real_prometheus_and_status() {
    let dir = TempDir::new("utilization");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve("lab", &["--workers", "2", "--metrics-listen", "127.0.0.1:0", "--pid-file", &pid_file]);
    let target = metrics_port(&d);
    d.wait_for_workers(2, SOON);
    // One connection always in hand (a request that waits a second, again and again): one of
    // the two workers busy all the time, so the pool's busy seconds grow by one a second.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = d.port();
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = http_get(port, "/sleep/1000");
            }
        })
    };
    let prometheus = Prometheus::scraping(&dir, "daemon", target);
    let busy = wait_for(Duration::from_secs(90), "Prometheus to see one worker busy on average", || {
        let v: f64 = prometheus.query("sum(rate(daemon_pool_busy_seconds_total%7Bpool%3D%22main%22%7D%5B5s%5D))")?.parse().ok()?;
        (0.7..=1.3).contains(&v).then_some(v)
    });
    assert!(busy > 0.0);
    // `status` says the same, as a share of the pool, over the last minute (or what it has
    // seen of it).
    let status = wait_for(SOON, "status to show the pool busy", || {
        let out = run("lab", &["status", "--json", "--pid-file", &pid_file]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let percent = v["pools"][0]["busy"]["percent"].as_f64()?;
        (20.0..=80.0).contains(&percent).then_some(v)
    });
    assert!(status["pools"][0]["requests"].as_u64().is_some_and(|n| n >= 1), "{status}");
    let out = run("lab", &["status", "--pid-file", &pid_file]);
    assert!(text(&out.stdout).contains("% over the last "), "{out:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().expect("the load");
}

#[test]
fn requests_are_counted_by_outcome_in_both_models() {
    // A classic request the manager cuts for its deadline is a timeout; the others are ok.
    let d = Daemon::serve("lab_classic", &["--workers", "1", "--max-children", "2", "--request-timeout", "1s", "--metrics-listen", "127.0.0.1:0"]);
    let metrics = metrics_port(&d);
    d.wait_for_workers(1, SOON);
    for _ in 0..3 {
        assert!(classic(d.port(), "pid").is_ok());
    }
    let _ = classic(d.port(), "sleep 30000");
    let page = wait_for(SOON, "the timeout counted", || {
        let page = http_get(metrics, "/metrics").ok()?.1;
        (sample(&page, "daemon_requests_total{outcome=\"timeout\",pool=\"main\"}") == Some(1.0)).then_some(page)
    });
    let ok = sample(&page, "daemon_requests_total{outcome=\"ok\",pool=\"main\"}").unwrap_or(0.0);
    assert!(ok >= 3.0, "{page}");
    // The slowest request is in the histogram too, at its age (past 1 s).
    assert_eq!(sample(&page, "daemon_request_duration_seconds_count{pool=\"main\"}"), Some(ok + 1.0), "{page}");
    let under_a_second = sample(&page, "daemon_request_duration_seconds_bucket{pool=\"main\",le=\"1\"}").unwrap_or(0.0);
    assert_eq!(under_a_second, ok, "{page}");
    // An async handler that fails: an error; and counts survive the worker's death.
    let dir = TempDir::new("outcomes");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve(
        "lab",
        &["--workers", "1", "--max-children", "2", "--metrics-listen", "127.0.0.1:0", "--min-worker-lifetime", "0s", "--heartbeat-interval", "100ms", "--pid-file", &pid_file],
    );
    let metrics = metrics_port(&d);
    let victim = d.wait_for_workers(1, SOON)[0];
    for _ in 0..4 {
        assert_eq!(d.get("/").0, 200);
    }
    let _ = d.try_get("/panic");
    let count = |page: &str, outcome: &str| sample(page, &format!("daemon_requests_total{{outcome=\"{outcome}\",pool=\"main\"}}")).unwrap_or(0.0);
    let before = wait_for(SOON, "the panic counted", || {
        let page = http_get(metrics, "/metrics").ok()?.1;
        (count(&page, "error") >= 1.0 && count(&page, "ok") >= 4.0).then_some(page)
    });
    // Killed with a request in hand: that request is an error too (its worker could not say).
    let cut = d.get_in_background("/sleep/20000");
    d.wait_for_request("/sleep/20000", SOON);
    wait_until(SOON, "the request's start on the scoreboard", || {
        let out = run("lab", &["status", "--json", "--pid-file", &pid_file]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|v| v["workers"][0]["request_age_ms"].is_u64())
    });
    d.kill_worker(victim);
    wait_until(SOON, "the worker to be gone", || !d.worker_alive(victim));
    assert!(cut.join().is_err());
    // (The pools' work is sampled at most four times a second for the page.)
    let after = wait_for(SOON, "the death reaped, and the request it cut counted", || {
        let page = http_get(metrics, "/metrics").ok()?.1;
        let reaped = sample(&page, "daemon_worker_exits_total{cause=\"failed\",pool=\"main\"}") == Some(1.0);
        (reaped && count(&page, "error") >= count(&before, "error") + 1.0).then_some(page)
    });
    for outcome in ["ok", "error"] {
        assert!(count(&after, outcome) >= count(&before, outcome), "{outcome} went back: {before}\n{after}");
    }
    let busy = |page: &str| sample(page, "daemon_pool_busy_seconds_total{pool=\"main\"}").unwrap_or(0.0);
    assert!(busy(&after) >= busy(&before), "busy time went back");
}

#[test]
fn a_full_listen_queue_is_seen_warned_and_grown_for() {
    // One classic worker, no spares: only the backlog rule grows the pool. A short queue (4),
    // so that it fills, and requests that hold their workers for long.
    let dir = TempDir::new("backlog");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve(
        "lab_classic",
        &["--workers", "1", "--min-spare", "0", "--max-spare", "1", "--max-children", "6", "--backlog", "4", "--pid-file", &pid_file],
    );
    d.wait_for_workers(1, SOON);
    let port = d.port();
    // Each client holds its connection (in the accept queue, or in a worker) for 20 s.
    let clients: Vec<std::net::TcpStream> = (0..14)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            std::io::Write::write_all(&mut c, b"sleep 20000\n").expect("send");
            c
        })
        .collect();
    // The pool grows for what waits, more than one worker at a time, up to max_children.
    let forking = |l: &str| l.split("forking=").nth(1).and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok());
    let grown = d.wait_for_line_where("the pool grown by two or more at once", SOON, |l| l.contains("growing the pool faster") && forking(l).is_some_and(|n| n >= 2));
    assert!(grown.contains("queued="), "{grown}");
    wait_until(SOON, "max_children workers", || d.workers().len() == 6);
    // Six clients are served, the rest wait: the queue is full, said once, with its listener.
    let full = d.wait_for_line("listen queue full", SOON);
    assert!(full.contains(&format!("listener=127.0.0.1:{port}")) && full.contains("limit=4"), "{full}");
    let status = wait_for(SOON, "status to show the queue and what it dropped", || {
        let out = run("lab_classic", &["status", "--json", "--pid-file", &pid_file]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let l = &v["listeners"][0];
        // What waits comes and goes (a dropped connection comes back when the kernel's SYN-ACK
        // is sent again); what was dropped only grows.
        (l["waiting"].as_u64()? >= 1 && l["limit"] == 4 && l["overflows"].as_u64()? >= 1).then_some(v)
    });
    assert_eq!(status["listeners"].as_array().map(Vec::len), Some(1), "{status}");
    let out = run("lab_classic", &["status", "--pid-file", &pid_file]);
    assert!(text(&out.stdout).contains("waiting in the accept queue (length 4"), "{out:?}");
    let said = |what: &str| d.lines().iter().filter(|l| l.contains(what)).count();
    assert!(said("listen queue full") <= said("listen queue drained") + 1, "warned once per episode");
    drop(clients);
}

/// GET `path` as the user `nobody`, in a process of its own (bash's /dev/tcp): the status line
/// and the body.
fn get_as_nobody(port: u16, path: &str) -> String {
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("bash as nobody");
    text(&out.stdout)
}

#[test]
fn probes_answer_an_orchestrator_and_readiness_ends_with_the_stop() {
    assert!(nix::unistd::geteuid().is_root(), "this test probes as another user: run the tests as root");
    let d = Daemon::serve("lab", &["--workers", "2", "--metrics-listen", "127.0.0.1:0", "--graceful-timeout", "20s"]);
    let metrics = metrics_port(&d);
    d.wait_for_workers(2, SOON);
    assert_eq!(http_get(metrics, "/healthz").expect("healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(metrics, "/readyz").expect("readyz"), (200, "ready\n".to_string()));
    // The probes come from outside (a kubelet): anyone may ask them, not for the metrics.
    let probe = get_as_nobody(metrics, "/readyz");
    assert!(probe.starts_with("HTTP/1.1 200") && probe.ends_with("ready\n"), "{probe}");
    assert!(get_as_nobody(metrics, "/metrics").starts_with("HTTP/1.1 403"));
    // A graceful stop with work in hand: not ready any more (no new traffic, please), alive
    // until the work is done.
    let long = d.get_in_background("/sleep/3000");
    d.wait_for_request("/sleep/3000", SOON);
    d.signal(nix::sys::signal::Signal::SIGQUIT);
    let (code, body) = wait_for(SOON, "readyz to say stopping", || {
        let answer = http_get(metrics, "/readyz").ok()?;
        (answer.0 == 503).then_some(answer)
    });
    assert_eq!((code, body.as_str()), (503, "not ready: the daemon is stopping\n"));
    assert_eq!(http_get(metrics, "/healthz").expect("healthz").0, 200);
    assert_eq!(long.join().expect("the long request").0, 200, "finished, not cut");
}

#[test]
fn term_stop_graceful_makes_term_finish_the_work_in_hand() {
    let d = Daemon::serve("lab", &["--workers", "1", "--term-stop", "graceful", "--graceful-timeout", "20s"]);
    d.wait_for_workers(1, SOON);
    let long = d.get_in_background("/sleep/4000");
    d.wait_for_request("/sleep/4000", SOON);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_for_line("term_stop = graceful", SOON);
    // Meanwhile a new client is refused at once (every copy of the listening socket is closed),
    // not left waiting in a queue nobody takes from until the last worker is gone.
    let port = d.port();
    wait_until(SOON, "new connections refused", || {
        matches!(std::net::TcpStream::connect(("127.0.0.1", port)), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(!long.is_finished(), "refused while the request in hand still runs");
    assert_eq!(long.join().expect("the request").0, 200, "TERM let the request finish");
    let mut d = d;
    let status = d.wait_exit(SOON);
    assert_eq!(status.code(), Some(0), "nothing had to be killed");
    // Without it, TERM is the fast stop: the request in hand is cut.
    let d = Daemon::serve("lab", &["--workers", "1", "--graceful-timeout", "20s"]);
    d.wait_for_workers(1, SOON);
    let long = d.get_in_background("/sleep/5000");
    d.wait_for_request("/sleep/5000", SOON);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(long.join().is_err(), "TERM's fast stop cut the request");
}

#[test]
fn a_worker_that_cannot_answer_for_its_stack_is_stopped_anyway() {
    // A stopped process runs no signal handler: the manager waits a second for its stack, logs
    // what the kernel says of its threads, then climbs the ladder as always.
    let d = Daemon::serve("lab", &[&QUICK[..], &["--workers", "1", "--max-children", "2"]].concat());
    let victim = d.wait_for_workers(1, SOON)[0];
    d.signal_worker(victim, nix::sys::signal::Signal::SIGSTOP);
    d.wait_for_line("worker hung", SOON);
    let stack = logged_stack(&d);
    assert!(stack.contains("state T") && stack.contains("did not answer within 1000ms"), "{stack}");
    assert!(stack.contains("no thread answered"), "{stack}");
    wait_until(SOON, "the stopped worker to be killed", || !d.worker_alive(victim));
    assert_ne!(d.get("/pid").1.trim(), victim.to_string(), "replaced");
}

#[test]
fn a_worker_killed_by_a_real_time_signal_is_reaped_and_the_stack_signal_kills_nobody() {
    let d = Daemon::serve("lab", &["--workers", "1", "--max-children", "2", "--min-worker-lifetime", "0s"]);
    let victim = d.wait_for_workers(1, SOON)[0];
    // The stack signal (SIGRTMIN+2) from a stranger: the manager ignores it, a worker answers
    // only its manager.
    let stack_signal = libc::SIGRTMIN() + 2;
    for pid in [d.pid(), victim] {
        // SAFETY: kill(2) takes no memory.
        assert_eq!(unsafe { libc::kill(pid, stack_signal) }, 0);
    }
    assert_eq!(d.get("/pid").1.trim(), victim.to_string(), "the worker serves on");
    // Another real-time signal ends the worker (its default action): its death is reaped and
    // told (nix's waitpid used to reap it and fail to name the signal: the worker was lost).
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGRTMIN() + 5) }, 0);
    let died = d.wait_for_line("killed by a real-time signal", SOON);
    assert!(died.contains(&format!("pid={victim}")), "{died}");
    wait_until(SOON, "a replacement", || d.workers().iter().any(|&p| p != victim));
    assert_ne!(d.get("/pid").1.trim(), victim.to_string());
    assert!(!d.lines().iter().any(|l| l.contains("waitpid failed")));
}

#[test]
fn stacks_asked_by_several_at_once_are_taken_once_for_all() {
    let dir = TempDir::new("dump-many");
    let pid_file = dir.path("lab.pid").display().to_string();
    let d = Daemon::serve("lab", &["--workers", "2", "--pid-file", &pid_file]);
    d.wait_for_workers(2, SOON);
    // Six clients, three for each of two slots, at once: each gets its own worker's stacks, whole.
    let asks: Vec<_> = (0..6)
        .map(|i| {
            let (pid_file, slot) = (pid_file.clone(), (i % 2).to_string());
            std::thread::spawn(move || (slot.clone(), run("lab", &["dump", "--slot", &slot, "--json", "--pid-file", &pid_file])))
        })
        .collect();
    for ask in asks {
        let (slot, out) = ask.join().expect("a dump");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(dump["slot"].to_string(), slot, "{dump}");
        assert!(dump["threads"].as_array().is_some_and(|t| t.iter().all(|t| t["answered"] == true)), "{dump}");
    }
    assert_eq!(d.workers().len(), 2, "nobody was hurt");
}

#[test]
fn a_workers_stack_is_taken_after_the_privilege_drop_and_says_what_it_cannot_read() {
    assert!(nix::unistd::geteuid().is_root(), "this test drops privileges: run the tests as root");
    let d = Daemon::serve("lab", &[&QUICK[..], &["--workers", "1", "--max-children", "2", "--user", "nobody"]].concat());
    d.wait_for_workers(1, SOON);
    let _spinning = d.get_in_background("/spin/30000");
    d.wait_for_line("worker hung", SOON);
    let stack = logged_stack(&d);
    assert!(stack.contains("lab::routes::spin_for"), "the frames come either way:\n{stack}");
    assert!(stack.contains("unreadable: the worker is not dumpable"), "{stack}");
}

#[test]
fn a_full_pending_signal_queue_is_named_when_a_stack_cannot_be_asked() {
    // No real-time signal may be queued for this user (RLIMIT_SIGPENDING 0, which a flood of
    // queued signals by another process of the user would also reach).
    let dir = TempDir::new("sigpending");
    let pid_file = dir.path("lab.pid").display().to_string();
    let lab = example("lab").display().to_string();
    let d = Daemon::start_program(
        std::path::Path::new("prlimit"),
        "lab",
        &["--sigpending=0", "--", &lab, "--workers", "1", "--pid-file", &pid_file, "--listen", "127.0.0.1:0"],
        &[],
    );
    d.wait_for_workers(1, SOON);
    let out = run("lab", &["dump", "--slot", "0", "--pid-file", &pid_file]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("RLIMIT_SIGPENDING"), "{out:?}");
}

#[test]
fn during_an_upgrade_one_manager_answers_the_metrics_and_the_probes() {
    // The new manager's workers take a while to start: the window in which both managers
    // hold the metrics listener.
    let dir = TempDir::new("upgrade-probes");
    let on_child = dir.path("on_child");
    std::fs::write(&on_child, "").expect("write");
    let on_child_env = on_child.display().to_string();
    // Port 0 for both the listener and the metrics: the new manager must take each socket
    // for what it was (they were once taken for each other, and HTTP was served on the metrics
    // port).
    let app = App::start_example_with_env("lab", "upgrade-probes", &["--metrics-listen", "127.0.0.1:0"], None, &[("LAB_ON_CHILD_FILE", &on_child_env)]);
    let metrics = wait_for(SOON, "the metrics address in the log", || {
        let log = app.log_text();
        let line = log.lines().find(|l| l.contains("GET /metrics answered here"))?.to_string();
        port_in(&line.replace("addr=", "listening addr="))
    });
    let port = app.port();
    for _ in 0..20 {
        assert_eq!(http_get(port, "/").expect("a request").0, 200);
    }
    std::fs::write(&on_child, "sleep:2000").expect("write");
    // A scraper and a prober meanwhile, as fast as they can.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let watcher = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ready = http_get(metrics, "/readyz").map(|(c, _)| c).unwrap_or(0);
                let connections = http_get(metrics, "/metrics").ok().and_then(|(_, page)| sample(&page, "daemon_connections_total{pool=\"main\"}"));
                seen.lock().unwrap().push((ready, connections));
            }
        })
    };
    let out = app.upgrade(&[]);
    assert!(out.status.success(), "upgrade: {out:?}\n{}", app.log_text());
    app.settle();
    // A few scrapes of the new manager alone.
    let after = seen.lock().unwrap().len();
    wait_until(SOON, "scrapes after the upgrade", || seen.lock().unwrap().len() >= after + 5);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().expect("the watcher");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 20, "{seen:?}");
    assert!(seen.iter().all(|(ready, _)| *ready == 200), "the service was ready all along: {seen:?}");
    // The daemon's own counters start again with the new manager: once, not back and forth.
    let counts: Vec<f64> = seen.iter().filter_map(|(_, c)| *c).collect();
    let drops = counts.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(drops <= 1, "{drops} drops: {counts:?}");
}
