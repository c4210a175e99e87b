//! The expansion of a hook: the user's function, unchanged, and its registration:
//!
//! ```text
//! fn init(child: &daemon::Child) { ... }
//! const _: () = {
//!     fn __daemon_hook(child: &::daemon::__private::Child) {
//!         ::daemon::__private::call_child_hook(init, child)
//!     }
//!     ::daemon::__private::inventory::submit! {
//!         ::daemon::__private::OnChild::new("init", ::core::module_path!(), __daemon_hook)
//!     }
//! };
//! ```
//!
//! The wrapper has the runtime's fixed `fn` pointer type; the `call_*` function in it takes the
//! user's function through a trait bound (`ChildHook`, `AsyncAcceptHandler`,
//! `SyncAcceptHandler`) whose `on_unimplemented` message names the signature to write. That
//! call carries the span of the user's function name, so a wrong parameter or return type is
//! reported there, not at the attribute.

use proc_macro2::{Span, TokenStream};
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
    let registration = match shape {
        Shape::Hook => {
            let (child, call) = (paths.child(), paths.call_child_hook());
            let register = match hook {
                Hook::Shutdown => paths.on_shutdown(),
                _ => paths.on_child(),
            };
            let invoke = quote_spanned!(at=> #call(#name, child));
            quote! {
                fn __daemon_hook(child: &#child) {
                    #invoke
                }
                #submit {
                    #register::new(#name_text, #module_path, __daemon_hook)
                }
            }
        }
        Shape::AsyncAccept => {
            let (connection, future) = (paths.connection(), paths.box_future());
            let (call, register) = (paths.call_async_accept(), paths.on_accept());
            let invoke = quote_spanned!(at=> #call(#name, conn));
            quote! {
                fn __daemon_accept(conn: #connection) -> #future {
                    #invoke
                }
                #submit {
                    #register::asynchronous(#name_text, #module_path, __daemon_accept)
                }
            }
        }
        Shape::SyncAccept => {
            let (stream, result) = (paths.tcp_stream(), paths.io_result());
            let (call, register) = (paths.call_sync_accept(), paths.on_accept());
            let invoke = quote_spanned!(at=> #call(#name, stream));
            quote! {
                fn __daemon_accept(stream: #stream) -> #result<()> {
                    #invoke
                }
                #submit {
                    #register::blocking(#name_text, #module_path, __daemon_accept)
                }
            }
        }
    };
    quote! {
        #f
        const _: () = {
            #registration
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
                fn __daemon_hook(child: &::daemon::__private::Child) {
                    ::daemon::__private::call_child_hook(init, child)
                }
                ::daemon::__private::inventory::submit! {
                    ::daemon::__private::OnChild::new("init", ::core::module_path!(), __daemon_hook)
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
        assert!(got.contains("call_sync_accept (serve , stream)"), "{got}");
    }
}
