//! The arguments of an attribute, `key = value, flag, ...`, as written: no meaning yet. Values are
//! kept as expressions so that a value of the wrong type still parses and can be reported with a
//! message about its key, rather than as a syntax error.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, Token};

use crate::ctxt::Ctxt;

/// One `key` or `key = value`.
pub struct Arg {
    pub key: Ident,
    pub eq: Option<Token![=]>,
    pub value: Option<Expr>,
}

impl Arg {
    /// The key as written (`crate` included, which is a keyword).
    pub fn name(&self) -> String {
        self.key.unraw().to_string()
    }

    /// The whole `key = value`, for errors about the pair.
    pub fn tokens(&self) -> TokenStream {
        let (key, eq, value) = (&self.key, &self.eq, &self.value);
        quote!(#key #eq #value)
    }

    /// The value, or the key of a bare flag, for errors about the value.
    pub fn value_tokens(&self) -> TokenStream {
        match &self.value {
            Some(v) => v.to_token_stream(),
            None => self.key.to_token_stream(),
        }
    }
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Arg> {
        if !input.peek(Ident::peek_any) {
            return Err(input.error("expected a key, such as `prefork = 4` or `detach`"));
        }
        let key = Ident::parse_any(input)?;
        if input.peek(Token![=]) {
            let eq: Token![=] = input.parse()?;
            let value: Expr = input.parse()?;
            Ok(Arg {
                key,
                eq: Some(eq),
                value: Some(value),
            })
        } else if input.is_empty() || input.peek(Token![,]) {
            Ok(Arg {
                key,
                eq: None,
                value: None,
            })
        } else {
            let name = key.unraw();
            Err(input.error(format!(
                "expected `=` or `,` after `{name}`: write `{name} = value`, and separate keys with commas"
            )))
        }
    }
}

/// Parses `key = value, ...`.
pub fn parse(tokens: TokenStream) -> syn::Result<Vec<Arg>> {
    let list = Punctuated::<Arg, Token![,]>::parse_terminated.parse2(tokens)?;
    Ok(list.into_iter().collect())
}

/// Reads `crate = "path"`: where the generated code finds the daemon crate.
pub fn crate_path(cx: &mut Ctxt, arg: &Arg) -> Option<syn::Path> {
    const EXAMPLE: &str = "`crate = \"daemon\"`";
    let text = match &arg.value {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        })) => s,
        Some(other) => {
            cx.error_spanned_by(
                other,
                format!("`crate` takes the path to the daemon crate as a string: write {EXAMPLE}"),
            );
            return None;
        }
        None => {
            cx.error_spanned_by(&arg.key, format!("`crate` needs a value: write {EXAMPLE}"));
            return None;
        }
    };
    match text.parse::<syn::Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            cx.error_spanned_by(
                text,
                format!(
                    "`{}` is not a path: write the path to the daemon crate, such as {EXAMPLE}",
                    text.value()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tokens: TokenStream) -> Vec<(String, bool)> {
        match parse(tokens) {
            Ok(args) => args.iter().map(|a| (a.name(), a.value.is_some())).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn reads_keys_values_and_bare_flags() {
        let got = names(quote!(
            prefork = 4,
            detach,
            listen = ["a", "b"],
            crate = "x",
        ));
        let want = [
            ("prefork", true),
            ("detach", false),
            ("listen", true),
            ("crate", true),
        ];
        assert_eq!(got, want.map(|(n, v)| (n.to_string(), v)));
        assert!(names(quote!()).is_empty());
    }

    #[test]
    fn values_of_any_type_parse() {
        // Wrong types are the checker's business, with a message about the key.
        let got = names(quote!(
            prefork = -1,
            max_spare = 2.5,
            requests = "x",
            clients = N
        ));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn malformed_lists_say_what_to_write() {
        let err = parse(quote!(prefork 4))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("expected `=` or `,` after `prefork`"), "{err}");
        let err = parse(quote!("prefork" = 4))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("expected a key"), "{err}");
    }

    #[test]
    fn crate_takes_a_string_path() {
        let mut cx = Ctxt::new();
        let args = parse(quote!(
            crate = "::my::daemon",
            crate = daemon,
            crate = "a b",
            crate
        ))
        .unwrap_or_default();
        let paths: Vec<_> = args
            .iter()
            .map(|a| crate_path(&mut cx, a).is_some())
            .collect();
        assert_eq!(paths, [true, false, false, false]);
        let messages = cx.messages();
        assert!(
            messages[0].contains("`crate` takes the path to the daemon crate as a string"),
            "{messages:?}"
        );
        assert!(messages[1].contains("`a b` is not a path"), "{messages:?}");
        assert!(
            messages[2].contains("`crate` needs a value"),
            "{messages:?}"
        );
    }
}
