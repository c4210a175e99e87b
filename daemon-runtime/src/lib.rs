//! The runtime of `daemon`: a manager process that forks and supervises a pool of workers, keeps
//! a shared scoreboard of their states, keeps the number of idle workers between `min_spare` and
//! `max_spare`, recycles workers, and dispatches signals.
//!
//! Programs use it through the `daemon` crate's attributes; see that crate's documentation.

mod app;
mod boot;
mod child;
mod cli;
mod control;
mod entry;
mod foreign;
mod hooks;
#[cfg(feature = "http")]
pub mod http;
mod manager;
pub mod metrics;
pub mod net;
mod plain;
mod program;
mod pool;
mod scoreboard;
mod signals;
mod sources;
mod stack;
mod sys;
#[cfg(feature = "tls")]
pub mod tls;
mod worker;

pub use pool::{backlog, policy, supervise};

#[doc(hidden)]
pub mod __private;

/// Hooks for the micro-benchmarks (`cargo bench -p daemon-runtime`); not an API.
#[doc(hidden)]
pub mod __bench {
    use std::os::fd::OwnedFd;

    use crate::scoreboard::{Scoreboard, WorkerSlot};

    /// A scoreboard with one worker slot, as a worker holds it.
    pub struct Board {
        _board: Scoreboard,
        slot: WorkerSlot,
        _wake: OwnedFd,
    }

    /// Gives this process the program's metrics area, as a manager has it; why not, if it
    /// cannot.
    pub fn metrics_area() -> Result<(), String> {
        match crate::metrics::area::install(None) {
            (Some(_), _) => Ok(()),
            (None, why) => Err(why.unwrap_or_else(|| "no metrics area".to_string())),
        }
    }

    impl Board {
        pub fn new(clients: u32) -> nix::Result<Board> {
            let board = Scoreboard::new()?;
            board.publish(0, 1, 4, &crate::pool::supervise::Settings::OFF, 0);
            let (wake, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
            board.prepare(0, 1);
            let slot = board.worker_slot(0, 0, clients, write);
            slot.ready();
            Ok(Board { _board: board, slot, _wake: wake })
        }

        /// One connection's two scoreboard transitions: accepted, then done.
        pub fn connection(&self) {
            self.slot.begin_connection();
            self.slot.end_connection();
        }
    }
}

pub use child::{Child, PoolKind};
pub use tokio;
pub use tracing;
pub use worker::connection::Connection;
pub use hooks::{Reaped, Spawned};
pub use plain::{stopping, take_reload, wait_for_stop};
pub use worker::work::{Supervised, Task, WorkContext};
pub use worker::{describe_request, heartbeat, long};
pub use worker::state::state;
pub use daemon_config as config;
pub use foreign::foreign_child;
pub use signals::default_signals;
pub use app::{path_from_start_dir, settings, start_dir, try_settings, ProgramSettings};
pub use clap;
pub use hooks::HookError;
