//! The generated binary's command line: a mistake stops the start with status 2 and a message
//! that names the flag, the value and the rule.

mod support;

use support::Daemon;

/// Runs `lab` with `args` (listening on a free port, should it start at all) and returns its exit
/// code, standard output and standard error.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    Daemon::run_to_exit("lab", args, &[])
}

#[test]
fn a_bad_value_names_the_flag_the_value_and_the_rule() {
    let (code, _, err) = run(&["--workers", "0"]);
    assert_eq!(code, Some(2), "--workers 0: {err}");
    assert!(err.contains("--workers 0"), "the flag and the value are not named: {err}");
    assert!(err.contains("between 1 and 4096"), "the rule is not named: {err}");
    assert!(!err.contains("listening"), "it started before it refused: {err}");

    let (code, _, err) = run(&["--graceful-timeout", "soon"]);
    assert_eq!(code, Some(2), "--graceful-timeout soon: {err}");
    assert!(err.contains("--graceful-timeout soon"), "{err}");

    let (code, _, err) = run(&["--listen", "nowhere"]);
    assert_eq!(code, Some(2), "--listen nowhere: {err}");
    assert!(err.contains("nowhere") && err.contains("IP:PORT"), "{err}");
}

#[test]
fn an_unknown_flag_gets_a_suggestion() {
    let (code, _, err) = run(&["--wrokers", "3"]);
    assert_eq!(code, Some(2), "--wrokers 3: {err}");
    assert!(err.contains("--wrokers"), "the unknown flag is not named: {err}");
    assert!(err.contains("--workers"), "no suggestion of --workers: {err}");
}

#[test]
fn help_and_version_exit_zero_without_starting() {
    let (code, out, err) = run(&["--help"]);
    assert_eq!(code, Some(0), "--help: {err}");
    for flag in
        ["--workers", "--min-spare", "--max-spare", "--max-children", "--requests", "--listen"]
    {
        assert!(out.contains(flag), "--help does not list {flag}: {out}");
    }
    assert!(!err.contains("listening"), "--help started the daemon: {err}");

    let (code, out, err) = run(&["--version"]);
    assert_eq!(code, Some(0), "--version: {err}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "--version printed {out:?}");
}

/// Runs `lab` with extra environment variables given as raw bytes.
fn run_with_raw_env(args: &[&str], env: &[(&[u8], &[u8])]) -> std::process::Output {
    use std::os::unix::ffi::OsStrExt;
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut command = support::command(&support::example("lab"), &all);
    for (name, value) in env {
        command.env(std::ffi::OsStr::from_bytes(name), std::ffi::OsStr::from_bytes(value));
    }
    support::finish(command)
}

#[test]
fn an_environment_that_is_not_utf8_is_judged_only_where_it_is_ours() {
    // Somebody else's variable, in any encoding, is not our business.
    let out = run_with_raw_env(&["--print-config"], &[(b"FOO", b"\xff\xfe")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(support::text(&out.stdout).contains("prefork = "), "{out:?}");
    // One of ours is an error that names it.
    for name in [&b"DAEMON_PREFORK"[..], b"DAEMON_CONFIG"] {
        let out = run_with_raw_env(&["--print-config"], &[(name, b"4\xff")]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = support::text(&out.stderr);
        let shown = String::from_utf8_lossy(name);
        assert!(err.contains(&format!("{shown}=4\u{fffd}: not valid UTF-8")), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
