//! Hot upgrade (USR2, `upgrade`) and back-out (WINCH, `backout`), as nginx, unicorn and
//! App::Base::Daemon::Supervisor do them.
//!
//! The manager starts the program again, from the path it was started from (so a binary
//! replaced on disk is the one that runs), with the same arguments and environment, and hands
//! it the listening sockets (`boot::inherit`, the protocol of systemd's socket activation) and a
//! pipe. Its pid file becomes `PATH.oldbin`, so the new manager takes `PATH`. The new manager
//! starts its workers, and once every one of them accepts, says `OK` on the pipe (its start's
//! verdict, as a detach's): then the old manager stops gracefully (its workers finish their
//! work), or, with `upgrade --hold`, retires its workers but stays, so the upgrade can be backed
//! out. Anything else rolls back: the new manager says why it failed (`ERR ...`), or exits, or
//! is not ready within `upgrade_timeout`; the old one stops it (QUIT, then KILL after
//! graceful_timeout), takes its pid file back once it is gone, and serves on.

use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use tracing::{error, info, warn};

use super::exits::describe;
use super::procs::Why;
use super::{ms, send, Manager, StopKind};
use crate::boot::{inherit, notify};
use crate::control::oldbin;
use crate::pool::supervise::Rung;
use crate::sys::{exit_now, fork, monotonic_ms, Forked};

/// How to start this program again.
#[derive(Clone, Debug)]
pub(crate) struct Restart {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
}

/// An upgrade this manager started.
#[derive(Debug)]
pub(super) struct Upgrade {
    pub child: Pid,
    /// The read end of the new manager's verdict, until it has said it (or closed it).
    verdict: Option<std::fs::File>,
    said: Vec<u8>,
    started_ms: u64,
    deadline_ms: u64,
    pub hold: bool,
    pub state: State,
    /// When the new manager gets KILL, once it was asked to stop.
    kill_at_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Its workers are starting.
    Starting,
    /// It serves; this manager stops (or, held, stays backed out).
    TookOver,
    /// It failed; it is being stopped, and this manager serves on.
    RollingBack(String),
}

/// How the last upgrade ended, for `status` and the `upgrade` command.
#[derive(Clone, Debug)]
pub(super) struct Outcome {
    pub new_pid: i32,
    pub outcome: &'static str,
    pub why: String,
}

/// Variables of the handover that must not reach the new manager from this one's environment.
/// `inherit::take` removed ours at start; this keeps out any that `main`'s body set since.
fn handover_var(name: &OsString) -> bool {
    [inherit::LISTEN_PID, inherit::LISTEN_FDS, inherit::LISTEN_FDNAMES, inherit::UPGRADE_FROM, inherit::UPGRADE_FD]
        .iter()
        .any(|v| name.as_bytes() == v.as_bytes())
}

/// Whether someone other than root and this manager's user could change what `m` is: its owner,
/// or its write bits (a sticky directory protects the names of its owners' files).
fn others_may_change(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let sticky = m.is_dir() && m.mode() & 0o1000 != 0;
    (m.uid() != 0 && m.uid() != me) || (m.mode() & 0o022 != 0 && !sticky)
}

/// Refuses to run a program file that someone other than root and this manager's user could
/// have put there (the file, or any directory on its path, theirs or writable by them): the
/// upgrade would run their code as the daemon. Returns the file's identity (device, inode),
/// which the exec checks again on the file it opens.
fn trusted_program(exe: &std::path::Path) -> Result<(u64, u64), String> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |path: &std::path::Path, what: &str, m: &std::fs::Metadata| {
        format!(
            "{what} {} can be replaced by another user (owner uid {}, mode {:o}): the upgrade would run \
             their program; make it owned by root or uid {}, and writable by its owner only",
            path.display(),
            m.uid(),
            m.mode() & 0o7777,
            nix::unistd::geteuid()
        )
    };
    // The path as given (its symlinks included: a deploy may switch one) and the file it names
    // now: every directory of both.
    let real = std::fs::canonicalize(exe).map_err(|e| format!("cannot read {}: {e}", exe.display()))?;
    let m = std::fs::metadata(&real).map_err(|e| format!("cannot read {}: {e}", real.display()))?;
    if others_may_change(&m) {
        return Err(refuse(&real, "the program", &m));
    }
    for path in [exe, real.as_path()] {
        for dir in path.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
            let d = std::fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            if others_may_change(&d) {
                let what = if Some(dir) == path.parent() { "the program's directory" } else { "a directory above the program" };
                return Err(refuse(dir, what, &d));
            }
        }
    }
    Ok((m.dev(), m.ino()))
}

fn c_string(bytes: &[u8]) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| "an argument or variable holds a NUL byte".to_string())
}

impl Manager {
    /// The old manager of this one's own upgrade, while it runs (it is our parent until it exits).
    pub(super) fn old_manager_runs(&self) -> Option<Pid> {
        self.upgraded_from.filter(|old| nix::unistd::getppid() == *old)
    }

    /// Whether this manager speaks for the service to systemd: not once a new manager has taken
    /// over from it, and, for a new manager, not before it has (its failing start, or its stop
    /// in a rollback, is not the service's).
    pub(super) fn speaks(&self) -> bool {
        let handed_over = self.upgrade.as_ref().is_some_and(|u| u.state == State::TookOver);
        !handed_over && (self.old_manager_runs().is_none() || self.ready_reported)
    }

    /// A new manager whose old one still runs holds its supervised worker and task groups: the
    /// old manager's own run until it is gone (two at once could do one job twice).
    pub(super) fn singletons_held(&self) -> bool {
        self.old_manager_runs().is_some() && self.pools.values().any(|p| p.kind.singleton())
    }

    /// USR2 or `upgrade`: starts the new manager. Returns its pid, or why nothing was started.
    pub(super) fn start_upgrade(&mut self, hold: bool) -> Result<Pid, String> {
        if self.stop.is_some() {
            return Err("the daemon is stopping".to_string());
        }
        if let Some(u) = &self.upgrade {
            return Err(format!("an upgrade is under way already (the new manager is pid {})", u.child));
        }
        if let Some(old) = self.old_manager_runs() {
            return Err(format!(
                "this manager's own upgrade is not finished: the old manager (pid {old}) still runs; stop it first"
            ));
        }
        let handing = self.listeners.len() + usize::from(self.own.as_ref().and_then(|o| o.metrics.as_ref()).is_some());
        if handing > inherit::MOST_SOCKETS {
            return Err(format!(
                "this manager has {handing} sockets; a new manager takes at most {}: restart the daemon instead",
                inherit::MOST_SOCKETS
            ));
        }
        let restart = self.restart.clone().ok_or("cannot tell which program to start again")?;
        let identity = trusted_program(&restart.exe)?;
        // Everything exec needs, made before the fork.
        let exe = c_string(restart.exe.as_os_str().as_bytes())?;
        let args = restart.args.iter().map(|a| c_string(a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os().filter(|(k, _)| !handover_var(k)) {
            let mut pair = k.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(v.as_bytes());
            env.push(c_string(&pair)?);
        }
        let (read, write): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot make the verdict pipe: {e}"))?;
        self.move_pid_file(true)?;
        let child = match fork() {
            Err(e) => {
                let _ = self.move_pid_file(false);
                return Err(format!("cannot fork: {e}"));
            }
            Ok(Forked::Child) => self.exec_new_manager(&exe, identity, &args, env, &write),
            Ok(Forked::Parent(child)) => child,
        };
        drop(write);
        // Read as the poll loop finds it readable, and drained when the new manager is reaped
        // (a process it started may still hold the write end): never a blocking read.
        let _ = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        let now = monotonic_ms();
        let timeout = ms(self.config.upgrade_timeout);
        info!(
            new_manager = child.as_raw(),
            exe = %restart.exe.display(),
            hold,
            timeout_ms = timeout,
            "upgrade: started the program again with the listening sockets; this manager serves until its workers accept"
        );
        self.upgrade = Some(Upgrade {
            child,
            verdict: Some(std::fs::File::from(read)),
            said: Vec::new(),
            started_ms: now,
            deadline_ms: now.saturating_add(timeout),
            hold,
            state: State::Starting,
            kill_at_ms: None,
        });
        Ok(child)
    }

    /// In the child of the fork: becomes the new manager, or says why it cannot.
    fn exec_new_manager(&self, exe: &CString, identity: (u64, u64), args: &[CString], mut env: Vec<CString>, verdict: &OwnedFd) -> ! {
        // The manager's signals stay blocked across the exec: the new manager blocks them at
        // once too, and one that came meanwhile waits for its loop instead of killing it.
        let fail = |why: String| -> ! {
            crate::boot::detach::Readiness::upgrade(verdict.try_clone().unwrap_or_else(|_| exit_now(127))).failed(&why);
            exit_now(127)
        };
        let mut sockets: Vec<(BorrowedFd<'_>, String)> = self
            .listeners
            .iter()
            .map(|l| (l.as_fd(), if l.activated { format!("{}{}", inherit::ACTIVATED, l.addr) } else { l.addr.to_string() }))
            .collect();
        if let Some((fd, addr)) = self.own.as_ref().and_then(|o| o.metrics.as_ref()).and_then(|m| m.socket()) {
            sockets.push((fd, format!("metrics:{addr}")));
        }
        let handed = match inherit::hand_on(&sockets, verdict, self.pid) {
            Ok(h) => h,
            Err(e) => fail(format!("cannot hand the sockets over: {e}")),
        };
        // systemd's watchdog names the process it expects pings from: this one, after the exec.
        if let Some(i) = env.iter().position(|e| e.as_bytes().starts_with(b"WATCHDOG_PID=")) {
            env.remove(i);
            if let Ok(c) = CString::new(format!("WATCHDOG_PID={}", std::process::id())) {
                env.push(c);
            }
        }
        for (k, v) in handed {
            match CString::new(format!("{k}={v}")) {
                Ok(c) => env.push(c),
                Err(_) => fail("a variable of the handover holds a NUL byte".to_string()),
            }
        }
        // Relative paths in its arguments mean what they meant at the first start.
        let _ = std::env::set_current_dir(&self.layers.base);
        // The file checked is the file run: opened once, checked again by what it is (not by
        // its path, which could name another by now), and executed through the descriptor. Not
        // close-on-exec, so that a script's interpreter can read it (/dev/fd/N).
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(exe.as_bytes()));
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => fail(format!("cannot open {}: {e}", path.display())),
        };
        {
            use std::os::unix::fs::MetadataExt;
            match file.metadata() {
                Ok(m) if (m.dev(), m.ino()) == identity && !others_may_change(&m) => {}
                Ok(_) => fail(format!("{} changed between its check and its start: not run", path.display())),
                Err(e) => fail(format!("cannot read {}: {e}", path.display())),
            }
        }
        let fd = OwnedFd::from(file);
        let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()));
        // fexecve returns only on failure.
        let e = nix::unistd::fexecve(&fd, args, &env).err();
        fail(format!("cannot run {}: {}", path.display(), e.map(|e| e.to_string()).unwrap_or_default()))
    }

    /// The pid file's name for this manager becomes `PATH.oldbin` while the new one takes `PATH`
    /// (`aside`), or `PATH` again.
    fn move_pid_file(&mut self, aside: bool) -> Result<(), String> {
        let Some(p) = self.own.as_mut().and_then(|o| o.housework.pid_file.as_mut()) else { return Ok(()) };
        let here = p.path().to_path_buf();
        if aside {
            let to = oldbin(&here);
            return p.link_aside(&to).map_err(|e| format!("cannot name the pid file {} as {}: {e}", here.display(), to.display()));
        }
        let home = p.home().to_path_buf();
        p.take_back().map_err(|e| format!("cannot name the pid file {} as {}: {e}", here.display(), home.display()))
    }

    /// The verdict pipe, while the new manager has not said its verdict.
    pub(super) fn verdict_fd(&self) -> Option<BorrowedFd<'_>> {
        self.upgrade.as_ref().and_then(|u| u.verdict.as_ref()).map(|f| f.as_fd())
    }

    /// Reads what the new manager said, and acts on a whole verdict.
    pub(super) fn read_verdict(&mut self) {
        let Some(u) = self.upgrade.as_mut() else { return };
        let Some(file) = u.verdict.as_mut() else { return };
        if !read_said(file, &mut u.said) {
            return;
        }
        u.verdict = None;
        let said = String::from_utf8_lossy(&u.said).trim().to_string();
        let child = u.child;
        if said == "OK" {
            self.took_over(child);
        } else {
            let why = match said.strip_prefix("ERR ") {
                Some(why) => format!("the new manager failed to start: {why}"),
                None if said.is_empty() => {
                    "the new program ended, or closed its verdict pipe, without saying its workers are ready".to_string()
                }
                None => format!("the new program said {said:?}, not that its workers are ready"),
            };
            self.roll_back(why);
        }
    }

    fn took_over(&mut self, child: Pid) {
        let Some(u) = self.upgrade.as_mut() else { return };
        u.state = State::TookOver;
        let (hold, took_ms) = (u.hold, monotonic_ms().saturating_sub(u.started_ms));
        self.last_upgrade = Some(Outcome { new_pid: child.as_raw(), outcome: "took over", why: String::new() });
        *self.counters.upgrades.entry("took_over").or_default() += 1;
        if hold {
            info!(new_manager = child.as_raw(), took_ms, "upgrade: the new manager serves; this one is held");
            self.back_out("the upgrade is held");
        } else {
            info!(new_manager = child.as_raw(), took_ms, "upgrade: the new manager serves; this one retires");
            self.begin_stop(StopKind::Graceful, "upgraded: the new manager serves");
        }
    }

    /// What the new manager wrote on its verdict pipe, read without blocking (a process it
    /// started may still hold the write end), once it is reaped.
    fn said_so_far(&mut self) -> String {
        let Some(u) = self.upgrade.as_mut() else { return String::new() };
        if let Some(mut file) = u.verdict.take() {
            read_said(&mut file, &mut u.said);
        }
        String::from_utf8_lossy(&u.said).trim().to_string()
    }

    /// The upgrade failed: the new manager is stopped, and this one serves on.
    fn roll_back(&mut self, why: String) {
        self.roll_back_with(why, true, false)
    }

    /// `alive` is false once the new manager is reaped: its pid is nobody's to signal.
    /// `stopping`: the daemon stops, so this manager does not serve on either.
    fn roll_back_with(&mut self, why: String, alive: bool, stopping: bool) {
        // Time for the new manager's own stop ladder (QUIT, TERM after graceful_timeout, KILL)
        // to end its workers, before it gets KILL itself.
        let graceful = ms(self.config.graceful_timeout).saturating_add(5_000);
        let Some(u) = self.upgrade.as_mut() else { return };
        if matches!(u.state, State::RollingBack(_)) {
            return;
        }
        let child = u.child;
        u.state = State::RollingBack(why.clone());
        u.verdict = None;
        if alive {
            u.kill_at_ms = Some(monotonic_ms().saturating_add(graceful));
            send(child, Signal::SIGQUIT);
        }
        if stopping {
            warn!(new_manager = child.as_raw(), "upgrade abandoned: the daemon stops, the new manager with it");
        } else if self.backed_out {
            error!(new_manager = child.as_raw(), why = %why, "upgrade rolled back: the new manager is stopped; this manager is backed out, with no workers: HUP starts them again");
        } else {
            error!(new_manager = child.as_raw(), why = %why, "upgrade rolled back: the new manager is stopped; this manager serves on");
        }
        self.last_upgrade = Some(Outcome { new_pid: child.as_raw(), outcome: "rolled back", why });
        *self.counters.upgrades.entry("rolled_back").or_default() += 1;
        notify::main_pid(self.pid.as_raw() as u32);
        notify::status("upgrade rolled back");
    }

    /// The daemon stops while the new manager starts: it stops too (the stop is the daemon's).
    pub(super) fn roll_back_for_stop(&mut self) {
        self.roll_back_with("the daemon is stopping".to_string(), true, true);
    }

    /// The upgrade's deadlines: the new manager's readiness, or its KILL.
    pub(super) fn upgrade_deadline(&self) -> Option<u64> {
        let u = self.upgrade.as_ref()?;
        match u.state {
            State::Starting => Some(u.deadline_ms),
            _ => u.kill_at_ms,
        }
    }

    pub(super) fn check_upgrade(&mut self, now: u64) {
        let Some(u) = self.upgrade.as_mut() else { return };
        if u.state == State::Starting && now >= u.deadline_ms {
            let timeout = self.config.upgrade_timeout;
            self.roll_back(format!("the new manager's workers were not ready within upgrade_timeout ({timeout:?})"));
            return;
        }
        if u.kill_at_ms.is_some_and(|at| now >= at) {
            warn!(new_manager = u.child.as_raw(), "upgrade: the new manager did not stop within graceful_timeout: KILL");
            send(u.child, Signal::SIGKILL);
            u.kill_at_ms = None;
        }
    }

    /// A child that is not a worker was reaped: if it is the new manager, the upgrade ends.
    /// Returns whether it was.
    pub(super) fn upgrade_child_exited(&mut self, pid: Pid, status: WaitStatus) -> bool {
        let Some(u) = self.upgrade.as_ref() else { return false };
        if u.child != pid {
            return false;
        }
        let state = u.state.clone();
        match state {
            State::Starting => {
                // What it said before it ended is the reason; it is reaped, so nothing is signalled.
                let said = self.said_so_far();
                let why = match said.strip_prefix("ERR ") {
                    Some(why) => format!("the new manager failed to start: {why} ({})", describe(status)),
                    None if matches!(status, WaitStatus::Exited(_, 2)) => format!(
                        "the new manager ended before its workers were ready: {} (a bad command line or configuration: its reason is in this log or on its stderr)",
                        describe(status)
                    ),
                    None => format!("the new manager ended before its workers were ready: {}", describe(status)),
                };
                self.roll_back_with(why, false, self.stop.is_some());
            }
            State::RollingBack(_) => {
                info!(new_manager = pid.as_raw(), status = %describe(status), "upgrade: the new manager has exited");
                if let Some(o) = self.last_upgrade.as_mut().filter(|o| o.new_pid == pid.as_raw()) {
                    o.why = format!("{} (it ended: {})", o.why, describe(status));
                }
            }
            State::TookOver if self.stop.is_some() => {}
            State::TookOver => {
                if self.backed_out {
                    warn!(new_manager = pid.as_raw(), status = %describe(status), "the new manager has exited; this manager is backed out: HUP starts its workers again")
                } else {
                    info!(new_manager = pid.as_raw(), status = %describe(status), "the new manager has exited; this manager serves (it was backed in)")
                }
                // A held upgrade whose new manager is gone while this one lives on was backed out,
                // whatever it had done before.
                if let Some(o) = self.last_upgrade.as_mut().filter(|o| o.new_pid == pid.as_raw()) {
                    o.outcome = "backed out";
                    o.why = format!("the new manager took over, then exited ({}); this manager is the daemon again", describe(status));
                }
                *self.counters.upgrades.entry("backed_out").or_default() += 1;
            }
        }
        // A held old manager outlives the new one: it is the service's main process again.
        if state == State::TookOver && self.stop.is_none() {
            notify::main_pid(self.pid.as_raw() as u32);
        }
        self.upgrade = None;
        // Its name back, unless the new manager still has it (it exited; its file is stale) or
        // someone else took it.
        if let Some(p) = self.own.as_ref().and_then(|o| o.housework.pid_file.as_ref()) {
            let (here, name) = (p.path().to_path_buf(), p.home().to_path_buf());
            if here != name {
                let names = crate::boot::pidfile::read_pid(&name).ok().flatten();
                // It names nobody, the new manager that has exited, or (still a link to the
                // `.oldbin` name) this manager.
                if names.is_none() || names == Some(pid.as_raw()) || names == Some(self.pid.as_raw()) {
                    if let Err(e) = self.move_pid_file(false) {
                        warn!("{e}");
                    } else {
                        info!(pid_file = %name.display(), "the pid file names this manager again");
                    }
                } else {
                    warn!(pid_file = %name.display(), "the pid file names another process: this manager keeps {}", here.display());
                }
            }
        }
        true
    }

    /// WINCH, `backout`, a held upgrade: every worker retires gracefully; the sockets stay, and
    /// HUP starts workers again.
    pub(super) fn back_out(&mut self, why: &str) {
        if self.stop.is_some() {
            return;
        }
        if self.backed_out {
            info!(why, "backed out already: no workers; HUP starts them again");
            return;
        }
        self.backed_out = true;
        let now = monotonic_ms();
        let slots: Vec<usize> = self.procs.iter().filter(|p| p.stopping.is_none()).map(|p| p.slot).collect();
        info!(why, workers = slots.len(), "backed out: every worker retires; the sockets stay open; HUP starts workers again");
        for slot in slots {
            self.stop_worker(slot, Rung::Quit, Why::Retire, now);
        }
    }

    /// WINCH is a terminal's resize too: a manager in a terminal ignores it (gunicorn issues 500
    /// and 530).
    pub(super) fn on_winch(&mut self) {
        if std::fs::File::open("/dev/tty").is_ok() {
            warn!("WINCH ignored: this manager has a controlling terminal, whose resizes send WINCH (use `backout`)");
            return;
        }
        self.back_out("WINCH");
    }

    /// What `status` says of upgrades.
    /// The status's upgrade keys: `upgrade`, `last_upgrade`, `upgraded_from`, `backed_out`.
    pub(super) fn upgrade_snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        let now = monotonic_ms();
        let current = self.upgrade.as_ref().map(|u| {
            let (state, why) = match &u.state {
                State::Starting => ("starting", None),
                State::TookOver => ("took over", None),
                State::RollingBack(why) => ("rolling back", Some(why.clone())),
            };
            serde_json::json!({
                "new_pid": u.child.as_raw(),
                "state": state,
                "why": why,
                "hold": u.hold,
                "age_ms": now.saturating_sub(u.started_ms),
            })
        });
        let last = self.last_upgrade.as_ref().map(|o| serde_json::json!({ "new_pid": o.new_pid, "outcome": o.outcome, "why": o.why }));
        let mut keys = serde_json::Map::new();
        keys.insert("upgrade".into(), serde_json::json!(current));
        keys.insert("last_upgrade".into(), serde_json::json!(last));
        keys.insert("upgraded_from".into(), serde_json::json!(self.old_manager_runs().map(Pid::as_raw)));
        keys.insert("backed_out".into(), serde_json::json!(self.backed_out));
        keys
    }
}

/// Reads what has arrived of a verdict into `said`. Returns whether the verdict is whole: a
/// line, the writer's end (or an error), or more than a verdict can be.
fn read_said(file: &mut std::fs::File, said: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                said.extend_from_slice(&buf[..n]);
                if said.contains(&b'\n') || said.len() > 4096 {
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}
