//! `main` takes the program's own settings: a type that derives clap::Args.

#[derive(clap::Args, Clone, Debug)]
struct Settings {
    /// Where the data is.
    #[arg(long, default_value = "/var/lib/app")]
    data_dir: String,
    #[arg(long, default_value_t = 8)]
    threads: u32,
    #[arg(long)]
    verbose: bool,
}

#[daemon::main(prefork = 1)]
fn main(settings: Settings) -> Result<(), String> {
    assert_eq!(settings.threads, 8);
    let same = daemon::settings::<Settings>();
    assert_eq!(same.data_dir, settings.data_dir);
    stop_before_forking();
    Ok(())
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    let _ = daemon::try_settings::<Settings>().map(|s| s.verbose);
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
