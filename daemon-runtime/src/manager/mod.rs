//! The manager: one thread, no async runtime, an event loop on poll(2) over its signals, the
//! workers' wake pipe and the control channel. It sleeps until something happens or until the
//! earliest deadline it truly has: a rung of a stop ladder, the next retirement, a fork backoff,
//! the earliest heartbeat or request deadline that could pass. Idle, with heartbeats on, it wakes
//! about once per `heartbeat_timeout`; with them off, never.
//!
//! The decisions are the pool's pure functions (`pool::policy`, `pool::supervise`); this module
//! carries them out: it forks, signals, reaps and logs.

mod exits;
mod metrics;
mod procs;
mod spawn;
mod status;
mod supervision;
mod upgrade;

pub(crate) use upgrade::Restart;

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
use crate::pool::{Kind, Pool};
use daemon_config::{GroupConfig, TaskModel};
use crate::scoreboard::{Scoreboard, State};
use crate::signals;
use crate::sources::Layers;
use crate::sys::monotonic_ms;

use exits::ExitLog;
use procs::{Foreign, Gone, Procs, Stopping, Why};

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
    /// `GET /metrics`, with `metrics_listen`.
    metrics: Option<metrics::MetricsServer>,
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
    /// The manager that started this one by an upgrade, if one did.
    pub upgraded_from: Option<Pid>,
    /// How to start the program again, for an upgrade.
    pub restart: Option<Restart>,
    /// The metrics' listener, bound with the others (`metrics_listen`).
    pub metrics: Option<std::net::TcpListener>,
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
    /// Every pool, by its index (its header on the scoreboard).
    pools: BTreeMap<usize, Pool>,
    procs: Procs,
    /// Whether the start has been reported ready (to the detach, systemd, on_ready hooks).
    ready_reported: bool,
    /// A reload's new generations are on their way (systemd hears READY=1 when they are).
    reloading: bool,
    stop: Option<StopKind>,
    /// The status the manager exits with once every worker is gone.
    exit_code: i32,
    /// Why the start failed: told to whoever waits for the start once this manager has cleaned
    /// up (its workers gone, its pid file removed), so a start run again at once finds no trace.
    start_failed: Option<String>,
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
    /// How to start the program again (USR2), the upgrade under way, how the last one ended.
    restart: Option<Restart>,
    upgrade: Option<upgrade::Upgrade>,
    last_upgrade: Option<upgrade::Outcome>,
    /// The manager whose upgrade started this one.
    upgraded_from: Option<Pid>,
    /// WINCH, `backout`, a held upgrade: no workers until HUP.
    backed_out: bool,
    /// What the metrics count as workers come and go.
    counters: metrics::Counters,
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
        groups: Vec<GroupConfig>,
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
        // What a worker leaves behind (a process it started and did not wait for) is re-parented
        // to the manager, reaped by it, and stopped with the daemon, as systemd's
        // KillMode=control-group would: nothing of the daemon's outlives its stop.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            warn!(error = %e, "cannot become a child subreaper: processes the workers leave behind go to init, and outlive the daemon");
        }
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
        let mut pools = BTreeMap::new();
        if let Some(accept) = hooks.on_accept {
            let classic = matches!(accept.handler, Handler::Sync(_));
            let kind = if config.postfork { Kind::Postfork } else { Kind::Prefork };
            pools.insert(0, Pool::new(0, "main", kind, &config, classic, now));
        }
        if hooks.supervised.is_some() {
            let i = pools.len();
            pools.insert(i, Pool::new(i, "supervised", Kind::Supervised, &config, true, now));
        }
        for group in groups.into_iter().filter(|g| g.workers > 0) {
            let i = pools.len();
            if i >= crate::scoreboard::POOLS {
                return Err(Box::new((StartError(format!("more than {} pools: too many task groups", crate::scoreboard::POOLS)), housework)));
            }
            let name = group.name.clone();
            pools.insert(i, Pool::new(i, &name, Kind::Task(group), &config, true, now));
        }
        for pool in pools.values_mut() {
            board.publish(pool.index, pool.limits.min_spare, pool.limits.max_spare, &pool.supervision);
            if pool.kind == Kind::Postfork {
                // Children come with connections: nothing to wait for.
                pool.waiting_for_pool = false;
                pool.starting = None;
            }
        }
        // The start waits for the pool that serves, if there is one: a task group that cannot
        // start is a crash loop to report, not a reason to refuse the service.
        let serves = hooks.on_accept.is_some();
        for pool in pools.values_mut() {
            pool.primary = !serves || pool.index == 0;
            if !pool.primary {
                pool.starting = None;
            }
        }
        let (restart, upgraded_from) = (housework.restart.clone(), housework.upgraded_from);
        let mut housework = housework;
        let metrics = housework.metrics.take().map(|l| {
            let user = config.user.as_deref().and_then(|u| crate::boot::privileges::uid_of(u).ok());
            metrics::MetricsServer::new(l, user)
        });
        Ok(Manager {
            config,
            layers,
            board,
            listeners,
            hooks,
            own: Some(Own { signals, wake_read, channel, metrics, housework }),
            wake_write,
            pools,
            procs: Procs::default(),
            ready_reported: false,
            reloading: false,
            stop: None,
            exit_code: 0,
            start_failed: None,
            had_to_kill: false,
            pid,
            exits: ExitLog::default(),
            judge_after: 0,
            planned_wake: None,
            watchdog,
            told_status: None,
            restart,
            upgrade: None,
            last_upgrade: None,
            upgraded_from,
            backed_out: false,
            counters: metrics::Counters::default(),
        })
    }

    /// Runs until every pool is stopped and every worker reaped. Returns the exit status.
    pub(crate) fn run(mut self) -> i32 {
        for pool in self.pools.values() {
            let l = pool.limits;
            info!(
                pool = %pool.name,
                kind = pool.kind.name(),
                workers = l.workers,
                min_spare = l.min_spare,
                max_spare = l.max_spare,
                max_children = l.max_children,
                "manager started"
            );
            self.board.announce_ready(pool.index, true);
        }
        loop {
            // From here until it sleeps, a worker's change that it might not see wakes it.
            if self.stop.is_none() {
                self.board.awake();
            }
            self.adopt_foreign();
            self.reap();
            let now = monotonic_ms();
            self.guard_against_a_stall(now);
            self.judge_start(now);
            self.check_upgrade(now);
            self.drop_removed_pools();
            // Every worker gone: what they left behind goes too, then the manager.
            if self.stop.is_some() && self.procs.all_gone() {
                if self.adopt_orphans() == 0 {
                    break;
                }
                self.stop_foreign(monotonic_ms());
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
        self.hooks.on_exit();
        info!(wakes = self.board.wakes(), exit_status = self.exit_code, "manager stopped: every worker is gone");
        if let Some(mut own) = self.own.take() {
            if let Some(p) = own.housework.pid_file.take() {
                p.remove();
            }
            if let Some(why) = self.start_failed.take() {
                own.housework.readiness.failed(&why);
            }
        }
        self.exit_code
    }

    /// The strictest timeout that applies to any pool (for the stall guard).
    fn longest_timeout(&self) -> Option<u64> {
        self.pools
            .values()
            .filter_map(|p| p.supervision.heartbeat_timeout_ms.or(p.supervision.request_timeout_ms))
            .max()
    }

    /// A loop that woke much later than it meant to (the manager was stopped, or the machine
    /// suspended) must not judge workers by stamps that went stale while it was away: it gives
    /// them one more full timeout (unicorn's guard; gunicorn issue 1440).
    fn guard_against_a_stall(&mut self, now: u64) {
        let Some(planned) = self.planned_wake.take() else { return };
        let Some(timeout) = self.longest_timeout() else { return };
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
    /// it) once a pool the start waits for cannot become ready.
    fn judge_start(&mut self, now: u64) {
        if self.stop.is_some() {
            return;
        }
        let mut failure = None;
        for pool in self.pools.values() {
            let Some((watch, last_reason)) = &pool.starting else { continue };
            let why = match supervise::start_verdict(watch, pool.limits.workers, now) {
                None => continue,
                Some(StartFailure::EveryWorkerDied) => format!(
                    "no worker could start: {} died before they were ready; the last {}",
                    watch.died_before_ready,
                    last_reason.as_deref().unwrap_or("gave no reason")
                ),
                Some(StartFailure::TimedOut) => {
                    let ready = self.views(pool.index).iter().filter(|w| matches!(w.phase, Phase::Idle | Phase::Busy)).count();
                    format!(
                        "the workers were not ready within start_timeout ({}): {ready} of {} accept; \
                         check the on_child hooks, or raise start_timeout",
                        daemon_config::format_duration(self.config.start_timeout),
                        pool.limits.workers
                    )
                }
            };
            let why = if self.pools.len() > 1 { format!("pool {}: {why}", pool.name) } else { why };
            failure = Some(why);
            break;
        }
        let Some(why) = failure else { return };
        for pool in self.pools.values_mut() {
            pool.starting = None;
        }
        error!("start failed: {why}");
        if self.speaks() {
            notify::status(&format!("start failed: {why}"));
        }
        self.exit_code = 1;
        self.start_failed = Some(why);
        self.begin_stop(StopKind::Fast, "the start failed");
    }

    /// A pool removed by a reload goes once its last worker has.
    fn drop_removed_pools(&mut self) {
        let gone: Vec<usize> = self
            .pools
            .values()
            .filter(|p| p.removed && !self.procs.iter().any(|w| w.pool == p.index))
            .map(|p| p.index)
            .collect();
        for i in gone {
            if let Some(p) = self.pools.remove(&i) {
                info!(pool = %p.name, "task group stopped and removed");
            }
        }
    }

    /// Takes over the processes the program registered with `daemon::foreign_child`.
    fn adopt_foreign(&mut self) {
        for pid in crate::foreign::take() {
            info!(pid, "watching a foreign child");
            self.procs.adopt(Pid::from_raw(pid), Foreign::default());
        }
        if self.stop.is_some() {
            self.stop_foreign(monotonic_ms());
        }
    }

    /// While the daemon stops: the children that are not the manager's own (processes its
    /// workers left behind, re-parented to it) join the foreign children, which get TERM, then
    /// KILL after graceful_timeout. Returns how many it found.
    fn adopt_orphans(&mut self) -> usize {
        let upgrade = self.upgrade.as_ref().map(|u| u.child);
        let orphans: Vec<Pid> = crate::sys::proc::children()
            .into_iter()
            .map(Pid::from_raw)
            .filter(|&pid| Some(pid) != upgrade && !self.procs.knows(pid))
            .collect();
        for &pid in &orphans {
            info!(pid = pid.as_raw(), "a process a worker left behind: stopped with the daemon");
            self.procs.adopt(pid, Foreign::default());
        }
        orphans.len()
    }

    /// While the daemon stops: TERM to every foreign child not sent it yet; KILL comes after
    /// graceful_timeout (`climb_ladders`).
    fn stop_foreign(&mut self, now: u64) {
        let kill_at = now.saturating_add(ms(self.config.graceful_timeout));
        for (pid, child) in self.procs.foreign_mut() {
            if child.kill_at_ms.is_none() {
                send(pid, Signal::SIGTERM);
                child.kill_at_ms = Some(kill_at);
            }
        }
    }

    fn feed_watchdog(&mut self, now: u64) {
        if let Some((every, due)) = self.watchdog {
            if now >= due {
                if self.speaks() {
                    notify::watchdog();
                }
                self.watchdog = Some((every, now + every));
            }
        }
    }

    /// The workers of pool `index`, as the spare policy sees them.
    fn views(&self, index: usize) -> Vec<WorkerView> {
        // While a new generation starts, the old one serves on beside it, outside the policy's
        // view: the policy forks the new generation as if the pool were empty.
        let generation = self.pools.get(&index).map_or(0, |p| p.generation);
        self.procs
            .iter()
            .filter(|p| p.pool == index && !(p.generation < generation && p.stopping.is_none()))
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

    /// Keeps every pool at its size. Returns when to look again, if there is a reason to.
    fn manage(&mut self, now: u64) -> Option<u64> {
        // Backed out: the workers retire and none is forked until HUP.
        if self.backed_out {
            return None;
        }
        let indexes: Vec<usize> = self.pools.keys().copied().collect();
        let mut next = None::<u64>;
        let mut counts = policy::Counts::default();
        let held = self.singletons_held();
        for i in indexes {
            // A supervised worker or a task group's would run beside the old manager's own.
            if held && self.pools.get(&i).is_some_and(|p| p.kind.singleton()) {
                continue;
            }
            let (at, c) = self.manage_pool(i, now);
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            counts.live += c.live;
            counts.pool += c.pool;
            counts.spares += c.spares;
            counts.busy += c.busy;
        }
        self.report_ready();
        self.tell_status(counts);
        next
    }

    fn manage_pool(&mut self, i: usize, now: u64) -> (Option<u64>, policy::Counts) {
        let views = self.views(i);
        let c = policy::count(&views);
        let Some(pool) = self.pools.get_mut(&i) else { return (None, c) };
        if pool.removed {
            return (None, c);
        }
        if pool.waiting_for_pool {
            let ready = views.iter().filter(|w| matches!(w.phase, Phase::Idle | Phase::Busy)).count();
            if let Some((watch, _)) = pool.starting.as_mut() {
                watch.any_ready |= ready > 0;
            }
            if ready >= pool.limits.workers as usize {
                pool.waiting_for_pool = false;
                pool.starting = None;
                self.board.announce_ready(i, false);
                let (name, generation) = (pool.name.clone(), pool.generation);
                let what = if pool.kind.serves() { "pool ready: every worker accepts" } else { "pool ready: every worker runs" };
                info!(pool = %name, generation, workers = ready, scoreboard = %self.letters(i), "{what}");
                self.retire_older_generations(i, generation, now);
            }
        }
        self.watch_saturation(i, &c, now);
        let healthy_at = self.notice_health(i, now);
        let Some(pool) = self.pools.get_mut(&i) else { return (None, c) };
        let mut fork_again = None;
        let mut recheck = None;
        let mut spawn = 0;
        let mut retire = None;
        match pool.kind.clone() {
            // Its children come with connections (see `accept_postfork`); after a crash, the
            // listeners wait out the backoff.
            Kind::Postfork => {
                let at = pool.restarts.not_before();
                if now < at {
                    recheck = Some(at);
                }
            }
            Kind::Supervised => {
                if c.live == 0 {
                    let at = pool.next_ms.max(pool.restarts.not_before());
                    if now >= at {
                        spawn = 1;
                    } else {
                        recheck = Some(at);
                    }
                }
            }
            Kind::Prefork => {
                let plan = policy::plan(&views, &pool.limits, now, pool.last_retire_ms);
                (spawn, retire, recheck) = (plan.spawn, plan.retire, plan.recheck_at);
            }
            Kind::Task(g) => {
                let plan = policy::plan(&views, &pool.limits, now, pool.last_retire_ms);
                let below_floor = c.pool < pool.limits.workers;
                if g.model == TaskModel::OneShot && !below_floor {
                    // Grown and shrunk at its scaling interval only, by one at a time.
                    if now >= pool.next_ms {
                        pool.next_ms = now.saturating_add(ms(g.scaling_interval));
                        (spawn, retire) = (plan.spawn.min(1), plan.retire);
                    }
                    recheck = Some(pool.next_ms);
                } else {
                    (spawn, retire) = (plan.spawn, plan.retire);
                }
            }
        }
        if let Some(slot) = retire {
            info!(pool = %pool.name, slot, "retiring a surplus spare");
            pool.last_retire_ms = Some(now);
            self.stop_worker(slot, Rung::Quit, Why::Retire, now);
        }
        if spawn > 0 {
            let not_before = self.pools.get(&i).map_or(0, |p| p.restarts.not_before());
            if now < not_before {
                fork_again = Some(not_before);
            } else {
                for _ in 0..spawn {
                    if !self.spawn(i, now, None) {
                        // A failed fork waits for its backoff: look again then, not never.
                        fork_again = self.pools.get(&i).map(|p| p.restarts.not_before());
                        break;
                    }
                }
            }
        }
        ([recheck, fork_again, healthy_at].into_iter().flatten().min(), c)
    }

    /// Once every pool the start waits for is ready: the detach's verdict, systemd's READY=1, and
    /// the on_ready hooks. After a reload, READY=1 again.
    fn report_ready(&mut self) {
        // The first time, only the pools the start waits for; after a reload, every pool.
        let held = self.singletons_held();
        let waiting = self
            .pools
            .values()
            .filter(|p| !(held && p.kind.singleton()))
            .any(|p| p.waiting_for_pool && !p.removed && (p.primary || self.ready_reported));
        if waiting || (self.ready_reported && !self.reloading) {
            return;
        }
        let first = !self.ready_reported;
        self.ready_reported = true;
        let addrs: Vec<String> = self.listeners.iter().map(|l| l.addr.to_string()).collect();
        if first {
            if let Some(own) = self.own.as_mut() {
                own.housework.readiness.ready();
            }
            let workers = self.procs.len();
            // After an upgrade, this manager is the service's main process now.
            if self.upgraded_from.is_some() {
                notify::main_pid(self.pid.as_raw() as u32);
            }
            notify::ready(&format!("{workers} workers{}", if addrs.is_empty() { String::new() } else { format!(" accepting on {}", addrs.join(",")) }));
            self.hooks.on_ready();
        } else if self.reloading {
            self.reloading = false;
            if self.speaks() {
                notify::ready("reloaded");
            }
        }
    }

    /// STATUS= for systemd, when it listens and something changed.
    fn tell_status(&mut self, c: policy::Counts) {
        if !notify::enabled() || !self.speaks() {
            return;
        }
        let looping: Vec<&str> = self.pools.values().filter(|p| p.restarts.in_crash_loop()).map(|p| p.name.as_str()).collect();
        let text = if looping.is_empty() {
            format!("{} busy, {} idle, {} workers", c.busy, c.spares, c.pool)
        } else {
            format!(
                "crash loop in {}: workers die soon after they start; forking one each {}s; {} workers",
                looping.join(", "),
                supervise::BACKOFF_MAX_MS / 1000,
                c.pool
            )
        };
        if self.told_status.as_deref() != Some(&text) {
            notify::status(&text);
            self.told_status = Some(text);
        }
    }

    /// Says once per episode that every worker of a serving pool is busy and no more may be
    /// forked (Apache's "server reached MaxRequestWorkers"), and when it is over.
    fn watch_saturation(&mut self, i: usize, c: &policy::Counts, now: u64) {
        let clients = self.config.clients;
        let Some(pool) = self.pools.get_mut(&i) else { return };
        let saturated = match pool.kind {
            Kind::Prefork => c.spares == 0 && c.live >= pool.limits.max_children && c.busy > 0,
            Kind::Postfork => c.live >= pool.limits.max_children,
            _ => false,
        };
        self.board.set_saturated(i, saturated);
        match (saturated, pool.saturated_since) {
            // A pool that keeps reaching its limit says so once per window, not per connection.
            (true, None) if now.saturating_sub(pool.saturation_told_ms) < exits::WINDOW_MS && pool.saturation_told_ms > 0 => {
                pool.saturated_since = Some(now);
            }
            (true, None) => {
                pool.saturation_told_ms = now;
                warn!(
                    pool = %pool.name,
                    busy = c.busy,
                    max_children = pool.limits.max_children,
                    clients,
                    "the pool is saturated: every worker is busy and max_children is reached; \
                     new connections wait in the listen queue (raise max_children or clients)"
                );
                pool.saturated_since = Some(now);
            }
            (false, Some(since)) => {
                if since == pool.saturation_told_ms {
                    info!(pool = %pool.name, lasted_ms = now.saturating_sub(since), "the pool is no longer saturated");
                }
                pool.saturated_since = None;
            }
            _ => {}
        }
    }

    /// Pool `i`'s state letters, one per worker, in slot order.
    fn letters(&self, i: usize) -> String {
        crate::scoreboard::letters(&self.board, self.procs.iter().filter(|p| p.pool == i).map(|p| p.slot))
    }

    /// Deadlines that are not the pools': foreign children's kills, the watchdog, a failing
    /// start, the control channel's clients, the exit log's window.
    fn other_deadlines(&self) -> Option<u64> {
        let foreign = self.procs.foreign_deadline();
        let watchdog = self.watchdog.map(|(_, due)| due);
        let start = self.pools.values().filter_map(|p| p.starting.as_ref().map(|(w, _)| w.deadline_ms));
        let control = self.own.as_ref().and_then(|o| o.channel.as_ref()).and_then(Channel::deadline);
        let upgrade = self.upgrade_deadline();
        // Held singletons start once the old manager is gone: look for that now and then.
        let held = self.singletons_held().then(|| monotonic_ms().saturating_add(100));
        let metrics = self.own.as_ref().and_then(|o| o.metrics.as_ref()).and_then(|m| m.deadline());
        foreign.into_iter().chain(watchdog).chain(start).chain(control).chain(self.exits.deadline()).chain(upgrade).chain(metrics).chain(held).min()
    }

    /// Whether the post-forking pool may take a connection now: below max_children, and no stop.
    fn accepting(&self) -> bool {
        self.stop.is_none()
            && !self.backed_out
            && self.pools.get(&0).is_some_and(|p| {
                p.kind == Kind::Postfork
                    && monotonic_ms() >= p.restarts.not_before()
                    && self.procs.iter().filter(|w| w.pool == 0).count() < p.limits.max_children as usize
            })
    }

    /// Sleeps until a signal, a wake-up from a worker, a control client, a connection for the
    /// post-forking pool, or the deadline.
    fn wait(&mut self, deadline: Option<u64>) {
        self.planned_wake = deadline;
        if self.stop.is_some() {
            self.board.judging_nobody();
        } else {
            self.board.sleeping_until(deadline);
        }
        let accepting = self.accepting();
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
        // At max_children the listeners are left out: connections wait in their backlog (POE's
        // daemon_pause), and are taken again below it (daemon_accept).
        let listening = if accepting { self.listeners.len() } else { 0 };
        for l in self.listeners.iter().take(listening) {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        let verdict = self.verdict_fd();
        let verdict_at = fds.len();
        if let Some(fd) = verdict {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let metrics_at = fds.len();
        if let Some(m) = own.metrics.as_ref() {
            for (fd, writing) in m.poll_fds() {
                fds.push(PollFd::new(fd, if writing { PollFlags::POLLOUT } else { PollFlags::POLLIN }));
            }
        }
        let control_at = fds.len();
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
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let connections: Vec<usize> = fds[2..2 + listening].iter().enumerate().filter(|(_, f)| ready(f)).map(|(i, _)| i).collect();
        let said = verdict.is_some() && fds.get(verdict_at).is_some_and(ready);
        let asked = fds[control_at..].iter().any(ready);
        let scraped = fds[metrics_at..control_at].iter().any(ready);
        drop(fds);
        if said {
            self.read_verdict();
        }
        if scraped || self.own.as_ref().and_then(|o| o.metrics.as_ref()).and_then(|m| m.deadline()).is_some() {
            self.serve_metrics();
        }
        if !connections.is_empty() {
            self.accept_postfork(&connections);
        }
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

    /// The post-forking pool: takes connections from the ready listeners while there is room,
    /// and forks a child for each.
    fn accept_postfork(&mut self, ready: &[usize]) {
        let now = monotonic_ms();
        for &i in ready {
            while self.accepting() {
                let Some(listener) = self.listeners.get(i) else { break };
                let stream = match crate::worker::accept_one(listener.as_fd()) {
                    Ok(Some(s)) => s,
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        break;
                    }
                };
                if !self.spawn(0, now, Some(stream)) {
                    break;
                }
            }
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
            Request::Upgrade { hold } => match self.start_upgrade(hold) {
                Ok(child) => serde_json::json!({ "new_pid": child.as_raw(), "hold": hold }),
                Err(why) => {
                    warn!("upgrade: {why}; nothing started");
                    serde_json::json!({ "why": why })
                }
            },
            Request::Backout => {
                self.back_out("asked by the control channel");
                serde_json::json!({ "backed_out": self.backed_out })
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
            Signal::SIGTTIN => self.grow_by_one(),
            Signal::SIGTTOU => self.shrink_by_one(),
            Signal::SIGHUP => {
                self.reopen_logs();
                let _ = self.reload();
            }
            Signal::SIGUSR1 => self.reopen_logs(),
            Signal::SIGUSR2 => {
                if let Err(why) = self.start_upgrade(false) {
                    warn!("USR2: {why}; nothing started");
                }
            }
            Signal::SIGWINCH => self.on_winch(),
            other => warn!(signal = %other, "this version of the manager does not act on this signal; ignored"),
        }
    }

    /// The pool TTIN and TTOU act on: the pre-forking pool's floor.
    fn prefork(&mut self) -> Option<&mut Pool> {
        self.pools.get_mut(&0).filter(|p| p.kind == Kind::Prefork)
    }

    fn grow_by_one(&mut self) {
        if self.stop.is_some() {
            return;
        }
        let Some(pool) = self.prefork() else {
            warn!("TTIN: there is no pre-forking pool to grow");
            return;
        };
        let l = &mut pool.limits;
        if l.workers < l.max_children {
            l.workers += 1;
            info!(workers = l.workers, "TTIN: one worker more");
        } else {
            warn!(max_children = l.max_children, "TTIN: the pool is at max_children already");
        }
    }

    fn shrink_by_one(&mut self) {
        if self.stop.is_some() {
            return;
        }
        let Some(pool) = self.prefork() else {
            warn!("TTOU: there is no pre-forking pool to shrink");
            return;
        };
        if pool.limits.workers <= 1 {
            warn!("TTOU: the pool is at one worker already");
            return;
        }
        pool.limits.workers -= 1;
        let limits = pool.limits;
        let mut views = self.views(0);
        let Some(slot) = policy::pick_retiree(&views) else { return };
        // If min_spare would fork a replacement at once, lowering the floor is all TTOU can do.
        if let Some(v) = views.iter_mut().find(|v| v.slot == slot) {
            v.phase = Phase::Exiting;
        }
        let now = monotonic_ms();
        if policy::plan(&views, &limits, now, None).spawn > 0 {
            info!(workers = limits.workers, "TTOU: floor lowered; min_spare keeps the current workers");
            return;
        }
        info!(workers = limits.workers, slot, "TTOU: one worker fewer");
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

    /// HUP: read the config file again; if it is good, apply it: a new generation of workers
    /// replaces the old one in the serving and supervised pools, as it finishes its work; task
    /// groups follow the file (Symphony's create_task_groups): a new group starts, a removed one
    /// stops gracefully, a resized one is resized, a changed one restarts its workers. A bad file
    /// changes nothing.
    fn reload(&mut self) -> Result<(), Vec<String>> {
        if self.stop.is_some() {
            return Err(vec!["the daemon is stopping".to_string()]);
        }
        if self.backed_out {
            info!("HUP: backed in: workers start again");
            self.backed_out = false;
        }
        if self.speaks() {
            notify::reloading();
        }
        let resolved = match self.layers.resolve_all() {
            Ok(r) => r,
            Err(problems) => {
                for p in &problems {
                    error!("{p}");
                }
                error!(problems = problems.len(), "HUP: the new configuration is refused; the running one stays");
                if self.speaks() {
                    notify::ready("reload refused; running configuration kept");
                }
                return Err(problems);
            }
        };
        // The program's own settings: the new generation of workers is forked with them.
        if let Some(app) = &resolved.app {
            crate::app::set_current(app.value.clone());
        }
        // Settings that need a restart keep their running value, in the manager and in every
        // worker of the new generation alike.
        let mut new = resolved.config;
        for (key, wanted) in new.keep_restart_settings(&self.config) {
            warn!(
                key = %setting(key).name,
                running = %self.config.value(key),
                wanted = %wanted,
                "HUP: this setting changed, but only a restart can apply it; the running value stays"
            );
        }
        self.config = new;
        self.reloading = true;
        let now = monotonic_ms();
        let indexes: Vec<usize> = self.pools.keys().copied().collect();
        for i in indexes {
            let Some(pool) = self.pools.get_mut(&i) else { continue };
            pool.reconfigure(&self.config);
            if matches!(pool.kind, Kind::Prefork | Kind::Postfork | Kind::Supervised) {
                let l = pool.limits;
                self.board.publish(i, l.min_spare, l.max_spare, &pool.supervision);
                self.new_generation(i, now);
            }
        }
        self.regroup(resolved.groups, now);
        info!("HUP: configuration applied");
        self.hooks.on_reload();
        Ok(())
    }

    /// Task groups after a reload.
    fn regroup(&mut self, groups: Vec<GroupConfig>, now: u64) {
        let running: Vec<(usize, GroupConfig)> =
            self.pools.values().filter(|p| !p.removed).filter_map(|p| p.group().map(|g| (p.index, g.clone()))).collect();
        for (i, old) in &running {
            match groups.iter().find(|g| g.name == old.name && g.workers > 0) {
                None => {
                    info!(group = %old.name, "HUP: task group removed; stopping its workers gracefully");
                    if let Some(p) = self.pools.get_mut(i) {
                        p.removed = true;
                    }
                    let slots: Vec<usize> = self.procs.iter().filter(|w| w.pool == *i).map(|w| w.slot).collect();
                    for slot in slots {
                        self.stop_worker(slot, Rung::Quit, Why::Retire, now);
                    }
                }
                Some(new) if new == old => {}
                Some(new) => {
                    let changed = new.run != old.run || new.model != old.model || new.scaling_interval != old.scaling_interval;
                    let config = self.config.clone();
                    if let Some(p) = self.pools.get_mut(i) {
                        p.regroup(new.clone(), &config);
                    }
                    if changed {
                        info!(group = %new.name, "HUP: task group changed; restarting its workers");
                        self.new_generation(*i, now);
                    } else {
                        info!(group = %new.name, workers = new.workers, max_workers = new.max_workers, "HUP: task group resized");
                    }
                }
            }
        }
        for g in groups.into_iter().filter(|g| g.workers > 0) {
            if running.iter().any(|(_, old)| old.name == g.name) {
                continue;
            }
            let Some(i) = (0..crate::scoreboard::POOLS).find(|i| !self.pools.contains_key(i)) else {
                error!(group = %g.name, "HUP: no room for another pool on the scoreboard; the group does not start");
                continue;
            };
            info!(group = %g.name, workers = g.workers, "HUP: task group added; starting it");
            let name = g.name.clone();
            let mut pool = Pool::new(i, &name, Kind::Task(g), &self.config, true, now);
            pool.starting = None;
            pool.primary = false;
            self.board.publish(i, pool.limits.min_spare, pool.limits.max_spare, &pool.supervision);
            self.board.announce_ready(i, true);
            self.pools.insert(i, pool);
        }
    }

    /// A new generation of pool `i`'s workers replaces the old one, which finishes its work first.
    /// In a pre-forked pool the old generation serves on until every new worker is ready (a new
    /// generation that cannot start leaves the old one serving); in the others, where two
    /// generations at once could run one job twice, the old one stops at once.
    fn new_generation(&mut self, i: usize, now: u64) {
        let Some(pool) = self.pools.get_mut(&i) else { return };
        pool.generation += 1;
        pool.waiting_for_pool = pool.kind != Kind::Postfork;
        pool.next_ms = 0;
        let (generation, overlap) = (pool.generation, pool.kind == Kind::Prefork);
        self.board.announce_ready(i, true);
        if overlap {
            info!(pool = %pool.name, generation, workers = pool.limits.workers, "new generation: starting it; the old one serves until it is ready");
            // Of a generation that a quicker HUP made old before it was ready, the workers still
            // starting serve nobody: they end now, so a burst of HUPs does not pile them up.
            let starting: Vec<usize> = self
                .procs
                .iter()
                .filter(|p| p.pool == i && p.stopping.is_none() && p.generation < generation)
                .filter(|p| self.board.view(p.slot).state.before_ready())
                .map(|p| p.slot)
                .collect();
            for slot in starting {
                self.stop_worker(slot, Rung::Term, Why::Retire, now);
            }
        } else {
            info!(pool = %pool.name, generation, workers = pool.limits.workers, "new generation: replacing every worker");
            self.retire_older_generations(i, generation, now);
        }
    }

    /// Stops, gracefully, every worker of pool `i` older than `generation`.
    fn retire_older_generations(&mut self, i: usize, generation: u32, now: u64) {
        let old: Vec<usize> = self
            .procs
            .iter()
            .filter(|p| p.pool == i && p.stopping.is_none() && p.generation < generation)
            .map(|p| p.slot)
            .collect();
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
        if self.upgrade.as_ref().is_some_and(|u| u.state == upgrade::State::Starting) {
            self.roll_back_for_stop();
        }
        if self.stop.is_none() && self.speaks() {
            notify::stopping();
        }
        self.stop = Some(kind);
        let now = monotonic_ms();
        self.adopt_orphans();
        self.stop_foreign(now);
        let slots: Vec<usize> = self.procs.slots().collect();
        for slot in slots {
            // A worker not ready yet holds no connection: a graceful stop has nothing to wait
            // for (an on_child hook that sleeps would hold the stop for graceful_timeout).
            let starting = self.board.view(slot).state.before_ready();
            let rung = if starting { Rung::Term } else { rung };
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
        match self.procs.reap(pid) {
            Some(Gone::Worker(proc)) => self.on_death(proc, status),
            Some(Gone::Foreign) => info!(pid = pid.as_raw(), ?status, "foreign child exited"),
            None if self.upgrade_child_exited(pid, status) => {}
            None => debug!(pid = pid.as_raw(), ?status, "reaped a process that was not a worker (an orphan)"),
        }
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
