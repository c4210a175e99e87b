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
    let (mut graceful, mut json, mut hold) = (false, false, false);
    let mut app_args: Vec<OsString> = Vec::new();
    loop {
        let arg = parser.next().map_err(|e| CliError(e.to_string()))?;
        let Some(arg) = arg else { break };
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Command::Help),
            Arg::Short('V') | Arg::Long("version") => return Ok(Command::Version),
            Arg::Long("print-config") => print_config = true,
            Arg::Long("graceful") => graceful = true,
            Arg::Long("json") => json = true,
            Arg::Long("hold") => hold = true,
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
                    let flags = SETTINGS
                        .iter()
                        .map(|s| s.flag)
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
        Some("stop") => Some(Control::Stop { graceful }),
        Some("reload") => Some(Control::Reload),
        Some("upgrade") => Some(Control::Upgrade { hold }),
        Some("backout") => Some(Control::Backout),
        Some(_) => Some(Control::Status { json }),
    };
    if hold && !matches!(command, Some(Control::Upgrade { .. })) {
        return Err(CliError("--hold goes with the upgrade command: `upgrade --hold`".into()));
    }
    if graceful && !matches!(command, Some(Control::Stop { .. })) {
        return Err(CliError("--graceful goes with the stop command: `stop --graceful`".into()));
    }
    if json && !matches!(command, Some(Control::Status { .. })) {
        return Err(CliError("--json goes with the status command: `status --json`".into()));
    }
    Ok(Command::Run(Run { given, config, print_config, command, app_args }))
}

/// The control commands.
const COMMANDS: [&str; 6] = ["start", "stop", "reload", "status", "upgrade", "backout"];

fn os_to_string(flag: &str, v: OsString) -> Result<String, CliError> {
    v.into_string()
        .map_err(|v| CliError(format!("{flag} {}: not valid UTF-8", v.to_string_lossy())))
}

/// The help text, generated from the rule book; `current` shows what the attributes set.
pub(crate) fn help(program: &str, name: &str, version: &str, current: &Given, app: Option<&crate::app::AppSpec>) -> String {
    let mut out = format!(
        "{name} {version}\n\nUsage: {program} [COMMAND] [OPTIONS]\n\n\
         Commands (none: run as configured, in the foreground unless `detach` is set):\n\
         \x20 start                       detach; exit 0 once the workers accept, 1 with the reason if start-up fails\n\
         \x20 stop [--graceful]           stop the manager named by the pid file, as TERM (or QUIT) would, and wait until it is gone\n\
         \x20 reload                      as HUP: re-read the config file, reopen logs, replace the workers; exit 1 if refused\n\
         \x20 status [--json]             the scoreboard; exit 0 running, 1 dead with a pid file, 3 not running\n\n\
         The commands talk to the manager over its control channel, verified as its own; they signal nothing.\n\n\
         Options override the values of #[daemon::main]:\n"
    );
    for s in SETTINGS {
        let arg = match s.kind {
            Kind::Flag => String::new(),
            Kind::Count { .. } => " N".to_string(),
            Kind::Addresses | Kind::Endpoint => " IP:PORT".to_string(),
            Kind::Duration { .. } => " DURATION".to_string(),
            Kind::Size { .. } => " SIZE".to_string(),
            Kind::Path => " PATH".to_string(),
            Kind::Name => " NAME".to_string(),
            Kind::Choice(_) => " WORD".to_string(),
        };
        let left = format!("{}{arg}", s.flag);
        out.push_str(&format!("  {left:<28}{}\n", s.summary));
        let set = match current.get(s.key) {
            Some((v, _)) => format!("; set by the program: {v}"),
            None => String::new(),
        };
        out.push_str(&format!("  {:<28}[default: {}{set}] [env: {}]\n", "", s.default, s.env));
    }
    out.push_str(&format!(
        "  {:<28}{}\n",
        "--config FILE",
        "read settings from a TOML file whose keys are the attribute keys [env: DAEMON_CONFIG]"
    ));
    out.push_str(&format!(
        "  {:<28}{}\n",
        "--print-config",
        "print the effective configuration and the source of each value, then exit"
    ));
    out.push_str(&format!("  {:<28}{}\n", "-h, --help", "print this help"));
    out.push_str(&format!("  {:<28}{}\n", "-V, --version", "print the version"));
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
    fn help_lists_every_flag() {
        let h = help("prog", "demo", "1.0", &Given::new(), None);
        for s in SETTINGS {
            assert!(h.contains(s.flag) && h.contains(s.env), "{}", s.flag);
        }
    }
}
