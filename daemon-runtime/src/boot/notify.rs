//! systemd's readiness protocol (`Type=notify`): READY=1 when the workers accept, RELOADING=1 on
//! HUP then READY=1 when the new generation accepts, STOPPING=1, STATUS= with the pool's counts,
//! and WATCHDOG=1 from the manager's loop when systemd set WATCHDOG_USEC. Without NOTIFY_SOCKET
//! every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A manager started by an upgrade is the service's main process from now on (systemd follows
/// it with `NotifyAccess=all`); after a rollback, the old one says it is again.
pub(crate) fn main_pid(pid: u32) {
    send(&[NotifyState::MainPid(pid)]);
}

pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

pub(crate) fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

pub(crate) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to send WATCHDOG=1: half the interval systemd asked for, if it asked.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2).filter(|d| !d.is_zero())
}

/// Whether a service manager listens at all (to skip formatting STATUS lines for no one).
pub(crate) fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}
