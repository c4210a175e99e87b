//! The runtime's log output: a tracing subscriber on standard error, unless the program installs
//! its own in `main`'s body. Lines carry the role and pid (`manager{pid=..}`) or the worker's slot and pid
//! (`worker{slot=.. pid=..}`) from the span each process enters.

use std::io::IsTerminal;

use tracing::{Dispatch, Level};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

/// The runtime's subscriber, not installed yet. `RUST_LOG` filters it (`info` by default;
/// `debug`, or `my_crate=debug,info`). With `json`, one JSON object a line (tracing-subscriber's
/// own JSON format): `timestamp`, `level`, the event's `message` and fields at the top level, and
/// `span` with the role (`name`: manager or worker), `pid` and `slot`.
pub(crate) fn dispatch(json: bool) -> Dispatch {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_target(false);
        return Dispatch::new(tracing_subscriber::registry().with(layer).with(filter));
    }
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

/// With JSON logs, a panic's message is a log event too: the default hook's plain text on
/// standard error would be the one line of the log file a JSON parser cannot read.
pub(crate) fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        tracing::error!(panic = %message, %location, "panicked");
    }));
}
