//! A program's own settings (`examples/greet.rs`: `--greeting`, `--repeat`, a `[app]` table),
//! through the framework's sources and rules: every source works, with the framework's
//! precedence; a bad value from each is refused with the standard message; `--help` and
//! `--print-config` show them; a reload hands new values to new workers, and a bad file keeps
//! the running ones.

mod support;

use support::*;

fn greet(args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut all = vec!["--listen", "127.0.0.1:0", "--workers", "1"];
    all.extend_from_slice(args);
    let d = Daemon::start_with_env("greet", &all, env);
    let line = d.wait_for_line("listening addr=", SOON);
    let port = port_in(&line).expect("a port");
    wait_until(SOON, "an answer", || http_get(port, "/").is_ok());
    d
}

fn answer(d: &Daemon) -> String {
    let line = d.lines().into_iter().find(|l| l.contains("listening addr=")).expect("the listening line");
    http_get(port_in(&line).expect("a port"), "/").expect("an answer").1
}

/// Runs greet to its exit: its exit code and standard error (and output).
fn exits(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    Daemon::run_to_exit("greet", args, env)
}

#[test]
fn every_source_sets_the_programs_settings_with_the_frameworks_precedence() {
    let file = ConfigFile::new("greet-sources", "[app]\ngreeting = \"from-file\"\nrepeat = 2\n");
    let f = file.arg();
    assert_eq!(answer(&greet(&[], &[])), "hello\n", "the defaults");
    assert_eq!(answer(&greet(&["--config", &f], &[])), "from-file from-file\n");
    assert_eq!(answer(&greet(&["--config", &f], &[("DAEMON_GREETING", "from-env")])), "from-env from-env\n", "environment > file");
    let d = greet(&["--config", &f, "--greeting", "from-cli", "--repeat", "3"], &[("DAEMON_GREETING", "from-env")]);
    assert_eq!(answer(&d), "from-cli from-cli from-cli\n", "command line > environment > file");
    // main's body had them too.
    assert!(d.lines().iter().any(|l| l.contains("greet: starting") && l.contains("greeting=from-cli") && l.contains("repeat=3")));
}

#[test]
fn a_bad_value_from_any_source_is_refused_with_the_standard_message() {
    let (code, _, err) = exits(&["--repeat", "x"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--repeat x: invalid digit found in string"), "{err}");
    let (code, _, err) = exits(&[], &[("DAEMON_REPEAT", "11")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("DAEMON_REPEAT=11: 11 is not in 1..=10"), "{err}");
    let file = ConfigFile::new("greet-bad", "[app]\nrepeat = 0\ngreetin = \"x\"\n");
    let f = file.arg();
    let (code, _, err) = exits(&["--config", &f], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("{f}: [app] repeat = 0: 0 is not in 1..=10")), "{err}");
    assert!(err.contains("[app] unknown key `greetin`; did you mean `greeting`?"), "{err}");
    let (code, _, err) = exits(&["--grerting", "x"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown option --grerting; did you mean --greeting?"), "{err}");
}

#[test]
fn help_and_print_config_show_the_programs_settings() {
    let (code, help, _) = exits(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for text in ["--greeting GREETING", "What every answer says", "DAEMON_GREETING", "[app] greeting", "--repeat REPEAT", "default: 1", "--workers"] {
        assert!(help.contains(text), "no {text:?} in --help:\n{help}");
    }
    let (code, printed, _) = exits(&["--print-config", "--repeat", "4"], &[("DAEMON_GREETING", "hey")]);
    assert_eq!(code, Some(0));
    assert!(printed.contains("[app]"), "{printed}");
    assert!(printed.contains("greeting = \"hey\"  # environment (DAEMON_GREETING)"), "{printed}");
    // A number is a number, as a config file would hold it.
    assert!(printed.contains("repeat = 4  # command line"), "{printed}");
    // What --print-config prints is a config file the program reads back.
    let file = ConfigFile::new("greet-print", &printed);
    let f = file.arg();
    assert_eq!(answer(&greet(&["--config", &f], &[])), "hey hey hey hey\n");
}

#[test]
fn a_reload_hands_new_values_to_new_workers_and_a_bad_file_keeps_the_old_ones() {
    let file = ConfigFile::new("greet-reload", "[app]\ngreeting = \"first\"\n");
    let f = file.arg();
    let d = greet(&["--config", &f], &[]);
    assert_eq!(answer(&d), "first\n");
    file.write("[app]\ngreeting = \"second\"\nrepeat = 2\n");
    d.signal(Signal::SIGHUP);
    wait_until(SOON, "the new generation to answer with the new values", || answer(&d) == "second second\n");
    // A bad value: refused, said, and the running values stay.
    file.write("[app]\ngreeting = \"third\"\nrepeat = 99\n");
    d.signal(Signal::SIGHUP);
    d.wait_for_line("repeat = 99: 99 is not in 1..=10", SOON);
    d.wait_for_line("the new configuration is refused", SOON);
    for _ in 0..5 {
        assert_eq!(answer(&d), "second second\n");
    }
}
