//! Post-forking: a child per connection, at most max_children at once.

#[daemon::main(postfork, max_children = 16, respawn_delay = "2s")]
fn main() {
    stop_before_forking();
}

#[daemon::on_accept]
fn serve(stream: std::net::TcpStream) -> std::io::Result<()> {
    drop(stream);
    Ok(())
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
