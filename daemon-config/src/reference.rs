//! The reference table of every setting, generated from the rule book. README carries a copy that
//! a test compares with this, so the documentation cannot drift from the rules.

use crate::settings::{Kind, Reload, SETTINGS};
use crate::format_duration;

/// The table, in Markdown.
pub fn reference_table() -> String {
    let mut out = String::from(
        "| key (attribute and file) | type and range | default | flag | environment | on reload (HUP) | what it does |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let kind = match s.kind {
            Kind::Count { min, max } => format!("whole number, {min} to {max}"),
            Kind::Flag => "flag".to_string(),
            Kind::Addresses => "`IP:PORT`, or a list of them".to_string(),
            Kind::Duration { min, max, off } => {
                format!(
                    "duration, {} to {}{}: `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds",
                    format_duration(min),
                    format_duration(max),
                    if off { ", or `off`" } else { "" }
                )
            }
            Kind::Size { min, max, off } => format!(
                "size, {} to {}{}: `512M`, `2G` (powers of 1024), or bytes",
                crate::format_size(min),
                crate::format_size(max),
                if off { ", or `off`" } else { "" }
            ),
            Kind::Path => "path".to_string(),
            Kind::Name => "user or group name".to_string(),
        };
        let reload = match s.reload {
            Reload::Applies => "applied",
            Reload::NeedsRestart => "needs a restart",
        };
        out.push_str(&format!(
            "| `{}` | {kind} | {} | `{}` | `{}` | {reload} | {} |\n",
            s.name, s.default, s.flag, s.env, s.summary
        ));
    }
    out
}
