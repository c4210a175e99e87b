//! Task groups of both models, sync and async, beside an HTTP pool, with every group key.

use std::time::Duration;

#[daemon::main(prefork = 2)]
fn main() {
    stop_before_forking();
}

#[daemon::task]
fn plain_group(ctx: &daemon::Task) {
    while ctx.sleep(Duration::from_millis(100)) {}
}

#[daemon::task(workers = 2, max_workers = 8, model = oneshot, scaling_interval = "250ms")]
async fn jobs(ctx: daemon::Task) -> Result<(), String> {
    ctx.busy();
    let _ = ctx.group();
    ctx.idle();
    ctx.stopped().await;
    Ok(())
}

#[daemon::task(workers = 3, model = longlived, run = "plain_group")]
fn reuses_another(ctx: &daemon::Task) {
    let _ = ctx;
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    drop(conn);
    Ok(())
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
