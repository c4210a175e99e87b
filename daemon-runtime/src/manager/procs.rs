//! The process table: every worker the manager has forked, by slot and by pid, with where it is
//! in its life. (Foreign children are kept beside it, in `Manager::foreign`.)

use std::collections::{BTreeMap, HashMap};

use nix::unistd::Pid;

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

#[derive(Clone, Copy, Debug)]
pub(crate) struct Stopping {
    pub ladder: Ladder,
    pub why: Why,
}

/// One worker.
#[derive(Debug)]
pub(crate) struct Proc {
    pub pid: Pid,
    pub slot: usize,
    pub pool: usize,
    pub generation: u32,
    /// When it was forked (ms, monotonic).
    pub started_ms: u64,
    pub stopping: Option<Stopping>,
}

#[derive(Debug, Default)]
pub(crate) struct Procs {
    by_slot: BTreeMap<usize, Proc>,
    by_pid: HashMap<Pid, usize>,
}

impl Procs {
    pub(crate) fn insert(&mut self, proc: Proc) {
        self.by_pid.insert(proc.pid, proc.slot);
        self.by_slot.insert(proc.slot, proc);
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

    pub(crate) fn is_empty(&self) -> bool {
        self.by_slot.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_slot.len()
    }

    /// The lowest free slot.
    pub(crate) fn free_slot(&self) -> Option<usize> {
        (0..SLOTS).find(|s| !self.by_slot.contains_key(s))
    }
}
