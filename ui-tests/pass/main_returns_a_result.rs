//! `fn main` may return `Result<(), E>`; `?` works in its body, and an `Err` stops the daemon
//! before it forks.

#[daemon::main(prefork = 1)]
pub fn main() -> Result<(), std::io::Error> {
    #![allow(unused_variables)]
    let here = std::env::current_dir()?;
    stop_before_forking();
    Ok(())
}

#[daemon::on_accept]
fn serve(stream: std::net::TcpStream) -> std::io::Result<()> {
    stream.shutdown(std::net::Shutdown::Both)
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
