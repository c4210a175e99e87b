//! Listening on Unix sockets: `listen = "unix:/path"` and `unix:@name`, served to curl, to nginx
//! as a reverse proxy, and through socket activation; the file's mode, owner and group; a stale
//! file, a live one, and paths someone else could have taken; the handover in an upgrade; and the
//! file's removal when the daemon stops for good.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::*;

const NOBODY: u32 = 65534;

/// A directory for sockets that nobody else may write in (the daemon refuses others), but any
/// user may pass through (so nobody can reach a socket its mode lets it use).
fn socket_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod the directory");
    dir
}

/// `GET path` through the Unix socket `socket` with curl (as `uid`, if given): the status (0 if
/// curl could not connect), the body, and curl's pid.
fn curl(socket: &Path, path: &str, uid: Option<u32>) -> (u16, String, u32) {
    let mut command = Command::new("curl");
    command.args(["-s", "--max-time", "30", "-w", "\n%{http_code}", "--unix-socket"]).arg(socket).arg(format!("http://lab{path}"));
    curl_run(command, uid)
}

fn curl_run(mut command: Command, uid: Option<u32>) -> (u16, String, u32) {
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("curl (Debian's curl)");
    let pid = child.id();
    let out = child.wait_with_output().expect("curl's output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string(), pid)
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("the socket file").mode() & 0o7777
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.mode() & libc::S_IFMT == libc::S_IFSOCK)
}

/// Starts `example` with `args`, which must not start: what it said. It exits 1, or 2 for a
/// setting the rule book refuses (a usage error).
fn refused(example: &str, args: &[&str]) -> String {
    refused_with(1, example, args)
}

fn refused_with(code: i32, example: &str, args: &[&str]) -> String {
    let mut d = Daemon::start(example, args);
    let status = d.wait_exit(SOON);
    let said = d.stderr_after_exit();
    assert_eq!(status.code(), Some(code), "the start must fail so: {said}");
    said
}

#[test]
fn a_unix_socket_serves_curl_tells_the_handler_who_connected_and_is_removed_at_stop() {
    let dir = socket_dir("unix-serve");
    let socket = dir.path("app.sock");
    let listen = format!("unix:{}", socket.display());
    let mut d = Daemon::start("lab", &["--workers", "2", "--listen", &listen]);
    d.wait_for_line("pool ready", SOON);
    let line = d.wait_for_line("listening addr=unix:", SOON);
    assert!(line.contains(&listen), "{line}");
    // The daemon's user and group only, by default.
    assert_eq!(mode_of(&socket), 0o660);
    let meta = std::fs::metadata(&socket).expect("the socket file");
    assert_eq!((meta.uid(), meta.gid()), (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()));
    let (code, body, _) = curl(&socket, "/", None);
    assert_eq!((code, body.as_str()), (200, "hello\n"));
    // The handler sees the client process's credentials, as the kernel took them.
    let (code, body, curl_pid) = curl(&socket, "/peer", None);
    assert_eq!(code, 200);
    assert_eq!(body.trim(), format!("unix(pid={curl_pid},uid={},gid={})", nix::unistd::geteuid(), nix::unistd::getegid()));
    // No TCP option on a Unix connection.
    assert_eq!(curl(&socket, "/nodelay", None).1.trim(), "not tcp");
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(SOON).success());
    assert!(!socket.exists(), "the socket file is removed when the daemon stops");
    // The post-forking manager accepts from it too, a child per connection.
    let mut d = Daemon::start("lab", &["--postfork", "--listen", &listen]);
    d.wait_for_line("manager started", SOON);
    wait_until(SOON, "the socket", || is_socket(&socket));
    let pids: Vec<String> = (0..2).map(|_| curl(&socket, "/pid", None)).map(|(code, body, _)| format!("{code} {body}")).collect();
    assert!(pids.iter().all(|p| p.starts_with("200 ")) && pids[0] != pids[1], "a child each: {pids:?}");
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(SOON).success());
    assert!(!socket.exists());
}

#[test]
fn socket_mode_and_group_decide_who_may_connect() {
    let dir = socket_dir("unix-mode");
    let socket = dir.path("app.sock");
    let listen = format!("unix:{}", socket.display());
    // Root's user and group only: nobody is refused by the file's mode.
    let d = Daemon::start("lab", &["--workers", "1", "--listen", &listen]);
    d.wait_for_line("pool ready", SOON);
    assert_eq!(curl(&socket, "/", Some(NOBODY)).0, 0, "nobody may not connect to a 0660 root:root socket");
    drop(d);
    // Given to nobody's group: nobody may connect, others still not.
    let d = Daemon::start("lab", &["--workers", "1", "--listen", &listen, "--socket-group", "nogroup"]);
    d.wait_for_line("pool ready", SOON);
    assert_eq!(std::fs::metadata(&socket).expect("the socket").gid(), NOBODY);
    assert_eq!(curl(&socket, "/", Some(NOBODY)).0, 200);
    drop(d);
    // Mode 0600 from the environment, owner nobody from the file: the owner may connect.
    let config = ConfigFile::new("unix-owner", "socket_user = \"nobody\"\n");
    let d = Daemon::start_with_env("lab", &["--workers", "1", "--listen", &listen, "--config", &config.arg()], &[("DAEMON_SOCKET_MODE", "0600")]);
    d.wait_for_line("pool ready", SOON);
    assert_eq!(mode_of(&socket), 0o600);
    assert_eq!(std::fs::metadata(&socket).expect("the socket").uid(), NOBODY);
    assert_eq!(curl(&socket, "/", Some(NOBODY)).0, 200);
    assert_eq!(curl(&socket, "/", None).0, 200, "root passes any mode");
    drop(d);
    // A mode that is not one is refused with the fix.
    let said = refused_with(2, "lab", &["--listen", &listen, "--socket-mode", "rw-rw----"]);
    assert!(said.contains("octal, such as `0660`"), "{said}");
}

#[test]
fn a_daemon_that_runs_as_nobody_owns_its_socket_and_removes_it() {
    let dir = socket_dir("unix-nobody");
    nix::unistd::chown(&dir.0, Some(nix::unistd::Uid::from_raw(NOBODY)), Some(nix::unistd::Gid::from_raw(NOBODY))).expect("chown");
    let socket = dir.path("app.sock");
    let listen = format!("unix:{}", socket.display());
    let mut d = Daemon::start("lab", &["--workers", "1", "--listen", &listen, "--user", "nobody"]);
    d.wait_for_line("pool ready", SOON);
    let meta = std::fs::metadata(&socket).expect("the socket");
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
    assert_eq!(curl(&socket, "/", Some(NOBODY)).0, 200);
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(SOON).success());
    assert!(!socket.exists(), "removed by the manager, which runs as nobody by then");
}

#[test]
fn a_stale_socket_file_is_removed_and_a_live_one_refuses_the_start() {
    let dir = socket_dir("unix-stale");
    let socket = dir.path("app.sock");
    let listen = format!("unix:{}", socket.display());
    // A run that crashed left its file: nothing listens on it any more.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    assert!(is_socket(&socket));
    let d = Daemon::start("lab", &["--workers", "1", "--listen", &listen]);
    d.wait_for_line("removed a stale socket file", SOON);
    d.wait_for_line("pool ready", SOON);
    assert_eq!(curl(&socket, "/", None).0, 200);
    // While it serves, a second start is refused, naming who answers, and takes nothing.
    let said = refused("lab", &["--listen", &listen]);
    assert!(said.contains(&format!("a process answers on this socket (pid {})", d.pid())), "{said}");
    assert_eq!(curl(&socket, "/", None).0, 200, "the first daemon still serves");
}

#[test]
fn a_path_someone_else_could_have_taken_is_refused_and_left_alone() {
    let dir = socket_dir("unix-hostile");
    // A file that is not a socket is never removed.
    let file = dir.path("notes.txt");
    std::fs::write(&file, "keep me").expect("write");
    let said = refused("lab", &["--listen", &format!("unix:{}", file.display())]);
    assert!(said.contains("exists and is not a socket: it is not removed"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).ok().as_deref(), Some("keep me"));
    // Nor a link, wherever it points.
    let link = dir.path("link.sock");
    std::os::unix::fs::symlink(&file, &link).expect("symlink");
    let said = refused("lab", &["--listen", &format!("unix:{}", link.display())]);
    assert!(said.contains("is not a socket"), "{said}");
    assert!(std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()));
    // Nor another user's socket, stale or not.
    let theirs = dir.path("theirs.sock");
    drop(std::os::unix::net::UnixListener::bind(&theirs).expect("bind"));
    nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(NOBODY)), None).expect("chown");
    let said = refused("lab", &["--listen", &format!("unix:{}", theirs.display())]);
    assert!(said.contains("a socket of another user (uid 65534)"), "{said}");
    assert!(is_socket(&theirs));
    // A directory others may write in (without the sticky bit) is refused: they could put
    // their own socket in the daemon's place.
    let open = dir.path("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let said = refused("lab", &["--listen", &format!("unix:{}", open.join("app.sock").display())]);
    assert!(said.contains("may be changed by other users"), "{said}");
    assert!(!open.join("app.sock").exists());
    // A directory reached through a link is refused: the link could be pointed elsewhere.
    let real = dir.path("real");
    std::fs::create_dir(&real).expect("mkdir");
    std::os::unix::fs::symlink(&real, dir.path("via")).expect("symlink");
    let said = refused("lab", &["--listen", &format!("unix:{}", dir.path("via/app.sock").display())]);
    assert!(said.contains("is a symbolic link or not a directory"), "{said}");
    // So is a path through a directory others may rename things in, however far up.
    let shared = dir.path("shared");
    std::fs::create_dir_all(shared.join("run")).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let said = refused("lab", &["--listen", &format!("unix:{}", shared.join("run/app.sock").display())]);
    assert!(said.contains(&format!("the directory {} may be changed by other users", shared.display())), "{said}");
    // A sticky directory (as /tmp) protects what is in it, but anyone may take a free name in
    // it while the daemon is down: refused for the socket itself.
    let sticky = dir.path("sticky");
    std::fs::create_dir(&sticky).expect("mkdir");
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let said = refused("lab", &["--listen", &format!("unix:{}", sticky.join("app.sock").display())]);
    assert!(said.contains("may be changed by other users"), "{said}");
    // The group let in by socket_group may connect, not write in the directory.
    let grouped = dir.path("grouped");
    std::fs::create_dir(&grouped).expect("mkdir");
    nix::unistd::chown(&grouped, None, Some(nix::unistd::Gid::from_raw(NOBODY))).expect("chgrp");
    std::fs::set_permissions(&grouped, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    let said = refused("lab", &["--listen", &format!("unix:{}", grouped.join("app.sock").display()), "--socket-group", "nogroup"]);
    assert!(said.contains("may be changed by other users"), "{said}");
    // A directory that does not exist is named, with the fix.
    let said = refused("lab", &["--listen", &format!("unix:{}", dir.path("none/app.sock").display())]);
    assert!(said.contains("does not exist: create it"), "{said}");
    // A relative path is a configuration error.
    let said = refused_with(2, "lab", &["--listen", "unix:app.sock"]);
    assert!(said.contains("not absolute"), "{said}");
}

#[test]
fn an_abstract_socket_serves_and_a_name_in_use_refuses_the_start() {
    let name = format!("daemon-test-{}-abstract", std::process::id());
    let listen = format!("unix:@{name}");
    let d = Daemon::start("lab", &["--workers", "1", "--listen", &listen]);
    d.wait_for_line("pool ready", SOON);
    let mut command = Command::new("curl");
    command.args(["-s", "--max-time", "30", "-w", "\n%{http_code}", "--abstract-unix-socket", &name, "http://lab/"]);
    let (code, body, _) = curl_run(command, None);
    assert_eq!((code, body.as_str()), (200, "hello\n"));
    let said = refused("lab", &["--listen", &listen]);
    assert!(said.contains("another socket holds this abstract name"), "{said}");
}

#[test]
fn the_classic_model_serves_a_unix_socket_through_a_stream_and_refuses_a_tcp_only_handler() {
    let dir = socket_dir("unix-classic");
    let socket = dir.path("echo.sock");
    let listen = format!("unix:{}", socket.display());
    // `echo`'s handler takes a daemon::net::Stream.
    {
        let d = Daemon::start("echo", &["--listen", &listen]);
        d.wait_for_line("pool ready", SOON);
        let mut client = UnixStream::connect(&socket).expect("connect");
        client.set_read_timeout(Some(SOON)).expect("timeout");
        client.write_all(b"over a unix socket\n").expect("write");
        client.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut echoed = String::new();
        client.read_to_string(&mut echoed).expect("read");
        assert_eq!(echoed, "over a unix socket\n");
        drop(d);
    }
    // `lab_classic`'s takes a std::net::TcpStream: it cannot serve a Unix socket, and says so
    // before it serves anything.
    let said = refused("lab_classic", &["--listen", &listen]);
    assert!(said.contains("it takes a std::net::TcpStream, so it serves TCP only"), "{said}");
    assert!(!socket.exists(), "a start that fails leaves no socket file behind");
}

#[test]
fn a_path_cannot_forge_log_lines() {
    let dir = socket_dir("unix-log");
    let listen = format!("unix:{}", dir.path("x\n2026-01-01T00:00:00Z ERROR FORGED.sock").display());
    let d = Daemon::start("lab", &["--workers", "1", "--listen", &listen]);
    d.wait_for_line("pool ready", SOON);
    assert!(d.lines().iter().all(|l| !l.starts_with("2026-01-01T00:00:00Z ERROR FORGED")), "{:?}", d.lines());
    assert!(d.lines().iter().any(|l| l.contains("x\\n2026-01-01T00:00:00Z ERROR FORGED.sock")), "{:?}", d.lines());
}

#[test]
fn two_starts_at_once_on_a_stale_file_leave_one_daemon_that_answers() {
    let dir = socket_dir("unix-race");
    let socket = dir.path("r.sock");
    let listen = format!("unix:{}", socket.display());
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    // The first start is held just as it removes the stale file (strace delays the call); the
    // second comes meanwhile. Without turns, the second would bind, then lose its file to the
    // first's removal and serve a socket nobody can reach.
    let trace = dir.path("trace");
    let first = Daemon::start_program(
        Path::new("strace"),
        "strace",
        &["-f", "-o", &trace.display().to_string(), "-e", "trace=unlinkat", "-e", "inject=unlinkat:delay_enter=1500000", &example("lab").display().to_string(), "--workers", "1", "--listen", &listen],
        &[],
    );
    wait_until(SOON, "the first start to remove the stale file", || std::fs::read_to_string(&trace).is_ok_and(|t| t.contains("\"r.sock\"")));
    let mut second = Daemon::start("lab", &["--workers", "1", "--listen", &listen]);
    let status = second.wait_exit(SOON);
    let said = second.stderr_after_exit();
    assert_eq!(status.code(), Some(1), "the second start must see the first: {said}");
    assert!(said.contains("a process answers on this socket"), "{said}");
    first.wait_for_line("pool ready", SOON);
    assert_eq!(curl(&socket, "/", None).0, 200, "the daemon that runs answers on the path");
}

#[test]
fn an_upgrade_takes_over_only_the_file_the_old_manager_bound() {
    let dir = socket_dir("unix-upgrade-moved");
    let socket = dir.path("app.sock");
    let listen = format!("unix:{}", socket.display());
    let app = App::start("unix-upgrade-moved", &["--listen", &listen]);
    app.track();
    // Someone moves the daemon's file away and puts another socket in its place.
    std::fs::rename(&socket, dir.path("moved.sock")).expect("move");
    let theirs = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let out = app.upgrade(&[]);
    assert!(out.status.success(), "upgrade: {out:?}\n{}", app.log_text());
    let new = app.settle();
    assert!(app.log_text().contains("no longer names the socket file the old manager bound"), "{}", app.log_text());
    assert!(app.control(&["stop"]).status.success());
    wait_until(SOON, "the new manager to exit", || !alive(new));
    assert!(is_socket(&socket), "another's socket is not removed");
    drop(theirs);
}

#[test]
fn systemd_socket_activation_hands_a_unix_socket_which_the_daemon_leaves_to_it() {
    let dir = socket_dir("unix-activation");
    let socket = dir.path("activated.sock");
    let lab = example("lab").display().to_string();
    let mut d = Daemon::start_program(
        Path::new("systemd-socket-activate"),
        "systemd-socket-activate",
        &["-l", &socket.display().to_string(), &lab, "--workers", "1"],
        &[],
    );
    wait_until(SOON, "the activation socket", || is_socket(&socket));
    let (code, body, _) = curl(&socket, "/", None);
    assert_eq!((code, body.as_str()), (200, "hello\n"));
    let line = d.wait_for_line("from=\"socket activation\"", SOON);
    assert!(line.contains(&format!("listening addr=unix:{}", socket.display())), "{line}");
    // systemd-socket-activate executed the lab in its own place: the manager is its pid. An
    // upgrade hands the service manager's socket on as the service manager's.
    d.wait_for_line("pool ready", SOON);
    d.signal(Signal::SIGUSR2);
    let started = d.wait_for_line("new_manager=", SOON);
    let new: i32 = started.split("new_manager=").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).expect("the new manager's pid");
    let taken = d.wait_for_line_where("the new manager taking the activated socket", SOON, |l| {
        l.contains(&format!("manager{{pid={new}}}")) && l.contains("listening addr=unix:")
    });
    assert!(taken.contains("from=\"socket activation\""), "{taken}");
    assert!(d.wait_exit(SOON).success(), "the old manager hands over and exits");
    assert!(!d.lines().iter().any(|l| l.contains("is not in `listen` any more")), "{:?}", d.lines());
    assert_eq!(curl(&socket, "/", None).0, 200, "the new manager serves the same socket");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(new), Signal::SIGTERM).expect("stop the new manager");
    wait_until(SOON, "the new manager to exit", || !alive(new));
    assert!(is_socket(&socket), "the service manager's socket file is not the daemon's to remove");
}

#[test]
fn an_upgrade_hands_the_unix_socket_over_and_only_the_last_stop_removes_it() {
    let dir = socket_dir("unix-upgrade-sock");
    let socket = dir.path("app.sock");
    let listen = format!("unix:{}", socket.display());
    let app = App::start("unix-upgrade", &["--listen", &listen]);
    let old = app.track();
    let inode = std::fs::metadata(&socket).expect("the socket").ino();
    let out = app.upgrade(&[]);
    assert!(out.status.success(), "upgrade: {out:?}\n{}", app.log_text());
    let new = app.settle();
    assert_ne!(new, old);
    let log = app.log_text();
    assert!(log.lines().any(|l| l.contains(&format!("listening addr={listen}")) && l.contains("from=\"the old manager\"")), "{log}");
    // The old manager's exit removed nothing: the same socket file serves.
    assert_eq!(std::fs::metadata(&socket).expect("the socket").ino(), inode);
    assert_eq!(curl(&socket, "/", None).0, 200);
    let out = app.control(&["stop"]);
    assert!(out.status.success(), "stop: {out:?}");
    wait_until(SOON, "the new manager to exit", || !alive(new));
    assert!(!socket.exists(), "the last stop removes the file");
}

#[test]
fn nginx_in_front_of_a_unix_socket_loses_no_request_across_a_reload_and_an_upgrade() {
    let dir = socket_dir("unix-nginx-sock");
    let socket = dir.path("app.sock");
    let listen = format!("unix:{}", socket.display());
    // nginx's workers run as nobody:nogroup; the socket lets its group in.
    let app = App::start("unix-nginx", &["--listen", &listen, "--socket-group", "nogroup"]);
    app.track();
    let nginx = Nginx::start(&dir, &socket);
    let (code, body) = http_get(nginx.port, "/").expect("through nginx");
    assert_eq!((code, body.as_str()), (200, "hello\n"));
    let load = Load::start(nginx.port, 2, 2);
    let g = generation(&app);
    let out = app.control(&["reload"]);
    assert!(out.status.success(), "reload: {out:?}");
    wait_until(SOON, "the new generation ready", || ready_at(&app, g + 1));
    let out = app.upgrade(&[]);
    assert!(out.status.success(), "upgrade: {out:?}\n{}", app.log_text());
    app.settle();
    let counts = load.finish();
    assert_eq!(counts.failed, 0, "{} of {} requests failed: {:?}", counts.failed, counts.ok + counts.failed, counts.first_failures);
    assert!(counts.ok > 50, "only {} requests in all", counts.ok);
    assert!(!nginx.errors().contains("connect() to unix:"), "nginx could not reach the daemon: {}", nginx.errors());
}

/// nginx as a reverse proxy to a Unix socket, on a free port, in the foreground (its process
/// group dies with the test's `Daemon`).
struct Nginx {
    _process: Daemon,
    port: u16,
    error_log: PathBuf,
}

impl Nginx {
    fn start(dir: &TempDir, socket: &Path) -> Nginx {
        let port = free_port();
        let (conf, error_log) = (dir.path("nginx.conf"), dir.path("nginx-error.log"));
        let text = format!(
            "daemon off;\nworker_processes 1;\nuser nobody nogroup;\npid {dir}/nginx.pid;\nerror_log {err} warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
             \x20 upstream app {{ server unix:{socket}; keepalive 8; }}\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
            dir = dir.0.display(),
            err = error_log.display(),
            socket = socket.display(),
        );
        std::fs::write(&conf, text).expect("write nginx.conf");
        let process = Daemon::start_program(
            Path::new("nginx"),
            "nginx",
            &["-p", &dir.0.display().to_string(), "-e", &error_log.display().to_string(), "-c", &conf.display().to_string()],
            &[],
        );
        wait_until(SOON, "nginx to listen", || connect(port).is_ok());
        Nginx { _process: process, port, error_log }
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}
