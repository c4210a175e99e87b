//! Zero downtime: reloads and hot binary upgrades under continuous load lose no request, for
//! keep-alive clients and new connections alike; an upgrade to a binary that cannot start, or
//! never becomes ready, rolls back; a held upgrade backs out; socket activation and its
//! variables, from systemd and from an old manager.
//!
//! Each test runs its own copy of the lab binary (`app`), so it can replace it on disk, and
//! controls it with another copy (`ctl`), which stays the lab whatever `app` becomes.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use support::*;

struct App {
    dir: TempDir,
    exe: PathBuf,
    ctl: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    /// Every manager seen, to kill at the end with its workers.
    managers: Mutex<Vec<i32>>,
}

impl App {
    fn start(tag: &str, extra: &[&str]) -> App {
        App::start_owned(tag, extra, None)
    }

    /// Started in a directory that belongs to `owner` (uid), as README asks of a daemon that
    /// drops to that user.
    fn start_owned(tag: &str, extra: &[&str], owner: Option<u32>) -> App {
        let dir = TempDir::new(tag);
        if let Some(uid) = owner {
            nix::unistd::chown(&dir.0, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(uid))).expect("chown the directory");
        }
        let (exe, ctl) = (dir.path("app"), dir.path("ctl"));
        std::fs::copy(example("lab"), &exe).expect("copy the lab binary");
        std::fs::copy(example("lab"), &ctl).expect("copy the lab binary");
        let (pid_file, log) = (dir.path("app.pid"), dir.path("app.log"));
        let app = App { dir, exe, ctl, pid_file, log, managers: Mutex::new(Vec::new()) };
        let (p, l) = (app.pid_file.display().to_string(), app.log.display().to_string());
        let mut args = vec!["start", "--listen", "127.0.0.1:0", "--workers", "2", "--pid-file", &p, "--log-file", &l];
        args.extend_from_slice(extra);
        let out = run_program(&app.exe, &args);
        assert!(out.status.success(), "start: {out:?}");
        app.track();
        app
    }

    /// The manager the pid file names now (remembered, to be killed at the end).
    fn track(&self) -> i32 {
        let pid = read_pid(&self.pid_file).expect("a pid file");
        let mut seen = self.managers.lock().unwrap();
        if !seen.contains(&pid) {
            seen.push(pid);
        }
        pid
    }

    fn control(&self, args: &[&str]) -> Output {
        let p = self.pid_file.display().to_string();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--pid-file", &p]);
        run_program(&self.ctl, &all)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn port(&self) -> u16 {
        port_in(&self.log_text()).expect("the log names the port")
    }

    fn status(&self) -> serde_json::Value {
        let out = self.control(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Replaces the binary on disk, as a deploy does: written beside it, then renamed over it.
    fn replace(&self, contents: &[u8]) {
        let new = self.dir.path("app.new");
        std::fs::write(&new, contents).expect("write the new binary");
        std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("make it executable");
        std::fs::rename(&new, &self.exe).expect("move it in place");
    }

    /// A script in place of the binary: `body` runs with the lab (the `ctl` copy) at `$LAB`.
    fn replace_with_script(&self, body: &str) {
        self.replace(format!("#!/bin/sh\nLAB={}\n{body}\n", self.ctl.display()).as_bytes());
    }

    /// `upgrade`, which waits until the new manager serves or the upgrade rolled back.
    fn upgrade(&self, extra: &[&str]) -> Output {
        let mut args = vec!["upgrade"];
        args.extend_from_slice(extra);
        let out = self.control(&args);
        if let Some(pid) = text(&out.stdout).split("the new manager, pid ").nth(1).and_then(|r| r.split(';').next()).and_then(|p| p.trim().parse().ok()) {
            self.managers.lock().unwrap().push(pid);
        }
        out
    }

    /// Waits until only the manager the pid file names runs (an upgrade's old one is gone).
    fn settle(&self) -> i32 {
        let current = self.track();
        let others: Vec<i32> = self.managers.lock().unwrap().iter().copied().filter(|&p| p != current).collect();
        for old in others {
            wait_until(SOON, "the old manager to exit", || !alive(old));
        }
        current
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let managers = self.managers.lock().map(|m| m.clone()).unwrap_or_default();
        for pid in managers {
            let workers = children(pid);
            for p in std::iter::once(pid).chain(workers) {
                if alive(p) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
                }
            }
        }
    }
}

/// Reads one response on a keep-alive connection: its status, whether the server closes the
/// connection after it, and its body.
fn read_keep_alive(stream: &mut TcpStream) -> std::io::Result<(u16, bool, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed after {} bytes of a response head", head.len())));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((status, head.contains("connection: close"), String::from_utf8_lossy(&body).into_owned()))
}

#[derive(Debug, Default)]
struct Counts {
    ok: u64,
    failed: u64,
    first_failures: Vec<String>,
}

impl Counts {
    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.first_failures.len() < 5 {
            self.first_failures.push(why);
        }
    }
}

/// Clients that run until stopped: `keep_alive` of them on keep-alive connections (a
/// connection the server closes after a `Connection: close` answer is opened again: not a
/// failure), `fresh` of them a new connection per request. Every other end is a failure.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Counts>>,
}

impl Load {
    fn start(port: u16, keep_alive: usize, fresh: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..keep_alive {
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut counts = Counts::default();
                let mut conn: Option<TcpStream> = None;
                while !stop.load(Ordering::Relaxed) {
                    let c = match conn.take() {
                        Some(c) => c,
                        None => match connect(port) {
                            Ok(c) => c,
                            Err(e) => {
                                counts.fail(format!("connect: {e}"));
                                continue;
                            }
                        },
                    };
                    let mut c = c;
                    let asked = c.write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n").and_then(|()| read_keep_alive(&mut c));
                    match asked {
                        Ok((200, close, body)) if body == "hello\n" => {
                            counts.ok += 1;
                            if close {
                                // The server said so: it closes, we open another.
                                let mut rest = Vec::new();
                                let _ = c.read_to_end(&mut rest);
                            } else {
                                conn = Some(c);
                            }
                        }
                        Ok(other) => counts.fail(format!("keep-alive answer {other:?}")),
                        Err(e) => counts.fail(format!("keep-alive: {e}")),
                    }
                }
                counts
            }));
        }
        for _ in 0..fresh {
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut counts = Counts::default();
                while !stop.load(Ordering::Relaxed) {
                    match http_get(port, "/") {
                        Ok((200, body)) if body == "hello\n" => counts.ok += 1,
                        Ok(other) => counts.fail(format!("answer {other:?}")),
                        Err(e) => counts.fail(format!("new connection: {e}")),
                    }
                }
                counts
            }));
        }
        Load { stop, threads }
    }

    fn finish(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Counts::default();
        for t in self.threads {
            let c = t.join().expect("a client thread");
            all.ok += c.ok;
            all.failed += c.failed;
            all.first_failures.extend(c.first_failures);
        }
        all
    }
}

fn generation(app: &App) -> u64 {
    let s = app.status();
    s["generation"].as_u64().unwrap_or(0)
}

/// The main pool is ready at `generation` (every worker of it accepts, no older one left).
fn ready_at(app: &App, generation: u64) -> bool {
    let s = app.status();
    let workers = s["workers"].as_array().cloned().unwrap_or_default();
    s["generation"].as_u64() == Some(generation)
        && workers.len() == 2
        && workers.iter().all(|w| w["generation"].as_u64() == Some(generation) && (w["state"] == "w" || w["state"] == "r"))
}

fn version(port: u16) -> String {
    let (code, body) = http_get(port, "/version").expect("GET /version");
    assert_eq!(code, 200);
    body
}

#[test]
fn ten_reloads_and_three_upgrades_under_load_lose_no_request() {
    let app = App::start("lossless", &[]);
    let port = app.port();
    let before = version(port);
    let load = Load::start(port, 2, 2);
    for _ in 0..10 {
        let g = generation(&app);
        let out = app.control(&["reload"]);
        assert!(out.status.success(), "reload: {out:?}");
        wait_until(SOON, "the new generation ready", || ready_at(&app, g + 1));
    }
    // Two upgrades of the same binary, then one to a binary replaced on disk.
    for _ in 0..2 {
        let out = app.upgrade(&[]);
        assert!(out.status.success(), "upgrade: {out:?}");
        app.settle();
    }
    let mut next = std::fs::read(example("lab")).expect("the lab binary");
    next.extend_from_slice(b"\0another build\0"); // runs the same, is another file: another version
    app.replace(&next);
    let out = app.upgrade(&[]);
    assert!(out.status.success(), "upgrade: {out:?}");
    let manager = app.settle();
    let counts = load.finish();
    assert_eq!(counts.failed, 0, "{} of {} requests failed: {:?}", counts.failed, counts.ok + counts.failed, counts.first_failures);
    assert!(counts.ok > 100, "only {} requests in all", counts.ok);
    // The replaced binary answers now, and the pid file names its manager.
    let after = version(port);
    assert_ne!(after, before, "the new binary answers");
    for _ in 0..5 {
        assert_eq!(version(port), after);
    }
    assert_eq!(read_pid(&app.pid_file), Some(manager));
    assert!(!app.dir.path("app.pid.oldbin").exists());
}

#[test]
fn an_upgrade_after_a_privilege_drop_takes_over_under_load() {
    // Root starts it, it runs as nobody: the pid file was created by root before the drop, and
    // with fs.protected_hardlinks only its owner may link it as PATH.oldbin.
    let app = App::start_owned("as-nobody", &["--user", "nobody"], Some(65534));
    let old = app.track();
    let port = app.port();
    let load = Load::start(port, 2, 2);
    // The control command is told whom the daemon runs as, as it was started.
    let out = app.upgrade(&["--user", "nobody"]);
    assert!(out.status.success(), "upgrade: {out:?}\n{}", app.log_text());
    let new = app.settle();
    assert_ne!(new, old, "a new manager took over");
    let status = std::fs::read_to_string(format!("/proc/{new}/status")).expect("the new manager's status");
    let uid = status.lines().find(|l| l.starts_with("Uid:")).expect("a Uid line");
    assert!(uid.split_whitespace().skip(1).all(|u| u == "65534"), "the new manager runs as nobody: {uid}");
    let counts = load.finish();
    assert!(counts.ok > 0 && counts.failed == 0, "{counts:?}");
    // And a second one, from the manager that started as nobody.
    let out = app.upgrade(&["--user", "nobody"]);
    assert!(out.status.success(), "second upgrade: {out:?}\n{}", app.log_text());
    let newest = app.settle();
    // Exec'd as nobody, it is still closed to nobody's other processes, as the first manager
    // was (the kernel made that one not dumpable when it changed its uid): its descriptors (the
    // metrics area among them), its memory and its workers' cannot be opened.
    let mut pids = vec![newest];
    pids.extend(children(newest));
    assert!(pids.len() > 1, "the new manager has workers");
    for pid in pids {
        for (what, how) in [("fd", "ls /proc/PID/fd"), ("environ", "cat /proc/PID/environ"), ("maps", "cat /proc/PID/maps")] {
            let script = format!("{} >/dev/null", how.replace("PID", &pid.to_string()));
            let out = std::process::Command::new("sh").args(["-c", &script]).uid(65534).gid(65534).output().expect("sh as nobody");
            assert!(!out.status.success(), "nobody read /proc/{pid}/{what}: {out:?}");
        }
    }
}

#[test]
fn an_upgrade_resizes_the_accept_queues_it_takes_over() {
    // `backlog` needs a restart or an upgrade: a reload keeps the queue, the new manager of an
    // upgrade sizes the sockets it inherits.
    let config = ConfigFile::new("backlog", "backlog = 7\n");
    let app = App::start("backlog", &["--config", &config.arg()]);
    app.track();
    let port = app.port();
    assert_eq!(listen_queue(port), Some(7));
    config.write("backlog = 9\n");
    assert!(app.control(&["reload", "--config", &config.arg()]).status.success());
    assert_eq!(listen_queue(port), Some(7), "a reload keeps the queue");
    let out = app.upgrade(&["--config", &config.arg()]);
    assert!(out.status.success(), "upgrade: {out:?}\n{}", app.log_text());
    app.settle();
    assert_eq!(listen_queue(port), Some(9), "the same socket, resized");
}

#[test]
fn an_upgrade_takes_over_the_sockets_of_a_host_name() {
    // Resolved again by the new manager: each address it has is the old manager's socket.
    let app = App::start("host-name", &["--listen", "localhost:0"]);
    let old = app.track();
    let ports = |log: &str, from_old: bool| -> Vec<u16> {
        log.lines()
            .filter(|l| l.contains("listening addr=") && l.contains("from=\"the old manager\"") == from_old)
            .filter_map(|l| l.split("listening addr=").nth(1)?.split_whitespace().next()?.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port())
            .collect()
    };
    let before = ports(&app.log_text(), false);
    assert!(before.len() >= 2, "127.0.0.1:0 and localhost's addresses: {before:?}");
    let out = app.upgrade(&[]);
    assert!(out.status.success(), "upgrade: {out:?}\n{}", app.log_text());
    let new = app.settle();
    assert_ne!(new, old);
    let mut taken = ports(&app.log_text(), true);
    let mut wanted = before.clone();
    taken.sort_unstable();
    wanted.sort_unstable();
    assert_eq!(taken, wanted, "every socket taken over, none bound anew");
    for port in before {
        assert_eq!(http_get(port, "/").map(|(code, _)| code).ok(), Some(200), "port {port}");
    }
}

#[test]
fn an_upgrade_to_a_binary_that_exits_at_start_rolls_back_and_loses_nothing() {
    let app = App::start("exits", &[]);
    let manager = app.track();
    let load = Load::start(app.port(), 1, 1);
    app.replace_with_script("echo 'the new build is broken' >&2\nexit 1");
    let out = app.upgrade(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("the upgrade rolled back") && err.contains("exit status 1"), "{err}");
    let counts = load.finish();
    assert_eq!(counts.failed, 0, "{:?}", counts.first_failures);
    assert_eq!(read_pid(&app.pid_file), Some(manager), "the old manager has its pid file back");
    assert!(!app.dir.path("app.pid.oldbin").exists());
    let s = app.status();
    assert_eq!(s["last_upgrade"]["outcome"], "rolled back", "{s:#}");
    assert!(app.log_text().contains("upgrade rolled back"));
}

#[test]
fn an_upgrade_to_a_binary_that_never_becomes_ready_rolls_back_and_loses_nothing() {
    let app = App::start("never-ready", &["--upgrade-timeout", "2s", "--graceful-timeout", "1s"]);
    let manager = app.track();
    let load = Load::start(app.port(), 1, 1);
    // Its workers never finish their on_child hook.
    app.replace_with_script("LAB_ON_CHILD=sleep:600000 exec \"$LAB\" \"$@\"");
    let out = app.upgrade(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("not ready within upgrade_timeout"), "{out:?}");
    let counts = load.finish();
    assert_eq!(counts.failed, 0, "{:?}", counts.first_failures);
    assert_eq!(read_pid(&app.pid_file), Some(manager));
    // The new manager and its workers are gone; the old one's two workers serve.
    let new: Vec<i32> = app.managers.lock().unwrap().iter().copied().filter(|&p| p != manager).collect();
    for pid in new {
        wait_until(SOON, "the failed new manager to be gone", || !alive(pid));
    }
    wait_until(SOON, "two workers", || children(manager).len() == 2);
}

#[test]
fn a_second_usr2_during_an_upgrade_starts_no_second_manager() {
    let app = App::start("twice", &[]);
    let old = app.track();
    // A new binary slow to be ready: the upgrade lasts a few seconds.
    app.replace_with_script("LAB_ON_CHILD=sleep:3000 exec \"$LAB\" \"$@\"");
    let signal = |pid: i32, s: Signal| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s).expect("signal");
    signal(old, Signal::SIGUSR2);
    let new = wait_for(SOON, "the upgrade to start", || {
        let s = app.status();
        let new = s["pid"].as_i64().filter(|&p| p != i64::from(old))?;
        Some(new as i32)
    });
    app.managers.lock().unwrap().push(new);
    signal(old, Signal::SIGUSR2);
    signal(new, Signal::SIGUSR2);
    wait_until(SOON, "both refusals in the log", || {
        let log = app.log_text();
        log.contains("USR2: an upgrade is under way already") && log.contains("USR2: this manager's own upgrade is not finished")
    });
    // Only one new manager: the old one's children are its two workers and the new manager.
    let kids = children(old);
    assert!(kids.len() <= 3 && kids.contains(&new), "{kids:?}");
    wait_until(SOON, "the upgrade to finish", || !alive(old));
    assert_eq!(app.settle(), new);
    assert_eq!(http_get(app.port(), "/").map(|(c, _)| c).ok(), Some(200));
}

#[test]
fn a_stop_during_an_upgrade_stops_both_managers_and_the_pid_file_is_never_missing() {
    let app = App::start("stop-during", &["--upgrade-timeout", "60s", "--graceful-timeout", "1s"]);
    let old = app.track();
    app.replace_with_script("LAB_ON_CHILD=sleep:600000 exec \"$LAB\" \"$@\"");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), Signal::SIGUSR2).expect("USR2");
    let new = wait_for(SOON, "the upgrade to start", || {
        // From the old manager, under either name of the pid file.
        let s = app.status();
        let old_one = if s["upgrade"].is_null() { &s["old_manager"] } else { &s };
        (old_one["upgrade"]["state"] == "starting").then(|| old_one["upgrade"]["new_pid"].as_i64()).flatten()
    }) as i32;
    app.managers.lock().unwrap().push(new);
    // While the new manager starts, the pid file is never missing: it names the old manager
    // until the new one has written it (as nginx's and unicorn's), `.oldbin` the old one.
    let named = read_pid(&app.pid_file);
    assert!(named == Some(old) || named == Some(new), "{named:?}");
    assert_eq!(read_pid(&app.dir.path("app.pid.oldbin")), Some(old));
    // The text status says so, and a reader that goes away costs it nothing (`status | head`).
    let out = app.control(&["status"]);
    assert!(text(&out.stdout).contains(&format!("upgrade: new manager pid {new}, starting")), "{out:?}");
    let (read, write) = nix::unistd::pipe().expect("a pipe");
    drop(read);
    let p = app.pid_file.display().to_string();
    let out = std::process::Command::new(&app.ctl)
        .args(["status", "--pid-file", &p])
        .stdout(std::process::Stdio::from(write))
        .output()
        .expect("status into a closed pipe");
    assert!(out.status.success() && !text(&out.stderr).contains("panicked"), "{out:?}");
    // `stop` ends the daemon: both managers, whichever the pid file names.
    let out = app.control(&["stop"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(SOON, "both managers to be gone", || !alive(old) && !alive(new));
    assert!(!app.pid_file.exists() && !app.dir.path("app.pid.oldbin").exists());
    // The old manager stops too; its log does not say it serves on.
    let log = app.log_text();
    assert!(log.contains("upgrade abandoned: the daemon stops"), "{log}");
    assert!(!log.contains("this manager serves on"), "{log}");
}

#[test]
fn a_held_upgrade_backs_out_and_serves_every_request() {
    let app = App::start("backout", &[]);
    let old = app.track();
    let load = Load::start(app.port(), 2, 1);
    let out = app.upgrade(&["--hold"]);
    assert!(out.status.success(), "{out:?}");
    let new = app.track();
    assert_ne!(new, old);
    // Held: the old manager stays, backed out, under the .oldbin pid file; status shows both.
    let oldbin = app.dir.path("app.pid.oldbin");
    assert_eq!(read_pid(&oldbin), Some(old));
    wait_until(SOON, "the old manager's workers to retire", || children(old).iter().all(|&c| c == new));
    let s = app.status();
    assert_eq!(s["old_manager"]["pid"].as_i64(), Some(i64::from(old)), "{s:#}");
    assert_eq!(s["old_manager"]["backed_out"], true);
    let out = app.control(&["status"]);
    assert!(text(&out.stdout).contains("BACKED OUT"), "the text status shows it: {out:?}");
    // Back out: the old manager's workers start again, then the new manager stops gracefully.
    let ob = oldbin.display().to_string();
    let out = run_program(&app.ctl, &["reload", "--pid-file", &ob]);
    assert!(out.status.success(), "{out:?}");
    wait_until(SOON, "the old manager's workers back", || children(old).iter().filter(|&&c| c != new).count() == 2);
    let out = app.control(&["stop", "--graceful"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(SOON, "the old manager to have its pid file back", || read_pid(&app.pid_file) == Some(old));
    let counts = load.finish();
    assert_eq!(counts.failed, 0, "{:?}", counts.first_failures);
    assert!(!alive(new));
    assert!(!oldbin.exists());
    // Its status says how the upgrade ended: backed out, not "took over".
    let s = wait_for(SOON, "the status to say the upgrade was backed out", || {
        let s = app.status();
        (s["last_upgrade"]["outcome"] == "backed out").then_some(s)
    });
    assert!(s["last_upgrade"]["why"].as_str().is_some_and(|w| w.contains("took over, then exited")), "{s:#}");
}

#[test]
fn winch_retires_the_workers_and_hup_brings_them_back() {
    let app = App::start("winch", &[]);
    let manager = app.track();
    wait_until(SOON, "two workers", || children(manager).len() == 2);
    // A detached manager has no controlling terminal, so WINCH is a back-out.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(manager), Signal::SIGWINCH).expect("WINCH");
    wait_until(SOON, "no worker", || children(manager).is_empty());
    assert_eq!(app.status()["backed_out"], true);
    // The sockets stay: a client waits in the queue, and is served once HUP brings workers.
    let port = app.port();
    let waiting = std::thread::spawn(move || http_get(port, "/"));
    let out = app.control(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(waiting.join().expect("the client").map(|(c, _)| c).ok(), Some(200));
    wait_until(SOON, "two workers again", || children(manager).len() == 2);
    // `backout` is the same, by the control channel.
    let out = app.control(&["backout"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(SOON, "no worker", || children(manager).is_empty());
}

/// A free port, as the OS picks one (bound, read, released).
#[test]
fn systemd_socket_activation_hands_the_daemon_its_listener() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let lab = example("lab").display().to_string();
    let d = Daemon::start_program(
        Path::new("systemd-socket-activate"),
        "systemd-socket-activate",
        // It passes the program only the variables it is told to (-E).
        &["-l", &addr, "-E", "LAB_FOREIGN_CHILDREN=1", &lab, "--workers", "2"],
        &[],
    );
    // It starts the program at the first connection, with the socket as descriptor 3.
    let answer = wait_for(SOON, "an answer through the activated socket", || http_get(port, "/pid").ok());
    assert_eq!(answer.0, 200);
    let line = d.wait_for_line("from=\"socket activation\"", SOON);
    assert!(line.contains(&format!("listening addr={addr}")), "{line}");
    assert!(d.lines().iter().any(|l| l.contains("`listen` is not used")));
    // The variables are gone from the environment of what the daemon starts.
    assert_no_listen_vars_in_foreign_child(d.pid());
}

/// The daemon's foreign child (lab's `sleep`, started in `main` after the start-up took the
/// variables) was started without LISTEN_* in its environment. (A worker is forked, not
/// executed: its /proc environ is the manager's original block, whatever the manager removed.)
fn assert_no_listen_vars_in_foreign_child(manager: i32) {
    let sleeper = wait_for(SOON, "the foreign child", || {
        children(manager).into_iter().find(|&c| std::fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n.trim() == "sleep"))
    });
    let environ = std::fs::read(format!("/proc/{sleeper}/environ")).unwrap_or_default();
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains("LAB_FOREIGN_CHILDREN"), "the environment was read: {environ}");
    assert!(!environ.contains("LISTEN_"), "a child of the daemon sees the variables: {environ}");
}

#[test]
fn listen_fds_meant_for_another_process_are_ignored() {
    let env = [("LISTEN_PID", "1"), ("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "stolen"), ("LAB_FOREIGN_CHILDREN", "1")];
    let d = Daemon::start_with_env("lab", &["--listen", "127.0.0.1:0", "--workers", "1"], &env);
    let warning = d.wait_for_line("LISTEN_FDS=1 is for process 1", SOON);
    assert!(warning.contains("not taken"), "{warning}");
    let line = d.wait_for_line("listening addr=", SOON);
    assert!(!line.contains("socket activation"), "{line}");
    let port = port_in(&line).expect("a port");
    assert_eq!(http_get(port, "/").map(|(c, _)| c).ok(), Some(200));
    assert_no_listen_vars_in_foreign_child(d.pid());
}

#[test]
fn an_upgrade_refuses_a_program_file_another_user_could_have_replaced() {
    let app = App::start("writable", &[]);
    let manager = app.track();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&app.exe, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = app.upgrade(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("can be replaced by another user") && err.contains("started no upgrade"), "{err}");
    assert_eq!(children(manager).len(), 2, "nothing was started");
    assert_eq!(read_pid(&app.pid_file), Some(manager));
    // The same for its directory.
    std::fs::set_permissions(&app.exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&app.dir.0, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = app.upgrade(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("the program's directory"), "{out:?}");
    std::fs::set_permissions(&app.dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn systemd_hears_mainpid_and_ready_from_the_new_manager() {
    let dir = TempDir::new("upgrade-notify");
    let socket_path = dir.path("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind NOTIFY_SOCKET");
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("a read timeout");
    let path = socket_path.display().to_string();
    let mut d = Daemon::start_with_env("lab", &["--listen", "127.0.0.1:0", "--workers", "2"], &[("NOTIFY_SOCKET", path.as_str())]);
    let mut heard: Vec<String> = Vec::new();
    let mut listen_for = |what: &dyn Fn(&str) -> bool| -> String {
        let found = poll_until(SOON, || {
            let mut buf = [0u8; 4096];
            if let Ok(n) = socket.recv(&mut buf) {
                heard.push(text(&buf[..n]));
            }
            heard.iter().any(|m| what(m))
        });
        assert!(found, "not heard, in {heard:?}");
        let i = heard.iter().position(|m| what(m)).unwrap_or(0);
        heard.remove(i)
    };
    listen_for(&|m| m.contains("READY=1"));
    let old = d.pid();
    d.signal(Signal::SIGUSR2);
    let mainpid = listen_for(&|m| m.contains("MAINPID="));
    let new: i32 = mainpid.split("MAINPID=").nth(1).and_then(|r| r.lines().next()).and_then(|p| p.trim().parse().ok()).expect("a pid");
    assert_ne!(new, old, "{mainpid}");
    assert!(mainpid.contains("READY=1") || listen_for(&|m| m.contains("READY=1")).contains("READY"), "{mainpid}");
    // The old manager retires; the new one, a child of it until then, serves.
    assert!(d.wait_exit(SOON).success());
    assert!(alive(new));
    let line = d.wait_for_line("upgrade: the new manager serves; this one retires", SOON);
    assert!(line.contains(&format!("new_manager={new}")), "{line}");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(new), Signal::SIGTERM);
    wait_until(SOON, "the new manager to stop", || !alive(new));
}
