//! What a worker knows of its connections (the async model), and its ticker.
//!
//! Each connection keeps a few stamps (when its request started, since when it has waited for its
//! client, whether that wait is for its next request) in atomics its task writes and the ticker
//! reads. They are taken from the worker's own clock, which the ticker advances, so a request
//! costs a few plain stores and no system call. The ticker runs on the thread that runs the
//! handlers, every [`supervise::tick_ms`]: it stamps the worker's heartbeat (so a handler that
//! spins stops the stamps, and the manager sees it), measures the worker's memory and CPU time,
//! drops the connections past their limits, and writes the oldest request's start and the
//! long-request state to the scoreboard.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;
use tracing::{debug, info};

use super::stop::{Slot, Stop};
use crate::pool::supervise::{self, ConnectionSettings, ConnectionVerdict};
use crate::scoreboard::{Outcome, WorkerSlot};
use crate::sys::coarse_ms;

/// What a worker's connections share: the stop, and the worker's clock.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) stop: Arc<Stop>,
    /// Milliseconds on the monotonic clock, as of the last tick.
    clock: AtomicU64,
    /// Connections waiting for their next request now: a full worker competes for new clients
    /// only when it has one to let go.
    between: AtomicU32,
    /// Connections the acceptor handed to the runtime, and those the runtime took up: while
    /// they differ for long, the runtime is stuck (a handler spins or blocks).
    handed: AtomicU64,
    taken: AtomicU64,
    /// The acceptor waits for the runtime to take up what it handed: wake it (on `room`).
    claim_waiter: AtomicBool,
}

impl Tracker {
    pub(crate) fn new() -> Arc<Tracker> {
        Arc::new(Tracker {
            stop: Stop::new(),
            clock: AtomicU64::new(coarse_ms()),
            between: AtomicU32::new(0),
            handed: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            claim_waiter: AtomicBool::new(false),
        })
    }

    pub(crate) fn handed_over(&self) {
        self.handed.fetch_add(1, Ordering::SeqCst);
    }

    /// The runtime took up a connection. Returns whether the acceptor waits to be told.
    pub(crate) fn taken_up(&self) -> bool {
        self.taken.fetch_add(1, Ordering::SeqCst);
        self.claim_waiter.swap(false, Ordering::SeqCst)
    }

    /// Whether a connection handed to the runtime has not been taken up yet.
    pub(crate) fn unclaimed(&self) -> bool {
        self.taken.load(Ordering::SeqCst) < self.handed.load(Ordering::SeqCst)
    }

    /// The acceptor is about to wait for the runtime to take up its connection: whether it still
    /// has to (if not, the runtime took it meanwhile, and will not wake it).
    pub(crate) fn wait_for_claim(&self) -> bool {
        self.claim_waiter.store(true, Ordering::SeqCst);
        if self.unclaimed() {
            return true;
        }
        self.claim_waiter.store(false, Ordering::SeqCst);
        false
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    pub(crate) fn waiting_between(&self) -> u32 {
        self.between.load(Ordering::Relaxed)
    }
}

/// `request_timeout` in milliseconds (0: none), for what times each request on its own: the
/// streams of an HTTP/2 connection (`daemon::http`), many at once on one connection.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) static STREAM_REQUEST_MS: AtomicU64 = AtomicU64::new(0);

/// One connection's stamps; 0 is "none".
#[derive(Debug, Default)]
pub(crate) struct Tracked {
    request_ms: AtomicU64,
    reading_ms: AtomicU64,
    between: AtomicBool,
    long: AtomicBool,
    /// The ticker dropped it for a limit (not a panic).
    dropped: AtomicBool,
    /// When the request in hand began, on the precise clock (ns), for its duration; 0: none.
    begun_ns: AtomicU64,
    /// Its handler returned an error.
    failed: AtomicBool,
    /// Something else measures its requests (`daemon::http`, one per HTTP request or stream).
    own_requests: AtomicBool,
}

impl Tracked {
    pub(crate) fn was_dropped(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn new(now: u64) -> Arc<Tracked> {
        let t = Tracked::default();
        // The first request starts when the connection does.
        t.request_ms.store(now.max(1), Ordering::Relaxed);
        t.begun_ns.store(crate::sys::monotonic_ns().max(1), Ordering::Relaxed);
        Arc::new(t)
    }

    /// A raw handler's request began (its first bytes after a wait for its next one); the first
    /// began with the connection.
    pub(crate) fn measure_begins(&self) {
        if self.begun_ns.load(Ordering::Relaxed) == 0 {
            self.begun_ns.store(crate::sys::monotonic_ns().max(1), Ordering::Relaxed);
        }
    }

    /// The request in hand (if one is measured here) is done: its duration and outcome go to the
    /// worker's slot.
    pub(crate) fn measure_done(&self, slot: Option<&WorkerSlot>, outcome: Outcome) {
        let begun = self.begun_ns.swap(0, Ordering::Relaxed);
        if begun == 0 || self.own_requests.load(Ordering::Relaxed) {
            return;
        }
        if let Some(slot) = slot {
            slot.request_finished(crate::sys::monotonic_ns().saturating_sub(begun), outcome);
        }
    }

    /// How the connection's last request ended, when the connection ends: cut by a limit,
    /// failed (an error returned, or a panic), or answered.
    pub(crate) fn final_outcome(&self, panicked: bool) -> Outcome {
        if self.was_dropped() {
            Outcome::Timeout
        } else if panicked || self.failed.load(Ordering::Relaxed) {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }

    pub(crate) fn handler_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// `daemon::http` measures each request itself.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn measured_elsewhere(&self) {
        self.own_requests.store(true, Ordering::Relaxed);
    }

    /// The handler waits for its next request: the one in hand is done.
    pub(crate) fn request_done(&self) {
        self.request_ms.store(0, Ordering::Relaxed);
        self.long.store(false, Ordering::Relaxed);
    }

    /// A new request has arrived.
    pub(crate) fn request_begins(&self, now: u64) {
        self.request_ms.store(now.max(1), Ordering::Relaxed);
    }

    /// A read of this connection found nothing yet.
    pub(crate) fn waits(&self, tracker: &Tracker, between: bool) {
        if self.reading_ms.load(Ordering::Relaxed) == 0 {
            self.reading_ms.store(tracker.now().max(1), Ordering::Relaxed);
            if between {
                self.between.store(true, Ordering::Relaxed);
                tracker.between.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A read of this connection is over (it found data, or gave up).
    pub(crate) fn waited(&self, tracker: &Tracker) {
        if self.reading_ms.load(Ordering::Relaxed) != 0 {
            self.reading_ms.store(0, Ordering::Relaxed);
            if self.between.swap(false, Ordering::Relaxed) {
                tracker.between.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn mark_long(&self) {
        self.long.store(true, Ordering::Relaxed);
    }

    fn facts(&self) -> supervise::Connection {
        let stamp = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|&t| t != 0);
        supervise::Connection {
            request_ms: stamp(&self.request_ms),
            reading_ms: stamp(&self.reading_ms),
            between: self.between.load(Ordering::Relaxed),
            long: self.long.load(Ordering::Relaxed),
        }
    }
}

/// A connection as the ticker holds it.
struct Entry {
    tracked: Arc<Tracked>,
    /// Where its `read_or_stop` waits: letting it go wakes it there.
    slot: Arc<Slot>,
    task: AbortHandle,
    peer: crate::net::Peer,
}

/// The connections of one worker, on its runtime thread.
#[derive(Default)]
pub(crate) struct Connections {
    entries: RefCell<Vec<Entry>>,
}

impl Connections {
    pub(crate) fn add(&self, tracked: Arc<Tracked>, slot: Arc<Slot>, task: AbortHandle, peer: crate::net::Peer) {
        let mut entries = self.entries.borrow_mut();
        // The finished ones go as the list grows, not on every connection.
        if entries.len() >= 64 && entries.len().is_power_of_two() {
            entries.retain(|e| !e.task.is_finished());
        }
        entries.push(Entry { tracked, slot, task, peer });
    }

    /// A full worker admits a new client by letting go of the connection that has waited longest
    /// for its next request. Returns whether there was one.
    pub(crate) fn make_room(&self) -> bool {
        let entries = self.entries.borrow();
        let live: Vec<&Entry> = entries.iter().filter(|e| !e.task.is_finished()).collect();
        let facts: Vec<supervise::Connection> = live.iter().map(|e| e.tracked.facts()).collect();
        match supervise::evictee(&facts).and_then(|i| live.get(i)) {
            Some(e) => {
                debug!(peer = %e.peer, "full: letting go of the connection that waited longest for its next request");
                e.slot.let_go();
                true
            }
            None => false,
        }
    }

    /// Applies the connection limits; returns the oldest request's start and whether any request
    /// is long.
    fn sweep(&self, now: u64, limits: &ConnectionSettings) -> (u64, bool) {
        let mut entries = self.entries.borrow_mut();
        entries.retain(|e| !e.task.is_finished());
        let (mut oldest, mut long) = (0u64, false);
        for e in entries.iter() {
            let facts = e.tracked.facts();
            match supervise::connection_verdict(&facts, limits, now) {
                Some(ConnectionVerdict::Overdue { started_ms, long }) => {
                    let limit = if long { "long_request_timeout" } else { "request_timeout" };
                    info!(
                        peer = %e.peer,
                        age_ms = now.saturating_sub(started_ms),
                        "closing a connection: its request ran past {limit}"
                    );
                    e.tracked.dropped.store(true, Ordering::Relaxed);
                    e.task.abort();
                    continue;
                }
                Some(ConnectionVerdict::Idle { since_ms }) => {
                    info!(
                        peer = %e.peer,
                        idle_ms = now.saturating_sub(since_ms),
                        "closing a connection: its client sent nothing within idle_timeout"
                    );
                    e.tracked.dropped.store(true, Ordering::Relaxed);
                    e.task.abort();
                    continue;
                }
                Some(ConnectionVerdict::KeepaliveOver) => {
                    debug!(peer = %e.peer, "letting go of a keep-alive connection: no request within keepalive_timeout");
                    e.slot.let_go();
                }
                None => {}
            }
            if let Some(t) = facts.request_ms {
                oldest = if oldest == 0 { t } else { oldest.min(t) };
                long |= facts.long;
            }
        }
        (oldest, long)
    }
}

/// What the ticker does, how often.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticking {
    pub tick_ms: u64,
    pub heartbeat_ms: u64,
    pub limits: ConnectionSettings,
}

/// The ticker of an async worker: runs until the runtime ends.
pub(crate) async fn ticker(
    tracker: Arc<Tracker>,
    connections: Rc<Connections>,
    slot: Arc<WorkerSlot>,
    t: Ticking,
    turns: Option<Rc<super::turns::TurnWatch>>,
) {
    let mut next_measure = 0;
    loop {
        if let Some(watch) = &turns {
            watch.look();
        }
        let now = coarse_ms();
        tracker.clock.store(now, Ordering::Relaxed);
        slot.heartbeat(now);
        if now >= next_measure {
            measure(&slot);
            next_measure = now.saturating_add(t.heartbeat_ms);
        }
        let (oldest, long) = connections.sweep(now, &t.limits);
        slot.set_request_started(oldest);
        slot.set_long(long);
        // The measurements come every heartbeat interval, not at the first tick after it: a
        // worker over max_rss says so within one interval of the crossing.
        let until_measure = next_measure.saturating_sub(coarse_ms()).max(1);
        tokio::time::sleep(Duration::from_millis(t.tick_ms.min(until_measure))).await;
    }
}

/// Writes this process's resident memory and CPU time to its slot.
pub(crate) fn measure(slot: &WorkerSlot) {
    let rss = crate::sys::proc::self_rss().unwrap_or(0);
    let cpu = crate::sys::proc::self_cpu_ms().unwrap_or(0);
    slot.measured(rss, cpu);
}
