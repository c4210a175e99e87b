//! No worker hooks: main's body is the daemon, with its own loop.

use std::time::Duration;

#[daemon::main(detach)]
fn main() {
    stop_before_forking();
    while !daemon::wait_for_stop(Duration::from_millis(100)) {
        if daemon::take_reload() || daemon::stopping() {
            break;
        }
    }
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
