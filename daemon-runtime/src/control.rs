//! The control commands of every generated binary (`stop`, `reload`, `status`), and the status
//! channel they read: an abstract Unix socket named after the manager's pid, answered by the
//! manager from its poll loop, and only to its own user (or root), checked with SO_PEERCRED.

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Pid;
use serde_json::{json, Value as Json};

use crate::pidfile::{is_locked, read_pid};

/// The commands, after the options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    /// Detach and run (`start`).
    Start,
    /// TERM, or QUIT with `--graceful`, then wait until the manager is gone.
    Stop { graceful: bool },
    /// HUP.
    Reload,
    /// Print the scoreboard; `--json` for machines.
    Status { json: bool },
}

/// LSB init-script exit codes.
pub(crate) mod lsb {
    pub const OK: i32 = 0;
    pub const DEAD_WITH_PID_FILE: i32 = 1;
    pub const NOT_RUNNING: i32 = 3;
    pub const UNKNOWN: i32 = 4;
    pub const FAILED: i32 = 1;
    pub const STOPPED_RELOAD: i32 = 7;
}

fn status_address(manager: i32) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("daemon-status/{manager}"))
}

/// The manager's end of the status channel.
pub(crate) fn status_listener(manager: i32) -> std::io::Result<UnixListener> {
    let listener = UnixListener::bind_addr(&status_address(manager)?)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Answers one waiting status request, if its peer may read it.
pub(crate) fn answer(listener: &UnixListener, snapshot: impl FnOnce() -> Json) {
    let Ok((mut stream, _)) = listener.accept() else { return };
    let allowed = getsockopt(&stream, PeerCredentials)
        .map(|c| c.uid() == 0 || c.uid() == nix::unistd::geteuid().as_raw())
        .unwrap_or(false);
    if !allowed {
        let _ = stream.write_all(b"{\"error\":\"permission denied: only the daemon's user reads its status\"}\n");
        return;
    }
    // A client that does not read is not worth waiting for.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(format!("{}\n", snapshot()).as_bytes());
}

/// Runs a control command against the daemon whose pid file is `pid_file`. Returns the exit code.
pub(crate) fn run(command: Control, pid_file: Option<&Path>, name: &str, wait: Duration) -> i32 {
    let Some(path) = pid_file else {
        eprintln!("{name}: error: this command finds the daemon by its pid file: give --pid-file PATH (or set pid_file)");
        return lsb::UNKNOWN;
    };
    let running = match manager_pid(path) {
        Ok(p) => p,
        Err(code) => {
            return match command {
                Control::Stop { .. } => {
                    println!("{name} is not running");
                    lsb::OK
                }
                Control::Reload => {
                    eprintln!("{name}: error: not running, nothing to reload");
                    lsb::STOPPED_RELOAD
                }
                Control::Status { json } => {
                    if json {
                        println!("{}", json!({ "running": false }));
                    } else if code == lsb::DEAD_WITH_PID_FILE {
                        println!("{name} is not running, but its pid file {} remains", path.display());
                    } else {
                        println!("{name} is not running");
                    }
                    code
                }
                Control::Start => lsb::FAILED,
            };
        }
    };
    match command {
        Control::Stop { graceful } => stop(name, path, running, graceful, wait),
        Control::Reload => match kill(running, Signal::SIGHUP) {
            Ok(()) => {
                println!("{name}: asked the manager (pid {running}) to reload");
                lsb::OK
            }
            Err(e) => {
                eprintln!("{name}: error: cannot signal the manager (pid {running}): {e}");
                lsb::FAILED
            }
        },
        Control::Status { json } => status(name, running, json),
        Control::Start => lsb::FAILED,
    }
}

/// The pid of the running manager, or the LSB code that says why there is none.
fn manager_pid(path: &Path) -> Result<Pid, i32> {
    match is_locked(path) {
        Ok(true) => {}
        Ok(false) => return Err(lsb::DEAD_WITH_PID_FILE),
        Err(_) => return Err(lsb::NOT_RUNNING),
    }
    match read_pid(path) {
        Ok(Some(pid)) => Ok(Pid::from_raw(pid)),
        _ => Err(lsb::NOT_RUNNING),
    }
}

fn stop(name: &str, path: &Path, pid: Pid, graceful: bool, wait: Duration) -> i32 {
    let signal = if graceful { Signal::SIGQUIT } else { Signal::SIGTERM };
    if let Err(e) = kill(pid, signal) {
        eprintln!("{name}: error: cannot signal the manager (pid {pid}): {e}");
        return lsb::FAILED;
    }
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        // The lock goes with the manager, whoever its parent is.
        if !matches!(is_locked(path), Ok(true)) {
            println!("{name} stopped (pid {pid})");
            return lsb::OK;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{name}: error: the manager (pid {pid}) is still running after {}s", wait.as_secs());
    lsb::FAILED
}

fn status(name: &str, manager: Pid, as_json: bool) -> i32 {
    let reply = (|| -> std::io::Result<String> {
        let mut stream = UnixStream::connect_addr(&status_address(manager.as_raw())?)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })();
    let text = match reply {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: error: the manager (pid {manager}) runs but its status channel does not answer: {e}");
            return lsb::UNKNOWN;
        }
    };
    let parsed: Json = match serde_json::from_str(text.trim()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{name}: error: unreadable status from the manager: {e}");
            return lsb::UNKNOWN;
        }
    };
    if let Some(err) = parsed.get("error").and_then(Json::as_str) {
        eprintln!("{name}: error: {err}");
        return lsb::UNKNOWN;
    }
    if as_json {
        println!("{parsed}");
    } else {
        print!("{}", render(name, &parsed));
    }
    lsb::OK
}

/// The status as people read it: a line of state letters, then a table of workers.
fn render(name: &str, s: &Json) -> String {
    let workers = s.get("workers").and_then(Json::as_array).cloned().unwrap_or_default();
    let letters: String = workers
        .iter()
        .map(|w| w.get("state").and_then(Json::as_str).unwrap_or("?").to_string())
        .collect();
    let mut out = format!(
        "{name} is running: manager pid {}, mode {}, generation {}, {} workers\n[{letters}]\n",
        s.get("pid").unwrap_or(&Json::Null),
        s.get("mode").and_then(Json::as_str).unwrap_or("?"),
        s.get("generation").unwrap_or(&Json::Null),
        workers.len()
    );
    out.push_str(&format!(
        "{:>5} {:>8} {:>5} {:>9} {:>10} {:>15}\n",
        "slot", "pid", "state", "requests", "age", "last heartbeat"
    ));
    for w in &workers {
        let n = |k: &str| w.get(k).and_then(Json::as_u64).unwrap_or(0);
        out.push_str(&format!(
            "{:>5} {:>8} {:>5} {:>9} {:>10} {:>15}\n",
            n("slot"),
            n("pid"),
            format!("'{}'", w.get("state").and_then(Json::as_str).unwrap_or("?")),
            n("requests"),
            human(n("age_ms")),
            format!("{} ago", human(n("last_heartbeat_ms"))),
        ));
    }
    out
}

fn human(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}
