//! The runtime's log output: a tracing subscriber on standard error, unless the program installs
//! its own in `main`'s body. Lines carry the role and pid (`manager{pid=..}`) or the worker's slot and pid
//! (`worker{slot=.. pid=..}`) from the span each process enters.

use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// Keys of the process, which an event's own field of the same name does not take.
const PROCESS_KEYS: [&str; 5] = ["timestamp", "level", "role", "pid", "slot"];

/// One JSON object a line, with the process's identity (from the span it entered) beside the
/// event's fields.
struct TopLevelJson;

impl<S, N> FormatEvent<S, N> for TopLevelJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert("level".into(), Value::String(event.metadata().level().as_str().into()));
        event.record(&mut Fields(&mut line));
        // The process: the outermost span's name is its role; the spans' fields (pid, slot) are
        // recorded by `JsonFields` as JSON objects.
        if let Some(scope) = ctx.event_scope() {
            for (depth, span) in scope.from_root().enumerate() {
                line.entry("role").or_insert_with(|| Value::String(span.name().into()));
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else { continue };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields.as_str()) {
                    for (k, v) in fields {
                        // The role's span (the outermost) gives the process's keys; a span of
                        // the program's inside it never replaces a key the line has (`level`,
                        // `message`, the event's own field): it is `span.KEY`.
                        let key = if depth == 0 || !line.contains_key(&k) { k } else { format!("span.{k}") };
                        line.insert(key, v);
                    }
                }
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields, into the line: the message and each field by name.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let key = if PROCESS_KEYS.contains(&name) { format!("field.{name}") } else { name.to_string() };
        self.0.insert(key, value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// The runtime's subscriber, not installed yet. `RUST_LOG` filters it (`info` by default;
/// `debug`, or `my_crate=debug,info`). With `json`, one JSON object a line, everything at the
/// top level: `timestamp`, `level`, `message`, the event's fields, and the writing process's
/// `role` (manager, worker, daemon), `pid` and `slot` (a worker's). An event's own field of one
/// of those names (the manager's `pid` of a worker it spawned) is `field.pid`; a field of a span
/// of the program's named like a key the line has already is `span.KEY`.
pub(crate) fn dispatch(json: bool) -> Dispatch {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    if json {
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(TopLevelJson)
            .with_writer(std::io::stderr);
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
