//! `#[daemon::main]`'s documentation lists every key from the rule book, as README does, so
//! neither can drift from the rules the attribute checks.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let Some(out) = std::env::var_os("OUT_DIR") else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    let path = std::path::Path::new(&out).join("keys.md");
    if let Err(e) = std::fs::write(&path, daemon_config::reference_table()) {
        panic!("cannot write {}: {e}", path.display());
    }
}
