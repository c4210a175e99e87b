//! `crate = "..."` tells the generated code where the daemon crate is: here through a module
//! that re-exports it, as a framework built on daemon would.

mod deps {
    pub use ::daemon;
}

#[daemon::main(crate = "crate::deps::daemon", prefork = 2)]
fn main() {
    stop_before_forking();
}

#[daemon::on_child(crate = "daemon")]
fn init() {}

#[daemon::on_shutdown(crate = "::daemon")]
fn flush() {}

#[daemon::on_accept(crate = "crate::deps::daemon")]
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
