//! Reading a hook attribute's arguments (none, but `crate = "..."`) and its item.

use daemon_config::SETTINGS;
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
