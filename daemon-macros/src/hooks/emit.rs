//! The expansion of a hook: the user's function, unchanged, and its registration:
//!
//! ```text
//! fn init(child: &daemon::Child) { ... }
//! const _: () = {
//!     const __daemon_on_child_init: fn(&::daemon::__private::Child) -> Result<(), String> =
//!         |child| ::daemon::__private::call_child_unit(init, child);
//!     ::daemon::__private::inventory::submit! {
//!         ::daemon::__private::OnChild::new("init", ::core::module_path!(), &[], __daemon_on_child_init)
//!     }
//! };
//! ```
//!
//! An `on_child` hook that returns a value goes through `call_child_state` (the worker keeps
//! it), one returning a `Result` through `call_child_result` (`Err` fails the worker's start);
//! `pools = [...]` is the slice before the pointer.
//!
//! The closure has the runtime's fixed `fn` pointer type; the `call_*` function in it takes the
//! user's function through a trait bound (`ChildHook`, `AsyncAcceptHandler`,
//! `SyncAcceptHandler`) whose `on_unimplemented` message names the signature to write. That
//! call carries the span of the user's function name, so a wrong parameter or return type is
//! reported there, not at the attribute.
//!
//! Hygiene: nothing generated can capture, shadow or collide with the user's names. Every path is
//! absolute (`::daemon::...`, `::core::...`). The closure's parameter has a mixed-site span, so
//! the user's function keeps its meaning even when it is called `child`, `conn` or `stream`. The
//! only item introduced, the constant, lives in an anonymous `const _` block and is named after
//! the user's function with a prefix (items are not hygienic, so the name must differ from every
//! name the block uses: it is longer than the user's, and it is named before inventory's own
//! block, whose items it cannot meet).

use daemon_config::{GroupKey, Value};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::ItemFn;

use super::check::{child_returns, ChildReturns, Shape};
use super::Hook;
use crate::paths::Paths;

pub fn expand(
    paths: &Paths,
    hook: Hook,
    shape: Shape,
    f: &ItemFn,
    group: &[(GroupKey, Value, TokenStream)],
    pools: &[String],
) -> TokenStream {
    let name = &f.sig.ident;
    let name_text = name.unraw().to_string();
    let at = Span::call_site().located_at(name.span());
    let (submit, module_path) = (paths.submit(), paths.module_path());
    // Hygienic: invisible to the user's tokens, so it shadows none of their names.
    let arg = |text: &str| Ident::new(text, Span::mixed_site().located_at(name.span()));
    let p = |item: TokenStream| paths.private_path(item);
    let (kind, pointer, register, closure) = match (hook, shape) {
        (Hook::Shutdown, Shape::Hook) => {
            let (child, call, register) = (paths.child(), paths.call_child_hook(), paths.on_shutdown());
            let child_arg = arg("child");
            let invoke = quote_spanned!(at=> #call(#name, #child_arg));
            ("on_shutdown", quote!(fn(&#child)), quote!(#register::new), quote!(|#child_arg| #invoke))
        }
        (_, Shape::Hook) => {
            let (child, register) = (paths.child(), paths.on_child());
            let child_arg = arg("child");
            let invoke = match child_returns(&f.sig) {
                ChildReturns::Nothing => {
                    let call = p(quote!(call_child_unit));
                    quote_spanned!(at=> #call(#name, #child_arg))
                }
                ChildReturns::Value => {
                    let call = p(quote!(call_child_state));
                    quote_spanned!(at=> #call(#name, #name_text, #child_arg))
                }
                // A `Result` whose error is not `Debug` is reported at the return type.
                ChildReturns::Result => {
                    let call = p(quote!(call_child_result));
                    let at = match &f.sig.output {
                        syn::ReturnType::Type(_, ty) => Span::call_site().located_at(syn::spanned::Spanned::span(ty)),
                        syn::ReturnType::Default => at,
                    };
                    quote_spanned!(at=> #call(#name, #name_text, #child_arg))
                }
            };
            ("on_child", quote!(fn(&#child) -> ::core::result::Result<(), ::std::string::String>), quote!(#register::new), quote!(|#child_arg| #invoke))
        }
        (_, Shape::AsyncAccept) => {
            let (connection, future) = (paths.connection(), paths.box_future());
            let (call, register) = (paths.call_async_accept(), paths.on_accept());
            let conn = arg("conn");
            let invoke = quote_spanned!(at=> #call(#name, #conn));
            ("on_accept", quote!(fn(#connection) -> #future), quote!(#register::asynchronous), quote!(|#conn| #invoke))
        }
        (_, Shape::SyncAccept) => {
            let (stream_type, result) = (paths.stream(), paths.io_result());
            let (call, register) = (paths.call_sync_accept(), paths.on_accept());
            let stream = arg("stream");
            let invoke = quote_spanned!(at=> #call(#name, #stream));
            ("on_accept", quote!(fn(#stream_type) -> #result<()>), quote!(#register::blocking), quote!(|#stream| #invoke))
        }
        (Hook::Supervised | Hook::Task, Shape::SyncWork | Shape::AsyncWork) => {
            let supervised = hook == Hook::Supervised;
            let context = if supervised { p(quote!(Supervised)) } else { p(quote!(Task)) };
            let ctx = arg("ctx");
            let (call, variant) = match (supervised, shape == Shape::AsyncWork) {
                (true, true) => (p(quote!(call_async_supervised)), quote!(Async)),
                (true, false) => (p(quote!(call_sync_supervised)), quote!(Sync)),
                (false, true) => (p(quote!(call_async_task)), quote!(Async)),
                (false, false) => (p(quote!(call_sync_task)), quote!(Sync)),
            };
            let invoke = quote_spanned!(at=> #call(#name, #ctx));
            let run = p(quote!(Run));
            let register = if supervised {
                let r = p(quote!(OnSupervised));
                quote!(#r::new)
            } else {
                let r = p(quote!(TaskFn));
                quote!(#r::new)
            };
            let kind = if supervised { "supervised" } else { "task" };
            (kind, quote!(#run<#context>), register, quote!(#run::#variant(|#ctx| #invoke)))
        }
        (_, _) => {
            let event = p(quote!(ManagerEvent));
            let (kind, variant, call, arg_type) = match hook {
                Hook::Ready => ("on_ready", quote!(Ready), p(quote!(call_manager_hook)), None),
                Hook::Reload => ("on_reload", quote!(Reload), p(quote!(call_manager_hook)), None),
                Hook::Exit => ("on_exit", quote!(Exit), p(quote!(call_manager_hook)), None),
                Hook::Spawn => ("on_spawn", quote!(Spawn), p(quote!(call_spawn_hook)), Some(p(quote!(Spawned)))),
                _ => ("on_reap", quote!(Reap), p(quote!(call_reap_hook)), Some(p(quote!(Reaped)))),
            };
            let register = p(quote!(ManagerHook));
            let closure = match arg_type {
                Some(_) => {
                    let x = arg("event");
                    let invoke = quote_spanned!(at=> #call(#name, #x));
                    quote!(#event::#variant(|#x| #invoke))
                }
                None => {
                    let invoke = quote_spanned!(at=> #call(#name));
                    quote!(#event::#variant(|| #invoke))
                }
            };
            (kind, quote!(#event), quote!(#register::new), closure)
        }
    };
    let pointer_name = Ident::new(&format!("__daemon_{kind}_{name_text}"), Span::mixed_site());
    // A kind a program has one of: a second one is a compile error naming both (a
    // `#[macro_export]` macro of the same name, defined twice in the crate).
    let only_one = match hook {
        Hook::Accept => Some("a_program_has_one__daemon_on_accept__handler".to_string()),
        Hook::Supervised => Some("a_program_has_one__daemon_supervised__function".to_string()),
        Hook::Task => Some(format!("a_program_has_one__daemon_task__named_{name_text}")),
        _ => None,
    }
    .map(|guard| {
        let guard = Ident::new(&guard, at);
        quote_spanned! {at=>
            #[allow(non_local_definitions)]
            const _: () = {
                #[doc(hidden)]
                #[macro_export]
                macro_rules! #guard { () => {} }
            };
        }
    });
    // A task group's settings, from the attribute, go with its registration; an on_child
    // hook's pools with its.
    let settings = match hook {
        Hook::Task => {
            let entries = group.iter().map(|(key, value, _)| {
                let key = paths.group_key(*key);
                let value = crate::main_fn::emit::attr(paths, value);
                quote!((#key, #value))
            });
            Some(quote!(&[#(#entries),*],))
        }
        Hook::Child => Some(quote!(&[#(#pools),*],)),
        // Whether a plain handler takes a TcpStream (then it serves TCP listeners only).
        Hook::Accept if shape == Shape::SyncAccept => {
            let (probe, takes_tcp, takes_any) = (p(quote!(TcpProbe)), p(quote!(TakesTcp)), p(quote!(TakesAny)));
            Some(quote!(|| {
                use #takes_tcp as _;
                use #takes_any as _;
                (&&#probe(#name)).tcp_only()
            },))
        }
        _ => None,
    };
    quote! {
        #f
        const _: () = {
            #[allow(non_upper_case_globals)]
            const #pointer_name: #pointer = #closure;
            #submit {
                #register(#name_text, #module_path, #settings #pointer_name)
            }
        };
        #only_one
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn registers_a_child_hook_next_to_the_function() {
        let f: ItemFn = parse_quote!(
            fn init(child: &daemon::Child) {}
        );
        let got = expand(&Paths::new(None), Hook::Child, Shape::Hook, &f, &[], &[]).to_string();
        let want = quote! {
            fn init(child: &daemon::Child) {}
            const _: () = {
                #[allow(non_upper_case_globals)]
                const __daemon_on_child_init: fn(&::daemon::__private::Child) -> ::core::result::Result<(), ::std::string::String> =
                    |child| ::daemon::__private::call_child_unit(init, child);
                ::daemon::__private::inventory::submit! {
                    ::daemon::__private::OnChild::new("init", ::core::module_path!(), &[], __daemon_on_child_init)
                }
            };
        };
        assert_eq!(got, want.to_string());
    }

    #[test]
    fn a_child_hook_that_returns_state_is_kept_and_limited_to_its_pools() {
        let f: ItemFn = parse_quote!(
            fn db(child: &daemon::Child) -> Result<Db, Error> { todo!() }
        );
        let got = expand(&Paths::new(None), Hook::Child, Shape::Hook, &f, &[], &["jobs".to_string()]).to_string();
        assert!(got.contains("call_child_result (db , \"db\" , child)"), "{got}");
        assert!(got.contains("OnChild :: new (\"db\" , :: core :: module_path ! () , & [\"jobs\"] ,"), "{got}");
        let f: ItemFn = parse_quote!(
            fn db() -> Db { todo!() }
        );
        let got = expand(&Paths::new(None), Hook::Child, Shape::Hook, &f, &[], &[]).to_string();
        assert!(got.contains("call_child_state (db , \"db\" , child)"), "{got}");
    }

    #[test]
    fn registers_each_kind_with_its_constructor() {
        let f: ItemFn = parse_quote!(
            fn r#bye() {}
        );
        let got = expand(&Paths::new(None), Hook::Shutdown, Shape::Hook, &f, &[], &[]).to_string();
        assert!(got.contains("OnShutdown :: new (\"bye\""), "{got}");
        let f: ItemFn = parse_quote!(
            async fn serve(c: daemon::Connection) -> std::io::Result<()> {
                Ok(())
            }
        );
        let got = expand(
            &Paths::new(Some(parse_quote!(d))),
            Hook::Accept,
            Shape::AsyncAccept,
            &f,
            &[],
            &[],
        )
        .to_string();
        assert!(
            got.contains("d :: __private :: OnAccept :: asynchronous (\"serve\""),
            "{got}"
        );
        assert!(got.contains("-> d :: __private :: BoxFuture"), "{got}");
        let f: ItemFn = parse_quote!(
            fn serve(s: std::net::TcpStream) -> std::io::Result<()> {
                Ok(())
            }
        );
        let got = expand(&Paths::new(None), Hook::Accept, Shape::SyncAccept, &f, &[], &[]).to_string();
        assert!(got.contains("OnAccept :: blocking (\"serve\""), "{got}");
        assert!(got.contains("(&& :: daemon :: __private :: TcpProbe (serve)) . tcp_only ()"), "{got}");
        assert!(got.contains("| stream | :: daemon :: __private :: call_sync_accept (serve , stream)"), "{got}");
    }
}
