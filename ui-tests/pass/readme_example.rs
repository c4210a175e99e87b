//! The README's signature example (tests/readme.rs builds README's own text in a fresh crate).

use daemon::prelude::*;

#[daemon::main(prefork = 4, max_spare = 3, detach)]
fn main() {
    // Runs once, in the manager, before any fork.
    stop_before_forking();
}

#[daemon::on_child]
fn init(child: &daemon::Child) {
    // Runs in every new worker, after fork, before it accepts.
    info!(slot = child.slot(), "worker up");
}

#[daemon::on_accept]
async fn serve(mut conn: daemon::Connection) -> std::io::Result<()> {
    conn.write_all(b"hello\n").await
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
