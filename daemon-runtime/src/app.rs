//! The program's own settings: a type that derives `clap::Args`, named as `main`'s parameter
//! (`fn main(settings: Settings)`). Its options sit beside the framework's, with the same
//! sources and the same precedence: command line (`--db-url x`) > environment (`DAEMON_DB_URL`) >
//! config file (an `[app]` table: `db_url = "x"`) > the field's default. A bad value from any
//! source stops the start with the framework's kind of message (the place, the key, the value,
//! the rule: clap's value parser's own words); a reload reads the file again, and the new values
//! reach the new generation of workers, or a bad file keeps the old ones. `--help` lists them,
//! `--print-config` shows them with their sources.
//!
//! clap does the parsing (each value goes through the field's own value parser), and is the
//! only source of truth about the options: their names, help, defaults and whether they take a
//! value. The file and the environment are fed to it as defaults, so its precedence (command
//! line over default) is ours.

use std::any::Any;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::{Arc, PoisonError, RwLock};

use clap::{ArgMatches, Command};

/// Implemented (by `#[daemon::main]`) for the type of `main`'s parameter: the program's
/// settings. Not to be implemented by hand.
pub trait ProgramSettings: clap::Args + clap::FromArgMatches + Clone + Send + Sync + 'static {}

/// The settings this process's generation runs with: the manager's latest, and in a worker the
/// values it was forked with.
static CURRENT: RwLock<Option<Arc<dyn Any + Send + Sync>>> = RwLock::new(None);

/// The program's settings (`main`'s parameter) as this process has them: in a worker, the values
/// of its generation (a reload's new values reach the workers it forks). `None` outside a daemon
/// started by `#[daemon::main]` with `T` as `main`'s parameter (a unit test, say).
pub fn try_settings<T: ProgramSettings>() -> Option<Arc<T>> {
    let current = CURRENT.read().unwrap_or_else(PoisonError::into_inner).clone()?;
    current.downcast::<T>().ok()
}

/// [`try_settings`], for code that runs in the daemon.
///
/// # Panics
/// Outside a daemon whose `main` takes a `T`: `#[daemon::main]` implements [`ProgramSettings`]
/// for that type alone, and sets the values before `main`'s body runs.
pub fn settings<T: ProgramSettings>() -> Arc<T> {
    match try_settings::<T>() {
        Some(s) => s,
        None => panic!(
            "daemon::settings::<{}>() outside a daemon started by #[daemon::main] with it as main's parameter",
            std::any::type_name::<T>()
        ),
    }
}

/// Where the daemon was started from: the framework's relative paths (`pid_file`, `log_file`,
/// `--config`) mean what they meant there, before `detach` moved to `/`; an upgrade's new
/// manager starts there again.
static START_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

pub(crate) fn set_start_dir(dir: std::path::PathBuf) {
    let _ = START_DIR.set(dir);
}

/// The directory the daemon was started from (the current directory outside a daemon). A
/// detached daemon runs in `/`, so a relative path of the program's own is joined to this, as
/// the framework's own paths are: [`path_from_start_dir`] does it as clap parses the value.
pub fn start_dir() -> std::path::PathBuf {
    START_DIR
        .get()
        .cloned()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| std::path::PathBuf::from("/"))
}

/// A value parser for the program's path settings, which resolves a relative path against the
/// directory the daemon was started from (as `pid_file` and `log_file` are), from the command
/// line, the environment and the config file alike, at start and on every reload: name it as
/// the field's `value_parser`.
///
/// ```
/// let p = daemon_runtime::path_from_start_dir("spool/new")?;
/// assert!(p.is_absolute() && p.ends_with("spool/new"));
/// # Ok::<(), String>(())
/// ```
pub fn path_from_start_dir(value: &str) -> Result<std::path::PathBuf, String> {
    if value.is_empty() {
        return Err("an empty path: give a file or directory".to_string());
    }
    Ok(start_dir().join(value))
}

pub(crate) fn set_current(value: Arc<dyn Any + Send + Sync>) {
    *CURRENT.write().unwrap_or_else(PoisonError::into_inner) = Some(value);
}

/// An option of the program, as the framework needs to know it.
#[derive(Clone, Debug)]
pub(crate) struct Opt {
    /// clap's id: the field's name (`db_url`), also the config file's key.
    pub id: String,
    /// `--db-url`.
    pub flag: String,
    /// `DAEMON_DB_URL`.
    pub env: String,
    pub takes_value: bool,
    pub help: String,
    pub default: Option<String>,
}

/// The program's settings type, as the runtime sees it.
pub(crate) struct AppSpec {
    command: Command,
    build: fn(&ArgMatches) -> Result<Arc<dyn Any + Send + Sync>, clap::Error>,
    pub opts: Vec<Opt>,
}

impl std::fmt::Debug for AppSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSpec").field("opts", &self.opts).finish_non_exhaustive()
    }
}

fn build<T: ProgramSettings>(m: &ArgMatches) -> Result<Arc<dyn Any + Send + Sync>, clap::Error> {
    T::from_arg_matches(m).map(|t| Arc::new(t) as Arc<dyn Any + Send + Sync>)
}

/// The words of the daemon's own command line that are not settings.
const COMMAND_LINE_WORDS: [&str; 10] = ["--help", "--version", "--config", "--print-config", "--graceful", "--now", "--json", "--hold", "--slot", "--pid"];

/// Why a program's setting cannot have these names: one of the daemon's own has one of them,
/// and one would hide the other (a program's `user`, say, would take `--user` and
/// `DAEMON_USER`, and the daemon would never drop root).
fn clash(id: &str, flag: &str, env: &str) -> Result<(), String> {
    let daemons = daemon_config::SETTINGS.iter().find(|s| {
        s.name == id || s.flag == flag || s.env == env || s.alias() == Some(id) || s.alias_flag().as_deref() == Some(flag) || s.alias_env().as_deref() == Some(env)
    });
    let taken = match daemons {
        Some(s) => format!("the daemon's own setting `{}` ({}, {})", s.name, s.flag, s.env),
        None if COMMAND_LINE_WORDS.contains(&flag) => format!("a word of the daemon's command line ({flag})"),
        None => return Ok(()),
    };
    Err(format!(
        "the program's setting `{id}` ({flag}, {env}) is named like {taken}: rename the field, or give it \
         `#[arg(long = \"...\")]` with a name of the program's own (`db_user`, not `user`)"
    ))
}

impl AppSpec {
    /// The spec of `T`, or why it cannot be served (an option without a long name).
    pub(crate) fn of<T: ProgramSettings>(program: &str) -> Result<AppSpec, String> {
        let command = T::augment_args(Command::new(program.to_string()).no_binary_name(true));
        let mut opts = Vec::new();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str().to_string();
            let Some(long) = arg.get_long() else {
                return Err(format!(
                    "the program's setting `{id}` has no long option name: give it `#[arg(long)]` (settings are \
                     named options; positional arguments and short options alone are not supported)"
                ));
            };
            let takes_value = arg.get_action().takes_values();
            let default = arg.get_default_values().first().map(|v| v.to_string_lossy().into_owned());
            let (flag, env) = (format!("--{long}"), format!("DAEMON_{}", id.to_ascii_uppercase().replace('-', "_")));
            clash(&id, &flag, &env)?;
            opts.push(Opt {
                env,
                flag,
                id,
                takes_value,
                help: arg.get_help().map(|h| h.to_string()).unwrap_or_default(),
                default,
            });
        }
        Ok(AppSpec { command, build: build::<T>, opts })
    }

    /// The option `--long`, if the program has it.
    pub(crate) fn flag(&self, long: &str) -> Option<&Opt> {
        self.opts.iter().find(|o| o.flag == long)
    }

    fn opt(&self, id: &str) -> Option<&Opt> {
        self.opts.iter().find(|o| o.id == id)
    }

    /// Whether `name` is one of the program's environment variables.
    pub(crate) fn has_env(&self, name: &str) -> bool {
        self.opts.iter().any(|o| o.env == name)
    }

    /// `value`, for the option `id`, through its value parser: the rule it breaks, if it does.
    fn check(&self, id: &str, value: &str) -> Result<(), String> {
        let Some(arg) = self.command.get_arguments().find(|a| a.get_id().as_str() == id) else { return Ok(()) };
        if !arg.get_action().takes_values() {
            return daemon_config::parse_switch(value).map(|_| ());
        }
        // The option alone, through clap, with this value: the field's own value parser judges.
        let Some(long) = arg.get_long() else { return Ok(()) };
        let alone = Command::new("check").no_binary_name(true).arg(arg.clone().required(false));
        let flag = format!("--{long}");
        alone.try_get_matches_from([flag.as_str(), value]).map(|_| ()).map_err(|e| rule_of(&e))
    }
}

/// The rule a clap error says was broken, in one line.
fn rule_of(e: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// What was given for the program's options, by source.
#[derive(Clone, Debug, Default)]
pub(crate) struct AppGiven {
    /// The command line's options of the program, in order (`--db-url`, `x`, ...).
    pub cli: Vec<OsString>,
    /// `DAEMON_<ID>` variables, by id.
    pub env: BTreeMap<String, String>,
}

impl AppGiven {
    /// The program's variables in `vars` (the rest are the framework's business).
    pub(crate) fn env_of(spec: &AppSpec, vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<BTreeMap<String, String>, Vec<String>> {
        let mut found = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, value) in vars {
            let Some(opt) = name.to_str().and_then(|n| spec.opts.iter().find(|o| o.env == n)) else { continue };
            match value.to_str() {
                Some(v) => {
                    found.insert(opt.id.clone(), v.to_string());
                }
                None => errors.push(format!("{}={}: not valid UTF-8; set it to a UTF-8 value or unset it", opt.env, value.to_string_lossy())),
            }
        }
        if errors.is_empty() {
            Ok(found)
        } else {
            Err(errors)
        }
    }
}

/// Where a value came from, for `--print-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum From {
    CommandLine,
    Env(String),
    File(String),
    Default,
}

/// The program's settings, resolved.
#[derive(Clone)]
pub(crate) struct AppResolved {
    pub value: Arc<dyn Any + Send + Sync>,
    /// Each option's value as given (or its default), and where it came from.
    pub shown: Vec<(String, String, From)>,
}

impl std::fmt::Debug for AppResolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppResolved").field("shown", &self.shown).finish_non_exhaustive()
    }
}

/// Resolves the program's settings from every source: `file` is the config file's `[app]` table
/// (by key, the value as text), `shown` the file's name for messages.
pub(crate) fn resolve(spec: &AppSpec, given: &AppGiven, file: &BTreeMap<String, String>, shown: &str) -> Result<AppResolved, Vec<String>> {
    let mut errors = Vec::new();
    for (key, value) in file {
        match spec.opt(key) {
            None => {
                let names: Vec<&str> = spec.opts.iter().map(|o| o.id.as_str()).collect();
                let hint = match daemon_config::suggest(key, names.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if names.is_empty() => "the program has no settings of its own".to_string(),
                    None => format!("the program's settings are {}", names.join(", ")),
                };
                errors.push(format!("{shown}: [app] unknown key `{key}`; {hint}"));
            }
            Some(_) => {
                if let Err(rule) = spec.check(key, value) {
                    errors.push(format!("{shown}: [app] {key} = {value}: {rule}"));
                }
            }
        }
    }
    for (id, value) in &given.env {
        if let (Some(opt), Err(rule)) = (spec.opt(id), spec.check(id, value)) {
            errors.push(format!("{}={value}: {rule}", opt.env));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // The environment over the file, as defaults: the command line, parsed by clap, over both.
    let mut command = spec.command.clone();
    for opt in &spec.opts {
        let lower = given.env.get(&opt.id).or_else(|| file.get(&opt.id));
        if let Some(v) = lower {
            let v = if opt.takes_value { v.clone() } else { flag_text(v) };
            command = command.mut_arg(opt.id.clone(), |a| a.default_value(v).required(false));
        }
    }
    let matches = command.try_get_matches_from(given.cli.iter()).map_err(|e| vec![cli_error(spec, &e)])?;
    let value = (spec.build)(&matches).map_err(|e| vec![cli_error(spec, &e)])?;
    let shown_values = spec
        .opts
        .iter()
        .map(|opt| {
            let from = match matches.value_source(&opt.id) {
                Some(clap::parser::ValueSource::CommandLine) => From::CommandLine,
                _ if given.env.contains_key(&opt.id) => From::Env(opt.env.clone()),
                _ if file.contains_key(&opt.id) => From::File(shown.to_string()),
                _ => From::Default,
            };
            let raw: Vec<String> = matches
                .get_raw(&opt.id)
                .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            (opt.id.clone(), raw.join(","), from)
        })
        .collect();
    Ok(AppResolved { value, shown: shown_values })
}

/// A flag's value from the environment or a file, as clap's boolean parser reads it.
fn flag_text(v: &str) -> String {
    daemon_config::parse_switch(v).unwrap_or(false).to_string()
}

/// A clap error of the program's command line, in the framework's words.
fn cli_error(spec: &AppSpec, e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    match e.kind() {
        ErrorKind::MissingRequiredArgument => {
            let missing = context(ContextKind::InvalidArg).unwrap_or_default();
            let names: Vec<String> = spec
                .opts
                .iter()
                .filter(|o| missing.contains(&o.flag))
                .map(|o| format!("{} (or {}, or `{}` in the config file's [app] table)", o.flag, o.env, o.id))
                .collect();
            format!("the program needs a value for {}", if names.is_empty() { missing } else { names.join(", ") })
        }
        _ => {
            let arg = context(ContextKind::InvalidArg).unwrap_or_default();
            let flag = arg.split_whitespace().next().unwrap_or("").to_string();
            match context(ContextKind::InvalidValue) {
                Some(value) => format!("{flag} {value}: {}", rule_of(e)),
                None => rule_of(e),
            }
        }
    }
}

/// The program's options for `--help`.
pub(crate) fn help(spec: &AppSpec) -> String {
    let mut out = String::from("\nOptions of the program (also `DAEMON_<NAME>` and the config file's [app] table):\n");
    for o in &spec.opts {
        let left = if o.takes_value { format!("{} {}", o.flag, o.id.to_ascii_uppercase()) } else { o.flag.clone() };
        out.push_str(&format!("  {left:<28}{}\n", o.help));
        let default = o.default.as_deref().map(|d| format!("default: {d}; ")).unwrap_or_default();
        out.push_str(&format!("  {:<28}[{default}env: {}] [file: [app] {}]\n", "", o.env, o.id));
    }
    out
}

/// The program's settings for `--print-config`.
/// A value as TOML would type it, so that what `--print-config` shows can be a config file:
/// a number as a number, a flag as a boolean, anything else as a string (which the file's
/// `[app]` table takes for any type: every value reaches the program's parser as text).
fn toml_value(text: &str) -> toml::Value {
    if let Ok(n) = text.parse::<i64>() {
        return toml::Value::Integer(n);
    }
    if let Ok(x) = text.parse::<f64>().map_err(drop).and_then(|x| if x.is_finite() && text.contains('.') { Ok(x) } else { Err(()) }) {
        return toml::Value::Float(x);
    }
    match text {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(text.to_string()),
    }
}

pub(crate) fn print(resolved: &AppResolved) -> String {
    let mut out = String::from("\n[app]\n");
    for (key, value, from) in &resolved.shown {
        let from = match from {
            From::CommandLine => "command line".to_string(),
            From::Env(name) => format!("environment ({name})"),
            From::File(f) => format!("config file ({f})"),
            From::Default => "default".to_string(),
        };
        out.push_str(&format!("{key} = {}  # {from}\n", toml_value(value)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Program settings with one option, `--LONG` (id `ID`), written out by hand (the runtime
    /// does not build clap's derive).
    #[derive(Clone)]
    struct One<const N: usize>;

    const NAMES: [(&str, &str); 5] = [("db_user", "db-user"), ("user", "user"), ("workers", "workers"), ("spool", "pid-file"), ("verbose", "json")];

    impl<const N: usize> clap::FromArgMatches for One<N> {
        fn from_arg_matches(_: &ArgMatches) -> Result<Self, clap::Error> {
            Ok(One)
        }
        fn update_from_arg_matches(&mut self, _: &ArgMatches) -> Result<(), clap::Error> {
            Ok(())
        }
    }

    impl<const N: usize> clap::Args for One<N> {
        fn augment_args(c: Command) -> Command {
            c.arg(clap::Arg::new(NAMES[N].0).long(NAMES[N].1))
        }
        fn augment_args_for_update(c: Command) -> Command {
            Self::augment_args(c)
        }
    }

    impl<const N: usize> ProgramSettings for One<N> {}

    #[test]
    fn a_program_setting_cannot_take_a_name_of_the_daemons() {
        assert!(AppSpec::of::<One<0>>("p").is_ok(), "db_user is the program's own");
        let user = AppSpec::of::<One<1>>("p").err().unwrap_or_default();
        assert!(user.contains("`user`") && user.contains("--user") && user.contains("db_user"), "{user}");
        let workers = AppSpec::of::<One<2>>("p").err().unwrap_or_default();
        assert!(workers.contains("`prefork`"), "workers is prefork's second name: {workers}");
        let flag = AppSpec::of::<One<3>>("p").err().unwrap_or_default();
        assert!(flag.contains("`pid_file`"), "a flag of the daemon's under another id: {flag}");
        let word = AppSpec::of::<One<4>>("p").err().unwrap_or_default();
        assert!(word.contains("command line (--json)"), "{word}");
    }
}
