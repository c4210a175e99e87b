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

use nix::fcntl::OFlag;
use tracing::{info, warn};

use super::Manager;
use crate::boot::inherit;
use crate::control::oldbin;
use crate::sys::{exit_now, fork, Forked};

/// The driver's side of an upgrade under way: the verdict pipe, and what came on it.
pub(super) struct UpgradeIo {
    pub child: nix::unistd::Pid,
    /// The read end of the new manager's verdict, until it has said it (or closed it).
    verdict: Option<std::fs::File>,
    said: Vec<u8>,
}

impl UpgradeIo {
    /// The verdict pipe, while the new manager has not said its verdict.
    pub(super) fn verdict_fd(&self) -> Option<BorrowedFd<'_>> {
        self.verdict.as_ref().map(|f| f.as_fd())
    }

    /// Reads what has arrived (never blocking): the text so far, and whether it is whole.
    pub(super) fn read(&mut self) -> (String, bool) {
        let whole = match self.verdict.as_mut() {
            Some(file) => read_said(file, &mut self.said),
            None => true,
        };
        if whole {
            self.verdict = None;
        }
        (String::from_utf8_lossy(&self.said).into_owned(), whole)
    }
}

/// Variables of the handover that must not reach the new manager from this one's environment.
/// `inherit::take` removed ours at start; this keeps out any that `main`'s body set since.
fn handover_var(name: &OsString) -> bool {
    [inherit::LISTEN_PID, inherit::LISTEN_FDS, inherit::LISTEN_FDNAMES, inherit::UPGRADE_FROM, inherit::UPGRADE_FD, inherit::UPGRADE_METRICS]
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
    /// USR2 or `upgrade`: starts the new manager (its sockets, its verdict pipe, the pid file
    /// named `.oldbin`). Returns its pid, or why nothing was started.
    pub(super) fn start_upgrade(&mut self) -> Result<nix::unistd::Pid, String> {
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
        info!(
            new_manager = child.as_raw(),
            exe = %restart.exe.display(),
            timeout_ms = super::core::ms(self.core.config().upgrade_timeout),
            "upgrade: started the program again with the listening sockets; this manager serves until its workers accept"
        );
        self.upgrade = Some(UpgradeIo { child, verdict: Some(std::fs::File::from(read)), said: Vec::new() });
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
        // Each socket's name says what it is for; the new manager finds its address itself.
        let mut sockets: Vec<(BorrowedFd<'_>, String)> = self
            .listeners
            .iter()
            .map(|l| {
                let name = match (&l.file, l.activated) {
                    (_, true) => inherit::ACTIVATED.to_string(),
                    (Some(file), false) => crate::boot::unix_socket::hand_over_name(file),
                    (None, false) => inherit::LISTENING.to_string(),
                };
                (l.as_fd(), name)
            })
            .collect();
        if let Some((fd, _)) = self.own.as_ref().and_then(|o| o.metrics.as_ref()).and_then(|m| m.socket()) {
            sockets.push((fd, inherit::METRICS.to_string()));
        }
        let metrics = self.own.as_ref().and_then(|o| o.housework.metrics_area.as_ref()).map(|fd| (fd.as_fd(), crate::metrics::area::half()));
        let handed = match inherit::hand_on(&sockets, verdict, metrics, self.pid) {
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

    /// After an upgrade's new manager (`new`) is gone: the pid file's configured name names this
    /// manager again, unless the new manager's file there names someone else.
    pub(super) fn take_back_pid_file(&mut self, new: i32) {
        let Some(p) = self.own.as_ref().and_then(|o| o.housework.pid_file.as_ref()) else { return };
        let (here, name) = (p.path().to_path_buf(), p.home().to_path_buf());
        if here == name {
            return;
        }
        let names = crate::boot::pidfile::read_pid(&name).ok().flatten();
        // It names nobody, the new manager that has exited, or (still a link to the `.oldbin`
        // name) this manager.
        if names.is_none() || names == Some(new) || names == Some(self.pid.as_raw()) {
            match self.move_pid_file(false) {
                Ok(()) => info!(pid_file = %name.display(), "the pid file names this manager again"),
                Err(e) => warn!("{e}"),
            }
        } else {
            warn!(pid_file = %name.display(), "the pid file names another process: this manager keeps {}", here.display());
        }
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
