//! What a worker knows of itself wherever its code runs: its own slot (for `daemon::long()`,
//! `daemon::heartbeat()`, `daemon::describe_request()`, which a handler calls without a handle
//! to anything), the connection whose handler runs, how it gives up, and its runtime. A leaf:
//! the contexts (`Connection`, `Supervised`, `Task`) and the hooks use it, and it uses neither.

use std::sync::{Arc, OnceLock};

use tracing::error;

use super::track::Tracked;
use crate::scoreboard::{State, WorkerSlot};

/// This process's own slot, once it is a worker: for `daemon::long()` and
/// `daemon::describe_request()`, which a classic handler calls without a handle to anything.
pub(crate) static CURRENT: OnceLock<Arc<WorkerSlot>> = OnceLock::new();

tokio::task_local! {
    /// The connection whose handler runs now, in an async worker.
    pub(crate) static CONNECTION: Arc<Tracked>;
}

pub(crate) fn current() -> Option<&'static Arc<WorkerSlot>> {
    CURRENT.get()
}

/// Marks the request in hand long (state `l`): it is judged by `long_request_timeout` instead
/// of `request_timeout` and `heartbeat_timeout`, until it ends. For the classic model's handler,
/// which has no `Connection` to call [`Connection::long`](connection::Connection::long) on; in an
/// async handler it marks the connection whose task calls it. Returns whether it marked
/// anything (outside a worker's request, nothing).
pub fn long() -> bool {
    let Some(slot) = current() else { return false };
    let _ = CONNECTION.try_with(|t| t.mark_long());
    slot.set_long(true);
    true
}

/// Whether this worker's graceful stop has begun (for `daemon::stopping()`).
pub(crate) fn is_stopping() -> bool {
    current().is_some_and(|slot| slot.state() == State::Exiting)
}

/// A heartbeat from the calling thread: for a classic handler doing long work, which would
/// otherwise show no sign of life until it returns (the worker stamps its heartbeat between
/// requests, and its one thread is the handler's). Call it every few seconds, well within
/// `heartbeat_timeout`; the request's age is still judged by `request_timeout`. An async worker
/// stamps from its runtime on its own, so there it changes nothing. Returns whether this process
/// is a worker.
pub fn heartbeat() -> bool {
    let Some(slot) = current() else { return false };
    slot.heartbeat(crate::sys::coarse_ms());
    true
}

/// Says what the request in hand is (`GET /report`), for the log of a verdict against this
/// worker; the classic model's
/// [`Connection::describe_request`](connection::Connection::describe_request).
pub fn describe_request(what: &str) {
    if let Some(slot) = current() {
        slot.describe_request(what);
    }
}

/// The worker's own tokio runtime, built after fork (never carried across one). Handlers may
/// hold `!Send` state (an `Rc`, a `RefCell`), so they run as local tasks on a local runtime: a
/// `LocalSet` on a current-thread runtime would schedule each task twice (about 1.5% of a
/// worker's CPU at 180k requests/s).
pub(crate) fn local_runtime() -> Result<tokio::runtime::LocalRuntime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())
        .map_err(|e| format!("cannot build the worker's tokio runtime: {e}"))
}

/// Logs why this worker cannot go on and leaves it on the scoreboard for the manager. Returns
/// the exit status.
pub(crate) fn give_up(slot: &WorkerSlot, why: String) -> i32 {
    error!("{why}");
    slot.give_up(&why);
    1
}

/// The text a panic carried, if it was a string.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

