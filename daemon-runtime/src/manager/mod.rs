//! The manager: one thread, no async runtime, an event loop on poll(2) over its signals, the
//! workers' wake pipe and the control channel. It sleeps until something happens or until the
//! earliest deadline it truly has: a rung of a stop ladder, the next retirement, a fork backoff,
//! the earliest heartbeat or request deadline that could pass. Idle, with heartbeats on, it wakes
//! about once per `heartbeat_timeout`; with them off, never.
//!
//! The decisions are the pool's pure functions (`pool::policy`, `pool::supervise`); this module
//! carries them out: it forks, signals, reaps and logs.

mod exits;
mod procs;
mod spawn;
mod status;
mod supervision;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use daemon_config::{setting, Config};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use crate::boot::detach::Readiness;
use crate::boot::listener::Listener;
use crate::boot::logfile::LogFile;
use crate::boot::notify;
use crate::boot::pidfile::PidFile;
use crate::control::{Channel, Request};
use crate::hooks::{Handler, Hooks};
use crate::pool::policy::{self, Phase, WorkerView};
use crate::pool::supervise::{self, Ladder, Rung, StartFailure};
use crate::pool::Pool;
use crate::scoreboard::{Scoreboard, State};
use crate::signals;
use crate::sources::Layers;
use crate::sys::monotonic_ms;

use exits::ExitLog;
use procs::{Procs, Stopping, Why};

/// The exit status of a manager that stopped, but had to kill a worker (or a foreign child)
/// that did not stop in time.
pub(crate) const EXIT_HAD_TO_KILL: i32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopKind {
    /// QUIT: workers finish what they have.
    Graceful,
    /// TERM or INT: workers end now.
    Fast,
}

/// Descriptors that are the manager's alone; a worker closes them first thing (dropping the pid
/// file here closes this process's copy without removing the file, so its lock stays the
/// manager's).
struct Own {
    signals: SignalFd,
    wake_read: OwnedFd,
    /// The control channel, when there is a pid file to find it by.
    channel: Option<Channel>,
    housework: Housework,
}

/// What the entry point set up for the manager to keep: the detach readiness pipe, the pid file
/// and the log file.
pub(crate) struct Housework {
    pub readiness: Readiness,
    pub pid_file: Option<PidFile>,
    pub log_file: Option<LogFile>,
    /// The program's package name and version, which the control channel's answers carry.
    pub package: crate::entry::Package,
}

/// A foreign child: a process the program handed over, stopped with the daemon.
#[derive(Debug)]
struct Foreign {
    /// When it gets KILL, once it has been sent TERM.
    kill_at_ms: Option<u64>,
}

pub(crate) struct Manager {
    config: Config,
    /// Every source of settings, to resolve again on HUP.
    layers: Layers,
    board: Scoreboard,
    listeners: Vec<Listener>,
    hooks: Hooks,
    own: Option<Own>,
    wake_write: OwnedFd,
    pool: Pool,
    procs: Procs,
    /// Processes the program handed over with `daemon::foreign_child`.
    foreign: BTreeMap<Pid, Foreign>,
    stop: Option<StopKind>,
    /// The status the manager exits with once every worker is gone.
    exit_code: i32,
    /// The daemon's stop had to climb past what it asked for (TERM after QUIT, KILL).
    had_to_kill: bool,
    pid: Pid,
    exits: ExitLog,
    /// Time-based verdicts wait until then: a manager that was away (stopped, a suspended VM)
    /// for longer than a timeout gives every worker one more full timeout before it judges.
    judge_after: u64,
    /// When the loop last meant to wake, to tell a wake on time from one that came late.
    planned_wake: Option<u64>,
    /// When the next WATCHDOG=1 is due, if systemd asked for them.
    watchdog: Option<(u64, u64)>,
    /// The last STATUS= sent.
    told_status: Option<String>,
}

/// Why the manager could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Manager {
    /// Sets up everything the workers inherit: the scoreboard, the signal descriptor (blocking
    /// the signals first), the wake pipe.
    pub(crate) fn new(
        config: Config,
        layers: Layers,
        hooks: Hooks,
        listeners: Vec<Listener>,
        housework: Housework,
    ) -> Result<Manager, Box<(StartError, Housework)>> {
        let setup = || -> Result<_, StartError> {
            let board =
                Scoreboard::new().map_err(|e| StartError(format!("cannot map the scoreboard: {e}")))?;
            let signals = signals::manager_signalfd()
                .map_err(|e| StartError(format!("cannot set up signal handling: {e}")))?;
            let (wake_read, wake_write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
                .map_err(|e| StartError(format!("cannot create the wake pipe: {e}")))?;
            Ok((board, signals, wake_read, wake_write))
        };
        let (board, signals, wake_read, wake_write) = match setup() {
            Ok(parts) => parts,
            Err(e) => return Err(Box::new((e, housework))),
        };
        let pid = nix::unistd::getpid();
        // Without a pid file nothing can find the control channel; with one, the daemon has its
        // channel or does not start.
        let channel = match housework.pid_file.as_ref().map(|_| Channel::open(pid.as_raw() as u32)).transpose() {
            Ok(c) => c,
            Err(e) => {
                let why = StartError(format!("cannot open the control channel (for stop, reload and status): {e}"));
                return Err(Box::new((why, housework)));
            }
        };
        if let Some(c) = &channel {
            debug!(name = c.name(), "control channel open");
        }
        let now = monotonic_ms();
        let watchdog = notify::watchdog_interval().map(|d| {
            let every = d.as_millis() as u64;
            (every, now + every)
        });
        let classic = matches!(hooks.on_accept.handler, Handler::Sync(_));
        let pool = Pool::new(0, "main", &config, classic, now);
        board.set_thresholds(pool.index, pool.limits.min_spare, pool.limits.max_spare);
        Ok(Manager {
            config,
            layers,
            board,
            listeners,
            hooks,
            own: Some(Own { signals, wake_read, channel, housework }),
            wake_write,
            pool,
            procs: Procs::default(),
            foreign: BTreeMap::new(),
            stop: None,
            exit_code: 0,
            had_to_kill: false,
            pid,
            exits: ExitLog::default(),
            judge_after: 0,
            planned_wake: None,
            watchdog,
            told_status: None,
        })
    }

    /// Runs until the pool is stopped and every worker reaped. Returns the exit status.
    pub(crate) fn run(mut self) -> i32 {
        let l = self.pool.limits;
        info!(
            workers = l.workers,
            min_spare = l.min_spare,
            max_spare = l.max_spare,
            max_children = l.max_children,
            clients = self.config.clients,
            requests = self.config.requests,
            "manager started"
        );
        self.board.announce_ready(self.pool.index, true);
        loop {
            self.adopt_foreign();
            self.reap();
            let now = monotonic_ms();
            self.guard_against_a_stall(now);
            self.judge_start(now);
            if self.stop.is_some() && self.procs.is_empty() && self.foreign.is_empty() {
                break;
            }
            let recheck = if self.stop.is_none() { self.manage(now) } else { None };
            let check = if self.stop.is_none() { self.supervise(now) } else { None };
            let ladders = self.climb_ladders(now);
            self.log_exit_counts(now);
            self.feed_watchdog(now);
            let deadline = [recheck, check, ladders, self.other_deadlines()].into_iter().flatten().min();
            self.wait(deadline);
        }
        self.log_exit_counts(u64::MAX);
        if self.had_to_kill && self.exit_code == 0 {
            self.exit_code = EXIT_HAD_TO_KILL;
        }
        info!(wakes = self.board.wakes(), exit_status = self.exit_code, "manager stopped: every worker is gone");
        if let Some(own) = self.own.take() {
            if let Some(p) = own.housework.pid_file {
                p.remove();
            }
        }
        self.exit_code
    }

    /// A loop that woke much later than it meant to (the manager was stopped, or the machine
    /// suspended) must not judge workers by stamps that went stale while it was away: it gives
    /// them one more full timeout (unicorn's guard; gunicorn issue 1440).
    fn guard_against_a_stall(&mut self, now: u64) {
        let Some(planned) = self.planned_wake.take() else { return };
        let s = &self.pool.supervision;
        let Some(timeout) = s.heartbeat_timeout_ms.or(s.request_timeout_ms) else { return };
        let late = now.saturating_sub(planned);
        if late > timeout {
            warn!(
                late_ms = late,
                "the manager was away longer than a timeout (stopped, or the machine suspended): \
                 no worker is judged for one more timeout"
            );
            self.judge_after = now.saturating_add(timeout);
        }
    }

    /// While the daemon starts: fails the start (exit 1, the reason told to whoever waits for
    /// it) once the first workers cannot become ready.
    fn judge_start(&mut self, now: u64) {
        let Some((watch, last_reason)) = &self.pool.starting else { return };
        if self.stop.is_some() {
            return;
        }
        let why = match supervise::start_verdict(watch, self.pool.limits.workers, now) {
            None => return,
            Some(StartFailure::EveryWorkerDied) => format!(
                "no worker could start: {} died before they were ready; the last {}",
                watch.died_before_ready,
                last_reason.as_deref().unwrap_or("gave no reason")
            ),
            Some(StartFailure::TimedOut) => {
                let ready = self.views().iter().filter(|w| matches!(w.phase, Phase::Idle | Phase::Busy)).count();
                format!(
                    "the workers were not ready within start_timeout ({}): {ready} of {} accept; \
                     check the on_child hooks, or raise start_timeout",
                    daemon_config::format_duration(self.config.start_timeout),
                    self.pool.limits.workers
                )
            }
        };
        self.pool.starting = None;
        error!("start failed: {why}");
        if let Some(own) = self.own.as_mut() {
            own.housework.readiness.failed(&why);
        }
        notify::status(&format!("start failed: {why}"));
        self.exit_code = 1;
        self.begin_stop(StopKind::Fast, "the start failed");
    }

    /// Takes over the processes the program registered with `daemon::foreign_child`.
    fn adopt_foreign(&mut self) {
        for pid in crate::foreign::take() {
            info!(pid, "watching a foreign child");
            let pid = Pid::from_raw(pid);
            let mut child = Foreign { kill_at_ms: None };
            if self.stop.is_some() {
                send(pid, Signal::SIGTERM);
                child.kill_at_ms = Some(monotonic_ms().saturating_add(self.pool.supervision.graceful_ms));
            }
            self.foreign.insert(pid, child);
        }
    }

    fn feed_watchdog(&mut self, now: u64) {
        if let Some((every, due)) = self.watchdog {
            if now >= due {
                notify::watchdog();
                self.watchdog = Some((every, now + every));
            }
        }
    }

    fn views(&self) -> Vec<WorkerView> {
        self.procs
            .iter()
            .map(|p| {
                let v = self.board.view(p.slot);
                let phase = if p.stopping.is_some() || v.state == State::Exiting {
                    Phase::Exiting
                } else {
                    match v.state {
                        State::Waiting | State::Request | State::Long if v.room => Phase::Idle,
                        State::Waiting | State::Request | State::Long => Phase::Busy,
                        _ => Phase::Starting,
                    }
                };
                WorkerView { slot: p.slot, phase, started_ms: v.started_ms, unoccupied: v.active == 0 }
            })
            .collect()
    }

    /// Applies the spare policy. Returns when to look again, if there is a reason to.
    fn manage(&mut self, now: u64) -> Option<u64> {
        let views = self.views();
        let c = policy::count(&views);
        if self.pool.waiting_for_pool {
            let ready = views.iter().filter(|w| matches!(w.phase, Phase::Idle | Phase::Busy)).count();
            if let Some((watch, _)) = self.pool.starting.as_mut() {
                watch.any_ready |= ready > 0;
            }
            if ready >= self.pool.limits.workers as usize {
                self.pool.waiting_for_pool = false;
                self.board.announce_ready(self.pool.index, false);
                let addrs: Vec<String> = self.listeners.iter().map(|l| l.addr.to_string()).collect();
                info!(
                    workers = ready,
                    listen = %addrs.join(","),
                    scoreboard = %self.letters(),
                    "pool ready: every worker accepts"
                );
                if let Some(own) = self.own.as_mut() {
                    own.housework.readiness.ready();
                }
                self.pool.starting = None;
                notify::ready(&format!("{ready} workers accepting on {}", addrs.join(",")));
            }
        }
        self.tell_status(c);
        self.watch_saturation(&c, now);
        let healthy_at = self.notice_health(now);
        let plan = policy::plan(&views, &self.pool.limits, now, self.pool.last_retire_ms);
        if let Some(slot) = plan.retire {
            info!(slot, "retiring a surplus spare");
            self.stop_worker(slot, Rung::Quit, Why::Retire, now);
            self.pool.last_retire_ms = Some(now);
        }
        let mut fork_again = None;
        if plan.spawn > 0 {
            let not_before = self.pool.restarts.not_before();
            if now < not_before {
                fork_again = Some(not_before);
            } else {
                for _ in 0..plan.spawn {
                    if !self.spawn(now) {
                        // A failed fork waits for its backoff: look again then, not never.
                        fork_again = Some(self.pool.restarts.not_before());
                        break;
                    }
                }
            }
        }
        [plan.recheck_at, fork_again, healthy_at].into_iter().flatten().min()
    }

    /// STATUS= for systemd, when it listens and something changed.
    fn tell_status(&mut self, c: policy::Counts) {
        if !notify::enabled() {
            return;
        }
        let text = if self.pool.restarts.in_crash_loop() {
            format!(
                "crash loop: workers die within min_worker_lifetime; forking one each {}s; {} workers",
                supervise::BACKOFF_MAX_MS / 1000,
                c.pool
            )
        } else {
            format!("{} busy, {} idle, {} workers", c.busy, c.spares, c.pool)
        };
        if self.told_status.as_deref() != Some(&text) {
            notify::status(&text);
            self.told_status = Some(text);
        }
    }

    /// Says once per episode that every worker is busy and no more may be forked (Apache's
    /// "server reached MaxRequestWorkers"), and when it is over.
    fn watch_saturation(&mut self, c: &policy::Counts, now: u64) {
        let saturated = c.spares == 0 && c.live >= self.pool.limits.max_children && c.busy > 0;
        match (saturated, self.pool.saturated_since) {
            (true, None) => {
                warn!(
                    busy = c.busy,
                    max_children = self.pool.limits.max_children,
                    clients = self.config.clients,
                    "the pool is saturated: every worker is busy and max_children is reached; \
                     new connections wait in the listen queue (raise max_children or clients)"
                );
                self.pool.saturated_since = Some(now);
            }
            (false, Some(since)) => {
                info!(lasted_ms = now.saturating_sub(since), "the pool is no longer saturated");
                self.pool.saturated_since = None;
            }
            _ => {}
        }
    }

    /// The scoreboard's state letters, one per worker, in slot order.
    fn letters(&self) -> String {
        crate::scoreboard::letters(&self.board, self.procs.slots())
    }

    /// Deadlines that are not the pool's: foreign children's kills, the watchdog, a failing
    /// start, the control channel's clients, the exit log's window.
    fn other_deadlines(&self) -> Option<u64> {
        let foreign = self.foreign.values().filter_map(|f| f.kill_at_ms);
        let watchdog = self.watchdog.map(|(_, due)| due);
        let start = self.pool.starting.as_ref().map(|(w, _)| w.deadline_ms);
        let control = self.own.as_ref().and_then(|o| o.channel.as_ref()).and_then(Channel::deadline);
        foreign.chain(watchdog).chain(start).chain(control).chain(self.exits.deadline()).min()
    }

    /// Sleeps until a signal, a wake-up from a worker, a control client, or the deadline.
    fn wait(&mut self, deadline: Option<u64>) {
        self.planned_wake = deadline;
        let Some(own) = self.own.as_ref() else { return };
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at.saturating_sub(monotonic_ms()).min(i32::MAX as u64) as i32;
                // Round up so we do not wake a hair early and spin.
                PollTimeout::try_from(ms.saturating_add(1)).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![
            PollFd::new(own.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(own.wake_read.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(channel) = own.channel.as_ref() {
            for (fd, writing) in channel.poll_fds() {
                let flags = if writing { PollFlags::POLLOUT } else { PollFlags::POLLIN };
                fds.push(PollFd::new(fd, flags));
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                error!(error = %e, "poll failed");
                return;
            }
        }
        let asked = fds[2..].iter().any(|f| f.revents().is_some_and(|r| !r.is_empty()));
        drop(fds);
        if asked || self.own.as_ref().and_then(|o| o.channel.as_ref()).and_then(Channel::deadline).is_some() {
            self.serve_control();
        }
        let Some(own) = self.own.as_ref() else { return };
        let mut buf = [0u8; 256];
        while matches!(nix::unistd::read(&own.wake_read, &mut buf), Ok(n) if n > 0) {}
        let received = signals::drain(&own.signals);
        for sig in received {
            self.on_signal(sig);
        }
    }

    /// Serves the control channel's clients; their requests act as the signals would.
    fn serve_control(&mut self) {
        let Some(mut channel) = self.own.as_mut().and_then(|o| o.channel.take()) else { return };
        channel.serve(monotonic_ms(), |request| self.on_request(request));
        if let Some(own) = self.own.as_mut() {
            own.channel = Some(channel);
        }
    }

    /// A request from a control command, over the verified channel. Every answer names this
    /// manager (pid and package), which the client checks.
    fn on_request(&mut self, request: Request) -> serde_json::Value {
        let package = self.package();
        let mut answer = match request {
            Request::Status => return self.snapshot(),
            Request::Stop { graceful } => {
                let kind = if graceful { StopKind::Graceful } else { StopKind::Fast };
                self.begin_stop(kind, "asked by the control channel");
                serde_json::json!({ "stopping": true })
            }
            Request::Reload => {
                self.reopen_logs();
                match self.reload() {
                    Ok(()) => serde_json::json!({ "applied": true }),
                    Err(problems) => serde_json::json!({ "applied": false, "problems": problems }),
                }
            }
        };
        answer["pid"] = self.pid.as_raw().into();
        answer["package"] = package.name.into();
        answer
    }

    fn package(&self) -> crate::entry::Package {
        match self.own.as_ref() {
            Some(own) => own.housework.package,
            None => crate::entry::Package { name: "", version: "" },
        }
    }

    fn on_signal(&mut self, sig: Signal) {
        match sig {
            Signal::SIGCHLD => {}
            Signal::SIGTERM | Signal::SIGINT => self.begin_stop(StopKind::Fast, sig.as_str()),
            Signal::SIGQUIT => self.begin_stop(StopKind::Graceful, sig.as_str()),
            Signal::SIGTTIN => {
                if self.stop.is_some() {
                    return;
                }
                let l = &mut self.pool.limits;
                if l.workers < l.max_children {
                    l.workers += 1;
                    info!(workers = l.workers, "TTIN: one worker more");
                } else {
                    warn!(max_children = l.max_children, "TTIN: the pool is at max_children already");
                }
            }
            Signal::SIGTTOU => self.shrink_by_one(),
            Signal::SIGHUP => {
                self.reopen_logs();
                let _ = self.reload();
            }
            Signal::SIGUSR1 => self.reopen_logs(),
            other => warn!(signal = %other, "this version of the manager does not act on this signal; ignored"),
        }
    }

    fn shrink_by_one(&mut self) {
        if self.stop.is_some() {
            return;
        }
        if self.pool.limits.workers <= 1 {
            warn!("TTOU: the pool is at one worker already");
            return;
        }
        self.pool.limits.workers -= 1;
        let mut views = self.views();
        let Some(slot) = policy::pick_retiree(&views) else { return };
        // If min_spare would fork a replacement at once, lowering the floor is all TTOU can do.
        if let Some(v) = views.iter_mut().find(|v| v.slot == slot) {
            v.phase = Phase::Exiting;
        }
        let now = monotonic_ms();
        if policy::plan(&views, &self.pool.limits, now, None).spawn > 0 {
            info!(workers = self.pool.limits.workers, "TTOU: floor lowered; min_spare keeps the current workers");
            return;
        }
        info!(workers = self.pool.limits.workers, slot, "TTOU: one worker fewer");
        self.stop_worker(slot, Rung::Quit, Why::Retire, now);
    }

    /// USR1 (and HUP): reopen the log file here, then in every worker.
    fn reopen_logs(&mut self) {
        let Some(log) = self.own.as_ref().and_then(|o| o.housework.log_file.as_ref()) else {
            info!("no log file to reopen (logs go to standard error)");
            return;
        };
        match log.reopen() {
            Ok(()) => info!(path = %log.path().display(), "log file reopened"),
            Err(e) => {
                error!(path = %log.path().display(), error = %e, "cannot reopen the log file; still writing to the old one");
                return;
            }
        }
        for p in self.procs.iter() {
            send(p.pid, Signal::SIGUSR1);
        }
    }

    /// HUP: read the config file again; if it is good, apply it and start a new generation of
    /// workers, which replaces the old one as it finishes its work. A bad file changes nothing.
    fn reload(&mut self) -> Result<(), Vec<String>> {
        if self.stop.is_some() {
            return Err(vec!["the daemon is stopping".to_string()]);
        }
        notify::reloading();
        let new = match self.layers.resolve() {
            Ok(c) => c,
            Err(problems) => {
                for p in &problems {
                    error!("{p}");
                }
                error!(problems = problems.len(), "HUP: the new configuration is refused; the running one stays");
                notify::ready("reload refused; running configuration kept");
                return Err(problems);
            }
        };
        // Settings that need a restart keep their running value, in the manager and in every
        // worker of the new generation alike.
        let mut new = new;
        for (key, wanted) in new.keep_restart_settings(&self.config) {
            warn!(
                key = %setting(key).name,
                running = %self.config.value(key),
                wanted = %wanted,
                "HUP: this setting changed, but only a restart can apply it; the running value stays"
            );
        }
        self.config = new;
        self.pool.reconfigure(&self.config);
        let l = self.pool.limits;
        self.board.set_thresholds(self.pool.index, l.min_spare, l.max_spare);
        self.new_generation();
        Ok(())
    }

    /// A new generation of workers replaces the old one, which finishes its work first.
    fn new_generation(&mut self) {
        self.pool.generation += 1;
        self.pool.waiting_for_pool = true;
        self.board.announce_ready(self.pool.index, true);
        info!(
            generation = self.pool.generation,
            workers = self.pool.limits.workers,
            "HUP: configuration applied; replacing every worker with a new generation"
        );
        let now = monotonic_ms();
        let generation = self.pool.generation;
        let old: Vec<usize> =
            self.procs.iter().filter(|p| p.stopping.is_none() && p.generation < generation).map(|p| p.slot).collect();
        for slot in old {
            self.stop_worker(slot, Rung::Quit, Why::Retire, now);
        }
    }

    fn begin_stop(&mut self, kind: StopKind, why: &str) {
        match (self.stop, kind) {
            (Some(StopKind::Fast), _) | (Some(StopKind::Graceful), StopKind::Graceful) => return,
            _ => {}
        }
        let (rung, how) = match kind {
            StopKind::Graceful => (Rung::Quit, "graceful stop: workers finish their work"),
            StopKind::Fast => (Rung::Term, "fast stop: workers end now"),
        };
        info!(why, workers = self.procs.len(), "{how}");
        if self.stop.is_none() {
            notify::stopping();
        }
        self.stop = Some(kind);
        let now = monotonic_ms();
        let graceful = self.pool.supervision.graceful_ms;
        for (&pid, child) in self.foreign.iter_mut() {
            send(pid, Signal::SIGTERM);
            child.kill_at_ms.get_or_insert(now.saturating_add(graceful));
        }
        let slots: Vec<usize> = self.procs.slots().collect();
        for slot in slots {
            self.stop_worker(slot, rung, Why::Stop, now);
        }
    }

    /// Starts (or moves up) a worker's stop ladder at `rung`. A worker already on a rung as high
    /// stays where it is, so no verdict or stop is carried out twice.
    fn stop_worker(&mut self, slot: usize, rung: Rung, why: Why, now: u64) {
        let Some(p) = self.procs.get_mut(slot) else { return };
        if let Some(s) = &mut p.stopping {
            if s.ladder.rung >= rung {
                return;
            }
            // A fast stop of a worker that was retiring: the stop is now what it is for.
            s.why = why;
        }
        send(p.pid, signal_of(rung));
        p.stopping = Some(Stopping { ladder: Ladder { rung, at_ms: now }, why });
    }

    /// Collects every child that has exited; no zombie is left behind. As PID 1 the manager
    /// also reaps orphans re-parented to it, which it tells from its workers by pid.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!(error = %e, "waitpid failed");
                    return;
                }
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    self.on_exit(pid, status);
                }
            }
        }
    }

    fn on_exit(&mut self, pid: Pid, status: WaitStatus) {
        // By pid first: a stranger's status (an orphan reaped as PID 1) is never a worker's death.
        let Some(proc) = self.procs.remove(pid) else {
            if self.foreign.remove(&pid).is_some() {
                info!(pid = pid.as_raw(), ?status, "foreign child exited");
            } else {
                debug!(pid = pid.as_raw(), ?status, "reaped a process that was not a worker (an orphan)");
            }
            return;
        };
        self.on_death(proc, status);
    }
}

/// The signal of a rung.
fn signal_of(rung: Rung) -> Signal {
    match rung {
        Rung::Quit => Signal::SIGQUIT,
        Rung::Term => Signal::SIGTERM,
        Rung::Kill => Signal::SIGKILL,
    }
}

fn send(pid: Pid, signal: Signal) {
    if let Err(e) = kill(pid, signal) {
        // ESRCH: it is already gone and will be reaped.
        if e != Errno::ESRCH {
            warn!(pid = pid.as_raw(), signal = %signal, error = %e, "cannot signal worker");
        }
    }
}
