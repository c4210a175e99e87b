//! The runtime's log output: a tracing subscriber on standard error, unless the program set its
//! own. Lines carry the role and pid (`manager{pid=..}`) or the worker's slot and pid
//! (`worker{slot=.. pid=..}`) from the span each process enters.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the subscriber. `RUST_LOG` filters it (`info` by default; `debug`, or
/// `my_crate=debug,info`).
pub(crate) fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // An error means the program installed its own subscriber, which then wins.
    let _ = tracing_subscriber::registry().with(layer).with(filter).try_init();
}
