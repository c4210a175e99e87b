//! Daemons started with the `start` command: detached from the test, found by their pid file,
//! and killed (with their workers) when the test ends, whatever happened.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// A directory of this test's own, removed at the end.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("daemon-housework-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config file of this test's own, removed at the end.
pub struct ConfigFile(pub PathBuf);

impl ConfigFile {
    pub fn new(tag: &str, text: &str) -> ConfigFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("daemon-config-{tag}-{}-{n}.toml", std::process::id()));
        let file = ConfigFile(path);
        file.write(text);
        file
    }

    pub fn write(&self, text: &str) {
        write_whole(&self.0, text);
    }

    /// The path, as a `--config` argument.
    pub fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs an example binary to completion (a control command, a `start`), with a deadline.
pub fn run(example_name: &str, args: &[&str]) -> Output {
    run_program(&example(example_name), args)
}

pub fn run_program(program: &Path, args: &[&str]) -> Output {
    finish(command(program, args))
}

/// A command for `program` with the environment a test controls: no `DAEMON_*` or `LAB_*`
/// variable from the developer's shell, logs at info level; standard streams piped.
pub fn command(program: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).env("RUST_LOG", "info");
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("DAEMON_") || name.starts_with("LAB_") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs `command` to its end, within [`SOON`].
pub fn finish(mut command: Command) -> Output {
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let deadline = Instant::now() + SOON;
    loop {
        if child.try_wait().expect("wait for a command").is_some() {
            return child.wait_with_output().expect("collect a command's output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect a command's output");
            panic!("{command:?} did not finish within {SOON:?}: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A daemon started with the `start` command: detached from us, found by its pid file, killed (with
/// its workers) at the end of the test whatever happened.
pub struct Detached {
    pub example: &'static str,
    pub pid_file: PathBuf,
    pub log: PathBuf,
    pub manager: i32,
}

impl Detached {
    /// `lab start`, listening on a port the OS picks.
    pub fn start(dir: &TempDir, extra: &[&str]) -> Detached {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Detached::start_example("lab", dir, &args)
    }

    /// `EXAMPLE start` with a pid file and a log file in `dir`, and `extra`.
    pub fn start_example(example: &'static str, dir: &TempDir, extra: &[&str]) -> Detached {
        let pid_file = dir.path(&format!("{example}.pid"));
        let log = dir.path(&format!("{example}.log"));
        let (p, l) = (pid_file.display().to_string(), log.display().to_string());
        let mut args = vec!["start", "--pid-file", &p, "--log-file", &l];
        args.extend_from_slice(extra);
        let out = run(example, &args);
        assert!(out.status.success(), "start failed: {out:?}");
        let manager = read_pid(&pid_file).expect("start returned before the pid file was written");
        Detached { example, pid_file, log, manager }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        port_in(&self.log_text()).expect("the log names the port")
    }

    pub fn control(&self, args: &[&str]) -> Output {
        let p = self.pid_file.display().to_string();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--pid-file", &p]);
        run(self.example, &all)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        // The manager it started, and the one its pid file names now (after an upgrade).
        let mut managers = vec![self.manager];
        managers.extend(read_pid(&self.pid_file).filter(|p| *p != self.manager && *p > 1));
        for manager in &managers {
            let workers = children(*manager);
            for pid in std::iter::once(*manager).chain(workers) {
                if alive(pid) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        poll_until(SOON, || managers.iter().all(|m| !alive(*m)));
    }
}

/// Writes a file whole, then renames it in place: a reader (a reload, a worker claiming a job)
/// never reads half of it.
pub fn write_whole(path: &Path, text: &str) {
    let temp = path.with_extension("partial");
    std::fs::write(&temp, text).unwrap_or_else(|e| panic!("write {}: {e}", temp.display()));
    std::fs::rename(&temp, path).unwrap_or_else(|e| panic!("move {} in place: {e}", path.display()));
}

pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn port_in(log: &str) -> Option<u16> {
    let rest = log.split("listening addr=").nth(1)?;
    let addr: std::net::SocketAddr = rest.split_whitespace().next()?.parse().ok()?;
    Some(addr.port())
}

pub fn getsid(pid: i32) -> i32 {
    nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid))).map(|p| p.as_raw()).unwrap_or(-1)
}

