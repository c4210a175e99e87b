//! on_child and on_shutdown may take nothing; several of each are allowed.

#[daemon::main]
fn main() {
    stop_before_forking();
}

#[daemon::on_child]
fn seed() {}

#[daemon::on_child]
fn open_connections() -> () {}

#[daemon::on_shutdown]
fn flush() {}

#[daemon::on_shutdown]
pub fn say_goodbye(child: &daemon::Child) {
    let _ = child.pid();
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
