//! Forking a worker, and what a fork that fails means: EAGAIN and ENOMEM (out of processes or
//! memory, for now) are retried with the pool's backoff and logged once per episode; anything
//! else is reported the same way and retried at the slowest rate, and the pool keeps what it has.

use std::net::TcpStream;

use nix::errno::Errno;
use tracing::{error, info, warn};

use super::procs::Proc;
use super::Manager;
use crate::hooks::Spawned;
use crate::pool::supervise::BACKOFF_MAX_MS;
use crate::pool::Kind;
use crate::sys::{fork, Forked};
use crate::worker::{self, Job};

impl Manager {
    /// Forks one worker of pool `i` into a free slot; for the post-forking pool, with the
    /// connection it serves. Returns false if it could not.
    pub(super) fn spawn(&mut self, i: usize, now: u64, connection: Option<TcpStream>) -> bool {
        let Some(slot) = self.procs.free_slot() else {
            error!("the scoreboard is full");
            return false;
        };
        let Some(generation) = self.pools.get(&i).map(|p| p.generation) else { return false };
        self.board.prepare(slot, generation);
        match fork() {
            Ok(Forked::Parent(pid)) => {
                drop(connection);
                self.board.set_pid(slot, pid.as_raw());
                self.procs.insert(Proc { pid, slot, pool: i, generation, started_ms: now, stopping: None });
                let Some(pool) = self.pools.get_mut(&i) else { return true };
                let failed = pool.restarts.fork_worked();
                if failed > 0 {
                    info!(pool = %pool.name, failed, "fork works again");
                    pool.fork_failures_logged = false;
                }
                let spawned = Spawned { pid: pid.as_raw() as u32, pool: pool.name.clone(), slot, generation };
                *self.counters.spawned.entry(pool.name.clone()).or_default() += 1;
                // One line per post-forked child would be one per connection: debug.
                if pool.kind == Kind::Postfork {
                    tracing::debug!(slot, pid = spawned.pid, "child forked for a connection");
                } else {
                    info!(pool = %pool.name, slot, pid = spawned.pid, generation, "worker spawned");
                }
                self.hooks.on_spawn(&spawned);
                true
            }
            Ok(Forked::Child) => self.become_worker(i, slot, connection),
            Err(e) => {
                self.board.clear(i, slot);
                let Some(pool) = self.pools.get_mut(&i) else { return false };
                let delay = if matches!(e, Errno::EAGAIN | Errno::ENOMEM) {
                    pool.restarts.fork_failed(now)
                } else {
                    for _ in 0..16 {
                        pool.restarts.fork_failed(now);
                    }
                    BACKOFF_MAX_MS
                };
                if !pool.fork_failures_logged {
                    pool.fork_failures_logged = true;
                    warn!(
                        pool = %pool.name,
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
    fn become_worker(&mut self, i: usize, slot: usize, connection: Option<TcpStream>) -> ! {
        drop(self.own.take());
        drop(self.upgrade.take());
        let wake = match self.wake_write.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                let why = format!("cannot set up the worker's wake pipe: {e}");
                self.board.give_up(slot, &why);
                crate::sys::exit_now(1)
            }
        };
        let Some(pool) = self.pools.get(&i) else { crate::sys::exit_now(1) };
        let handler = self.hooks.on_accept.map(|a| a.handler);
        let job = match (&pool.kind, handler, connection) {
            (Kind::Postfork, Some(h), Some(stream)) => Job::One(h, stream),
            (Kind::Prefork, Some(h), _) => Job::Accept(h),
            (Kind::Supervised, _, _) => match self.hooks.supervised {
                Some(s) => Job::Supervised(s.run),
                None => crate::sys::exit_now(1),
            },
            (Kind::Task(g), _, _) => match self.hooks.task(&g.run) {
                Some(t) => Job::Task { group: g.name.clone(), run: t.run },
                None => crate::sys::exit_now(1),
            },
            _ => crate::sys::exit_now(1),
        };
        // Only the pre-forking pool's workers accept from the listeners; the others close them.
        let listeners = if matches!(job, Job::Accept(_)) { std::mem::take(&mut self.listeners) } else { Vec::new() };
        self.listeners.clear();
        let capacity = match job {
            Job::Accept(_) => self.config.clients,
            _ => 1,
        };
        worker::run(worker::Setup {
            slot: self.board.worker_slot(i, slot, capacity, wake),
            generation: pool.generation,
            manager_pid: self.pid,
            listeners: &listeners,
            hooks: &self.hooks,
            config: &self.config,
            job,
        })
    }
}
