//! Compile-time diagnostics of the attributes: every `ui-tests/fail/*.rs` must fail to compile
//! with exactly the errors in its `.stderr`, and every `ui-tests/pass/*.rs` must compile and run.
//!
//! Regenerate the `.stderr` files after changing a message with
//! `TRYBUILD=overwrite cargo test --test ui`, then read each of them.

#[test]
fn ui() {
    // trybuild runs each pass case. They exit before the manager forks, but only after the
    // runtime has read the environment and bound the listeners, so give them an environment of
    // their own: no DAEMON_* variable from the developer's shell, a free port (any port the
    // attribute names could be busy), and no detaching.
    let inherited: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("DAEMON_"))
        .collect();
    for name in inherited {
        std::env::remove_var(name);
    }
    std::env::set_var("DAEMON_LISTEN", "127.0.0.1:0");
    std::env::set_var("DAEMON_FOREGROUND", "true");

    let t = trybuild::TestCases::new();
    t.compile_fail("ui-tests/fail/*.rs");
    t.pass("ui-tests/pass/*.rs");
}
