//! Supervision as pure functions of what the manager knows (a worker's scoreboard facts, the
//! settings, the time): whether a worker must be stopped and why, the stop ladder, how a death
//! counts, how long to wait before the next fork, and whether a start has failed. No clock, no
//! signal, no fork here; the manager carries the decisions out.
//!
//! - **Liveness** (heartbeats): a worker stamps its slot from the thread that runs its handlers;
//!   silent for `heartbeat_timeout`, it is hung. A worker in a long request (`l`) is judged by
//!   `long_request_timeout` instead, since its handler may be the very thing that blocks it.
//! - **Request deadlines**, separate from liveness: a classic worker whose request is older than
//!   `request_timeout` (`long_request_timeout` when long) is overdue. (Async workers judge their
//!   own connections and drop the overdue ones; the manager does not kill them for it.)
//! - **Limits**: resident memory over `max_rss`, CPU time over `max_cpu`.
//! - **Starting** for longer than `start_timeout`: not ready.
//! - A worker being stopped gets no new verdict, but for one: a request past its deadline on a
//!   worker finishing its work (QUIT) is still cut (TERM). Time-based verdicts about stamps older
//!   than a manager's return from a long absence wait one more timeout (the stall `Guard`).
//! - **The ladder**: QUIT, then TERM after `graceful_timeout`, then KILL after a short grace.
//!   Most verdicts start at QUIT (finish the work in hand); an overdue request starts at TERM,
//!   since waiting longer would defeat the deadline.
//! - **Restarts**: a *crash* is a death the worker caused (it exited non-zero, gave up with a
//!   note, or was ended by a fault signal) within `min_worker_lifetime` of its start, or any death
//!   before it was ready. A crash delays the next fork by 100 ms, doubling to 10 s; more than
//!   `restart_intensity` crashes within `restart_period` and the pool is in a crash loop: forks
//!   come at the slowest rate until a worker lives past `min_worker_lifetime`. A ready worker
//!   killed from outside (KILL, TERM, ...) or dying after a healthy life is replaced at once.

use std::collections::VecDeque;

/// The first delay after a crash, and the slowest rate of forks.
pub const BACKOFF_FIRST_MS: u64 = 100;
pub const BACKOFF_MAX_MS: u64 = 10_000;

/// The grace between TERM and KILL.
pub const KILL_GRACE_MS: u64 = 2_000;

/// What supervision needs of the settings, in milliseconds and bytes; `None` is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub heartbeat_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub long_request_timeout_ms: Option<u64>,
    pub start_timeout_ms: u64,
    pub max_rss: Option<u64>,
    pub max_cpu_ms: Option<u64>,
    pub graceful_ms: u64,
    pub kill_grace_ms: u64,
    /// Whether the manager judges request deadlines (the classic model), or the worker does
    /// (the async model: it drops the overdue connection, not itself).
    pub manager_judges_requests: bool,
}

impl Settings {
    /// Nothing judged.
    pub const OFF: Settings = Settings {
        heartbeat_timeout_ms: None,
        request_timeout_ms: None,
        long_request_timeout_ms: None,
        start_timeout_ms: u64::MAX,
        max_rss: None,
        max_cpu_ms: None,
        graceful_ms: 0,
        kill_grace_ms: 0,
        manager_judges_requests: false,
    };
}

/// What a worker is doing, as its scoreboard letter says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// `F`, `f`, `.`: not ready yet.
    Starting,
    /// `w`.
    Idle,
    /// `r`.
    Request,
    /// `l`.
    Long,
    /// `e`, or being stopped by the manager.
    Exiting,
}

/// One worker as the manager reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub activity: Activity,
    /// When it was forked.
    pub started_ms: u64,
    /// Its last heartbeat.
    pub heartbeat_ms: u64,
    /// When its current (oldest) request started, if it serves one.
    pub request_ms: Option<u64>,
    pub rss: Option<u64>,
    pub cpu_ms: Option<u64>,
    /// The rung of the stop ladder the manager has it on already (a verdict, a retirement, a
    /// stop), if any.
    pub stopping: Option<Rung>,
}

/// Why a worker must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No heartbeat since `since_ms`.
    Silent { since_ms: u64, long: bool },
    /// Its request, started at `started_ms`, is past its deadline.
    Overdue { started_ms: u64, long: bool },
    /// Still starting after `start_timeout`.
    NotReady,
    OverMemory { rss: u64 },
    OverCpu { cpu_ms: u64 },
}

impl Verdict {
    /// The rung the stop starts on.
    pub fn first_rung(&self) -> Rung {
        match self {
            Verdict::Overdue { .. } => Rung::Term,
            _ => Rung::Quit,
        }
    }
}

/// The heartbeat timeout that applies to a worker doing `activity`, if any.
fn silence_limit(activity: Activity, s: &Settings) -> Option<u64> {
    match activity {
        Activity::Idle | Activity::Request => s.heartbeat_timeout_ms,
        Activity::Long => s.long_request_timeout_ms,
        Activity::Starting | Activity::Exiting => None,
    }
}

/// The request deadline that applies, if the manager judges it.
fn request_limit(activity: Activity, s: &Settings) -> Option<u64> {
    if !s.manager_judges_requests {
        return None;
    }
    match activity {
        Activity::Request => s.request_timeout_ms,
        Activity::Long => s.long_request_timeout_ms,
        _ => None,
    }
}

/// The stall guard: a manager that was away (stopped, a suspended machine) for longer than a
/// timeout judges no stamp older than its return (`since_ms`) until `until_ms`: silence then
/// was the manager's, or the machine's, not the worker's. A request or a start that began after
/// the return is judged as always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    pub until_ms: u64,
    pub since_ms: u64,
}

impl Guard {
    /// No guard.
    pub const NONE: Guard = Guard { until_ms: 0, since_ms: 0 };

    /// When a verdict about a stamp taken at `stamp_ms`, due at `due_ms`, may come.
    fn release(&self, stamp_ms: u64, due_ms: u64) -> u64 {
        if stamp_ms < self.since_ms {
            due_ms.max(self.until_ms)
        } else {
            due_ms
        }
    }
}

/// The times at which each time-based verdict against `f` comes, if nothing about it changes:
/// its silence, its request's deadline, its start's.
fn dues(f: &Facts, s: &Settings, guard: &Guard) -> [Option<(u64, Verdict)>; 3] {
    let long = f.activity == Activity::Long;
    let silence = silence_limit(f.activity, s).map(|limit| {
        let due = f.heartbeat_ms.saturating_add(limit).saturating_add(1);
        (guard.release(f.heartbeat_ms, due), Verdict::Silent { since_ms: f.heartbeat_ms, long })
    });
    let request = request_limit(f.activity, s).zip(f.request_ms).map(|(limit, started_ms)| {
        let due = started_ms.saturating_add(limit).saturating_add(1);
        (guard.release(started_ms, due), Verdict::Overdue { started_ms, long })
    });
    let start = (f.activity == Activity::Starting).then(|| {
        let due = f.started_ms.saturating_add(s.start_timeout_ms).saturating_add(1);
        (guard.release(f.started_ms, due), Verdict::NotReady)
    });
    // A worker finishing its work (on the QUIT rung) keeps only its request's deadline: a
    // retirement or a graceful stop does not let a request run past it.
    match f.stopping {
        None => [request, silence, start],
        Some(Rung::Quit) => [request, None, None],
        Some(_) => [None, None, None],
    }
}

/// Whether `f` must be stopped now, and why. Time-based verdicts (silence, deadlines, a start
/// that takes too long) respect the stall guard.
pub fn judge(f: &Facts, s: &Settings, now_ms: u64, guard: &Guard) -> Option<Verdict> {
    if f.activity == Activity::Exiting && f.stopping.is_none() {
        return None;
    }
    let due = dues(f, s, guard).into_iter().flatten().find(|(due, _)| now_ms >= *due).map(|(_, v)| v);
    // Of two verdicts due at once, the one that ends the worker now: a request past its deadline
    // is not left running because the worker was also found over a limit and told to finish it.
    if let Some(v) = due.filter(|v| v.first_rung() == Rung::Term) {
        return Some(v);
    }
    if f.stopping.is_none() {
        if let (Some(max), Some(rss)) = (s.max_rss, f.rss) {
            if rss > max {
                return Some(Verdict::OverMemory { rss });
            }
        }
        if let (Some(max), Some(cpu_ms)) = (s.max_cpu_ms, f.cpu_ms) {
            if cpu_ms > max {
                return Some(Verdict::OverCpu { cpu_ms });
            }
        }
    }
    due
}

/// The earliest time at which [`judge`] could find against `f` if nothing about it changes (no
/// new heartbeat, no new request): when the manager must look again. `None`: never.
pub fn next_check(f: &Facts, s: &Settings, guard: &Guard) -> Option<u64> {
    if f.activity == Activity::Exiting && f.stopping.is_none() {
        return None;
    }
    dues(f, s, guard).into_iter().flatten().map(|(due, _)| due).min()
}

/// Every worker judged at once: the verdicts due now, and the earliest time a verdict could
/// next come for a worker that has none now (`None`: never, unless a worker tells the manager).
/// The manager's only reason to wake for supervision.
pub fn sweep<K: Copy>(workers: impl IntoIterator<Item = (K, Facts, Settings)>, now_ms: u64, guard: &Guard) -> (Vec<(K, Verdict)>, Option<u64>) {
    let mut verdicts = Vec::new();
    let mut next = None::<u64>;
    for (key, f, s) in workers {
        if let Some(v) = judge(&f, &s, now_ms, guard) {
            // As it will be once the verdict is carried out: a deadline it keeps on its way out
            // (a request's, on the QUIT rung) is still a reason to look.
            let rung = f.stopping.map_or(v.first_rung(), |r| r.max(v.first_rung()));
            if let Some(at) = next_check(&Facts { stopping: Some(rung), ..f }, &s, guard) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            verdicts.push((key, v));
        } else if let Some(at) = next_check(&f, &s, guard) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    (verdicts, next)
}

/// Whether a worker whose facts just changed (it became ready, began a request, marked it
/// long, measured itself) must wake a manager that means to look next at `wake_by`: a verdict
/// against it is due now, or could become due before then. The manager learns of a change only
/// when it looks, so without this a request that began after it went to sleep would be judged
/// at the next unrelated wake-up, or never.
pub fn must_wake(f: &Facts, s: &Settings, now_ms: u64, wake_by: u64) -> bool {
    judge(f, s, now_ms, &Guard::NONE).is_some() || next_check(f, s, &Guard::NONE).is_some_and(|at| at < wake_by)
}

/// A step of the stop ladder: the signal it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rung {
    /// Finish the work in hand, then exit.
    Quit,
    /// Exit now (in workers, INT does the same).
    Term,
    /// The end.
    Kill,
}

/// Where a stopping worker is on the ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ladder {
    /// The rung last sent.
    pub rung: Rung,
    /// When it was sent.
    pub at_ms: u64,
}

impl Ladder {
    /// The next rung and when it is due, or `None` at the top.
    pub fn next(&self, s: &Settings) -> Option<(Rung, u64)> {
        match self.rung {
            Rung::Quit => Some((Rung::Term, self.at_ms.saturating_add(s.graceful_ms))),
            Rung::Term => Some((Rung::Kill, self.at_ms.saturating_add(s.kill_grace_ms))),
            Rung::Kill => None,
        }
    }

    /// Climbs one rung if it is due: the rung to send now.
    pub fn climb(&mut self, s: &Settings, now_ms: u64) -> Option<Rung> {
        let (rung, due) = self.next(s)?;
        if now_ms < due {
            return None;
        }
        *self = Ladder { rung, at_ms: now_ms };
        Some(rung)
    }
}

/// How a worker ended, as waitpid said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    /// The signal's number.
    /// `fault`: a signal that means the worker broke itself (SEGV, BUS, ILL, FPE, ABRT, SYS,
    /// TRAP), not that someone ended it (the driver tells which).
    Signaled { fault: bool },
}

/// What a death means for the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// The manager asked for it (a stop, a retirement, a verdict), or the worker left by itself
    /// as it should (recycled after its quota, exit 0).
    Expected,
    /// The worker's own failure, early: counts towards a crash loop and delays the next fork.
    Crash,
    /// Killed from outside, or a failure after a healthy life: replaced at once.
    Unexpected,
}

/// Everything the manager knows about a death.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub ending: Ending,
    /// The manager had told it to stop (any rung).
    pub asked: bool,
    /// It had said it was exiting (state `e`: recycled, QUIT seen).
    pub announced: bool,
    /// It had become ready.
    pub was_ready: bool,
    /// It left a note saying why it gave up.
    pub gave_up: bool,
    pub lived_ms: u64,
}

pub fn classify(e: &Exit, min_lifetime_ms: u64) -> Death {
    let own_fault = e.gave_up
        || match e.ending {
            Ending::Exited(code) => code != 0,
            Ending::Signaled { fault } => fault,
        };
    if e.asked {
        return Death::Expected;
    }
    if !e.was_ready || e.gave_up {
        return Death::Crash;
    }
    if e.announced && !own_fault {
        return Death::Expected;
    }
    if own_fault && e.lived_ms < min_lifetime_ms {
        return Death::Crash;
    }
    Death::Unexpected
}

/// The restart settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartSettings {
    pub intensity: u32,
    pub period_ms: u64,
    pub min_lifetime_ms: u64,
}

/// A pool's memory of its recent deaths and failed forks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    /// When the crashes within the last period happened.
    crashes: VecDeque<u64>,
    /// Crashes since the last healthy worker.
    consecutive: u32,
    /// Failed forks in a row.
    fork_failures: u32,
    crash_loop: bool,
    /// No fork before this.
    not_before_ms: u64,
}

/// What changed, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    EnteredCrashLoop,
    LeftCrashLoop,
}

impl Restarts {
    pub fn in_crash_loop(&self) -> bool {
        self.crash_loop
    }

    pub fn consecutive_crashes(&self) -> u32 {
        self.consecutive
    }

    /// Crashes within the last period.
    pub fn recent_crashes(&self) -> usize {
        self.crashes.len()
    }

    /// Forks that failed in a row (0 once one works).
    pub fn fork_failures(&self) -> u32 {
        self.fork_failures
    }

    /// When the next fork may happen.
    pub fn not_before(&self) -> u64 {
        self.not_before_ms
    }

    fn delay(&self, failures: u32) -> u64 {
        if self.crash_loop || failures == 0 {
            return if self.crash_loop { BACKOFF_MAX_MS } else { 0 };
        }
        (BACKOFF_FIRST_MS << (failures - 1).min(16)).min(BACKOFF_MAX_MS)
    }

    fn forget_before(&mut self, now_ms: u64, s: &RestartSettings) {
        while self.crashes.front().is_some_and(|&t| now_ms.saturating_sub(t) > s.period_ms) {
            self.crashes.pop_front();
        }
    }

    /// A worker died.
    pub fn record(&mut self, death: Death, now_ms: u64, s: &RestartSettings) -> Change {
        if death != Death::Crash {
            return Change::None;
        }
        self.forget_before(now_ms, s);
        self.crashes.push_back(now_ms);
        self.consecutive = self.consecutive.saturating_add(1);
        let entered = !self.crash_loop && self.crashes.len() > s.intensity as usize;
        if entered {
            self.crash_loop = true;
        }
        self.not_before_ms = now_ms.saturating_add(self.delay(self.consecutive));
        if entered {
            Change::EnteredCrashLoop
        } else {
            Change::None
        }
    }

    /// A fork failed (EAGAIN, ENOMEM...): the next try waits, doubling.
    pub fn fork_failed(&mut self, now_ms: u64) -> u64 {
        self.fork_failures = self.fork_failures.saturating_add(1);
        let delay = (BACKOFF_FIRST_MS << (self.fork_failures - 1).min(16)).min(BACKOFF_MAX_MS);
        self.not_before_ms = self.not_before_ms.max(now_ms.saturating_add(delay));
        delay
    }

    /// A fork worked: returns how many had failed before it.
    pub fn fork_worked(&mut self) -> u32 {
        std::mem::take(&mut self.fork_failures)
    }

    /// A worker has been ready for `min_worker_lifetime`: whatever killed the ones before, it
    /// does not kill every worker. The backoff starts again from the bottom.
    pub fn healthy(&mut self, now_ms: u64, s: &RestartSettings) -> Change {
        self.forget_before(now_ms, s);
        self.consecutive = 0;
        if self.crash_loop {
            self.crash_loop = false;
            return Change::LeftCrashLoop;
        }
        Change::None
    }
}

/// A worker's own limits on its connections (the async model), in milliseconds; `None` is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub request_ms: Option<u64>,
    pub long_request_ms: Option<u64>,
    pub idle_ms: Option<u64>,
    pub keepalive_ms: Option<u64>,
}

/// One connection as its worker's ticker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// When its current request started (`None` between requests).
    pub request_ms: Option<u64>,
    /// Since when it has waited for the client to send something (`None`: not waiting).
    pub reading_ms: Option<u64>,
    /// The wait is for the next request (`read_or_stop`), not within one.
    pub between: bool,
    /// Its handler marked the request long.
    pub long: bool,
}

/// What the worker does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionVerdict {
    /// Its request ran past `request_timeout` (or `long_request_timeout`): dropped.
    Overdue { started_ms: u64, long: bool },
    /// Its handler has waited for the client past `idle_timeout`: dropped.
    Idle { since_ms: u64 },
    /// It waited for its next request past `keepalive_timeout`: let go (its handler's
    /// `read_or_stop` returns `None`).
    KeepaliveOver,
}

pub fn connection_verdict(c: &Connection, s: &ConnectionSettings, now_ms: u64) -> Option<ConnectionVerdict> {
    if let Some(started_ms) = c.request_ms {
        let limit = if c.long { s.long_request_ms } else { s.request_ms };
        if limit.is_some_and(|l| now_ms.saturating_sub(started_ms) > l) {
            return Some(ConnectionVerdict::Overdue { started_ms, long: c.long });
        }
    }
    let since_ms = c.reading_ms?;
    let waited = now_ms.saturating_sub(since_ms);
    if c.between {
        return s.keepalive_ms.filter(|&l| waited > l).map(|_| ConnectionVerdict::KeepaliveOver);
    }
    s.idle_ms.filter(|&l| waited > l).map(|_| ConnectionVerdict::Idle { since_ms })
}

/// The connection a full worker lets go to admit a new client: the one that has waited longest
/// for its next request. Connections in a request are never chosen.
pub fn evictee(connections: &[Connection]) -> Option<usize> {
    connections
        .iter()
        .enumerate()
        .filter(|(_, c)| c.between)
        .filter_map(|(i, c)| c.reading_ms.map(|t| (t, i)))
        .min()
        .map(|(_, i)| i)
}

/// How often a worker's ticker runs: every heartbeat, and often enough that a connection limit
/// is enforced within a quarter of itself (at most every 50 ms).
pub fn tick_ms(heartbeat_interval_ms: u64, s: &ConnectionSettings) -> u64 {
    [s.request_ms, s.long_request_ms, s.idle_ms, s.keepalive_ms]
        .into_iter()
        .flatten()
        .map(|l| l / 4)
        .chain([heartbeat_interval_ms])
        .min()
        .unwrap_or(heartbeat_interval_ms)
        .max(50)
}

/// How the first generation of workers is doing while the daemon starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartWatch {
    /// When the start is given up if the pool is not ready by then (`start_timeout`).
    pub deadline_ms: u64,
    /// Workers that died before they were ready.
    pub died_before_ready: u32,
    /// Whether any worker has become ready.
    pub any_ready: bool,
}

/// Why a start failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFailure {
    /// As many workers as the pool's size died before they were ready, and none became ready:
    /// whatever kills them will kill the next ones too.
    EveryWorkerDied,
    /// The pool was not ready by the deadline.
    TimedOut,
}

/// Whether the start has failed, given the pool's size (`workers`) and the time. A start that
/// has seen a worker become ready is judged by the deadline only.
pub fn start_verdict(watch: &StartWatch, workers: u32, now_ms: u64) -> Option<StartFailure> {
    if !watch.any_ready && watch.died_before_ready >= workers.max(1) {
        return Some(StartFailure::EveryWorkerDied);
    }
    (now_ms >= watch.deadline_ms).then_some(StartFailure::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every stamp held until `until` (a manager that has just come back).
    fn held(until: u64) -> Guard {
        Guard { until_ms: until, since_ms: u64::MAX }
    }

    const NO: &Guard = &Guard::NONE;

    const S: Settings = Settings {
        heartbeat_timeout_ms: Some(30_000),
        request_timeout_ms: Some(10_000),
        long_request_timeout_ms: Some(60_000),
        start_timeout_ms: 60_000,
        max_rss: Some(100 << 20),
        max_cpu_ms: Some(3_600_000),
        graceful_ms: 30_000,
        kill_grace_ms: KILL_GRACE_MS,
        manager_judges_requests: true,
    };

    fn idle(heartbeat_ms: u64) -> Facts {
        Facts {
            activity: Activity::Idle,
            started_ms: 0,
            heartbeat_ms,
            request_ms: None,
            rss: Some(1 << 20),
            cpu_ms: Some(10),
            stopping: None,
        }
    }

    #[test]
    fn silence_past_the_timeout_is_a_verdict_and_the_check_is_due_then() {
        let f = idle(1_000);
        assert_eq!(judge(&f, &S, 31_000, NO), None);
        assert_eq!(next_check(&f, &S, NO), Some(31_001));
        assert_eq!(judge(&f, &S, 31_001, NO), Some(Verdict::Silent { since_ms: 1_000, long: false }));
        assert_eq!(judge(&f, &S, 31_001, NO).map(|v| v.first_rung()), Some(Rung::Quit));
        // A manager that was away waits one more timeout.
        assert_eq!(judge(&f, &S, 40_000, &held(61_000)), None);
        assert_eq!(next_check(&f, &S, &held(61_000)), Some(61_000));
    }

    #[test]
    fn a_long_request_is_judged_by_the_long_timeout_alone() {
        let f = Facts { activity: Activity::Long, request_ms: Some(1_000), ..idle(1_000) };
        assert_eq!(judge(&f, &S, 50_000, NO), None, "silent, but long work is allowed to be");
        assert_eq!(judge(&f, &S, 61_001, NO), Some(Verdict::Overdue { started_ms: 1_000, long: true }));
        let off = Settings { long_request_timeout_ms: None, ..S };
        assert_eq!(judge(&f, &off, 10_000_000, NO), None);
    }

    #[test]
    fn over_a_limit_with_its_request_overdue_a_worker_is_ended_not_retired() {
        // Found by the simulator: the memory verdict (QUIT: finish the request) came first, and
        // the overdue request waited for a look nobody had asked for.
        let limits = Settings { max_rss: Some(1 << 20), ..S };
        let f = Facts { activity: Activity::Request, request_ms: Some(0), rss: Some(1 << 30), ..idle(20_000) };
        assert_eq!(judge(&f, &limits, 10_001, NO), Some(Verdict::Overdue { started_ms: 0, long: false }));
        assert_eq!(judge(&f, &limits, 5_000, NO), Some(Verdict::OverMemory { rss: 1 << 30 }));
        // Retired at 5 s for its memory, it keeps its request's deadline: the sweep asks to look
        // then, though it gave the worker a verdict now.
        let (verdicts, next) = sweep([(0, f, limits)], 5_000, NO);
        assert_eq!(verdicts, vec![(0, Verdict::OverMemory { rss: 1 << 30 })]);
        assert_eq!(next, Some(10_001));
    }

    #[test]
    fn an_overdue_request_starts_at_term_and_only_the_classic_model_is_judged() {
        let f = Facts { activity: Activity::Request, request_ms: Some(0), ..idle(20_000) };
        let v = judge(&f, &S, 10_001, NO);
        assert_eq!(v, Some(Verdict::Overdue { started_ms: 0, long: false }));
        assert_eq!(v.map(|v| v.first_rung()), Some(Rung::Term));
        let async_model = Settings { manager_judges_requests: false, ..S };
        assert_eq!(judge(&f, &async_model, 10_001, NO), None);
    }

    #[test]
    fn limits_and_a_start_too_long() {
        let fat = Facts { rss: Some(200 << 20), ..idle(0) };
        assert_eq!(judge(&fat, &S, 1, &held(10)), Some(Verdict::OverMemory { rss: 200 << 20 }), "no guard: not time-based");
        let busy = Facts { cpu_ms: Some(3_600_001), ..idle(0) };
        assert_eq!(judge(&busy, &S, 1, NO), Some(Verdict::OverCpu { cpu_ms: 3_600_001 }));
        let starting = Facts { activity: Activity::Starting, ..idle(0) };
        assert_eq!(judge(&starting, &S, 60_000, NO), None);
        assert_eq!(judge(&starting, &S, 60_001, NO), Some(Verdict::NotReady));
    }

    #[test]
    fn the_ladder_goes_quit_term_kill_and_ends() {
        let mut l = Ladder { rung: Rung::Quit, at_ms: 0 };
        assert_eq!(l.climb(&S, 29_999), None);
        assert_eq!(l.climb(&S, 30_000), Some(Rung::Term));
        assert_eq!(l.climb(&S, 31_000), None);
        assert_eq!(l.climb(&S, 32_000), Some(Rung::Kill));
        assert_eq!(l.climb(&S, u64::MAX), None);
        assert_eq!(l.next(&S), None);
    }

    #[test]
    fn deaths_are_told_apart() {
        let base = Exit { ending: Ending::Exited(0), asked: false, announced: false, was_ready: true, gave_up: false, lived_ms: 50 };
        assert_eq!(classify(&Exit { asked: true, ending: Ending::Signaled { fault: false }, ..base }, 1_000), Death::Expected);
        assert_eq!(classify(&Exit { was_ready: false, ending: Ending::Signaled { fault: false }, ..base }, 1_000), Death::Crash);
        assert_eq!(classify(&Exit { ending: Ending::Exited(1), ..base }, 1_000), Death::Crash);
        assert_eq!(classify(&Exit { ending: Ending::Signaled { fault: true }, ..base }, 1_000), Death::Crash);
        assert_eq!(classify(&Exit { ending: Ending::Signaled { fault: true }, lived_ms: 5_000, ..base }, 1_000), Death::Unexpected);
        assert_eq!(classify(&Exit { ending: Ending::Signaled { fault: false }, ..base }, 1_000), Death::Unexpected, "killed from outside");
        assert_eq!(classify(&Exit { announced: true, ..base }, 1_000), Death::Expected, "recycled");
        assert_eq!(classify(&Exit { gave_up: true, lived_ms: 9_000, ..base }, 1_000), Death::Crash);
    }

    const R: RestartSettings = RestartSettings { intensity: 5, period_ms: 10_000, min_lifetime_ms: 1_000 };

    #[test]
    fn crashes_back_off_then_loop_at_the_slowest_rate_until_a_worker_is_healthy() {
        let mut r = Restarts::default();
        assert_eq!(r.record(Death::Crash, 0, &R), Change::None);
        assert_eq!(r.not_before(), 100);
        r.record(Death::Crash, 100, &R);
        assert_eq!(r.not_before(), 300);
        for t in 2..5 {
            r.record(Death::Crash, t * 1000, &R);
        }
        assert!(!r.in_crash_loop());
        assert_eq!(r.record(Death::Crash, 6_000, &R), Change::EnteredCrashLoop);
        assert!(r.in_crash_loop());
        assert_eq!(r.not_before(), 16_000);
        assert_eq!(r.record(Death::Unexpected, 7_000, &R), Change::None);
        assert_eq!(r.not_before(), 16_000, "a kill from outside changes nothing");
        assert_eq!(r.healthy(30_000, &R), Change::LeftCrashLoop);
        r.record(Death::Crash, 31_000, &R);
        assert_eq!(r.not_before(), 31_100, "from the bottom again");
    }

    #[test]
    fn fork_failures_double_and_reset() {
        let mut r = Restarts::default();
        assert_eq!(r.fork_failed(0), 100);
        assert_eq!(r.fork_failed(100), 200);
        assert_eq!(r.not_before(), 300);
        assert_eq!(r.fork_worked(), 2);
        assert_eq!(r.fork_failed(1_000), 100);
    }

    #[test]
    fn a_start_fails_once_every_first_worker_died_or_the_time_is_up() {
        let watch = |died, any_ready| StartWatch { deadline_ms: 1000, died_before_ready: died, any_ready };
        assert_eq!(start_verdict(&watch(3, false), 4, 10), None, "one of four may still come up");
        assert_eq!(start_verdict(&watch(4, false), 4, 10), Some(StartFailure::EveryWorkerDied));
        assert_eq!(start_verdict(&watch(9, true), 4, 10), None, "a worker came up: only the deadline judges");
        assert_eq!(start_verdict(&watch(0, true), 4, 1000), Some(StartFailure::TimedOut));
        assert_eq!(start_verdict(&watch(1, false), 0, 10), Some(StartFailure::EveryWorkerDied));
    }

    const C: ConnectionSettings =
        ConnectionSettings { request_ms: Some(10_000), long_request_ms: Some(60_000), idle_ms: Some(5_000), keepalive_ms: Some(2_000) };

    #[test]
    fn connections_are_judged_by_their_own_limits() {
        let in_request = Connection { request_ms: Some(0), reading_ms: None, between: false, long: false };
        assert_eq!(connection_verdict(&in_request, &C, 10_000), None);
        assert_eq!(connection_verdict(&in_request, &C, 10_001), Some(ConnectionVerdict::Overdue { started_ms: 0, long: false }));
        let long = Connection { long: true, ..in_request };
        assert_eq!(connection_verdict(&long, &C, 59_000), None);
        let trickle = Connection { request_ms: Some(0), reading_ms: Some(9_000), between: false, long: false };
        assert_eq!(connection_verdict(&trickle, &C, 9_500), None, "a byte a second resets idleness...");
        assert_eq!(connection_verdict(&trickle, &C, 10_001).map(|v| matches!(v, ConnectionVerdict::Overdue { .. })), Some(true), "...not the request's deadline");
        let silent = Connection { request_ms: Some(0), reading_ms: Some(1_000), between: false, long: false };
        assert_eq!(connection_verdict(&silent, &C, 6_001), Some(ConnectionVerdict::Idle { since_ms: 1_000 }));
        let waiting = Connection { request_ms: None, reading_ms: Some(1_000), between: true, long: false };
        assert_eq!(connection_verdict(&waiting, &C, 3_000), None);
        assert_eq!(connection_verdict(&waiting, &C, 3_001), Some(ConnectionVerdict::KeepaliveOver));
        assert_eq!(connection_verdict(&waiting, &ConnectionSettings::default(), u64::MAX), None);
    }

    #[test]
    fn the_evictee_has_waited_longest_for_its_next_request() {
        let c = |reading, between| Connection { request_ms: None, reading_ms: reading, between, long: false };
        assert_eq!(evictee(&[c(Some(5), true), c(Some(1), false), c(Some(3), true), c(None, true)]), Some(2));
        assert_eq!(evictee(&[c(Some(1), false)]), None, "a connection in a request is never let go");
        assert_eq!(tick_ms(5_000, &C), 500);
        assert_eq!(tick_ms(5_000, &ConnectionSettings::default()), 5_000);
        assert_eq!(tick_ms(5_000, &ConnectionSettings { idle_ms: Some(100), ..C }), 50);
    }

    fn settings() -> impl Strategy<Value = Settings> {
        let opt = |max: u64| prop::option::of(1u64..max);
        (opt(100_000), opt(100_000), opt(100_000), 1u64..100_000, opt(1 << 30), opt(100_000), 0u64..100_000, any::<bool>())
            .prop_map(|(hb, req, long, start, rss, cpu, graceful, classic)| Settings {
                heartbeat_timeout_ms: hb,
                request_timeout_ms: req,
                long_request_timeout_ms: long,
                start_timeout_ms: start,
                max_rss: rss,
                max_cpu_ms: cpu,
                graceful_ms: graceful,
                kill_grace_ms: KILL_GRACE_MS,
                manager_judges_requests: classic,
            })
    }

    fn activity() -> impl Strategy<Value = Activity> {
        prop_oneof![
            Just(Activity::Starting),
            Just(Activity::Idle),
            Just(Activity::Request),
            Just(Activity::Long),
            Just(Activity::Exiting)
        ]
    }

    fn facts() -> impl Strategy<Value = Facts> {
        let rung = prop_oneof![Just(Rung::Quit), Just(Rung::Term), Just(Rung::Kill)];
        (activity(), 0u64..1_000_000, 0u64..1_000_000, prop::option::of(0u64..1_000_000), prop::option::of(0u64..1 << 31), prop::option::of(0u64..200_000), prop::option::of(rung))
            .prop_map(|(activity, started_ms, heartbeat_ms, request_ms, rss, cpu_ms, stopping)| Facts {
                activity,
                started_ms,
                heartbeat_ms,
                request_ms,
                rss,
                cpu_ms,
                stopping,
            })
    }

    proptest! {
        #[test]
        fn never_kills_a_worker_whose_stamps_are_fresh(s in settings(), f in facts(), now in 0u64..2_000_000) {
            // Fresh: a heartbeat, a request and a start within their limits, and no limit passed.
            let fresh = silence_limit(f.activity, &s).map_or(true, |l| now.saturating_sub(f.heartbeat_ms) <= l)
                && request_limit(f.activity, &s).zip(f.request_ms).map_or(true, |(l, r)| now.saturating_sub(r) <= l)
                && (f.activity != Activity::Starting || now.saturating_sub(f.started_ms) <= s.start_timeout_ms)
                && s.max_rss.zip(f.rss).map_or(true, |(m, r)| r <= m)
                && s.max_cpu_ms.zip(f.cpu_ms).map_or(true, |(m, c)| c <= m);
            if fresh {
                prop_assert_eq!(judge(&f, &s, now, NO), None);
            }
        }

        #[test]
        fn never_judges_twice_for_one_verdict(s in settings(), f in facts(), now in 0u64..2_000_000) {
            // Once the manager stops a worker (for a verdict or anything else), no verdict follows
            // but one: a worker finishing its work (QUIT) still has its request's deadline, which
            // climbs to TERM.
            for rung in [Rung::Term, Rung::Kill] {
                let stopping = Facts { stopping: Some(rung), ..f };
                prop_assert_eq!(judge(&stopping, &s, now, NO), None);
                prop_assert_eq!(next_check(&stopping, &s, NO), None);
            }
            let finishing = Facts { stopping: Some(Rung::Quit), ..f };
            if let Some(v) = judge(&finishing, &s, now, NO) {
                prop_assert!(matches!(v, Verdict::Overdue { .. }) && v.first_rung() > Rung::Quit, "{:?}", v);
            }
        }

        #[test]
        fn the_next_check_is_exactly_when_a_time_verdict_can_first_come(s in settings(), f in facts(), until in 0u64..2_000_000) {
            let guard = &held(until);
            // Without the limits (not time-based), judging before the next check finds nothing,
            // and judging at it finds something.
            let f = Facts { rss: None, cpu_ms: None, ..f };
            match next_check(&f, &s, guard) {
                None => prop_assert_eq!(judge(&f, &s, 10_000_000, guard), None),
                Some(at) => {
                    prop_assert!(at >= until);
                    if at > 0 { prop_assert_eq!(judge(&f, &s, at - 1, guard), None); }
                    prop_assert!(judge(&f, &s, at, guard).is_some());
                }
            }
        }

        #[test]
        fn the_manager_wakes_before_any_verdict_it_has_not_given(
            workers in prop::collection::vec((facts(), settings()), 0..8),
            now in 0u64..2_000_000,
            until in 0u64..2_000_000,
            since in 0u64..2_000_000,
            probe in 0u64..=1_000,
        ) {
            let guard = &Guard { until_ms: until, since_ms: since };
            // The sweep's verdicts are judge's; every worker without one has none until the wake-up
            // it asks for (probed at the last moment before it, and somewhere in between).
            let (verdicts, next) = sweep(workers.iter().enumerate().map(|(i, (f, s))| (i, *f, *s)), now, guard);
            for (i, (f, s)) in workers.iter().enumerate() {
                let given = verdicts.iter().find(|(k, _)| *k == i).map(|(_, v)| *v);
                prop_assert_eq!(given, judge(f, s, now, guard));
                if given.is_some() {
                    continue;
                }
                let until = next.unwrap_or(now.saturating_add(10_000_000));
                if until > now {
                    let last = until - 1;
                    let middle = now + (last - now) * probe / 1_000;
                    prop_assert_eq!(judge(f, s, last, guard), None, "a verdict at {} before the wake-up at {:?}", last, next);
                    prop_assert_eq!(judge(f, s, middle, guard), None);
                }
            }
        }

        #[test]
        fn a_change_the_manager_does_not_hear_of_brings_no_verdict_before_it_looks(
            f in facts(),
            s in settings(),
            at in 0u64..1_000_000,
            wake_in in 1u64..1_000_000,
            probe in 0u64..=1_000,
        ) {
            // A worker changes its facts at `at` (its stamps are no later than that) while the
            // manager sleeps until `wake_by`: unless the worker wakes it, nothing is due before.
            let clamp = |t: u64| t.min(at);
            let g = Facts {
                started_ms: clamp(f.started_ms),
                heartbeat_ms: clamp(f.heartbeat_ms),
                request_ms: f.request_ms.map(clamp),
                stopping: None,
                ..f
            };
            let wake_by = at.saturating_add(wake_in);
            if !must_wake(&g, &s, at, wake_by) {
                let last = wake_by - 1;
                let middle = at + (last - at) * probe / 1_000;
                prop_assert_eq!(judge(&g, &s, last, NO), None);
                prop_assert_eq!(judge(&g, &s, middle, NO), None);
            }
        }

        #[test]
        fn the_ladder_always_ends(s in settings(), start in 0u64..1_000_000, steps in prop::collection::vec(0u64..100_000, 1..50)) {
            let mut l = Ladder { rung: Rung::Quit, at_ms: start };
            let mut now = start;
            let mut sent = Vec::new();
            for step in steps {
                now += step;
                if let Some(r) = l.climb(&s, now) { sent.push(r); }
            }
            // Climb until the end, however late.
            while let Some((_, due)) = l.next(&s) {
                if let Some(r) = l.climb(&s, due.max(now)) { sent.push(r); }
            }
            prop_assert_eq!(l.rung, Rung::Kill);
            prop_assert_eq!(sent, vec![Rung::Term, Rung::Kill], "each rung once, in order");
        }

        #[test]
        fn restarts_never_wait_longer_than_the_slowest_rate(deaths in prop::collection::vec((0u8..3, 0u64..5_000), 0..100)) {
            let mut r = Restarts::default();
            let mut now = 0;
            for (kind, gap) in deaths {
                now += gap;
                let death = [Death::Expected, Death::Crash, Death::Unexpected][kind as usize];
                r.record(death, now, &R);
                prop_assert!(r.not_before() <= now + BACKOFF_MAX_MS);
                if death == Death::Crash {
                    prop_assert!(r.not_before() >= now + BACKOFF_FIRST_MS, "a crash always waits");
                }
                if r.in_crash_loop() && death == Death::Crash {
                    prop_assert_eq!(r.not_before(), now + BACKOFF_MAX_MS);
                }
            }
        }
    }
}
