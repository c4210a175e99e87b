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
