//! The runtime of `daemon`: a manager process that forks and supervises a pool of workers, keeps
//! a shared scoreboard of their states, keeps the number of idle workers between `min_spare` and
//! `max_spare`, recycles workers, and dispatches signals.
//!
//! Programs use it through the `daemon` crate's attributes; see that crate's documentation.

mod child;
mod cli;
mod connection;
mod control;
mod detach;
mod foreign;
mod entry;
mod hooks;
mod listener;
mod logfile;
mod logging;
mod manager;
mod notify;
mod pidfile;
mod policy;
mod privileges;
mod scoreboard;
mod signals;
mod sources;
mod sys;
mod worker;

#[doc(hidden)]
pub mod __private;

pub use child::Child;
pub use connection::Connection;
pub use daemon_config as config;
pub use foreign::foreign_child;
pub use hooks::HookError;
