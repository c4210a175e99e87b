//! The manager's core: every decision the manager makes, as a state machine that does no I/O and
//! reads no clock (quinn-proto's shape). The driver (`manager/mod.rs`) feeds it events (a child
//! exited, a fork worked or failed, a signal, a worker's wake-up, a configuration resolved, what
//! an upgrade's new manager said, the old manager gone) with the time, and a read-only view of
//! the scoreboard; the core answers with commands (fork, signal a pid, write the board, tell
//! systemd or the starter, run a hook, move the pid file, start an upgrade) that the driver
//! carries out in order, and with the time it next needs to look (`poll_timeout`).
//!
//! Nothing here touches a descriptor, a process or the clock: the simulator in the test suite
//! (`tests/simulation.rs`, through `crate::__sim`) drives this same code through seeded random
//! histories in virtual time. Logging stays inline.
//!
//! | events in | commands out |
//! |---|---|
//! | `Tick` (look now), `Woken` (a worker's wake-up) | `Fork { pool, slot, generation, job }` |
//! | `Forked { slot, pid }`, `ForkFailed { slot, error }` | `Signal { pid, sig }` |
//! | `Exited { pid, status }` | `Board(..)`: prepare, clear, publish, announce, saturated |
//! | `Signal(sig)` | `Notify(..)`: READY, RELOADING, STOPPING, STATUS, MAINPID, WATCHDOG |
//! | `Reload(resolved or refused)`, `LogsReopened` | `Ready`, `StartFailed(why)` (to the starter) |
//! | `Accepted` (post-forking: a connection in hand) | `Hook(..)`: on_ready, on_spawn, on_reap, on_reload, on_exit |
//! | `UpgradeStarted`, `UpgradeSaid`, `OldManagerGone` | `PidFile(..)`, `StartUpgrade`, `ReopenLogs`, `ProgramSettings` |
//! | `Foreign(pid)`, `Orphans(pids)` | `Plain(..)` (the plain daemon's body), `ListChildren` |
//! | requests: `status`, `stop`, `reload`, `backout` (answered) | |

pub(crate) mod exits;
mod pools;
pub(crate) mod procs;
mod queue;
#[cfg(test)]
mod sim;
mod status;
mod supervision;
mod upgrade;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use daemon_config::{setting, Config, GroupConfig};
use tracing::{error, info, warn};

use crate::pool::supervise::{self, Ladder, Rung, Settings, Verdict};
use crate::pool::{Kind, Pool};
use crate::scoreboard::{SlotView, Work};
use crate::sources::Resolved;

pub(crate) use exits::ExitLog;
use procs::{Foreign, Gone, Procs, Stopping, Why};
pub(crate) use upgrade::{Outcome, UpgradeState};

/// The exit status of a manager that stopped, but had to kill a worker (or a foreign child)
/// that did not stop in time.
pub(crate) const EXIT_HAD_TO_KILL: i32 = 3;

/// How far behind the manager's clock a worker's (coarse) stamp may be.
const COARSE_SLACK_MS: u64 = 50;

/// A process id, as the core knows it (the system's, by value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pid(pub i32);

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The signals the manager sends and acts on; the driver maps them to the system's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sig {
    Hup,
    Int,
    Quit,
    Kill,
    Usr1,
    Usr2,
    Term,
    Chld,
    Winch,
    Ttin,
    Ttou,
    /// Any other, by name.
    Other(&'static str),
}

impl Sig {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Sig::Hup => "SIGHUP",
            Sig::Int => "SIGINT",
            Sig::Quit => "SIGQUIT",
            Sig::Kill => "SIGKILL",
            Sig::Usr1 => "SIGUSR1",
            Sig::Usr2 => "SIGUSR2",
            Sig::Term => "SIGTERM",
            Sig::Chld => "SIGCHLD",
            Sig::Winch => "SIGWINCH",
            Sig::Ttin => "SIGTTIN",
            Sig::Ttou => "SIGTTOU",
            Sig::Other(name) => name,
        }
    }
}

/// How a child ended, as waitpid said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    Exited(i32),
    /// Ended by `sig`, whose number is `number`; `fault`: a signal that means the process broke
    /// itself (SEGV, BUS, ILL, FPE, ABRT, SYS, TRAP), as the driver tells.
    Signaled { sig: Sig, number: i32, fault: bool },
}

impl ExitStatus {
    /// As people read it.
    pub(crate) fn describe(&self) -> String {
        match self {
            ExitStatus::Exited(code) => format!("exit status {code}"),
            ExitStatus::Signaled { sig, .. } => format!("killed by {}", sig.name()),
        }
    }
}

/// Why a fork failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ForkError {
    /// EAGAIN or ENOMEM: out of processes or memory, for now.
    Again(&'static str),
    /// Anything else.
    Other(&'static str),
}

/// What a forked worker does, for the driver to set it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Job {
    /// Accept on the listeners (the pre-forked pool).
    Accept,
    /// Serve the connection the driver holds (the post-forking pool).
    Connection,
    /// The supervised function.
    Supervised,
    /// A task group's function.
    Task { group: String, run: String },
}

/// What the core reads of the scoreboard.
pub(crate) trait Board {
    fn view(&self, slot: usize) -> SlotView;
    /// What a worker said when it gave up.
    fn note(&self, slot: usize) -> Option<String>;
    /// What a worker serves, as its handler described it.
    fn request_label(&self, slot: usize) -> Option<String>;
    /// How many times workers woke the manager.
    fn wakes(&self) -> u64;
    /// A worker's work so far (busy time, requests), its current busy stretch counted to now.
    fn work(&self, _slot: usize) -> Work {
        Work::default()
    }
}

/// A write to the scoreboard, carried out by the driver in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BoardWrite {
    /// A slot about to be forked into.
    Prepare { slot: usize, generation: u32 },
    /// The forked worker's pid.
    Pid { slot: usize, pid: Pid },
    /// A worker of `pool` is gone: its slot is free.
    Clear { pool: usize, slot: usize },
    /// A pool's thresholds and rules, which its workers go by to wake the manager.
    Publish { pool: usize, min_spare: u32, max_spare: u32, rules: Settings, accept_cap: u32 },
    /// Whether the manager wants to hear of every worker of `pool` that becomes ready.
    AnnounceReady { pool: usize, on: bool },
    Saturated { pool: usize, on: bool },
}

/// A message to systemd (sent only when it listens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notify {
    Ready(String),
    Reloading,
    Stopping,
    Status(String),
    MainPid(Pid),
    Watchdog,
}

/// A manager hook to run.
#[derive(Clone, Debug)]
pub(crate) enum Hook {
    Ready,
    Spawn(crate::hooks::Spawned),
    Reap(crate::hooks::Reaped),
    Reload,
    Exit,
}

/// What to do with the pid file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PidFileOp {
    /// After an upgrade's new manager is gone: take the configured name back, unless the file
    /// there names a process other than it (`new`) and this manager.
    TakeBack { new: Pid },
    /// The manager exits: remove it.
    Remove,
}

/// What the plain daemon's body is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlainSays {
    Stop,
    Reload,
    /// A second stop request: the process exits at once.
    ExitNow,
}

/// What the core asks the driver to do.
#[derive(Clone, Debug)]
pub(crate) enum Command {
    Fork { pool: usize, slot: usize, generation: u32, job: Job },
    Signal { pid: Pid, sig: Sig },
    Board(BoardWrite),
    Notify(Notify),
    /// The start is ready: tell whoever waits for it (the detach's starter, an upgrading manager).
    Ready,
    /// The start failed, and the manager has cleaned up: tell whoever waits for it, last.
    StartFailed(String),
    Hook(Hook),
    PidFile(PidFileOp),
    /// USR2: start the program again; the driver answers `UpgradeStarted` or `UpgradeRefused`.
    StartUpgrade { hold: bool },
    /// Reopen the manager's log file; the driver answers `LogsReopened`.
    ReopenLogs,
    /// The program's own settings for the next generation of workers, before they fork.
    ProgramSettings(Arc<dyn std::any::Any + Send + Sync>),
    /// The plain daemon: tell the body.
    Plain(PlainSays),
    /// List the manager's children (to find what its workers left behind); the driver answers
    /// `Orphans`.
    ListChildren,
    /// The daemon stops for good: remove the Unix socket files it listened on.
    RemoveSocketFiles,
    /// The daemon stops: close this manager's copies of the listening sockets (the workers close
    /// theirs as they stop accepting), so a new client is refused at once, not left in a queue
    /// nobody will take from (nginx and gunicorn close theirs too).
    CloseListeners,
    /// Take the stack of every thread of a worker judged hung, and log it with `verdict`; the
    /// driver answers `StacksTaken` when it has them (or gave up waiting), and the worker's
    /// first rung waits for that, at most `stack::ANSWER_MS`.
    CaptureStacks { pid: Pid, slot: usize, pool: String, verdict: String },
    /// Sample every listener's accept queue; the driver answers `Queues`.
    MeasureQueues,
}

/// What happened, for the core.
#[derive(Debug)]
pub(crate) enum Event {
    /// Look now: the time moved, or something happened that the scoreboard shows.
    Tick,
    /// A worker wrote on the wake pipe (its change is on the scoreboard).
    Woken,
    Forked { slot: usize, pid: Pid },
    ForkFailed { slot: usize, error: ForkError },
    Exited { pid: Pid, status: ExitStatus },
    Signal(Sig),
    /// WINCH from a manager that has a controlling terminal: its resizes, not a back-out.
    WinchFromTerminal,
    /// A reload's configuration, from a fresh read of the file: resolved, or refused with reasons.
    Reload(Box<Result<Resolved, Vec<String>>>),
    /// The manager's log file was reopened (or could not be).
    LogsReopened(bool),
    /// The post-forking pool: the driver holds a connection it accepted.
    Accepted,
    /// A process the program handed over (`daemon::foreign_child`).
    Foreign(Pid),
    /// The manager's children that are not its own (processes its workers left behind), listed
    /// while the daemon stops.
    Orphans(Vec<Pid>),
    /// The driver started an upgrade's new manager.
    UpgradeStarted { child: Pid, hold: bool },
    /// What the new manager has said on its verdict pipe so far; `whole` once it is a verdict.
    UpgradeSaid { text: String, whole: bool },
    /// This manager's own old manager (it was started by an upgrade) is gone.
    OldManagerGone,
    /// The stacks of a worker judged hung are taken (or the wait for them is over): its held
    /// first rung goes now.
    StacksTaken { pid: Pid },
    /// Every listener's accept queue, as sampled now.
    Queues(Vec<crate::pool::backlog::Sample>),
}

/// A control request, answered by the core (`reload` comes with its configuration).
#[derive(Debug)]
pub(crate) enum Request {
    Status,
    Stop { graceful: bool },
    Reload(Box<Result<Resolved, Vec<String>>>),
    Backout,
    /// `dump` with no worker: the manager's own state.
    Dump,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopKind {
    /// QUIT: workers finish what they have.
    Graceful,
    /// TERM or INT: workers end now.
    Fast,
}

/// What the core knows of the program when it starts.
pub(crate) struct Start {
    pub config: Config,
    pub groups: Vec<GroupConfig>,
    /// The `on_accept` handler, if any: whether it is the classic (blocking) kind.
    pub serving: Option<bool>,
    pub supervised: bool,
    /// The listeners' addresses, for READY's text.
    pub addresses: Vec<String>,
    /// systemd's watchdog interval, if it asked for pings.
    pub watchdog_ms: Option<u64>,
    pub pid: Pid,
    pub package: crate::program::Package,
    /// The manager whose upgrade started this one, while it runs.
    pub upgraded_from: Option<Pid>,
    /// No worker hooks at all: `main`'s body is the daemon.
    pub plain: bool,
    /// The program's own settings, as text (name, value), if it has any.
    pub app: Option<Vec<(String, String)>>,
}

/// The manager's state and decisions.
pub(crate) struct Core {
    config: Config,
    /// Every pool, by its index (its header on the scoreboard).
    pub(super) pools: BTreeMap<usize, Pool>,
    pub(super) procs: Procs,
    commands: VecDeque<Command>,
    /// When the core needs to look again, from its last look.
    next_look: Option<u64>,
    addresses: Vec<String>,
    pid: Pid,
    package: crate::program::Package,
    plain: bool,
    /// Stop requests so far (a plain daemon's second one exits at once).
    stops_asked: u32,
    started_ms: u64,
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
    /// The driver has been asked for the manager's children once the workers are gone.
    orphans_asked: bool,
    /// When the daemon's stop began plus graceful_timeout: what is left behind after it (a
    /// process that starts another as it is stopped) gets KILL at once, so a stop ends.
    stop_deadline: Option<u64>,
    /// Told the driver it may exit.
    finished: bool,
    exits: ExitLog,
    /// A manager that was away (stopped, a suspended VM) for longer than a timeout gives every
    /// stamp taken before its return one more full timeout before it judges it.
    guard: supervise::Guard,
    /// When the last look meant to wake, to tell a wake on time from one that came late.
    planned_wake: Option<u64>,
    /// What the next look is for (`dump`).
    next_why: &'static str,
    /// When the next WATCHDOG=1 is due, if systemd asked for them.
    watchdog: Option<(u64, u64)>,
    /// The last STATUS= sent.
    told_status: Option<String>,
    upgrade: Option<UpgradeState>,
    last_upgrade: Option<Outcome>,
    /// The manager whose upgrade started this one, while it runs.
    upgraded_from: Option<Pid>,
    /// WINCH, `backout`, a held upgrade: no workers until HUP.
    pub(super) backed_out: bool,
    /// What the metrics count as workers come and go.
    pub(super) counters: Counters,
    /// The program's own settings as text, to tell a reload that changed them.
    app: Option<Vec<(String, String)>>,
    /// The listen queues: the last samples, and each listener's "full" episode.
    pub(super) queues: queue::Queues,
}

/// What the metrics count as workers come and go (the scoreboard has the rest).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Worker exits, by pool and cause.
    pub exits: BTreeMap<(String, &'static str), u64>,
    /// Requests served by workers that have exited, by pool (the live ones' are on the
    /// scoreboard).
    pub served: BTreeMap<String, u64>,
    /// Workers forked, by pool.
    pub spawned: BTreeMap<String, u64>,
    /// Hot upgrades, by outcome.
    pub upgrades: BTreeMap<&'static str, u64>,
    /// The work of workers that have exited (and the classic requests the manager cut), by
    /// pool: the live ones' is on the scoreboard.
    pub retired_work: BTreeMap<String, Work>,
    /// The totals last reported, by pool: a counter never reads lower than it did.
    pub seen_work: BTreeMap<String, Work>,
    /// Busy time and workers (not stopping) by pool, sampled at most every `BUSY_SAMPLE_MS`, for
    /// `status`'s last minute.
    pub busy_samples: VecDeque<(u64, BTreeMap<String, (u64, u32)>)>,
}

/// How often the busy totals are sampled for `status`, and how far back samples are kept.
const BUSY_SAMPLE_MS: u64 = 5_000;
const BUSY_WINDOW_MS: u64 = 60_000;

pub(crate) fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The signal of a rung.
pub(crate) fn signal_of(rung: Rung) -> Sig {
    match rung {
        Rung::Quit => Sig::Quit,
        Rung::Term => Sig::Term,
        Rung::Kill => Sig::Kill,
    }
}

impl Core {
    /// The pools of the program, the first generation not forked yet: the first `Tick` forks
    /// it. Fails for more task groups than the scoreboard has headers.
    pub(crate) fn new(start: Start, now: u64) -> Result<Core, String> {
        let Start { config, groups, serving, supervised, addresses, watchdog_ms, pid, package, upgraded_from, plain, app } = start;
        let mut pools = BTreeMap::new();
        if let Some(classic) = serving {
            let kind = if config.postfork { Kind::Postfork } else { Kind::Prefork };
            pools.insert(0, Pool::new(0, "main", kind, &config, classic, now));
        }
        if supervised {
            let i = pools.len();
            pools.insert(i, Pool::new(i, "supervised", Kind::Supervised, &config, true, now));
        }
        for group in groups.into_iter().filter(|g| g.workers > 0) {
            let i = pools.len();
            if i >= crate::scoreboard::POOLS {
                return Err(format!("more than {} pools: too many task groups", crate::scoreboard::POOLS));
            }
            let name = group.name.clone();
            pools.insert(i, Pool::new(i, &name, Kind::Task(group), &config, true, now));
        }
        // The start waits for the pool that serves, if there is one: a task group that cannot
        // start is a crash loop to report, not a reason to refuse the service.
        for pool in pools.values_mut() {
            if pool.kind == Kind::Postfork {
                // Children come with connections: nothing to wait for.
                pool.waiting_for_pool = false;
                pool.starting = None;
            }
            pool.primary = serving.is_none() || pool.index == 0;
            if !pool.primary {
                pool.starting = None;
            }
        }
        let mut core = Core {
            config,
            pools,
            procs: Procs::default(),
            commands: VecDeque::new(),
            next_look: Some(now),
            addresses,
            pid,
            package,
            plain,
            stops_asked: 0,
            started_ms: now,
            ready_reported: false,
            reloading: false,
            stop: None,
            exit_code: 0,
            start_failed: None,
            had_to_kill: false,
            orphans_asked: false,
            stop_deadline: None,
            finished: false,
            exits: ExitLog::default(),
            guard: supervise::Guard::NONE,
            planned_wake: None,
            next_why: "the first look",
            watchdog: watchdog_ms.map(|every| (every, now.saturating_add(every))),
            told_status: None,
            upgrade: None,
            last_upgrade: None,
            upgraded_from,
            backed_out: false,
            counters: Counters::default(),
            app,
            queues: queue::Queues::default(),
        };
        let publish: Vec<BoardWrite> = core.pools.values().flat_map(|p| [core.publish_of(p), BoardWrite::AnnounceReady { pool: p.index, on: true }]).collect();
        for w in publish {
            core.push(Command::Board(w));
        }
        for pool in core.pools.values() {
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
        }
        if core.plain {
            info!("plain daemon: main's body runs as the daemon");
            core.ready_reported = true;
            core.push(Command::Ready);
            core.push(Command::Notify(Notify::Ready("running".into())));
            core.push(Command::Hook(Hook::Ready));
        }
        Ok(core)
    }

    fn push(&mut self, command: Command) {
        self.commands.push_back(command);
    }

    /// The next command to carry out, in order.
    pub(crate) fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When the core needs the time next: a `Tick` then. `None`: only an event wakes it.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.next_look
    }

    /// Whether the manager has stopped: every worker gone, its exit told. The exit status.
    pub(crate) fn finished(&self) -> Option<i32> {
        self.finished.then_some(self.exit_code)
    }

    /// The configuration in force (a forked worker starts with it).
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The pool's capacity for a worker forked into it (connections at once).
    /// Each pool's work so far: its exited workers' and its live ones', never lower than
    /// reported before. Kept as the last seen; with `sample`, or every `BUSY_SAMPLE_MS`, the busy
    /// time joins the samples `status` measures the last minute by.
    pub(crate) fn sample_work(&mut self, now: u64, board: &dyn Board, force: bool) {
        let due = self.counters.busy_samples.back().map_or(true, |(at, _)| now >= at.saturating_add(BUSY_SAMPLE_MS));
        if !force && !due {
            return;
        }
        let mut totals: BTreeMap<String, Work> = BTreeMap::new();
        for pool in self.pools.values() {
            totals.insert(pool.name.clone(), self.counters.retired_work.get(&pool.name).copied().unwrap_or_default());
        }
        for p in self.procs.iter().filter(|p| p.pid.is_some()) {
            let Some(pool) = self.pools.get(&p.pool) else { continue };
            totals.entry(pool.name.clone()).or_default().add(&board.work(p.slot));
        }
        for (name, w) in totals.iter_mut() {
            if let Some(seen) = self.counters.seen_work.get(name) {
                *w = w.at_least(seen);
            }
        }
        self.counters.seen_work = totals;
        if due {
            let busy = self
                .counters
                .seen_work
                .iter()
                .map(|(n, w)| (n.clone(), (w.busy_ns, self.working(n))))
                .collect();
            self.counters.busy_samples.push_back((now, busy));
            // Keep one sample at least a window old, and nothing older than it.
            while self.counters.busy_samples.get(1).is_some_and(|(at, _)| now.saturating_sub(*at) >= BUSY_WINDOW_MS) {
                self.counters.busy_samples.pop_front();
            }
        }
    }

    /// A pool's busy time over about the last minute (from the oldest sample kept, at most a
    /// window and a sample old): the window in ms, the workers busy on average over it, and the
    /// pool's workers on average over it (the samples' and now's: a pool that shrank after a
    /// burst is not more than fully busy).
    pub(crate) fn recent_busy(&self, pool: &str, now: u64) -> Option<(u64, f64, f64)> {
        let (at, then) = self.counters.busy_samples.front()?;
        let window = now.saturating_sub(*at);
        if window == 0 {
            return None;
        }
        let before = then.get(pool).map_or(0, |(busy, _)| *busy);
        let busy = self.counters.seen_work.get(pool)?.busy_ns.saturating_sub(before);
        let counts: Vec<u32> = self.counters.busy_samples.iter().filter_map(|(_, s)| s.get(pool).map(|(_, n)| *n)).chain([self.working(pool)]).collect();
        let workers = f64::from(counts.iter().sum::<u32>()) / counts.len() as f64;
        Some((window, busy as f64 / (window as f64 * 1e6), workers))
    }

    /// A pool's workers that are not stopping.
    fn working(&self, pool: &str) -> u32 {
        let Some(index) = self.pools.values().find(|p| p.name == pool).map(|p| p.index) else { return 0 };
        self.procs.iter().filter(|p| p.pool == index && p.stopping.is_none()).count() as u32
    }

    /// A live worker, by slot or by pid: its pid, slot and pool's name (`dump`).
    pub(crate) fn worker(&self, slot: Option<u32>, pid: Option<i32>) -> Option<(Pid, usize, String)> {
        let p = self.procs.iter().find(|p| match (slot, pid) {
            (Some(s), _) => p.slot == s as usize,
            (None, Some(pid)) => p.pid == Some(Pid(pid)),
            (None, None) => false,
        })?;
        Some((p.pid?, p.slot, self.pools.get(&p.pool).map(|pool| pool.name.clone()).unwrap_or_default()))
    }

    /// Pool `pool`'s name and kind, as its workers' hooks see them.
    pub(crate) fn pool_of(&self, pool: usize) -> (&str, crate::child::PoolKind) {
        use crate::child::PoolKind;
        match self.pools.get(&pool) {
            Some(p) => (
                &p.name,
                match p.kind {
                    Kind::Prefork => PoolKind::Prefork,
                    Kind::Postfork => PoolKind::Postfork,
                    Kind::Supervised => PoolKind::Supervised,
                    Kind::Task(_) => PoolKind::Task,
                },
            ),
            None => ("", PoolKind::Task),
        }
    }

    pub(crate) fn capacity(&self, pool: usize) -> u32 {
        match self.pools.get(&pool).map(|p| &p.kind) {
            Some(Kind::Prefork) => self.config.clients,
            _ => 1,
        }
    }

    /// What happened. The commands it leads to are queued (`poll_command`). Only `Tick` looks at
    /// the whole (verdicts, ladders, the pools' sizes): a driver gives the core everything a
    /// wake-up brought (the reaped children first), then one `Tick`. Any other event asks for a
    /// look now (`poll_timeout`).
    pub(crate) fn handle(&mut self, now: u64, board: &dyn Board, event: Event) {
        let tick = matches!(event, Event::Tick);
        match event {
            Event::Tick | Event::Woken => {}
            Event::Forked { slot, pid } => self.forked(slot, pid, now),
            Event::ForkFailed { slot, error } => self.fork_failed(slot, error, now),
            Event::Exited { pid, status } => self.exited(pid, status, board, now),
            Event::Signal(sig) => self.on_signal(sig, board, now),
            Event::WinchFromTerminal => {
                warn!("WINCH ignored: this manager has a controlling terminal, whose resizes send WINCH (use `backout`)");
            }
            Event::Reload(resolved) => {
                let _ = self.reload(*resolved, board, now);
            }
            Event::LogsReopened(ok) => {
                if ok {
                    let pids: Vec<Pid> = self.procs.iter().filter_map(|p| p.pid).collect();
                    for pid in pids {
                        self.push(Command::Signal { pid, sig: Sig::Usr1 });
                    }
                }
            }
            Event::Accepted => self.accepted(now),
            Event::Foreign(pid) => {
                info!(pid = pid.0, "watching a foreign child");
                self.procs.adopt(pid, Foreign::default());
                if self.stop.is_some() {
                    self.stop_foreign(now);
                }
            }
            Event::Orphans(pids) => self.orphans(pids, now),
            Event::UpgradeStarted { child, hold } => self.upgrade_started(child, hold, now),
            Event::UpgradeSaid { text, whole } => self.upgrade_said(text, whole, board, now),
            Event::OldManagerGone => {
                if let Some(old) = self.upgraded_from.take() {
                    info!(old_manager = old.0, "the old manager is gone");
                }
            }
            Event::Queues(samples) => self.queues_heard(samples, now),
            Event::StacksTaken { pid } => {
                // The held first rung goes now; the ladder counts from here.
                let released = self.procs.iter_mut().find(|p| p.pid == Some(pid)).and_then(|p| p.stopping.as_mut()).and_then(|s| {
                    s.held_until.take()?;
                    s.ladder.at_ms = now;
                    Some(signal_of(s.ladder.rung))
                });
                if let Some(sig) = released {
                    self.push(Command::Signal { pid, sig });
                }
            }
        }
        if tick {
            self.look(now, board);
        } else if !self.finished {
            self.next_look = Some(now);
        }
    }

    /// A control request, and its answer. Every answer names this manager (pid and package),
    /// which the client checks.
    pub(crate) fn request(&mut self, now: u64, board: &dyn Board, request: Request) -> serde_json::Value {
        let mut answer = match request {
            Request::Status => {
                self.sample_work(now, board, true);
                return self.snapshot(now, board);
            }
            Request::Dump => self.dump(now, board),
            Request::Stop { graceful } => {
                let kind = if graceful { StopKind::Graceful } else { StopKind::Fast };
                self.begin_stop(kind, "asked by the control channel", board, now);
                // The longest the stop can take here, for a client whose own settings may say
                // less (it waits by this manager's, not by its own).
                let graceful = self.pools.values().map(|p| p.supervision.graceful_ms).chain([ms(self.config.graceful_timeout)]).max();
                serde_json::json!({ "stopping": true, "graceful_timeout_ms": graceful })
            }
            Request::Reload(resolved) => {
                self.push(Command::ReopenLogs);
                match self.reload(*resolved, board, now) {
                    Ok(()) => serde_json::json!({ "applied": true }),
                    Err(problems) => serde_json::json!({ "applied": false, "problems": problems }),
                }
            }
            Request::Backout if self.plain => serde_json::json!({ "backed_out": false, "why": "a plain daemon has no workers to retire" }),
            Request::Backout => {
                self.back_out("asked by the control channel", now);
                serde_json::json!({ "backed_out": self.backed_out })
            }
        };
        answer["pid"] = self.pid.0.into();
        answer["package"] = self.package.name.into();
        if !self.finished {
            self.next_look = Some(now);
        }
        answer
    }

    /// What every look does, in order; then the time of the next one.
    fn look(&mut self, now: u64, board: &dyn Board) {
        if self.finished {
            self.next_look = None;
            return;
        }
        // The plain daemon: no pools, no children; its body's return ends it.
        if self.plain {
            self.feed_watchdog(now);
            self.next_look = self.watchdog.map(|(_, due)| due);
            return;
        }
        self.guard_against_a_stall(now);
        self.sample_work(now, board, false);
        self.judge_start(now, board);
        self.check_upgrade(now);
        self.drop_removed_pools();
        if self.stop.is_some() && self.procs.all_gone() && self.upgrade_child_gone() {
            // Every worker gone: what they left behind goes too (the driver lists the manager's
            // children once), then the manager.
            if !self.orphans_asked {
                self.orphans_asked = true;
                self.push(Command::ListChildren);
                self.next_look = None;
                return;
            }
            self.finish(board);
            return;
        }
        let recheck = if self.stop.is_none() && !self.plain { self.manage(now, board) } else { None };
        // While the daemon stops too: a worker finishing its work keeps its request's deadline.
        let check = self.supervise(now, board);
        let ladders = self.climb_ladders(now);
        let queues = self.check_queues(now);
        self.log_exit_counts(now);
        self.feed_watchdog(now);
        let candidates = [
            (queues, "the listen queues' next sample (a serving pool has no room, or a queue was full)"),
            (recheck, "the pools' sizes: a fork after backoff, a retirement, a check of the listen queue"),
            (check, "a verdict that can come: a heartbeat, request or start deadline, a stall's guard"),
            (ladders, "a stopping worker's next rung (or its held first rung, waiting for its stack)"),
            (self.other_deadlines(now), "foreign children, systemd's watchdog, the start's verdict, the exit log, an upgrade"),
        ];
        let next = candidates.iter().filter_map(|(at, why)| at.map(|at| (at, *why))).min_by_key(|(at, _)| *at);
        self.next_why = next.map_or("nothing: only an event (a signal, a worker's wake-up, a request) wakes it", |(_, why)| why);
        let next = next.map(|(at, _)| at);
        self.next_look = next;
        self.planned_wake = next;
    }

    /// Whether no upgrade child is left to wait for (a new manager being rolled back is the
    /// daemon's own child until it has exited; one that took over outlives this manager).
    fn upgrade_child_gone(&self) -> bool {
        self.upgrade.as_ref().map_or(true, |u| u.state == upgrade::State::TookOver)
    }

    /// Every worker is gone and nothing was left behind: the hooks, the pid file, the verdict.
    fn finish(&mut self, board: &dyn Board) {
        self.finished = true;
        self.next_look = None;
        self.log_exit_counts(u64::MAX);
        if self.had_to_kill && self.exit_code == 0 {
            self.exit_code = EXIT_HAD_TO_KILL;
        }
        self.push(Command::Hook(Hook::Exit));
        info!(wakes = board.wakes(), exit_status = self.exit_code, "manager stopped: every worker is gone");
        self.push(Command::PidFile(PidFileOp::Remove));
        if self.owns_socket_files() {
            self.push(Command::RemoveSocketFiles);
        }
        if let Some(why) = self.start_failed.take() {
            self.push(Command::StartFailed(why));
        }
    }

    /// The strictest timeout that applies to any pool (for the stall guard).
    fn longest_timeout(&self) -> Option<u64> {
        self.pools.values().filter_map(|p| p.supervision.heartbeat_timeout_ms.or(p.supervision.request_timeout_ms)).max()
    }

    /// A look that came much later than meant (the manager was stopped, or the machine
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
                 no stamp from before is judged for one more timeout"
            );
            // Workers stamp with the coarse clock, a tick or so behind this one: a request that
            // starts as the manager comes back is not from before it.
            self.guard = supervise::Guard { until_ms: now.saturating_add(timeout), since_ms: now.saturating_sub(COARSE_SLACK_MS) };
        }
    }

    /// While the daemon starts: fails the start (exit 1, the reason told to whoever waits for
    /// it) once a pool the start waits for cannot become ready.
    fn judge_start(&mut self, now: u64, board: &dyn Board) {
        if self.stop.is_some() {
            return;
        }
        let mut failure = None;
        for pool in self.pools.values() {
            let Some((watch, last_reason)) = &pool.starting else { continue };
            let why = match supervise::start_verdict(watch, pool.limits.workers, now) {
                None => continue,
                Some(supervise::StartFailure::EveryWorkerDied) => format!(
                    "no worker could start: {} died before they were ready; the last {}",
                    watch.died_before_ready,
                    last_reason.as_deref().unwrap_or("gave no reason")
                ),
                Some(supervise::StartFailure::TimedOut) => {
                    let ready = self.views(pool.index, board).iter().filter(|w| matches!(w.phase, crate::pool::policy::Phase::Idle | crate::pool::policy::Phase::Busy)).count();
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
            self.push(Command::Notify(Notify::Status(format!("start failed: {why}"))));
        }
        self.exit_code = 1;
        self.start_failed = Some(why);
        self.begin_stop(StopKind::Fast, "the start failed", board, now);
    }

    /// A pool removed by a reload goes once its last worker has.
    fn drop_removed_pools(&mut self) {
        let gone: Vec<usize> =
            self.pools.values().filter(|p| p.removed && !self.procs.iter().any(|w| w.pool == p.index)).map(|p| p.index).collect();
        for i in gone {
            if let Some(p) = self.pools.remove(&i) {
                info!(pool = %p.name, "task group stopped and removed");
            }
        }
    }

    /// While the daemon stops, the manager's children it does not know (processes its workers
    /// left behind, re-parented to it) join the foreign children: TERM, KILL after
    /// graceful_timeout.
    fn orphans(&mut self, pids: Vec<Pid>, now: u64) {
        let upgrade = self.upgrade.as_ref().map(|u| u.child);
        let found: Vec<Pid> = pids.into_iter().filter(|&pid| Some(pid) != upgrade && !self.procs.knows(pid)).collect();
        for &pid in &found {
            info!(pid = pid.0, "a process a worker left behind: stopped with the daemon");
            self.procs.adopt(pid, Foreign::default());
        }
        if found.is_empty() {
            return;
        }
        if self.stop.is_some() {
            self.stop_foreign(now);
            // Look again once these are gone: they may have left more.
            self.orphans_asked = false;
        }
    }

    /// While the daemon stops: TERM to every foreign child not sent it yet; KILL comes after
    /// graceful_timeout (`climb_ladders`).
    fn stop_foreign(&mut self, now: u64) {
        // One deadline for the whole stop: a process adopted after it gets no TERM, only KILL.
        let deadline = *self.stop_deadline.get_or_insert(now.saturating_add(ms(self.config.graceful_timeout)));
        let kill_at = deadline.max(now);
        let mut signals = Vec::new();
        for (pid, child) in self.procs.foreign_mut() {
            if child.kill_at_ms.is_none() {
                if now < deadline {
                    signals.push(pid);
                }
                child.kill_at_ms = Some(kill_at);
            }
        }
        for pid in signals {
            self.push(Command::Signal { pid, sig: Sig::Term });
        }
    }

    fn feed_watchdog(&mut self, now: u64) {
        if let Some((every, due)) = self.watchdog {
            if now >= due {
                if self.speaks() {
                    self.push(Command::Notify(Notify::Watchdog));
                }
                self.watchdog = Some((every, now.saturating_add(every)));
            }
        }
    }

    /// Deadlines that are not the pools': foreign children's kills, the watchdog, a failing
    /// start, the exit log's window, an upgrade's, and the check for a held singleton's release.
    fn other_deadlines(&self, now: u64) -> Option<u64> {
        let foreign = self.procs.foreign_deadline();
        let watchdog = self.watchdog.map(|(_, due)| due);
        // A start judged no more (the daemon stops) has no deadline.
        let start = self.pools.values().filter(|_| self.stop.is_none()).filter_map(|p| p.starting.as_ref().map(|(w, _)| w.deadline_ms));
        let upgrade = self.upgrade_deadline();
        // Held singletons start once the old manager is gone: the driver looks for that at each
        // wake-up, so wake now and then.
        let held = self.singletons_held().then(|| now.saturating_add(100));
        foreign.into_iter().chain(watchdog).chain(start).chain(self.exits.deadline()).chain(upgrade).chain(held).min()
    }

    fn on_signal(&mut self, sig: Sig, board: &dyn Board, now: u64) {
        match sig {
            Sig::Chld => {}
            // `term_stop = "graceful"`: TERM is what a container runtime sends before KILL, so it
            // finishes the work in hand, as QUIT does (gunicorn's TERM); INT stays fast.
            Sig::Term if self.config.term_graceful => self.begin_stop(StopKind::Graceful, "SIGTERM (term_stop = graceful)", board, now),
            Sig::Term | Sig::Int => self.begin_stop(StopKind::Fast, sig.name(), board, now),
            Sig::Quit => self.begin_stop(StopKind::Graceful, sig.name(), board, now),
            // The driver reads the configuration for HUP and hands it over as `Reload`.
            Sig::Hup | Sig::Usr1 => self.push(Command::ReopenLogs),
            Sig::Usr2 if self.plain => warn!("USR2: a plain daemon (no workers) cannot be upgraded in place: restart it"),
            Sig::Usr2 => match self.may_upgrade() {
                Ok(()) => self.push(Command::StartUpgrade { hold: false }),
                Err(why) => warn!("USR2: {why}; nothing started"),
            },
            Sig::Winch if self.plain => {}
            Sig::Winch => self.back_out("WINCH", now),
            Sig::Ttin => self.grow_by_one(),
            Sig::Ttou => self.shrink_by_one(board, now),
            other => warn!(signal = other.name(), "this version of the manager does not act on this signal; ignored"),
        }
    }

    fn begin_stop(&mut self, kind: StopKind, why: &str, board: &dyn Board, now: u64) {
        if self.plain {
            self.stops_asked += 1;
            if self.stops_asked > 1 {
                warn!(why, "asked to stop again: exiting now");
                self.push(Command::Plain(PlainSays::ExitNow));
                return;
            }
            info!(why, "stop asked: main's loop should return (daemon::stopping())");
            self.push(Command::Notify(Notify::Stopping));
            self.stop = Some(kind);
            self.push(Command::Plain(PlainSays::Stop));
            return;
        }
        match (self.stop, kind) {
            (Some(StopKind::Fast), _) => return,
            (Some(StopKind::Graceful), StopKind::Graceful) => {
                info!(why, "already stopping gracefully (INT, or `stop --now`, for a fast stop)");
                return;
            }
            _ => {}
        }
        let (rung, how) = match kind {
            StopKind::Graceful => (Rung::Quit, "graceful stop: workers finish their work"),
            StopKind::Fast => (Rung::Term, "fast stop: workers end now"),
        };
        info!(why, workers = self.procs.len(), "{how}");
        if self.upgrade.as_ref().is_some_and(|u| u.state == upgrade::State::Starting) {
            self.roll_back_for_stop(now);
        }
        if self.stop.is_none() && self.speaks() {
            self.push(Command::Notify(Notify::Stopping));
        }
        self.stop = Some(kind);
        self.push(Command::CloseListeners);
        // What the workers left behind so far stops now too; the rest once they are gone.
        self.push(Command::ListChildren);
        self.stop_foreign(now);
        let slots: Vec<usize> = self.procs.slots().collect();
        for slot in slots {
            // A worker not ready yet holds no connection: a graceful stop has nothing to wait
            // for (an on_child hook that sleeps would hold the stop for graceful_timeout).
            let starting = self.procs.get(slot).is_some_and(|p| p.pid.is_none()) || board.view(slot).state.before_ready();
            let rung = if starting { Rung::Term } else { rung };
            self.stop_worker(slot, rung, Why::Stop, now);
        }
    }

    /// Starts (or moves up) a worker's stop ladder at `rung`. A worker already on a rung as high
    /// stays where it is, so no verdict or stop is carried out twice. A worker whose fork has
    /// not been confirmed yet gets its signal once its pid is known.
    fn stop_worker(&mut self, slot: usize, rung: Rung, why: Why, now: u64) {
        let Some(p) = self.procs.get_mut(slot) else { return };
        if let Some(s) = &mut p.stopping {
            if s.ladder.rung >= rung {
                return;
            }
            // A fast stop of a worker that was retiring: the stop is now what it is for.
            s.why = why;
        }
        let climbed = p.stopping.is_some_and(|s| s.climbed);
        // A worker judged hung (no heartbeat, or a request past its deadline) is asked for its
        // stack first: its first rung waits for the stack, at most stack::ANSWER_MS.
        let capture = matches!(why, Why::Verdict(Verdict::Silent { .. } | Verdict::Overdue { .. })) && p.stopping.is_none();
        let held_until = (capture && p.pid.is_some()).then(|| now.saturating_add(crate::stack::ANSWER_MS));
        p.stopping = Some(Stopping { ladder: Ladder { rung, at_ms: now }, why, climbed, held_until });
        let (pid, pool) = (p.pid, p.pool);
        let Some(pid) = pid else { return };
        if let (Some(_), Why::Verdict(v)) = (held_until, why) {
            let pool = self.pools.get(&pool).map(|p| p.name.clone()).unwrap_or_default();
            self.push(Command::CaptureStacks { pid, slot, pool, verdict: Why::Verdict(v).describe().to_string() });
        } else {
            self.push(Command::Signal { pid, sig: signal_of(rung) });
        }
    }

    /// What a reaped pid was: a worker, a foreign child, the upgrade's new manager, or a
    /// stranger (an orphan re-parented to the manager).
    fn exited(&mut self, pid: Pid, status: ExitStatus, board: &dyn Board, now: u64) {
        // By pid first: a stranger's status (an orphan) is never a worker's death.
        match self.procs.reap(pid) {
            Some(Gone::Worker(proc)) => self.on_death(proc, status, board, now),
            Some(Gone::Foreign) => info!(pid = pid.0, status = %status.describe(), "foreign child exited"),
            None if self.upgrade_child_exited(pid, status, now) => {}
            None => tracing::debug!(pid = pid.0, status = %status.describe(), "reaped a process that was not a worker (an orphan)"),
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

    fn shrink_by_one(&mut self, board: &dyn Board, now: u64) {
        use crate::pool::policy::{self, Phase};
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
        let mut views = self.views(0, board);
        let Some(slot) = policy::pick_retiree(&views) else { return };
        // If min_spare would fork a replacement at once, lowering the floor is all TTOU can do.
        if let Some(v) = views.iter_mut().find(|v| v.slot == slot) {
            v.phase = Phase::Exiting;
        }
        if policy::plan(&views, &limits, now, None).spawn > 0 {
            info!(workers = limits.workers, "TTOU: floor lowered; min_spare keeps the current workers");
            return;
        }
        info!(workers = limits.workers, slot, "TTOU: one worker fewer");
        self.stop_worker(slot, Rung::Quit, Why::Retire, now);
    }

    /// HUP or `reload`, with the configuration read again: if it is good, apply it: a new
    /// generation of workers replaces the old one in the serving and supervised pools, as it
    /// finishes its work; task groups follow the file (Symphony's create_task_groups). A bad
    /// file changes nothing.
    fn reload(&mut self, resolved: Result<Resolved, Vec<String>>, board: &dyn Board, now: u64) -> Result<(), Vec<String>> {
        if self.stop.is_some() {
            return Err(vec!["the daemon is stopping".to_string()]);
        }
        if self.backed_out {
            info!("HUP: backed in: workers start again");
            self.backed_out = false;
        }
        if self.speaks() {
            self.push(Command::Notify(Notify::Reloading));
        }
        let resolved = match resolved {
            Ok(r) => r,
            Err(problems) => {
                for p in &problems {
                    error!("{p}");
                }
                error!(problems = problems.len(), "HUP: the new configuration is refused; the running one stays");
                if self.speaks() {
                    self.push(Command::Notify(Notify::Ready("reload refused; running configuration kept".into())));
                }
                return Err(problems);
            }
        };
        // The program's own settings: the new generation of workers is forked with them.
        if let Some(app) = &resolved.app {
            self.push(Command::ProgramSettings(app.value.clone()));
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
        // What a worker reads that changed: any setting, or any of the program's own.
        let app = resolved.app.as_ref().map(|a| a.shown.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect::<Vec<_>>());
        let mut changed: Vec<String> = daemon_config::SETTINGS
            .iter()
            .filter(|s| new.value(s.key) != self.config.value(s.key))
            .map(|s| s.name.to_string())
            .collect();
        if let (Some(old), Some(now_app)) = (&self.app, &app) {
            changed.extend(now_app.iter().filter(|kv| !old.contains(kv)).map(|(k, _)| format!("[app] {k}")));
        }
        self.app = app;
        self.config = new;
        if self.plain {
            info!("reload: the configuration is good; the program reads it again (daemon::take_reload())");
            self.push(Command::Plain(PlainSays::Reload));
            self.push(Command::Hook(Hook::Reload));
            return Ok(());
        }
        self.reloading = true;
        let changed = changed.join(", ");
        let indexes: Vec<usize> = self.pools.keys().copied().collect();
        for i in indexes {
            let Some(pool) = self.pools.get_mut(&i) else { continue };
            pool.reconfigure(&self.config);
            // Every pool's workers go by the new rules at once (a task group's too, whose
            // workers may stay): a limit they cross must wake the manager.
            let publish = self.publish_of_index(i);
            self.push(Command::Board(publish));
            let Some(pool) = self.pools.get(&i) else { continue };
            let name = pool.name.clone();
            match pool.kind {
                // The serving pool always gets new workers: a reload is how new code paths of
                // its own (files it reads in on_child) reach it, as nginx's reload does.
                Kind::Prefork | Kind::Postfork => {
                    info!(pool = %name, changed = %changed, "HUP: new workers for the serving pool");
                    self.new_generation(i, board, now);
                }
                // A job's workers are restarted only for a change they can read.
                Kind::Supervised if !changed.is_empty() => {
                    info!(pool = %name, changed = %changed, "HUP: new workers: their settings changed (each finishes its job first)");
                    self.new_generation(i, board, now);
                }
                Kind::Supervised => info!(pool = %name, "HUP: workers kept: nothing they read changed"),
                Kind::Task(_) => {}
            }
        }
        self.regroup(resolved.groups, &changed, now);
        info!("HUP: configuration applied");
        self.push(Command::Hook(Hook::Reload));
        Ok(())
    }

    /// What pool `pool`'s workers go by: its thresholds and its supervision settings.
    fn publish_of(&self, pool: &Pool) -> BoardWrite {
        BoardWrite::Publish {
            pool: pool.index,
            min_spare: pool.limits.min_spare,
            max_spare: pool.limits.max_spare,
            rules: pool.supervision,
            accept_cap: pool.accept_cap,
        }
    }

    fn publish_of_index(&self, i: usize) -> BoardWrite {
        match self.pools.get(&i) {
            Some(p) => self.publish_of(p),
            None => BoardWrite::Publish { pool: i, min_spare: 0, max_spare: 0, rules: Settings::OFF, accept_cap: 0 },
        }
    }

    /// WINCH, `backout`, a held upgrade: every worker retires gracefully; the sockets stay, and
    /// HUP starts workers again.
    fn back_out(&mut self, why: &str, now: u64) {
        if self.stop.is_some() {
            return;
        }
        if self.backed_out {
            info!(why, "backed out already: no workers; HUP starts them again");
            return;
        }
        self.backed_out = true;
        let slots: Vec<usize> = self.procs.iter().filter(|p| p.stopping.is_none()).map(|p| p.slot).collect();
        info!(why, workers = slots.len(), "backed out: every worker retires; the sockets stay open; HUP starts workers again");
        for slot in slots {
            self.stop_worker(slot, Rung::Quit, Why::Retire, now);
        }
    }
}
