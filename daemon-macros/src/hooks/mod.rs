//! `#[daemon::on_child]`, `#[daemon::on_shutdown]` and `#[daemon::on_accept]`: keep the user's
//! function as it is, check that its shape is one the runtime can call, and register it with
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
}

impl Hook {
    /// `#[daemon::on_child]`, for messages.
    pub fn attr(self) -> &'static str {
        match self {
            Hook::Child => "#[daemon::on_child]",
            Hook::Shutdown => "#[daemon::on_shutdown]",
            Hook::Accept => "#[daemon::on_accept]",
        }
    }
}

pub fn expand(hook: Hook, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::new();
    let krate = parse::args(&mut cx, hook, args);
    let Some(item) = parse::item(&mut cx, item.clone()) else {
        return with_errors(cx, item);
    };
    match check::signature(&mut cx, hook, &item) {
        Some((f, shape)) if !cx.has_errors() => emit::expand(&Paths::new(krate), hook, shape, f),
        // The function stays, so that code calling it still compiles; it is not registered, so
        // nothing uses it: no dead-code warning on top of the real error.
        _ => with_errors(cx, quote!(#[allow(dead_code)] #item)),
    }
}

fn with_errors(cx: Ctxt, output: TokenStream) -> TokenStream {
    let errors = cx.into_error().map(|e| e.to_compile_error());
    quote!(#errors #output)
}
