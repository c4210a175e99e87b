//! Reading `#[daemon::main]`'s arguments and item, without judging them.

use proc_macro2::TokenStream;

use crate::args::{self, Arg};
use crate::ctxt::Ctxt;

/// The arguments, or none after a syntax error (which is recorded).
pub fn args(cx: &mut Ctxt, tokens: TokenStream) -> Vec<Arg> {
    match args::parse(tokens) {
        Ok(args) => args,
        Err(e) => {
            cx.syn_error(e);
            Vec::new()
        }
    }
}

/// The item the attribute is on. Any item parses, so that "not a function" gets its own message.
pub fn item(cx: &mut Ctxt, tokens: TokenStream) -> Option<syn::Item> {
    match syn::parse2(tokens) {
        Ok(item) => Some(item),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    }
}
