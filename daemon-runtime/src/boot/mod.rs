//! What the daemon sets up before its manager runs, and keeps: listeners, the pid file, the log
//! file and its subscriber, privileges, the detach and its readiness verdict, and systemd's
//! notify protocol.

pub(crate) mod detach;
pub(crate) mod inherit;
pub(crate) mod listener;
pub(crate) mod logfile;
pub(crate) mod logging;
pub(crate) mod notify;
pub(crate) mod pidfile;
pub(crate) mod privileges;
pub(crate) mod unix_socket;

use std::ffi::OsString;
use std::path::PathBuf;

/// How to start this program again (an upgrade): the path it was started from and its
/// arguments.
#[derive(Clone, Debug)]
pub(crate) struct Restart {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
}

/// What the start-up sets up for the manager (or the plain daemon) to keep: the readiness
/// verdict's audience, the pid file and the log file, and what an upgrade needs.
pub(crate) struct Housework {
    pub readiness: detach::Readiness,
    pub pid_file: Option<pidfile::PidFile>,
    pub log_file: Option<logfile::LogFile>,
    /// The program's package name and version, which the control channel's answers carry.
    pub package: crate::program::Package,
    /// The manager that started this one by an upgrade, if one did.
    pub upgraded_from: Option<nix::unistd::Pid>,
    /// How to start the program again, for an upgrade.
    pub restart: Option<Restart>,
    /// The metrics' listener, bound with the others (`metrics_listen`).
    pub metrics: Option<std::net::TcpListener>,
    /// The memory the program's metrics count in (`daemon::metrics`), to hand on in an upgrade.
    pub metrics_area: Option<std::os::fd::OwnedFd>,
}
