//! The control commands of every generated binary (`stop`, `reload`, `status`). They find the
//! daemon by its pid file and talk to its manager over the control channel (`channel`), once the
//! channel has proved to be that manager's.

mod channel;

use std::path::Path;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use serde_json::{json, Value as Json};

use crate::boot::pidfile::{holder, Holder};

pub(crate) use channel::{Channel, Request};
use channel::{Expect, Unverified};

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

/// Who runs the command: the program's name (for messages), its package (which the manager
/// must name too), and the users the manager may run as.
pub(crate) struct Caller<'a> {
    pub name: &'a str,
    pub package: &'a str,
    /// The daemon's configured user, if any (root and the caller's own user are always allowed).
    pub user: Option<u32>,
}

/// Runs a control command against the daemon whose pid file is `pid_file`. Returns the exit code.
///
/// The pid file only says where to look: no process it names is trusted, or signalled, until its
/// control channel proves it is this program's manager (see `channel`).
pub(crate) fn run(command: Control, pid_file: Option<&Path>, caller: &Caller<'_>, wait: Duration) -> i32 {
    let name = caller.name;
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
    let me = nix::unistd::geteuid().as_raw();
    let mut uids = vec![0, me];
    uids.extend(caller.user);
    uids.sort_unstable();
    uids.dedup();
    let expect = Expect { pid: running.as_raw(), uids, package: caller.package };
    let request = match command {
        Control::Stop { graceful } => Request::Stop { graceful },
        Control::Reload => Request::Reload,
        Control::Status { .. } => Request::Status,
        Control::Start => return lsb::FAILED,
    };
    let answer = match channel::ask(&expect, request) {
        Ok(a) => a,
        Err(Unverified(why)) => {
            eprintln!(
                "{name}: error: {} names pid {running}, which is not a verified manager of {}: {why}; nothing was signalled",
                path.display(),
                caller.package
            );
            return match command {
                Control::Status { .. } => lsb::UNKNOWN,
                _ => lsb::FAILED,
            };
        }
    };
    match command {
        Control::Stop { graceful } => stop(name, path, running, graceful, wait),
        Control::Reload => {
            if answer.get("applied").and_then(Json::as_bool) == Some(true) {
                println!("{name}: pid {running} applied the new configuration");
                return lsb::OK;
            }
            let problems = answer.get("problems").and_then(Json::as_array).cloned().unwrap_or_default();
            for p in &problems {
                eprintln!("{name}: error: {}", p.as_str().unwrap_or_default());
            }
            eprintln!("{name}: error: the manager (pid {running}) refused the new configuration and keeps running as before");
            lsb::FAILED
        }
        Control::Status { json } => {
            if json {
                println!("{answer}");
            } else {
                print!("{}", render(name, &answer));
            }
            lsb::OK
        }
        Control::Start => lsb::FAILED,
    }
}

/// The pid of the running manager, or the LSB code that says why there is none.
fn manager_pid(path: &Path) -> Result<Pid, i32> {
    match holder(path) {
        Ok(Holder::Manager(pid)) => Ok(Pid::from_raw(pid)),
        // Dead with its pid file left; a lock some other process took proves nothing either.
        Ok(Holder::Free { .. } | Holder::Stranger { .. }) => Err(lsb::DEAD_WITH_PID_FILE),
        Err(_) => Err(lsb::NOT_RUNNING),
    }
}

/// Whether the manager with `pid` still holds the pid file.
fn still_running(path: &Path, pid: Pid) -> bool {
    matches!(holder(path), Ok(Holder::Manager(p)) if p == pid.as_raw())
}

/// Waits for the manager, which has been asked to stop, to be gone.
fn stop(name: &str, path: &Path, pid: Pid, graceful: bool, wait: Duration) -> i32 {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        // The lock goes with the manager, whoever its parent is.
        if !still_running(path, pid) {
            println!("{name} stopped (pid {pid})");
            return lsb::OK;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let how = if graceful { "a graceful stop" } else { "a stop" };
    eprintln!("{name}: error: the manager (pid {pid}) is still running {}s after {how} was asked", wait.as_secs());
    lsb::FAILED
}

/// The status as people read it: the manager, a line per pool with its state letters, then a
/// table of workers.
fn render(name: &str, s: &Json) -> String {
    let workers = s.get("workers").and_then(Json::as_array).cloned().unwrap_or_default();
    let pools = s.get("pools").and_then(Json::as_array).cloned().unwrap_or_default();
    let pid = s.get("pid").unwrap_or(&Json::Null);
    if pools.is_empty() {
        let uptime = s.get("uptime_ms").and_then(Json::as_u64).map(human).unwrap_or_else(|| "?".into());
        let mode = s.get("mode").and_then(Json::as_str).unwrap_or("?");
        return format!("{name} is running: pid {pid}, {mode} (no workers), up {uptime}\n");
    }
    let plural = |n: usize, what: &str| if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") };
    let mut out = format!("{name} is running: manager pid {pid}, {}, {}\n", plural(pools.len(), "pool"), plural(workers.len(), "worker"));
    let text = |v: &Json, k: &str| v.get(k).and_then(Json::as_str).unwrap_or("?").to_string();
    let width = pools.iter().map(|p| text(p, "name").len()).max().unwrap_or(4).max(4);
    for p in &pools {
        let flag = |k: &str| p.get(k).and_then(Json::as_bool).unwrap_or(false);
        let size = match p.get("group").filter(|g| !g.is_null()) {
            Some(g) => {
                let n = |k: &str| g.get(k).and_then(Json::as_u64).unwrap_or(0);
                if n("max_workers") > n("workers") {
                    format!(", {}..{} workers", n("workers"), n("max_workers"))
                } else {
                    String::new()
                }
            }
            None => String::new(),
        };
        out.push_str(&format!(
            "  {:<width$}  {}, generation {}{size}  [{}]",
            text(p, "name"),
            text(p, "kind"),
            p.get("generation").unwrap_or(&Json::Null),
            text(p, "scoreboard"),
        ));
        if flag("removed") {
            out.push_str("  REMOVED: its workers finish and are not replaced");
        }
        if flag("crash_loop") {
            out.push_str("  CRASH LOOP: workers keep dying soon after they start; forking one each 10s");
        }
        if flag("saturated") {
            out.push_str("  SATURATED: every worker is busy and max_children is reached");
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "{:<width$} {:>5} {:>8} {:>5} {:>9} {:>8} {:>14} {:>11} {:>8}  {}\n",
        "pool", "slot", "pid", "state", "requests", "age", "last heartbeat", "request age", "rss", "request"
    ));
    for w in &workers {
        let n = |k: &str| w.get(k).and_then(Json::as_u64).unwrap_or(0);
        let request_age = w.get("request_age_ms").and_then(Json::as_u64).map(human).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<width$} {:>5} {:>8} {:>5} {:>9} {:>8} {:>14} {:>11} {:>8}  {}\n",
            text(w, "pool"),
            n("slot"),
            n("pid"),
            format!("'{}'", text(w, "state")),
            n("requests"),
            human(n("age_ms")),
            format!("{} ago", human(n("last_heartbeat_ms"))),
            request_age,
            bytes(n("rss")),
            w.get("request").and_then(Json::as_str).unwrap_or(""),
        ));
    }
    out
}

fn bytes(n: u64) -> String {
    match n {
        0 => "-".to_string(),
        1..=1_048_575 => format!("{}K", n >> 10),
        _ => format!("{:.1}M", n as f64 / 1_048_576.0),
    }
}

fn human(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}
