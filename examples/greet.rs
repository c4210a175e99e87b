//! `greet`: a daemon with settings of its own, beside the framework's. `main` takes them as its
//! parameter (a type that derives `clap::Args`), and every worker reads the values of its
//! generation with `daemon::settings`.
//!
//! ```sh
//! cargo run --example greet -- --greeting hi --repeat 2      # 127.0.0.1:8086
//! curl 127.0.0.1:8086/                                       # hi hi
//! DAEMON_GREETING=hey cargo run --example greet              # the environment
//! cargo run --example greet -- --config greet.toml           # [app] greeting = "hello"
//! cargo run --example greet -- --help                        # its options beside the framework's
//! ```
//!
//! A reload (HUP) reads the config file again: the new generation of workers answers with the
//! new values; a bad value keeps the running ones.

#[path = "common/answer.rs"]
mod answer;

use daemon::prelude::*;

/// The program's own settings.
#[derive(clap::Args, Clone, Debug)]
struct Settings {
    /// What every answer says.
    #[arg(long, default_value = "hello")]
    greeting: String,
    /// How many times it says it (1 to 10).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    repeat: u32,
}

#[daemon::main(listen = "127.0.0.1:8086", prefork = 2)]
fn main(settings: Settings) {
    info!(greeting = %settings.greeting, repeat = settings.repeat, "greet: starting");
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    answer::answer_once(conn, || {
        let s = daemon::settings::<Settings>();
        format!("{}\n", vec![s.greeting.as_str(); s.repeat as usize].join(" "))
    })
    .await
}
