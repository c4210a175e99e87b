//! The manager: one thread, no async runtime, an event loop on poll(2) over two descriptors (its
//! signals and the workers' wake pipe). It sleeps until something happens or until the earliest
//! deadline it truly has (a kill after a graceful timeout, the next retirement, a fork backoff);
//! idle, it does not wake at all.

use std::collections::{BTreeMap, HashMap};
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

use crate::hooks::Hooks;
use crate::listener::Listener;
use crate::policy::{self, Limits, Phase, StartFailure, StartWatch, WorkerView};
use crate::scoreboard::{Scoreboard, State, SLOTS};
use crate::control::{Channel, Request};
use crate::detach::Readiness;
use crate::logfile::LogFile;
use crate::notify;
use crate::pidfile::PidFile;
use crate::signals;
use crate::sources::Layers;
use crate::sys::{fork, monotonic_ms, Forked};
use crate::worker;

/// How long to wait before forking again after a worker died before it was ready, doubling up to
/// the maximum: a crashing on_child hook must not turn the manager into a fork bomb.
const BACKOFF_FIRST_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 10_000;

/// One worker, as the manager tracks it.
#[derive(Debug)]
struct Record {
    pid: Pid,
    generation: u32,
    /// Set once the manager has told it to stop.
    stopping: Option<Stopping>,
}

#[derive(Debug)]
struct Stopping {
    /// The signal sent to stop it; ending by it is a clean end.
    signal: Signal,
    kill_at_ms: u64,
    killed: bool,
}

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

pub(crate) struct Manager {
    config: Config,
    /// Every source of settings, to resolve again on HUP.
    layers: Layers,
    limits: Limits,
    board: Scoreboard,
    listeners: Vec<Listener>,
    hooks: Hooks,
    own: Option<Own>,
    wake_write: OwnedFd,
    records: BTreeMap<usize, Record>,
    by_pid: HashMap<Pid, usize>,
    generation: u32,
    last_retire_ms: Option<u64>,
    stop: Option<StopKind>,
    /// Workers that died before becoming ready, in a row.
    failed_starts: u32,
    fork_not_before_ms: u64,
    waiting_for_pool: bool,
    /// While the daemon starts: how its first workers are doing, and the last one's reason for
    /// dying before it was ready.
    starting: Option<(StartWatch, Option<String>)>,
    /// The status the manager exits with once every worker is gone.
    exit_code: i32,
    pid: Pid,
    /// Processes the program handed over with `daemon::foreign_child`.
    foreign: BTreeMap<Pid, Option<u64>>,
    /// When the next WATCHDOG=1 is due, if systemd asked for them.
    watchdog: Option<(u64, u64)>,
    /// The last STATUS= sent (busy, idle).
    told_status: Option<(u32, u32)>,
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
        let watchdog = notify::watchdog_interval().map(|d| {
            let every = d.as_millis() as u64;
            (every, monotonic_ms() + every)
        });
        let start_timeout_ms = config.start_timeout.as_millis() as u64;
        let limits = Limits {
            workers: config.workers,
            min_spare: config.min_spare,
            max_spare: config.max_spare,
            max_children: config.max_children,
        };
        board.set_thresholds(limits.min_spare, limits.max_spare);
        Ok(Manager {
            config,
            layers,
            limits,
            board,
            listeners,
            hooks,
            own: Some(Own { signals, wake_read, channel, housework }),
            wake_write,
            records: BTreeMap::new(),
            by_pid: HashMap::new(),
            generation: 1,
            last_retire_ms: None,
            stop: None,
            failed_starts: 0,
            fork_not_before_ms: 0,
            waiting_for_pool: true,
            starting: Some((
                StartWatch {
                    deadline_ms: monotonic_ms().saturating_add(start_timeout_ms),
                    died_before_ready: 0,
                    any_ready: false,
                },
                None,
            )),
            exit_code: 0,
            pid,
            foreign: BTreeMap::new(),
            watchdog,
            told_status: None,
        })
    }

    /// Runs until the pool is stopped and every worker reaped. Returns the exit status.
    pub(crate) fn run(mut self) -> i32 {
        info!(
            workers = self.limits.workers,
            min_spare = self.limits.min_spare,
            max_spare = self.limits.max_spare,
            max_children = self.limits.max_children,
            clients = self.config.clients,
            requests = self.config.requests,
            "manager started"
        );
        self.board.announce_ready(true);
        loop {
            self.adopt_foreign();
            self.reap();
            let now = monotonic_ms();
            self.judge_start(now);
            if self.stop.is_some() && self.records.is_empty() && self.foreign.is_empty() {
                break;
            }
            let recheck = if self.stop.is_none() { self.manage(now) } else { None };
            self.enforce_deadlines(now);
            self.feed_watchdog(now);
            let deadline = self.next_deadline(recheck);
            self.wait(deadline);
        }
        info!(wakes = self.board.wakes(), "manager stopped: every worker is gone");
        if let Some(own) = self.own.take() {
            if let Some(p) = own.housework.pid_file {
                p.remove();
            }
        }
        self.exit_code
    }

    /// While the daemon starts: fails the start (exit 1, the reason told to whoever waits for
    /// it) once the first workers cannot become ready.
    fn judge_start(&mut self, now: u64) {
        let Some((watch, last_reason)) = &self.starting else { return };
        if self.stop.is_some() {
            return;
        }
        let why = match policy::start_verdict(watch, self.limits.workers, now) {
            None => return,
            Some(StartFailure::EveryWorkerDied) => format!(
                "no worker could start: {} died before they were ready; the last {}",
                watch.died_before_ready,
                last_reason.as_deref().unwrap_or("gave no reason")
            ),
            Some(StartFailure::TimedOut) => {
                let ready = self
                    .views()
                    .iter()
                    .filter(|w| matches!(w.phase, Phase::Idle | Phase::Busy))
                    .count();
                format!(
                    "the workers were not ready within start_timeout ({}): {ready} of {} accept; \
                     check the on_child hooks, or raise start_timeout",
                    daemon_config::format_duration(self.config.start_timeout),
                    self.limits.workers
                )
            }
        };
        self.starting = None;
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
            if self.stop.is_some() {
                send(pid, Signal::SIGTERM);
            }
            self.foreign.insert(pid, None);
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

    /// What `status` prints, as JSON.
    fn snapshot(&self) -> serde_json::Value {
        let now = monotonic_ms();
        let workers: Vec<serde_json::Value> = self
            .records
            .iter()
            .map(|(&slot, rec)| {
                let v = self.board.view(slot);
                serde_json::json!({
                    "slot": slot,
                    "pid": rec.pid.as_raw(),
                    "state": v.state.letter().to_string(),
                    "generation": rec.generation,
                    "requests": v.requests,
                    "active": v.active,
                    "age_ms": now.saturating_sub(v.started_ms),
                    "last_heartbeat_ms": now.saturating_sub(v.heartbeat_ms),
                })
            })
            .collect();
        serde_json::json!({
            "pid": self.pid.as_raw(),
            "package": self.package().name,
            "version": self.package().version,
            "mode": "prefork",
            "generation": self.generation,
            "scoreboard": self.letters(),
            "limits": {
                "workers": self.limits.workers,
                "min_spare": self.limits.min_spare,
                "max_spare": self.limits.max_spare,
                "max_children": self.limits.max_children,
            },
            "stopping": self.stop.is_some(),
            "workers": workers,
        })
    }

    fn views(&self) -> Vec<WorkerView> {
        self.records
            .iter()
            .map(|(&slot, rec)| {
                let v = self.board.view(slot);
                let phase = if rec.stopping.is_some() || v.state == State::Exiting {
                    Phase::Exiting
                } else {
                    match v.state {
                        State::Waiting | State::Request | State::Long if v.room => Phase::Idle,
                        State::Waiting | State::Request | State::Long => Phase::Busy,
                        _ => Phase::Starting,
                    }
                };
                WorkerView { slot, phase, started_ms: v.started_ms, unoccupied: v.active == 0 }
            })
            .collect()
    }

    /// Applies the policy. Returns when to look again, if the policy asked.
    fn manage(&mut self, now: u64) -> Option<u64> {
        let views = self.views();
        if self.waiting_for_pool {
            let ready = views.iter().filter(|w| matches!(w.phase, Phase::Idle | Phase::Busy)).count();
            if let Some((watch, _)) = self.starting.as_mut() {
                watch.any_ready |= ready > 0;
            }
            if ready >= self.limits.workers as usize {
                self.waiting_for_pool = false;
                self.board.announce_ready(false);
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
                self.starting = None;
                notify::ready(&format!("{ready} workers accepting on {}", addrs.join(",")));
            }
        }
        if notify::enabled() {
            let c = policy::count(&views);
            let idle = c.spares;
            if self.told_status != Some((c.busy, idle)) {
                self.told_status = Some((c.busy, idle));
                notify::status(&format!("{} busy, {idle} idle, {} workers", c.busy, c.pool));
            }
        }
        let plan = policy::plan(&views, &self.limits, now, self.last_retire_ms);
        if let Some(slot) = plan.retire {
            info!(slot, "retiring a surplus spare");
            self.retire(slot, now);
            self.last_retire_ms = Some(now);
        }
        if plan.spawn > 0 {
            if now < self.fork_not_before_ms {
                return Some(self.fork_not_before_ms);
            }
            for _ in 0..plan.spawn {
                if !self.spawn() {
                    break;
                }
            }
        }
        plan.recheck_at
    }

    /// The scoreboard's state letters, one per worker, in slot order.
    fn letters(&self) -> String {
        crate::scoreboard::letters(&self.board, self.records.keys().copied())
    }

    fn next_deadline(&self, recheck: Option<u64>) -> Option<u64> {
        let kills = self
            .records
            .values()
            .filter_map(|r| r.stopping.as_ref())
            .filter(|s| !s.killed)
            .map(|s| s.kill_at_ms);
        let foreign = self.foreign.values().flatten().copied();
        let watchdog = self.watchdog.map(|(_, due)| due);
        let start = self.starting.as_ref().map(|(w, _)| w.deadline_ms);
        let control = self.own.as_ref().and_then(|o| o.channel.as_ref()).and_then(Channel::deadline);
        recheck.into_iter().chain(kills).chain(foreign).chain(watchdog).chain(start).chain(control).min()
    }

    /// Sleeps until a signal, a wake-up from a worker, or the deadline.
    fn wait(&mut self, deadline: Option<u64>) {
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
                if self.limits.workers < self.limits.max_children {
                    self.limits.workers += 1;
                    info!(workers = self.limits.workers, "TTIN: one worker more");
                } else {
                    warn!(max_children = self.limits.max_children, "TTIN: the pool is at max_children already");
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
        if self.limits.workers <= 1 {
            warn!("TTOU: the pool is at one worker already");
            return;
        }
        self.limits.workers -= 1;
        let mut views = self.views();
        let Some(slot) = policy::pick_retiree(&views) else { return };
        // If min_spare would fork a replacement at once, lowering the floor is all TTOU can do.
        if let Some(v) = views.iter_mut().find(|v| v.slot == slot) {
            v.phase = Phase::Exiting;
        }
        let now = monotonic_ms();
        if policy::plan(&views, &self.limits, now, None).spawn > 0 {
            info!(workers = self.limits.workers, "TTOU: floor lowered; min_spare keeps the current workers");
            return;
        }
        info!(workers = self.limits.workers, slot, "TTOU: one worker fewer");
        self.retire(slot, now);
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
        for rec in self.records.values() {
            send(rec.pid, Signal::SIGUSR1);
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
        self.limits = Limits {
            workers: self.config.workers,
            min_spare: self.config.min_spare,
            max_spare: self.config.max_spare,
            max_children: self.config.max_children,
        };
        self.board.set_thresholds(self.limits.min_spare, self.limits.max_spare);
        self.new_generation();
        Ok(())
    }

    /// A new generation of workers replaces the old one, which finishes its work first.
    fn new_generation(&mut self) {
        self.generation += 1;
        self.waiting_for_pool = true;
        self.board.announce_ready(true);
        info!(
            generation = self.generation,
            workers = self.limits.workers,
            "HUP: configuration applied; replacing every worker with a new generation"
        );
        let now = monotonic_ms();
        let old: Vec<usize> = self
            .records
            .iter()
            .filter(|(_, r)| r.stopping.is_none() && r.generation < self.generation)
            .map(|(&s, _)| s)
            .collect();
        for slot in old {
            self.retire(slot, now);
        }
    }

    fn begin_stop(&mut self, kind: StopKind, why: &str) {
        match (self.stop, kind) {
            (Some(StopKind::Fast), _) | (Some(StopKind::Graceful), StopKind::Graceful) => return,
            _ => {}
        }
        let (signal, how) = match kind {
            StopKind::Graceful => (Signal::SIGQUIT, "graceful stop: workers finish their work"),
            StopKind::Fast => (Signal::SIGTERM, "fast stop: workers end now"),
        };
        info!(why, workers = self.records.len(), "{how}");
        if self.stop.is_none() {
            notify::stopping();
        }
        self.stop = Some(kind);
        let kill_at_ms = monotonic_ms().saturating_add(self.config.graceful_timeout.as_millis() as u64);
        for (&pid, kill_at) in self.foreign.iter_mut() {
            send(pid, Signal::SIGTERM);
            kill_at.get_or_insert(kill_at_ms);
        }
        for rec in self.records.values_mut() {
            send(rec.pid, signal);
            let keep = rec.stopping.as_ref().map_or(u64::MAX, |s| s.kill_at_ms);
            rec.stopping = Some(Stopping { signal, kill_at_ms: kill_at_ms.min(keep), killed: false });
        }
    }

    fn retire(&mut self, slot: usize, now: u64) {
        let timeout = self.config.graceful_timeout.as_millis() as u64;
        if let Some(rec) = self.records.get_mut(&slot) {
            if rec.stopping.is_none() {
                send(rec.pid, Signal::SIGQUIT);
                rec.stopping = Some(Stopping {
                    signal: Signal::SIGQUIT,
                    kill_at_ms: now.saturating_add(timeout),
                    killed: false,
                });
            }
        }
    }

    fn enforce_deadlines(&mut self, now: u64) {
        for (&pid, kill_at) in self.foreign.iter_mut() {
            if kill_at.is_some_and(|at| at <= now) {
                warn!(pid = pid.as_raw(), "foreign child did not stop within graceful_timeout: KILL");
                send(pid, Signal::SIGKILL);
                *kill_at = None;
            }
        }
        for (&slot, rec) in self.records.iter_mut() {
            if let Some(s) = rec.stopping.as_mut() {
                if !s.killed && s.kill_at_ms <= now {
                    warn!(slot, pid = rec.pid.as_raw(), "worker did not stop within graceful_timeout: KILL");
                    send(rec.pid, Signal::SIGKILL);
                    s.killed = true;
                }
            }
        }
    }

    /// Forks one worker into a free slot. Returns false if it could not.
    fn spawn(&mut self) -> bool {
        let Some(slot) = (0..SLOTS).find(|s| !self.records.contains_key(s)) else {
            error!("the scoreboard is full");
            return false;
        };
        self.board.prepare(slot, self.generation);
        match fork() {
            Ok(Forked::Parent(pid)) => {
                self.board.set_pid(slot, pid.as_raw());
                self.records.insert(slot, Record { pid, generation: self.generation, stopping: None });
                self.by_pid.insert(pid, slot);
                info!(slot, pid = pid.as_raw(), generation = self.generation, "worker spawned");
                true
            }
            Ok(Forked::Child) => self.become_worker(slot),
            Err(e) => {
                self.board.clear(slot);
                error!(error = %e, "fork failed; trying again in a second");
                self.fork_not_before_ms = monotonic_ms() + 1000;
                false
            }
        }
    }

    /// In the child: drop what is the manager's alone and run the worker. Never returns.
    fn become_worker(&mut self, slot: usize) -> ! {
        drop(self.own.take());
        let wake = match self.wake_write.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                let why = format!("cannot set up the worker's wake pipe: {e}");
                self.board.give_up(slot, &why);
                crate::sys::exit_now(1)
            }
        };
        worker::run(worker::Setup {
            slot: self.board.worker_slot(slot, self.config.clients, wake),
            generation: self.generation,
            manager_pid: self.pid,
            listeners: &self.listeners,
            hooks: &self.hooks,
            config: &self.config,
        })
    }

    /// Collects every child that has exited; no zombie is left behind.
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
        let Some(slot) = self.by_pid.remove(&pid) else {
            if self.foreign.remove(&pid).is_some() {
                info!(pid = pid.as_raw(), ?status, "foreign child exited");
            } else {
                debug!(pid = pid.as_raw(), ?status, "reaped a process that was not a worker");
            }
            return;
        };
        let view = self.board.view(slot);
        let note = self.board.note(slot);
        let rec = self.records.remove(&slot);
        self.board.clear(slot);
        let expected = rec.as_ref().is_some_and(|r| r.stopping.is_some()) || view.state == State::Exiting;
        let how = match status {
            WaitStatus::Exited(_, code) => format!("exit status {code}"),
            WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
            other => format!("{other:?}"),
        };
        let sent = rec.as_ref().and_then(|r| r.stopping.as_ref()).map(|s| s.signal);
        let clean = match status {
            WaitStatus::Exited(_, 0) => true,
            WaitStatus::Signaled(_, sig, _) => Some(sig) == sent && sig != Signal::SIGKILL,
            _ => false,
        };
        if expected && clean {
            info!(slot, pid = pid.as_raw(), requests = view.requests, "worker exited");
        } else if expected {
            warn!(slot, pid = pid.as_raw(), requests = view.requests, status = %how, "worker ended while stopping");
        } else {
            warn!(
                slot,
                pid = pid.as_raw(),
                requests = view.requests,
                status = %how,
                reason = note.as_deref().unwrap_or("none given"),
                scoreboard = %self.letters(),
                "worker died; replacing it"
            );
        }
        let never_ready = matches!(view.state, State::Forking | State::Forked | State::Starting);
        if never_ready && !expected {
            self.failed_starts += 1;
            let delay = (BACKOFF_FIRST_MS << (self.failed_starts - 1).min(16)).min(BACKOFF_MAX_MS);
            self.fork_not_before_ms = monotonic_ms() + delay;
            let reason = note.clone().unwrap_or_else(|| how.clone());
            error!(
                slot,
                failures = self.failed_starts,
                delay_ms = delay,
                reason = %reason,
                "worker died before it was ready (check the on_child hooks); backing off"
            );
            if let Some((watch, last)) = self.starting.as_mut() {
                watch.died_before_ready += 1;
                *last = Some(match &note {
                    Some(note) => format!("(slot {slot}, pid {pid}, {how}) said: {note}"),
                    None => format!("(slot {slot}, pid {pid}) ended with {how}, without a word"),
                });
            }
        } else if !never_ready {
            self.failed_starts = 0;
        }
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
