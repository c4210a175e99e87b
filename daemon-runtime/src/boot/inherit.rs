//! Listening sockets handed to the daemon at start, by systemd's socket activation or by the
//! manager it upgrades: one protocol for both (`sd_listen_fds(3)`), so one path takes them
//! (unicorn's `inherit_listeners!`). The sockets are descriptors 3, 4, ... with `LISTEN_FDS`
//! saying how many and `LISTEN_PID` naming the process they are meant for: variables that name
//! another process were meant for it (a parent that did not clear them) and are ignored. During
//! an upgrade the old manager also passes the descriptor after them, a pipe on which the new one
//! says when its workers accept (`DAEMON_UPGRADE_FD`), and its own pid (`DAEMON_UPGRADE_FROM`),
//! believed only when it is this process's parent; and after the pipe, the memory the program's
//! metrics are counted in (`DAEMON_UPGRADE_METRICS`: the descriptor and the half the old manager
//! writes), for the new manager to keep counting from.
//!
//! Every one of these variables is removed from the environment once read, so no worker or
//! program the daemon starts sees them.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{getsockopt, sockopt, SockType};
use nix::unistd::Pid;

use super::listener::{Listener, Source};

/// The first descriptor of the protocol (`SD_LISTEN_FDS_START`).
pub(crate) const FIRST_FD: RawFd = 3;

pub(crate) const LISTEN_PID: &str = "LISTEN_PID";
pub(crate) const LISTEN_FDS: &str = "LISTEN_FDS";
pub(crate) const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
pub(crate) const UPGRADE_FROM: &str = "DAEMON_UPGRADE_FROM";
pub(crate) const UPGRADE_FD: &str = "DAEMON_UPGRADE_FD";
pub(crate) const UPGRADE_METRICS: &str = "DAEMON_UPGRADE_METRICS";
/// The most sockets a process takes from `LISTEN_FDS`, and so the most an upgrade hands on.
pub(crate) const MOST_SOCKETS: usize = 64;
/// How an upgrade names its sockets in `LISTEN_FDNAMES`: one that came from socket activation,
/// one the old manager bound for `listen` (`file.DEV.INO` for a Unix socket with its file:
/// `unix_socket::hand_over_name`), and the metrics' one. (A name holds no `:`, which separates
/// them: the new manager reads each socket's address from the socket.)
pub(crate) const ACTIVATED: &str = "activated";
pub(crate) const LISTENING: &str = "listen";
pub(crate) const METRICS: &str = "metrics";

/// What the daemon was handed at start.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    pub listeners: Vec<Listener>,
    pub source: Option<Source>,
    /// During an upgrade: the old manager, and the pipe to tell it our verdict on.
    pub upgrade: Option<(Pid, OwnedFd)>,
    /// Variables that were there but not for us, for the log.
    pub ignored: Option<String>,
    /// During an upgrade: the program's metrics (a memfd), and the half the old manager writes.
    pub metrics: Option<(OwnedFd, usize)>,
    /// The first descriptor nothing was handed on: everything from it up is the starter's.
    pub first_free: RawFd,
}

/// Why inherited descriptors cannot be used.
#[derive(Debug)]
pub struct InheritError(pub String);

impl std::fmt::Display for InheritError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InheritError {}

fn take_var(name: &str) -> Option<OsString> {
    let value = std::env::var_os(name);
    // Called at start, before the daemon has a second thread: nothing reads the environment
    // concurrently.
    std::env::remove_var(name);
    value
}

/// Takes what the environment says was handed to this process, and clears those variables.
/// Must run before anything else opens a descriptor, and while the process has one thread.
pub(crate) fn take() -> Result<Inherited, InheritError> {
    let pid = take_var(LISTEN_PID);
    let fds = take_var(LISTEN_FDS);
    let names = take_var(LISTEN_FDNAMES);
    let from = take_var(UPGRADE_FROM);
    let upgrade_fd = take_var(UPGRADE_FD);
    let metrics = take_var(UPGRADE_METRICS);
    let mut found = Inherited { first_free: FIRST_FD, ..Inherited::default() };
    let Some(fds) = fds else {
        if pid.is_some() {
            found.ignored = Some(format!("{LISTEN_PID} without {LISTEN_FDS}: not taken"));
        } else if from.is_some() || upgrade_fd.is_some() {
            found.ignored = Some(format!("{UPGRADE_FROM}/{UPGRADE_FD} without {LISTEN_FDS}: not an upgrade"));
        }
        return Ok(found);
    };
    let me = std::process::id().to_string();
    if pid.as_deref() != Some(me.as_ref()) {
        found.ignored = Some(format!(
            "LISTEN_FDS={} is for process {} (LISTEN_PID), not this one ({me}): not taken",
            fds.to_string_lossy(),
            pid.as_deref().map_or_else(|| "none".into(), |p| p.to_string_lossy())
        ));
        return Ok(found);
    }
    let count: RawFd = fds
        .to_str()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n >= 0 && n as usize <= MOST_SOCKETS)
        .ok_or_else(|| InheritError(format!("LISTEN_FDS={}: not a number of descriptors (0 to {MOST_SOCKETS})", fds.to_string_lossy())))?;
    let names: Vec<String> = names.map(|n| n.to_string_lossy().split(':').map(String::from).collect()).unwrap_or_default();
    for i in 0..count {
        let fd = FIRST_FD + i;
        let listener = adopt(fd).map_err(|why| {
            // Someone else's text: quoted, so it cannot forge lines of the log.
            let name = names.get(i as usize).map(|n| format!(" ({n:?})")).unwrap_or_default();
            InheritError(format!("LISTEN_FDS: descriptor {fd}{name} {why}"))
        })?;
        found.listeners.push(listener);
    }
    found.first_free = FIRST_FD + count;
    found.source = Some(Source::Activation);
    // Sockets from the service manager: directly, or through an upgrade that names them so.
    for (i, l) in found.listeners.iter_mut().enumerate() {
        l.activated = names.get(i).is_some_and(|n| n == ACTIVATED);
    }
    // The upgrade's own variables count only with the sockets, from our parent, on the next
    // descriptor: anything else is someone else's.
    let parent = nix::unistd::getppid();
    let from_parent = from.as_deref().and_then(|f| f.to_str()).and_then(|f| f.parse::<i32>().ok()).filter(|&p| p == parent.as_raw());
    let fd_next = upgrade_fd.as_deref().and_then(|f| f.to_str()).and_then(|f| f.parse::<RawFd>().ok()).filter(|&f| f == found.first_free);
    match (from_parent, fd_next) {
        (Some(old), Some(fd)) => {
            let Some(pipe) = crate::sys::claim_inherited_fd(fd).filter(is_pipe).filter(is_write_end) else {
                found.ignored = Some(format!("{UPGRADE_FD}={fd} is not the write end of a pipe: not an upgrade"));
                return Ok(found);
            };
            let _ = fcntl(&pipe, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            found.upgrade = Some((Pid::from_raw(old), pipe));
            // What the old manager's socket files are, for this one to take over only those.
            for (i, l) in found.listeners.iter_mut().enumerate() {
                l.handed_file = names.get(i).and_then(|n| super::unix_socket::identity_in(n));
                l.metrics = names.get(i).is_some_and(|n| n == METRICS);
            }
            found.first_free += 1;
            found.source = Some(Source::Upgrade);
            // The metrics' memory, on the descriptor after the pipe (checked when mapped: a
            // sealed memfd of the right size, or the metrics start again).
            let metrics = metrics.as_deref().and_then(|m| m.to_str()).and_then(|m| m.split_once(':'));
            let metrics = metrics.and_then(|(fd, half)| Some((fd.parse::<RawFd>().ok()?, half.parse::<usize>().ok()?)));
            if let Some((fd, half)) = metrics.filter(|&(fd, half)| fd == found.first_free && half < 2) {
                if let Some(memory) = crate::sys::claim_inherited_fd(fd) {
                    let _ = fcntl(&memory, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
                    found.metrics = Some((memory, half));
                    found.first_free += 1;
                }
            }
        }
        // From a service manager: its sockets, which `listen` does not replace.
        (None, None) => {
            for l in &mut found.listeners {
                l.activated = true;
            }
        }
        _ => {
            found.ignored = Some(format!(
                "{UPGRADE_FROM}/{UPGRADE_FD} do not name this process's parent ({parent}) and the descriptor after the sockets: not an upgrade"
            ));
        }
    }
    Ok(found)
}

fn is_write_end(fd: &OwnedFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFL).is_ok_and(|f| OFlag::from_bits_truncate(f) & OFlag::O_ACCMODE == OFlag::O_WRONLY)
}

fn is_pipe(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

/// Makes descriptor `fd` a listener, if it is a listening TCP or Unix stream socket.
fn adopt(fd: RawFd) -> Result<Listener, String> {
    // If it is not what we need, dropping it closes it.
    let owned = crate::sys::claim_inherited_fd(fd).ok_or_else(|| "is not open".to_string())?;
    let kind = getsockopt(&owned, sockopt::SockType).map_err(|_| "is not a socket".to_string())?;
    if kind != SockType::Stream {
        return Err("is not a stream socket".to_string());
    }
    if !getsockopt(&owned, sockopt::AcceptConn).unwrap_or(false) {
        return Err("is not listening".to_string());
    }
    // Only sockets handed on lose close-on-exec; ours keep it, and the workers wait on them
    // with epoll, so they are non-blocking.
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| format!("cannot be set close-on-exec: {e}"))?;
    let flags = fcntl(&owned, FcntlArg::F_GETFL).map_err(|e| e.to_string())?;
    fcntl(&owned, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK)).map_err(|e| e.to_string())?;
    let addr = crate::net::Local::of(&owned).ok_or_else(|| "is not a TCP socket (IPv4 or IPv6) nor a Unix socket with a path or name".to_string())?;
    Ok(Listener { socket: owned, addr, activated: false, file: None, handed_file: None, metrics: false })
}

/// Hands `sockets` (each with its name, its address) and `verdict` to a program about to be
/// executed in this (child) process: descriptors 3, 4, ... for the sockets and the next one for
/// the pipe, without close-on-exec, and the variables that say so. Only in the child of a fork,
/// just before exec.
/// `metrics`: the program's metrics' memory and the half this manager writes, on the
/// descriptor after the pipe.
pub(crate) fn hand_on(
    sockets: &[(BorrowedFd<'_>, String)],
    verdict: &OwnedFd,
    metrics: Option<(BorrowedFd<'_>, usize)>,
    old: Pid,
) -> nix::Result<Vec<(String, String)>> {
    // First out of the way (above every target), then into place: a source may sit on another
    // one's target.
    let mut high = Vec::new();
    let after = std::iter::once(verdict.as_fd()).chain(metrics.map(|(fd, _)| fd));
    for fd in sockets.iter().map(|(fd, _)| *fd).chain(after) {
        let copy = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(FIRST_FD + MOST_SOCKETS as RawFd + 1))?;
        high.push(copy);
    }
    for (i, fd) in high.iter().enumerate() {
        // dup2 clears close-on-exec on the copy: the new program keeps exactly these.
        crate::sys::dup_onto(*fd, FIRST_FD + i as RawFd)?;
    }
    let names: Vec<&str> = sockets.iter().map(|(_, n)| n.as_str()).collect();
    let pipe = FIRST_FD + sockets.len() as RawFd;
    let mut vars = vec![
        (LISTEN_PID.to_string(), std::process::id().to_string()),
        (LISTEN_FDS.to_string(), sockets.len().to_string()),
        (LISTEN_FDNAMES.to_string(), names.join(":")),
        (UPGRADE_FROM.to_string(), old.as_raw().to_string()),
        (UPGRADE_FD.to_string(), pipe.to_string()),
    ];
    if let Some((_, half)) = metrics {
        vars.push((UPGRADE_METRICS.to_string(), format!("{}:{half}", pipe + 1)));
    }
    Ok(vars)
}

