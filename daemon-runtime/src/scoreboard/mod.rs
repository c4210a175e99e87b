//! The scoreboard: one slot per worker in shared memory, written by its worker with atomics and
//! read by the manager.
//!
//! A state change is a store, not a system call. A worker wakes the manager (one byte down a
//! pipe) only when a change crosses a threshold the manager cares about: the number of idle
//! workers falling below `min_spare` (or to none) or rising above `max_spare`, a worker becoming ready while
//! the manager waits for the pool, a worker starting to exit, or a change that brings a
//! verdict against the worker before the manager means to look (`supervise::must_wake`,
//! against the time the manager publishes before it sleeps and the pool's rules).

use std::os::fd::OwnedFd;

use nix::sys::eventfd::{EfdFlags, EventFd};
use std::sync::Arc;
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::pool::supervise::{self, Activity, Facts, Settings};
use crate::sys::{coarse_ms, monotonic_ms, monotonic_ns, Shared, ZeroValid};

/// The scoreboard has room for the largest pool the rule book accepts, so a reload can grow the
/// pool without remapping. Untouched slots cost address space, not memory.
pub(crate) const SLOTS: usize = 4096;

/// A worker's state, as the letters of Apache's mod_status and POE's scoreboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// ' ' no worker in this slot.
    #[default]
    Empty = b' ',
    /// 'F' the manager is forking it.
    Forking = b'F',
    /// 'f' forked, the child is setting itself up.
    Forked = b'f',
    /// '.' running its on_child hooks, not accepting yet.
    Starting = b'.',
    /// 'w' waiting for a connection.
    Waiting = b'w',
    /// 'r' serving (at least) one connection.
    Request = b'r',
    /// 'l' serving a long request (set by the application).
    Long = b'l',
    /// 'e' exiting: accepts no more, finishing what it has.
    Exiting = b'e',
}

impl State {
    pub fn letter(self) -> char {
        self as u8 as char
    }

    /// A worker that has not been ready yet: being forked, forked, or in its `on_child` hooks.
    pub fn before_ready(self) -> bool {
        matches!(self, State::Forking | State::Forked | State::Starting)
    }

    fn from_u8(b: u8) -> State {
        match b {
            b'F' => State::Forking,
            b'f' => State::Forked,
            b'.' => State::Starting,
            b'w' => State::Waiting,
            b'r' => State::Request,
            b'l' => State::Long,
            b'e' => State::Exiting,
            _ => State::Empty,
        }
    }
}

/// Pools one scoreboard can hold, each with a header of its own.
pub(crate) const POOLS: usize = 64;

#[repr(C, align(64))]
pub(crate) struct Header {
    /// Workers that have room for another connection (a hint for waking the manager; the manager
    /// itself counts from the slots).
    idle: AtomicI64,
    min_spare: AtomicU32,
    max_spare: AtomicU32,
    /// Set while the manager wants to hear of every worker that becomes ready.
    announce_ready: AtomicBool,
    /// How many times workers woke the manager (for `status` and benchmarks).
    wakes: AtomicU64,
    /// Connections in flight in the whole pool, and workers accepting: a worker holding more than
    /// its fair share lets the others accept (see `WorkerSlot::over_share`). Hints, corrected by
    /// the manager when it reaps a worker.
    active_total: AtomicI64,
    /// The workers holding a turn to accept: at most `accept_cap` of them (0: no bound). A
    /// worker holds one while it can take a connection (room, a runtime that turns, descriptors).
    accepting: AtomicI64,
    accept_cap: AtomicU32,
    /// Connections the pool's workers accepted (a standby watching a frozen turn holder sees
    /// it stand still).
    accepted: AtomicU64,
    /// Workers with room waiting for a turn (warm standbys): a turn given back is passed on
    /// (the scoreboard's `join` eventfd) only when one waits.
    standbys: AtomicI64,
    /// Set by the manager while every worker is busy and max_children is reached: only then
    /// does a full worker let a keep-alive client go for a new one.
    saturated: AtomicBool,
    /// The pool's supervision settings, so a worker can tell when a change of its own brings a
    /// verdict due before the manager looks.
    rules: Rules,
}

impl Header {
    /// Whether a turn to accept is free.
    fn turn_free(&self) -> bool {
        let cap = i64::from(self.accept_cap.load(Ordering::SeqCst));
        cap == 0 || self.accepting.load(Ordering::SeqCst) < cap
    }
}

/// The supervision settings a worker reads (milliseconds and bytes; 0 is off).
#[repr(C)]
struct Rules {
    heartbeat_timeout_ms: AtomicU64,
    request_timeout_ms: AtomicU64,
    long_request_timeout_ms: AtomicU64,
    start_timeout_ms: AtomicU64,
    max_rss: AtomicU64,
    max_cpu_ms: AtomicU64,
    manager_judges_requests: AtomicBool,
}

impl Rules {
    fn store(&self, s: &Settings) {
        let put = |a: &AtomicU64, v: Option<u64>| a.store(v.unwrap_or(0), Ordering::Relaxed);
        put(&self.heartbeat_timeout_ms, s.heartbeat_timeout_ms);
        put(&self.request_timeout_ms, s.request_timeout_ms);
        put(&self.long_request_timeout_ms, s.long_request_timeout_ms);
        put(&self.start_timeout_ms, Some(s.start_timeout_ms));
        put(&self.max_rss, s.max_rss);
        put(&self.max_cpu_ms, s.max_cpu_ms);
        self.manager_judges_requests.store(s.manager_judges_requests, Ordering::Relaxed);
    }

    fn load(&self) -> Settings {
        let get = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|&v| v != 0);
        Settings {
            heartbeat_timeout_ms: get(&self.heartbeat_timeout_ms),
            request_timeout_ms: get(&self.request_timeout_ms),
            long_request_timeout_ms: get(&self.long_request_timeout_ms),
            start_timeout_ms: self.start_timeout_ms.load(Ordering::Relaxed),
            max_rss: get(&self.max_rss),
            max_cpu_ms: get(&self.max_cpu_ms),
            // The ladder is the manager's business.
            graceful_ms: 0,
            kill_grace_ms: 0,
            manager_judges_requests: self.manager_judges_requests.load(Ordering::Relaxed),
        }
    }
}

/// What the manager says of itself to every worker.
#[repr(C, align(64))]
struct ManagerLine {
    /// When the manager means to wake next (ms on the monotonic clock); `u64::MAX` while it is
    /// awake (it looks again before it sleeps) or means to sleep until something happens.
    wake_by: AtomicU64,
}

/// One worker's line on the scoreboard. A cache line each, so workers never share one.
#[repr(C, align(64))]
pub(crate) struct Slot {
    state: AtomicU8,
    /// Counted in `Header::idle`.
    room: AtomicBool,
    /// Counted in `Header::accepting`: it holds a turn to accept.
    accepting: AtomicBool,
    /// Counted in `Header::standbys`.
    standby: AtomicBool,
    /// Its turn was taken past the bound (`WorkerSlot::force_turn`).
    forced: AtomicBool,
    pid: AtomicI32,
    generation: AtomicU32,
    /// Connections in flight.
    active: AtomicU32,
    /// Connections served.
    requests: AtomicU64,
    started_ms: AtomicU64,
    /// The last heartbeat: the worker stamps it from the thread that runs its handlers, every
    /// `heartbeat_interval` and at each change of state.
    heartbeat_ms: AtomicU64,
    /// When its current request started (its oldest, in the async model); 0 when it serves none.
    request_ms: AtomicU64,
    /// Resident memory in bytes and CPU time in ms, measured by the worker on its heartbeat.
    rss: AtomicU64,
    cpu_ms: AtomicU64,
    /// Why the worker gave up, if it did: a few words it writes before it exits, so the manager
    /// can say why in its log and in the verdict of a failed start.
    note: Text<NOTE>,
    /// What the worker serves, as its handler describes it (`GET /spin/100`), for the log of a
    /// verdict against it.
    request: Text<LABEL>,
    /// Its work, measured where it happens (the worker writes, the manager sums per pool).
    work: WorkCells,
}

/// The bounds of the request duration histogram, in seconds (Prometheus's defaults, with a
/// millisecond bucket first: a pre-forked worker's requests are often that short).
pub(crate) const LATENCY_BOUNDS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// The histogram's buckets: one per bound, and one above the last.
pub(crate) const BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered (for HTTP, any status below 500).
    Ok = 0,
    /// The handler returned an error or panicked, the client went away, or (HTTP) a 5xx answer.
    Error = 1,
    /// Cut by `request_timeout` (or `long_request_timeout`).
    Timeout = 2,
}

impl Outcome {
    pub(crate) const ALL: [(Outcome, &'static str); 3] = [(Outcome::Ok, "ok"), (Outcome::Error, "error"), (Outcome::Timeout, "timeout")];
}

/// A worker's work so far: busy time (a connection or job in hand) and its requests.
#[repr(C)]
struct WorkCells {
    /// Nanoseconds busy, up to the start of the current stretch.
    busy_ns: AtomicU64,
    /// When the current busy stretch began (monotonic ns), 0 while idle.
    busy_since_ns: AtomicU64,
    /// Requests by duration bucket (not cumulative), their durations' sum in microseconds, and
    /// requests by outcome.
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    outcomes: [AtomicU64; 3],
}

/// A worker's work as the manager reads it, or a pool's summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Work {
    pub busy_ns: u64,
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
    pub outcomes: [u64; 3],
}

impl Work {
    pub(crate) fn add(&mut self, other: &Work) {
        self.busy_ns = self.busy_ns.saturating_add(other.busy_ns);
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a = a.saturating_add(b);
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        for (a, b) in self.outcomes.iter_mut().zip(other.outcomes) {
            *a = a.saturating_add(b);
        }
    }

    /// Every figure at least `floor`'s: a sum read while a worker moves time from its current
    /// stretch to its total may come out a hair lower than the last one, and a counter must
    /// never go back.
    pub(crate) fn at_least(&self, floor: &Work) -> Work {
        let mut w = *self;
        w.busy_ns = w.busy_ns.max(floor.busy_ns);
        for (a, b) in w.buckets.iter_mut().zip(floor.buckets) {
            *a = (*a).max(b);
        }
        w.sum_us = w.sum_us.max(floor.sum_us);
        for (a, b) in w.outcomes.iter_mut().zip(floor.outcomes) {
            *a = (*a).max(b);
        }
        w
    }

    pub(crate) fn requests(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    /// One request more, `ns` long, ended so (what the manager counts for a worker that could
    /// not: one killed for its deadline, or with a request in hand).
    pub(crate) fn record(&mut self, ns: u64, outcome: Outcome) {
        self.buckets[bucket_of(ns)] += 1;
        self.sum_us = self.sum_us.saturating_add(ns / 1_000);
        self.outcomes[outcome as usize] += 1;
    }
}

/// The bucket of a request that took `ns`.
fn bucket_of(ns: u64) -> usize {
    let secs = ns as f64 / 1e9;
    LATENCY_BOUNDS.iter().position(|&b| secs <= b).unwrap_or(LATENCY_BOUNDS.len())
}

/// The longest note a worker leaves, and the longest request label; longer ones are cut at a
/// character boundary.
const NOTE: usize = 188;
const LABEL: usize = 120;

/// A short text in shared memory: its length is written last, so a reader that sees it sees
/// the bytes before it.
#[repr(C)]
struct Text<const N: usize> {
    len: AtomicU32,
    bytes: [AtomicU8; N],
}

impl<const N: usize> Text<N> {
    fn set(&self, text: &str) {
        let mut end = text.len().min(N);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.len.store(0, Ordering::Release);
        for (cell, byte) in self.bytes.iter().zip(text.as_bytes()[..end].iter()) {
            cell.store(*byte, Ordering::Relaxed);
        }
        self.len.store(end as u32, Ordering::Release);
    }

    fn get(&self) -> Option<String> {
        let len = (self.len.load(Ordering::Acquire) as usize).min(N);
        if len == 0 {
            return None;
        }
        let bytes: Vec<u8> = self.bytes[..len].iter().map(|b| b.load(Ordering::Relaxed)).collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn clear(&self) {
        self.len.store(0, Ordering::Release);
    }
}

#[repr(C)]
pub(crate) struct Board {
    manager: ManagerLine,
    headers: [Header; POOLS],
    slots: [Slot; SLOTS],
}

// SAFETY: every field of Board, ManagerLine, Header, Rules, Slot, WorkCells and Text is an atomic (or an array of them), for
// which all-zero bytes are a valid value; atomics are Sync.
unsafe impl ZeroValid for Board {}

/// The manager's handle on the scoreboard.
pub(crate) struct Scoreboard {
    board: Arc<Shared<Board>>,
    /// Passes a turn to accept to one standby: every standby waits on it with EPOLLEXCLUSIVE, so
    /// one write wakes one of them (and a write nobody waits for is kept until someone does).
    join: Arc<EventFd>,
}

/// What the manager reads of one slot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SlotView {
    pub state: State,
    pub room: bool,
    pub active: u32,
    pub requests: u64,
    pub heartbeat_ms: u64,
    /// When its current request started, if it serves one.
    pub request_ms: Option<u64>,
    /// Measured by the worker (0 until it has).
    pub rss: u64,
    pub cpu_ms: u64,
    /// It holds a turn to accept.
    pub accepting: bool,
}

impl Scoreboard {
    pub(crate) fn new() -> nix::Result<Scoreboard> {
        let board = Arc::new(Shared::<Board>::new()?);
        let join = Arc::new(EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?);
        Ok(Scoreboard { board, join })
    }

    fn slot(&self, i: usize) -> &Slot {
        &self.board.get().slots[i % SLOTS]
    }

    fn header(&self, pool: usize) -> &Header {
        &self.board.get().headers[pool % POOLS]
    }

    /// What pool `pool`'s workers go by to wake the manager: its spare thresholds and its
    /// supervision settings.
    pub(crate) fn publish(&self, pool: usize, min_spare: u32, max_spare: u32, rules: &Settings, accept_cap: u32) {
        let h = self.header(pool);
        h.min_spare.store(min_spare, Ordering::Relaxed);
        h.max_spare.store(max_spare, Ordering::Relaxed);
        h.rules.store(rules);
        // A larger bound has turns free at once: a standby takes one.
        h.accept_cap.store(accept_cap, Ordering::SeqCst);
        pass_turn(h, &self.join);
    }

    /// The manager is awake: every change a worker makes from here on wakes it, until it says
    /// when it next means to look ([`Scoreboard::sleeping_until`]). Before the manager reads
    /// the slots, so a change it does not see is one whose worker sees this and wakes it.
    pub(crate) fn awake(&self) {
        self.board.get().manager.wake_by.store(u64::MAX, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// The manager sleeps until `at` (`None`: until something happens).
    pub(crate) fn sleeping_until(&self, at: Option<u64>) {
        self.board.get().manager.wake_by.store(at.unwrap_or(u64::MAX), Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    pub(crate) fn announce_ready(&self, pool: usize, on: bool) {
        self.header(pool).announce_ready.store(on, Ordering::Relaxed);
    }

    pub(crate) fn set_saturated(&self, pool: usize, on: bool) {
        self.header(pool).saturated.store(on, Ordering::Relaxed);
    }

    /// How many times workers woke the manager, in every pool.
    pub(crate) fn wakes(&self) -> u64 {
        self.board.get().headers.iter().map(|h| h.wakes.load(Ordering::Relaxed)).sum()
    }

    /// Marks a slot as being forked into ('F'), before fork.
    pub(crate) fn prepare(&self, i: usize, generation: u32) {
        let s = self.slot(i);
        let now = monotonic_ms();
        s.room.store(false, Ordering::Relaxed);
        s.pid.store(0, Ordering::Relaxed);
        s.generation.store(generation, Ordering::Relaxed);
        s.active.store(0, Ordering::Relaxed);
        s.requests.store(0, Ordering::Relaxed);
        s.started_ms.store(now, Ordering::Relaxed);
        s.heartbeat_ms.store(now, Ordering::Relaxed);
        s.request_ms.store(0, Ordering::Relaxed);
        s.rss.store(0, Ordering::Relaxed);
        s.cpu_ms.store(0, Ordering::Relaxed);
        s.note.clear();
        s.request.clear();
        let w = &s.work;
        for cell in [&w.busy_ns, &w.busy_since_ns, &w.sum_us].into_iter().chain(&w.buckets).chain(&w.outcomes) {
            cell.store(0, Ordering::Relaxed);
        }
        s.state.store(State::Forking as u8, Ordering::Release);
    }

    /// The work of the worker in slot `i` so far, its current busy stretch counted up to `now_ns`.
    pub(crate) fn work(&self, i: usize, now_ns: u64) -> Work {
        let w = &self.slot(i).work;
        let since = w.busy_since_ns.load(Ordering::Acquire);
        let current = if since == 0 { 0 } else { now_ns.saturating_sub(since) };
        let mut out = Work {
            busy_ns: w.busy_ns.load(Ordering::Acquire).saturating_add(current),
            sum_us: w.sum_us.load(Ordering::Relaxed),
            ..Work::default()
        };
        for (o, c) in out.buckets.iter_mut().zip(&w.buckets) {
            *o = c.load(Ordering::Relaxed);
        }
        for (o, c) in out.outcomes.iter_mut().zip(&w.outcomes) {
            *o = c.load(Ordering::Relaxed);
        }
        out
    }

    /// What the worker in slot `i` says it serves, if it said.
    pub(crate) fn request_label(&self, i: usize) -> Option<String> {
        self.slot(i).request.get()
    }

    /// Leaves slot `i`'s note, for a child that gives up before it holds its worker's handle.
    pub(crate) fn give_up(&self, i: usize, why: &str) {
        self.slot(i).note.set(why);
    }

    /// What the worker in slot `i` said when it gave up, if it said anything.
    pub(crate) fn note(&self, i: usize) -> Option<String> {
        self.slot(i).note.get()
    }

    pub(crate) fn set_pid(&self, i: usize, pid: i32) {
        self.slot(i).pid.store(pid, Ordering::Relaxed);
    }

    /// Empties a slot whose worker (of `pool`) is gone, taking back its share of the pool's
    /// counts.
    pub(crate) fn clear(&self, pool: usize, i: usize) {
        let s = self.slot(i);
        let h = self.header(pool);
        if s.room.swap(false, Ordering::AcqRel) {
            h.idle.fetch_sub(1, Ordering::AcqRel);
        }
        // A standby that died may have been woken for a free turn, and taken the wake-up with
        // it; a worker that died with a turn leaves it free. Either way the next standby is told.
        let standby = s.standby.swap(false, Ordering::AcqRel);
        if standby {
            h.standbys.fetch_sub(1, Ordering::SeqCst);
        }
        s.forced.store(false, Ordering::Relaxed);
        let turn = s.accepting.swap(false, Ordering::AcqRel);
        if turn {
            h.accepting.fetch_sub(1, Ordering::SeqCst);
        }
        if turn || standby {
            pass_turn(h, &self.join);
        }
        let active = s.active.swap(0, Ordering::AcqRel);
        h.active_total.fetch_sub(i64::from(active), Ordering::AcqRel);
        s.pid.store(0, Ordering::Relaxed);
        s.state.store(State::Empty as u8, Ordering::Release);
    }

    pub(crate) fn view(&self, i: usize) -> SlotView {
        let s = self.slot(i);
        SlotView {
            state: State::from_u8(s.state.load(Ordering::Acquire)),
            room: s.room.load(Ordering::Acquire),
            active: s.active.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            heartbeat_ms: s.heartbeat_ms.load(Ordering::Relaxed),
            request_ms: Some(s.request_ms.load(Ordering::Relaxed)).filter(|&t| t != 0),
            rss: s.rss.load(Ordering::Relaxed),
            cpu_ms: s.cpu_ms.load(Ordering::Relaxed),
            accepting: s.accepting.load(Ordering::Relaxed),
        }
    }

    /// The handle a worker of `pool` forked into slot `i` uses to write its own line.
    pub(crate) fn worker_slot(&self, pool: usize, i: usize, capacity: u32, wake: OwnedFd) -> WorkerSlot {
        WorkerSlot {
            board: Arc::clone(&self.board),
            join: Arc::clone(&self.join),
            pool: pool % POOLS,
            index: i % SLOTS,
            capacity: capacity.max(1),
            wake,
        }
    }
}

impl std::fmt::Debug for Scoreboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scoreboard")
    }
}

/// A worker's handle on its own slot. Only its worker writes through it.
pub(crate) struct WorkerSlot {
    board: Arc<Shared<Board>>,
    join: Arc<EventFd>,
    pool: usize,
    index: usize,
    capacity: u32,
    wake: OwnedFd,
}

impl WorkerSlot {
    fn slot(&self) -> &Slot {
        &self.board.get().slots[self.index]
    }

    fn header(&self) -> &Header {
        &self.board.get().headers[self.pool]
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn set_state(&self, state: State) {
        let s = self.slot();
        s.state.store(state as u8, Ordering::Release);
        s.heartbeat_ms.store(coarse_ms(), Ordering::Relaxed);
    }

    pub(crate) fn state(&self) -> State {
        State::from_u8(self.slot().state.load(Ordering::Acquire))
    }

    /// A heartbeat: this worker's handler thread is alive at `now_ms`.
    pub(crate) fn heartbeat(&self, now_ms: u64) {
        self.slot().heartbeat_ms.store(now_ms, Ordering::Relaxed);
    }

    /// What the worker measured of itself: resident bytes and CPU milliseconds. Over a limit,
    /// the manager hears of it now, not at its next wake-up.
    pub(crate) fn measured(&self, rss: u64, cpu_ms: u64) {
        let s = self.slot();
        s.rss.store(rss, Ordering::Relaxed);
        s.cpu_ms.store(cpu_ms, Ordering::Relaxed);
        self.tell_if_due();
    }

    /// When the current (oldest) request started; 0 for none. A request whose deadline the
    /// manager judges (the classic model, a task's work) wakes it if that deadline comes before
    /// the manager means to look.
    pub(crate) fn set_request_started(&self, ms: u64) {
        let s = self.slot();
        let before = s.request_ms.swap(ms, Ordering::Relaxed);
        if ms != 0 && before != ms {
            self.tell_if_due();
        }
    }

    /// This worker as the manager judges it (the manager also knows whether it stops it).
    fn facts(&self) -> Facts {
        let s = self.slot();
        let activity = match self.state() {
            State::Empty | State::Forking | State::Forked | State::Starting => Activity::Starting,
            State::Waiting => Activity::Idle,
            State::Request => Activity::Request,
            State::Long => Activity::Long,
            State::Exiting => Activity::Exiting,
        };
        Facts {
            activity,
            started_ms: s.started_ms.load(Ordering::Relaxed),
            heartbeat_ms: s.heartbeat_ms.load(Ordering::Relaxed),
            request_ms: Some(s.request_ms.load(Ordering::Relaxed)).filter(|&t| t != 0),
            rss: Some(s.rss.load(Ordering::Relaxed)).filter(|&r| r > 0),
            cpu_ms: Some(s.cpu_ms.load(Ordering::Relaxed)).filter(|&c| c > 0),
            stopping: None,
        }
    }

    /// Wakes the manager if, after a change of this worker's, a verdict is due before the time
    /// the manager means to look. The fence pairs with the manager's in [`Scoreboard::awake`]:
    /// either the manager's read of the slots sees the change, or this sees it awake.
    fn tell_if_due(&self) {
        fence(Ordering::SeqCst);
        let wake_by = self.board.get().manager.wake_by.load(Ordering::Relaxed);
        let rules = self.header().rules.load();
        if supervise::must_wake(&self.facts(), &rules, coarse_ms(), wake_by) {
            self.wake_manager();
        }
    }

    /// What the worker serves now, as its handler describes it.
    pub(crate) fn describe_request(&self, label: &str) {
        self.slot().request.set(label);
    }

    /// Marks the work in hand long (`l`), or not (`r`), unless the worker is exiting.
    pub(crate) fn set_long(&self, long: bool) {
        let state = self.state();
        match (state, long) {
            (State::Request, true) => {
                self.set_state(State::Long);
                self.tell_if_due();
            }
            (State::Long, false) => self.set_state(State::Request),
            _ => {}
        }
    }

    /// Leaves a note saying why this worker gives up (read by the manager when it reaps it).
    pub(crate) fn give_up(&self, why: &str) {
        self.slot().note.set(why);
    }

    /// The worker can accept: count it idle (unless connections already fill it).
    pub(crate) fn ready(&self) {
        self.take_turn();
        let active = self.active();
        self.set_state(if active == 0 { State::Waiting } else { State::Request });
        let announce = self.header().announce_ready.load(Ordering::Relaxed);
        let woke = active < self.capacity && self.enter_idle();
        if !woke && announce {
            self.wake_manager();
        } else if !woke {
            // Ready, it is judged by its heartbeats from now on, not by start_timeout.
            self.tell_if_due();
        }
    }

    /// A connection was accepted. Returns whether the worker is now full.
    pub(crate) fn begin_connection(&self) -> bool {
        let s = self.slot();
        s.requests.fetch_add(1, Ordering::Relaxed);
        let active = s.active.fetch_add(1, Ordering::AcqRel) + 1;
        self.header().active_total.fetch_add(1, Ordering::Relaxed);
        self.header().accepted.fetch_add(1, Ordering::Relaxed);
        if active == 1 {
            self.set_state(State::Request);
            // A busy stretch begins (unless an end on another thread has just begun it again).
            let _ = s.work.busy_since_ns.compare_exchange(0, monotonic_ns().max(1), Ordering::SeqCst, Ordering::SeqCst);
        }
        let full = active >= self.capacity;
        if full {
            self.leave_idle();
        }
        full
    }

    /// A connection is done.
    pub(crate) fn end_connection(&self) {
        let s = self.slot();
        let active = s.active.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.header().active_total.fetch_sub(1, Ordering::Relaxed);
        if active == 0 {
            self.end_busy_stretch();
        }
        let exiting = s.state.load(Ordering::Acquire) == State::Exiting as u8;
        if exiting {
            return;
        }
        if active == 0 {
            self.set_state(State::Waiting);
            s.request_ms.store(0, Ordering::Relaxed);
        }
        if active + 1 == self.capacity {
            self.enter_idle();
        }
    }

    /// The busy stretch is over: its time joins the total. The acceptor thread may begin the
    /// next one meanwhile (an async worker's connections begin on the acceptor and end on the
    /// runtime): if a connection is in hand after the stretch was taken, a stretch begins again,
    /// so none is lost.
    fn end_busy_stretch(&self) {
        let (w, active) = (&self.slot().work, &self.slot().active);
        let close = || {
            let since = w.busy_since_ns.swap(0, Ordering::SeqCst);
            if since != 0 {
                w.busy_ns.fetch_add(monotonic_ns().saturating_sub(since), Ordering::AcqRel);
            }
        };
        close();
        // Open while a connection is in hand, closed while none is: each pass either settles or
        // follows a begin or end the other thread made meanwhile (a few passes at most).
        for _ in 0..8 {
            if active.load(Ordering::SeqCst) == 0 {
                return;
            }
            if w.busy_since_ns.compare_exchange(0, monotonic_ns().max(1), Ordering::SeqCst, Ordering::SeqCst).is_err() {
                return; // the other thread's stretch is open
            }
            if active.load(Ordering::SeqCst) > 0 {
                return;
            }
            // Ended meanwhile, maybe before this stretch opened: close it.
            close();
        }
    }

    /// A request is done: `ns` long, ended so.
    pub(crate) fn request_finished(&self, ns: u64, outcome: Outcome) {
        let w = &self.slot().work;
        w.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        w.sum_us.fetch_add(ns / 1_000, Ordering::Relaxed);
        w.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections in flight.
    pub(crate) fn active(&self) -> u32 {
        self.slot().active.load(Ordering::Acquire)
    }

    /// The worker accepts no more: say so, and tell the manager so it can replace it now.
    pub(crate) fn exiting(&self) {
        self.set_state(State::Exiting);
        self.leave_idle();
        self.settle_turn(false, false);
        self.wake_manager();
    }

    /// Takes one of the pool's turns to accept, if this worker holds none and one is free.
    /// Returns whether it holds one. A worker with a turn counts in the fair share; one without
    /// (full, stuck, a standby) does not: its connections still count, over one worker fewer,
    /// so the others' share grows and someone always accepts.
    fn take_turn(&self) -> bool {
        let (s, h) = (self.slot(), self.header());
        let cap = i64::from(h.accept_cap.load(Ordering::SeqCst));
        if s.accepting.load(Ordering::Acquire) {
            // Past the bound (a standby forced a turn while this one was frozen, or the bound
            // shrank): a holder that looks gives its turn back, unless it is the forced one.
            let over = cap > 0 && h.accepting.load(Ordering::SeqCst) > cap;
            if !over || s.forced.load(Ordering::Acquire) || !s.accepting.swap(false, Ordering::AcqRel) {
                return true;
            }
            h.accepting.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        let mut held = h.accepting.load(Ordering::SeqCst);
        loop {
            if cap > 0 && held >= cap {
                return false;
            }
            match h.accepting.compare_exchange_weak(held, held + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => held = now,
            }
        }
        s.accepting.store(true, Ordering::Release);
        // Turns still free (a larger bound, several given back at once): the next standby.
        pass_turn(h, &self.join);
        true
    }

    /// Gives back this worker's turn to accept, if it holds one, and wakes a standby to take it.
    fn give_turn(&self) {
        self.slot().forced.store(false, Ordering::Release);
        if self.slot().accepting.swap(false, Ordering::AcqRel) {
            self.header().accepting.fetch_sub(1, Ordering::SeqCst);
            pass_turn(self.header(), &self.join);
        }
    }

    /// What an acceptor does about its turn each time round its loop: keeps or takes one while
    /// it `can_take` a connection, gives it back when it cannot; free to wait (`may_wait`: room,
    /// nothing in hand to watch) with no turn to be had, it is a standby, marked so before its
    /// last try: a turn given back from then on sees the mark and wakes it.
    pub(crate) fn settle_turn(&self, can_take: bool, may_wait: bool) -> Turn {
        let held = if can_take {
            self.take_turn()
        } else {
            self.give_turn();
            false
        };
        if held || !can_take || !may_wait {
            // A standby that leaves without a turn (it filled, got stuck, quits) may have taken
            // the wake-up meant for a turn still free: it hands it on.
            if self.set_standby(false) && !held {
                pass_turn(self.header(), &self.join);
            }
            return if held { Turn::Held } else { Turn::Without };
        }
        self.set_standby(true);
        if self.take_turn() {
            self.set_standby(false);
            Turn::Held
        } else {
            Turn::Standby
        }
    }

    /// Whether the pool bounds its turns to accept (so this worker may be a standby).
    pub(crate) fn turns_bounded(&self) -> bool {
        self.header().accept_cap.load(Ordering::Relaxed) > 0
    }

    /// Whether this worker waits as a standby.
    pub(crate) fn is_standby(&self) -> bool {
        self.slot().standby.load(Ordering::Acquire)
    }

    /// Connections the pool has accepted so far.
    pub(crate) fn pool_accepted(&self) -> u64 {
        self.header().accepted.load(Ordering::Relaxed)
    }

    /// Takes a turn past the bound: the workers with turns take nothing while connections wait
    /// (frozen, or stuck where their acceptors cannot tell). The bound holds again as turns are
    /// given back. Returns whether it took one.
    pub(crate) fn force_turn(&self) -> bool {
        let took = !self.slot().accepting.swap(true, Ordering::AcqRel);
        if took {
            self.slot().forced.store(true, Ordering::Release);
            self.header().accepting.fetch_add(1, Ordering::SeqCst);
        }
        took
    }

    /// Marks this worker as a standby (room, no turn) waiting for a turn, or not. Returns
    /// whether it was one.
    fn set_standby(&self, on: bool) -> bool {
        let was = self.slot().standby.swap(on, Ordering::SeqCst);
        if was != on {
            self.header().standbys.fetch_add(if on { 1 } else { -1 }, Ordering::SeqCst);
        }
        was
    }

    /// Takes the wake-ups waiting on the join eventfd (a woken standby, before it tries for a turn).
    pub(crate) fn drain_join(&self) {
        let _ = self.join.read();
    }

    /// The eventfd standbys wait on.
    pub(crate) fn join_fd(&self) -> &EventFd {
        &self.join
    }

    /// Whether some worker of this pool has room for another connection (a hint).
    pub(crate) fn pool_has_room(&self) -> bool {
        self.header().idle.load(Ordering::Relaxed) > 0
    }

    /// Whether the manager found the pool saturated (and no worker has found room since).
    pub(crate) fn pool_saturated(&self) -> bool {
        self.header().saturated.load(Ordering::Relaxed) && !self.pool_has_room()
    }

    /// Whether this worker holds more than its fair share of the pool's connections (the pool's
    /// average, rounded up, plus one). Such a worker leaves the next connections to the others:
    /// on a burst, the worker that happens to be running would otherwise take nearly all of them.
    /// The least loaded worker is never over its share, so someone always accepts.
    pub(crate) fn over_share(&self) -> bool {
        let h = self.header();
        let workers = h.accepting.load(Ordering::Relaxed).max(1);
        let total = h.active_total.load(Ordering::Relaxed).max(0);
        let share = (total + workers - 1) / workers + 1;
        i64::from(self.active()) > share
    }

    /// Returns whether the manager was woken.
    fn enter_idle(&self) -> bool {
        if self.slot().room.swap(true, Ordering::AcqRel) {
            return false;
        }
        let h = self.header();
        let idle = h.idle.fetch_add(1, Ordering::AcqRel) + 1;
        if idle == i64::from(h.max_spare.load(Ordering::Relaxed)) + 1 {
            self.wake_manager();
            return true;
        }
        false
    }

    fn leave_idle(&self) {
        if !self.slot().room.swap(false, Ordering::AcqRel) {
            return;
        }
        let h = self.header();
        let idle = h.idle.fetch_sub(1, Ordering::AcqRel) - 1;
        // Below min_spare: the manager forks. No room left at all (with min_spare 0 too): new
        // connections queue in the kernel, which the manager then watches (and grows for).
        if idle == i64::from(h.min_spare.load(Ordering::Relaxed)) - 1 || idle == 0 {
            self.wake_manager();
        }
    }

    fn wake_manager(&self) {
        self.header().wakes.fetch_add(1, Ordering::Relaxed);
        // A full pipe already holds a wake-up the manager has not read; nothing is lost.
        let _ = nix::unistd::write(&self.wake, &[1u8]);
    }
}

/// Where a worker stands with the pool's turns to accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// It may accept.
    Held,
    /// It has room but no turn: it waits for one (the join eventfd).
    Standby,
    /// It cannot take a connection now (full, stuck, out of descriptors).
    Without,
}

/// Wakes one standby of the pool, if one waits and a turn to accept is free: called wherever
/// a turn may have come free or a wake-up may have been taken by a standby that did not use it.
/// (The counter of the join eventfd only grows: a write can fail only once it is near 2^64, and
/// then a wake-up is pending anyway.)
fn pass_turn(h: &Header, join: &EventFd) {
    if h.standbys.load(Ordering::SeqCst) > 0 && h.turn_free() {
        let _ = join.write(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> (Scoreboard, OwnedFd, OwnedFd) {
        let sb = Scoreboard::new().expect("mmap");
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
            .expect("pipe");
        (sb, r, w)
    }

    fn pending(r: &OwnedFd) -> usize {
        let mut buf = [0u8; 64];
        nix::unistd::read(r, &mut buf).unwrap_or(0)
    }

    #[test]
    fn a_slot_goes_through_the_seed_states() {
        let (sb, _r, w) = board();
        sb.publish(0, 1, 4, &Settings::OFF, 0);
        sb.prepare(3, 7);
        assert_eq!(sb.view(3).state, State::Forking);
        let slot = sb.worker_slot(0, 3, 2, w);
        slot.set_state(State::Forked);
        slot.set_state(State::Starting);
        slot.ready();
        let v = sb.view(3);
        assert_eq!((v.state, v.room), (State::Waiting, true));
        assert!(!slot.begin_connection());
        assert_eq!(sb.view(3).state, State::Request);
        assert!(slot.begin_connection(), "two of two clients: full");
        assert!(!sb.view(3).room);
        slot.end_connection();
        assert!(sb.view(3).room);
        slot.end_connection();
        assert_eq!(sb.view(3).state, State::Waiting);
        assert_eq!(sb.view(3).requests, 2);
        slot.exiting();
        assert_eq!(sb.view(3).state, State::Exiting);
        assert_eq!(sb.note(3), None);
        slot.give_up(&format!("{}é and more", "x".repeat(NOTE - 1)));
        assert_eq!(sb.note(3), Some("x".repeat(NOTE - 1)), "cut at a character boundary");
        sb.clear(0, 3);
        assert_eq!(sb.view(3).state, State::Empty);
        sb.prepare(3, 8);
        assert_eq!(sb.note(3), None, "a new worker starts with no note");
    }

    #[test]
    fn a_worker_counts_its_busy_time_and_requests_where_they_happen() {
        let (sb, _r, w) = board();
        sb.publish(0, 1, 4, &Settings::OFF, 0);
        sb.prepare(5, 1);
        let slot = sb.worker_slot(0, 5, 4, w);
        slot.ready();
        let t0 = monotonic_ns();
        assert_eq!(sb.work(5, t0).busy_ns, 0, "idle: nothing");
        slot.begin_connection();
        slot.begin_connection();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // In a stretch: counted up to the reader's time.
        let during = sb.work(5, monotonic_ns()).busy_ns;
        assert!(during >= 20_000_000, "{during}");
        slot.end_connection();
        slot.end_connection();
        let after = sb.work(5, monotonic_ns() + 5_000_000_000).busy_ns;
        assert!(after >= during && after < 5_000_000_000, "an ended stretch does not grow: {after}");
        slot.request_finished(2_000_000, Outcome::Ok);
        slot.request_finished(3_000_000_000, Outcome::Timeout);
        slot.request_finished(30_000_000_000, Outcome::Error);
        let work = sb.work(5, monotonic_ns());
        assert_eq!(work.outcomes, [1, 1, 1]);
        assert_eq!(work.buckets[bucket_of(2_000_000)], 1);
        assert_eq!(work.buckets[BUCKETS - 1], 1, "30 s is above the last bound");
        assert_eq!(work.sum_us, 2_000 + 3_000_000 + 30_000_000);
        // A new worker in the slot starts from nothing.
        sb.prepare(5, 2);
        assert_eq!(sb.work(5, monotonic_ns()), Work::default());
    }

    #[test]
    fn a_stretch_begun_on_one_thread_while_another_ends_one_is_never_lost() {
        let (sb, _r, w) = board();
        sb.publish(0, 1, 4, &Settings::OFF, 0);
        sb.prepare(6, 1);
        let slot = Arc::new(sb.worker_slot(0, 6, 1_000_000, w));
        slot.ready();
        // Two threads, as an async worker's acceptor (begins) and runtime (ends).
        let (a, b) = (Arc::clone(&slot), Arc::clone(&slot));
        let ends = std::thread::spawn(move || {
            for _ in 0..20_000 {
                a.begin_connection();
                a.end_connection();
            }
        });
        for _ in 0..20_000 {
            b.begin_connection();
            b.end_connection();
        }
        ends.join().expect("the other thread");
        // Idle now: no stretch left open, so the total stays put.
        let now = monotonic_ns();
        assert_eq!(sb.work(6, now).busy_ns, sb.work(6, now + 1_000_000_000).busy_ns, "a stretch was left open");
        // Then a long one is counted whole.
        slot.begin_connection();
        let later = monotonic_ns() + 1_000_000_000;
        assert!(sb.work(6, later).busy_ns >= 900_000_000);
        slot.end_connection();
    }

    /// Whether the join eventfd holds a wake-up (and takes it).
    fn joined(sb: &Scoreboard) -> bool {
        sb.join.read().is_ok()
    }

    #[test]
    fn turns_to_accept_are_bounded_and_passed_to_a_standby() {
        let (sb, _r, w) = board();
        sb.publish(0, 0, 4, &Settings::OFF, 2);
        let slots: Vec<WorkerSlot> = (0..4)
            .map(|i| {
                sb.prepare(10 + i, 1);
                sb.worker_slot(0, 10 + i, 2, w.try_clone().expect("dup"))
            })
            .collect();
        for s in &slots {
            s.ready();
        }
        let turns = |sb: &Scoreboard| (0..4).filter(|i| sb.view(10 + i).accepting).count();
        assert_eq!(turns(&sb), 2, "two turns for four ready workers");
        assert!(!slots[2].take_turn() && !slots[3].take_turn());
        assert!(!joined(&sb), "nobody waits: no wake-up written");
        // Two standbys wait; an accepting worker fills up and gives its turn back.
        slots[2].set_standby(true);
        slots[3].set_standby(true);
        slots[0].give_turn();
        assert!(joined(&sb), "a turn given back wakes a standby");
        assert!(slots[2].take_turn(), "the woken standby takes it");
        slots[2].set_standby(false);
        assert!(!slots[3].take_turn(), "and only one turn was free");
        assert!(!slots[0].take_turn(), "the full worker, with room again, finds none either");
        // A worker that dies with its turn: the manager's clear passes it on.
        sb.clear(0, 11);
        assert!(joined(&sb));
        assert!(slots[3].take_turn());
        assert_eq!(turns(&sb), 2);
        slots[3].set_standby(false);
        // A standby that dies no longer counts: a turn given back with none waiting writes nothing.
        slots[0].set_standby(true);
        sb.clear(0, 10);
        slots[3].give_turn();
        assert!(!joined(&sb), "nobody waits: nothing written");
        assert_eq!(turns(&sb), 1);
    }

    /// One worker of the model: its slot, and what its acceptor sees.
    struct Modelled {
        slot: WorkerSlot,
        room: bool,
        stuck: bool,
        /// Asleep as a standby: only a wake-up on the join eventfd (or on room) runs it again.
        asleep: bool,
    }

    impl Modelled {
        /// One turn of its acceptor's loop.
        fn step(&mut self) {
            let can = self.room && !self.stuck;
            self.asleep = self.slot.settle_turn(can, can) == Turn::Standby;
        }
    }

    fn join_pending(sb: &Scoreboard) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(sb.join.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).expect("poll") == 1
    }

    proptest::proptest! {
        /// Random histories of workers filling up, freeing room, getting stuck, dying and being
        /// replaced, and of standbys woken: the turns never pass the bound nor leak, and a turn
        /// is never free while a standby sleeps with no wake-up pending.
        #[test]
        fn turns_are_bounded_and_never_left_free_with_a_standby_asleep(
            cap in 1u32..4,
            size in 1usize..7,
            ops in proptest::collection::vec((0u8..7, 0usize..7), 1..200),
        ) {
            let (sb, _r, w) = board();
            sb.publish(0, 0, 8, &Settings::OFF, cap);
            let spawn = |i: usize| {
                sb.prepare(30 + i, 1);
                let slot = sb.worker_slot(0, 30 + i, 4, w.try_clone().expect("dup"));
                slot.ready();
                let mut m = Modelled { slot, room: true, stuck: false, asleep: false };
                m.step();
                m
            };
            let mut workers: Vec<Option<Modelled>> = (0..size).map(|i| Some(spawn(i))).collect();
            for (op, i) in ops {
                let i = i % size;
                match (op, workers[i].as_mut()) {
                    // Room comes and goes (the runtime wakes its acceptor either way).
                    (0, Some(m)) => {
                        m.room = !m.room;
                        m.step();
                    }
                    // Its runtime sticks or turns again (seen by an acceptor that is awake).
                    (1, Some(m)) => {
                        m.stuck = !m.stuck;
                        if !m.asleep {
                            m.step();
                        }
                    }
                    (2, Some(_)) => {
                        sb.clear(0, 30 + i);
                        workers[i] = None;
                    }
                    (3, None) => workers[i] = Some(spawn(i)),
                    // The kernel wakes the first standby asleep on the join eventfd.
                    (4, _) if join_pending(&sb) => {
                        if let Some(m) = workers.iter_mut().flatten().find(|m| m.asleep) {
                            m.slot.drain_join();
                            m.step();
                        }
                    }
                    (5, Some(m)) if !m.asleep => m.step(),
                    // A standby's watch sees the turn holders take nothing (frozen).
                    (6, Some(m)) if m.asleep => {
                        m.slot.force_turn();
                        m.step();
                    }
                    _ => {}
                }
                let live: Vec<&Modelled> = workers.iter().flatten().collect();
                let held = (0..size).filter(|&i| workers[i].is_some() && sb.view(30 + i).accepting).count();
                let counted = sb.header(0).accepting.load(Ordering::SeqCst);
                proptest::prop_assert_eq!(counted, held as i64, "the pool's count of turns leaked");
                let forced = (0..size).filter(|&i| workers[i].is_some() && sb.slot(30 + i).forced.load(Ordering::SeqCst)).count();
                proptest::prop_assert!(held <= cap as usize + forced, "{} turns for a bound of {} ({} forced)", held, cap, forced);
                if live.iter().any(|m| m.asleep) && held < cap as usize {
                    proptest::prop_assert!(join_pending(&sb), "a turn is free and a standby sleeps with no wake-up pending");
                }
            }
        }
    }

    #[test]
    fn a_woken_standby_that_dies_passes_its_wake_up_on() {
        let (sb, _r, w) = board();
        sb.publish(0, 0, 4, &Settings::OFF, 1);
        let slots: Vec<WorkerSlot> = (0..3)
            .map(|i| {
                sb.prepare(40 + i, 1);
                let s = sb.worker_slot(0, 40 + i, 2, w.try_clone().expect("dup"));
                s.ready();
                s
            })
            .collect();
        assert_eq!(slots[1].settle_turn(true, true), Turn::Standby);
        assert_eq!(slots[2].settle_turn(true, true), Turn::Standby);
        // The holder fills up: one wake-up, which the kernel gives the first standby; it reads
        // it and is killed before it takes the turn.
        assert_eq!(slots[0].settle_turn(false, false), Turn::Without);
        slots[1].drain_join();
        assert!(!joined(&sb));
        sb.clear(0, 41);
        assert!(joined(&sb), "the other standby is never told of the free turn");
        assert_eq!(slots[2].settle_turn(true, true), Turn::Held);
    }

    #[test]
    fn no_bound_means_every_worker_accepts() {
        let (sb, _r, w) = board();
        sb.publish(0, 0, 4, &Settings::OFF, 0);
        for i in 0..3 {
            sb.prepare(20 + i, 1);
            sb.worker_slot(0, 20 + i, 2, w.try_clone().expect("dup")).ready();
        }
        assert!((0..3).all(|i| sb.view(20 + i).accepting));
        assert!(!joined(&sb));
    }

    #[test]
    fn a_pools_total_never_goes_back() {
        let mut w = Work { busy_ns: 10, sum_us: 5, ..Work::default() };
        w.outcomes[0] = 3;
        let lower = Work { busy_ns: 9, sum_us: 5, ..Work::default() };
        let kept = lower.at_least(&w);
        assert_eq!((kept.busy_ns, kept.outcomes[0]), (10, 3));
        let mut sum = Work::default();
        sum.add(&w);
        sum.add(&w);
        assert_eq!((sum.busy_ns, sum.requests()), (20, 6));
    }

    #[test]
    fn wakes_only_when_a_threshold_is_crossed() {
        let (sb, r, w) = board();
        sb.publish(0, 1, 3, &Settings::OFF, 0);
        let w2 = w.try_clone().expect("dup");
        for i in 0..2 {
            sb.prepare(i, 1);
        }
        let a = sb.worker_slot(0, 0, 1, w);
        let b = sb.worker_slot(0, 1, 1, w2);
        a.ready();
        b.ready();
        assert_eq!(pending(&r), 0, "two idle of min 1, max 3: nothing to say");
        a.begin_connection();
        assert_eq!(pending(&r), 0, "one idle left: still at min_spare");
        b.begin_connection();
        assert_eq!(pending(&r), 1, "no idle worker left: below min_spare");
        a.end_connection();
        b.end_connection();
        assert_eq!(pending(&r), 0);
        b.exiting();
        assert_eq!(pending(&r), 1, "an exiting worker always says so");
        assert_eq!(sb.wakes(), 2);
        // With min_spare 0, the last idle worker filling up still says so: from then on,
        // connections queue in the kernel, which the manager watches.
        sb.publish(0, 0, 3, &Settings::OFF, 0);
        a.begin_connection();
        assert_eq!(pending(&r), 1, "no room left in the pool");
    }

    #[test]
    fn a_change_that_brings_a_verdict_before_the_manager_looks_wakes_it() {
        let (sb, r, w) = board();
        let rules = Settings {
            heartbeat_timeout_ms: Some(30_000),
            request_timeout_ms: Some(1_000),
            max_rss: Some(64 << 20),
            manager_judges_requests: true,
            ..Settings::OFF
        };
        sb.publish(0, 0, 4, &rules, 0);
        sb.prepare(0, 1);
        // Room for two: a connection leaves it room, so only a verdict wakes the manager here
        // (a worker that fills up wakes it for that, see above).
        let a = sb.worker_slot(0, 0, 2, w);
        a.ready();
        let _ = pending(&r);
        // The manager sleeps until the worker's heartbeat deadline: a request that starts now
        // is overdue long before that.
        let now = coarse_ms();
        sb.sleeping_until(Some(now + 30_000));
        a.begin_connection();
        a.set_request_started(now.max(1));
        assert_eq!(pending(&r), 1, "the request's deadline comes before the manager looks");
        a.end_connection();
        a.set_request_started(0);
        // The manager looks sooner than the deadline: nothing to say.
        sb.sleeping_until(Some(now + 500));
        a.begin_connection();
        a.set_request_started(now.max(1));
        assert_eq!(pending(&r), 0, "the manager will see it in time");
        // Awake, it may have read the slot before the change: every change tells it.
        a.end_connection();
        sb.awake();
        a.begin_connection();
        a.set_request_started(now.max(1) + 1);
        assert_eq!(pending(&r), 1);
        // Over max_rss: told at once, however late the manager means to look.
        a.end_connection();
        sb.sleeping_until(Some(now + 30_000));
        a.measured(1 << 20, 5);
        assert_eq!(pending(&r), 0);
        a.measured(100 << 20, 5);
        assert_eq!(pending(&r), 1, "over max_rss");
    }
}
