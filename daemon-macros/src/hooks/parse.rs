//! Reading a hook attribute's arguments (none, but `crate = "..."`) and its item.

use daemon_config::{resolve_group, suggest, GroupGiven, GroupKey, Origin, Value, GROUP_SETTINGS, SETTINGS};
use proc_macro2::TokenStream;

use super::Hook;
use crate::args;
use crate::ctxt::Ctxt;

/// The `crate = "..."` path, if given. Anything else is an error: hooks take no arguments.
pub fn args(cx: &mut Ctxt, hook: Hook, tokens: TokenStream) -> Option<syn::Path> {
    let attr = hook.attr();
    if tokens.is_empty() {
        return None;
    }
    let list = match args::parse(tokens.clone()) {
        Ok(list) => list,
        Err(_) => {
            cx.error_spanned_by(tokens, format!("{attr} takes no arguments: remove them"));
            return None;
        }
    };
    let mut krate = None;
    for arg in &list {
        let name = arg.name();
        if name == "crate" {
            krate = args::crate_path(cx, arg);
        } else if SETTINGS.iter().any(|s| s.name == name) {
            cx.error_spanned_by(
                arg.tokens(),
                format!(
                    "{attr} takes no arguments: remove `{name}` from here and set it in \
                     #[daemon::main({name} = ...)]"
                ),
            );
        } else {
            cx.error_spanned_by(
                arg.tokens(),
                format!("{attr} takes no arguments: remove `{name}` (only `crate = \"...\"` is accepted)"),
            );
        }
    }
    krate
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
            // The first key the problem names is where it is reported.
            let at = values
                .iter()
                .filter(|(k, _, _)| problem.contains(daemon_config::group_setting(*k).name))
                .map(|(_, _, t)| t.clone())
                .next();
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

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(hook: Hook, tokens: TokenStream) -> (bool, Vec<String>) {
        let mut cx = Ctxt::new();
        let krate = args(&mut cx, hook, tokens);
        (krate.is_some(), cx.messages())
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
            ["#[daemon::on_child] takes no arguments: remove `prefork` from here and set it in #[daemon::main(prefork = ...)]"]
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
