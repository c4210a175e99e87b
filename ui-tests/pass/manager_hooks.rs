//! Every manager hook, more than one of a kind, beside an HTTP pool.

#[daemon::main]
fn main() {
    stop_before_forking();
}

#[daemon::on_ready]
fn ready() {}

#[daemon::on_ready]
fn ready_too() {}

#[daemon::on_spawn]
fn spawned(w: &daemon::Spawned) {
    let _ = (w.pid, &w.pool, w.slot, w.generation);
}

#[daemon::on_reap]
fn reaped(w: &daemon::Reaped) {
    let _ = (w.pid, &w.pool, w.slot, w.code, w.signal, w.death);
}

#[daemon::on_reload]
fn reloaded() {}

#[daemon::on_exit]
fn exiting() {}

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
