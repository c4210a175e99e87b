//! The reference table of every setting, generated from the rule book. README carries a copy that
//! a test compares with this, so the documentation cannot drift from the rules.

use crate::format_duration;
use crate::group::{GroupKey, GROUP_SETTINGS};
use crate::settings::{Kind, Reload, SETTINGS};

/// The tables, in Markdown: the daemon's settings, then a task group's.
pub fn reference_table() -> String {
    let mut out = String::from(
        "| key (attribute and file) | type and range | default | flag | environment | on reload (HUP) | what it does |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        // A key with a second name at run time shows it beside the first.
        let (name, flag, env) = match (s.alias(), s.alias_flag(), s.alias_env()) {
            (Some(a), Some(f), Some(e)) => (
                format!("`{}` (`{a}` in a file)", s.name),
                format!("`{}` (or `{f}`)", s.flag),
                format!("`{}` (or `{e}`)", s.env),
            ),
            _ => (format!("`{}`", s.name), format!("`{}`", s.flag), format!("`{}`", s.env)),
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {flag} | {env} | {} | {} |\n",
            kind_text(s.kind),
            s.default,
            reload_text(s.reload),
            s.summary
        ));
    }
    out.push_str(
        "\nA task group's keys, in `#[daemon::task(...)]` and in a config file's `[tasks.NAME]` table \
         (no flag or environment variable: a group is a table of its own):\n\n\
         | key | type and range | default | on reload (HUP) | what it does |\n\
         |---|---|---|---|---|\n",
    );
    for s in GROUP_SETTINGS {
        let kind = match s.key {
            GroupKey::Run => "the name of a `#[daemon::task]` fn".to_string(),
            _ => kind_text(s.kind),
        };
        out.push_str(&format!(
            "| `{}` | {kind} | {} | {} | {} |\n",
            s.name,
            s.default,
            reload_text(s.reload),
            s.summary
        ));
    }
    out
}

fn reload_text(r: Reload) -> &'static str {
    match r {
        Reload::Applies => "applied",
        Reload::NeedsRestart => "needs a restart",
    }
}

fn kind_text(kind: Kind) -> String {
    match kind {
        Kind::Count { min, max } => format!("whole number, {min} to {max}"),
        Kind::CountOrAuto { min, max } => format!("whole number, {min} to {max}, or `auto`"),
        Kind::Flag => "flag".to_string(),
        Kind::Addresses => "`IP:PORT`, `HOST:PORT`, `unix:/path` or `unix:@name`, or a list of them".to_string(),
        Kind::Endpoint => "`IP:PORT`, or `off`".to_string(),
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
        Kind::Mode => "permission bits in octal, such as `0660`".to_string(),
        Kind::Choice(words) => format!(
            "one of {}",
            words
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
