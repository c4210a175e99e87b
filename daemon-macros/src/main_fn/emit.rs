//! The expansion of `#[daemon::main]`:
//!
//! ```text
//! fn main() {
//!     ::daemon::__private::run(
//!         &[(::daemon::__private::Key::Prefork, ::daemon::__private::Attr::Count(4)), ...],
//!         ::daemon::__private::Package { name: env!("CARGO_PKG_NAME"), version: ... },
//!         move || -> ReturnType { body },
//!     )
//! }
//! ```
//!
//! `run` never returns: it checks the command line against the attribute's values, binds the
//! listeners, calls the closure (the user's body, once, in the manager) and runs the pool.

use daemon_config::{Key, Value};
use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::{AttrStyle, Item, ItemFn, ReturnType};

use crate::paths::Paths;

pub fn expand(paths: &Paths, values: &[(Key, Value)], main: &ItemFn) -> TokenStream {
    // Inner attributes (`#![allow(...)]` at the top of the body) become the new fn's own, where
    // they keep their meaning; the closure's block could not hold them.
    let attrs = main.attrs.iter().map(|a| {
        let mut a = a.clone();
        a.style = AttrStyle::Outer;
        a
    });
    let vis = &main.vis;
    let ident = &main.sig.ident;
    let body = &main.block;
    let entries = values.iter().map(|(key, value)| {
        let key = paths.key(*key);
        let value = attr(paths, value);
        quote!((#key, #value))
    });
    let (run, package, env) = (paths.run(), paths.package(), paths.env());
    let output = match &main.sig.output {
        ReturnType::Default => quote!(),
        ReturnType::Type(arrow, ty) => quote!(#arrow #ty),
    };
    // A return type `run` cannot take (an error type without `Debug`) breaks `run`'s bound,
    // which the compiler reports at the call: give the call (its path and parentheses) the span
    // of the user's return type.
    let at = match &main.sig.output {
        ReturnType::Type(_, ty) => first_span(ty),
        ReturnType::Default => Span::call_site(),
    };
    // `fn main(settings: Settings)`: the program's own settings, resolved before the body runs.
    let settings = main.sig.inputs.first().and_then(|a| match a {
        syn::FnArg::Typed(t) => Some((&t.pat, &t.ty)),
        syn::FnArg::Receiver(_) => None,
    });
    let Some((pat, ty)) = settings else {
        let run = respan(run, at);
        let call = quote_spanned! {at=>
            #run(
                &[#(#entries),*],
                #package {
                    name: #env("CARGO_PKG_NAME"),
                    version: #env("CARGO_PKG_VERSION"),
                },
                move || #output #body,
            )
        };
        return quote! {
            #(#attrs)*
            #vis fn #ident() {
                #call
            }
        };
    };
    let run = respan(paths.run_with_settings(), at);
    let marker = paths.program_settings();
    // The settings type's bounds (clap::Args, FromArgMatches, Clone, Send, Sync) are checked at
    // this impl, which points at the type.
    let marker_impl = quote_spanned! {first_span(ty)=>
        impl #marker for #ty {}
    };
    let call = quote_spanned! {at=>
        #run::<#ty, _, _>(
            &[#(#entries),*],
            #package {
                name: #env("CARGO_PKG_NAME"),
                version: #env("CARGO_PKG_VERSION"),
            },
            move |#pat: #ty| #output #body,
        )
    };
    quote! {
        #marker_impl
        #(#attrs)*
        #vis fn #ident() {
            #call
        }
    }
}

/// `tokens` with every token at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(g) = &tree {
                let mut group = Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tree = TokenTree::Group(group);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}

fn first_span(tokens: &impl ToTokens) -> Span {
    let span = tokens
        .to_token_stream()
        .into_iter()
        .next()
        .map_or(Span::call_site(), |t| t.span());
    Span::call_site().located_at(span)
}

/// A value as the runtime's `Attr`, which holds only `'static` data.
pub fn attr(paths: &Paths, value: &Value) -> TokenStream {
    let attr = paths.attr();
    match value {
        Value::Count(n) => {
            let n = Literal::u64_unsuffixed(*n);
            quote!(#attr::Count(#n))
        }
        Value::Flag(b) => quote!(#attr::Flag(#b)),
        Value::Addresses(list) => quote!(#attr::Addresses(&[#(#list),*])),
        Value::Duration(d) => {
            // The rule book bounds durations to a day, far below u64 milliseconds.
            let ms = Literal::u64_unsuffixed(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            quote!(#attr::Duration(#ms))
        }
        Value::Size(n) => {
            let n = Literal::u64_unsuffixed(*n);
            quote!(#attr::Size(#n))
        }
        Value::Text(t) => quote!(#attr::Text(#t)),
    }
}

/// What to emit when the attribute has errors: the compile errors alone should be what the user
/// sees, so the program must otherwise compile. A `fn main` with a signature the runtime can take
/// is kept as it was (so errors in its body still show); any other gets a stub `fn main`, and the
/// item it replaced is kept (unless it was a `fn main` of its own) without a dead-code warning.
/// A `fn main` that takes the program's settings is kept under another name (its body's errors
/// still show), beside a stub: rustc's own "`main` has the wrong type" would only repeat the
/// attribute's error.
pub fn fallback(item: &Item, usable_main: bool) -> TokenStream {
    match item {
        Item::Fn(f) if usable_main && f.sig.inputs.is_empty() => f.to_token_stream(),
        Item::Fn(f) if usable_main => {
            let mut kept = f.clone();
            kept.sig.ident = proc_macro2::Ident::new("__daemon_main_not_started", f.sig.ident.span());
            quote! {
                #[allow(dead_code, non_snake_case)]
                #kept
                fn main() {}
            }
        }
        Item::Fn(f) if f.sig.ident == "main" => quote!(
            fn main() {}
        ),
        other => quote! {
            #[allow(dead_code)]
            #other
            fn main() {}
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use syn::parse_quote;

    #[test]
    fn expands_to_a_call_of_run() {
        let main: ItemFn = parse_quote! {
            /// Docs stay.
            fn main() -> Result<(), String> { #![allow(unused)] Ok(()) }
        };
        let values = [
            (Key::Prefork, Value::Count(4)),
            (Key::Detach, Value::Flag(true)),
            (Key::Listen, Value::Addresses(vec!["127.0.0.1:1".into()])),
            (
                Key::GracefulTimeout,
                Value::Duration(Duration::from_secs(2)),
            ),
        ];
        let got = expand(&Paths::new(None), &values, &main).to_string();
        let want = quote! {
            #[doc = r" Docs stay."]
            #[allow(unused)]
            fn main() {
                ::daemon::__private::run(
                    &[
                        (::daemon::__private::Key::Prefork, ::daemon::__private::Attr::Count(4)),
                        (::daemon::__private::Key::Detach, ::daemon::__private::Attr::Flag(true)),
                        (::daemon::__private::Key::Listen, ::daemon::__private::Attr::Addresses(&["127.0.0.1:1"])),
                        (::daemon::__private::Key::GracefulTimeout, ::daemon::__private::Attr::Duration(2000))
                    ],
                    ::daemon::__private::Package {
                        name: ::core::env!("CARGO_PKG_NAME"),
                        version: ::core::env!("CARGO_PKG_VERSION"),
                    },
                    move || -> Result<(), String> { Ok(()) },
                )
            }
        }
        .to_string();
        assert_eq!(got, want);
    }

    #[test]
    fn the_crate_path_can_be_changed() {
        let main: ItemFn = parse_quote!(
            fn main() {}
        );
        let got = expand(&Paths::new(Some(parse_quote!(my::daemon))), &[], &main).to_string();
        assert!(got.contains("my :: daemon :: __private :: run"), "{got}");
        // Every runtime path follows the override.
        assert_eq!(
            got.matches("__private").count(),
            got.matches("my :: daemon :: __private").count()
        );
    }

    #[test]
    fn a_broken_item_leaves_one_main() {
        let s: Item = parse_quote!(
            struct S;
        );
        assert!(fallback(&s, false).to_string().ends_with("fn main () { }"));
        let not_main: Item = parse_quote!(
            fn start() {}
        );
        let out = fallback(&not_main, false).to_string();
        assert!(out.contains("fn start") && out.contains("fn main"));
        let async_main: Item = parse_quote!(
            async fn main() {
                x.await
            }
        );
        assert_eq!(fallback(&async_main, false).to_string(), "fn main () { }");
    }
}
