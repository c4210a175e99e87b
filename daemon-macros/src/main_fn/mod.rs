//! `#[daemon::main(...)]`: parse the attribute and the item, check both against the rule book,
//! and emit a `fn main` that hands the checked settings and the user's body to the runtime.

pub(crate) mod check;
pub(crate) mod emit;
mod parse;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ctxt::Ctxt;
use crate::paths::Paths;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::new();
    let args = parse::args(&mut cx, args);
    let Some(item) = parse::item(&mut cx, item.clone()) else {
        // syn could not read an item rustc accepted: leave it as it was.
        return with_errors(cx, item);
    };
    let settings = check::args(&mut cx, &args);
    let main = check::signature(&mut cx, &item);
    match main {
        Some(main) if !cx.has_errors() => {
            emit::expand(&Paths::new(settings.krate), &settings.values, main)
        }
        _ => with_errors(cx, emit::fallback(&item, main.is_some())),
    }
}

fn with_errors(cx: Ctxt, output: TokenStream) -> TokenStream {
    let errors = cx.into_error().map(|e| e.to_compile_error());
    quote!(#errors #output)
}
