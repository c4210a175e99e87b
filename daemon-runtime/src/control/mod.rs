//! The control commands of every generated binary (`stop`, `reload`, `status`). They find the
//! daemon by its pid file and talk to its manager over the control channel (`channel`), once the
//! channel has proved to be that manager's.

mod channel;

pub(crate) use channel::{DEADLINE_MS, MAX_CLIENTS};

use std::path::Path;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use serde_json::{json, Value as Json};

use crate::boot::pidfile::{holder, Holder};

pub(crate) use channel::{Channel, Request};
use channel::{Expect, Unverified};

/// `println!` that does not panic when the reader has gone (`status | head -1`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!`, likewise.
macro_rules! say_part {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// The commands, after the options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    /// Detach and run (`start`).
    Start,
    /// QUIT (graceful: work in hand is finished), or TERM with `--now`; then wait until the
    /// manager is gone.
    Stop { graceful: bool },
    /// HUP.
    Reload,
    /// Print the scoreboard; `--json` for machines.
    Status { json: bool },
    /// USR2: a hot upgrade, waited for until it took over or rolled back.
    Upgrade { hold: bool },
    /// WINCH: retire the workers, keep the sockets.
    Backout,
    /// The stacks of a worker (by slot or pid), or the manager's own state.
    Dump { json: bool, slot: Option<u32>, pid: Option<i32> },
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
                    say!("{name} is not running");
                    lsb::OK
                }
                Control::Reload | Control::Upgrade { .. } | Control::Backout | Control::Dump { .. } => {
                    eprintln!("{name}: error: not running, nothing to do");
                    lsb::STOPPED_RELOAD
                }
                Control::Status { json } => {
                    if json {
                        say!("{}", json!({ "running": false }));
                    } else if code == lsb::DEAD_WITH_PID_FILE {
                        say!("{name} is not running, but its pid file {} remains", path.display());
                    } else {
                        say!("{name} is not running");
                    }
                    code
                }
                Control::Start => lsb::FAILED,
            };
        }
    };
    let expect = Expect { pid: running.as_raw(), uids: manager_uids(caller.user), package: caller.package };
    let request = match command {
        Control::Stop { graceful } => Request::Stop { graceful },
        Control::Reload => Request::Reload,
        Control::Status { .. } => Request::Status,
        Control::Upgrade { hold } => Request::Upgrade { hold },
        Control::Backout => Request::Backout,
        Control::Dump { slot, pid, .. } => Request::Dump { slot, pid },
        Control::Start => return lsb::FAILED,
    };
    // While an upgrade starts, the daemon is two managers: the old one, under `PATH.oldbin`,
    // stops too, and first: stopped second, it would see the new one end first, take that for a
    // failed upgrade and roll back ("this manager serves on") before its own stop came. A held
    // old manager (the upgrade took over) is left alone: stopping the new one is how a back-out
    // ends.
    let stopped_old = match command {
        Control::Stop { graceful } => old_manager(path, running, &expect).and_then(|(old, status)| {
            let e = Expect { pid: old.as_raw(), uids: expect.uids.clone(), package: expect.package };
            let starting = status["upgrade"]["state"] == "starting";
            (starting && channel::ask(&e, Request::Stop { graceful }).is_ok()).then_some(old)
        }),
        _ => None,
    };
    let answer = match channel::ask(&expect, request) {
        Ok(a) => a,
        // The old manager, stopped first, abandons its upgrade and stops the new one itself,
        // which may close its channel before it is asked: nothing is signalled here, the stop
        // below only waits for both to end.
        Err(_) if stopped_old.is_some() => Json::Null,
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
        Control::Stop { graceful } => {
            // As long as the manager says its stop may take, if that is longer.
            let theirs = answer.get("graceful_timeout_ms").and_then(Json::as_u64).map(|ms| Duration::from_millis(ms) + Duration::from_secs(10));
            let wait = theirs.map_or(wait, |t| t.max(wait));
            let code = stop(name, path, running, graceful, wait);
            match stopped_old {
                Some(old) if code == lsb::OK => stop(name, &oldbin(path), old, graceful, wait),
                _ => code,
            }
        }
        Control::Reload => {
            if answer.get("applied").and_then(Json::as_bool) == Some(true) {
                say!("{name}: pid {running} applied the new configuration");
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
            // During an upgrade the old manager runs on under the `.oldbin` pid file: shown too.
            let old = old_manager(path, running, &expect).map(|(_, status)| status);
            if json {
                let mut answer = answer;
                if let Some(old) = old {
                    answer["old_manager"] = old;
                }
                say!("{answer}");
            } else {
                say_part!("{}", render(name, &answer));
                if let Some(old) = old {
                    say!("\nthe old manager of an upgrade, under {}:", oldbin(path).display());
                    say_part!("{}", render(name, &old));
                }
            }
            lsb::OK
        }
        Control::Upgrade { .. } => upgrade(name, path, running, &answer, &expect, wait),
        Control::Backout => {
            if answer.get("backed_out").and_then(Json::as_bool) == Some(true) {
                say!("{name}: pid {running} retires its workers and keeps its sockets; `reload` starts them again");
                return lsb::OK;
            }
            let why = answer.get("why").and_then(Json::as_str).unwrap_or("it is stopping");
            eprintln!("{name}: error: the manager (pid {running}) did not back out: {why}");
            lsb::FAILED
        }
        Control::Dump { json, slot, pid } => {
            if let Some(why) = answer.get("why").and_then(Json::as_str) {
                eprintln!("{name}: error: {why}");
                return lsb::FAILED;
            }
            // The stacks of the worker asked for, and no other.
            let other_slot = slot.is_some_and(|s| answer.get("slot").and_then(Json::as_u64) != Some(u64::from(s)));
            let other_pid = pid.is_some_and(|p| answer.get("worker_pid").and_then(Json::as_i64) != Some(i64::from(p)));
            if other_slot || other_pid {
                eprintln!("{name}: error: the manager (pid {running}) answered for another worker than the one asked for");
                return lsb::FAILED;
            }
            if json {
                say!("{answer}");
            } else if let Some(text) = answer.get("text").and_then(Json::as_str) {
                say_part!("{text}");
            } else {
                say_part!("{}", render_dump(name, &answer));
            }
            lsb::OK
        }
        Control::Start => lsb::FAILED,
    }
}

/// Where a manager keeps its pid file while the manager it started by an upgrade takes over
/// (nginx's and unicorn's name for it).
/// Whether `pid`, which holds the pid file's lock, answers as a manager of `package` on a
/// channel verified as its own (for a start that finds the file taken); why not, if not.
pub(crate) fn verify_manager(pid: i32, user: Option<u32>, package: &str) -> Result<(), String> {
    channel::ask(&Expect { pid, uids: manager_uids(user), package }, Request::Status).map(|_| ()).map_err(|Unverified(why)| why)
}

/// Whom a manager may run as: root, this process's user, or the daemon's configured `user`.
fn manager_uids(user: Option<u32>) -> Vec<u32> {
    let mut uids = vec![0, nix::unistd::geteuid().as_raw()];
    uids.extend(user);
    uids.sort_unstable();
    uids.dedup();
    uids
}

pub(crate) fn oldbin(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".oldbin");
    name.into()
}

/// The old manager of an upgrade, if one runs (under `PATH.oldbin`), and its status, verified as
/// the one at the pid file is.
fn old_manager(path: &Path, running: Pid, expect: &Expect<'_>) -> Option<(Pid, Json)> {
    match holder(&oldbin(path)) {
        Ok(Holder::Manager(p)) if p != running.as_raw() => status_of(p, expect).map(|s| (Pid::from_raw(p), s)),
        _ => None,
    }
}

/// The status of the manager `pid`, verified against `expect`'s users and package.
fn status_of(pid: i32, expect: &Expect<'_>) -> Option<Json> {
    let expect = Expect { pid, uids: expect.uids.clone(), package: expect.package };
    channel::ask(&expect, Request::Status).ok()
}

/// Waits for an upgrade that was started to take over (the pid file names the new manager) or
/// to roll back (the old manager says so).
fn upgrade(name: &str, path: &Path, old: Pid, answer: &Json, expect: &Expect<'_>, wait: Duration) -> i32 {
    let Some(new) = answer.get("new_pid").and_then(Json::as_i64) else {
        let why = answer.get("why").and_then(Json::as_str).unwrap_or("no reason given");
        eprintln!("{name}: error: the manager (pid {old}) started no upgrade: {why}");
        return lsb::FAILED;
    };
    say!("{name}: pid {old} started the new manager, pid {new}; waiting for its workers");
    let held = answer.get("hold").and_then(Json::as_bool) == Some(true);
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        // The old manager tells how it ended, under whichever name its pid file has now.
        let asked = [oldbin(path), path.to_path_buf()].into_iter().find_map(|p| match holder(&p) {
            Ok(Holder::Manager(pid)) if pid == old.as_raw() => status_of(pid, expect),
            _ => None,
        });
        let outcome = match &asked {
            Some(status) if status["last_upgrade"]["new_pid"].as_i64() == Some(new) && status["upgrade"]["state"] != "rolling back" => {
                status["last_upgrade"]["outcome"].as_str().map(String::from).map(|o| (o, status["last_upgrade"]["why"].as_str().unwrap_or("").to_string()))
            }
            Some(_) => None,
            // The old manager is gone: it went after the new one took over, if the new one
            // holds the pid file.
            None if matches!(holder(path), Ok(Holder::Manager(p)) if i64::from(p) == new) => Some(("took over".to_string(), String::new())),
            None => {
                eprintln!("{name}: error: the old manager (pid {old}) is gone, and the new one (pid {new}) does not hold the pid file");
                return lsb::FAILED;
            }
        };
        match outcome.as_ref().map(|(o, why)| (o.as_str(), why)) {
            Some(("took over", _)) => {
                let after = if held {
                    format!(
                        "the old one (pid {old}) is backed out under {}: `stop --pid-file {}` ends it; \
                         `reload` of it and `stop` of the new one back the upgrade out",
                        oldbin(path).display(),
                        oldbin(path).display()
                    )
                } else {
                    format!("the old one (pid {old}) finishes its work and exits")
                };
                say!("{name}: upgraded: the new manager (pid {new}) serves; {after}");
                return lsb::OK;
            }
            Some(("rolled back", why)) => {
                eprintln!("{name}: error: the upgrade rolled back: {why}; the manager (pid {old}) keeps serving");
                return lsb::FAILED;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{name}: error: the upgrade to pid {new} has neither taken over nor rolled back after {}s", wait.as_secs());
    lsb::FAILED
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
        // The lock goes with the manager, whoever its parent is; the process itself ends a
        // moment after its descriptors are closed.
        if !still_running(path, pid) && !crate::sys::proc::runs(pid.as_raw()) {
            say!("{name} stopped (pid {pid})");
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
        if let Some(b) = p.get("busy").filter(|b| !b.is_null()) {
            let secs = b["window_ms"].as_u64().unwrap_or(0) / 1000;
            out.push_str(&format!(
                "  busy {:.0}% over the last {secs}s ({:.1} workers on average)",
                b["percent"].as_f64().unwrap_or(0.0),
                b["workers"].as_f64().unwrap_or(0.0)
            ));
        }
        if flag("saturated") {
            out.push_str("  SATURATED: every worker is busy and max_children is reached");
        }
        out.push('\n');
        if let Some(why) = p.get("workers_auto").and_then(Json::as_str) {
            let n = p.pointer("/limits/workers").and_then(Json::as_u64).unwrap_or(0);
            let workers = if n == 1 { "worker" } else { "workers" };
            out.push_str(&format!("    prefork = auto: {n} {workers} ({why})\n"));
        }
        if let Some(cap) = p.get("accept_cap").and_then(Json::as_u64) {
            let (now, size) = (p.get("accepting").and_then(Json::as_u64).unwrap_or(0), p.get("workers").and_then(Json::as_u64).unwrap_or(0));
            if size > cap {
                out.push_str(&format!("    accepting: {now} of {size} workers, at most {cap} (one per CPU); the others are warm standbys\n"));
            }
        }
    }
    for l in s.get("listeners").and_then(Json::as_array).into_iter().flatten() {
        let overflows = l.get("overflows").and_then(Json::as_u64).map(|n| format!(", {n} handshakes dropped since it opened")).unwrap_or_default();
        let (waiting, limit) = (l.get("waiting").and_then(Json::as_u64).unwrap_or(0), l.get("limit").and_then(Json::as_u64).unwrap_or(0));
        // The kernel lets one more in than the queue's length.
        let full = if limit > 0 && waiting >= limit { ", full" } else { "" };
        out.push_str(&format!("  listen {}: {waiting} waiting in the accept queue (length {limit}{full}){overflows}\n", text(l, "listener")));
    }
    if s.get("backed_out").and_then(Json::as_bool) == Some(true) {
        out.push_str("  BACKED OUT: its workers retire; `reload` starts them again\n");
    }
    if let Some(u) = s.get("upgrade").filter(|u| !u.is_null()) {
        let why = u.get("why").and_then(Json::as_str).map(|w| format!(": {w}")).unwrap_or_default();
        out.push_str(&format!("  upgrade: new manager pid {}, {}{why}\n", u.get("new_pid").unwrap_or(&Json::Null), text(u, "state")));
    }
    if let Some(from) = s.get("upgraded_from").filter(|u| !u.is_null()) {
        out.push_str(&format!("  upgraded from pid {from}, which still runs\n"));
    }
    if let Some(l) = s.get("last_upgrade").filter(|u| !u.is_null()) {
        let why = l.get("why").and_then(Json::as_str).filter(|w| !w.is_empty()).map(|w| format!(": {w}")).unwrap_or_default();
        out.push_str(&format!("  last upgrade: to pid {}, {}{why}\n", l.get("new_pid").unwrap_or(&Json::Null), text(l, "outcome")));
    }
    out.push_str(&format!(
        "{:<width$} {:>5} {:>8} {:>5} {:>9} {:>8} {:>14} {:>11} {:>8}  {}\n",
        "pool", "slot", "pid", "state", "requests", "age", "last heartbeat", "request age", "rss", "request"
    ));
    for w in &workers {
        let n = |k: &str| w.get(k).and_then(Json::as_u64).unwrap_or(0);
        let request_age = w.get("request_age_ms").and_then(Json::as_u64).map(human).unwrap_or_else(|| "-".into());
        let line = format!(
            "{:<width$} {:>5} {:>8} {:>5} {:>9} {:>8} {:>14} {:>11} {:>8}  {}",
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
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `dump` of the manager as people read it: when it next wakes and why, each pool, and each
/// process with its deadlines.
fn render_dump(name: &str, d: &Json) -> String {
    let m = &d["manager"];
    let due = |v: &Json| match v.get("in_ms").and_then(Json::as_i64) {
        Some(ms) if ms < 0 => format!("{} ago", human(ms.unsigned_abs())),
        Some(ms) => format!("in {}", human(ms as u64)),
        None => "-".to_string(),
    };
    let mut out = format!(
        "{name}: manager pid {}, up {}{}\n",
        d["pid"],
        human(m["uptime_ms"].as_u64().unwrap_or(0)),
        m["stopping"].as_str().map(|k| format!(", stopping ({k})")).unwrap_or_default()
    );
    out.push_str(&format!(
        "next wake-up: {} ({})\n",
        if d["next_wake"].is_null() { "none".to_string() } else { due(&d["next_wake"]) },
        d["next_wake_why"].as_str().unwrap_or("?")
    ));
    for p in d["pools"].as_array().into_iter().flatten() {
        let l = &p["limits"];
        out.push_str(&format!(
            "pool {} ({}, generation {}): workers {}, spares {}..{}, max_children {}{}{}\n",
            p["name"].as_str().unwrap_or("?"),
            p["kind"].as_str().unwrap_or("?"),
            p["generation"],
            l["workers"],
            l["min_spare"],
            l["max_spare"],
            l["max_children"],
            if p["crash_loop"] == true { ", CRASH LOOP" } else { "" },
            if p["next_fork_not_before"].is_null() { String::new() } else { format!(", next fork {}", due(&p["next_fork_not_before"])) },
        ));
    }
    for w in d["processes"].as_array().into_iter().flatten() {
        let stopping = match w.get("stopping").filter(|s| !s.is_null()) {
            Some(s) => format!(
                "; stopping ({}), {} rung since {}{}{}",
                s["why"].as_str().unwrap_or("?"),
                s["rung"].as_str().unwrap_or("?"),
                human(s["since_ms"].as_u64().unwrap_or(0)),
                if s["held_for_stack"] == true { ", held for its stack" } else { "" },
                s.get("next").filter(|n| !n.is_null()).map(|n| format!(", {} {}", n["rung"].as_str().unwrap_or("?"), due(n))).unwrap_or_default()
            ),
            None => String::new(),
        };
        out.push_str(&format!(
            "  {} slot {} pid {} generation {} '{}' age {}; next verdict check {}{stopping}\n",
            w["pool"].as_str().unwrap_or("?"),
            w["slot"],
            w["pid"],
            w["generation"],
            w["state"].as_str().unwrap_or("?"),
            human(w["age_ms"].as_u64().unwrap_or(0)),
            if w["next_verdict_check"].is_null() { "none".to_string() } else { due(&w["next_verdict_check"]) },
        ));
    }
    for f in d["foreign_children"].as_array().into_iter().flatten() {
        out.push_str(&format!("  foreign child pid {}{}\n", f["pid"], if f["kill"].is_null() { String::new() } else { format!(", KILL {}", due(&f["kill"])) }));
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
