//! An async supervised worker, with its on_shutdown, and an error it may return.

use std::time::Duration;

#[daemon::main(respawn_delay = "500ms", heartbeat_interval = "1s")]
fn main() {
    stop_before_forking();
}

#[derive(Debug)]
struct Lost;

#[daemon::supervised]
async fn run(ctx: daemon::Supervised) -> Result<(), Lost> {
    while ctx.wait(Duration::from_secs(1)).await {
        if !ctx.ping_supervisor() {
            return Err(Lost);
        }
    }
    Ok(())
}

#[daemon::on_shutdown]
fn bye() {}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
