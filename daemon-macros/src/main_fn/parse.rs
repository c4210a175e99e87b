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

pub use crate::item::parse as item;
