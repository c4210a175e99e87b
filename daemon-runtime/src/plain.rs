//! The plain daemon (POE's non-forking use): a program with no worker hooks (no `on_accept`, no
//! `supervised`, no `task`) runs `main`'s body as the daemon itself, with everything else a
//! daemon has: detach, the pid file, the log file, privileges, signals and the control channel.
//! The body is the program's own loop; it learns that a stop was asked with
//! `daemon::stopping()` or `daemon::wait_for_stop(timeout)`, and that a reload was with
//! `daemon::take_reload()`.
//!
//! A thread of the daemon's own reads its signals (blocked in every thread, so none is lost and
//! none interrupts the body) and serves the control channel: TERM, INT and QUIT ask for the stop
//! (and a second one, the stop is forced: the process exits), HUP reopens the log file and
//! checks the config file again, USR1 reopens the log file.
//!
//! Of the manager hooks, `on_ready` runs as the body starts, `on_reload` when a reload is
//! applied and `on_exit` once the body has returned; with no workers, `on_spawn` and `on_reap`
//! never run.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use serde_json::json;
use tracing::{error, info, warn};

use crate::boot::notify;
use crate::control::{Channel, Request};
use crate::entry::MainOutput;
use crate::hooks::Hooks;
use crate::manager::Housework;
use crate::sources::Layers;
use crate::sys::monotonic_ms;

/// What the body and the daemon's thread share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    reload: AtomicBool,
    /// Stop requests so far: a second one forces the exit.
    asked: AtomicU32,
    lock: Mutex<()>,
    changed: Condvar,
}

static PLAIN: OnceLock<Arc<Shared>> = OnceLock::new();

/// Whether a stop was asked: in a plain daemon, by TERM, INT, QUIT or `stop`; in a worker, its
/// own graceful stop has begun. `main`'s loop should return soon after.
pub fn stopping() -> bool {
    match PLAIN.get() {
        Some(p) => p.stop.load(Ordering::SeqCst),
        None => crate::worker::is_stopping(),
    }
}

/// Waits until a stop is asked, or for `timeout`. Returns whether a stop was asked: the plain
/// daemon's `sleep`, which a stop interrupts.
pub fn wait_for_stop(timeout: Duration) -> bool {
    let Some(p) = PLAIN.get() else {
        std::thread::sleep(timeout);
        return stopping();
    };
    let guard = p.lock.lock().unwrap_or_else(PoisonError::into_inner);
    let (_guard, _) = p
        .changed
        .wait_timeout_while(guard, timeout, |()| !p.stop.load(Ordering::SeqCst))
        .unwrap_or_else(PoisonError::into_inner);
    p.stop.load(Ordering::SeqCst)
}

/// Whether a reload (HUP, `reload`) was asked since the last call, which it clears.
pub fn take_reload() -> bool {
    PLAIN.get().is_some_and(|p| p.reload.swap(false, Ordering::SeqCst))
}

/// Runs `main`'s body as the daemon. Returns the exit status.
pub(crate) fn run<F, R>(main: F, mut housework: Housework, layers: Layers, hooks: Hooks) -> i32
where
    F: FnOnce() -> R,
    R: MainOutput,
{
    let shared = Arc::new(Shared::default());
    let _ = PLAIN.set(Arc::clone(&shared));
    let fail = |housework: &mut Housework, why: String| {
        error!("{why}");
        housework.readiness.failed(&why);
        1
    };
    let signals = match crate::signals::manager_signalfd() {
        Ok(s) => s,
        Err(e) => return fail(&mut housework, format!("cannot set up signal handling: {e}")),
    };
    let pid = std::process::id();
    let channel = match housework.pid_file.as_ref().map(|_| Channel::open(pid)).transpose() {
        Ok(c) => c,
        Err(e) => return fail(&mut housework, format!("cannot open the control channel (for stop, reload and status): {e}")),
    };
    let package = housework.package;
    let log_file = housework.log_file.clone();
    let span = tracing::Span::current();
    let watcher = Arc::clone(&shared);
    let hooks = Arc::new(hooks);
    let thread_hooks = Arc::clone(&hooks);
    let spawned = std::thread::Builder::new().name("daemon".into()).spawn(move || {
        let _entered = span.enter();
        let mut channel = channel;
        let started = monotonic_ms();
        loop {
            let deadline = channel.as_ref().and_then(Channel::deadline);
            let timeout = match deadline {
                Some(at) => PollTimeout::try_from(at.saturating_sub(monotonic_ms()).max(1)).unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if let Some(c) = channel.as_ref() {
                for (fd, writing) in c.poll_fds() {
                    fds.push(PollFd::new(fd, if writing { PollFlags::POLLOUT } else { PollFlags::POLLIN }));
                }
            }
            let _ = poll(&mut fds, timeout);
            drop(fds);
            let reopen = || {
                if let Some(log) = &log_file {
                    match log.reopen() {
                        Ok(()) => info!(path = %log.path().display(), "log file reopened"),
                        Err(e) => error!(error = %e, "cannot reopen the log file; still writing to the old one"),
                    }
                }
            };
            let stop = |why: &str| {
                let n = watcher.asked.fetch_add(1, Ordering::SeqCst);
                if n >= 1 {
                    warn!(why, "asked to stop again: exiting now");
                    std::process::exit(1);
                }
                info!(why, "stop asked: main's loop should return (daemon::stopping())");
                notify::stopping();
                watcher.stop.store(true, Ordering::SeqCst);
                let _guard = watcher.lock.lock().unwrap_or_else(PoisonError::into_inner);
                watcher.changed.notify_all();
            };
            let reload = || -> Result<(), Vec<String>> {
                reopen();
                match layers.resolve_all() {
                    Ok(resolved) => {
                        if let Some(app) = &resolved.app {
                            crate::app::set_current(app.value.clone());
                        }
                        info!("reload: the configuration is good; the program reads it again (daemon::take_reload())");
                        watcher.reload.store(true, Ordering::SeqCst);
                        thread_hooks.on_reload();
                        Ok(())
                    }
                    Err(problems) => {
                        for p in &problems {
                            error!("{p}");
                        }
                        error!("reload: the new configuration is refused; the running one stays");
                        Err(problems)
                    }
                }
            };
            for sig in crate::signals::drain(&signals) {
                match sig {
                    Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => stop(sig.as_str()),
                    Signal::SIGHUP => {
                        let _ = reload();
                    }
                    Signal::SIGUSR1 => reopen(),
                    _ => {}
                }
            }
            if let Some(c) = channel.as_mut() {
                c.serve(monotonic_ms(), |request| {
                    let mut answer = match request {
                        Request::Status => json!({
                            "mode": "plain",
                            "version": package.version,
                            "uptime_ms": monotonic_ms().saturating_sub(started),
                            "stopping": watcher.stop.load(Ordering::SeqCst),
                            "workers": [],
                        }),
                        Request::Stop { .. } => {
                            stop("asked by the control channel");
                            json!({ "stopping": true })
                        }
                        Request::Reload => match reload() {
                            Ok(()) => json!({ "applied": true }),
                            Err(problems) => json!({ "applied": false, "problems": problems }),
                        },
                        // No workers and no sockets to hand over: a plain daemon restarts instead.
                        Request::Upgrade { .. } => json!({ "why": "a plain daemon (no workers) cannot be upgraded in place: restart it" }),
                        Request::Backout => json!({ "backed_out": false, "why": "a plain daemon has no workers to retire" }),
                    };
                    answer["pid"] = pid.into();
                    answer["package"] = package.name.into();
                    answer
                });
            }
        }
    });
    if let Err(e) = spawned {
        return fail(&mut housework, format!("cannot start the daemon's thread: {e}"));
    }
    info!("plain daemon: main's body runs as the daemon");
    housework.readiness.ready();
    notify::ready("running");
    hooks.on_ready();
    let code = match main().into_result() {
        Ok(()) => 0,
        Err(e) => {
            error!("main returned an error: {e}");
            1
        }
    };
    info!(exit_status = code, "main's body returned: the daemon exits");
    hooks.on_exit();
    if let Some(p) = housework.pid_file.take() {
        p.remove();
    }
    code
}
