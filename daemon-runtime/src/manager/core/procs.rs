//! The process table (nginx's `ngx_processes`): every child the manager owns, by pid, with its
//! kind. A worker has its pool, its slot and where it is in its life; a foreign child (a process
//! the program handed over with `daemon::foreign_child`) only when it gets KILL once it has had
//! TERM. A pid not in the table is a stranger: an orphan re-parented to the manager (a child
//! subreaper): what a worker left behind, stopped with the daemon as a foreign child is.

use std::collections::{BTreeMap, HashMap};

use super::Pid;
use crate::pool::supervise::{Ladder, Verdict};
use crate::scoreboard::SLOTS;

/// Why the manager is stopping a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// The daemon stops.
    Stop,
    /// A surplus spare, TTOU, or an old generation after HUP.
    Retire,
    /// A supervision verdict.
    Verdict(Verdict),
}

impl Why {
    /// For the log line of the worker's exit.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Why::Stop => "the daemon stops",
            Why::Retire => "retired",
            Why::Verdict(Verdict::Silent { .. }) => "no heartbeat",
            Why::Verdict(Verdict::Overdue { .. }) => "request past its deadline",
            Why::Verdict(Verdict::NotReady) => "not ready after start_timeout",
            Why::Verdict(Verdict::OverMemory { .. }) => "over max_rss",
            Why::Verdict(Verdict::OverCpu { .. }) => "over max_cpu",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Stopping {
    pub ladder: Ladder,
    pub why: Why,
    /// The ladder climbed because the worker did not stop in time (not because a stronger stop
    /// was asked).
    pub climbed: bool,
    /// The first rung waits (until then, or until the driver says the worker's stack is taken):
    /// a worker judged hung is asked for its stack before it gets its signal.
    pub held_until: Option<u64>,
}

impl Stopping {
    /// The next rung and when it is due: the held first rung, or the ladder's next.
    pub(crate) fn next_due(&self, s: &crate::pool::supervise::Settings) -> Option<(crate::pool::supervise::Rung, u64)> {
        match self.held_until {
            Some(at) => Some((self.ladder.rung, at)),
            None => self.ladder.next(s),
        }
    }
}

/// One worker.
#[derive(Debug)]
pub(crate) struct Proc {
    /// `None` until the driver says the fork worked.
    pub pid: Option<Pid>,
    pub slot: usize,
    pub pool: usize,
    pub generation: u32,
    /// When it was forked (ms, monotonic).
    pub started_ms: u64,
    pub stopping: Option<Stopping>,
}

/// A foreign child: stopped with the daemon, TERM then KILL after graceful_timeout.
#[derive(Debug, Default)]
pub(crate) struct Foreign {
    /// When it gets KILL, once it has been sent TERM.
    pub kill_at_ms: Option<u64>,
}

/// What a reaped pid was.
#[derive(Debug)]
pub(crate) enum Gone {
    Worker(Proc),
    Foreign,
}

#[derive(Debug, Default)]
pub(crate) struct Procs {
    by_slot: BTreeMap<usize, Proc>,
    by_pid: HashMap<Pid, usize>,
    foreign: BTreeMap<Pid, Foreign>,
}

impl Procs {
    pub(crate) fn adopt(&mut self, pid: Pid, child: Foreign) {
        self.foreign.insert(pid, child);
    }

    pub(crate) fn foreign_mut(&mut self) -> impl Iterator<Item = (Pid, &mut Foreign)> {
        self.foreign.iter_mut().map(|(&pid, f)| (pid, f))
    }

    pub(crate) fn foreign(&self) -> impl Iterator<Item = (Pid, &Foreign)> {
        self.foreign.iter().map(|(&pid, f)| (pid, f))
    }

    /// When the next foreign child is due its KILL.
    pub(crate) fn foreign_deadline(&self) -> Option<u64> {
        self.foreign.values().filter_map(|f| f.kill_at_ms).min()
    }

    /// Whether `pid` is a worker's or a foreign child's.
    pub(crate) fn knows(&self, pid: Pid) -> bool {
        self.by_pid.contains_key(&pid) || self.foreign.contains_key(&pid)
    }

    /// Whether no child at all is left, workers or foreign.
    pub(crate) fn all_gone(&self) -> bool {
        self.by_slot.is_empty() && self.foreign.is_empty()
    }

    /// Whatever had this pid, taken out of the table; `None` for a stranger.
    pub(crate) fn reap(&mut self, pid: Pid) -> Option<Gone> {
        match self.remove(pid) {
            Some(p) => Some(Gone::Worker(p)),
            None => self.foreign.remove(&pid).map(|_| Gone::Foreign),
        }
    }

    pub(crate) fn insert(&mut self, proc: Proc) {
        if let Some(pid) = proc.pid {
            self.by_pid.insert(pid, proc.slot);
        }
        self.by_slot.insert(proc.slot, proc);
    }

    /// The pid of the worker forked into `slot`, once the fork is confirmed.
    pub(crate) fn set_pid(&mut self, slot: usize, pid: Pid) {
        if let Some(p) = self.by_slot.get_mut(&slot) {
            p.pid = Some(pid);
            self.by_pid.insert(pid, slot);
        }
    }

    /// A worker whose fork failed: its slot is free again.
    pub(crate) fn remove_slot(&mut self, slot: usize) -> Option<Proc> {
        let p = self.by_slot.remove(&slot)?;
        if let Some(pid) = p.pid {
            self.by_pid.remove(&pid);
        }
        Some(p)
    }

    /// The worker with this pid, taken out of the table. A pid that is not a worker's (an orphan
    /// re-parented to a manager running as PID 1, a foreign child) is not touched.
    pub(crate) fn remove(&mut self, pid: Pid) -> Option<Proc> {
        let slot = self.by_pid.remove(&pid)?;
        self.by_slot.remove(&slot)
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&Proc> {
        self.by_slot.get(&slot)
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut Proc> {
        self.by_slot.get_mut(&slot)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.by_slot.values()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Proc> {
        self.by_slot.values_mut()
    }

    pub(crate) fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.by_slot.keys().copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_slot.len()
    }

    /// The lowest free slot.
    pub(crate) fn free_slot(&self) -> Option<usize> {
        (0..SLOTS).find(|s| !self.by_slot.contains_key(s))
    }
}
