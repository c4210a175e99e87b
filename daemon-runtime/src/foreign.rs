//! Foreign children (POE's foreign_child): processes the program started itself, in `main`'s
//! body, that the manager should reap and stop with the pool.

use std::sync::Mutex;

static HANDED_OVER: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Hands the manager a child process the program spawned (call it from `main`'s body, which runs
/// in the manager). The manager reaps it when it exits, so it never lingers as a zombie, and sends
/// it TERM when the daemon stops (KILL after `graceful_timeout`); the daemon's stop waits for it.
///
/// ```no_run
/// // In `main`'s body, under #[daemon::main] (the facade re-exports this as daemon::foreign_child):
/// let helper = std::process::Command::new("sleep").arg("1000").spawn()?;
/// daemon_runtime::foreign_child(helper.id());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn foreign_child(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    match HANDED_OVER.lock() {
        Ok(mut list) => list.push(pid),
        Err(poisoned) => poisoned.into_inner().push(pid),
    }
}

/// The children handed over since the last call.
pub(crate) fn take() -> Vec<i32> {
    match HANDED_OVER.lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    }
}
