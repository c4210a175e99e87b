//! README's "Getting started" and "A daemon in twenty lines", as a new user copies them: the
//! Cargo.toml lines and the program, in a fresh crate outside this workspace that depends on the
//! facade by path, built and run. Beside it, the signature example with a hook named `child`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// The code blocks of `lang` in the README section whose heading is `heading`.
fn blocks(readme: &str, heading: &str, lang: &str) -> Vec<String> {
    let start = readme.find(&format!("\n## {heading}\n")).unwrap_or_else(|| panic!("README has no section `## {heading}`"));
    let rest = &readme[start + heading.len() + 5..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let fence = format!("```{lang}\n");
    section
        .split(&fence)
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap_or_default().to_string() + "\n")
        .collect()
}

/// The signature example, with a hook named like the expansion's own parameter.
const CARD: &str = r#"
#[daemon::main(prefork = 4, max_spare = 3, detach)]
fn main() {}

#[daemon::on_child]
fn child(child: &daemon::Child) {
    daemon::tracing::info!(slot = child.slot(), "card worker up");
}

#[daemon::on_accept]
async fn serve(mut conn: daemon::Connection) -> std::io::Result<()> {
    use daemon::prelude::*;
    conn.write_all(b"card\n").await
}
"#;

/// README's "HTTP with axum": its Cargo.toml lines and its program, in a fresh crate, built with
/// exactly the features they name, then run and asked.
#[test]
fn readme_http_example_builds_with_the_features_it_names() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(workspace.join("README.md")).expect("README.md");
    let toml = blocks(&readme, "HTTP with axum", "toml");
    let program = blocks(&readme, "HTTP with axum", "rust");
    assert_eq!((toml.len(), program.len()), (1, 1), "one Cargo.toml block and one program in HTTP with axum");
    let dependencies = toml[0].replace("path = \"../daemon\"", &format!("path = {:?}", workspace.display().to_string()));
    assert_ne!(dependencies, toml[0], "README's dependency line no longer reads `path = \"../daemon\"`");
    let dir = TempDir::new("readme-http");
    let manifest = format!(
        "[package]\nname = \"readme-http\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n{dependencies}\n[workspace]\n"
    );
    std::fs::create_dir_all(dir.path("src")).expect("src/");
    std::fs::write(dir.path("Cargo.toml"), manifest).expect("Cargo.toml");
    std::fs::write(dir.path("src/main.rs"), &program[0]).expect("src/main.rs");
    std::fs::copy(workspace.join("Cargo.lock"), dir.path("Cargo.lock")).expect("Cargo.lock");
    let bins = build(&dir.0);
    let mut d = Daemon::serve_program(&bins.join("readme-http"), "readme-http", &["--foreground", "--workers", "2"]);
    d.wait_for_line("pool ready", SOON);
    let (code, body) = d.get("/");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(v["hello"], "world");
    assert!(d.workers().contains(&(v["worker"].as_i64().unwrap_or(0) as i32)), "answered by a worker: {body}");
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(SOON).success());
}

/// Builds the crate in `dir`; returns the path of its target directory's binaries.
fn build(dir: &Path) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Kept between runs, so only the first build compiles the dependencies.
    let target = workspace.join("target").join("readme-crate");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--bins", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "README's example does not build in a fresh crate:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug")
}

#[test]
fn readme_getting_started_builds_and_runs_in_a_fresh_crate() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(workspace.join("README.md")).expect("README.md");
    let toml = blocks(&readme, "Getting started", "toml");
    assert_eq!(toml.len(), 1, "one Cargo.toml block in Getting started: {toml:?}");
    let program = blocks(&readme, "A daemon in twenty lines", "rust");
    assert_eq!(program.len(), 1, "one program in A daemon in twenty lines: {program:?}");
    // The dependency as README writes it, pointed at this checkout.
    let dependency = toml[0].replace("path = \"../daemon\"", &format!("path = {:?}", workspace.display().to_string()));
    assert_ne!(dependency, toml[0], "README's dependency line no longer reads `path = \"../daemon\"`: {}", toml[0]);

    let dir = TempDir::new("readme-crate");
    let manifest = format!(
        "[package]\nname = \"readme-daemon\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [[bin]]\nname = \"readme-daemon\"\npath = \"src/main.rs\"\n\n[[bin]]\nname = \"card\"\npath = \"src/card.rs\"\n\n\
         {dependency}\n[workspace]\n"
    );
    std::fs::create_dir_all(dir.path("src")).expect("src/");
    std::fs::write(dir.path("Cargo.toml"), manifest).expect("Cargo.toml");
    std::fs::write(dir.path("src/main.rs"), &program[0]).expect("src/main.rs");
    std::fs::write(dir.path("src/card.rs"), CARD).expect("src/card.rs");
    // The versions this workspace was tested with.
    std::fs::copy(workspace.join("Cargo.lock"), dir.path("Cargo.lock")).expect("Cargo.lock");
    let bins = build(&dir.0);

    for (name, answer, up) in [("readme-daemon", "hello\n", "worker up"), ("card", "card\n", "card worker up")] {
        let mut d = Daemon::serve_program(&bins.join(name), name, &["--foreground", "--workers", "2"]);
        d.wait_for_line("pool ready", SOON);
        d.wait_for_line(up, SOON);
        let mut conn = d.connect();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut conn, &mut got).expect("the answer");
        assert_eq!(got, answer, "{name}");
        d.signal(Signal::SIGTERM);
        assert!(d.wait_exit(SOON).success(), "{name} exits 0 after TERM");
    }
}
