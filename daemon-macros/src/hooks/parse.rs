//! Reading a hook attribute's arguments (none, but `crate = "..."`) and its item.

use daemon_config::{resolve_group, suggest, GroupGiven, GroupKey, Origin, Value, GROUP_SETTINGS, SETTINGS};
use proc_macro2::TokenStream;

use super::Hook;
use crate::args;
use crate::ctxt::Ctxt;

/// A hook's arguments: `crate = "..."` for any, and for `on_child` the pools it runs in.
#[derive(Default)]
pub struct HookArgs {
    pub krate: Option<syn::Path>,
    /// `pools = ["main", "jobs"]`: the pools whose workers run the hook (none given: all).
    pub pools: Vec<String>,
}

/// The `crate = "..."` path, if given, and `on_child`'s `pools`. Anything else is an error.
pub fn args(cx: &mut Ctxt, hook: Hook, tokens: TokenStream) -> HookArgs {
    let attr = hook.attr();
    let mut parsed = HookArgs::default();
    if tokens.is_empty() {
        return parsed;
    }
    let takes = if hook == Hook::Child { "takes only `pools = [...]` (and `crate`)" } else { "takes no arguments" };
    let list = match args::parse(tokens.clone()) {
        Ok(list) => list,
        Err(_) => {
            let fix = if hook == Hook::Child { "write `pools = [\"main\"]`" } else { "remove them" };
            cx.error_spanned_by(tokens, format!("{attr} {takes}: {fix}"));
            return parsed;
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for arg in &list {
        let name = arg.name();
        if seen.contains(&name) {
            cx.error_spanned_by(arg.tokens(), format!("`{name}` is set twice: remove one of them"));
            continue;
        }
        seen.push(name.clone());
        if name == "crate" {
            parsed.krate = args::crate_path(cx, arg);
        } else if name == "pools" && hook == Hook::Child {
            parsed.pools = pools(cx, arg);
        } else if SETTINGS.iter().any(|s| s.name == name) {
            cx.error_spanned_by(
                arg.tokens(),
                format!(
                    "{attr} {takes}: remove `{name}` from here and set it in \
                     #[daemon::main({name} = ...)]"
                ),
            );
        } else if hook == Hook::Child {
            let hint = match suggest(&name, ["pools", "crate"]) {
                Some(near) => format!("did you mean `{near}`?"),
                None => "remove it".to_string(),
            };
            cx.error_spanned_by(&arg.key, format!("unknown key `{name}`: {attr} {takes}; {hint}"));
        } else {
            cx.error_spanned_by(
                arg.tokens(),
                format!("{attr} takes no arguments: remove `{name}` (only `crate = \"...\"` is accepted)"),
            );
        }
    }
    parsed
}

/// `pools = ["main", "jobs"]`: pool names as the runtime spells them, each at most once.
fn pools(cx: &mut Ctxt, arg: &args::Arg) -> Vec<String> {
    const EXAMPLE: &str = "`pools = [\"main\"]` (`main` is the on_accept pool, `supervised` the supervised worker, a task group goes by its name)";
    let Some(syn::Expr::Array(array)) = &arg.value else {
        cx.error_spanned_by(arg.value_tokens(), format!("`pools` takes a list of pool names: write {EXAMPLE}"));
        return Vec::new();
    };
    if array.elems.is_empty() {
        cx.error_spanned_by(array, "`pools` is empty, so no worker would run this hook: name a pool, or remove `pools` to run it in every worker");
        return Vec::new();
    }
    let mut names: Vec<String> = Vec::new();
    for elem in &array.elems {
        let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = elem else {
            cx.error_spanned_by(elem, format!("a pool is named by a string: write {EXAMPLE}"));
            continue;
        };
        let name = s.value();
        if names.contains(&name) {
            cx.error_spanned_by(s, format!("`{name}` is listed twice: remove one"));
            continue;
        }
        // `main` and `supervised` are the pools no task group may be named.
        if !daemon_config::RESERVED_POOL_NAMES.contains(&name.as_str()) {
            if let Err(problem) = daemon_config::check_group_name(&name) {
                cx.error_spanned_by(s, format!("{problem}: no pool can have this name"));
                continue;
            }
        }
        names.push(name);
    }
    names
}

pub use crate::item::parse as item;

/// `#[daemon::task(...)]`'s arguments: the group's keys, each checked on its own.
#[derive(Default)]
pub struct TaskArgs {
    pub krate: Option<syn::Path>,
    /// The accepted values, with the tokens they were written as.
    pub values: Vec<(GroupKey, Value, TokenStream)>,
}

pub fn task_args(cx: &mut Ctxt, tokens: TokenStream) -> TaskArgs {
    let mut parsed = TaskArgs::default();
    let list = match args::parse(tokens) {
        Ok(list) => list,
        Err(e) => {
            cx.syn_error(e);
            return parsed;
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for arg in &list {
        let name = arg.name();
        if seen.contains(&name) {
            cx.error_spanned_by(arg.tokens(), format!("`{name}` is set twice: remove one of them"));
            continue;
        }
        seen.push(name.clone());
        if name == "crate" {
            parsed.krate = args::crate_path(cx, arg);
            continue;
        }
        let Some(setting) = GROUP_SETTINGS.iter().find(|s| s.name == name) else {
            let message = if matches!(name.as_str(), "listen" | "clients" | "requests" | "prefork" | "min_spare" | "max_spare" | "max_children" | "postfork") {
                format!(
                    "a task group has no listeners and serves no connections: remove `{name}` \
                     (a group takes {})",
                    GROUP_SETTINGS.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ")
                )
            } else if SETTINGS.iter().any(|s| s.name == name) {
                format!("`{name}` is the daemon's, not a task group's: set it in #[daemon::main({name} = ...)]")
            } else {
                let near = suggest(&name, GROUP_SETTINGS.iter().map(|s| s.name).chain(["crate"]));
                match near {
                    Some(near) => format!("unknown key `{name}`; did you mean `{near}`?"),
                    None => format!(
                        "unknown key `{name}`: #[daemon::task] takes {}, and `crate`",
                        GROUP_SETTINGS.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ")
                    ),
                }
            };
            cx.error_spanned_by(&arg.key, message);
            continue;
        };
        let Some(value) = crate::main_fn::check::value_of(cx, setting, arg) else { continue };
        match setting.check(&value) {
            Ok(()) => parsed.values.push((setting.key, value, arg.value_tokens())),
            Err(message) => cx.error_spanned_by(arg.value_tokens(), message),
        }
    }
    parsed
}

/// The relations between a group's keys, as the runtime checks them (`resolve_group`), each
/// problem at the value that breaks it.
pub fn check_group(cx: &mut Ctxt, name: &syn::Ident, values: &[(GroupKey, Value, TokenStream)]) {
    let mut given = GroupGiven::default();
    for (key, value, _) in values {
        given.set(*key, value.clone(), Origin::Attribute);
    }
    let group = name.to_string();
    if let Err(problem) = daemon_config::check_group_name(&group) {
        cx.error_spanned_by(name, &problem);
    }
    if let Err(problems) = resolve_group(&group, &given) {
        for problem in problems {
            // The key the problem names first (as a whole word: `workers` is not in
            // `max_workers`) is where it is reported.
            let at = values
                .iter()
                .filter_map(|(k, _, t)| first_word(&problem, daemon_config::group_setting(*k).name).map(|at| (at, t)))
                .min_by_key(|(at, _)| *at)
                .map(|(_, t)| t.clone());
            // The rule book names the place (`#[daemon::task(...)] on x: ...`); here the span
            // does.
            let message = match problem.split_once(": ") {
                Some((place, rest)) if place.starts_with("#[daemon::task(") => rest.to_string(),
                _ => problem.clone(),
            };
            match at {
                Some(tokens) => cx.error_spanned_by(tokens, &message),
                None => cx.error_spanned_by(name, &message),
            }
        }
    }
}

/// Where `word` first appears in `text` as a word of its own (not inside a longer name).
fn first_word(text: &str, word: &str) -> Option<usize> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().next_back().map_or(true, |c| !is_name(c));
        let after = text[i + word.len()..].chars().next().map_or(true, |c| !is_name(c));
        before && after
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn a_key_is_found_as_a_word() {
        let problem = "max_workers (2) is below workers (4)";
        assert_eq!(first_word(problem, "max_workers"), Some(0));
        assert_eq!(first_word(problem, "workers"), Some(25));
        assert_eq!(first_word("no such", "workers"), None);
    }

    fn errors(hook: Hook, tokens: TokenStream) -> (bool, Vec<String>) {
        let mut cx = Ctxt::new();
        let parsed = args(&mut cx, hook, tokens);
        (parsed.krate.is_some(), cx.messages())
    }

    #[test]
    fn on_child_takes_the_pools_it_runs_in() {
        let mut cx = Ctxt::new();
        let parsed = args(&mut cx, Hook::Child, quote!(pools = ["main", "jobs"]));
        assert_eq!((parsed.pools, cx.messages()), (vec!["main".to_string(), "jobs".to_string()], vec![]));
        let (_, e) = errors(Hook::Child, quote!(pools = []));
        assert!(e[0].contains("`pools` is empty"), "{e:?}");
        let (_, e) = errors(Hook::Child, quote!(pools = "main"));
        assert!(e[0].contains("`pools` takes a list of pool names"), "{e:?}");
        let (_, e) = errors(Hook::Child, quote!(pools = ["a b"]));
        assert!(e[0].contains("is not allowed") && e[0].contains("no pool can have this name"), "{e:?}");
        let (_, e) = errors(Hook::Child, quote!(pools = ["x", "x"]));
        assert_eq!(e, ["`x` is listed twice: remove one"]);
        let (_, e) = errors(Hook::Child, quote!(pool = ["x"]));
        assert!(e[0].starts_with("unknown key `pool`") && e[0].contains("did you mean `pools`?"), "{e:?}");
        let (_, e) = errors(Hook::Shutdown, quote!(pools = ["x"]));
        assert!(e[0].starts_with("#[daemon::on_shutdown] takes no arguments"), "{e:?}");
    }

    #[test]
    fn only_the_crate_path_is_accepted() {
        assert_eq!(errors(Hook::Child, quote!()), (false, vec![]));
        assert_eq!(
            errors(Hook::Accept, quote!(crate = "daemon")),
            (true, vec![])
        );
        let (_, e) = errors(Hook::Child, quote!(prefork = 4));
        assert_eq!(
            e,
            ["#[daemon::on_child] takes only `pools = [...]` (and `crate`): remove `prefork` from here and set it in #[daemon::main(prefork = ...)]"]
        );
        let (_, e) = errors(Hook::Shutdown, quote!(first));
        assert!(
            e[0].starts_with("#[daemon::on_shutdown] takes no arguments: remove `first`"),
            "{e:?}"
        );
        let (_, e) = errors(Hook::Accept, quote!("x", 3));
        assert_eq!(e, ["#[daemon::on_accept] takes no arguments: remove them"]);
    }
}
