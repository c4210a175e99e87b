//! A classic handler named like the expansion's parameter (`stream`), next to a hook named `main`
//! in a module of its own: nothing generated shadows or captures them.

#[daemon::main]
fn main() {
    stop_before_forking();
}

#[daemon::on_accept]
fn stream(stream: std::net::TcpStream) -> std::io::Result<()> {
    drop(stream);
    Ok(())
}

mod setup {
    #[daemon::on_child]
    fn main() {}

    #[daemon::on_child]
    fn stream(child: &daemon::Child) {
        let _ = child.generation();
    }
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
