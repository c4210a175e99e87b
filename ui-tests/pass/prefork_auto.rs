//! `prefork = auto`: one worker per CPU the process may use, bounded by max_children; the word
//! is checked while the program compiles and counted when it runs.

#[daemon::main(prefork = auto, max_children = 8)]
fn main() {
    stop_before_forking();
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    drop(conn);
    Ok(())
}

// trybuild runs every pass case after building it (see durations.rs): the case ends once the
// runtime has resolved the configuration, before the manager forks.
fn stop_before_forking() {
    std::process::exit(0);
}
