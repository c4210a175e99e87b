//! A standby's watch on the workers with turns to accept. A worker that fills up, stalls or
//! dies gives its turn back itself (or the manager does); one that is frozen (SIGSTOP, a
//! debugger, a cgroup freezer) cannot, and the kernel passes it over for connections only if
//! someone else waits on the listeners, which standbys do not. So at each tick of its ticker
//! (no wake-up of its own) a standby looks: connections waiting in a listen queue, and the pool
//! has accepted none since its last look, twice running: it takes a turn past the bound and
//! wakes its acceptor. The bound holds again as turns are given back.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nix::sys::eventfd::EventFd;
use tracing::warn;

use crate::boot::listener::Listener;
use crate::scoreboard::WorkerSlot;

pub(crate) struct TurnWatch {
    /// Copies of the listeners (whether each is a Unix socket), given up as soon as the worker
    /// stops accepting: a copy must not keep a listener open past the worker's own.
    listeners: RefCell<Vec<(OwnedFd, bool)>>,
    slot: Arc<WorkerSlot>,
    /// The acceptor's wake-up.
    room: Arc<EventFd>,
    /// The pool's accepted count at the last look that saw connections waiting.
    last: Cell<Option<u64>>,
}

impl TurnWatch {
    pub(crate) fn new(listeners: &[Listener], slot: Arc<WorkerSlot>, room: Arc<EventFd>) -> TurnWatch {
        let copies = listeners
            .iter()
            .filter_map(|l| Some((l.as_fd().try_clone_to_owned().ok()?, l.addr.is_unix())))
            .collect();
        TurnWatch { listeners: RefCell::new(copies), slot, room, last: Cell::new(None) }
    }

    /// One look, at a tick.
    pub(crate) fn look(&self) {
        if !self.slot.is_standby() {
            self.last.set(None);
            return;
        }
        let waiting: u32 = self
            .listeners
            .borrow()
            .iter()
            .filter_map(|(fd, unix)| crate::sys::accept_queue(fd.as_fd(), *unix).ok())
            .map(|q| q.waiting)
            .sum();
        if waiting == 0 {
            self.last.set(None);
            return;
        }
        let accepted = self.slot.pool_accepted();
        if self.last.replace(Some(accepted)) != Some(accepted) {
            return;
        }
        self.last.set(None);
        if self.slot.force_turn() {
            warn!(waiting, "connections wait and the workers with turns to accept took none since the last two looks (frozen?): this standby accepts too");
            let _ = self.room.write(1);
        }
    }

    /// The worker accepts no more: the copies go.
    pub(crate) fn release(&self) {
        self.listeners.borrow_mut().clear();
    }
}
