//! A worker: what runs in the child after fork. It closes what is the manager's, sets its own
//! signals and its parent-death signal, runs the on_child hooks, then serves connections from the
//! inherited listeners until it is told to stop or has served its quota, and ends with `_exit`.

pub(crate) mod accept;
mod asynchronous;
mod blocking;
pub(crate) mod connection;
pub(crate) mod current;
pub(crate) mod state;
mod stop;
pub(crate) mod track;
mod turns;
pub(crate) mod work;

use std::panic::catch_unwind;
use std::sync::Arc;

use daemon_config::Config;
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use tracing::{debug, error, info, info_span};

use crate::boot::listener::Listener;
use crate::boot::logfile::LogFile;
use crate::child::Child;
use crate::hooks::{Handler, Hooks};
use crate::scoreboard::{State, WorkerSlot};
use crate::signals;
use crate::pool::supervise::{self, ConnectionSettings};
use crate::sys::{alarm, exit_now};
use current::{give_up, panic_message, CURRENT};
use track::Ticking;

pub use current::{describe_request, heartbeat, long};
pub(crate) use current::{local_runtime, CONNECTION};
use work::{Run, Supervised, Task};

/// What a worker does.
pub(crate) enum Job {
    /// Accept connections from the shared listeners (the pre-forking pool).
    Accept(Handler),
    /// Serve this one connection, which the manager accepted, then exit (post-forking).
    One(Handler, crate::net::Stream),
    /// Run the supervised function.
    Supervised(Run<Supervised>),
    /// Run a task group's function.
    Task { group: String, run: Run<Task> },
}

/// What a worker takes from the manager at fork.
pub(crate) struct Setup<'a> {
    pub slot: WorkerSlot,
    /// The pool's name and kind, for the hooks.
    pub pool: &'a str,
    pub kind: crate::child::PoolKind,
    pub generation: u32,
    pub manager_pid: Pid,
    /// The socket this worker's threads send their stacks to, when the manager asks.
    pub stacks: std::os::fd::RawFd,
    pub listeners: &'a [Listener],
    pub hooks: &'a Hooks,
    pub config: &'a Config,
    pub job: Job,
}

/// Runs a worker to its end.
pub(crate) fn run(setup: Setup<'_>) -> ! {
    let slot = Arc::new(setup.slot);
    let _ = CURRENT.set(Arc::clone(&slot));
    // The program's metrics count in this slot's row from here.
    crate::metrics::area::become_worker(slot.index());
    slot.set_state(State::Forked);
    let quit = match signals::worker_signalfd() {
        Ok(fd) => fd,
        Err(e) => {
            slot.give_up(&format!("cannot set up the worker's signals: {e}"));
            exit_now(1)
        }
    };
    // The manager's death asks us to stop gracefully, with graceful_timeout to do it. Set it,
    // then check that the manager did not die before it was set.
    if let Err(e) = crate::sys::stop_when_parent_dies(graceful_secs(setup.config)) {
        slot.give_up(&format!("cannot watch for the manager's death: {e}"));
        exit_now(1)
    }
    if nix::unistd::getppid() != setup.manager_pid {
        exit_now(0);
    }
    // From here the manager can ask this worker's threads for their stacks (a hung worker's,
    // before it stops it; `dump`'s). Not fatal: the worker serves without.
    let stack_signal = crate::sys::stack_signal::install(setup.stacks, setup.manager_pid.as_raw());
    let pid = std::process::id();
    let span = info_span!(parent: None, "worker", slot = slot.index(), pid);
    let _entered = span.enter();
    if let Err(e) = stack_signal {
        tracing::warn!(error = %e, "cannot install the stack signal's handler: this worker's stack cannot be taken");
    }
    slot.set_state(State::Starting);
    let child = Child {
        slot: slot.index(),
        pid,
        generation: setup.generation,
        manager_pid: setup.manager_pid.as_raw() as u32,
        pool: setup.pool.to_string(),
        kind: setup.kind,
    };
    // The worker's own state is built here, before it is ready: a hook that fails or panics
    // fails the start, and the manager says why and forks again after a pause.
    for hook in setup.hooks.on_child.iter().filter(|h| h.runs_in(&child.pool)) {
        let why = match catch_unwind(|| (hook.run)(&child)) {
            Ok(Ok(())) => continue,
            Ok(Err(why)) => format!("{why} (in {})", hook.module),
            Err(panic) => format!("the on_child hook {}::{} panicked: {}", hook.module, hook.name, panic_message(panic.as_ref())),
        };
        exit_now(give_up(&slot, why));
    }
    let log_file = setup
        .config
        .log_file
        .as_deref()
        .map(|p| LogFile::at(std::path::Path::new(p), Some(nix::unistd::geteuid().as_raw())));
    let ticking = ticking(setup.config);
    let work = |quit, log_file| work::Context {
        slot: Arc::clone(&slot),
        child: child.clone(),
        manager_pid: setup.manager_pid,
        signals: quit,
        log_file,
        heartbeat: setup.config.heartbeat_interval,
        tick_ms: ticking.heartbeat_ms,
    };
    let serving = |quit, log_file| Serving {
        slot: Arc::clone(&slot),
        listeners: setup.listeners,
        quit,
        log_file,
        quota: quota(setup.config.requests, pid),
        clients: setup.config.clients,
        graceful_secs: graceful_secs(setup.config),
        ticking,
        idle_timeout: classic_io_timeout(setup.config),
        drain: setup.config.drain_timeout,
    };
    let code = match setup.job {
        Job::Supervised(run) => work::supervised(work(quit, log_file), run),
        Job::Task { group, run } => work::task(work(quit, log_file), &group, run),
        Job::Accept(Handler::Sync(h)) => {
            let code = serving(quit, log_file).blocking(h);
            // It accepts no more (an async worker's acceptor closes them as it stops).
            crate::sys::close_worker_listeners(setup.listeners);
            code
        }
        Job::Accept(Handler::Async(h)) => serving(quit, log_file).asynchronous(h),
        Job::One(Handler::Sync(h), stream) => serving(quit, log_file).one_blocking(h, stream),
        Job::One(Handler::Async(h), stream) => serving(quit, log_file).one_async(h, stream),
    };
    for hook in &setup.hooks.on_shutdown {
        if catch_unwind(|| (hook.run)(&child)).is_err() {
            error!(hook = %format!("{}::{}", hook.module, hook.name), "on_shutdown hook panicked");
        }
    }
    debug!(code, "worker exits");
    exit_now(code)
}

/// Connections this worker serves before it is recycled: `requests`, less up to a fifth at
/// random, so a pool started at once does not restart at once.
fn quota(requests: u64, pid: u32) -> Option<u64> {
    if requests == 0 {
        return None;
    }
    let seed = u64::from(pid) ^ crate::sys::monotonic_ms().rotate_left(17);
    let mut rng = fastrand::Rng::with_seed(seed);
    Some(requests - rng.u64(0..=requests / 5))
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The ticker's settings, from the configuration.
fn ticking(config: &Config) -> Ticking {
    let limits = ConnectionSettings {
        request_ms: config.request_timeout.map(ms),
        long_request_ms: config.long_request_timeout.map(ms),
        idle_ms: config.idle_timeout.map(ms),
        keepalive_ms: config.keepalive_timeout.map(ms),
    };
    let heartbeat_ms = ms(config.heartbeat_interval);
    track::STREAM_REQUEST_MS.store(limits.request_ms.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    Ticking { tick_ms: supervise::tick_ms(heartbeat_ms, &limits), heartbeat_ms, limits }
}

/// A classic handler's stream times out on `idle_timeout`, but never later than half of
/// `heartbeat_timeout`: its thread is the worker's only one, so a read that waits longer for a
/// slow client would look like a hang to the manager.
fn classic_io_timeout(config: &Config) -> Option<std::time::Duration> {
    let half_heartbeat = config.heartbeat_timeout.map(|t| t / 2);
    match (config.idle_timeout, half_heartbeat) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn graceful_secs(config: &Config) -> u32 {
    let ms = config.graceful_timeout.as_millis();
    // alarm(2) counts whole seconds; round up, and leave 0 for "no grace" as one second so the
    // manager's KILL, not the alarm, decides.
    u32::try_from(ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX)
}

pub(super) struct Serving<'a> {
    slot: Arc<WorkerSlot>,
    listeners: &'a [Listener],
    quit: SignalFd,
    log_file: Option<LogFile>,
    quota: Option<u64>,
    clients: u32,
    graceful_secs: u32,
    ticking: Ticking,
    /// For a classic handler's stream: its reads and writes time out.
    idle_timeout: Option<std::time::Duration>,
    /// How long a stopping async worker's idle keep-alive connections wait for a last request.
    drain: std::time::Duration,
}

impl Serving<'_> {
    /// Begins a graceful stop: take nothing more, and end after graceful_timeout whatever happens.
    pub(super) fn stopping(&self, why: &str) {
        self.slot.exiting();
        alarm(self.graceful_secs);
        info!(why, in_flight = self.slot.active(), "worker stopping gracefully");
    }
}
