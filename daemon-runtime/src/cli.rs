//! The generated binary's command line. Every flag comes from the rule book, and every value is
//! checked by the same rules as the attribute's.

use std::ffi::OsString;

use daemon_config::{setting, suggest, Given, Key, Kind, Origin, Value, SETTINGS};

/// What the command line asks for.
pub(crate) enum Command {
    Run(Run),
    Help,
    Version,
}

/// Settings given on the command line, and what to do with them.
pub(crate) struct Run {
    pub given: Given,
    /// `--config FILE`.
    pub config: Option<std::path::PathBuf>,
    /// `--print-config`: print the effective configuration and exit.
    pub print_config: bool,
    /// `start`, `stop`, `reload` or `status`; none runs the daemon as configured.
    pub command: Option<crate::control::Control>,
    /// The program's own options, in order, for its parser (see `app`).
    pub app_args: Vec<OsString>,
}

/// A command line that cannot be understood; the message names the flag, the value and the rule.
#[derive(Debug)]
pub(crate) struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments (the first is the program's name). The program's own options (of its
/// settings type, `app`) are set aside for its parser.
pub(crate) fn parse(args: Vec<OsString>, app: Option<&crate::app::AppSpec>) -> Result<Command, CliError> {
    use lexopt::Arg;
    let mut parser = lexopt::Parser::from_iter(args);
    let mut given = Given::new();
    let mut listen: Vec<String> = Vec::new();
    let mut config = None;
    let mut print_config = false;
    let mut command: Option<String> = None;
    let (mut graceful, mut now, mut json, mut hold) = (false, false, false, false);
    // `dump`'s worker: by its slot or its pid.
    let (mut slot, mut pid): (Option<u32>, Option<i32>) = (None, None);
    let mut app_args: Vec<OsString> = Vec::new();
    // The flag that set each key: a key's two names at once is a mistake, not a race.
    let mut flag_of: std::collections::HashMap<Key, String> = std::collections::HashMap::new();
    loop {
        let arg = parser.next().map_err(|e| CliError(e.to_string()))?;
        let Some(arg) = arg else { break };
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Command::Help),
            Arg::Short('V') | Arg::Long("version") => return Ok(Command::Version),
            Arg::Long("print-config") => print_config = true,
            Arg::Long("graceful") => graceful = true,
            Arg::Long("now") => now = true,
            Arg::Long("json") => json = true,
            Arg::Long("hold") => hold = true,
            Arg::Long("slot") => {
                let v = parser.value().map_err(|_| CliError("--slot needs a value: the worker's slot, as `status` shows it".into()))?;
                let text = os_to_string("--slot", v)?;
                slot = Some(text.parse().map_err(|_| CliError(format!("--slot {text}: not a slot number (see `status`)")))?);
            }
            Arg::Long("pid") => {
                let v = parser.value().map_err(|_| CliError("--pid needs a value: the worker's process id, as `status` shows it".into()))?;
                let text = os_to_string("--pid", v)?;
                pid = Some(text.parse().ok().filter(|&p: &i32| p > 0).ok_or_else(|| CliError(format!("--pid {text}: not a process id (see `status`)")))?);
            }
            Arg::Long("config") => {
                let path = parser
                    .value()
                    .map_err(|_| CliError("--config needs a value: the path of a TOML file".into()))?;
                config = Some(std::path::PathBuf::from(path));
            }
            Arg::Long(name) => {
                let flag = format!("--{name}");
                if let Some(opt) = app.and_then(|a| a.flag(&flag)) {
                    app_args.push(flag.clone().into());
                    if opt.takes_value {
                        let v = parser.value().map_err(|_| CliError(format!("{flag} needs a value: see --help")))?;
                        app_args.push(v);
                    } else if let Some(v) = parser.optional_value() {
                        return Err(CliError(format!("{flag} is a flag and takes no value (`{}`): give it, or leave it out", v.to_string_lossy())));
                    }
                    continue;
                }
                let Some(key) = Key::from_flag(&flag) else {
                    let program_flags: Vec<&str> = app.map(|a| a.opts.iter().map(|o| o.flag.as_str()).collect()).unwrap_or_default();
                    let aliases: Vec<String> = SETTINGS.iter().filter_map(|s| s.alias_flag()).collect();
                    let flags = SETTINGS
                        .iter()
                        .map(|s| s.flag)
                        .chain(aliases.iter().map(String::as_str))
                        .chain(["--help", "--version", "--config", "--print-config"])
                        .chain(program_flags.iter().copied());
                    let hint = match suggest(&flag, flags) {
                        Some(near) => format!("; did you mean {near}?"),
                        None => String::new(),
                    };
                    return Err(CliError(format!("unknown option {flag}{hint}")));
                };
                let s = setting(key);
                let text = match s.kind {
                    Kind::Flag => match parser.optional_value() {
                        Some(v) => os_to_string(&flag, v)?,
                        None => "true".to_string(),
                    },
                    _ => {
                        let v = parser.value().map_err(|_| {
                            CliError(format!("{flag} needs a value: {}", s.rule()))
                        })?;
                        os_to_string(&flag, v)?
                    }
                };
                if key == Key::Listen {
                    // Repeatable: each occurrence adds addresses.
                    listen.extend(text.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()));
                    continue;
                }
                if let Some(other) = flag_of.get(&key).filter(|f| **f != flag) {
                    return Err(CliError(format!("{other} and {flag} are the same setting ({}): give one of them", s.name)));
                }
                flag_of.insert(key, flag.clone());
                let value = s
                    .parse_text(&text)
                    .map_err(|rule| CliError(format!("{flag} {text}: {rule}")))?;
                given.set(key, value, Origin::CommandLine);
            }
            Arg::Short(c) => {
                return Err(CliError(format!("unknown option -{c}; see --help")));
            }
            Arg::Value(v) if command.is_none() => {
                let word = v.to_string_lossy().into_owned();
                if !COMMANDS.contains(&word.as_str()) {
                    let hint = suggest(&word, COMMANDS.iter().copied())
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default();
                    return Err(CliError(format!(
                        "unknown command `{word}`; {hint}the commands are {}",
                        COMMANDS.join(", ")
                    )));
                }
                command = Some(word);
            }
            Arg::Value(v) => {
                return Err(CliError(format!(
                    "unexpected argument `{}`: give one command at most; see --help",
                    v.to_string_lossy()
                )));
            }
        }
    }
    if !listen.is_empty() {
        let s = setting(Key::Listen);
        let value = Value::Addresses(listen);
        s.check(&value).map_err(|rule| CliError(format!("--listen {value}: {rule}")))?;
        given.set(Key::Listen, value, Origin::CommandLine);
    }
    use crate::control::Control;
    let command = match command.as_deref() {
        None => None,
        Some("start") => Some(Control::Start),
        // Graceful unless told otherwise: work in hand is finished, not lost (`--now` is TERM's
        // fast stop). `--graceful` says the default out loud.
        Some("stop") => Some(Control::Stop { graceful: !now }),
        Some("reload") => Some(Control::Reload),
        Some("upgrade") => Some(Control::Upgrade { hold }),
        Some("backout") => Some(Control::Backout),
        Some("dump") => Some(Control::Dump { json, slot, pid }),
        Some(_) => Some(Control::Status { json }),
    };
    if hold && !matches!(command, Some(Control::Upgrade { .. })) {
        return Err(CliError("--hold goes with the upgrade command: `upgrade --hold`".into()));
    }
    if graceful && !matches!(command, Some(Control::Stop { .. })) {
        return Err(CliError("--graceful goes with the stop command: `stop --graceful` (a stop is graceful unless `--now`)".into()));
    }
    if now && !matches!(command, Some(Control::Stop { .. })) {
        return Err(CliError("--now goes with the stop command: `stop --now`".into()));
    }
    if now && graceful {
        return Err(CliError("`stop --now` and `--graceful` contradict each other: a stop is graceful unless `--now`".into()));
    }
    if json && !matches!(command, Some(Control::Status { .. } | Control::Dump { .. })) {
        return Err(CliError("--json goes with the status and dump commands: `status --json`".into()));
    }
    if (slot.is_some() || pid.is_some()) && !matches!(command, Some(Control::Dump { .. })) {
        return Err(CliError("--slot and --pid go with the dump command: `dump --slot N`".into()));
    }
    if slot.is_some() && pid.is_some() {
        return Err(CliError("dump: give --slot or --pid, not both".into()));
    }
    Ok(Command::Run(Run { given, config, print_config, command, app_args }))
}

/// The control commands.
const COMMANDS: [&str; 7] = ["start", "stop", "reload", "status", "upgrade", "backout", "dump"];

fn os_to_string(flag: &str, v: OsString) -> Result<String, CliError> {
    v.into_string()
        .map_err(|v| CliError(format!("{flag} {}: not valid UTF-8", v.to_string_lossy())))
}

/// The help text, generated from the rule book; `current` shows what the attributes set.
pub(crate) fn help(program: &str, name: &str, version: &str, current: &Given, app: Option<&crate::app::AppSpec>) -> String {
    let commands = [
        ("start", "detach; exit 0 once the workers accept, 1 with the reason if start-up fails"),
        ("stop [--now]", "stop the manager named by the pid file gracefully, as QUIT would (work in hand is finished, within graceful_timeout), and wait until it is gone; --now: the fast stop of TERM"),
        ("reload", "as HUP: re-read the config file, reopen logs, replace the workers; exit 1 if refused"),
        ("status [--json]", "the scoreboard; exit 0 running, 1 dead with a pid file, 3 not running"),
        ("upgrade [--hold]", "as USR2: start the program's file again beside this manager; exit 0 once it serves, 1 if it rolled back (--hold: keep this manager, backed out, until it is stopped)"),
        ("backout", "as WINCH: retire every worker and keep the sockets (connections wait); HUP or reload brings workers back"),
        ("dump [--slot N | --pid P] [--json]", "the stacks of a worker's threads, which serves on; with no worker, the manager's own state (pools, processes, deadlines, its next wake-up and why)"),
    ];
    let mut options: Vec<(String, String)> = Vec::new();
    for s in SETTINGS {
        let arg = match s.kind {
            Kind::Flag => "",
            Kind::Count { .. } => " N",
            Kind::CountOrAuto { .. } => " N|auto",
            Kind::Addresses => " ADDRESS",
            Kind::Endpoint => " IP:PORT",
            Kind::Duration { .. } => " DURATION",
            Kind::Size { .. } => " SIZE",
            Kind::Path => " PATH",
            Kind::Name => " NAME",
            Kind::Mode => " MODE",
            Kind::Choice(_) => " WORD",
        };
        let set = match current.get(s.key) {
            Some((v, _)) => format!("; set by the program: {v}"),
            None => String::new(),
        };
        let (also, env) = match (s.alias_flag(), s.alias_env()) {
            (Some(f), Some(e)) => (format!(" (or {f})"), format!("{} or {e}", s.env)),
            _ => (String::new(), s.env.to_string()),
        };
        options.push((format!("{}{arg}{also}", s.flag), format!("{}\n[default: {}{set}] [env: {env}]", s.summary, s.default)));
    }
    options.push(("--config FILE".into(), "read settings from a TOML file whose keys are the attribute keys [env: DAEMON_CONFIG]".into()));
    options.push(("--print-config".into(), "print the effective configuration and the source of each value, then exit".into()));
    options.push(("-h, --help".into(), "print this help".into()));
    options.push(("-V, --version".into(), "print the version".into()));
    // One column for every left-hand side, two spaces past the longest.
    let width = commands.iter().map(|(c, _)| c.len()).chain(options.iter().map(|(o, _)| o.len())).max().unwrap_or(0) + 2;
    let row = |out: &mut String, left: &str, text: &str| {
        for (i, line) in text.lines().enumerate() {
            let left = if i == 0 { left } else { "" };
            out.push_str(&format!("  {left:<width$}{line}\n"));
        }
    };
    let mut out = format!(
        "{name} {version}\n\nUsage: {program} [COMMAND] [OPTIONS]\n\n\
         Commands (none: run as configured, in the foreground unless `detach` is set):\n"
    );
    for (command, text) in commands {
        row(&mut out, command, text);
    }
    out.push_str("\nThe commands talk to the manager over its control channel, verified as its own; they signal nothing.\n\n");
    out.push_str("Options override the values of #[daemon::main]:\n");
    for (option, text) in &options {
        row(&mut out, option, text);
    }
    if let Some(app) = app {
        out.push_str(&crate::app::help(app));
    }
    out.push_str(
        "\nPrecedence: command line > environment > config file > #[daemon::main] > defaults.\n",
    );
    out.push_str(
        "\nSignals to the manager: TERM/INT fast stop, QUIT graceful stop, HUP new generation of \
         workers, USR2 hot upgrade, WINCH retire the workers (back-out), TTIN/TTOU one worker \
         more/fewer.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("prog").chain(list.iter().copied()).map(OsString::from).collect()
    }

    fn given(list: &[&str]) -> Given {
        match parse(args(list), None) {
            Ok(Command::Run(r)) => r.given,
            Ok(_) => panic!("not a run"),
            Err(e) => panic!("{e}"),
        }
    }

    fn error(list: &[&str]) -> String {
        match parse(args(list), None) {
            Err(e) => e.0,
            Ok(_) => panic!("accepted {list:?}"),
        }
    }

    #[test]
    fn flags_set_values_from_the_command_line() {
        let g = given(&["--workers", "3", "--max-spare=5", "--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--foreground"]);
        assert_eq!(g.get(Key::Prefork), Some(&(Value::Count(3), Origin::CommandLine)));
        assert_eq!(g.get(Key::MaxSpare).map(|v| &v.0), Some(&Value::Count(5)));
        assert_eq!(
            g.get(Key::Listen).map(|v| &v.0),
            Some(&Value::Addresses(vec!["127.0.0.1:0".into(), "[::1]:0".into()]))
        );
        assert_eq!(g.get(Key::Foreground).map(|v| &v.0), Some(&Value::Flag(true)));
    }

    #[test]
    fn bad_values_name_the_flag_the_value_and_the_rule() {
        let e = error(&["--workers", "0"]);
        assert!(e.contains("--workers 0") && e.contains("between 1 and 4096"), "{e}");
        let e = error(&["--wrokers", "3"]);
        assert!(e.contains("did you mean --workers?"), "{e}");
        let e = error(&["--listen", "nowhere"]);
        assert!(e.contains("--listen nowhere") && e.contains("IP:PORT"), "{e}");
        let e = error(&["--graceful-timeout", "soon"]);
        assert!(e.contains("--graceful-timeout soon"), "{e}");
        let e = error(&["--requests"]);
        assert!(e.contains("needs a value"), "{e}");
    }

    #[test]
    fn help_lists_every_flag_and_command_in_columns() {
        let h = help("prog", "demo", "1.0", &Given::new(), None);
        for s in SETTINGS {
            assert!(h.contains(s.flag) && h.contains(s.env), "{}", s.flag);
        }
        for command in COMMANDS {
            assert!(h.lines().any(|l| l.trim_start().starts_with(command)), "{command} in\n{h}");
        }
        // Every option row keeps two spaces between the option and its text.
        for l in h.lines().filter(|l| l.starts_with("  --")) {
            let left = l.trim_start().split("  ").next().unwrap_or("");
            assert!(l.trim_start().len() > left.len(), "glued: {l}");
            assert!(!left.contains("DURATIONhow"), "glued: {l}");
        }
        assert!(h.contains("--workers N|auto (or --prefork)") && h.contains("DAEMON_PREFORK or DAEMON_WORKERS"), "{h}");
    }

    #[test]
    fn stop_is_graceful_unless_now() {
        use crate::control::Control;
        let command = |list: &[&str]| match parse(args(list), None) {
            Ok(Command::Run(r)) => r.command,
            _ => panic!("{list:?}"),
        };
        assert_eq!(command(&["stop"]), Some(Control::Stop { graceful: true }));
        assert_eq!(command(&["stop", "--graceful"]), Some(Control::Stop { graceful: true }));
        assert_eq!(command(&["stop", "--now"]), Some(Control::Stop { graceful: false }));
        assert!(error(&["stop", "--now", "--graceful"]).contains("contradict"));
        assert!(error(&["reload", "--now"]).contains("--now goes with the stop command"));
    }

    #[test]
    fn prefork_has_its_flags_word_too() {
        assert_eq!(given(&["--prefork", "3"]).get(Key::Prefork).map(|v| &v.0), Some(&Value::Count(3)));
        assert_eq!(given(&["--workers", "3"]).get(Key::Prefork).map(|v| &v.0), Some(&Value::Count(3)));
        let e = error(&["--workers", "2", "--prefork", "3"]);
        assert!(e.contains("--workers and --prefork are the same setting"), "{e}");
    }
}
