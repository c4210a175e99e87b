//! Every path the generated code names, in one table. All of the runtime's are under one crate
//! path: `::daemon` by default, or what the attribute's `crate = "..."` says (for a program that
//! renames the dependency or re-exports it). The generated code imports nothing, so it works
//! whatever the user's module has in scope.

use daemon_config::Key;
use proc_macro2::TokenStream;
use quote::quote;

pub struct Paths {
    krate: syn::Path,
}

impl Paths {
    pub fn new(krate: Option<syn::Path>) -> Paths {
        Paths {
            krate: krate.unwrap_or_else(|| syn::parse_quote!(::daemon)),
        }
    }

    /// `<crate>::__private`, where the facade re-exports the runtime's items for macros.
    fn private(&self, item: TokenStream) -> TokenStream {
        let krate = &self.krate;
        quote!(#krate::__private::#item)
    }

    // ---- #[daemon::main] ----

    pub fn run(&self) -> TokenStream {
        self.private(quote!(run))
    }

    pub fn run_with_settings(&self) -> TokenStream {
        self.private(quote!(run_with_settings))
    }

    pub fn program_settings(&self) -> TokenStream {
        self.private(quote!(ProgramSettings))
    }

    pub fn package(&self) -> TokenStream {
        self.private(quote!(Package))
    }

    pub fn attr(&self) -> TokenStream {
        self.private(quote!(Attr))
    }

    /// `<crate>::__private::Key::<Variant>`, named as the rule book names it.
    pub fn key(&self, key: Key) -> TokenStream {
        let variant = proc_macro2::Ident::new(&key.variant(), proc_macro2::Span::call_site());
        self.private(quote!(Key::#variant))
    }

    pub fn env(&self) -> TokenStream {
        quote!(::core::env!)
    }

    // ---- hooks ----

    pub fn module_path(&self) -> TokenStream {
        quote!(::core::module_path!())
    }

    pub fn submit(&self) -> TokenStream {
        self.private(quote!(inventory::submit!))
    }

    pub fn child(&self) -> TokenStream {
        self.private(quote!(Child))
    }

    pub fn on_child(&self) -> TokenStream {
        self.private(quote!(OnChild))
    }

    pub fn on_shutdown(&self) -> TokenStream {
        self.private(quote!(OnShutdown))
    }

    pub fn call_child_hook(&self) -> TokenStream {
        self.private(quote!(call_child_hook))
    }

    pub fn on_accept(&self) -> TokenStream {
        self.private(quote!(OnAccept))
    }

    pub fn connection(&self) -> TokenStream {
        self.private(quote!(Connection))
    }

    pub fn box_future(&self) -> TokenStream {
        self.private(quote!(BoxFuture))
    }

    pub fn call_async_accept(&self) -> TokenStream {
        self.private(quote!(call_async_accept))
    }

    pub fn call_sync_accept(&self) -> TokenStream {
        self.private(quote!(call_sync_accept))
    }

    pub fn private_path(&self, item: TokenStream) -> TokenStream {
        self.private(item)
    }

    /// `<crate>::__private::GroupKey::<Variant>`.
    pub fn group_key(&self, key: daemon_config::GroupKey) -> TokenStream {
        let variant = proc_macro2::Ident::new(&key.variant(), proc_macro2::Span::call_site());
        self.private(quote!(GroupKey::#variant))
    }

    pub fn stream(&self) -> TokenStream {
        self.private(quote!(Stream))
    }

    pub fn io_result(&self) -> TokenStream {
        quote!(::std::io::Result)
    }
}
