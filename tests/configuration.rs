//! Settings from every run-time source (command line, environment, config file) are checked by the
//! same rule book as the attributes: one wrong value reads the same from each source, precedence
//! is command line > environment > file > attributes > defaults, and a bad file on reload keeps
//! the running configuration.

mod support;

use support::*;

/// Runs `lab` to its exit; returns the exit code, standard output and standard error.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    Daemon::run_to_exit("lab", args, env)
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
    assert_eq!(rule, "0 is too few: prefork must be between 1 and 4096, or auto");
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

    let two = d.wait_for_workers(2, SOON);
    file.write("prefork = 3\n");
    d.signal(Signal::SIGHUP);
    d.wait_for_line("configuration applied", SOON);
    d.wait_for_line_where("the new generation to be ready", SOON, |l| {
        l.contains("pool ready") && l.contains("workers=3")
    });
    // Three workers of the new generation alone: the old ones may take a moment to leave.
    let three = wait_for(SOON, "three new workers and no old one", || {
        Some(d.workers()).filter(|w| w.len() == 3 && w.iter().all(|p| !two.contains(p)))
    });

    file.write("prefork = 0\nmax_spares = 1\n");
    d.signal(Signal::SIGHUP);
    let refused = d.wait_for_line("the new configuration is refused", SOON);
    assert!(refused.contains("the running one stays"), "{refused}");
    let lines = d.lines().join("\n");
    assert!(lines.contains("0 is too few: prefork must be between 1 and 4096, or auto"), "{lines}");
    assert!(lines.contains("did you mean `max_spare`?"), "{lines}");
    assert_eq!(d.workers(), three, "a refused reload replaces no worker");
    assert_eq!(d.get("/").0, 200, "and the daemon still serves");
}

#[test]
fn a_config_file_that_is_not_a_regular_file_is_refused_without_hanging() {
    let file = ConfigFile::new("fifo", "prefork = 2\n");
    let d = Daemon::serve("lab", &["--config", &file.arg()]);
    let two = d.wait_for_workers(2, SOON);
    // A FIFO in the file's place, with no writer: reading it would block the manager until one
    // came. The reload is refused at once and the manager goes on.
    std::fs::remove_file(&file.0).expect("remove the config file");
    nix::unistd::mkfifo(&file.0, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    d.signal(Signal::SIGHUP);
    let why = d.wait_for_line("cannot read the config file", SOON);
    assert!(why.contains("a FIFO, not a regular file"), "{why}");
    d.wait_for_line("the new configuration is refused", SOON);
    d.kill_worker(two[0]);
    wait_until(SOON, "the killed worker to be replaced", || d.workers().len() == 2 && !d.workers().contains(&two[0]));
    // A link to /dev/zero: refused, not read into memory.
    std::fs::remove_file(&file.0).expect("remove the FIFO");
    std::os::unix::fs::symlink("/dev/zero", &file.0).expect("symlink");
    d.signal(Signal::SIGHUP);
    d.wait_for_line("a device, not a regular file", SOON);
    assert_eq!(d.get("/").0, 200, "the old configuration serves on");

    // At start: the same refusal, exit 2, at once.
    let fifo = TempDir::new("fifo-start");
    let path = fifo.path("daemon.toml");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let (code, _, err) = run(&[], &[("DAEMON_CONFIG", &path.display().to_string())]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("a FIFO, not a regular file"), "{err}");
}

#[test]
fn reload_of_a_refused_file_exits_1_with_the_reasons_and_stop_still_stops() {
    let dir = TempDir::new("reload-refused");
    let config = dir.path("lab.toml");
    std::fs::write(&config, "prefork = 1\n").expect("write the config file");
    let c = config.display().to_string();
    let d = Detached::start(&dir, &["--config", &c]);
    std::fs::write(&config, "prefork = 0\n").expect("break the config file");
    // The manager judges the file, and says why it refuses it: exit 1, as README says.
    let out = d.control(&["reload", "--config", &c]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("0 is too few") && err.contains("refused the new configuration and keeps running"), "{err}");
    // A broken file does not keep the daemon from being stopped by its command.
    let out = d.control(&["stop", "--config", &c]);
    assert!(out.status.success(), "stop: {out:?}");
    wait_until(SOON, "the manager to be gone", || !alive(d.manager));
}

#[test]
fn a_broken_file_that_names_the_pid_file_still_finds_the_daemon() {
    // The pid file is named in the file only: a mistake elsewhere in it must not hide it.
    let dir = TempDir::new("salvage");
    let (config, pid_file, log) = (dir.path("lab.toml"), dir.path("lab.pid"), dir.path("lab.log"));
    let good = format!("pid_file = {:?}\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n", pid_file.display().to_string());
    std::fs::write(&config, &good).expect("write the config file");
    let (c, l) = (config.display().to_string(), log.display().to_string());
    let out = run_program(&example("lab"), &["start", "--config", &c, "--log-file", &l]);
    assert!(out.status.success(), "start: {out:?}");
    let manager = read_pid(&pid_file).expect("the pid file");
    std::fs::write(&config, format!("{good}request_timeout = \"banana\"\n")).expect("break the config file");
    let out = run_program(&example("lab"), &["reload", "--config", &c]);
    assert_eq!(out.status.code(), Some(1), "reload: {out:?}");
    assert!(text(&out.stderr).contains("banana"), "{out:?}");
    let out = run_program(&example("lab"), &["stop", "--config", &c]);
    assert!(out.status.success(), "stop: {out:?}");
    wait_until(SOON, "the manager to be gone", || !alive(manager));
}

#[test]
fn workers_is_a_second_name_of_prefork_at_run_time() {
    let d = Daemon::start_with_env("lab", &["--listen", "127.0.0.1:0"], &[("DAEMON_WORKERS", "3")]);
    d.wait_for_workers(3, SOON);
    let file = ConfigFile::new("alias", "workers = 2\n");
    let d = Daemon::serve("lab", &["--config", &file.arg()]);
    d.wait_for_workers(2, SOON);
    let d = Daemon::serve("lab", &["--prefork", "2"]);
    d.wait_for_workers(2, SOON);
    // Both names at once is a mistake, not a race between them.
    let (code, _, err) = run(&[], &[("DAEMON_WORKERS", "3"), ("DAEMON_PREFORK", "2")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("are the same setting"), "{err}");
    let file = ConfigFile::new("alias-twice", "workers = 2\nprefork = 3\n");
    let (code, _, err) = run(&["--config", &file.arg()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("are the same setting"), "{err}");
}

#[test]
fn a_misspelt_environment_variable_is_named_not_ignored() {
    let d = Daemon::start_with_env("lab", &["--listen", "127.0.0.1:0", "--workers", "1"], &[("DAEMON_MAX_SPARES", "2")]);
    let warning = d.wait_for_line("DAEMON_MAX_SPARES", SOON);
    assert!(warning.contains("did you mean DAEMON_MAX_SPARE?"), "{warning}");
    d.wait_for_workers(1, SOON);
}

/// Starts `lab` detached, in `dir`, with `args` (relative paths are the point), and returns it.
fn start_in(dir: &TempDir, args: &[&str], pid_file: &str, log_file: &str) -> Detached {
    let mut all = vec!["start", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut start = command(&example("lab"), &all);
    start.current_dir(&dir.0);
    let out = finish(start);
    assert!(out.status.success(), "start: {out:?}");
    let pid_file = dir.path(pid_file);
    let manager = read_pid(&pid_file).expect("the pid file, in the start directory");
    Detached { example: "lab", pid_file, log: dir.path(log_file), manager }
}

/// Rotates the log file, reopens it (USR1), and makes requests until one of the current
/// workers' lines is in the running log file; returns the request's path.
fn request_line_after_reopen(d: &Detached, dir: &TempDir) -> String {
    let port = d.port();
    std::fs::rename(&d.log, dir.path("rotated.log")).expect("mv the log file away");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.manager), Signal::SIGUSR1).expect("USR1");
    let marker = format!("/after-reload-{}-{}", std::process::id(), d.manager);
    wait_until(SOON, "a new worker's request line in the running log file", || {
        let _ = http_get(port, &marker);
        d.log_text().contains(&format!("path=\"{marker}\""))
    });
    let root_log = std::fs::read_to_string("/rel.log").unwrap_or_default();
    assert!(!root_log.contains(&marker), "a worker wrote to /rel.log: the relative path was taken from /");
    marker
}

/// Waits until every worker is of `generation`, the pool `size` strong.
fn wait_for_generation(d: &Detached, generation: u64, size: usize) {
    wait_until(SOON, &format!("generation {generation} of {size} workers"), || {
        let Ok(status) = serde_json::from_slice::<serde_json::Value>(&d.control(&["status", "--json"]).stdout) else { return false };
        let workers = status["workers"].as_array().cloned().unwrap_or_default();
        workers.len() == size && workers.iter().all(|w| w["generation"].as_u64() == Some(generation))
    });
}

/// A relative path on the command line means the same after a reload as at start, although a
/// detached daemon runs in `/`.
#[test]
fn relative_paths_mean_the_same_after_a_reload() {
    let dir = TempDir::new("relative");
    std::fs::write(dir.path("lab.toml"), "prefork = 2\n").expect("write the config file");
    let d = start_in(&dir, &["--config", "lab.toml", "--pid-file", "rel.pid", "--log-file", "rel.log"], "rel.pid", "rel.log");
    std::fs::write(dir.path("lab.toml"), "prefork = 3\n").expect("rewrite the config file");
    let mut reload = command(&example("lab"), &["reload", "--pid-file", "rel.pid"]);
    reload.current_dir(&dir.0);
    let out = finish(reload);
    assert!(out.status.success(), "reload: {out:?}");
    wait_for_generation(&d, 2, 3);
    request_line_after_reopen(&d, &dir);
}

/// Settings that need a restart keep their running value through a reload, in the manager and in
/// every worker alike, and the manager says which ones it did not apply.
#[test]
fn a_reload_moves_no_setting_that_needs_a_restart_half_way() {
    let dir = TempDir::new("restart-keys");
    std::fs::write(dir.path("lab.toml"), "prefork = 2\nlog_file = \"rel.log\"\npid_file = \"rel.pid\"\n").expect("write the config file");
    let d = start_in(&dir, &["--config", "lab.toml"], "rel.pid", "rel.log");
    // The file now asks for other files (they need a restart) and another size (applied).
    let (other_log, other_pid) = (dir.path("other.log"), dir.path("other.pid"));
    std::fs::write(
        dir.path("lab.toml"),
        format!("prefork = 3\nlog_file = {:?}\npid_file = {:?}\n", other_log.display().to_string(), other_pid.display().to_string()),
    )
    .expect("rewrite the config file");
    let out = d.control(&["reload"]);
    assert!(out.status.success(), "reload: {out:?}");
    wait_for_generation(&d, 2, 3);
    let log = d.log_text();
    for key in ["log_file", "pid_file"] {
        assert!(
            log.lines().any(|l| l.contains("only a restart can apply it") && l.contains(&format!("key={key}"))),
            "no warning about {key}: {log}"
        );
    }
    request_line_after_reopen(&d, &dir);
    assert!(!other_log.exists(), "a worker opened the log file the reload did not apply");
    assert!(!other_pid.exists(), "the pid file moved");
    assert_eq!(read_pid(&d.pid_file), Some(d.manager));
}

#[test]
fn durations_read_the_same_from_every_source() {
    // A bare number is seconds, wherever it comes from.
    let file = ConfigFile::new("bare-seconds", "graceful_timeout = 7\n");
    let (code, out, err) = run(&["--config", &file.arg(), "--print-config"], &[("DAEMON_START_TIMEOUT", "90")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.lines().any(|l| l.starts_with("graceful_timeout = \"7s\"")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("start_timeout = \"90s\"")), "{out}");
    // A fraction is named as one, with the same time in whole milliseconds.
    let rule = "`1.5` is a fraction: durations are whole numbers; write `1500ms` for the same time";
    let (code, _, cli) = run(&["--graceful-timeout", "1.5"], &[]);
    assert_eq!(code, Some(2), "{cli}");
    assert!(cli.contains(&format!("--graceful-timeout 1.5: {rule}")), "{cli}");
    let (code, _, env) = run(&[], &[("DAEMON_GRACEFUL_TIMEOUT", "1.5")]);
    assert_eq!(code, Some(2), "{env}");
    assert!(env.contains(&format!("DAEMON_GRACEFUL_TIMEOUT=1.5: {rule}")), "{env}");
    let file = ConfigFile::new("fraction", "graceful_timeout = 1.5\n");
    let (code, _, from_file) = run(&["--config", &file.arg()], &[]);
    assert_eq!(code, Some(2), "{from_file}");
    assert!(from_file.contains(rule), "{from_file}");
    // And the message for nonsense says what is accepted, bare seconds included.
    let (code, _, err) = run(&["--graceful-timeout", "soon"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("a whole number of seconds (`30`) or a whole number with a unit"), "{err}");
}
