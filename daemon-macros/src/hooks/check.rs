//! The shapes the runtime can call. Only what is visible in the syntax is checked here (async or
//! not, how many parameters, generics, a return type at all); whether the types are the right
//! ones is checked by the compiler, through the runtime's traits, whose messages name the
//! signature to write (see `emit`).

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Item, ItemFn, ReturnType};

use super::Hook;
use crate::ctxt::Ctxt;
use crate::item;

/// How the runtime will call the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `fn(&Child)` or `fn()`: an on_child or on_shutdown hook.
    Hook,
    /// `async fn(Connection) -> io::Result<()>`.
    AsyncAccept,
    /// `fn(TcpStream) -> io::Result<()>`.
    SyncAccept,
    /// `fn(&Supervised)` or `fn(&Task)`, returning `()` or a `Result`.
    SyncWork,
    /// `async fn(Supervised)` or `async fn(Task)`.
    AsyncWork,
    /// A manager hook: `fn()`, or for on_spawn and on_reap `fn(&Spawned)` / `fn(&Reaped)`.
    Manager,
}

/// What an `on_child` hook returns, read from its signature: the runtime calls each through
/// its own function (the compiler checks the types behind the syntax).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildReturns {
    /// Nothing (or `()`).
    Nothing,
    /// A type spelled `Result<...>` (any path ending in `Result`): `Ok` is kept, `Err` fails
    /// the worker's start.
    Result,
    /// Any other type: the worker keeps the value.
    Value,
}

pub fn child_returns(sig: &syn::Signature) -> ChildReturns {
    match &sig.output {
        ReturnType::Default => ChildReturns::Nothing,
        ReturnType::Type(_, ty) if item::is_unit(ty) => ChildReturns::Nothing,
        ReturnType::Type(_, ty) => match &**ty {
            syn::Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Result") => ChildReturns::Result,
            _ => ChildReturns::Value,
        },
    }
}

const CHILD_SIGNATURE: &str = "`fn(child: &daemon::Child)` or `fn()`";
const ASYNC_ACCEPT: &str = "async fn(conn: daemon::Connection) -> std::io::Result<()>";
const SYNC_ACCEPT: &str = "fn(stream: daemon::net::Stream) -> std::io::Result<()>";

pub fn signature<'a>(cx: &mut Ctxt, hook: Hook, item: &'a Item) -> Option<(&'a ItemFn, Shape)> {
    let attr = hook.attr();
    let Item::Fn(f) = item else {
        let (what, tokens) = item::describe(item);
        let example = match hook {
            Hook::Child => "`fn init(child: &daemon::Child)`",
            Hook::Shutdown => "`fn cleanup(child: &daemon::Child)`",
            _ => "`async fn serve(conn: daemon::Connection) -> std::io::Result<()>`",
        };
        cx.error_spanned_by(
            tokens,
            format!("{attr} goes on a function such as {example}, not on {what}"),
        );
        return None;
    };
    let mut broken = false;
    let mut error = |cx: &mut Ctxt, tokens: TokenStream, message: String| {
        cx.error_spanned_by(tokens, message);
        broken = true;
    };
    let sig = &f.sig;
    let shape = match hook {
        Hook::Child | Hook::Shutdown => Shape::Hook,
        _ if sig.asyncness.is_some() => Shape::AsyncAccept,
        _ => Shape::SyncAccept,
    };
    // What the function should look like, for the messages below.
    let wanted = match shape {
        Shape::Hook => CHILD_SIGNATURE.to_string(),
        Shape::AsyncAccept => format!("`{ASYNC_ACCEPT}`"),
        _ => format!("`{SYNC_ACCEPT}`"),
    };
    let kind = match hook {
        Hook::Accept => "handler",
        _ => "hook",
    };

    if let Some(asyncness) = &sig.asyncness {
        let when = match hook {
            Hook::Child => Some(
                "they run synchronously in each new worker, before the worker's async runtime \
                 exists",
            ),
            Hook::Shutdown => Some(
                "they run synchronously as the worker stops, after its async runtime has ended",
            ),
            _ => None,
        };
        if let Some(when) = when {
            error(
                cx,
                asyncness.to_token_stream(),
                format!(
                    "{attr} hooks cannot be async: {when}; remove `async` (async work belongs \
                     in the #[daemon::on_accept] handler)"
                ),
            );
        }
    }
    if let Some((what, tokens)) = item::qualifier(sig) {
        error(
            cx,
            tokens,
            format!("{attr} {kind}s cannot be `{what}`: the daemon calls them as plain Rust functions; remove `{what}`"),
        );
    }
    if let Some(receiver) = item::receiver(sig) {
        error(
            cx,
            receiver,
            format!("{attr} goes on a free function, not a method: remove `self` and move the function out of the impl; it must be {wanted}"),
        );
    } else if let Some(generics) = item::generics(sig) {
        error(
            cx,
            generics,
            format!("{attr} {kind}s cannot be generic: the daemon calls them through a plain fn pointer; write the concrete types: {wanted}"),
        );
    }
    let params = item::params(sig);
    match (shape, params.len()) {
        (Shape::Hook, 0 | 1) => {}
        (Shape::AsyncAccept | Shape::SyncAccept, 1) => {}
        (Shape::AsyncAccept | Shape::SyncAccept, 0) | (_, 0) => {
            let name = &sig.ident;
            let fix = match shape {
                Shape::AsyncAccept => format!("`async fn {name}(conn: daemon::Connection)`"),
                _ => format!(
                    "`fn {name}(stream: daemon::net::Stream)` (or `stream: std::net::TcpStream` \
                     for TCP only; or make it `async fn {name}(conn: daemon::Connection)` to \
                     serve many at once)"
                ),
            };
            error(
                cx,
                paren_tokens(sig),
                format!("{attr} handlers take the connection as their one parameter: write {fix}"),
            );
        }
        _ => {
            let what = match shape {
                Shape::Hook => "one parameter, `&daemon::Child`, or none",
                Shape::AsyncAccept => "one parameter, the `daemon::Connection`",
                _ => "one parameter, the `daemon::net::Stream` (or `std::net::TcpStream`)",
            };
            let extra = item::extra_params(sig).unwrap_or_else(|| sig.inputs.to_token_stream());
            error(
                cx,
                extra,
                format!("{attr} {kind}s take {what}: remove the other parameters"),
            );
        }
    }
    if let Some(param) = params.first() {
        if let Some(message) = other_models_type(shape, &param.ty) {
            error(cx, param.ty.to_token_stream(), format!("{attr} {message}"));
        }
    }
    match (&sig.output, shape) {
        // An on_child hook may return the worker's state, or a `Result` of it.
        (ReturnType::Type(_, ty), Shape::Hook) if hook == Hook::Shutdown && !item::is_unit(ty) => {
            error(
                cx,
                ty.to_token_stream(),
                format!("{attr} hooks return nothing: remove the return type and handle or log errors inside the hook"),
            );
        }
        (ReturnType::Default, Shape::AsyncAccept | Shape::SyncAccept) => {
            let sig_text = if shape == Shape::AsyncAccept {
                ASYNC_ACCEPT
            } else {
                SYNC_ACCEPT
            };
            error(
                cx,
                paren_tokens(sig),
                format!(
                    "{attr} handlers return `std::io::Result<()>`: add `-> std::io::Result<()>` \
                     after the parameters (the signature is `{sig_text}`; an `Err` ends the \
                     connection and is logged)"
                ),
            );
        }
        _ => {}
    }
    (!broken).then_some((f, shape))
}

/// The shapes of the attributes added beside the first three: what runs a worker's work
/// (`supervised`, `task`), and the manager's hooks.
pub fn other_signature<'a>(cx: &mut Ctxt, hook: Hook, item: &'a Item) -> Option<(&'a ItemFn, Shape)> {
    let attr = hook.attr();
    let (context, async_ok, max_params) = match hook {
        Hook::Supervised => (Some("daemon::Supervised"), true, 1),
        Hook::Task => (Some("daemon::Task"), true, 1),
        Hook::Spawn => (Some("daemon::Spawned"), false, 1),
        Hook::Reap => (Some("daemon::Reaped"), false, 1),
        _ => (None, false, 0),
    };
    let wanted = match (hook, context) {
        (Hook::Supervised | Hook::Task, Some(c)) => format!("`fn(ctx: &{c})`, or `async fn(ctx: {c})`"),
        (_, Some(c)) => format!("`fn(x: &{c})` or `fn()`"),
        _ => "`fn()`".to_string(),
    };
    let Item::Fn(f) = item else {
        let (what, tokens) = item::describe(item);
        cx.error_spanned_by(tokens, format!("{attr} goes on a function such as {wanted}, not on {what}"));
        return None;
    };
    let mut broken = false;
    let mut error = |cx: &mut Ctxt, tokens: TokenStream, message: String| {
        cx.error_spanned_by(tokens, message);
        broken = true;
    };
    let sig = &f.sig;
    if let Some(asyncness) = &sig.asyncness {
        if !async_ok {
            error(
                cx,
                asyncness.to_token_stream(),
                format!(
                    "{attr} hooks cannot be async: they run synchronously in the manager, which \
                     never starts an async runtime (and must not block); remove `async`"
                ),
            );
        }
    }
    if let Some((what, tokens)) = item::qualifier(sig) {
        error(cx, tokens, format!("{attr} functions cannot be `{what}`: the daemon calls them as plain Rust functions; remove `{what}`"));
    }
    if let Some(receiver) = item::receiver(sig) {
        error(cx, receiver, format!("{attr} goes on a free function, not a method: remove `self`; it must be {wanted}"));
    } else if let Some(generics) = item::generics(sig) {
        error(cx, generics, format!("{attr} functions cannot be generic: the daemon calls them through a plain fn pointer; it must be {wanted}"));
    }
    let params = item::params(sig);
    let min_params = if matches!(hook, Hook::Supervised | Hook::Task) { 1 } else { 0 };
    if params.len() > max_params {
        let extra = item::extra_params(sig).unwrap_or_else(|| sig.inputs.to_token_stream());
        error(cx, extra, format!("{attr} functions take at most {max_params} parameter: it must be {wanted}"));
    } else if params.len() < min_params {
        error(cx, paren_tokens(sig), format!("{attr} functions take their context as their one parameter: it must be {wanted}"));
    }
    let returns_ok = match (&sig.output, hook) {
        (ReturnType::Default, _) => true,
        (ReturnType::Type(_, ty), Hook::Supervised | Hook::Task) => {
            item::is_unit(ty) || item::path_type(ty).is_some_and(|(last, _)| last == "Result")
        }
        (ReturnType::Type(_, ty), _) => item::is_unit(ty),
    };
    if !returns_ok {
        if let ReturnType::Type(_, ty) = &sig.output {
            let what = if matches!(hook, Hook::Supervised | Hook::Task) {
                "return nothing or a `Result<(), E>` (an `Err` is logged, and counts as a crash)"
            } else {
                "return nothing: they run in the manager, which has nobody to hand a result to"
            };
            error(cx, ty.to_token_stream(), format!("{attr} functions {what}"));
        }
    }
    let shape = match hook {
        Hook::Supervised | Hook::Task if sig.asyncness.is_some() => Shape::AsyncWork,
        Hook::Supervised | Hook::Task => Shape::SyncWork,
        _ => Shape::Manager,
    };
    (!broken).then_some((f, shape))
}

/// The likeliest mistake with a handler's type: the connection type of the other model. Only
/// types that cannot be meant otherwise are caught here (any `TcpStream` in an async handler,
/// `daemon::Connection` in a plain one); the runtime's traits check the rest.
fn other_models_type(shape: Shape, ty: &syn::Type) -> Option<String> {
    let (last, before) = item::path_type(ty)?;
    match shape {
        Shape::AsyncAccept
            if last == "TcpStream" || (last == "Stream" && before.last().is_some_and(|s| s == "net")) =>
        {
            Some(format!(
            "on an async fn takes a `daemon::Connection`, not a `{}`: write \
             `conn: daemon::Connection`, or remove `async` to serve a `daemon::net::Stream` one \
             connection at a time",
            ty.to_token_stream().to_string().replace(' ', "")
        ))
        }
        Shape::SyncAccept
            if last == "Connection" && before.last().is_some_and(|s| s == "daemon") =>
        {
            Some(
                "on a plain fn takes a `daemon::net::Stream`, not a `daemon::Connection`: write \
                 `stream: daemon::net::Stream`, or make the handler `async fn` to serve \
                 `daemon::Connection`s, many at once"
                    .to_string(),
            )
        }
        _ => None,
    }
}

/// The parameter list with its parentheses, to point at a missing parameter or return type.
fn paren_tokens(sig: &syn::Signature) -> TokenStream {
    let mut tokens = TokenStream::new();
    sig.paren_token
        .surround(&mut tokens, |t| sig.inputs.to_tokens(t));
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn check(hook: Hook, item: Item) -> (Option<Shape>, Vec<String>) {
        let mut cx = Ctxt::new();
        let shape = signature(&mut cx, hook, &item).map(|(_, s)| s);
        (shape, cx.messages())
    }

    fn one_error(hook: Hook, item: Item) -> String {
        let (shape, errors) = check(hook, item);
        assert!(shape.is_none());
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn hooks_take_a_child_or_nothing() {
        for item in [
            parse_quote!(
                fn init(child: &daemon::Child) {}
            ),
            parse_quote!(
                pub(crate) fn init() {}
            ),
            parse_quote!(
                fn init() -> () {}
            ),
        ] {
            assert_eq!(check(Hook::Child, item), (Some(Shape::Hook), vec![]));
        }
        // The type of the parameter is the compiler's to check.
        assert_eq!(
            check(
                Hook::Shutdown,
                parse_quote!(
                    fn f(c: String) {}
                )
            )
            .0,
            Some(Shape::Hook)
        );
    }

    #[test]
    fn an_on_child_hook_returns_nothing_a_value_or_a_result() {
        let returns = |item: Item| {
            let (shape, errors) = check(Hook::Child, item.clone());
            assert_eq!((shape, errors), (Some(Shape::Hook), vec![]));
            let Item::Fn(f) = item else { unreachable!() };
            child_returns(&f.sig)
        };
        assert_eq!(returns(parse_quote!(fn init() {})), ChildReturns::Nothing);
        assert_eq!(returns(parse_quote!(fn init() -> () {})), ChildReturns::Nothing);
        assert_eq!(returns(parse_quote!(fn db(c: &daemon::Child) -> Db { todo!() })), ChildReturns::Value);
        assert_eq!(returns(parse_quote!(fn db() -> Result<Db, String> { todo!() })), ChildReturns::Result);
        assert_eq!(returns(parse_quote!(fn db() -> std::io::Result<Db> { todo!() })), ChildReturns::Result);
        assert_eq!(returns(parse_quote!(fn db() -> (Db, u8) { todo!() })), ChildReturns::Value);
    }

    #[test]
    fn hooks_refuse_what_cannot_be_called_plainly() {
        let e = one_error(
            Hook::Child,
            parse_quote!(
                async fn init() {}
            ),
        );
        assert!(e.starts_with("#[daemon::on_child] hooks cannot be async: they run synchronously in each new worker"), "{e}");
        let e = one_error(
            Hook::Shutdown,
            parse_quote!(
                async fn bye() {}
            ),
        );
        assert!(e.contains("as the worker stops"), "{e}");
        let e = one_error(
            Hook::Child,
            parse_quote!(
                fn init<T>(c: T) {}
            ),
        );
        assert!(e.contains("cannot be generic"), "{e}");
        let e = one_error(
            Hook::Child,
            parse_quote!(
                fn init(c: &impl Sized) {}
            ),
        );
        assert!(e.contains("cannot be generic"), "{e}");
        let e = one_error(
            Hook::Child,
            parse_quote!(
                fn init(&self) {}
            ),
        );
        assert!(e.contains("not a method: remove `self`"), "{e}");
        let e = one_error(
            Hook::Child,
            parse_quote!(
                fn init(a: &daemon::Child, b: u8) {}
            ),
        );
        assert!(
            e.contains("take one parameter, `&daemon::Child`, or none"),
            "{e}"
        );
        let e = one_error(
            Hook::Shutdown,
            parse_quote!(
                fn bye() -> Result<(), String> {
                    Ok(())
                }
            ),
        );
        assert!(e.contains("return nothing"), "{e}");
        let e = one_error(
            Hook::Shutdown,
            parse_quote!(
                unsafe fn bye() {}
            ),
        );
        assert!(e.contains("cannot be `unsafe`"), "{e}");
        let e = one_error(
            Hook::Child,
            parse_quote!(
                struct S;
            ),
        );
        assert!(
            e.contains(
                "goes on a function such as `fn init(child: &daemon::Child)`, not on a struct"
            ),
            "{e}"
        );
    }

    #[test]
    fn accept_handlers_are_async_or_blocking() {
        let item = parse_quote!(
            async fn serve(c: daemon::Connection) -> std::io::Result<()> {
                Ok(())
            }
        );
        assert_eq!(
            check(Hook::Accept, item),
            (Some(Shape::AsyncAccept), vec![])
        );
        let item = parse_quote!(
            fn serve(s: std::net::TcpStream) -> std::io::Result<()> {
                Ok(())
            }
        );
        assert_eq!(check(Hook::Accept, item), (Some(Shape::SyncAccept), vec![]));
    }

    #[test]
    fn accept_handlers_take_one_connection_and_return_a_result() {
        let e = one_error(
            Hook::Accept,
            parse_quote!(
                async fn serve(c: daemon::Connection) {}
            ),
        );
        assert!(e.contains("add `-> std::io::Result<()>`"), "{e}");
        let e = one_error(
            Hook::Accept,
            parse_quote!(
                fn serve() -> std::io::Result<()> {
                    Ok(())
                }
            ),
        );
        assert!(
            e.contains("write `fn serve(stream: daemon::net::Stream)`"),
            "{e}"
        );
        let e = one_error(
            Hook::Accept,
            parse_quote!(
                async fn serve(a: u8, b: u8) -> std::io::Result<()> {
                    Ok(())
                }
            ),
        );
        assert!(
            e.contains("take one parameter, the `daemon::Connection`"),
            "{e}"
        );
        let e = one_error(
            Hook::Accept,
            parse_quote!(
                fn serve<S>(s: S) -> std::io::Result<()> {
                    Ok(())
                }
            ),
        );
        assert!(e.contains("cannot be generic"), "{e}");
        let (_, errors) = check(
            Hook::Accept,
            parse_quote!(
                fn serve(&self, a: u8, b: u8) {}
            ),
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        // `self` is reported alone, not also as one parameter too many.
        let (_, errors) = check(
            Hook::Child,
            parse_quote!(
                fn init(&self, c: &daemon::Child) {}
            ),
        );
        assert_eq!(errors.len(), 1, "{errors:#?}");
    }

    #[test]
    fn accept_handlers_with_the_other_models_connection_say_so() {
        let e = one_error(
            Hook::Accept,
            parse_quote!(
                async fn serve(s: std::net::TcpStream) -> std::io::Result<()> {
                    Ok(())
                }
            ),
        );
        assert!(
            e.contains("takes a `daemon::Connection`, not a `std::net::TcpStream`"),
            "{e}"
        );
        assert!(e.contains("or remove `async`"), "{e}");
        let e = one_error(
            Hook::Accept,
            parse_quote!(
                fn serve(c: daemon::Connection) -> std::io::Result<()> {
                    Ok(())
                }
            ),
        );
        assert!(
            e.contains("takes a `daemon::net::Stream`, not a `daemon::Connection`"),
            "{e}"
        );
        // A type of the user's own named `Connection` may be an alias: the compiler judges it.
        let item = parse_quote!(
            fn serve(c: Connection) -> std::io::Result<()> {
                Ok(())
            }
        );
        assert_eq!(check(Hook::Accept, item).0, Some(Shape::SyncAccept));
    }
}
