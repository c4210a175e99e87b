//! The expansion of a hook: the user's function, unchanged, and its registration:
//!
//! ```text
//! fn init(child: &daemon::Child) { ... }
//! const _: () = {
//!     const __daemon_on_child_init: fn(&::daemon::__private::Child) =
//!         |child| ::daemon::__private::call_child_hook(init, child);
//!     ::daemon::__private::inventory::submit! {
//!         ::daemon::__private::OnChild::new("init", ::core::module_path!(), __daemon_on_child_init)
//!     }
//! };
//! ```
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

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::ItemFn;

use super::check::Shape;
use super::Hook;
use crate::paths::Paths;

pub fn expand(paths: &Paths, hook: Hook, shape: Shape, f: &ItemFn) -> TokenStream {
    let name = &f.sig.ident;
    let name_text = name.unraw().to_string();
    let at = Span::call_site().located_at(name.span());
    let (submit, module_path) = (paths.submit(), paths.module_path());
    // Hygienic: invisible to the user's tokens, so it shadows none of their names.
    let arg = |text: &str| Ident::new(text, Span::mixed_site().located_at(name.span()));
    let (kind, pointer, register, closure) = match shape {
        Shape::Hook => {
            let (child, call) = (paths.child(), paths.call_child_hook());
            let (kind, register) = match hook {
                Hook::Shutdown => ("on_shutdown", paths.on_shutdown()),
                _ => ("on_child", paths.on_child()),
            };
            let child_arg = arg("child");
            let invoke = quote_spanned!(at=> #call(#name, #child_arg));
            (kind, quote!(fn(&#child)), quote!(#register::new), quote!(|#child_arg| #invoke))
        }
        Shape::AsyncAccept => {
            let (connection, future) = (paths.connection(), paths.box_future());
            let (call, register) = (paths.call_async_accept(), paths.on_accept());
            let conn = arg("conn");
            let invoke = quote_spanned!(at=> #call(#name, #conn));
            ("on_accept", quote!(fn(#connection) -> #future), quote!(#register::asynchronous), quote!(|#conn| #invoke))
        }
        Shape::SyncAccept => {
            let (stream_type, result) = (paths.tcp_stream(), paths.io_result());
            let (call, register) = (paths.call_sync_accept(), paths.on_accept());
            let stream = arg("stream");
            let invoke = quote_spanned!(at=> #call(#name, #stream));
            ("on_accept", quote!(fn(#stream_type) -> #result<()>), quote!(#register::blocking), quote!(|#stream| #invoke))
        }
    };
    let pointer_name = Ident::new(&format!("__daemon_{kind}_{name_text}"), Span::mixed_site());
    quote! {
        #f
        const _: () = {
            #[allow(non_upper_case_globals)]
            const #pointer_name: #pointer = #closure;
            #submit {
                #register(#name_text, #module_path, #pointer_name)
            }
        };
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
        let got = expand(&Paths::new(None), Hook::Child, Shape::Hook, &f).to_string();
        let want = quote! {
            fn init(child: &daemon::Child) {}
            const _: () = {
                #[allow(non_upper_case_globals)]
                const __daemon_on_child_init: fn(&::daemon::__private::Child) =
                    |child| ::daemon::__private::call_child_hook(init, child);
                ::daemon::__private::inventory::submit! {
                    ::daemon::__private::OnChild::new("init", ::core::module_path!(), __daemon_on_child_init)
                }
            };
        };
        assert_eq!(got, want.to_string());
    }

    #[test]
    fn registers_each_kind_with_its_constructor() {
        let f: ItemFn = parse_quote!(
            fn r#bye() {}
        );
        let got = expand(&Paths::new(None), Hook::Shutdown, Shape::Hook, &f).to_string();
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
        let got = expand(&Paths::new(None), Hook::Accept, Shape::SyncAccept, &f).to_string();
        assert!(got.contains("OnAccept :: blocking (\"serve\""), "{got}");
        assert!(got.contains("| stream | :: daemon :: __private :: call_sync_accept (serve , stream)"), "{got}");
    }
}
