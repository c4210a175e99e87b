//! Where settings come from at run time, besides the attributes: a TOML config file
//! (`--config FILE`), the environment (`DAEMON_<KEY>`), and the command line. One precedence:
//! command line > environment > config file > attributes > defaults. Every value is checked by
//! the rule book, and a value that breaks a rule is reported in the same words whatever its
//! source; only the place (`--workers 0`, `DAEMON_PREFORK=0`, `daemon.toml: prefork = 0`)
//! differs.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use daemon_config::{
    group_setting, resolve, resolve_group, setting, suggest, Config, Given, GroupConfig, GroupGiven, GroupKey, Key,
    Kind, Model, Origin, Value, GROUP_SETTINGS, SETTINGS,
};

use crate::hooks::TaskFn;

/// The environment variable that names a config file when `--config` is not given.
pub(crate) const CONFIG_ENV: &str = "DAEMON_CONFIG";

/// Every layer of settings, kept so a reload can resolve them again with a fresh config file.
#[derive(Clone)]
pub(crate) struct Layers {
    pub attributes: Given,
    pub file: Option<PathBuf>,
    pub env: Given,
    pub cli: Given,
    pub model: Model,
    /// The directory the program was started in: relative paths (from any source) are taken
    /// from it, at start and on every reload, even after a detach has moved the process to `/`.
    pub base: PathBuf,
    /// The program's task functions, which the file's task groups must name.
    pub tasks: Vec<&'static TaskFn>,
    /// The program's own settings (`main`'s parameter), and what the command line and the
    /// environment gave for them.
    pub app: Option<std::sync::Arc<(crate::app::AppSpec, crate::app::AppGiven)>>,
}

/// Everything resolved at once, from one read of the config file.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub config: Config,
    /// The task groups: one per #[daemon::task] function (unless the file stops it), and one per
    /// `[tasks.NAME]` table of the file that names another.
    pub groups: Vec<GroupConfig>,
    /// The program's own settings, if it has any.
    pub app: Option<crate::app::AppResolved>,
}

impl Layers {
    /// Reads the config file (if any) and resolves every layer: the configuration, the task
    /// groups and the program's own settings, from one read of the file (a reload sees one
    /// version of it). Errors are complete sentences, one per problem.
    pub(crate) fn resolve_all(&self) -> Result<Resolved, Vec<String>> {
        let contents = match &self.file {
            Some(path) => read_file(path)?,
            None => FileContents::default(),
        };
        let config = self.resolve_with(&contents.given);
        let shown = self.file.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
        let groups = resolve_groups(&self.tasks, &contents.groups, &shown);
        let app = match &self.app {
            Some(app) => crate::app::resolve(&app.0, &app.1, &contents.app, &shown).map(Some),
            None if !contents.app.is_empty() => Err(vec![format!(
                "{shown}: [app] holds a program's own settings, and this program has none: remove the table"
            )]),
            None => Ok(None),
        };
        match (config, groups, app) {
            (Ok(config), Ok(groups), Ok(app)) => Ok(Resolved { config, groups, app }),
            (a, b, c) => Err(a.err().into_iter().chain(b.err()).chain(c.err()).flatten().collect()),
        }
    }

    fn resolve_with(&self, file: &Given) -> Result<Config, Vec<String>> {
        let mut given = self.attributes.clone();
        // Counted at each start and reload (never polled): what `auto` means now.
        let cpus = crate::sys::cpus::available();
        given.set_cpus(cpus.count.into(), cpus.why);
        for (key, value, origin) in file.iter() {
            given.set(key, value.clone(), origin.clone());
        }
        for layer in [&self.env, &self.cli] {
            for (key, value, origin) in layer.iter() {
                given.set(key, value.clone(), origin.clone());
            }
        }
        let mut config =
            resolve(&given, self.model).map_err(|problems| problems.iter().map(|p| p.to_string()).collect::<Vec<_>>())?;
        for s in SETTINGS.iter().filter(|s| s.kind == Kind::Path) {
            if let Some(Some(path)) = config.path_mut(s.key) {
                *path = self.base.join(&*path).display().to_string();
            }
        }
        Ok(config)
    }
}

/// Reads `DAEMON_<KEY>` variables. Returns the values, and warnings for `DAEMON_` variables that
/// name no setting (a typo would otherwise be ignored in silence).
///
/// The environment is read as it is, bytes and all: anyone else's variables are not our business,
/// whatever their encoding, but one of ours that is not UTF-8 is an error that names it.
pub(crate) fn from_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    programs: impl Fn(&str) -> bool,
) -> Result<(Given, Vec<String>), Vec<String>> {
    let mut given = Given::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    // Each setting's variable, as given: a setting's two names at once is a mistake.
    let mut seen: Vec<(Key, String)> = Vec::new();
    for (name, text) in vars {
        if !name.as_bytes().starts_with(b"DAEMON_") {
            continue;
        }
        let Some(name) = name.to_str().map(str::to_string) else {
            warnings.push(format!(
                "ignoring the variable {}: its name is not valid UTF-8, so it names no setting",
                name.to_string_lossy()
            ));
            continue;
        };
        let rest = &name["DAEMON_".len()..];
        // The upgrade's own handshake (boot/inherit.rs), and the program's own settings, not
        // the framework's settings.
        if rest.is_empty() || name == crate::boot::inherit::UPGRADE_FROM || name == crate::boot::inherit::UPGRADE_FD || name == crate::boot::inherit::UPGRADE_METRICS || programs(&name) {
            continue;
        }
        let is_ours = name == CONFIG_ENV || Key::from_env(&name).is_some();
        let text = match text.to_str() {
            Some(t) => t.to_string(),
            None if is_ours => {
                errors.push(format!(
                    "{name}={}: not valid UTF-8; set it to a UTF-8 value or unset it",
                    text.to_string_lossy()
                ));
                continue;
            }
            None => text.to_string_lossy().into_owned(),
        };
        if name == CONFIG_ENV {
            continue;
        }
        let Some(s) = Key::from_env(&name).map(setting) else {
            let aliases: Vec<String> = SETTINGS.iter().filter_map(|s| s.alias_env()).collect();
            let hint = suggest(&name, SETTINGS.iter().map(|s| s.env).chain(aliases.iter().map(String::as_str)).chain([CONFIG_ENV]))
                .map(|near| format!("; did you mean {near}?"))
                .unwrap_or_default();
            warnings.push(format!("ignoring {name}: no setting has this name{hint}"));
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == s.key) {
            errors.push(format!("{first} and {name} are the same setting ({}): set one of them", s.name));
            continue;
        }
        seen.push((s.key, name.clone()));
        match s.parse_text(&text) {
            Ok(value) => given.set(s.key, value, Origin::Env),
            Err(rule) => errors.push(format!("{name}={text}: {rule}")),
        }
    }
    if errors.is_empty() {
        Ok((given, warnings))
    } else {
        Err(errors)
    }
}

/// The groups of the `tasks` functions, with what the file's `[tasks.NAME]` tables say.
fn resolve_groups(tasks: &[&TaskFn], tables: &BTreeMap<String, GroupGiven>, file: &str) -> Result<Vec<GroupConfig>, Vec<String>> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    let names: std::collections::BTreeSet<&str> =
        tasks.iter().map(|t| t.name).chain(tables.keys().map(String::as_str)).collect();
    for name in names {
        // A table may name anything; a function's name was checked when it compiled.
        if let Err(problem) = daemon_config::check_group_name(name) {
            errors.push(format!("{file}: {problem}"));
            continue;
        }
        let mut given = GroupGiven::default();
        if let Some(t) = tasks.iter().find(|t| t.name == name) {
            for (key, attr) in t.attrs {
                given.set(*key, attr.value(), Origin::Attribute);
            }
        }
        if let Some(table) = tables.get(name) {
            for (key, value, origin) in table.iter() {
                given.set(key, value.clone(), origin.clone());
            }
        }
        match resolve_group(name, &given) {
            Ok(g) if !tasks.iter().any(|t| t.name == g.run) => {
                let known: Vec<&str> = tasks.iter().map(|t| t.name).collect();
                let hint = suggest(&g.run, known.iter().copied()).map(|n| format!("did you mean `{n}`? ")).unwrap_or_default();
                errors.push(format!(
                    "task group {name} runs `{}`, but no #[daemon::task] function has that name; {hint}the tasks are {}",
                    g.run,
                    known.join(", ")
                ));
            }
            Ok(g) => groups.push(g),
            Err(problems) => errors.extend(problems),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// A config file: the global keys, the task groups' tables, and the program's `[app]` table (its
/// values as text, for the program's own value parsers).
#[derive(Clone, Debug, Default)]
pub(crate) struct FileContents {
    pub given: Given,
    pub groups: BTreeMap<String, GroupGiven>,
    pub app: BTreeMap<String, String>,
}

/// Reads a TOML config file whose keys are the attribute keys (`prefork = 8`,
/// `listen = ["127.0.0.1:8080"]`, `graceful_timeout = "10s"`).
pub(crate) fn read_file(path: &Path) -> Result<FileContents, Vec<String>> {
    let shown = path.display().to_string();
    let text = read_text(path).map_err(|why| vec![format!("cannot read the config file {shown}: {why}")])?;
    parse_file(&shown, &text)
}

/// What a control command can still use of a config file that is refused as a whole: the keys
/// that find the daemon (`pid_file`, `user`, `group`), each taken if it is good on its own. So a
/// mistake elsewhere in the file does not keep `stop` from finding the daemon it stops.
pub(crate) fn salvage(path: &Path) -> Given {
    let mut given = Given::new();
    let Ok(text) = read_text(path) else { return given };
    let Ok(table) = toml::from_str::<toml::Table>(&text) else { return given };
    let origin = Origin::File(path.display().to_string());
    for key in [Key::PidFile, Key::User, Key::Group] {
        let s = setting(key);
        if let Some(toml::Value::String(text)) = table.get(s.name) {
            let value = Value::Text(text.clone());
            if s.check(&value).is_ok() {
                given.set(key, value, origin.clone());
            }
        }
    }
    given
}

/// The largest config file read: a config file is a few kilobytes, and a link to `/dev/zero`
/// or a huge file must not fill the manager's memory.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;

/// A config file's text: a regular file only (opened without blocking, so a FIFO in its place
/// cannot hang the manager until a writer comes), of at most [`MAX_FILE_BYTES`].
fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    // What it is first, without opening it (opening a device has effects of its own); then
    // opened without blocking, and checked to be the file looked at.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let t = meta.file_type();
    if !t.is_file() {
        let what = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(format!("it is {what}, not a regular file: point it at a TOML file"));
    }
    let too_big = || format!("it is larger than {} KiB: a config file holds settings, not data", MAX_FILE_BYTES >> 10);
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| e.to_string())?;
    let opened = file.metadata().map_err(|e| e.to_string())?;
    if !opened.file_type().is_file() || (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err("it changed while it was read: try again".to_string());
    }
    let mut bytes = Vec::new();
    // It may grow while it is read: never read more than the bound, and say so if there was more.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| format!("it is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

pub(crate) fn parse_file(shown: &str, text: &str) -> Result<FileContents, Vec<String>> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| vec![format!("{shown} is not valid TOML: {}", e.to_string().trim_end())])?;
    let mut given = Given::new();
    let mut groups = BTreeMap::new();
    let mut app = BTreeMap::new();
    let mut errors = Vec::new();
    let origin = Origin::File(shown.to_string());
    let mut keys_seen: Vec<(Key, String)> = Vec::new();
    for (name, item) in &table {
        if name == "app" {
            match item.as_table() {
                Some(t) => {
                    for (key, value) in t {
                        match value {
                            toml::Value::String(s) => {
                                app.insert(key.clone(), s.clone());
                            }
                            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                                app.insert(key.clone(), value.to_string());
                            }
                            other => errors.push(format!("{shown}: [app] {key} = {other}: write one value (a string, a number or true/false)")),
                        }
                    }
                }
                None => errors.push(format!("{shown}: app is the program's own settings: write an `[app]` table")),
            }
            continue;
        }
        if name == "tasks" {
            match parse_groups(shown, item) {
                Ok(g) => groups = g,
                Err(e) => errors.extend(e),
            }
            continue;
        }
        let Some(key) = Key::from_file_name(name) else {
            let hint = match suggest(name, SETTINGS.iter().map(|s| s.name).chain(SETTINGS.iter().filter_map(|s| s.alias()))) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "the keys are {}",
                    SETTINGS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                ),
            };
            errors.push(format!("{shown}: unknown key `{name}`; {hint}"));
            continue;
        };
        if let Some(first) = keys_seen.iter().find(|(k, _)| *k == key).map(|(_, n)| n.clone()) {
            errors.push(format!("{shown}: {first} and {name} are the same setting: write one of them"));
            continue;
        }
        keys_seen.push((key, name.clone()));
        match toml_value(key, item) {
            Ok(value) => match setting(key).check(&value) {
                Ok(()) => given.set(key, value, origin.clone()),
                Err(rule) => errors.push(format!("{}: {rule}", origin.spelling(key, &value))),
            },
            Err(rule) => errors.push(format!("{shown}: {name} = {item}: {rule}")),
        }
    }
    if errors.is_empty() {
        Ok(FileContents { given, groups, app })
    } else {
        Err(errors)
    }
}

/// The `[tasks.NAME]` tables.
fn parse_groups(shown: &str, item: &toml::Value) -> Result<BTreeMap<String, GroupGiven>, Vec<String>> {
    let Some(tables) = item.as_table() else {
        return Err(vec![format!("{shown}: tasks is a table of task groups: write `[tasks.NAME]` tables")]);
    };
    let origin = Origin::File(shown.to_string());
    let mut groups = BTreeMap::new();
    let mut errors = Vec::new();
    for (group, keys) in tables {
        let Some(keys) = keys.as_table() else {
            errors.push(format!("{shown}: tasks.{group} is not a table: write `[tasks.{group}]` and its keys under it"));
            continue;
        };
        let mut given = GroupGiven::default();
        for (name, value) in keys {
            let Some(key) = GroupKey::from_name(name) else {
                let hint = match suggest(name, GROUP_SETTINGS.iter().map(|s| s.name)) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("a group's keys are {}", GROUP_SETTINGS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")),
                };
                errors.push(format!("{shown}: [tasks.{group}] unknown key `{name}`; {hint}"));
                continue;
            };
            let s = group_setting(key);
            let converted = match (s.kind, value) {
                (Kind::Count { .. }, toml::Value::Integer(n)) => u64::try_from(*n).map(Value::Count).map_err(|_| format!("{n} is negative: {}", s.rule())),
                (Kind::Duration { .. }, toml::Value::Integer(n)) => u64::try_from(*n)
                    .map(|n| Value::Duration(std::time::Duration::from_secs(n)))
                    .map_err(|_| format!("{n} is negative: {}", s.rule())),
                (_, toml::Value::String(t)) => s.parse_text(t),
                (_, other) => Err(format!("expected {}, found {}", s.kind_name(), other.type_str())),
            };
            match converted {
                Ok(v) => given.set(key, v, origin.clone()),
                Err(rule) => errors.push(format!("{shown}: [tasks.{group}] {name} = {value}: {rule}")),
            }
        }
        groups.insert(group.clone(), given);
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// Converts a TOML value to the setting's type, or says what was expected.
fn toml_value(key: Key, item: &toml::Value) -> Result<Value, String> {
    let s = setting(key);
    let wrong = || format!("expected {}, found {}", s.kind_name(), item.type_str());
    match (s.kind, item) {
        (Kind::Count { .. } | Kind::CountOrAuto { .. }, toml::Value::Integer(n)) => match u64::try_from(*n) {
            Ok(n) => Ok(Value::Count(n)),
            Err(_) => Err(format!("{n} is negative: {}", s.rule())),
        },
        (Kind::Flag, toml::Value::Boolean(b)) => Ok(Value::Flag(*b)),
        (Kind::Addresses, toml::Value::String(a)) => Ok(Value::Addresses(vec![a.clone()])),
        (Kind::Addresses, toml::Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(wrong))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Addresses),
        (Kind::Duration { .. } | Kind::Size { .. }, toml::Value::String(t)) => s.parse_text(t),
        (Kind::Size { .. }, toml::Value::Integer(n)) => match u64::try_from(*n) {
            Ok(n) => Ok(Value::Size(n)),
            Err(_) => Err(format!("{n} is negative: {}", s.rule())),
        },
        (Kind::Path | Kind::Name | Kind::Choice(_), toml::Value::String(t)) => Ok(Value::Text(t.clone())),
        (Kind::Endpoint | Kind::Mode | Kind::CountOrAuto { .. }, toml::Value::String(t)) => s.parse_text(t),
        (Kind::Duration { .. }, toml::Value::Integer(n)) => match u64::try_from(*n) {
            Ok(n) => Ok(Value::Duration(std::time::Duration::from_secs(n))),
            Err(_) => Err(format!("{n} is negative: {}", s.rule())),
        },
        (Kind::Duration { .. }, toml::Value::Float(f)) => daemon_config::parse_duration(&f.to_string()).map(Value::Duration),
        _ => Err(wrong()),
    }
}

/// `--print-config`: the effective value of every setting and where it came from, as TOML that
/// can serve as a config file.
pub(crate) fn print_config(config: &Config) -> String {
    let mut out = String::new();
    for s in SETTINGS {
        let value = match config.value(s.key) {
            Value::Addresses(list) => {
                let quoted: Vec<String> = list.iter().map(|a| format!("{a:?}")).collect();
                format!("[{}]", quoted.join(", "))
            }
            v @ (Value::Duration(_) | Value::Size(_)) => format!("{:?}", s.show(&v)),
            Value::Text(t) if t.is_empty() => {
                out.push_str(&format!("{:<40} # {}\n", format!("# {} (not set)", s.name), "default"));
                continue;
            }
            Value::Text(t) => format!("{t:?}"),
            other => other.to_string(),
        };
        let (value, why) = match (&config.workers_auto, s.key) {
            (Some(why), Key::Prefork) => (format!("{:?}", daemon_config::AUTO_WORD), format!("; auto = {}: {why}", config.workers)),
            _ => (value, String::new()),
        };
        let line = format!("{} = {value}", s.name);
        out.push_str(&format!("{line:<40} # {}{why}\n", config.origin(s.key).label()));
    }
    out
}

/// The task groups as they run, as `[tasks.NAME]` tables a config file could hold (each
/// from its `#[daemon::task]` attribute, with what the file changed).
pub(crate) fn print_groups(groups: &[daemon_config::GroupConfig]) -> String {
    let mut out = String::new();
    for g in groups {
        out.push_str(&format!("\n[tasks.{}]\n", g.name));
        out.push_str(&format!("run = {:?}\n", g.run));
        out.push_str(&format!("model = \"{}\"\n", g.model.name()));
        out.push_str(&format!("workers = {}\n", g.workers));
        out.push_str(&format!("max_workers = {}\n", g.max_workers));
        out.push_str(&format!("scaling_interval = {:?}\n", daemon_config::format_duration(g.scaling_interval)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<(Given, Vec<String>), Vec<String>> {
        from_env(pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))), |_| false)
    }

    #[test]
    fn only_our_variables_must_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let bad = || OsString::from_vec(vec![b'x', 0xff]);
        let vars = vec![
            (OsString::from("FOO"), bad()),
            (OsString::from_vec(b"\xffBAR".to_vec()), OsString::from("1")),
            (OsString::from("DAEMON_REQUESTS"), OsString::from("5")),
        ];
        let (g, warnings) = from_env(vars, |_| false).unwrap();
        assert_eq!(g.get(Key::Requests).map(|v| &v.0), Some(&Value::Count(5)));
        assert!(warnings.is_empty(), "{warnings:?}");
        for name in ["DAEMON_PREFORK", "DAEMON_CONFIG"] {
            let errors = from_env(vec![(OsString::from(name), bad())], |_| false).unwrap_err();
            assert_eq!(errors, [format!("{name}=x\u{fffd}: not valid UTF-8; set it to a UTF-8 value or unset it")]);
        }
        // Somebody else's DAEMON_ variable (an init script's DAEMON_OPTS): named, not judged.
        let (_, warnings) = from_env(vec![(OsString::from("DAEMON_OPTS"), bad())], |_| false).unwrap();
        assert_eq!(warnings, ["ignoring DAEMON_OPTS: no setting has this name"]);
    }

    #[test]
    fn the_environment_sets_values_and_warns_of_strangers() {
        let (g, warnings) = env(&[("DAEMON_PREFORK", "3"), ("DAEMON_MAX_SPARES", "2"), ("PATH", "/bin")]).unwrap();
        assert_eq!(g.get(Key::Prefork), Some(&(Value::Count(3), Origin::Env)));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("did you mean DAEMON_MAX_SPARE?"), "{warnings:?}");
    }

    #[test]
    fn a_file_uses_the_attribute_keys() {
        let g = parse_file("d.toml", "prefork = 3\nlisten = [\"127.0.0.1:0\"]\ngraceful_timeout = \"5s\"\ndetach = false\n").unwrap().given;
        assert_eq!(g.get(Key::Prefork).map(|v| &v.0), Some(&Value::Count(3)));
        assert_eq!(g.get(Key::GracefulTimeout).map(|v| &v.0), Some(&Value::Duration(std::time::Duration::from_secs(5))));
        let errors = parse_file("d.toml", "max_spares = 2\nprefork = \"four\"\nclients = -1\n").unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("did you mean `max_spare`?")));
        assert!(errors.iter().any(|e| e.contains("`four` is not a whole number: prefork must be between 1 and 4096, or auto")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("-1 is negative")));
        assert!(parse_file("d.toml", "prefork = ").unwrap_err()[0].contains("not valid TOML"));
    }

    #[test]
    fn one_wrong_value_reads_the_same_from_every_source() {
        let cli = crate::cli::parse(vec!["p".into(), "--workers".into(), "0".into()], None).err().map(|e| e.0);
        let env = env(&[("DAEMON_PREFORK", "0")]).unwrap_err().remove(0);
        let file = parse_file("d.toml", "prefork = 0").unwrap_err().remove(0);
        let rule = "0 is too few: prefork must be between 1 and 4096, or auto";
        assert_eq!(cli.as_deref(), Some(format!("--workers 0: {rule}").as_str()));
        assert_eq!(env, format!("DAEMON_PREFORK=0: {rule}"));
        assert_eq!(file, format!("d.toml: prefork = 0: {rule}"));
    }

    #[test]
    fn precedence_is_cli_env_file_attributes_defaults() {
        let dir = std::env::temp_dir().join(format!("daemon-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.toml");
        std::fs::write(&path, "prefork = 3\nmin_spare = 2\nrequests = 7\n").unwrap();
        let mut attributes = Given::new();
        attributes.set(Key::Prefork, Value::Count(2), Origin::Attribute);
        attributes.set(Key::Clients, Value::Count(5), Origin::Attribute);
        let (env, _) = env(&[("DAEMON_MIN_SPARE", "3"), ("DAEMON_REQUESTS", "8")]).unwrap();
        let mut cli = Given::new();
        cli.set(Key::Requests, Value::Count(9), Origin::CommandLine);
        let layers = Layers { attributes, file: Some(path.clone()), env, cli, model: Model::Async, base: dir.clone(), tasks: Vec::new(), app: None };
        let c = layers.resolve_all().unwrap().config;
        assert_eq!((c.workers, c.min_spare, c.requests, c.clients), (3, 3, 9, 5));
        assert_eq!(c.origin(Key::Prefork), Origin::File(path.display().to_string()));
        assert_eq!(c.origin(Key::MinSpare), Origin::Env);
        assert_eq!(c.origin(Key::Requests), Origin::CommandLine);
        assert_eq!(c.origin(Key::Clients), Origin::Attribute);
        assert_eq!(c.origin(Key::MaxSpare), Origin::Default);
        assert_eq!(c.log_file, None);
        let mut with_paths = layers.clone();
        with_paths.cli.set(Key::LogFile, Value::Text("rel/d.log".into()), Origin::CommandLine);
        with_paths.cli.set(Key::PidFile, Value::Text("/run/d.pid".into()), Origin::CommandLine);
        let c2 = with_paths.resolve_all().unwrap().config;
        assert_eq!(c2.log_file, Some(dir.join("rel/d.log").display().to_string()), "relative to the start directory");
        assert_eq!(c2.pid_file.as_deref(), Some("/run/d.pid"));
        let printed = print_config(&c);
        assert!(printed.contains("requests = 9") && printed.contains("# command line"), "{printed}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_a_regular_file_of_a_bounded_size_is_read() {
        let dir = std::env::temp_dir().join(format!("daemon-sources-kinds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer: a blocking open would wait for ever.
        let why = read_file(&fifo).unwrap_err().remove(0);
        assert!(why.contains("a FIFO, not a regular file"), "{why}");
        let why = read_file(Path::new("/dev/zero")).unwrap_err().remove(0);
        assert!(why.contains("a device, not a regular file"), "{why}");
        let why = read_file(&dir).unwrap_err().remove(0);
        assert!(why.contains("a directory"), "{why}");
        let big = dir.join("big.toml");
        std::fs::write(&big, "# x\n".repeat((MAX_FILE_BYTES as usize / 4) + 1)).unwrap();
        let why = read_file(&big).unwrap_err().remove(0);
        assert!(why.contains("larger than 1024 KiB"), "{why}");
        let link = dir.join("link.toml");
        let real = dir.join("real.toml");
        std::fs::write(&real, "prefork = 2\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(read_file(&link).is_ok(), "a link to a regular file is read");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_group_in_the_file_may_not_take_another_pools_name_or_break_a_line() {
        for (table, why) in [("[tasks.main]\nworkers = 1\n", "name of the serving pool"), ("[tasks.\"a\\nb\"]\nworkers = 1\n", "'\\n' is not allowed")] {
            let contents = parse_file("d.toml", table).unwrap();
            let errors = resolve_groups(&[], &contents.groups, "d.toml").unwrap_err();
            assert!(errors.iter().any(|e| e.starts_with("d.toml: ") && e.contains(why)), "{errors:?}");
        }
    }
}
