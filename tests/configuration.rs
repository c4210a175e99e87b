//! Settings from every run-time source (command line, environment, config file) are checked by the
//! same rule book as the attributes: one wrong value reads the same from each source, precedence
//! is command line > environment > file > attributes > defaults, and a bad file on reload keeps
//! the running configuration.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::*;

/// A config file of this test's own, removed at the end.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(tag: &str, text: &str) -> ConfigFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("daemon-config-{tag}-{}-{n}.toml", std::process::id()));
        let file = ConfigFile(path);
        file.write(text);
        file
    }

    fn write(&self, text: &str) {
        // Written whole, then renamed: a reload never reads half a file.
        let temp = self.0.with_extension("tmp");
        std::fs::write(&temp, text).expect("write the config file");
        std::fs::rename(&temp, &self.0).expect("move the config file in place");
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `lab` to its exit; returns the exit code, standard output and standard error.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut d = Daemon::start_with_env("lab", &all, env);
    let status = d.wait_exit(SOON);
    (status.code(), d.stdout_after_exit(), d.stderr_after_exit())
}

/// The part of an error line after the place the value came from.
fn rule_of(err: &str, place: &str) -> String {
    let line = err.lines().find(|l| l.contains(place)).unwrap_or_else(|| panic!("no {place:?} in {err}"));
    line.split_once(&format!("{place}: ")).map(|(_, rule)| rule.to_string()).unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn one_wrong_value_gets_the_same_rule_from_every_source() {
    let (code, _, cli) = run(&["--workers", "0"], &[]);
    assert_eq!(code, Some(2), "{cli}");
    let (code, _, env) = run(&[], &[("DAEMON_PREFORK", "0")]);
    assert_eq!(code, Some(2), "{env}");
    let file = ConfigFile::new("same-rule", "prefork = 0\n");
    let (code, _, from_file) = run(&["--config", &file.arg()], &[]);
    assert_eq!(code, Some(2), "{from_file}");

    let rule = rule_of(&cli, "--workers 0");
    assert_eq!(rule, "0 is too few: prefork must be between 1 and 4096");
    assert_eq!(rule_of(&env, "DAEMON_PREFORK=0"), rule);
    assert_eq!(rule_of(&from_file, &format!("{}: prefork = 0", file.arg())), rule);
    for err in [&cli, &env, &from_file] {
        assert!(!err.contains("listening"), "refused only after binding: {err}");
    }

    // Every problem of a file at once, each with its fix.
    let file = ConfigFile::new("many", "max_spares = 2\nclients = \"many\"\nlisten = \"localhost\"\n");
    let (code, _, err) = run(&["--config", &file.arg()], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown key `max_spares`; did you mean `max_spare`?"), "{err}");
    assert!(err.contains("expected a whole number, found string"), "{err}");
    assert!(err.contains("`localhost` is not an address to listen on: it has no port"), "{err}");

    let (code, _, err) = run(&["--config", "/nonexistent/daemon.toml"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read the config file /nonexistent/daemon.toml"), "{err}");
}

#[test]
fn print_config_shows_each_value_and_its_source() {
    let file = ConfigFile::new("print", "prefork = 3\nmin_spare = 2\nrequests = 100\ngraceful_timeout = \"5s\"\n");
    let (code, out, err) = run(
        &["--config", &file.arg(), "--requests", "7", "--print-config"],
        &[("DAEMON_MIN_SPARE", "3")],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("listening"), "--print-config started the daemon: {err}");
    let line = |key: &str| {
        out.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key} in {out}")).to_string()
    };
    assert!(line("prefork").starts_with("prefork = 3 ") && line("prefork").ends_with(&format!("# file {}", file.arg())), "{out}");
    assert!(line("min_spare").starts_with("min_spare = 3 ") && line("min_spare").ends_with("# environment"), "{out}");
    assert!(line("requests").starts_with("requests = 7 ") && line("requests").ends_with("# command line"), "{out}");
    assert!(line("listen").contains("127.0.0.1:0") && line("listen").ends_with("# command line"), "{out}");
    assert!(line("max_spare").starts_with("max_spare = 3 ") && line("max_spare").ends_with("# default"), "{out}");
    assert!(line("graceful_timeout").contains("\"5s\""), "{out}");
}

#[test]
fn the_attribute_is_the_fallback_below_every_run_time_source() {
    // lab's attribute sets listen = "127.0.0.1:8081"; print it without overriding it.
    let mut d = Daemon::start_with_env("lab", &["--print-config"], &[]);
    assert!(d.wait_exit(SOON).success());
    let out = d.stdout_after_exit();
    let listen = out.lines().find(|l| l.starts_with("listen = ")).expect("a listen line");
    assert!(listen.contains("127.0.0.1:8081") && listen.ends_with("# attribute"), "{out}");
}

#[test]
fn reload_applies_a_good_file_and_keeps_the_running_one_on_a_bad_one() {
    let file = ConfigFile::new("reload", "prefork = 2\n");
    let d = Daemon::serve("lab", &["--config", &file.arg()]);
    d.wait_for_workers(2, SOON);

    file.write("prefork = 3\n");
    d.signal(Signal::SIGHUP);
    d.wait_for_line("configuration applied", SOON);
    let three = d.wait_for_workers(3, SOON);
    d.wait_for_line_where("the new generation to be ready", SOON, |l| {
        l.contains("pool ready") && l.contains("workers=3")
    });

    file.write("prefork = 0\nmax_spares = 1\n");
    d.signal(Signal::SIGHUP);
    let refused = d.wait_for_line("the new configuration is refused", SOON);
    assert!(refused.contains("the running one stays"), "{refused}");
    let lines = d.lines().join("\n");
    assert!(lines.contains("0 is too few: prefork must be between 1 and 4096"), "{lines}");
    assert!(lines.contains("did you mean `max_spare`?"), "{lines}");
    assert_eq!(d.workers(), three, "a refused reload replaces no worker");
    assert_eq!(d.get("/").0, 200, "and the daemon still serves");
}

#[test]
fn a_misspelt_environment_variable_is_named_not_ignored() {
    let d = Daemon::start_with_env("lab", &["--listen", "127.0.0.1:0", "--workers", "1"], &[("DAEMON_MAX_SPARES", "2")]);
    let warning = d.wait_for_line("DAEMON_MAX_SPARES", SOON);
    assert!(warning.contains("did you mean DAEMON_MAX_SPARE?"), "{warning}");
    d.wait_for_workers(1, SOON);
}
