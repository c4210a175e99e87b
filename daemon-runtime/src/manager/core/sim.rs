//! A deterministic simulator of the manager's core (FoundationDB's simulation, TigerBeetle's
//! VOPR): virtual time, a seeded random generator, a fake process table and scoreboard, and
//! random histories of what a daemon meets (workers that crash before and after ready, hang,
//! grow, run long requests, ignore QUIT; fork failures; bursts of signals and control requests;
//! configurations good and bad; upgrades whose new manager is ready, fails, dies or never
//! answers; a manager stopped for minutes; a machine suspended). After every step it checks the
//! manager's laws. A failure prints its seed and the shortest history that still breaks the law;
//! `DAEMON_SIM_SEED=<seed>` replays it, `DAEMON_SIM_HISTORIES=<n>` runs more (README).
//!
//! The fake scoreboard wakes the manager as the real one does: a worker's change wakes it when
//! the idle count crosses a threshold, when it becomes ready while the manager waits for its
//! pool, when it starts to exit, and when `supervise::must_wake` says a verdict would come before
//! the manager means to look.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

use daemon_config::{resolve, GroupConfig, Given, Key, Model, Origin, TaskModel, Value};

use super::{Board, BoardWrite, Command, Core, Event, ExitStatus, ForkError, Job, Pid, PidFileOp, Request, Sig, Start};
use crate::pool::supervise::{self, Facts, Settings, BACKOFF_MAX_MS};
use crate::pool::Kind;
use crate::scoreboard::{SlotView, State};
use crate::sources::Resolved;

// ---------------------------------------------------------------------------------------------
// The fake scoreboard: the slots, and the worker side of the wake-up rules.

#[derive(Default, Clone)]
struct Header {
    idle: i64,
    min_spare: u32,
    max_spare: u32,
    announce: bool,
    rules: Option<Settings>,
}

#[derive(Default)]
struct SimBoard {
    slots: HashMap<usize, SlotView>,
    notes: HashMap<usize, String>,
    pools: HashMap<usize, Header>,
    /// What the manager published before it slept: when it means to wake.
    wake_by: u64,
    /// A worker wrote on the wake pipe since the manager last read it.
    woken: bool,
    wakes: u64,
}

impl Board for SimBoard {
    fn view(&self, slot: usize) -> SlotView {
        self.slots.get(&slot).copied().unwrap_or_default()
    }
    fn note(&self, slot: usize) -> Option<String> {
        self.notes.get(&slot).cloned()
    }
    fn request_label(&self, _slot: usize) -> Option<String> {
        None
    }
    fn wakes(&self) -> u64 {
        self.wakes
    }
}

impl SimBoard {
    fn write(&mut self, w: &BoardWrite, now: u64) {
        match *w {
            BoardWrite::Prepare { slot, .. } => {
                self.slots.insert(slot, SlotView { state: State::Forking, heartbeat_ms: now, ..SlotView::default() });
                self.notes.remove(&slot);
            }
            BoardWrite::Pid { .. } => {}
            BoardWrite::Clear { pool, slot } => {
                if let Some(v) = self.slots.get_mut(&slot) {
                    if v.room {
                        self.pools.entry(pool).or_default().idle -= 1;
                    }
                    *v = SlotView::default();
                }
            }
            BoardWrite::Publish { pool, min_spare, max_spare, rules, .. } => {
                let h = self.pools.entry(pool).or_default();
                h.min_spare = min_spare;
                h.max_spare = max_spare;
                h.rules = Some(rules);
            }
            BoardWrite::AnnounceReady { pool, on } => self.pools.entry(pool).or_default().announce = on,
            BoardWrite::Saturated { .. } => {}
        }
    }

    fn wake(&mut self) {
        self.woken = true;
        self.wakes += 1;
    }

    fn set_state(&mut self, slot: usize, state: State, now: u64) {
        let v = self.slots.entry(slot).or_default();
        v.state = state;
        v.heartbeat_ms = now;
    }

    fn facts(&self, slot: usize, started_ms: u64) -> Facts {
        let v = self.view(slot);
        Facts {
            activity: super::supervision::activity(v.state),
            started_ms,
            heartbeat_ms: v.heartbeat_ms,
            request_ms: v.request_ms,
            rss: Some(v.rss).filter(|&r| r > 0),
            cpu_ms: Some(v.cpu_ms).filter(|&c| c > 0),
            stopping: None,
        }
    }

    /// `WorkerSlot::tell_if_due`.
    fn tell_if_due(&mut self, pool: usize, slot: usize, started_ms: u64, now: u64) {
        let Some(rules) = self.pools.get(&pool).and_then(|h| h.rules) else { return };
        if supervise::must_wake(&self.facts(slot, started_ms), &rules, now, self.wake_by) {
            self.wake();
        }
    }

    fn enter_idle(&mut self, pool: usize, slot: usize) -> bool {
        let v = self.slots.entry(slot).or_default();
        if v.room {
            return false;
        }
        v.room = true;
        let h = self.pools.entry(pool).or_default();
        h.idle += 1;
        if h.idle == i64::from(h.max_spare) + 1 {
            self.wake();
            return true;
        }
        false
    }

    fn leave_idle(&mut self, pool: usize, slot: usize) {
        let v = self.slots.entry(slot).or_default();
        if !v.room {
            return;
        }
        v.room = false;
        let h = self.pools.entry(pool).or_default();
        h.idle -= 1;
        if h.idle == i64::from(h.min_spare) - 1 {
            self.wake();
        }
    }

    /// `WorkerSlot::ready`.
    fn ready(&mut self, pool: usize, slot: usize, started_ms: u64, capacity: u32, now: u64) {
        let active = self.view(slot).active;
        self.set_state(slot, if active == 0 { State::Waiting } else { State::Request }, now);
        let announce = self.pools.get(&pool).is_some_and(|h| h.announce);
        let woke = active < capacity && self.enter_idle(pool, slot);
        if !woke && announce {
            self.wake();
        } else if !woke {
            self.tell_if_due(pool, slot, started_ms, now);
        }
    }

    /// `WorkerSlot::begin_connection` then `set_request_started` (the classic order).
    fn begin_request(&mut self, pool: usize, slot: usize, started_ms: u64, capacity: u32, now: u64) {
        let v = self.slots.entry(slot).or_default();
        v.requests += 1;
        v.active += 1;
        let active = v.active;
        if active == 1 {
            self.set_state(slot, State::Request, now);
        }
        if active >= capacity {
            self.leave_idle(pool, slot);
        }
        if let Some(v) = self.slots.get_mut(&slot) {
            v.request_ms = Some(now.max(1));
        }
        self.tell_if_due(pool, slot, started_ms, now);
    }

    /// `WorkerSlot::end_connection`.
    fn end_request(&mut self, pool: usize, slot: usize, capacity: u32, now: u64) {
        let v = self.slots.entry(slot).or_default();
        v.active = v.active.saturating_sub(1);
        let active = v.active;
        if v.state == State::Exiting {
            return;
        }
        if active == 0 {
            self.set_state(slot, State::Waiting, now);
            if let Some(v) = self.slots.get_mut(&slot) {
                v.request_ms = None;
            }
        }
        if active + 1 == capacity {
            self.enter_idle(pool, slot);
        }
    }

    /// `WorkerSlot::exiting`.
    fn exiting(&mut self, pool: usize, slot: usize, now: u64) {
        self.set_state(slot, State::Exiting, now);
        self.leave_idle(pool, slot);
        self.wake();
    }

    /// `WorkerSlot::measured`.
    fn measured(&mut self, pool: usize, slot: usize, started_ms: u64, rss: u64, cpu_ms: u64, now: u64) {
        let v = self.slots.entry(slot).or_default();
        v.rss = rss;
        v.cpu_ms = cpu_ms;
        self.tell_if_due(pool, slot, started_ms, now);
    }
}

// ---------------------------------------------------------------------------------------------
// Histories.

/// How a worker is made to end from outside, or ends by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Kill,
    Term,
    Segv,
    Exit(i32),
}

/// What an upgrade's new manager does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NewManager {
    Ready { after_ms: u64 },
    Fails { after_ms: u64 },
    Dies { after_ms: u64, code: i32 },
    Silent,
}

/// One thing that happens to the daemon from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Signal(Sig),
    Status,
    Stop { graceful: bool },
    /// A reload, with a good file (its sizes and limits drawn from `variant`) or a bad one.
    Reload { good: bool, variant: u64, by_request: bool },
    Backout,
    Upgrade { new: NewManager, hold: bool, by_request: bool },
    /// The `nth` live worker (modulo) ends so.
    End { nth: usize, how: Ending },
    /// The `nth` live worker stops stamping its heartbeat (a handler that spins).
    Hang { nth: usize },
    /// The `nth` live worker's memory and CPU grow past any limit.
    Grow { nth: usize },
    /// The `nth` live worker serves a request of `ms` (past any deadline if long).
    Request { nth: usize, ms: u64 },
    /// The `nth` live worker ignores QUIT from now on (work it will not finish).
    Deaf { nth: usize },
    /// Forks fail (EAGAIN, or another error) or work again.
    ForkFailures(Option<bool>),
    /// The `nth` live worker leaves a process behind (one that ignores TERM if `deaf`).
    LeaveOrphan { nth: usize, deaf: bool },
    /// A client connects (the post-forking pool takes it if it may).
    Connection,
    /// The whole machine is suspended for `ms`: nothing runs, the clock jumps.
    Suspend { ms: u64 },
    /// The manager alone is stopped (SIGSTOP) for `ms`; its workers run on.
    StallManager { ms: u64 },
}

#[derive(Clone, Debug)]
struct Step {
    after_ms: u64,
    action: Action,
}

/// The program and its first configuration.
#[derive(Clone, Debug)]
struct Scenario {
    /// `Some(classic)`: an `on_accept` handler.
    serving: Option<bool>,
    supervised: bool,
    groups: Vec<GroupConfig>,
    given: Given,
    model: Model,
    /// Started by an upgrade whose old manager runs for `ms`.
    old_manager_for: Option<u64>,
}

impl Scenario {
    /// In one paragraph.
    fn describe(&self) -> String {
        let given: Vec<String> = self.given.iter().map(|(k, v, _)| format!("{} = {v}", daemon_config::setting(k).name)).collect();
        let groups: Vec<String> = self.groups.iter().map(|g| format!("{} ({:?}, {}..{})", g.name, g.model, g.workers, g.max_workers)).collect();
        format!(
            "serving {:?} (Some(true): classic), supervised {}, groups [{}], old manager for {:?} ms; {}",
            self.serving,
            self.supervised,
            groups.join(", "),
            self.old_manager_for,
            given.join(", ")
        )
    }
}

fn pick<T: Clone>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())].clone()
}

fn given_for(rng: &mut fastrand::Rng, postfork: bool) -> Given {
    let mut g = Given::new();
    let mut set = |k: Key, v: Value| g.set(k, v, Origin::Attribute);
    let secs = |s: u64| Value::Duration(Duration::from_secs(s));
    let millis = |ms: u64| Value::Duration(Duration::from_millis(ms));
    if postfork {
        set(Key::Postfork, Value::Flag(true));
        set(Key::MaxChildren, Value::Count(rng.u64(1..=4)));
    } else {
        let workers = rng.u64(1..=4);
        set(Key::Prefork, Value::Count(workers));
        let min_spare = rng.u64(0..=2);
        set(Key::MinSpare, Value::Count(min_spare));
        set(Key::MaxSpare, Value::Count(rng.u64(min_spare.max(1)..=4)));
        set(Key::MaxChildren, Value::Count(workers + rng.u64(0..=3)));
    }
    set(Key::HeartbeatInterval, secs(1));
    set(Key::HeartbeatTimeout, pick(rng, &[Value::Duration(Duration::ZERO), secs(3), secs(10)]));
    set(Key::RequestTimeout, pick(rng, &[Value::Duration(Duration::ZERO), secs(2)]));
    set(Key::MaxRss, pick(rng, &[Value::Size(0), Value::Size(64 << 20)]));
    set(Key::MaxCpu, pick(rng, &[Value::Duration(Duration::ZERO), secs(30)]));
    set(Key::GracefulTimeout, secs(rng.u64(1..=5)));
    set(Key::StartTimeout, secs(rng.u64(5..=30)));
    set(Key::RestartIntensity, Value::Count(rng.u64(2..=5)));
    set(Key::MinWorkerLifetime, millis(pick(rng, &[0, 500, 1000])));
    set(Key::RespawnDelay, millis(pick(rng, &[0, 500, 2000])));
    set(Key::UpgradeTimeout, secs(rng.u64(5..=20)));
    g
}

fn scenario(rng: &mut fastrand::Rng) -> Scenario {
    let serving = pick(rng, &[Some(false), Some(true), Some(false), None]);
    let postfork = serving.is_some() && rng.u8(..6) == 0;
    let supervised = serving.is_none() || rng.bool();
    let mut groups = Vec::new();
    for name in ["digest", "convert"].iter().take(rng.usize(0..=2)) {
        let model = pick(rng, &[TaskModel::LongLived, TaskModel::OneShot]);
        let workers = rng.u32(1..=3);
        groups.push(GroupConfig {
            name: name.to_string(),
            run: name.to_string(),
            workers,
            max_workers: workers + if model == TaskModel::OneShot { rng.u32(0..=2) } else { 0 },
            model,
            scaling_interval: Duration::from_millis(pick(rng, &[500, 1000])),
        });
    }
    let model = match serving {
        Some(true) => Model::Sync,
        Some(false) => Model::Async,
        None => Model::Unknown,
    };
    Scenario {
        serving,
        supervised: supervised || (serving.is_none() && groups.is_empty()),
        groups,
        given: given_for(rng, postfork),
        model,
        old_manager_for: (rng.u8(..8) == 0).then(|| rng.u64(100..5_000)),
    }
}

fn action(rng: &mut fastrand::Rng) -> Action {
    let nth = rng.usize(..8);
    match rng.u8(..32) {
        0 => Action::Signal(pick(rng, &[Sig::Hup, Sig::Ttin, Sig::Ttou, Sig::Usr1, Sig::Winch, Sig::Chld])),
        1 => Action::Status,
        2 => Action::Reload { good: rng.u8(..4) != 0, variant: rng.u64(..), by_request: rng.bool() },
        3 => Action::Backout,
        4 => {
            let new = match rng.u8(..4) {
                0 => NewManager::Ready { after_ms: rng.u64(10..3_000) },
                1 => NewManager::Fails { after_ms: rng.u64(10..3_000) },
                2 => NewManager::Dies { after_ms: rng.u64(10..3_000), code: pick(rng, &[0, 1, 2]) },
                _ => NewManager::Silent,
            };
            Action::Upgrade { new, hold: rng.u8(..4) == 0, by_request: rng.bool() }
        }
        5..=9 => Action::End { nth, how: pick(rng, &[Ending::Kill, Ending::Term, Ending::Segv, Ending::Exit(0), Ending::Exit(1)]) },
        10 | 11 => Action::Hang { nth },
        12 | 13 => Action::Grow { nth },
        14..=18 => Action::Request { nth, ms: pick(rng, &[50, 500, 5_000, 60_000]) },
        19 => Action::Deaf { nth },
        20 => Action::ForkFailures(pick(rng, &[None, Some(true), Some(false)])),
        21 => Action::LeaveOrphan { nth, deaf: rng.bool() },
        22..=25 => Action::Connection,
        26 => Action::Suspend { ms: pick(rng, &[5_000, 60_000, 300_000]) },
        27 => Action::StallManager { ms: pick(rng, &[2_000, 60_000]) },
        28 => Action::Signal(Sig::Usr2),
        29 => Action::Stop { graceful: rng.bool() },
        _ => Action::Signal(pick(rng, &[Sig::Hup, Sig::Hup, Sig::Ttin])),
    }
}

/// A history: the program, and what happens to it.
fn history(seed: u64) -> (Scenario, Vec<Step>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let scenario = scenario(&mut rng);
    let n = rng.usize(5..60);
    let steps = (0..n)
        .map(|_| Step { after_ms: pick(&mut rng, &[0, 1, 10, 100, 500, 1_000, 3_000, 10_000]), action: action(&mut rng) })
        .collect();
    (scenario, steps)
}

// ---------------------------------------------------------------------------------------------
// The world: processes, time, the core.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProcKind {
    Worker { slot: usize, pool: usize, generation: u32 },
    Orphan { deaf: bool },
    NewManager,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Starting,
    Running,
    Exiting,
    Dead,
}

#[derive(Clone, Debug)]
struct Proc {
    pid: i32,
    kind: ProcKind,
    started_ms: u64,
    life: Life,
    hung: bool,
    deaf_quit: bool,
    /// QUIT came while it started (a worker reads it once it is set up).
    quit_pending: bool,
    /// Signals the core sent it, with when.
    signals: Vec<(u64, Sig)>,
    /// When its exit is scheduled, if it is.
    ending: Option<u64>,
    /// How it ended.
    ended: Option<ExitStatus>,
    /// The stop sent it a stronger signal than it asked for (TERM in a graceful stop, KILL):
    /// if that ends it, it was killed.
    escalation: Option<(i32, i32)>,
    capacity: u32,
}

impl Proc {
    fn new(pid: i32, kind: ProcKind, now: u64, life: Life, capacity: u32) -> Proc {
        Proc {
            pid,
            kind,
            started_ms: now,
            life,
            hung: false,
            deaf_quit: false,
            quit_pending: false,
            signals: Vec::new(),
            ending: None,
            ended: None,
            escalation: None,
            capacity,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum WorldEvent {
    Ready { pid: i32 },
    Beat { pid: i32 },
    RequestEnds { pid: i32 },
    Exit { pid: i32, status: (i32, i32) },
    NewManagerSays { pid: i32, ok: bool },
    StallEnds,
    OldManagerExits,
}

fn status_of(code: (i32, i32)) -> ExitStatus {
    match code {
        (0, c) => ExitStatus::Exited(c),
        (_, 9) => ExitStatus::Signaled { sig: Sig::Kill, number: 9, fault: false },
        (_, 15) => ExitStatus::Signaled { sig: Sig::Term, number: 15, fault: false },
        (_, 2) => ExitStatus::Signaled { sig: Sig::Int, number: 2, fault: false },
        (_, n) => ExitStatus::Signaled { sig: Sig::Other("SIGSEGV"), number: n, fault: true },
    }
}

const EXIT_0: (i32, i32) = (0, 0);
const BY_TERM: (i32, i32) = (1, 15);
const BY_KILL: (i32, i32) = (1, 9);

/// What a history did, for the summary.
#[derive(Default, Debug)]
struct Tally {
    pub steps: u64,
    pub forks: u64,
    pub deaths: u64,
    pub verdicts: u64,
    pub upgrades: u64,
}

struct World {
    seed: u64,
    rng: fastrand::Rng,
    /// The listen queue's overflow count, as the simulated kernel has it.
    overflows: u64,
    now: u64,
    core: Core,
    board: SimBoard,
    procs: BTreeMap<i32, Proc>,
    next_pid: i32,
    queue: BinaryHeap<Reverse<(u64, u64, WorldEvent)>>,
    seq: u64,
    scenario: Scenario,
    fork_failing: Option<bool>,
    /// The faults have stopped: workers start well.
    quiet: bool,
    /// What the next new manager does (USR2).
    pending_upgrade: Option<NewManager>,
    /// Connections the driver holds for the post-forking pool.
    pending_connection: u32,
    /// The manager is stopped until then: what it would hear waits.
    stalled_until: Option<u64>,
    /// Events for the core that came while it was stopped.
    held: Vec<Event>,
    /// Pids whose exit the core was told.
    exit_seen: BTreeSet<i32>,
    /// When each pool last had a fork attempt, and since when it is below its floor.
    last_fork: HashMap<usize, u64>,
    below_since: HashMap<usize, u64>,
    ready_told: u32,
    start_failed_told: u32,
    pid_file_removed: bool,
    upgrade_outcomes: HashMap<i32, &'static str>,
    /// When the daemon's stop began, and how.
    stop_began: Option<(u64, bool)>,
    /// A process stopping for the daemon's stop ended by a stronger signal than the stop asked.
    escalated: bool,
    /// A time-based verdict may not be checked until then (the machine was suspended, or the
    /// manager stopped: the core's stall guard gives everyone one more timeout).
    lenient_until: u64,
    /// When the core last looked (any event makes it look), and how many times in a row at that
    /// same time because it asked to.
    looked_at: u64,
    spins: u32,
    tally: Tally,
    log: Vec<String>,
}

/// A broken law: which, and what happened.
#[derive(Debug)]
struct Violation {
    law: &'static str,
    why: String,
}

type Checked = Result<(), Violation>;

fn fail<T>(law: &'static str, why: String) -> Result<T, Violation> {
    Err(Violation { law, why })
}

impl World {
    fn new(seed: u64, scenario: Scenario) -> Result<World, Violation> {
        let config = resolve(&scenario.given, scenario.model).map_err(|p| Violation { law: "scenario", why: format!("{p:?}") })?;
        let start = Start {
            config,
            groups: scenario.groups.clone(),
            serving: scenario.serving,
            supervised: scenario.supervised,
            addresses: vec!["127.0.0.1:8080".into()],
            watchdog_ms: None,
            pid: Pid(1),
            package: crate::program::Package { name: "sim", version: "0" },
            upgraded_from: scenario.old_manager_for.map(|_| Pid(0)),
            plain: false,
            app: Some(vec![("delay".into(), "0".into())]),
        };
        let core = Core::new(start, 0).map_err(|why| Violation { law: "scenario", why })?;
        let mut w = World {
            seed,
            rng: fastrand::Rng::with_seed(seed ^ 0x5eed),
            overflows: 0,
            now: 0,
            core,
            board: SimBoard::default(),
            procs: BTreeMap::new(),
            next_pid: 100,
            queue: BinaryHeap::new(),
            seq: 0,
            scenario,
            fork_failing: None,
            quiet: false,
            pending_upgrade: None,
            pending_connection: 0,
            stalled_until: None,
            held: Vec::new(),
            exit_seen: BTreeSet::new(),
            last_fork: HashMap::new(),
            below_since: HashMap::new(),
            ready_told: 0,
            start_failed_told: 0,
            pid_file_removed: false,
            upgrade_outcomes: HashMap::new(),
            stop_began: None,
            escalated: false,
            lenient_until: 0,
            looked_at: 0,
            spins: 0,
            tally: Tally::default(),
            log: Vec::new(),
        };
        if let Some(ms) = w.scenario.old_manager_for {
            w.schedule(ms, WorldEvent::OldManagerExits);
        }
        w.commands()?;
        w.deliver(Event::Tick)?;
        Ok(w)
    }

    fn note(&mut self, what: String) {
        if self.log.len() < 400 {
            self.log.push(format!("{:>8} ms  {what}", self.now));
        }
    }

    fn schedule(&mut self, after: u64, e: WorldEvent) {
        self.seq += 1;
        self.queue.push(Reverse((self.now.saturating_add(after), self.seq, e)));
    }

    fn settings(&self, pool: usize) -> Option<Settings> {
        self.core.pools.get(&pool).map(|p| p.supervision)
    }

    /// The live workers, in pid order.
    fn workers(&self) -> Vec<i32> {
        self.procs.values().filter(|p| matches!(p.kind, ProcKind::Worker { .. }) && p.life != Life::Dead).map(|p| p.pid).collect()
    }

    fn nth_worker(&self, nth: usize) -> Option<i32> {
        let w = self.workers();
        (!w.is_empty()).then(|| w[nth % w.len()])
    }

    /// Gives the core an event (or holds it while the manager is stopped), then its commands.
    fn deliver(&mut self, event: Event) -> Checked {
        if self.stalled_until.is_some() {
            self.held.push(event);
            return Ok(());
        }
        if let Event::Exited { pid, .. } = &event {
            self.exit_seen.insert(pid.0);
        }
        let before: HashMap<usize, u64> = self.core.pools.iter().map(|(&i, p)| (i, p.restarts.not_before())).collect();
        self.board.woken = false;
        self.looked_at = self.now;
        self.core.handle(self.now, &self.board, event);
        self.commands_after(&before)?;
        self.publish_wake_by();
        Ok(())
    }

    fn publish_wake_by(&mut self) {
        self.board.wake_by = self.core.poll_timeout().unwrap_or(u64::MAX);
    }

    fn commands(&mut self) -> Checked {
        let before: HashMap<usize, u64> = self.core.pools.iter().map(|(&i, p)| (i, p.restarts.not_before())).collect();
        self.commands_after(&before)
    }

    /// Carries out the core's commands as the driver would, checking the laws on each.
    fn commands_after(&mut self, not_before: &HashMap<usize, u64>) -> Checked {
        while let Some(command) = self.core.poll_command() {
            let event = self.carry_out(command, not_before)?;
            if let Some(event) = event {
                self.core.handle(self.now, &self.board, event);
            }
        }
        Ok(())
    }

    fn carry_out(&mut self, command: Command, not_before: &HashMap<usize, u64>) -> Result<Option<Event>, Violation> {
        match command {
            Command::Fork { pool, slot, generation, job } => self.fork(pool, slot, generation, job, not_before),
            Command::Signal { pid, sig } => self.signal(pid.0, sig).map(|()| None),
            Command::Board(w) => {
                self.board.write(&w, self.now);
                Ok(None)
            }
            Command::Ready => {
                self.ready_told += 1;
                if self.ready_told + self.start_failed_told > 1 {
                    return fail("verdict once", "the start's verdict was told twice".into());
                }
                Ok(None)
            }
            Command::StartFailed(why) => {
                self.start_failed_told += 1;
                self.note(format!("start failed: {why}"));
                if self.ready_told + self.start_failed_told > 1 {
                    return fail("verdict once", "the start's verdict was told twice".into());
                }
                if !self.pid_file_removed || self.procs.values().any(|p| p.life != Life::Dead && p.kind != ProcKind::NewManager) {
                    return fail("verdict after cleanup", "the start's failure was told before the cleanup".into());
                }
                Ok(None)
            }
            Command::PidFile(PidFileOp::Remove) => {
                self.pid_file_removed = true;
                Ok(None)
            }
            Command::RemoveSocketFiles => {
                // The sockets' files belong to whichever manager serves on: never removed by one
                // that handed them over, nor by a new one whose old manager runs.
                let handed_over = self.core.upgrade.as_ref().is_some_and(|u| u.state == super::upgrade::State::TookOver);
                if handed_over || self.core.upgraded_from.is_some() {
                    return fail("socket files kept", "the socket files were removed by a manager that does not serve on".into());
                }
                Ok(None)
            }
            Command::StartUpgrade { hold } => Ok(self.start_upgrade(hold, self.pending_upgrade)),
            Command::ReopenLogs => Ok(Some(Event::LogsReopened(true))),
            Command::ListChildren => {
                let orphans = self.procs.values().filter(|p| matches!(p.kind, ProcKind::Orphan { .. }) && p.life != Life::Dead).map(|p| Pid(p.pid)).collect();
                Ok(Some(Event::Orphans(orphans)))
            }
            // The stacks come back at once, or never (the wait for them runs out).
            Command::CaptureStacks { pid, .. } => Ok(self.rng.bool().then_some(Event::StacksTaken { pid })),
            // Queues that wait, fill and overflow at random: the pool grows for them within its
            // bounds (the fork law checks max_children).
            Command::MeasureQueues => {
                let waiting = self.rng.u32(0..40);
                self.overflows += u64::from(waiting.saturating_sub(16));
                let sample = crate::pool::backlog::Sample { listener: "127.0.0.1:80".into(), waiting: waiting.min(17), limit: 16, overflows: Some(self.overflows) };
                Ok(Some(Event::Queues(vec![sample])))
            }
            Command::Notify(_) | Command::Hook(_) | Command::PidFile(_) | Command::ProgramSettings(_) | Command::Plain(_) | Command::CloseListeners => Ok(None),
        }
    }

    fn fork(&mut self, pool: usize, slot: usize, generation: u32, job: Job, not_before: &HashMap<usize, u64>) -> Result<Option<Event>, Violation> {
        self.tally.forks += 1;
        self.last_fork.insert(pool, self.now);
        // No fork before the pool's backoff ends.
        if let Some(&at) = not_before.get(&pool) {
            if self.now < at {
                return fail("backoff", format!("pool {pool} forked at {} ms, before its backoff ends at {at} ms", self.now));
            }
        }
        let Some(p) = self.core.pools.get(&pool) else { return fail("known pool", format!("a fork for pool {pool}, which does not exist")) };
        let kind = p.kind.clone();
        let max = p.limits.max_children as usize;
        // Never more than max_children live workers (of a generation, in a pre-forked pool,
        // whose old generation serves on while the new one starts).
        let live = self
            .procs
            .values()
            .filter(|q| q.life != Life::Dead)
            .filter(|q| matches!(q.kind, ProcKind::Worker { pool: p2, generation: g, .. } if p2 == pool && (kind != Kind::Prefork || g == generation)))
            .count();
        if live >= max {
            return fail("max_children", format!("pool {pool} ({kind:?}) forked with {live} live workers already, at max_children {max}"));
        }
        if kind.singleton() && self.core.upgraded_from.is_some() {
            return fail("singletons held", format!("pool {pool}'s singleton forked while the old manager still runs"));
        }
        if kind == Kind::Supervised && live > 0 {
            return fail("one supervised", "a second supervised worker".into());
        }
        if job == Job::Connection && self.pending_connection == 0 {
            return fail("postfork connection", "a post-forked child with no connection".into());
        }
        if let Some(other) = self.fork_failing {
            self.note(format!("fork for pool {pool} slot {slot} fails"));
            let error = if other { ForkError::Other("Invalid argument") } else { ForkError::Again("Resource temporarily unavailable") };
            return Ok(Some(Event::ForkFailed { slot, error }));
        }
        let pid = self.next_pid;
        self.next_pid += 1;
        let capacity = self.core.capacity(pool);
        let mut b = fastrand::Rng::with_seed(self.seed ^ (pid as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.procs.insert(
            pid,
            Proc::new(pid, ProcKind::Worker { slot, pool, generation }, self.now, Life::Starting, capacity),
        );
        self.note(format!("fork pool {pool} slot {slot} generation {generation}: pid {pid}"));
        // How its start goes: most come up; some die first; some never come up (not once the
        // faults have stopped).
        match if self.quiet { 19 } else { b.u8(..20) } {
            0 => self.schedule(b.u64(0..300), WorldEvent::Exit { pid, status: (0, 1) }),
            1 => self.schedule(b.u64(0..300), WorldEvent::Exit { pid, status: (1, 11) }),
            2 => {}
            _ => self.schedule(b.u64(0..200), WorldEvent::Ready { pid }),
        }
        if job == Job::Connection {
            self.pending_connection -= 1;
        }
        if matches!(job, Job::Task { .. }) && self.core.pools.get(&pool).and_then(|p| p.group()).is_some_and(|g| g.model == TaskModel::OneShot) {
            // One job, then the end.
            self.schedule(b.u64(200..5_000), WorldEvent::Exit { pid, status: EXIT_0 });
        }
        self.schedule(1_000, WorldEvent::Beat { pid });
        Ok(Some(Event::Forked { slot, pid: Pid(pid) }))
    }

    fn signal(&mut self, pid: i32, sig: Sig) -> Checked {
        if self.exit_seen.contains(&pid) {
            return fail("no signal after exit", format!("pid {pid} was signalled ({}) after its exit was seen", sig.name()));
        }
        let now = self.now;
        let Some(p) = self.procs.get_mut(&pid) else {
            return fail("no stranger signalled", format!("a signal ({}) to pid {pid}, which the manager never had", sig.name()));
        };
        if p.life == Life::Dead {
            // Exited, not reaped yet: the signal finds a zombie.
            return Ok(());
        }
        // Each rung of the ladder once, in order.
        if matches!(sig, Sig::Quit | Sig::Term | Sig::Kill) {
            let rank = |s: Sig| match s {
                Sig::Quit => 0,
                Sig::Term => 1,
                _ => 2,
            };
            if let Some(&(_, last)) = p.signals.iter().rev().find(|(_, s)| matches!(s, Sig::Quit | Sig::Term | Sig::Kill)) {
                if rank(last) >= rank(sig) && matches!(p.kind, ProcKind::Worker { .. }) {
                    return fail("ladder order", format!("pid {pid} got {} after {}: the ladder went down or repeated", sig.name(), last.name()));
                }
            }
        }
        p.signals.push((now, sig));
        let (kind, life, deaf_quit) = (p.kind, p.life, p.deaf_quit);
        // The stop as it is now (a graceful one may have become fast).
        let stop_kind = self.core.stop.map(|k| k == super::StopKind::Graceful);
        match (kind, sig) {
            (_, Sig::Kill) => {
                let killed = match kind {
                    ProcKind::Orphan { .. } => true,
                    ProcKind::Worker { .. } => life != Life::Starting && self.stopping_for_stop(pid),
                    ProcKind::NewManager => false,
                };
                if stop_kind.is_some() && killed {
                    if let Some(p) = self.procs.get_mut(&pid) {
                        p.escalation = Some(BY_KILL);
                    }
                }
                self.end(pid, BY_KILL, 0);
            }
            // A process that ignores TERM and, as it is stopped, starts another like it (which
            // comes to the manager once it is gone): the stop must end anyway.
            (ProcKind::Orphan { deaf: true }, Sig::Term) => {
                let child = self.next_pid;
                self.next_pid += 1;
                self.procs.insert(child, Proc::new(child, ProcKind::Orphan { deaf: true }, now, Life::Running, 0));
            }
            (_, Sig::Term) => {
                if stop_kind == Some(true) && matches!(life, Life::Running | Life::Exiting) && matches!(kind, ProcKind::Worker { .. }) && self.stopping_for_stop(pid) {
                    if let Some(p) = self.procs.get_mut(&pid) {
                        p.escalation = Some(BY_TERM);
                    }
                }
                let after = self.rng.u64(0..5);
                self.end(pid, BY_TERM, after);
            }
            (ProcKind::Worker { pool, slot, .. }, Sig::Quit) => match life {
                Life::Starting => {
                    if let Some(p) = self.procs.get_mut(&pid) {
                        p.quit_pending = true;
                    }
                }
                Life::Running if !deaf_quit => {
                    self.board.exiting(pool, slot, now);
                    if let Some(p) = self.procs.get_mut(&pid) {
                        p.life = Life::Exiting;
                    }
                    let after = self.rng.u64(0..1_500);
                    self.end(pid, EXIT_0, after);
                }
                _ => {}
            },
            (ProcKind::NewManager, Sig::Quit) => self.end(pid, EXIT_0, 50),
            _ => {}
        }
        Ok(())
    }

    /// Whether the core stops `pid` for the daemon's stop (not a verdict or a retirement).
    fn stopping_for_stop(&self, pid: i32) -> bool {
        self.core.procs.iter().any(|p| p.pid == Some(Pid(pid)) && p.stopping.is_some_and(|s| s.why == super::procs::Why::Stop))
    }

    /// `pid` ends with `status` after `after` ms, unless it ends sooner already.
    fn end(&mut self, pid: i32, status: (i32, i32), after: u64) {
        let at = self.now.saturating_add(after);
        let Some(p) = self.procs.get_mut(&pid) else { return };
        if p.ending.is_some_and(|t| t <= at) {
            return;
        }
        p.ending = Some(at);
        self.schedule(after, WorldEvent::Exit { pid, status });
    }

    fn start_upgrade(&mut self, hold: bool, new: Option<NewManager>) -> Option<Event> {
        let new = new.unwrap_or(NewManager::Ready { after_ms: 100 });
        let pid = self.next_pid;
        self.next_pid += 1;
        self.tally.upgrades += 1;
        self.procs.insert(
            pid,
            Proc::new(pid, ProcKind::NewManager, self.now, Life::Running, 0),
        );
        self.note(format!("upgrade started: new manager pid {pid} ({new:?}, hold {hold})"));
        match new {
            NewManager::Ready { after_ms } => self.schedule(after_ms, WorldEvent::NewManagerSays { pid, ok: true }),
            NewManager::Fails { after_ms } => self.schedule(after_ms, WorldEvent::NewManagerSays { pid, ok: false }),
            NewManager::Dies { after_ms, code } => self.schedule(after_ms, WorldEvent::Exit { pid, status: (0, code) }),
            NewManager::Silent => {}
        }
        Some(Event::UpgradeStarted { child: Pid(pid), hold })
    }

    // -----------------------------------------------------------------------------------------

    /// Runs the world event due now.
    fn world(&mut self, e: WorldEvent) -> Checked {
        match e {
            WorldEvent::Ready { pid } => {
                let Some(p) = self.procs.get(&pid).cloned() else { return Ok(()) };
                let ProcKind::Worker { slot, pool, .. } = p.kind else { return Ok(()) };
                if p.life != Life::Starting || p.ending.is_some() {
                    return Ok(());
                }
                if let Some(q) = self.procs.get_mut(&pid) {
                    q.life = Life::Running;
                }
                self.board.ready(pool, slot, p.started_ms, p.capacity, self.now);
                if p.quit_pending {
                    self.board.exiting(pool, slot, self.now);
                    if let Some(q) = self.procs.get_mut(&pid) {
                        q.life = Life::Exiting;
                    }
                    self.end(pid, EXIT_0, 10);
                } else if self.core.pools.get(&pool).is_some_and(|p| p.kind == Kind::Postfork) {
                    // Its one connection: served, then the end.
                    self.board.begin_request(pool, slot, p.started_ms, p.capacity, self.now);
                    let ms = self.rng.u64(1..2_000);
                    self.schedule(ms, WorldEvent::RequestEnds { pid });
                }
            }
            WorldEvent::Beat { pid } => {
                let Some(p) = self.procs.get(&pid).cloned() else { return Ok(()) };
                let ProcKind::Worker { slot, pool, .. } = p.kind else { return Ok(()) };
                if p.life == Life::Dead {
                    return Ok(());
                }
                if !p.hung && p.life != Life::Starting {
                    if let Some(v) = self.board.slots.get_mut(&slot) {
                        v.heartbeat_ms = self.now;
                    }
                    let v = self.board.view(slot);
                    let (rss, cpu) = (v.rss.max(8 << 20), v.cpu_ms + 10);
                    self.board.measured(pool, slot, p.started_ms, rss, cpu, self.now);
                }
                self.schedule(1_000, WorldEvent::Beat { pid });
            }
            WorldEvent::RequestEnds { pid } => {
                let Some(p) = self.procs.get(&pid).cloned() else { return Ok(()) };
                let ProcKind::Worker { slot, pool, .. } = p.kind else { return Ok(()) };
                if p.life == Life::Dead {
                    return Ok(());
                }
                self.board.end_request(pool, slot, p.capacity, self.now);
                if self.core.pools.get(&pool).is_some_and(|p| p.kind == Kind::Postfork) {
                    self.board.exiting(pool, slot, self.now);
                    self.end(pid, EXIT_0, 1);
                }
            }
            WorldEvent::Exit { pid, status } => {
                let Some(p) = self.procs.get_mut(&pid) else { return Ok(()) };
                // Dead already, or a sooner end came meanwhile (TERM during a graceful exit).
                if p.life == Life::Dead || p.ending.is_some_and(|t| t < self.now) {
                    return Ok(());
                }
                p.life = Life::Dead;
                p.ended = Some(status_of(status));
                if p.escalation == Some(status) || (p.escalation.is_some() && status == BY_KILL) {
                    self.escalated = true;
                }
                self.tally.deaths += 1;
                let line = format!("pid {pid} exits: {}", status_of(status).describe());
                self.note(line);
                self.deliver(Event::Exited { pid: Pid(pid), status: status_of(status) })?;
            }
            WorldEvent::NewManagerSays { pid, ok } => {
                if self.procs.get(&pid).is_some_and(|p| p.life != Life::Dead) {
                    let text = if ok { "OK\n".to_string() } else { "ERR its workers cannot start\n".to_string() };
                    self.deliver(Event::UpgradeSaid { text, whole: true })?;
                    // A new manager that took over and is not held stops this one: nothing more
                    // to do here; one that failed exits once it has said so.
                    if !ok {
                        self.end(pid, (0, 1), 20);
                    }
                }
            }
            WorldEvent::StallEnds => {
                self.stalled_until = None;
                self.lenient_until = self.now.saturating_add(self.longest_timeout());
                self.note("the manager runs again".into());
                // As the driver's first wake-up after the stop: the dead first, then the rest.
                let (mut held, rest): (Vec<Event>, Vec<Event>) = std::mem::take(&mut self.held).into_iter().partition(|e| matches!(e, Event::Exited { .. }));
                held.extend(rest);
                for event in held {
                    self.deliver(event)?;
                }
            }
            WorldEvent::OldManagerExits => self.deliver(Event::OldManagerGone)?,
        }
        if self.board.woken {
            self.deliver(Event::Woken)?;
        }
        // The driver looks once what a wake-up brought is told.
        if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
            self.deliver(Event::Tick)?;
        }
        Ok(())
    }

    fn longest_timeout(&self) -> u64 {
        self.core.pools.values().filter_map(|p| p.supervision.heartbeat_timeout_ms.or(p.supervision.request_timeout_ms)).max().unwrap_or(0)
    }

    fn reload_config(&self, good: bool, variant: u64) -> Result<Resolved, Vec<String>> {
        if !good {
            return Err(vec!["sim.toml: prefork = 0: 0 is too few".into()]);
        }
        let mut rng = fastrand::Rng::with_seed(variant);
        let postfork = self.core.config().postfork;
        let given = given_for(&mut rng, postfork);
        let config = resolve(&given, self.scenario.model).map_err(|p| p.iter().map(|p| p.to_string()).collect::<Vec<_>>())?;
        let mut groups = self.scenario.groups.clone();
        if let Some(g) = groups.first_mut().filter(|_| rng.bool()) {
            g.workers = rng.u32(1..=3);
            g.max_workers = g.workers + if g.model == TaskModel::OneShot { 1 } else { 0 };
        }
        if rng.u8(..4) == 0 {
            groups.pop();
        }
        // The program's own setting: one reload in three changes it.
        let delay = (variant % 3).to_string();
        let app = crate::app::AppResolved { value: std::sync::Arc::new(()), shown: vec![("delay".into(), delay, crate::app::From::Default)] };
        Ok(Resolved { config, groups, app: Some(app) })
    }

    /// Hands a reload to the manager, by the control channel or by HUP; checks the law that a
    /// reload reaches every worker that could read what changed.
    fn reload(&mut self, resolved: Result<Resolved, Vec<String>>, by_request: bool) -> Checked {
        let before: Vec<(usize, u32)> = self.core.pools.values().filter(|p| !p.removed).map(|p| (p.index, p.generation)).collect();
        let app_before = self.core.app.clone();
        let app_after = resolved.as_ref().ok().and_then(|r| r.app.as_ref()).map(|a| a.shown.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect::<Vec<_>>());
        if by_request {
            self.request(Request::Reload(Box::new(resolved)))?;
        } else {
            self.deliver(Event::Signal(Sig::Hup))?;
            self.deliver(Event::Reload(Box::new(resolved)))?;
        }
        // Applied, and the program's setting changed: no pool keeps the old value.
        if app_after.is_some() && app_after != app_before && self.core.app == app_after {
            for (i, generation) in before {
                let Some(pool) = self.core.pools.get(&i).filter(|p| !p.removed) else { continue };
                if pool.generation <= generation {
                    return fail("reload reaches every worker", format!("[app] changed, and pool {} stayed at generation {generation}", pool.name));
                }
            }
        }
        Ok(())
    }

    /// Carries out one action from outside.
    fn act(&mut self, action: Action) -> Checked {
        self.note(format!("{action:?}"));
        match action {
            Action::Signal(Sig::Hup) => {
                let variant = self.rng.u64(..);
                let good = self.rng.u8(..4) != 0;
                let resolved = self.reload_config(good, variant);
                self.reload(resolved, false)?;
            }
            Action::Signal(Sig::Usr2) => {
                self.pending_upgrade = Some(NewManager::Ready { after_ms: self.rng.u64(10..2_000) });
                self.deliver(Event::Signal(Sig::Usr2))?;
            }
            Action::Signal(sig) => self.deliver(Event::Signal(sig))?,
            Action::Status => self.request(Request::Status)?,
            Action::Stop { graceful } => {
                self.request(Request::Stop { graceful })?;
            }
            Action::Reload { good, variant, by_request } => {
                let resolved = self.reload_config(good, variant);
                self.reload(resolved, by_request)?;
            }
            Action::Backout => self.request(Request::Backout)?,
            Action::Upgrade { new, hold, by_request } => {
                if self.stalled_until.is_some() {
                    return Ok(());
                }
                if by_request {
                    if self.core.may_upgrade().is_ok() {
                        if let Some(e) = self.start_upgrade(hold, Some(new)) {
                            self.deliver(e)?;
                        }
                    }
                } else {
                    self.pending_upgrade = Some(new);
                    self.deliver(Event::Signal(Sig::Usr2))?;
                }
            }
            Action::End { nth, how } => {
                if let Some(pid) = self.nth_worker(nth) {
                    let status = match how {
                        Ending::Kill => BY_KILL,
                        Ending::Term => BY_TERM,
                        Ending::Segv => (1, 11),
                        Ending::Exit(c) => (0, c),
                    };
                    self.end(pid, status, 0);
                }
            }
            Action::Hang { nth } => {
                if let Some(p) = self.nth_worker(nth).and_then(|pid| self.procs.get_mut(&pid)) {
                    p.hung = true;
                }
            }
            Action::Grow { nth } => {
                if let Some(pid) = self.nth_worker(nth) {
                    if let Some(p) = self.procs.get(&pid).cloned() {
                        if let ProcKind::Worker { slot, pool, .. } = p.kind {
                            if p.life == Life::Running && !p.hung {
                                self.board.measured(pool, slot, p.started_ms, 1 << 40, 1 << 30, self.now);
                            }
                        }
                    }
                }
            }
            Action::Request { nth, ms } => {
                if let Some(pid) = self.nth_worker(nth) {
                    if let Some(p) = self.procs.get(&pid).cloned() {
                        if let ProcKind::Worker { slot, pool, .. } = p.kind {
                            let serves = self.core.pools.get(&pool).is_some_and(|p| p.kind == Kind::Prefork || p.kind.singleton());
                            if p.life == Life::Running && !p.hung && serves && self.board.view(slot).active < p.capacity {
                                self.board.begin_request(pool, slot, p.started_ms, p.capacity, self.now);
                                self.schedule(ms, WorldEvent::RequestEnds { pid });
                            }
                        }
                    }
                }
            }
            Action::Deaf { nth } => {
                if let Some(p) = self.nth_worker(nth).and_then(|pid| self.procs.get_mut(&pid)) {
                    p.deaf_quit = true;
                }
            }
            Action::ForkFailures(mode) => self.fork_failing = mode,
            Action::LeaveOrphan { nth, deaf } => {
                if self.nth_worker(nth).is_some() {
                    let pid = self.next_pid;
                    self.next_pid += 1;
                    self.procs.insert(
                        pid,
                        Proc::new(pid, ProcKind::Orphan { deaf }, self.now, Life::Running, 0),
                    );
                    if !deaf && self.rng.bool() {
                        let after = self.rng.u64(10..30_000);
                        self.end(pid, EXIT_0, after);
                    }
                }
            }
            Action::Connection => {
                if self.stalled_until.is_none() && self.core.accepting(self.now) {
                    self.pending_connection += 1;
                    self.deliver(Event::Accepted)?;
                    // Not taken: the driver lets the client go.
                    self.pending_connection = 0;
                }
            }
            Action::Suspend { ms } => {
                // Nothing runs: every scheduled event moves by the jump, and the clock jumps.
                let events: Vec<_> = std::mem::take(&mut self.queue).into_iter().collect();
                for Reverse((at, seq, e)) in events {
                    self.queue.push(Reverse((at.saturating_add(ms), seq, e)));
                }
                for p in self.procs.values_mut() {
                    if let Some(t) = p.ending.as_mut() {
                        *t = t.saturating_add(ms);
                    }
                }
                if let Some(until) = self.stalled_until.as_mut() {
                    *until = until.saturating_add(ms);
                }
                self.now = self.now.saturating_add(ms);
                self.lenient_until = self.now.saturating_add(self.longest_timeout());
                // The refill law's clock counts the time the machine ran.
                self.below_since.clear();
                self.last_fork.clear();
                if self.stalled_until.is_none() {
                    self.deliver(Event::Tick)?;
                }
            }
            Action::StallManager { ms } => {
                if self.stalled_until.is_none() {
                    self.stalled_until = Some(self.now.saturating_add(ms));
                    self.schedule(ms, WorldEvent::StallEnds);
                }
            }
        }
        if self.board.woken && self.stalled_until.is_none() {
            self.deliver(Event::Woken)?;
        }
        if self.stalled_until.is_none() && self.core.poll_timeout().is_some_and(|t| t <= self.now) {
            self.deliver(Event::Tick)?;
        }
        Ok(())
    }

    fn request(&mut self, request: Request) -> Checked {
        if self.stalled_until.is_some() {
            return Ok(());
        }
        let before: HashMap<usize, u64> = self.core.pools.iter().map(|(&i, p)| (i, p.restarts.not_before())).collect();
        let stop = matches!(request, Request::Stop { .. });
        self.looked_at = self.now;
        let _ = self.core.request(self.now, &self.board, request);
        self.commands_after(&before)?;
        if stop && self.stop_began.is_none() {
            self.stop_began = self.core.stop.map(|k| (self.now, k == super::StopKind::Graceful));
        }
        self.publish_wake_by();
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // The laws, after every step.

    fn check(&mut self) -> Checked {
        if self.core.stop.is_some() && self.stop_began.is_none() {
            self.stop_began = self.core.stop.map(|k| (self.now, k == super::StopKind::Graceful));
        }
        // Upgrades end in one outcome (a held one that took over may be backed out later).
        if let Some(o) = &self.core.last_upgrade {
            let before = self.upgrade_outcomes.insert(o.new_pid, o.outcome);
            match (before, o.outcome) {
                (Some("took over"), "rolled back") | (Some("rolled back"), "took over") | (Some("rolled back"), "backed out") => {
                    return fail("one upgrade outcome", format!("the upgrade to pid {} ended twice: {before:?}, then {}", o.new_pid, o.outcome));
                }
                _ => {}
            }
        }
        if self.stalled_until.is_some() {
            return Ok(());
        }
        // A burst of reloads piles up no generations: the workers of an older generation of a
        // pre-forked pool that are still starting (they serve nobody) are being stopped.
        for p in self.core.procs.iter() {
            let Some(pool) = self.core.pools.get(&p.pool) else { continue };
            if pool.kind == Kind::Prefork && p.generation < pool.generation && p.stopping.is_none() && self.core.state_of(p, &self.board).before_ready() {
                return fail("no pile-up", format!("pid {:?} of generation {} is still starting, and generation {} is the pool's", p.pid, p.generation, pool.generation));
            }
        }
        let guard = self.core.guard;
        let wake = self.core.poll_timeout();
        for p in self.core.procs.iter() {
            let Some(pid) = p.pid else { continue };
            let Some(s) = self.settings(p.pool) else { continue };
            let Some(sim) = self.procs.get(&pid.0) else { continue };
            if sim.life == Life::Dead {
                continue;
            }
            // A stopping worker's ladder: every rung due has been sent.
            let looked = self.looked_at == self.now;
            if let Some(stopping) = p.stopping {
                if let Some((rung, due)) = stopping.next_due(&s) {
                    if self.now >= due && looked {
                        return fail("rung on time", format!("pid {} is past its {rung:?} rung (due at {due} ms) and has not had it", pid.0));
                    }
                    if wake.map_or(true, |w| w > due) {
                        return fail("wake for rungs", format!("pid {}'s {rung:?} rung is due at {due} ms, and the manager sleeps until {wake:?}", pid.0));
                    }
                }
            }
            // A worker's verdict (a stopping one's request deadline too): given when due, and
            // never slept past.
            let facts = Facts { stopping: p.stopping.map(|s| s.ladder.rung), ..self.board.facts(p.slot, p.started_ms) };
            if self.now < self.lenient_until {
                continue;
            }
            if let Some(v) = supervise::judge(&facts, &s, self.now, &guard) {
                if looked {
                    return fail("verdict on time", format!("a verdict ({v:?}) against pid {} is due and was not given", pid.0));
                }
                if wake.map_or(true, |w| w > self.now) {
                    return fail("wake for verdicts", format!("a verdict ({v:?}) against pid {} is due, and the manager sleeps until {wake:?}", pid.0));
                }
            } else if let Some(due) = supervise::next_check(&facts, &s, &guard) {
                if wake.map_or(true, |w| w > due) {
                    return fail("wake for verdicts", format!(
                        "a verdict against pid {} ({:?}) can come at {due} ms, and the manager sleeps until {wake:?}",
                        pid.0, facts.activity
                    ));
                }
            }
        }
        // A pool below its floor, not in a crash loop, gets a fork at least every backoff step.
        if self.core.stop.is_none() && !self.core.backed_out && !self.core.singletons_held() {
            for (&i, pool) in &self.core.pools {
                let floor = pool.limits.workers as usize;
                let ours: Vec<_> = self.core.procs.iter().filter(|p| p.pool == i).collect();
                let live = ours.iter().filter(|p| p.stopping.is_none() && p.generation == pool.generation).count();
                // Room to fork: the pool's bound counts its stopping workers too (a singleton's
                // old worker finishes its job first).
                let room = ours.len() < pool.limits.max_children as usize;
                let held = pool.kind == Kind::Postfork || pool.removed || pool.restarts.in_crash_loop();
                if live >= floor || held || !room {
                    self.below_since.remove(&i);
                    continue;
                }
                let since = *self.below_since.entry(i).or_insert(self.now);
                let last = self.last_fork.get(&i).copied().unwrap_or(0).max(since).max(pool.next_ms);
                let after_backoff = self.now > pool.restarts.not_before().saturating_add(1_000);
                if self.now.saturating_sub(last) > BACKOFF_MAX_MS + 1_000 && after_backoff && self.now >= self.lenient_until {
                    let procs: Vec<String> = ours.iter().map(|p| format!("slot {} gen {} pid {:?} stopping {:?}", p.slot, p.generation, p.pid, p.stopping.map(|s| s.why))).collect();
                    return fail(
                        "refill",
                        format!(
                            "pool {} has been below its floor ({live} of {floor}) since {since} ms with no fork since {last} ms; generation {}, not before {}, next {}, waiting {}; [{}]",
                            pool.name,
                            pool.generation,
                            pool.restarts.not_before(),
                            pool.next_ms,
                            pool.waiting_for_pool,
                            procs.join("; ")
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------

    /// Runs the world until `until` (or until the core is done), checking after every step.
    fn run_until(&mut self, until: u64) -> Checked {
        loop {
            if self.core.finished().is_some() {
                return Ok(());
            }
            let core_at = if self.stalled_until.is_some() { None } else { self.core.poll_timeout() };
            let world_at = self.queue.peek().map(|Reverse((at, _, _))| *at);
            let Some(at) = [core_at, world_at].into_iter().flatten().min() else { return Ok(()) };
            if at > until {
                self.now = self.now.max(until);
                return Ok(());
            }
            self.now = self.now.max(at);
            self.tally.steps += 1;
            if world_at == Some(at) {
                if let Some(Reverse((_, _, e))) = self.queue.pop() {
                    self.world(e)?;
                }
            } else {
                // A manager that asks to look again at the time it just looked spins.
                self.spins = if self.looked_at == self.now { self.spins + 1 } else { 0 };
                if self.spins > 100 {
                    return fail("no spin", format!("the manager asked to look at {} ms again and again", self.now));
                }
                self.deliver(Event::Tick)?;
            }
            self.check()?;
        }
    }
}

/// Runs one history; `Ok` with its tally, or the law it broke and its log.
fn run(seed: u64, scenario: Scenario, steps: &[Step]) -> Result<Tally, (Violation, Vec<String>)> {
    let mut w = match World::new(seed, scenario) {
        Ok(w) => w,
        Err(v) => return Err((v, Vec::new())),
    };
    let outcome = (|| -> Checked {
        w.check()?;
        for step in steps {
            let until = w.now.saturating_add(step.after_ms);
            w.run_until(until)?;
            if w.core.finished().is_some() {
                break;
            }
            w.act(step.action.clone())?;
            w.check()?;
        }
        // Faults stop: every pool converges to its limits.
        if w.core.finished().is_none() && w.core.stop.is_none() {
            w.fork_failing = None;
            w.quiet = true;
            for p in w.procs.values_mut() {
                p.deaf_quit = false;
            }
            if let Some(until) = w.stalled_until {
                w.run_until(until)?;
            }
            let quiet = w.now.saturating_add(180_000);
            w.run_until(quiet)?;
            // (An upgrade may have taken over meanwhile: this manager stops then.)
            if w.core.stop.is_none() {
                w.converged()?;
            }
            // Then a stop, which ends.
            let graceful = w.rng.bool();
            w.request(Request::Stop { graceful })?;
        }
        let limit = w.now.saturating_add(600_000);
        w.run_until(limit)?;
        let Some(code) = w.core.finished() else {
            let core: Vec<String> = w.core.procs.iter().map(|p| format!("slot {} pid {:?} pool {} stopping {:?}", p.slot, p.pid, p.pool, p.stopping.map(|s| (s.ladder, s.why)))).collect();
            let sim: Vec<String> = w.procs.values().filter(|p| p.life != Life::Dead).map(|p| format!("{} {:?} {:?} {:?}", p.pid, p.kind, p.life, p.signals)).collect();
            return fail("stop ends", format!("the stop did not end within 600 s (stop began at {:?}); the core has [{}]; alive: [{}]; next look {:?}", w.stop_began, core.join("; "), sim.join("; "), w.core.poll_timeout()));
        };
        if let Some(p) = w.procs.values().find(|p| p.life != Life::Dead && p.kind != ProcKind::NewManager) {
            return fail("nothing left", format!("the manager exited with pid {} ({:?}) alive", p.pid, p.kind));
        }
        let expected = if w.start_failed_told > 0 { 1 } else if w.escalated { 3 } else { 0 };
        if code != expected && !(code == 3 && expected == 1) {
            return fail("exit status", format!("the manager exited {code}, expected {expected} (escalated: {})", w.escalated));
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => Ok(w.tally),
        Err(v) => Err((v, w.log)),
    }
}

impl World {
    /// Once faults have stopped for long enough, each pool has its size.
    fn converged(&self) -> Checked {
        if self.core.backed_out {
            return Ok(());
        }
        for (&i, pool) in &self.core.pools {
            if pool.removed || (pool.kind.singleton() && self.core.singletons_held()) {
                continue;
            }
            let live: Vec<_> = self.core.procs.iter().filter(|p| p.pool == i && p.stopping.is_none()).collect();
            let l = pool.limits;
            let (low, high) = match &pool.kind {
                Kind::Postfork => (0, 0),
                Kind::Supervised => (1, 1),
                // Idle, a pool rests between its floor (and min_spare) and max_spare.
                Kind::Prefork => (l.workers.max(l.min_spare).min(l.max_children), l.workers.max(l.max_spare).min(l.max_children)),
                // Its workers come and go with each job: the refill law watches it.
                Kind::Task(g) if g.model == TaskModel::OneShot => continue,
                Kind::Task(_) => (l.workers, l.workers),
            };
            let n = live.len() as u32;
            if n < low || n > high {
                return fail("convergence", format!("pool {} did not converge: {n} workers, wanted {low} to {high} ({l:?})", pool.name));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The test: thousands of histories in CI, more when asked; a failure shrinks to its shortest
// history and prints the seed that replays it.

/// The shortest sub-history (steps dropped one at a time, then their waits shortened) that
/// still breaks a law.
fn shrink(seed: u64, scenario: &Scenario, steps: Vec<Step>, law: &str) -> Vec<Step> {
    let mut best = steps;
    let breaks = |steps: &[Step]| matches!(run(seed, scenario.clone(), steps), Err((v, _)) if v.law == law);
    let mut changed = true;
    while changed {
        changed = false;
        let mut i = 0;
        while i < best.len() {
            let mut shorter = best.clone();
            shorter.remove(i);
            if breaks(&shorter) {
                best = shorter;
                changed = true;
            } else {
                i += 1;
            }
        }
        for i in 0..best.len() {
            if best[i].after_ms > 0 {
                let mut quicker = best.clone();
                quicker[i].after_ms = 0;
                if breaks(&quicker) {
                    best = quicker;
                    changed = true;
                }
            }
        }
    }
    best
}

/// Runs the histories of `seeds`; panics with the first broken law, shrunk.
fn explore(seeds: impl Iterator<Item = u64>) -> (u64, Tally) {
    let mut total = Tally::default();
    let mut histories = 0;
    for seed in seeds {
        let (scenario, steps) = history(seed);
        match run(seed, scenario.clone(), &steps) {
            Ok(t) => {
                histories += 1;
                total.steps += t.steps;
                total.forks += t.forks;
                total.deaths += t.deaths;
                total.verdicts += t.verdicts;
                total.upgrades += t.upgrades;
            }
            Err((v, _)) => {
                let (law, why) = (v.law, v.why);
                let short = shrink(seed, &scenario, steps, law);
                let log = match run(seed, scenario.clone(), &short) {
                    Err((v, log)) => format!("{}\n{}", v.why, log.join("\n")),
                    Ok(_) => why.clone(),
                };
                let shown: Vec<String> = short.iter().map(|s| format!("  after {:>6} ms: {:?}", s.after_ms, s.action)).collect();
                panic!(
                    "the manager broke a law ({law}) in history {seed}: {why}\n\nscenario: {}\n\nshortest history ({} steps):\n{}\n\nits run:\n{log}\n\nreplay: DAEMON_SIM_SEED={seed} cargo test -p daemon-runtime --lib simulation -- --nocapture",
                    scenario.describe(),
                    short.len(),
                    shown.join("\n")
                );
            }
        }
    }
    (histories, total)
}

#[test]
fn simulation() {
    let seeds: Box<dyn Iterator<Item = u64>> = match std::env::var("DAEMON_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => Box::new(std::iter::once(seed)),
        None => {
            let n = std::env::var("DAEMON_SIM_HISTORIES").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000u64);
            // Each run explores new histories; the first of them is printed, to replay.
            let first = std::env::var("DAEMON_SIM_FIRST").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..u64::MAX / 2));
            eprintln!("simulation: histories {first}..{}", first + n);
            Box::new(first..first + n)
        }
    };
    let (histories, t) = explore(seeds);
    // Straight to the process's stderr, past the test harness's capture: the count shows in
    // every `cargo test`, passing or not.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "simulation: {histories} histories, {} steps, {} forks, {} deaths, {} upgrades: every law held",
        t.steps, t.forks, t.deaths, t.upgrades
    );
}
