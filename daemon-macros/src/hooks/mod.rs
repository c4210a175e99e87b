//! Every attribute on a function other than `#[daemon::main]`: what runs in workers
//! (`on_accept`, `supervised`, `task`), around them (`on_child`, `on_shutdown`), and in the
//! manager (`on_ready`, `on_spawn`, `on_reap`, `on_reload`, `on_exit`). Each keeps the user's
//! function as it is, checks that its shape is one the runtime can call, and registers it with
//! `inventory` through a small wrapper whose call checks the types.

mod check;
mod emit;
mod parse;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;
use crate::paths::Paths;

/// Which attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Child,
    Shutdown,
    Accept,
    Supervised,
    Task,
    Ready,
    Spawn,
    Reap,
    Reload,
    Exit,
}

impl Hook {
    /// `#[daemon::on_child]`, for messages.
    pub fn attr(self) -> &'static str {
        match self {
            Hook::Child => "#[daemon::on_child]",
            Hook::Shutdown => "#[daemon::on_shutdown]",
            Hook::Accept => "#[daemon::on_accept]",
            Hook::Supervised => "#[daemon::supervised]",
            Hook::Task => "#[daemon::task]",
            Hook::Ready => "#[daemon::on_ready]",
            Hook::Spawn => "#[daemon::on_spawn]",
            Hook::Reap => "#[daemon::on_reap]",
            Hook::Reload => "#[daemon::on_reload]",
            Hook::Exit => "#[daemon::on_exit]",
        }
    }

}

pub fn expand(hook: Hook, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::new();
    let (krate, group, pools) = if hook == Hook::Task {
        let parsed = parse::task_args(&mut cx, args);
        (parsed.krate, parsed.values, Vec::new())
    } else {
        let parsed = parse::args(&mut cx, hook, args);
        (parsed.krate, Vec::new(), parsed.pools)
    };
    let Some(item) = parse::item(&mut cx, item.clone()) else {
        return with_errors(cx, item);
    };
    let checked = match hook {
        Hook::Child | Hook::Shutdown | Hook::Accept => check::signature(&mut cx, hook, &item),
        _ => check::other_signature(&mut cx, hook, &item),
    };
    if let (Hook::Task, Some((f, _))) = (hook, &checked) {
        parse::check_group(&mut cx, &f.sig.ident, &group);
    }
    match checked {
        Some((f, shape)) if !cx.has_errors() => emit::expand(&Paths::new(krate), hook, shape, f, &group, &pools),
        // The function stays, so that code calling it still compiles; it is not registered, so
        // nothing uses it: no dead-code warning on top of the real error.
        _ => with_errors(cx, quote!(#[allow(dead_code)] #item)),
    }
}

fn with_errors(cx: Ctxt, output: TokenStream) -> TokenStream {
    let errors = cx.into_error().map(|e| e.to_compile_error());
    quote!(#errors #output)
}
