//! README's table of settings is the rule book's, word for word.
//! To update README after changing the rule book: `DAEMON_BLESS=1 cargo test -p daemon-config`.

const START: &str = "<!-- settings-reference:start (generated from the rule book; see daemon-config/tests/reference.rs) -->\n";
const END: &str = "<!-- settings-reference:end -->";

#[test]
fn readme_shows_the_rule_book() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md next to the workspace");
    let (Some(a), Some(b)) = (readme.find(START), readme.find(END)) else {
        panic!("README.md lacks the markers of the settings reference:\n{START}{END}");
    };
    let shown = &readme[a + START.len()..b];
    let expected = daemon_config::reference_table();
    if shown != expected {
        if std::env::var_os("DAEMON_BLESS").is_some() {
            let updated = format!("{}{START}{expected}{}", &readme[..a], &readme[b..]);
            std::fs::write(&path, updated).expect("write README.md");
            return;
        }
        panic!("README.md's settings reference differs from the rule book; run `DAEMON_BLESS=1 cargo test -p daemon-config`.\nExpected:\n{expected}");
    }
}
