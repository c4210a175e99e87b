//! The benchmarks compare examples/hello with a hand-written tokio server, examples/tokio_baseline,
//! that must serve with the very same handler: the code between the two files' markers is the
//! same, but for hello's `#[daemon::on_accept]` line. (`bench/run --check` checks the same.)

const BEGIN: &str = "// ---- begin hello handler";
const END: &str = "// ---- end hello handler";

fn handler(path: &str) -> String {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let lines: Vec<&str> = text.lines().collect();
    let begin = lines.iter().position(|l| l.starts_with(BEGIN)).unwrap_or_else(|| panic!("{path}: no `{BEGIN}` marker"));
    let first = (begin..lines.len()).find(|&i| !lines[i].starts_with("// ----")).unwrap_or(lines.len());
    let end = (first..lines.len()).find(|&i| lines[i].starts_with(END)).unwrap_or_else(|| panic!("{path}: no `{END}` marker"));
    lines[first..end].iter().filter(|l| l.trim() != "#[daemon::on_accept]").copied().collect::<Vec<_>>().join("\n")
}

#[test]
fn the_baseline_serves_hellos_handler() {
    let hello = handler("examples/hello.rs");
    let baseline = handler("examples/tokio_baseline.rs");
    assert!(hello.lines().count() > 50, "the marked handler is suspiciously short:\n{hello}");
    if hello != baseline {
        let first = hello.lines().zip(baseline.lines()).position(|(a, b)| a != b);
        panic!("examples/tokio_baseline.rs no longer has hello's handler (first difference at marked line {first:?}): copy it again");
    }
}
