//! Workers that run a function rather than serve connections: the supervised worker
//! (`#[daemon::supervised]`, App::Base::Daemon::Supervisor's) and the workers of task groups
//! (`#[daemon::task]`, Symphony's). The function gets a context that tells it when to stop, lets
//! it sleep without missing a stop, proves it is alive (each call stamps its heartbeat), and
//! tells whether its supervisor, the manager, is still there.

use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The future an async supervised or task function returns; an `Err` is its message.
pub type WorkFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + 'static>>;

/// How a supervised or task function runs.
pub enum Run<C> {
    /// `fn(&C)`, on the worker's own thread.
    Sync(fn(&C) -> Result<(), String>),
    /// `async fn(C)`, on the worker's own single-threaded tokio runtime.
    Async(fn(C) -> WorkFuture),
}

// By hand: a derive would ask `C: Copy`, and function pointers are Copy whatever C is.
impl<C> Clone for Run<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Run<C> {}


use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use tracing::{error, info};

use super::current::give_up;
use super::track::measure;
use crate::boot::logfile::LogFile;
use crate::child::Child;
use crate::scoreboard::WorkerSlot;
use crate::signals;
use crate::sys::coarse_ms;

/// What a supervised or task function's context offers; both deref to it.
pub struct WorkContext {
    slot: Arc<WorkerSlot>,
    child: Child,
    manager_pid: Pid,
    signals: SignalFd,
    stop: AtomicBool,
    /// For async waiters of the stop.
    notify: tokio::sync::Notify,
    log_file: Option<LogFile>,
    heartbeat: Duration,
    /// When the next heartbeat also measures memory and CPU (once per heartbeat interval).
    next_measure_ms: AtomicU64,
}

impl std::fmt::Debug for WorkContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkContext").field("child", &self.child).finish_non_exhaustive()
    }
}

impl AsFd for WorkContext {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.signals.as_fd()
    }
}

impl WorkContext {
    /// Reads the signals that came: QUIT asks for a stop, USR1 reopens the log file.
    fn read_signals(&self) -> bool {
        for sig in signals::drain(&self.signals) {
            match sig {
                Signal::SIGQUIT if !self.stop.swap(true, Ordering::SeqCst) => {
                    info!("stop asked: the function should return");
                    self.notify.notify_waiters();
                }
                Signal::SIGUSR1 => {
                    if let Some(log) = &self.log_file {
                        if let Err(e) = log.reopen() {
                            error!(error = %e, "cannot reopen the log file; still writing to the old one");
                        }
                    }
                }
                _ => {}
            }
        }
        self.stop.load(Ordering::SeqCst)
    }

    /// A heartbeat; once per heartbeat interval, also the memory and CPU the manager checks
    /// against max_rss and max_cpu.
    fn beat(&self) {
        let now = coarse_ms();
        self.slot.heartbeat(now);
        if now >= self.next_measure_ms.load(Ordering::Relaxed) {
            let every = u64::try_from(self.heartbeat.as_millis()).unwrap_or(u64::MAX);
            self.next_measure_ms.store(now.saturating_add(every), Ordering::Relaxed);
            measure(&self.slot);
        }
    }

    /// Whether the worker has been asked to stop (QUIT: a graceful stop, a reload, the
    /// manager's death): the function should finish what it does and return. Each call is also
    /// a heartbeat.
    pub fn stopping(&self) -> bool {
        self.beat();
        self.read_signals()
    }

    /// Sleeps for `d`, unless a stop comes first. Returns true after the whole sleep, false when
    /// asked to stop. It stamps the heartbeat as it goes, so a loop that sleeps between rounds of
    /// work stays alive for the manager, however long it sleeps. For a plain (not async) fn.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.stopping() {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            let step = left.min(self.heartbeat);
            let timeout = PollTimeout::try_from(step.as_millis().max(1) as u64).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, timeout);
        }
    }

    /// Completes once the worker is asked to stop (at once if it already was). For an async fn.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.read_signals() {
                return;
            }
            notified.await;
        }
    }

    /// The async [`WorkContext::sleep`]: true after the whole wait, false when asked to stop.
    pub async fn wait(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => !self.read_signals(),
            () = self.stopped() => false,
        }
    }

    /// A heartbeat, and whether the supervisor (the manager) is still there (App::Base's
    /// `ping_supervisor`). A loop that finds it gone should return: nothing would restart it.
    pub fn ping_supervisor(&self) -> bool {
        self.beat();
        self.supervisor_alive()
    }

    /// Whether the manager that forked this worker is still its parent.
    pub fn supervisor_alive(&self) -> bool {
        nix::unistd::getppid() == self.manager_pid
    }

    /// This worker: its slot, pid, generation and pool.
    pub fn child(&self) -> &Child {
        &self.child
    }

    /// The `T` this worker's `on_child` hook returned (a database handle, a client), built once
    /// after fork: [`daemon::state`](crate::state).
    pub fn state<T: 'static>(&self) -> Option<&'static T> {
        super::state::state::<T>()
    }
}

/// The context of a `#[daemon::supervised]` function.
#[derive(Clone, Debug)]
pub struct Supervised {
    work: Arc<WorkContext>,
}

impl Deref for Supervised {
    type Target = WorkContext;
    fn deref(&self) -> &WorkContext {
        &self.work
    }
}

/// The context of a `#[daemon::task]` function: a worker of a task group.
#[derive(Clone, Debug)]
pub struct Task {
    work: Arc<WorkContext>,
    group: Arc<str>,
    /// When the job in hand began (monotonic ns), for its duration.
    job_began: Arc<std::sync::atomic::AtomicU64>,
}

impl Deref for Task {
    type Target = WorkContext;
    fn deref(&self) -> &WorkContext {
        &self.work
    }
}

impl Task {
    /// The task group this worker belongs to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// This worker has taken a job: it counts busy (state `r`). A oneshot group with no idle
    /// worker left grows by one at its next scaling interval.
    pub fn busy(&self) {
        if self.work.slot.active() == 0 {
            self.work.slot.begin_connection();
            self.work.slot.set_request_started(coarse_ms().max(1));
            self.job_began.store(crate::sys::monotonic_ns(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// This worker has finished its job and waits for another: it counts idle (state `w`).
    /// The job counts as one request (`daemon_requests_total`, its duration in the histogram).
    pub fn idle(&self) {
        if self.work.slot.active() > 0 {
            self.work.slot.end_connection();
            let took = crate::sys::monotonic_ns().saturating_sub(self.job_began.load(std::sync::atomic::Ordering::Relaxed));
            self.work.slot.request_finished(took, crate::scoreboard::Outcome::Ok);
        }
    }
}

/// What a work worker needs from its setup.
pub(crate) struct Context {
    pub slot: Arc<WorkerSlot>,
    pub child: Child,
    pub manager_pid: Pid,
    pub signals: SignalFd,
    pub log_file: Option<LogFile>,
    pub heartbeat: Duration,
    pub tick_ms: u64,
}

impl Context {
    fn into_work(self) -> Arc<WorkContext> {
        Arc::new(WorkContext {
            slot: self.slot,
            child: self.child,
            manager_pid: self.manager_pid,
            signals: self.signals,
            stop: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
            log_file: self.log_file,
            heartbeat: self.heartbeat,
            next_measure_ms: AtomicU64::new(0),
        })
    }
}

/// Runs a supervised function to its end. Returns the exit status.
pub(crate) fn supervised(ctx: Context, run: Run<Supervised>) -> i32 {
    run_to_end(ctx, run, |work| Supervised { work })
}

/// Runs a task function: once (oneshot) or for the worker's life (longlived, where it is called
/// once as well, and is expected to loop). Returns the exit status.
pub(crate) fn task(ctx: Context, group: &str, run: Run<Task>) -> i32 {
    let group: Arc<str> = Arc::from(group);
    run_to_end(ctx, run, |work| Task { work, group, job_began: Arc::default() })
}

/// Calls the function with its context, on the worker's thread or on a runtime of its own, and
/// makes its end the worker's exit status.
fn run_to_end<C>(ctx: Context, run: Run<C>, make: impl FnOnce(Arc<WorkContext>) -> C) -> i32 {
    let tick_ms = ctx.tick_ms;
    let work = ctx.into_work();
    let context = make(Arc::clone(&work));
    let result = match run {
        Run::Sync(f) => {
            work.slot.ready();
            f(&context)
        }
        Run::Async(f) => match on_runtime(&work, tick_ms, f(context)) {
            Ok(r) => r,
            Err(code) => return code,
        },
    };
    finish(&work, result)
}

/// Runs an async function on a runtime of the worker's own, with its ticker (heartbeats,
/// measurements) and a watch on its signals.
fn on_runtime(
    work: &Arc<WorkContext>,
    tick_ms: u64,
    fut: WorkFuture,
) -> Result<Result<(), String>, i32> {
    let runtime = super::current::local_runtime().map_err(|e| give_up(&work.slot, e))?;
    Ok(runtime.block_on(async {
        let signals = match crate::sys::watch_readable(Arc::clone(work)) {
            Ok(s) => s,
            Err(e) => return Err(format!("cannot watch the worker's signals: {e}")),
        };
        let w = Arc::clone(work);
        tokio::task::spawn_local(async move {
            loop {
                let Ok(mut ready) = signals.readable().await else { return };
                w.read_signals();
                ready.clear_ready();
            }
        });
        let w = Arc::clone(work);
        tokio::task::spawn_local(async move {
            loop {
                w.beat();
                tokio::time::sleep(Duration::from_millis(tick_ms)).await;
            }
        });
        work.slot.ready();
        fut.await
    }))
}

/// How the function's end becomes the worker's exit: 0 when it returned, or 1 with its error
/// left for the manager.
fn finish(work: &WorkContext, result: Result<(), String>) -> i32 {
    match result {
        Ok(()) => {
            work.slot.exiting();
            0
        }
        Err(e) => give_up(&work.slot, format!("the function returned an error: {e}")),
    }
}
