//! Forking a worker the core asked for: the parent tells the core the pid (or why the fork
//! failed); the child drops what is the manager's alone and becomes the worker.

use nix::errno::Errno;

use super::core::{Event, ForkError, Job, Pid};
use super::Manager;
use crate::sys::{fork, Forked};
use crate::worker::{self, Job as WorkerJob};

impl Manager {
    /// Forks one worker of pool `pool` into `slot` (prepared on the scoreboard already); for the
    /// post-forking pool, with the connection in hand.
    pub(super) fn fork(&mut self, pool: usize, slot: usize, generation: u32, job: Job) -> Event {
        match fork() {
            Ok(Forked::Parent(pid)) => {
                // The child has its copy of the connection.
                if job == Job::Connection {
                    self.connection = None;
                }
                Event::Forked { slot, pid: Pid(pid.as_raw()) }
            }
            Ok(Forked::Child) => self.become_worker(pool, slot, generation, job),
            Err(e) => {
                let what = e.desc();
                let error = if matches!(e, Errno::EAGAIN | Errno::ENOMEM) { ForkError::Again(what) } else { ForkError::Other(what) };
                Event::ForkFailed { slot, error }
            }
        }
    }

    /// In the child: drop what is the manager's alone and run the worker. Never returns.
    fn become_worker(&mut self, pool: usize, slot: usize, generation: u32, job: Job) -> ! {
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
        let handler = self.hooks.on_accept.map(|a| a.handler);
        let job = match (job, handler, self.connection.take()) {
            (Job::Connection, Some(h), Some(stream)) => WorkerJob::One(h, stream),
            (Job::Accept, Some(h), _) => WorkerJob::Accept(h),
            (Job::Supervised, _, _) => match self.hooks.supervised {
                Some(s) => WorkerJob::Supervised(s.run),
                None => crate::sys::exit_now(1),
            },
            (Job::Task { group, run }, _, _) => match self.hooks.task(&run) {
                Some(t) => WorkerJob::Task { group, run: t.run },
                None => crate::sys::exit_now(1),
            },
            _ => crate::sys::exit_now(1),
        };
        // Only the pre-forking pool's workers accept from the listeners; the others close them.
        let listeners = if matches!(job, WorkerJob::Accept(_)) { std::mem::take(&mut self.listeners) } else { Vec::new() };
        self.listeners.clear();
        let capacity = self.core.capacity(pool);
        let (name, kind) = self.core.pool_of(pool);
        worker::run(worker::Setup {
            slot: self.board.worker_slot(pool, slot, capacity, wake),
            pool: name,
            kind,
            generation,
            manager_pid: self.pid,
            stacks: std::os::fd::AsRawFd::as_raw_fd(&self.stack_write),
            listeners: &listeners,
            hooks: &self.hooks,
            config: self.core.config(),
            job,
        })
    }
}
