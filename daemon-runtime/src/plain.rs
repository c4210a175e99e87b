//! The plain daemon (POE's non-forking use): a program with no worker hooks (no `on_accept`, no
//! `supervised`, no `task`) runs `main`'s body as the daemon itself, with everything else a
//! daemon has: detach, the pid file, the log file, privileges, signals and the control channel.
//! The body is the program's own loop; it learns that a stop was asked with
//! `daemon::stopping()` or `daemon::wait_for_stop(timeout)`, and that a reload was with
//! `daemon::take_reload()`.
//!
//! A thread of the daemon's own reads its signals (blocked in every thread, so none is lost and
//! none interrupts the body) and serves the control channel, and drives the manager's core (a
//! core with no pools): TERM, INT and QUIT ask for the stop (and a second one, the stop is
//! forced: the process exits), HUP reopens the log file and checks the config file again, USR1
//! reopens the log file; `status`, `stop` and `reload` answer as a manager's do.
//!
//! Of the manager hooks, `on_ready` runs as the body starts, `on_reload` when a reload is
//! applied and `on_exit` once the body has returned; with no workers, `on_spawn` and `on_reap`
//! never run.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use serde_json::json;
use tracing::{error, info};

use crate::boot::logfile::LogFile;
use crate::boot::notify;
use crate::boot::Housework;
use crate::control::{Channel, Request};
use crate::hooks::Hooks;
use crate::manager::core::{self, Board, Command, Core, Event, PlainSays, Start};
use crate::manager::{run_hook, sig_of, tell_systemd};
use crate::program::MainOutput;
use crate::sources::Layers;
use crate::sys::monotonic_ms;

/// What the body and the daemon's thread share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    reload: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

static PLAIN: OnceLock<Arc<Shared>> = OnceLock::new();

/// Whether a stop was asked: in a plain daemon, by TERM, INT, QUIT or `stop`; in a worker, its
/// own graceful stop has begun. `main`'s loop should return soon after.
pub fn stopping() -> bool {
    match PLAIN.get() {
        Some(p) => p.stop.load(Ordering::SeqCst),
        None => crate::worker::current::is_stopping(),
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

/// The scoreboard of a daemon with no workers.
struct NoBoard;

impl Board for NoBoard {
    fn view(&self, _slot: usize) -> crate::scoreboard::SlotView {
        crate::scoreboard::SlotView::default()
    }
    fn note(&self, _slot: usize) -> Option<String> {
        None
    }
    fn request_label(&self, _slot: usize) -> Option<String> {
        None
    }
    fn wakes(&self) -> u64 {
        0
    }
}

/// The daemon's thread: the manager's core with no pools, driven by the signals and the control
/// channel, telling the body what it decides.
struct Driver {
    core: Core,
    shared: Arc<Shared>,
    hooks: Arc<Hooks>,
    layers: Layers,
    log_file: Option<LogFile>,
}

impl Driver {
    fn handle(&mut self, event: Event) {
        self.core.handle(monotonic_ms(), &NoBoard, event);
        self.execute();
    }

    fn execute(&mut self) {
        while let Some(command) = self.core.poll_command() {
            let event = match command {
                Command::Plain(PlainSays::Stop) => {
                    self.shared.stop.store(true, Ordering::SeqCst);
                    let _guard = self.shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
                    self.shared.changed.notify_all();
                    None
                }
                Command::Plain(PlainSays::Reload) => {
                    self.shared.reload.store(true, Ordering::SeqCst);
                    None
                }
                Command::Plain(PlainSays::ExitNow) => std::process::exit(1),
                Command::Notify(n) => {
                    tell_systemd(&n);
                    None
                }
                Command::Hook(h) => {
                    run_hook(&self.hooks, &h);
                    None
                }
                Command::ProgramSettings(value) => {
                    crate::app::set_current(value);
                    None
                }
                Command::ReopenLogs => Some(Event::LogsReopened(self.reopen())),
                // No workers, no upgrade, no pid file of the thread's: the body's return ends it.
                _ => None,
            };
            if let Some(event) = event {
                self.core.handle(monotonic_ms(), &NoBoard, event);
            }
        }
    }

    fn reopen(&self) -> bool {
        let Some(log) = &self.log_file else { return false };
        match log.reopen() {
            Ok(()) => {
                info!(path = %log.path().display(), "log file reopened");
                true
            }
            Err(e) => {
                error!(error = %e, "cannot reopen the log file; still writing to the old one");
                false
            }
        }
    }

    fn on_request(&mut self, request: Request) -> serde_json::Value {
        let request = match request {
            Request::Status => core::Request::Status,
            Request::Stop { graceful } => core::Request::Stop { graceful },
            Request::Reload => core::Request::Reload(Box::new(self.layers.resolve_all())),
            Request::Backout => core::Request::Backout,
            Request::Upgrade { .. } => {
                let why = self.core.may_upgrade().err().unwrap_or_default();
                let mut answer = json!({ "why": why });
                answer["pid"] = std::process::id().into();
                return answer;
            }
            Request::Dump { slot: None, pid: None } => core::Request::Dump,
            Request::Dump { .. } => {
                // Named as every answer is (pid and package), by the core.
                let named = self.core.request(monotonic_ms(), &NoBoard, core::Request::Status);
                return json!({ "why": "a plain daemon has no workers: `dump` alone shows its state", "pid": named["pid"], "package": named["package"] });
            }
        };
        let answer = self.core.request(monotonic_ms(), &NoBoard, request);
        self.execute();
        answer
    }
}

/// Runs `main`'s body as the daemon. Returns the exit status.
pub(crate) fn run<F, R>(main: F, mut housework: Housework, layers: Layers, hooks: Hooks, config: daemon_config::Config) -> i32
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
    let start = Start {
        config,
        groups: Vec::new(),
        serving: None,
        supervised: false,
        addresses: Vec::new(),
        watchdog_ms: notify::watchdog_interval().map(|d| d.as_millis() as u64),
        pid: core::Pid(pid as i32),
        package: housework.package,
        upgraded_from: None,
        plain: true,
        app: None,
    };
    let mut core = match Core::new(start, monotonic_ms()) {
        Ok(c) => c,
        Err(why) => return fail(&mut housework, why),
    };
    let hooks = Arc::new(hooks);
    // The start's commands: ready, to the starter, systemd and the on_ready hooks.
    while let Some(command) = core.poll_command() {
        match command {
            Command::Ready => housework.readiness.ready(),
            Command::Notify(n) => tell_systemd(&n),
            Command::Hook(h) => run_hook(&hooks, &h),
            _ => {}
        }
    }
    let mut driver = Driver { core, shared: Arc::clone(&shared), hooks: Arc::clone(&hooks), layers, log_file: housework.log_file.clone() };
    let span = tracing::Span::current();
    let spawned = std::thread::Builder::new().name("daemon".into()).spawn(move || {
        let _entered = span.enter();
        let mut channel = channel;
        loop {
            let deadline = [channel.as_ref().and_then(Channel::deadline), driver.core.poll_timeout()].into_iter().flatten().min();
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
            for sig in crate::signals::drain(&signals) {
                driver.handle(Event::Signal(sig_of(sig)));
                if sig == Signal::SIGHUP {
                    let resolved = driver.layers.resolve_all();
                    driver.handle(Event::Reload(Box::new(resolved)));
                }
            }
            if let Some(c) = channel.as_mut() {
                c.serve(monotonic_ms(), |request, _| Some(driver.on_request(request)));
            }
            driver.handle(Event::Tick);
        }
    });
    if let Err(e) = spawned {
        return fail(&mut housework, format!("cannot start the daemon's thread: {e}"));
    }
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
