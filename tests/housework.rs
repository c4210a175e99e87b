//! Daemon housework with real processes and files: detach, pid file, log file and its reopening,
//! privileges, control commands, start-stop-daemon, systemd's notify protocol, and foreign children.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::*;

#[test]
fn start_detaches_and_returns_once_the_workers_accept() {
    let dir = TempDir::new("start");
    let d = Detached::start(&dir, &["--workers", "2"]);
    // `start` returned: the daemon must already accept, with no retry.
    let (status, body) = http_get(d.port(), "/").expect("the daemon accepts as soon as start returns");
    assert_eq!((status, body.as_str()), (200, "hello\n"));
    assert!(alive(d.manager));
    assert_ne!(getsid(d.manager), getsid(std::process::id() as i32), "the daemon has a session of its own");
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", d.manager)).expect("the manager's cwd");
    assert_eq!(cwd, Path::new("/"), "a detached daemon does not hold its start directory");
    wait_until(SOON, "two workers", || children(d.manager).len() == 2);

    let out = d.control(&["stop"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!alive(d.manager), "stop returns once the manager is gone");
    assert!(!d.pid_file.exists(), "the pid file is removed at exit");
}

#[test]
fn a_failed_start_says_why_and_exits_non_zero() {
    let dir = TempDir::new("fail");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let (p, l) = (dir.path("lab.pid").display().to_string(), dir.path("lab.log").display().to_string());
    let out = run("lab", &["start", "--listen", &addr, "--pid-file", &p, "--log-file", &l]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"), "{err}");
    assert!(!dir.path("lab.pid").exists(), "a failed start leaves no pid file");

    let out = run("lab", &["start", "--user", "no-such-user-here", "--pid-file", &p]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("no such user"), "{out:?}");
}

#[test]
fn a_pid_file_a_stranger_locked_is_not_taken_for_a_running_manager() {
    // Anyone who may write in the directory can write their own pid in the file and lock it:
    // the start refuses (it cannot take the file), and says the holder is not a verified manager.
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("pidfile-stranger");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).expect("a sticky directory anyone may write in");
    let p = dir.path("lab.pid").display().to_string();
    // flock(1) takes the lock in the process the file names, then says so from its child.
    let script = format!("echo $$ > {p}; exec flock -x {p} -c 'echo locked; exec sleep 600'");
    let mut stranger = std::process::Command::new("bash")
        .args(["-c", &script])
        .uid(65534)
        .gid(65534)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("bash as nobody");
    let mut said = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stranger.stdout.take().expect("its stdout")), &mut said).expect("its word");
    assert_eq!(said.trim(), "locked");
    let out = run("lab", &["start", "--listen", "127.0.0.1:0", "--pid-file", &p, "--log-file", &dir.path("lab.log").display().to_string()]);
    // flock and the sleep it started, by their group.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(stranger.id() as i32), Signal::SIGKILL);
    let _ = stranger.wait();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains(&format!("locked by pid {}, which is not a verified manager", stranger.id())) && err.contains("nothing was signalled"), "{err}");
    assert!(!err.contains("already running"), "{err}");
}

#[test]
fn the_pid_file_is_locked_and_a_stale_one_is_replaced() {
    let dir = TempDir::new("pidfile");
    let first = Detached::start(&dir, &["--workers", "2"]);
    assert_eq!(read_pid(&first.pid_file), Some(first.manager));

    // A second start with the same pid file refuses, naming the running manager.
    let (p, l) = (first.pid_file.display().to_string(), first.log.display().to_string());
    let out = run("lab", &["start", "--listen", "127.0.0.1:0", "--pid-file", &p, "--log-file", &l]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("already running") && err.contains(&first.manager.to_string()), "{err}");

    // Also when it would meet the first one's address first (its metrics' port): the running
    // manager is named, not the port.
    let metrics = free_port();
    let m = format!("127.0.0.1:{metrics}");
    let other = TempDir::new("pidfile-metrics");
    let with_metrics = Detached::start(&other, &["--workers", "1", "--metrics-listen", &m]);
    let (p2, l2) = (with_metrics.pid_file.display().to_string(), with_metrics.log.display().to_string());
    let out = run("lab", &["start", "--listen", "127.0.0.1:0", "--metrics-listen", &m, "--pid-file", &p2, "--log-file", &l2]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("already running") && err.contains(&with_metrics.manager.to_string()), "{err}");
    assert!(!err.contains("Address already in use"), "{err}");
    // Another daemon (its own pid file) on the same metrics port: the error names the setting
    // and flag it came from.
    let third = TempDir::new("pidfile-third");
    let (p3, l3) = (third.path("lab.pid").display().to_string(), third.path("lab.log").display().to_string());
    let out = run("lab", &["start", "--listen", "127.0.0.1:0", "--metrics-listen", &m, "--pid-file", &p3, "--log-file", &l3]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("metrics_listen") && err.contains("--metrics-listen") && !err.contains("with --listen"), "{err}");
    drop(with_metrics);

    // Workers do not hold the pid file, so its lock dies with the manager alone.
    let workers = wait_for(SOON, "two workers", || Some(children(first.manager)).filter(|w| w.len() == 2));
    for w in &workers {
        let fds = std::fs::read_dir(format!("/proc/{w}/fd")).expect("a worker's descriptors");
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            assert_ne!(target, first.pid_file, "worker {w} holds the pid file");
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.manager), Signal::SIGKILL).expect("kill -9 the manager");
    wait_until(SOON, "the manager to die", || !alive(first.manager));
    let out = first.control(&["status"]);
    assert_eq!(out.status.code(), Some(1), "dead with a pid file: {out:?}");
    // Orphaned workers stop on their own (their parent-death signal).
    wait_until(SOON, "orphaned workers to leave", || workers.iter().all(|w| !alive(*w)));

    let second = Detached::start(&dir, &["--workers", "1"]);
    assert_ne!(second.manager, first.manager);
    assert_eq!(read_pid(&second.pid_file), Some(second.manager), "the stale pid file was replaced");
    assert!(second.log_text().contains("replaced a stale pid file"));
}

#[test]
fn the_log_file_reopens_on_usr1_and_loses_nothing() {
    let dir = TempDir::new("log");
    let d = Detached::start(&dir, &["--workers", "1"]);
    let port = d.port();
    assert_eq!(http_get(port, "/before").expect("a request").0, 404);
    let rotated = dir.path("lab.log.1");
    std::fs::rename(&d.log, &rotated).expect("mv log log.1");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.manager), Signal::SIGUSR1).expect("USR1");
    wait_until(SOON, "the manager to reopen the log", || d.log_text().contains("log file reopened"));
    // The worker reopens on its next wake-up; keep asking until its lines reach the new file.
    wait_until(SOON, "a worker's request line in the new log", || {
        let _ = http_get(port, "/after");
        d.log_text().contains("path=\"/after\"")
    });
    let old = std::fs::read_to_string(&rotated).expect("log.1");
    assert!(old.contains("path=\"/before\""), "the old lines stay in log.1");
    for line in old.lines().chain(d.log_text().lines()).filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("manager{pid=") || (line.contains("worker{slot=") && line.contains(" pid=")),
            "every line names its role, pid and slot: {line}"
        );
    }
}

#[test]
fn status_prints_the_scoreboard_with_lsb_exit_codes() {
    let dir = TempDir::new("status");
    let missing = dir.path("none.pid").display().to_string();
    let out = run("lab", &["status", "--pid-file", &missing]);
    assert_eq!(out.status.code(), Some(3), "not running: {out:?}");

    let d = Detached::start(&dir, &["--workers", "3"]);
    wait_until(SOON, "three waiting workers", || {
        text(&d.control(&["status"]).stdout).contains("[www]")
    });
    let out = d.control(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    assert!(shown.contains("slot") && shown.contains("requests") && shown.contains("last heartbeat"), "{shown}");
    for w in children(d.manager) {
        assert!(shown.contains(&w.to_string()), "worker {w} in the table: {shown}");
    }
    let out = d.control(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let json = text(&out.stdout);
    for field in ["\"pid\":", "\"mode\":\"prefork\"", "\"generation\":1", "\"workers\":[", "\"age_ms\":", "\"last_heartbeat_ms\":", "\"requests\":"] {
        assert!(json.contains(field), "{field} in {json}");
    }
    assert_eq!(json.matches("\"slot\":").count(), 3, "{json}");
}

#[test]
fn reload_replaces_workers_and_a_graceful_stop_finishes_requests() {
    let dir = TempDir::new("reload");
    let d = Detached::start(&dir, &["--workers", "2"]);
    let before = wait_for(SOON, "two workers", || Some(children(d.manager)).filter(|w| w.len() == 2));
    let out = d.control(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(SOON, "a new generation of two workers", || {
        let now = children(d.manager);
        now.len() == 2 && now.iter().all(|w| !before.contains(w))
    });
    let port = d.port();
    let pending = std::thread::spawn(move || http_get(port, "/sleep/1500"));
    wait_until(SOON, "the request to start", || d.log_text().contains("path=\"/sleep/1500\""));
    let out = d.control(&["stop", "--graceful"]);
    assert!(out.status.success(), "{out:?}");
    let (status, body) = pending.join().expect("the request thread").expect("the in-flight request");
    assert_eq!((status, body.as_str()), (200, "slept 1500\n"));
    assert!(!alive(d.manager));
}

#[test]
fn start_stop_daemon_starts_and_stops_it() {
    let ssd = ["/sbin/start-stop-daemon", "/usr/sbin/start-stop-daemon"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("start-stop-daemon (Debian's dpkg ships it; .ci/run installs dpkg)");
    let dir = TempDir::new("ssd");
    let bin = example("lab");
    let (p, l) = (dir.path("lab.pid").display().to_string(), dir.path("lab.log").display().to_string());
    let b = bin.display().to_string();
    let start = ["--start", "--pidfile", &p, "--exec", &b, "--", "start", "--pid-file", &p, "--log-file", &l, "--listen", "127.0.0.1:0"];
    let out = run_program(&ssd, &start);
    assert!(out.status.success(), "{out:?}");
    let manager = read_pid(Path::new(&p)).expect("a pid file");
    let guard = Detached { example: "lab", pid_file: p.clone().into(), log: l.clone().into(), manager };
    assert_eq!(http_get(guard.port(), "/").expect("serving").0, 200);
    // Already running: start-stop-daemon sees it by the pid file and the executable.
    let again = run_program(&ssd, &start);
    assert_eq!(again.status.code(), Some(1), "{again:?}");

    let workers = children(manager);
    let out = run_program(&ssd, &["--stop", "--pidfile", &p, "--retry", "QUIT/30/KILL/5"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!alive(manager));
    wait_until(SOON, "no worker left", || workers.iter().all(|w| !alive(*w)));
    assert!(!Path::new(&p).exists());
}

#[test]
fn privileges_are_dropped_before_the_workers_fork() {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        let out = run("lab", &["--user", "nobody", "--listen", "127.0.0.1:0"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(text(&out.stderr).contains("needs root"), "{out:?}");
        return;
    }
    let d = Daemon::serve("lab", &["--user", "nobody", "--workers", "2"]);
    let workers = d.wait_for_workers(2, SOON);
    assert_eq!(d.get("/").0, 200);
    for pid in std::iter::once(d.pid()).chain(workers) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.split_whitespace().collect::<Vec<_>>()).unwrap_or_default()
        };
        assert_eq!(field("Uid:"), ["65534"; 4], "pid {pid} runs as nobody");
        assert!(field("Gid:").iter().all(|g| *g != "0"), "pid {pid} keeps no root group: {:?}", field("Gid:"));
        assert!(field("Groups:").iter().all(|g| *g != "0"), "pid {pid} keeps no supplementary root group");
    }
}

#[test]
fn systemd_hears_ready_reloading_status_stopping_and_the_watchdog() {
    let dir = TempDir::new("notify");
    let socket_path = dir.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind NOTIFY_SOCKET");
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("a read timeout");
    let path = socket_path.display().to_string();
    let mut d = Daemon::start_with_env(
        "lab",
        &["--listen", "127.0.0.1:0", "--workers", "2"],
        &[("NOTIFY_SOCKET", path.as_str()), ("WATCHDOG_USEC", "200000")],
    );
    let mut heard: Vec<String> = Vec::new();
    let listen_for = |what: &str, heard: &mut Vec<String>| {
        let found = poll_until(SOON, || {
            let mut buf = [0u8; 4096];
            if let Ok(n) = socket.recv(&mut buf) {
                heard.push(text(&buf[..n]));
            }
            heard.iter().any(|m| m.contains(what))
        });
        assert!(found, "no {what} in {heard:?}");
        heard.iter().position(|m| m.contains(what)).map(|i| heard.remove(i)).unwrap_or_default()
    };
    let ready = listen_for("READY=1", &mut heard);
    assert!(ready.contains("STATUS="), "{ready}");
    listen_for("WATCHDOG=1", &mut heard);
    listen_for("WATCHDOG=1", &mut heard);
    d.signal(Signal::SIGHUP);
    let reloading = listen_for("RELOADING=1", &mut heard);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    listen_for("READY=1", &mut heard);
    d.signal(Signal::SIGTERM);
    listen_for("STOPPING=1", &mut heard);
    assert!(d.wait_exit(SOON).success());
}

#[test]
fn a_foreign_child_is_reaped_and_stopped_with_the_daemon() {
    let mut d = Daemon::start_with_env("lab", &["--listen", "127.0.0.1:0", "--workers", "1"], &[("LAB_FOREIGN_CHILDREN", "2")]);
    let watching = |d: &Daemon| -> Vec<i32> {
        d.lines()
            .iter()
            .filter(|l| l.contains("watching a foreign child"))
            // The child's pid is the last field; the first `pid=` is the manager's span.
            .filter_map(|l| l.rsplit("pid=").next()?.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let pids = wait_for(SOON, "two foreign children", || Some(watching(&d)).filter(|p| p.len() == 2));
    let (first, second) = (pids[0], pids[1]);
    // One exits on its own: the manager reaps it (no zombie left).
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGTERM).expect("TERM the first");
    d.wait_for_line("foreign child exited", SOON);
    wait_until(SOON, "the first to be reaped", || !Path::new(&format!("/proc/{first}")).exists());
    // The other is stopped with the daemon, and the daemon waits for it.
    assert!(alive(second));
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(SOON).success());
    wait_until(SOON, "the second to be gone", || !alive(second));
}

#[test]
fn a_program_that_installs_its_own_subscriber_keeps_it() {
    let d = Daemon::start_with_env("lab", &["--listen", "127.0.0.1:0", "--workers", "1"], &[("LAB_OWN_SUBSCRIBER", "1")]);
    // The runtime's own lines come first, in its format (a timestamp first)...
    let listening = d.wait_for_line("listening addr=", SOON);
    let port: u16 = listening.rsplit(':').next().and_then(|p| p.trim().parse().ok()).expect("a port");
    d.wait_for_line("lab installed its own subscriber", SOON);
    d.wait_for_workers(1, SOON);
    assert_eq!(http_get(port, "/").expect("a request").0, 200);
    // ...then the program's, in the manager and in the worker: no timestamp, with the target.
    let line = d.wait_for_line("path=\"/\"", SOON);
    let text = line.split_once("| ").map(|(_, t)| t).unwrap_or(&line);
    assert!(text.trim_start().starts_with("INFO"), "the program's format, without time: {line}");
    assert!(text.contains("worker{slot=0") && text.contains("lab:"), "{line}");
}

/// The manager's pid, from the first line its span is on.
fn manager_in(log: &str) -> Option<i32> {
    log.split("manager{pid=").nth(1)?.split('}').next()?.parse().ok()
}

/// `start` with `env` (and `prepare`, run in the child before exec), in a directory of its own:
/// the output, the pid file's path and the log.
fn start_with(tag: &str, extra: &[&str], env: &[(&str, &str)], limit_fds: Option<u64>) -> (Output, TempDir) {
    let dir = TempDir::new(tag);
    let (p, l) = (dir.path("lab.pid").display().to_string(), dir.path("lab.log").display().to_string());
    let mut args = vec!["start", "--listen", "127.0.0.1:0", "--pid-file", &p, "--log-file", &l];
    args.extend_from_slice(extra);
    let mut start = command(&example("lab"), &args);
    start.envs(env.iter().copied());
    if let Some(n) = limit_fds {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            start.pre_exec(move || {
                let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    (finish(start), dir)
}

/// After a failed start: no pid file, and the manager (named in the log) is gone with its workers.
fn assert_gone(dir: &TempDir) {
    assert!(!dir.path("lab.pid").exists(), "a failed start leaves no pid file");
    let log = std::fs::read_to_string(dir.path("lab.log")).unwrap_or_default();
    let manager = manager_in(&log).unwrap_or_else(|| panic!("no manager in the log: {log}"));
    wait_until(SOON, "the manager of a failed start to be gone", || !alive(manager));
}

#[test]
fn start_fails_with_the_workers_reason_when_none_can_start() {
    let (out, dir) = start_with("no-worker", &["--workers", "2"], &[("LAB_ON_CHILD", "panic")], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("no worker could start") && err.contains("on_child panics, as asked"), "{err}");
    assert_gone(&dir);

    // The case: workers that run out of descriptors before they are ready.
    let (out, dir) = start_with("no-fds", &["--workers", "2"], &[], Some(12));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("Too many open files"), "{out:?}");
    assert_gone(&dir);

    // In the foreground too: the manager exits 1 rather than retry for ever.
    let mut d = Daemon::start_with_env("lab", &["--listen", "127.0.0.1:0", "--workers", "2"], &[("LAB_ON_CHILD", "panic")]);
    let status = d.wait_exit(SOON);
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(d.stderr_after_exit().contains("start failed: no worker could start"));
}

#[test]
fn start_fails_once_start_timeout_passes_without_the_pool() {
    let (out, dir) = start_with("slow", &["--workers", "2", "--start-timeout", "1s"], &[("LAB_ON_CHILD", "sleep:600000")], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("not ready within start_timeout (1s)") && err.contains("0 of 2 accept"), "{err}");
    assert_gone(&dir);
}

#[test]
fn the_daemon_keeps_no_descriptor_its_starter_left_open() {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    // As `{ lab start ... 9>&1; echo started; } | cat` does: a pipe left open at fd 9.
    let (read, write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe (close-on-exec, so no other test's child holds it)");
    let dir = TempDir::new("inherited");
    let (p, l) = (dir.path("lab.pid").display().to_string(), dir.path("lab.log").display().to_string());
    let mut start = command(&example("lab"), &["start", "--listen", "127.0.0.1:0", "--pid-file", &p, "--log-file", &l, "--workers", "2"]);
    let raw = write.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; the new descriptor 9 does not close on exec.
    unsafe {
        start.pre_exec(move || {
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = finish(start);
    assert!(out.status.success(), "{out:?}");
    drop(write);
    let d = Detached { example: "lab", pid_file: dir.path("lab.pid"), log: dir.path("lab.log"), manager: read_pid(&dir.path("lab.pid")).expect("a pid file") };
    let workers = wait_for(SOON, "two workers", || Some(children(d.manager)).filter(|w| w.len() == 2));
    let pipe = format!("pipe:[{}]", std::os::unix::fs::MetadataExt::ino(&std::fs::File::from(read.try_clone().expect("dup")).metadata().expect("fstat the pipe")));
    for pid in std::iter::once(d.manager).chain(workers) {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the descriptors of a process of ours");
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            assert_ne!(target.to_string_lossy(), pipe, "pid {pid} keeps the starter's pipe as {}", fd.path().display());
        }
    }
    // Every writer is gone: the reader sees the end at once (a shell's `| cat` ends).
    let mut reader = std::fs::File::from(read);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut rest).expect("read to the end of the pipe");
}

