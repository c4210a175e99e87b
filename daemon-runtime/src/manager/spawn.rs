//! Forking a worker, and what a fork that fails means: EAGAIN and ENOMEM (out of processes or
//! memory, for now) are retried with the pool's backoff and logged once per episode; anything
//! else is reported the same way and retried at the slowest rate, and the pool keeps what it has.

use nix::errno::Errno;
use tracing::{error, info, warn};

use super::procs::Proc;
use super::Manager;
use crate::pool::supervise::BACKOFF_MAX_MS;
use crate::sys::{fork, Forked};
use crate::worker;

impl Manager {
    /// Forks one worker into a free slot. Returns false if it could not.
    pub(super) fn spawn(&mut self, now: u64) -> bool {
        let Some(slot) = self.procs.free_slot() else {
            error!("the scoreboard is full");
            return false;
        };
        let generation = self.pool.generation;
        self.board.prepare(slot, generation);
        match fork() {
            Ok(Forked::Parent(pid)) => {
                self.board.set_pid(slot, pid.as_raw());
                self.procs.insert(Proc { pid, slot, pool: self.pool.index, generation, started_ms: now, stopping: None });
                let failed = self.pool.restarts.fork_worked();
                if failed > 0 {
                    info!(failed, "fork works again");
                    self.pool.fork_failures_logged = false;
                }
                info!(slot, pid = pid.as_raw(), generation, "worker spawned");
                true
            }
            Ok(Forked::Child) => self.become_worker(slot),
            Err(e) => {
                self.board.clear(self.pool.index, slot);
                let delay = if matches!(e, Errno::EAGAIN | Errno::ENOMEM) {
                    self.pool.restarts.fork_failed(now)
                } else {
                    for _ in 0..16 {
                        self.pool.restarts.fork_failed(now);
                    }
                    BACKOFF_MAX_MS
                };
                if !self.pool.fork_failures_logged {
                    self.pool.fork_failures_logged = true;
                    warn!(
                        error = %e,
                        delay_ms = delay,
                        "fork failed; retrying with a backoff (further failures are counted, not logged, until one works)"
                    );
                }
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
            slot: self.board.worker_slot(self.pool.index, slot, self.config.clients, wake),
            generation: self.pool.generation,
            manager_pid: self.pid,
            listeners: &self.listeners,
            hooks: &self.hooks,
            config: &self.config,
        })
    }
}
