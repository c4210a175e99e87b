//! What the attributes need to know about the item they are on, shared by all of them.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::{FnArg, Item, Pat, PatType, Signature, Type};

/// The item an attribute is on. Any item parses, so that "not a function" gets its own message.
pub fn parse(cx: &mut crate::ctxt::Ctxt, tokens: TokenStream) -> Option<Item> {
    match syn::parse2(tokens) {
        Ok(item) => Some(item),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    }
}

/// A name for an item that is not a function, and the tokens to point at (its keyword and name,
/// not its whole body).
pub fn describe(item: &Item) -> (&'static str, TokenStream) {
    fn two(a: &impl ToTokens, b: &impl ToTokens) -> TokenStream {
        quote!(#a #b)
    }
    match item {
        Item::Struct(i) => ("a struct", two(&i.struct_token, &i.ident)),
        Item::Enum(i) => ("an enum", two(&i.enum_token, &i.ident)),
        Item::Union(i) => ("a union", two(&i.union_token, &i.ident)),
        Item::Mod(i) => ("a module", two(&i.mod_token, &i.ident)),
        Item::Const(i) => ("a const", two(&i.const_token, &i.ident)),
        Item::Static(i) => ("a static", two(&i.static_token, &i.ident)),
        Item::Trait(i) => ("a trait", two(&i.trait_token, &i.ident)),
        Item::Type(i) => ("a type alias", two(&i.type_token, &i.ident)),
        Item::Impl(i) => ("an impl block", two(&i.impl_token, &i.self_ty)),
        Item::Use(i) => ("a use declaration", i.to_token_stream()),
        Item::ExternCrate(i) => ("an extern crate", i.to_token_stream()),
        Item::ForeignMod(i) => ("an extern block", i.abi.to_token_stream()),
        Item::Macro(i) => ("a macro", i.mac.path.to_token_stream()),
        other => ("this item", other.to_token_stream()),
    }
}

/// The generics of a signature, including `where` and `impl Trait` parameters, to point at, if
/// it has any. The attributes' functions are called through a plain `fn` pointer, so none may be
/// generic.
pub fn generics(sig: &Signature) -> Option<TokenStream> {
    let g = &sig.generics;
    if !g.params.is_empty() || g.where_clause.is_some() {
        let where_clause = &g.where_clause;
        return Some(quote!(#g #where_clause));
    }
    sig.inputs.iter().find_map(|arg| match arg {
        FnArg::Typed(t) if contains_impl_trait(&t.ty) => Some(t.ty.to_token_stream()),
        _ => None,
    })
}

fn contains_impl_trait(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(_) => true,
        Type::Reference(r) => contains_impl_trait(&r.elem),
        Type::Paren(p) => contains_impl_trait(&p.elem),
        Type::Group(g) => contains_impl_trait(&g.elem),
        _ => false,
    }
}

/// The `self` parameter, if the function is a method.
pub fn receiver(sig: &Signature) -> Option<TokenStream> {
    sig.inputs.iter().find_map(|arg| match arg {
        FnArg::Receiver(r) => Some(r.to_token_stream()),
        FnArg::Typed(t) => match &*t.pat {
            Pat::Ident(p) if p.ident == "self" => Some(t.to_token_stream()),
            _ => None,
        },
    })
}

/// `unsafe`, `const` or `extern "ABI"`, if the function has one: something the caller would need
/// to know about, which the generated code cannot honour.
pub fn qualifier(sig: &Signature) -> Option<(String, TokenStream)> {
    if let Some(t) = &sig.unsafety {
        return Some(("unsafe".into(), t.to_token_stream()));
    }
    if let Some(abi) = &sig.abi {
        let shown = match &abi.name {
            Some(name) => format!("extern \"{}\"", name.value()),
            None => "extern".into(),
        };
        return Some((shown, abi.to_token_stream()));
    }
    None
}

/// The parameters other than `self` (which is reported on its own).
pub fn params(sig: &Signature) -> Vec<&PatType> {
    sig.inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(t) if !matches!(&*t.pat, Pat::Ident(p) if p.ident == "self") => Some(t),
            _ => None,
        })
        .collect()
}

/// The parameters after the first (`self` aside), to point at when there are too many.
pub fn extra_params(sig: &Signature) -> Option<TokenStream> {
    let params = params(sig);
    if params.len() < 2 {
        return None;
    }
    let rest = &params[1..];
    Some(quote!(#(#rest),*))
}

/// The last segment of a path type and the segments before it (`std::net::TcpStream` gives
/// `TcpStream` and `[std, net]`), seeing through references and parentheses.
pub fn path_type(ty: &Type) -> Option<(String, Vec<String>)> {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let mut names: Vec<String> = p
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            let last = names.pop()?;
            Some((last, names))
        }
        Type::Paren(p) => path_type(&p.elem),
        Type::Group(g) => path_type(&g.elem),
        _ => None,
    }
}

/// Whether a return type is `()`.
pub fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Paren(p) => is_unit(&p.elem),
        Type::Group(g) => is_unit(&g.elem),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn finds_what_makes_a_fn_unfit_for_a_pointer() {
        let plain: Signature = parse_quote!(fn f(a: &u8));
        assert!(generics(&plain).is_none() && receiver(&plain).is_none());
        let generic: Signature = parse_quote!(fn f<T>(a: T));
        assert!(generics(&generic).is_some());
        let where_only: Signature = parse_quote!(fn f(a: u8) where u8: Copy);
        assert!(generics(&where_only).is_some());
        let impl_trait: Signature = parse_quote!(fn f(a: &impl Sized));
        assert!(generics(&impl_trait).is_some());
        let method: Signature = parse_quote!(fn f(&self));
        assert!(receiver(&method).is_some());
        let unsafe_fn: Signature = parse_quote!(unsafe fn f());
        assert_eq!(
            qualifier(&unsafe_fn).map(|q| q.0),
            Some("unsafe".to_string())
        );
        let extern_fn: Signature = parse_quote!(extern "C" fn f());
        assert_eq!(
            qualifier(&extern_fn).map(|q| q.0),
            Some("extern \"C\"".to_string())
        );
    }

    #[test]
    fn names_items_that_are_not_functions() {
        let s: Item = parse_quote!(
            struct Server;
        );
        assert_eq!(describe(&s).0, "a struct");
        assert_eq!(describe(&s).1.to_string(), "struct Server");
    }
}
