//! What the process tests share: start an example binary as a real daemon, watch its log and its
//! workers, signal it, talk HTTP to it, and leave nothing behind.
//!
//! Every wait is a condition polled until a deadline, never a bare sleep: the tests run on loaded
//! machines, so only the deadline may be generous, and a correct daemon passes however slow.
//! Every daemon listens on a port the OS picks (`--listen 127.0.0.1:0`) and runs in its own
//! process group, so tests run in parallel without sharing anything.

#![allow(dead_code)] // each test file uses a part of this module

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod detached;
mod pki;
mod prometheus;
mod upgrading;

#[allow(unused_imports)]
pub use detached::*;
#[allow(unused_imports)]
pub use pki::*;
#[allow(unused_imports)]
pub use prometheus::*;
#[allow(unused_imports)]
pub use upgrading::*;
pub use nix::sys::signal::Signal;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;

/// The deadline for anything that should happen soon (a start, a fork, an exit).
pub const SOON: Duration = Duration::from_secs(30);

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(15);

/// The path of an example binary, built by cargo next to the test binaries.
pub fn example(name: &str) -> PathBuf {
    // The test binary is target/<profile>/deps/<test>-<hash>; examples are target/<profile>/examples.
    let exe = std::env::current_exe().expect("the path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let path = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let build = "`cargo test --all-features` (with no target filter) builds the examples before running the \
                 tests, but `cargo test --test NAME` does not: run `cargo build --examples --all-features` with \
                 the same profile first";
    let built = match std::fs::metadata(&path).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => panic!("the example `{name}` is not built: no {}. {build}", path.display()),
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(format!("{name}.rs"));
    if let Ok(edited) = std::fs::metadata(&source).and_then(|m| m.modified()) {
        assert!(
            edited <= built,
            "the example `{name}` is older than its source {}: {build}",
            source.display()
        );
    }
    path
}

/// Lines a process wrote, shared with the thread that reads them.
#[derive(Default)]
struct Output {
    state: Mutex<OutputState>,
    changed: Condvar,
}

#[derive(Default)]
struct OutputState {
    lines: Vec<String>,
    /// The pipe reached end of file: every process holding it has closed it.
    closed: bool,
}

impl Output {
    /// Reads `from` line by line on a thread of its own, echoing each line to the test's stderr
    /// (shown by the test harness when a test fails).
    fn collect(from: impl Read + Send + 'static, tag: String) -> Arc<Output> {
        let output = Arc::new(Output::default());
        let shared = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                        eprintln!("{tag}| {line}");
                        shared.state.lock().unwrap().lines.push(line);
                        shared.changed.notify_all();
                    }
                }
            }
            shared.state.lock().unwrap().closed = true;
            shared.changed.notify_all();
        });
        output
    }

    fn text(&self) -> String {
        self.state.lock().unwrap().lines.join("\n")
    }

    /// Waits until a line satisfies `matches`; returns it. None if the pipe closed or the time ran
    /// out first.
    fn wait_for(&self, within: Duration, matches: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut seen = 0;
        loop {
            // `matches` runs without the lock held: it may look at the lines itself.
            let (fresh, closed) = {
                let state = self.state.lock().unwrap();
                (state.lines[seen..].to_vec(), state.closed)
            };
            seen += fresh.len();
            if let Some(line) = fresh.into_iter().find(|l| matches(l)) {
                return Some(line);
            }
            let now = Instant::now();
            if closed || now >= deadline {
                return None;
            }
            let state = self.state.lock().unwrap();
            if state.lines.len() == seen && !state.closed {
                drop(self.changed.wait_timeout(state, deadline - now).unwrap());
            }
        }
    }

    fn wait_closed(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut state = self.state.lock().unwrap();
        while !state.closed {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
        true
    }
}

/// A daemon started from an example binary. Dropping it kills its whole process group, then any
/// worker it has seen that escaped the group, and reaps the manager.
pub struct Daemon {
    name: String,
    manager: Child,
    pid: i32,
    stderr: Arc<Output>,
    stdout: Arc<Output>,
    port: Option<u16>,
    /// Every worker seen, with its start time (to never kill a recycled pid).
    seen: Mutex<HashMap<i32, u64>>,
}

impl Daemon {
    /// Starts `example` with exactly these arguments. It does not wait for anything.
    pub fn start(example_name: &str, args: &[&str]) -> Daemon {
        Daemon::start_with_env(example_name, args, &[])
    }

    /// Starts `example` with these arguments and these environment variables (on top of a
    /// cleaned environment). It does not wait for anything.
    pub fn start_with_env(example_name: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_program(&example(example_name), example_name, args, env)
    }

    /// Runs `example` (listening on a free port, should it start at all) with these arguments
    /// and environment variables until it exits: its exit code, standard output and standard
    /// error.
    pub fn run_to_exit(example_name: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut d = Daemon::start_with_env(example_name, &all, env);
        let status = d.wait_exit(SOON);
        (status.code(), d.stdout_after_exit(), d.stderr_after_exit())
    }

    /// Starts the program at `path` (`name` in messages) as [`Daemon::start_with_env`] does.
    pub fn start_program(path: &Path, example_name: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(path);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The log lines the tests wait for are at info level, without colours.
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            // Its own process group: one signal ends the manager and every worker.
            .process_group(0);
        // Settings from the environment would override the attributes, and a supervisor's
        // variables would change what the daemon does: a test sets what it needs.
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("DAEMON_") || name.starts_with("LAB_") {
                command.env_remove(&key);
            }
        }
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let test_pid = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (setrlimit, prctl, getppid) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // A crashing worker (the lab's /abort) must not leave a core file in the repository.
                let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                // If the test binary dies (a timeout, a Ctrl-C), the manager dies too; its workers
                // leave on their manager's death.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != test_pid {
                    return Err(io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
        let mut manager =
            command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let pid = manager.id() as i32;
        let tag = format!("{example_name}[{pid}]");
        let stderr = Output::collect(manager.stderr.take().unwrap(), tag.clone());
        let stdout = Output::collect(manager.stdout.take().unwrap(), format!("{tag} stdout"));
        Daemon {
            name: example_name.to_string(),
            manager,
            pid,
            stderr,
            stdout,
            port: None,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Starts `example` listening on a port the OS picks, with `args`, and waits until the
    /// manager says which port it is.
    pub fn serve(example_name: &str, args: &[&str]) -> Daemon {
        Daemon::serve_program(&example(example_name), example_name, args)
    }

    /// [`Daemon::serve`] for the program at `path`.
    pub fn serve_program(path: &Path, name: &str, args: &[&str]) -> Daemon {
        Daemon::serve_program_with_env(path, name, args, &[])
    }

    /// [`Daemon::serve`] with these environment variables.
    pub fn serve_with_env(example_name: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::serve_program_with_env(&example(example_name), example_name, args, env)
    }

    fn serve_program_with_env(path: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut daemon = Daemon::start_program(path, name, &all, env);
        daemon.learn_port();
        daemon
    }

    /// [`Daemon::serve`] allowed only the CPUs `cpus` (a `taskset` list such as `0`): its
    /// manager and workers, which inherit the affinity (taskset execs it: the pid is the
    /// manager's).
    pub fn serve_on_cpus(example_name: &str, cpus: &str, args: &[&str]) -> Daemon {
        let program = example(example_name);
        let program = program.to_str().expect("a UTF-8 path");
        let mut all = vec!["-c", cpus, program, "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut daemon = Daemon::start_program(Path::new("taskset"), example_name, &all, &[]);
        daemon.learn_port();
        daemon
    }

    /// Waits until the manager says which port it listens on.
    fn learn_port(&mut self) {
        let daemon = self;
        let line = daemon.wait_for_line("listening addr=", SOON);
        let addr = line
            .split("listening addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no IP:PORT after `listening addr=` in {line:?}"));
        assert_ne!(addr.port(), 0, "the manager reported port 0: {line:?}");
        daemon.port = Some(addr.port());
    }

    /// The manager's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The port the daemon listens on (started with [`Daemon::serve`]).
    pub fn port(&self) -> u16 {
        self.port.expect("the daemon was not started with Daemon::serve")
    }

    /// Waits for a line of the manager's (or its workers') standard error that contains `text`,
    /// and returns it. Panics, with everything logged so far, if none comes in time.
    pub fn wait_for_line(&self, text: &str, within: Duration) -> String {
        self.wait_for_line_where(&format!("a line containing {text:?}"), within, |l| {
            l.contains(text)
        })
    }

    /// Waits for a line of standard error that satisfies `matches`.
    pub fn wait_for_line_where(
        &self,
        what: &str,
        within: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        match self.stderr.wait_for(within, matches) {
            Some(line) => line,
            None => panic!(
                "{}: no {what} within {within:?} (standard error {}); it wrote:\n{}",
                self.name,
                if self.stderr.state.lock().unwrap().closed { "closed" } else { "still open" },
                self.stderr.text()
            ),
        }
    }

    /// Waits until the lab has logged a request for `path`: the request has reached a worker.
    pub fn wait_for_request(&self, path: &str, within: Duration) -> String {
        self.wait_for_line_where(&format!("the request for {path}"), within, |l| {
            is_request_log(l, path)
        })
    }

    /// Lines of standard error so far.
    pub fn lines(&self) -> Vec<String> {
        self.stderr.state.lock().unwrap().lines.clone()
    }

    /// Everything written to standard error, once every process holding it has closed it.
    pub fn stderr_after_exit(&self) -> String {
        assert!(self.stderr.wait_closed(SOON), "{}: standard error stays open", self.name);
        self.stderr.text()
    }

    /// Everything written to standard output, once every process holding it has closed it.
    pub fn stdout_after_exit(&self) -> String {
        assert!(self.stdout.wait_closed(SOON), "{}: standard output stays open", self.name);
        self.stdout.text()
    }

    /// The live workers: children of the manager that are not zombies, by pid.
    pub fn workers(&self) -> Vec<i32> {
        let found = children_of(self.pid);
        let mut seen = self.seen.lock().unwrap();
        for &(pid, start) in &found {
            seen.insert(pid, start);
        }
        found.into_iter().map(|(pid, _)| pid).collect()
    }

    /// Waits until exactly `n` workers are alive, and returns them.
    pub fn wait_for_workers(&self, n: usize, within: Duration) -> Vec<i32> {
        let mut last = Vec::new();
        let reached = poll_until(within, || {
            last = self.workers();
            last.len() == n
        });
        if !reached {
            panic!(
                "{}: expected {n} workers within {within:?}, have {} ({last:?}); it wrote:\n{}",
                self.name,
                last.len(),
                self.stderr.text()
            );
        }
        last
    }

    /// Whether a worker this daemon had is still alive (not a zombie). A pid that now belongs to
    /// another process counts as gone.
    pub fn worker_alive(&self, pid: i32) -> bool {
        let start = self.seen.lock().unwrap().get(&pid).copied();
        match stat(pid) {
            Some(s) => s.alive() && start.unwrap_or(s.start) == s.start,
            None => false,
        }
    }

    /// Sends a signal to the manager.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid), signal)
            .unwrap_or_else(|e| panic!("{}: cannot send {signal} to the manager: {e}", self.name));
    }

    /// Sends a signal to one worker, which must be a worker of this daemon.
    pub fn signal_worker(&self, pid: i32, signal: Signal) {
        assert!(self.workers().contains(&pid), "{}: {pid} is not a live worker", self.name);
        kill(Pid::from_raw(pid), signal)
            .unwrap_or_else(|e| panic!("{}: cannot send {signal} to worker {pid}: {e}", self.name));
    }

    /// `kill -9` of one worker.
    pub fn kill_worker(&self, pid: i32) {
        self.signal_worker(pid, Signal::SIGKILL);
    }

    /// Waits for the manager to exit, and returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut status = None;
        let exited = poll_until(within, || {
            status = self.manager.try_wait().expect("waiting for the manager");
            status.is_some()
        });
        match status {
            Some(status) if exited => status,
            _ => panic!(
                "{}: the manager did not exit within {within:?}; it wrote:\n{}",
                self.name,
                self.stderr.text()
            ),
        }
    }

    /// `GET path` with `Connection: close`.
    pub fn try_get(&self, path: &str) -> io::Result<(u16, String)> {
        http_get(self.port(), path)
    }

    /// `GET path`, which must be answered.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path).unwrap_or_else(|e| {
            panic!("{}: GET {path} failed: {e}; it wrote:\n{}", self.name, self.stderr.text())
        })
    }

    /// `GET path` on a thread of its own; join it later.
    pub fn get_in_background(&self, path: &str) -> Pending {
        let (port, path) = (self.port(), path.to_string());
        Pending(std::thread::spawn(move || http_get(port, &path)))
    }

    /// The worker that has accepted `conn` (a connection to this daemon): the one holding the
    /// server's end of it. None while it waits in the listener's queue.
    pub fn holder(&self, conn: &TcpStream) -> Option<i32> {
        let client_port = conn.local_addr().ok()?.port();
        let inode = server_socket(self.port(), client_port)?;
        let target = format!("socket:[{inode}]");
        self.workers().into_iter().find(|&pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(Result::ok).any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str())
                })
            })
        })
    }

    /// Waits until every connection of `conns` has been accepted by a worker, and returns the
    /// workers, in the same order.
    pub fn wait_for_holders(&self, conns: &[TcpStream], within: Duration) -> Vec<i32> {
        wait_for(within, &format!("{} connections to be accepted", conns.len()), || {
            conns.iter().map(|c| self.holder(c)).collect::<Option<Vec<i32>>>()
        })
    }

    /// A connection to the daemon, with timeouts so that no read or write hangs a test.
    pub fn connect(&self) -> TcpStream {
        connect(self.port()).unwrap_or_else(|e| panic!("{}: cannot connect: {e}", self.name))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // The manager leads its group: this kills it and every worker still in the group.
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        // A worker that left the group, if any: only a process that is still the one we saw.
        for (&pid, &start) in self.seen.lock().unwrap().iter() {
            if stat(pid).is_some_and(|s| s.start == start && s.alive()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.manager.kill();
        let _ = self.manager.wait();
    }
}

/// A request running on a thread of its own.
pub struct Pending(JoinHandle<io::Result<(u16, String)>>);

impl Pending {
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    pub fn join(self) -> io::Result<(u16, String)> {
        self.0.join().expect("the request thread panicked")
    }
}

/// Polls `condition` every few milliseconds until it holds; panics, saying `what` was awaited, if
/// it does not hold within `within`.
pub fn wait_until(within: Duration, what: &str, condition: impl FnMut() -> bool) {
    assert!(poll_until(within, condition), "timed out after {within:?} waiting for {what}");
}

/// Polls `probe` every few milliseconds until it finds something, and returns it; panics, saying
/// `what` was awaited, if it finds nothing within `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    wait_until(within, what, || {
        found = probe();
        found.is_some()
    });
    found.expect("the probe found something")
}

/// Polls `condition` until it holds (true) or the time runs out (false).
pub fn poll_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// A connection to 127.0.0.1:`port` with read and write timeouts.
pub fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), SOON)?;
    stream.set_read_timeout(Some(SOON))?;
    stream.set_write_timeout(Some(SOON))?;
    Ok(stream)
}

/// `GET path` on a new connection with `Connection: close`: the status and the body.
pub fn http_get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let mut stream = connect(port)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    read_response(&mut stream)
}

/// One command line to `lab_classic`, and its answer (the connection closes after it).
pub fn classic(port: u16, line: &str) -> io::Result<String> {
    let mut c = connect(port)?;
    c.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    c.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Reads one `200` response from a keep-alive connection, leaving the connection open.
pub fn read_one_response(stream: &mut TcpStream) -> String {
    let head = read_head(stream);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("the body");
    String::from_utf8_lossy(&body).to_string()
}

/// Reads one response head, up to its blank line, and not a byte further (the connection may
/// carry more).
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("a response head");
        assert_eq!(n, 1, "the connection closed before a whole response head: {raw:?}");
        raw.push(byte[0]);
    }
    String::from_utf8_lossy(&raw).to_string()
}

/// Reads a whole response from a connection the server closes after it: the status and the body.
pub fn read_response(stream: &mut TcpStream) -> io::Result<(u16, String)> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{why}: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("no complete response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no status"))?;
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(n) if n != body.len() => Err(bad("the body's length is not its Content-Length")),
        _ => Ok((status, body.to_string())),
    }
}

/// The inode of the server's socket of the TCP connection 127.0.0.1:`client_port` →
/// 127.0.0.1:`server_port`, once a process has accepted it (a connection still in the listener's
/// queue has no inode).
fn server_socket(server_port: u16, client_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let (local, remote) = (format!(":{server_port:04X}"), format!(":{client_port:04X}"));
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 9 && fields[1].ends_with(&local) && fields[2].ends_with(&remote) {
            fields[9].parse::<u64>().ok().filter(|&inode| inode != 0)
        } else {
            None
        }
    })
}

/// Whether the process `pid` exists and is not a zombie (whatever process it now is).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.alive())
}

/// The part of /proc/PID/stat the tests need.
struct Stat {
    state: char,
    ppid: i32,
    /// Start time in clock ticks after boot: with the pid, it names one process.
    start: u64,
}

impl Stat {
    fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The parent of a live process.
pub fn parent_of(pid: i32) -> Option<i32> {
    stat(pid).filter(Stat::alive).map(|s| s.ppid)
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // Field 22 of the whole line; the 20th after the command.
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The live (non-zombie) children of `parent`, by pid.
pub fn children(parent: i32) -> Vec<i32> {
    children_of(parent).into_iter().map(|(pid, _)| pid).collect()
}

/// The live (non-zombie) children of `parent`, with their start times, by pid.
fn children_of(parent: i32) -> Vec<(i32, u64)> {
    let mut found: Vec<(i32, u64)> = std::fs::read_dir("/proc")
        .expect("reading /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let s = stat(pid)?;
            (s.ppid == parent && s.alive()).then_some((pid, s.start))
        })
        .collect();
    found.sort_unstable();
    found
}

/// Whether a log line is the lab's log of a request for `path` (`request method="GET" path="/"`).
pub fn is_request_log(line: &str, path: &str) -> bool {
    line.contains("request")
        && (line.contains(&format!("path={path:?}")) || has_field(line, "path", path))
}

/// Whether a log line has the field `name=value`, in a span (`worker{slot=0 pid=12}`) or after
/// the message (`pid=12`).
pub fn has_field(line: &str, name: &str, value: impl std::fmt::Display) -> bool {
    let field = format!("{name}={value}");
    line.split([' ', '{', '}', ':']).any(|token| token == field)
}

/// The accept queue's length of the TCP socket listening on `port` on this machine (for a
/// listening socket, `ss` shows it as Send-Q), from iproute2's `ss` (`.ci/run` installs it).
pub fn listen_queue(port: u16) -> Option<u32> {
    let out = Command::new("ss").args(["-Hltn", &format!("sport = :{port}")]).output().expect("ss (Debian's iproute2)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().next()?.split_whitespace().nth(2)?.parse().ok()
}
