//! Zero downtime: reloads and hot binary upgrades under continuous load lose no request, for
//! keep-alive clients and new connections alike; an upgrade to a binary that cannot start, or
//! never becomes ready, rolls back; a held upgrade backs out; socket activation and its
//! variables, from systemd and from an old manager.
//!
//! Each test runs its own copy of the lab binary (`support::App`).

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use support::*;

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
