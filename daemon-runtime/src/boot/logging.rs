//! The runtime's log output: a tracing subscriber on standard error, unless the program installs
//! its own in `main`'s body. Lines carry the role and pid (`manager{pid=..}`) or the worker's slot and pid
//! (`worker{slot=.. pid=..}`) from the span each process enters.

use std::io::IsTerminal;

use tracing::{Dispatch, Level};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

/// The runtime's subscriber, not installed yet. `RUST_LOG` filters it (`info` by default;
/// `debug`, or `my_crate=debug,info`).
pub(crate) fn dispatch() -> Dispatch {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    Dispatch::new(tracing_subscriber::registry().with(layer).with(filter))
}

/// Makes `ours` the global subscriber, unless the program installed its own (in `main`'s body),
/// which then wins for the manager and every worker.
pub(crate) fn install(ours: Dispatch) {
    // An error means a global subscriber exists: the program's, which stays. (`has_been_set`
    // cannot tell: it is true after our own scoped default too.)
    let _ = tracing::dispatcher::set_global_default(ours);
}
