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

/// Makes TLS what the first workers serve (`tls_cert`), or says why it cannot be.
pub(crate) fn start_tls(config: &daemon_config::Config, hooks: &crate::hooks::Hooks, daemon_uid: Option<u32>) -> Result<(), String> {
    if hooks.on_accept.as_ref().is_some_and(|a| matches!(a.handler, crate::hooks::Handler::Sync(_))) {
        return Err("tls_cert: the classic model (a plain fn on_accept handler) cannot serve TLS: make the handler async (daemon::Connection), or put a TLS proxy in front".to_string());
    }
    #[cfg(feature = "tls")]
    return crate::tls::load(config, daemon_uid);
    #[cfg(not(feature = "tls"))]
    {
        let _ = (config, daemon_uid);
        Err("tls_cert is set, but the program was built without TLS: enable the `tls` feature of the daemon crate (daemon = { features = [\"tls\"] })".to_string())
    }
}
