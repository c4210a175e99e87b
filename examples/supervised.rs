//! `supervised`: one supervised worker (App::Base::Daemon::Supervisor's), started again
//! `respawn_delay` after it ends, whatever the reason.
//!
//! ```sh
//! cargo run --example supervised
//! ```
//!
//! The worker logs a tick every `SUPERVISED_TICK_MS` milliseconds (1000), and returns after
//! `SUPERVISED_ROUNDS` ticks (never, by default), when it is asked to stop, or when it finds its
//! supervisor gone (the manager killed: nothing would start it again, so it leaves by itself).

use std::time::Duration;

#[daemon::main(respawn_delay = "1s")]
fn main() {}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[daemon::supervised]
fn run(ctx: &daemon::Supervised) -> Result<(), String> {
    let tick = Duration::from_millis(env_u64("SUPERVISED_TICK_MS").unwrap_or(1000));
    let rounds = env_u64("SUPERVISED_ROUNDS");
    tracing::info!(generation = ctx.child().generation(), "supervised worker up");
    let mut n = 0u64;
    loop {
        if !ctx.ping_supervisor() {
            tracing::warn!("the supervisor is gone: leaving");
            return Ok(());
        }
        if !ctx.sleep(tick) {
            tracing::info!("asked to stop: leaving");
            return Ok(());
        }
        n += 1;
        tracing::info!(n, "tick");
        if rounds.is_some_and(|r| n >= r) {
            tracing::info!(n, "done its rounds: returning");
            return Ok(());
        }
    }
}

#[daemon::on_shutdown]
fn bye() {
    tracing::info!("supervised worker on_shutdown");
}
