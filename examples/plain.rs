//! `plain`: a daemon without workers (POE's non-forking use). With no `on_accept`, `supervised`
//! or `task`, `main`'s body is the daemon: it detaches (`start`), writes its pid file, logs, drops
//! privileges and handles its signals like any other, and runs its own loop until a stop is
//! asked.
//!
//! ```sh
//! cargo run --example plain -- start --pid-file /tmp/plain.pid --log-file /tmp/plain.log
//! cargo run --example plain -- reload --pid-file /tmp/plain.pid
//! cargo run --example plain -- stop --pid-file /tmp/plain.pid
//! ```

use std::time::Duration;

#[daemon::main(detach)]
fn main() {
    tracing::info!("plain daemon running");
    let mut n = 0u64;
    // One round of work a second, until a stop is asked (TERM, INT, QUIT, or `stop`).
    while !daemon::wait_for_stop(Duration::from_millis(200)) {
        n += 1;
        if daemon::take_reload() {
            tracing::info!(n, "plain daemon reloaded: reading its settings again");
        }
    }
    tracing::info!(rounds = n, "plain daemon stopping");
}
