//! The control commands, and the files they find the daemon by, as a hostile local user meets
//! them: a pid file that names a stranger's process or is locked by one, sockets that squat the
//! control channel's names (or fill their backlog), a FIFO or a symlink where a pid file or a log
//! file goes, and a user who is not the daemon's. No command may signal or trust a process that
//! has not proved to be this daemon's manager, none may hang, and nothing is written through a
//! link.

mod support;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// A process that is not a daemon (`sleep`), killed at the end of the test.
struct Stranger(std::process::Child);

impl Stranger {
    fn start() -> Stranger {
        let child = Command::new("sleep").arg("1000").stdin(Stdio::null()).spawn().expect("start sleep");
        Stranger(child)
    }

    /// A process that writes its own pid to `pid_file` and takes the file's lock itself, as a
    /// manager would (`flock(1)` would not do: the lock would name the flock process).
    fn holding(pid_file: &Path) -> Stranger {
        let script = "import fcntl, os, sys, time\n\
                      f = open(sys.argv[1], 'w'); f.write('%d\\n' % os.getpid()); f.flush()\n\
                      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n\
                      time.sleep(1000)\n";
        let child = Command::new("python3")
            .args(["-c", script])
            .arg(pid_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start python3");
        let stranger = Stranger(child);
        let pid = stranger.pid();
        wait_until(SOON, "the stranger to hold its pid file's lock", || {
            let named = std::fs::read_to_string(pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok());
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            named == Some(pid) && locks.lines().any(|l| l.contains("FLOCK") && l.split_whitespace().nth(4) == Some(&pid.to_string()))
        });
        stranger
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn still_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An exclusive flock on `path`, held by this test process until dropped.
fn hold_lock(path: &Path) -> File {
    let file = OpenOptions::new().read(true).open(path).expect("open the pid file");
    // SAFETY: flock(2) on a descriptor `file` owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "cannot lock {}", path.display());
    file
}

#[test]
fn a_pid_file_naming_a_stranger_gets_no_signal() {
    let dir = TempDir::new("stranger");
    // The case: a pid file names a `sleep`, and somebody (here, this test) holds its lock.
    let mut stranger = Stranger::start();
    let pid_file = dir.path("stranger.pid");
    std::fs::write(&pid_file, format!("{}\n", stranger.pid())).expect("write the pid file");
    let lock = hold_lock(&pid_file);
    let p = pid_file.display().to_string();
    for (command, code) in [(&["stop"][..], 0), (&["reload"][..], 7), (&["status"][..], 1)] {
        let mut args = command.to_vec();
        args.extend(["--pid-file", &p]);
        let out = run("lab", &args);
        assert_eq!(out.status.code(), Some(code), "a lock held by another process than the one named proves nothing: lab {command:?}: {out:?}");
        assert!(stranger.still_running(), "lab {command:?} signalled the process its pid file names");
    }
    drop(lock);
    drop(stranger);

    // Worse: the process the file names holds the lock itself. It is still not a manager.
    let mut stranger = Stranger::holding(&pid_file);
    for (command, code) in [(&["stop"][..], 1), (&["stop", "--graceful"][..], 1), (&["reload"][..], 1), (&["status"][..], 4)] {
        let mut args = command.to_vec();
        args.extend(["--pid-file", &p]);
        let out = run("lab", &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "lab {command:?}: {out:?}");
        assert!(err.contains(&format!("names pid {}", stranger.pid())) && err.contains("nothing was signalled"), "{err}");
        // TERM, QUIT and HUP all end it: still running means none was sent.
        assert!(stranger.still_running(), "lab {command:?} signalled the process its pid file names");
    }
}

/// Sockets bound under the control channel's names by someone who is not the manager, each
/// answering as a manager would, with a made-up scoreboard.
struct Squatter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Squatter {
    /// Binds every name it can (a name somebody else holds is skipped) and answers on all of them
    /// with `fake(pid in the name)`.
    fn bind(names: Vec<(i32, String)>, fake: fn(i32) -> String) -> Squatter {
        let listeners: Vec<(i32, UnixListener)> = names
            .into_iter()
            .filter_map(|(pid, n)| {
                let l = UnixListener::bind_addr(&SocketAddr::from_abstract_name(n.as_bytes()).ok()?).ok()?;
                l.set_nonblocking(true).ok()?;
                Some((pid, l))
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            while !flag.load(Ordering::Relaxed) {
                let mut fds: Vec<PollFd> = listeners.iter().map(|(_, l)| PollFd::new(l.as_fd(), PollFlags::POLLIN)).collect();
                if poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0) == 0 {
                    continue;
                }
                let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
                for ((pid, l), ready) in listeners.iter().zip(ready) {
                    if !ready {
                        continue;
                    }
                    if let Ok((mut s, _)) = l.accept() {
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut request = [0u8; 256];
                        let _ = s.read(&mut request);
                        let _ = s.write_all(fake(*pid).as_bytes());
                    }
                }
            }
        });
        Squatter { stop, thread: Some(thread) }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The scoreboard a squatter shows: generation 7, one worker with a pid that does not exist.
fn fake_status(pid: i32) -> String {
    format!(
        "{{\"pid\":{pid},\"package\":\"daemon\",\"mode\":\"prefork\",\"generation\":7,\"scoreboard\":\"r\",\"workers\":[{{\"slot\":0,\"pid\":999991,\"state\":\"r\",\"generation\":7}}]}}\n"
    )
}

/// The pids the kernel will hand out next (as an unprivileged squatter would guess them).
fn upcoming_pids(n: i32) -> Vec<i32> {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|t| t.trim().parse::<i32>().ok());
    let last = read("/proc/sys/kernel/ns_last_pid").unwrap_or(1);
    let max = read("/proc/sys/kernel/pid_max").unwrap_or(32768);
    // After pid_max the kernel starts again at 300.
    (1..=n).map(|i| if last + i < max { last + i } else { last + i - max + 300 }).collect()
}

#[test]
fn squatted_channel_names_fool_no_one() {
    // Before the daemon starts: the names its manager would have if they were predictable, for
    // the pids it is about to get (the first version's channel was `@daemon-status/<pid>`).
    let guessed = upcoming_pids(300);
    let early = Squatter::bind(
        guessed.iter().flat_map(|&p| [(p, format!("daemon-status/{p}")), (p, format!("daemon-control/{p}/{:032x}", 0))]).collect(),
        fake_status,
    );
    let dir = TempDir::new("squat");
    let d = Detached::start(&dir, &["--workers", "2"]);
    let workers = wait_for(SOON, "two workers", || Some(children(d.manager)).filter(|w| w.len() == 2));
    // And after: fakes under the running manager's own prefix.
    let m = d.manager;
    let _late = Squatter::bind((1..6).map(|i| (m, format!("daemon-control/{m}/{i:032x}"))).collect(), fake_status);

    let out = d.control(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let shown = text(&out.stdout);
    assert!(!shown.contains("999991") && shown.contains("\"generation\":1"), "a fake was believed: {shown}");
    for w in &workers {
        assert!(shown.contains(&format!("\"pid\":{w}")), "worker {w} missing: {shown}");
    }
    // The commands reach the real manager only.
    let out = d.control(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(SOON, "the real manager's new generation", || text(&d.control(&["status", "--json"]).stdout).contains("\"generation\":2"));
    let out = d.control(&["stop"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!alive(d.manager));
    drop(early);
}

#[test]
fn the_manager_answers_nothing_but_requests_and_no_client_stalls_it() {
    let dir = TempDir::new("stall");
    let d = Detached::start(&dir, &["--workers", "1"]);
    // The manager's own channel: other tests squat names under the same prefix, so it is the
    // one whose listening process is the manager, as the client checks.
    let addr = wait_for(SOON, "the manager's control channel", || {
        let table = std::fs::read_to_string("/proc/net/unix").ok()?;
        table
            .lines()
            .filter_map(|l| l.split_whitespace().nth(7))
            .filter(|p| p.starts_with(&format!("@daemon-control/{}/", d.manager)))
            .filter_map(|p| SocketAddr::from_abstract_name(&p.as_bytes()[1..]).ok())
            .find(|a| {
                std::os::unix::net::UnixStream::connect_addr(a).is_ok_and(|s| {
                    nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
                        .is_ok_and(|c| c.pid() == d.manager)
                })
            })
    });
    // Clients that connect and say nothing, or half a request, or nonsense.
    let mut silent: Vec<std::os::unix::net::UnixStream> =
        (0..20).map(|_| std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect")).collect();
    // (It may have been pushed out by the later ones already: then the write fails, as it should.)
    let _ = silent[0].write_all(b"{\"command\":");
    let mut nonsense = std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect");
    nonsense.set_read_timeout(Some(SOON)).expect("timeout");
    nonsense.write_all(b"GET / HTTP/1.1\r\n\r\n\n").expect("nonsense");
    let mut answer = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut nonsense), &mut answer);
    assert!(answer.contains("\"error\"") && !answer.contains("workers"), "nonsense got {answer:?}");
    // Meanwhile the manager still serves its real clients and its pool.
    let out = d.control(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(http_get(d.port(), "/").expect("a request").0, 200);
    drop(silent);
}

/// A directory every user can reach, with a copy of the example binary in it: the checkout may
/// sit in a private directory (a mode 0700 home, `mktemp -d`) that another user cannot enter.
fn reachable_copy(dir: &TempDir, example_name: &str) -> PathBuf {
    let mut ancestor = Some(dir.0.as_path());
    while let Some(p) = ancestor {
        let mode = std::fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
        assert!(
            mode & 0o001 != 0,
            "{} is not searchable by other users (mode {mode:o}), so no other user can run a copy of \
             the binary from {}: point TMPDIR at a directory every user can reach",
            p.display(),
            dir.0.display()
        );
        ancestor = p.parent();
    }
    let copy = dir.path(example_name);
    std::fs::copy(example(example_name), &copy).expect("copy the example binary");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    copy
}

#[test]
fn only_the_daemons_user_reads_its_status() {
    let dir = TempDir::new("status-owner");
    let d = Detached::start(&dir, &["--workers", "1"]);
    assert_eq!(d.control(&["status"]).status.code(), Some(0), "the owner reads it");
    // Acting as another user needs root, as the whole suite does (README; CI runs as root).
    assert!(nix::unistd::geteuid().is_root(), "this test reads the status as another user: run the tests as root");
    use std::os::unix::process::CommandExt;
    let program = reachable_copy(&dir, "lab");
    let p = d.pid_file.display().to_string();
    for command in ["status", "stop", "reload"] {
        let run_as_nobody = || Command::new(&program).args([command, "--pid-file", &p]).uid(65534).gid(65534).stdin(Stdio::null()).output();
        // ETXTBSY: a child another test thread forked while the copy was open for writing still
        // holds that descriptor until it execs.
        let out = wait_for(SOON, "the copy to be free to run", || match run_as_nobody() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => None,
            other => Some(other.unwrap_or_else(|e| panic!("run {} as nobody: {e}", program.display()))),
        });
        let expected = if command == "status" { 4 } else { 1 };
        assert_eq!(out.status.code(), Some(expected), "{command} as nobody: {out:?}");
        assert!(text(&out.stderr).contains("permission denied"), "{out:?}");
    }
    assert!(alive(d.manager), "nobody stopped root's daemon");
}

#[test]
fn a_lock_taken_by_a_stranger_neither_fakes_a_manager_nor_blocks_a_start() {
    let dir = TempDir::new("stranger-lock");
    let first = Detached::start(&dir, &["--workers", "1"]);
    // The manager dies; someone who can read its pid file takes the lock first.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.manager), Signal::SIGKILL).expect("kill -9");
    wait_until(SOON, "the manager to die", || !alive(first.manager));
    let _lock = hold_lock(&first.pid_file);
    let out = first.control(&["status"]);
    assert_eq!(out.status.code(), Some(1), "dead with a pid file, whoever holds its lock: {out:?}");
    let out = first.control(&["stop"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // And a new start replaces the file: its lock proves nothing.
    let second = Detached::start(&dir, &["--workers", "1"]);
    assert!(second.log_text().contains("its lock is held by a process that is not the manager it names"));
    assert_eq!(second.control(&["status"]).status.code(), Some(0));
}

#[test]
fn a_fifo_or_a_symlink_where_a_file_goes_fails_fast_and_writes_nothing() {
    let dir = TempDir::new("fifo");
    let fifo = dir.path("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).expect("mkfifo");
    let f = fifo.display().to_string();
    let log = dir.path("lab.log").display().to_string();
    let pid = dir.path("lab.pid").display().to_string();
    // `run` fails the test if a command does not finish within its deadline.
    let out = run("lab", &["start", "--listen", "127.0.0.1:0", "--pid-file", &f, "--log-file", &log]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("not a regular file"), "{out:?}");
    for command in ["status", "stop", "reload"] {
        let out = run("lab", &[command, "--pid-file", &f]);
        assert!(out.status.code().is_some(), "{command}: {out:?}");
    }
    let out = run("lab", &["start", "--listen", "127.0.0.1:0", "--pid-file", &pid, "--log-file", &f]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("FIFO"), "{out:?}");
    // A log file that is a link to someone else's file.
    let victim = dir.path("victim");
    std::fs::write(&victim, "untouched\n").expect("the victim");
    let link = dir.path("link.log");
    std::os::unix::fs::symlink(&victim, &link).expect("a symlink");
    let l = link.display().to_string();
    let out = run("lab", &["start", "--listen", "127.0.0.1:0", "--pid-file", &pid, "--log-file", &l]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("symbolic link"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&victim).expect("the victim"), "untouched\n");
}

#[test]
fn a_squatter_with_a_full_backlog_cannot_hang_a_command() {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("backlog");
    let d = Detached::start(&dir, &["--workers", "1"]);
    // Listeners under the manager's prefix that never accept, their backlogs full.
    let mut held = Vec::new();
    for i in 0..8 {
        let name = format!("daemon-control/{}/{i:032x}", d.manager);
        let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
        bind(fd.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes()).expect("a name")).expect("bind");
        listen(&fd, Backlog::new(0).expect("backlog")).expect("listen");
        for _ in 0..4 {
            let c = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None).expect("socket");
            let _ = nix::sys::socket::connect(c.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes()).expect("a name"));
            held.push(c);
        }
        held.push(fd);
    }
    // Each command ends, within its deadline, with the real manager's answer.
    assert_eq!(d.control(&["status"]).status.code(), Some(0));
    assert_eq!(d.control(&["reload"]).status.code(), Some(0));
    assert_eq!(d.control(&["stop"]).status.code(), Some(0));
    drop(held);
}
