//! Judging `#[daemon::main]`: each key and value against the rule book (`daemon-config`), then
//! the relations between them through `resolve`, the very function the runtime calls on the
//! command line; then the signature of `fn main`. Every problem is recorded, at its token.

use std::collections::BTreeMap;
use std::time::Duration;

use daemon_config::{
    parse_duration, resolve, suggest, Given, Key, Kind, Model, Origin, Setting, Value, SETTINGS,
};
use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{Expr, ExprLit, ExprUnary, Item, ItemFn, Lit, LitInt, LitStr, ReturnType, Type, UnOp};

use crate::args::{self, Arg};
use crate::ctxt::Ctxt;
use crate::item;

/// The attribute's settings, each checked on its own and with the others.
#[derive(Default)]
pub struct Settings {
    /// In the order written.
    pub values: Vec<(Key, Value)>,
    /// `crate = "..."`, if given.
    pub krate: Option<syn::Path>,
}

pub fn args(cx: &mut Ctxt, args: &[Arg]) -> Settings {
    let mut settings = Settings::default();
    let mut given = Given::new();
    // Where each accepted value was written, to point at when a relation between values breaks.
    let mut places: BTreeMap<Key, TokenStream> = BTreeMap::new();
    let mut seen: Vec<&Arg> = Vec::new();
    for arg in args {
        let name = arg.name();
        if let Some(first) = seen.iter().find(|a| a.name() == name) {
            cx.error_spanned_by(
                arg.tokens(),
                format!(
                    "`{name}` is set twice: remove one of them (the first is `{}`)",
                    shown(first)
                ),
            );
            continue;
        }
        seen.push(arg);
        if name == "crate" {
            settings.krate = args::crate_path(cx, arg);
            continue;
        }
        let Some(setting) = SETTINGS.iter().find(|s| s.name == name) else {
            unknown_key(cx, arg);
            continue;
        };
        let Some(value) = value_of(cx, setting, arg) else {
            continue;
        };
        match setting.check(&value) {
            Ok(()) => {
                given.set(setting.key, value.clone(), Origin::Attribute);
                places.insert(setting.key, arg.value_tokens());
                settings.values.push((setting.key, value));
            }
            Err(message) => cx.error_spanned_by(arg.value_tokens(), message),
        }
    }
    // The relations (min_spare <= max_spare, ...). The handler's model is not known here: the
    // runtime checks what depends on it.
    if let Err(problems) = resolve(&given, Model::Unknown) {
        for problem in problems {
            let place = problem
                .subjects
                .iter()
                .find_map(|(key, _, _)| places.get(key));
            match place {
                Some(tokens) => cx.error_spanned_by(tokens, &problem.message),
                None => cx.error_at(Span::call_site(), &problem.message),
            }
        }
    }
    settings
}

/// `key = value` as the user wrote it, for messages (just the key if the value is not a literal).
fn shown(arg: &Arg) -> String {
    match &arg.value {
        Some(Expr::Lit(lit)) => format!("{} = {}", arg.name(), lit.lit.to_token_stream()),
        _ => arg.name(),
    }
}

fn unknown_key(cx: &mut Ctxt, arg: &Arg) {
    let name = arg.name();
    // Someone who knows the binary's flags or variables may write one of them as a key.
    let alias = SETTINGS.iter().find(|s| {
        s.flag.trim_start_matches('-').replace('-', "_") == name
            || s.env.eq_ignore_ascii_case(&name)
    });
    let names = SETTINGS.iter().map(|s| s.name).chain(["crate"]);
    let message = match (alias, suggest(&name, names)) {
        (Some(s), _) if s.flag.trim_start_matches('-').replace('-', "_") == name => format!(
            "unknown key `{name}`; did you mean `{}`? (`{}` is its command-line flag)",
            s.name, s.flag
        ),
        (Some(s), _) => format!(
            "unknown key `{name}`; did you mean `{}`? (`{}` is its environment variable)",
            s.name, s.env
        ),
        (None, Some(near)) => format!("unknown key `{name}`; did you mean `{near}`?"),
        (None, None) => {
            let list: Vec<String> = SETTINGS.iter().map(|s| format!("`{}`", s.name)).collect();
            format!(
                "unknown key `{name}`: #[daemon::main] takes {}, and `crate`",
                list.join(", ")
            )
        }
    };
    cx.error_spanned_by(&arg.key, message);
}

/// A key as it is written with a typical value, for messages that show the fix.
pub fn example<K>(s: &Setting<K>) -> &'static str {
    s.example
}

/// The value's literal, seeing through the invisible groups of `macro_rules!` expansions.
fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(g) => literal(&g.expr),
        _ => None,
    }
}

/// The literal of `-literal`.
fn negated(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => literal(expr),
        Expr::Group(g) => negated(&g.expr),
        _ => None,
    }
}

fn lit_text(lit: &Lit) -> String {
    lit.to_token_stream().to_string()
}

/// The value of `arg` as the setting's type, or `None` after recording why it is not one.
pub fn value_of<K>(cx: &mut Ctxt, s: &Setting<K>, arg: &Arg) -> Option<Value> {
    let Some(expr) = &arg.value else {
        if s.kind == Kind::Flag {
            return Some(Value::Flag(true));
        }
        cx.error_spanned_by(
            &arg.key,
            format!("`{}` needs a value: write `{}`", s.name, example(s)),
        );
        return None;
    };
    let result = match s.kind {
        Kind::Count { .. } => count(s, expr),
        Kind::CountOrAuto { .. } => match (expr, literal(expr)) {
            (Expr::Path(p), _) if p.path.is_ident(daemon_config::AUTO_WORD) => s.parse_text(daemon_config::AUTO_WORD),
            (_, Some(Lit::Str(text))) if text.value().trim() == daemon_config::AUTO_WORD => s.parse_text(daemon_config::AUTO_WORD),
            _ => count(s, expr),
        },
        Kind::Flag => flag(s, expr),
        Kind::Addresses => return addresses(cx, s, expr),
        Kind::Duration { .. } => duration(s, expr),
        Kind::Size { .. } => size(s, expr),
        Kind::Path | Kind::Name | Kind::Mode => text(s, expr),
        Kind::Choice(words) => choice(s, words, expr),
        Kind::Endpoint => endpoint(s, expr),
    };
    result
        .map_err(|message| cx.error_spanned_by(expr, message))
        .ok()
}

/// The message for a value that is not even of the right shape.
fn wrong_type<K>(s: &Setting<K>, expr: &Expr) -> String {
    let fix = format!("write `{}`", example(s));
    match expr {
        Expr::Array(_) | Expr::Tuple(_) => {
            format!("`{}` takes {}, not a list: {fix}", s.name, s.kind_name())
        }
        Expr::Lit(_) | Expr::Unary(_) => format!("`{}` takes {}: {fix}", s.name, s.kind_name()),
        // A constant, a call, arithmetic: the attribute is read before any of them exist.
        _ => format!(
            "`{}` takes {} written out, such as `{}`: the attribute is read while the program \
             compiles, before constants and expressions can be evaluated",
            s.name,
            s.kind_name(),
            example(s)
        ),
    }
}

fn count<K>(s: &Setting<K>, expr: &Expr) -> Result<Value, String> {
    if let Some(lit) = negated(expr) {
        if matches!(lit, Lit::Int(_) | Lit::Float(_)) {
            return Err(format!("`-{}` is negative: {}", lit_text(lit), s.rule()));
        }
    }
    match literal(expr) {
        Some(Lit::Int(int)) => whole_number(s, int),
        Some(Lit::Float(f)) => Err(format!("`{f}` is not a whole number: {}", s.rule())),
        Some(Lit::Bool(b)) => Err(format!("`{}` is not a whole number: {}", b.value, s.rule())),
        Some(Lit::Str(text)) => {
            let inner = text.value();
            if inner.trim().parse::<u64>().is_ok() {
                Err(format!(
                    "`{}` is a string, not a number: remove the quotes, `{} = {}`",
                    lit_text(&Lit::Str(text.clone())),
                    s.name,
                    inner.trim()
                ))
            } else {
                Err(format!(
                    "`{}` takes a whole number, not a string: write `{}`",
                    s.name,
                    example(s)
                ))
            }
        }
        _ => Err(wrong_type(s, expr)),
    }
}

/// An integer literal (with an integer suffix at most) as a `u64`.
fn whole_number<K>(s: &Setting<K>, int: &LitInt) -> Result<Value, String> {
    const INTEGER_SUFFIXES: &[&str] = &[
        "", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
    ];
    if !INTEGER_SUFFIXES.contains(&int.suffix()) {
        return Err(format!("`{int}` is not a whole number: {}", s.rule()));
    }
    match int.base10_parse::<u64>() {
        Ok(n) => Ok(Value::Count(n)),
        Err(_) => Err(format!(
            "{} is absurdly large: {}",
            int.base10_digits(),
            s.rule()
        )),
    }
}

fn flag<K>(s: &Setting<K>, expr: &Expr) -> Result<Value, String> {
    match literal(expr) {
        Some(Lit::Bool(b)) => Ok(Value::Flag(b.value)),
        _ => Err(format!(
            "`{name}` is a flag: write `{name}` to turn it on, or `{name} = false`",
            name = s.name
        )),
    }
}

/// `"IP:PORT"` or `["IP:PORT", ...]`. Each string is checked on its own, so a bad address in a
/// list is reported at that address.
fn addresses<K>(cx: &mut Ctxt, s: &Setting<K>, expr: &Expr) -> Option<Value> {
    let one = |text: &LitStr| -> Result<Vec<String>, String> {
        match s.parse_text(&text.value()) {
            Ok(Value::Addresses(list)) => Ok(list),
            Ok(_) => Ok(Vec::new()),
            Err(message) => Err(message),
        }
    };
    let list = match (literal(expr), expr) {
        (Some(Lit::Str(text)), _) => match one(text) {
            Ok(list) => list,
            Err(message) => {
                cx.error_spanned_by(text, message);
                return None;
            }
        },
        (Some(Lit::Int(port)), _) => {
            cx.error_spanned_by(
                port,
                format!(
                    "`{port}` is a port, not an address: write `listen = \"127.0.0.1:{port}\"` \
                     (or \"0.0.0.0:{port}\" for every interface)"
                ),
            );
            return None;
        }
        (_, Expr::Array(array)) => {
            let mut all = Vec::new();
            let mut ok = true;
            for elem in &array.elems {
                match literal(elem) {
                    Some(Lit::Str(text)) => match one(text) {
                        Ok(list) => all.extend(list),
                        Err(message) => {
                            cx.error_spanned_by(text, message);
                            ok = false;
                        }
                    },
                    _ => {
                        cx.error_spanned_by(
                            elem,
                            "each address is a string: write it as `\"127.0.0.1:8080\"`",
                        );
                        ok = false;
                    }
                }
            }
            if !ok {
                return None;
            }
            all
        }
        _ => {
            cx.error_spanned_by(
                expr,
                format!(
                    "{}: write `listen = \"127.0.0.1:8080\"`, or a list such as \
                     `listen = [\"127.0.0.1:8080\", \"[::1]:8080\"]`",
                    wrong_type_head(s, expr)
                ),
            );
            return None;
        }
    };
    Some(Value::Addresses(list))
}

/// The first half of [`wrong_type`]'s message, for kinds with a fix of their own.
fn wrong_type_head<K>(s: &Setting<K>, expr: &Expr) -> String {
    match literal(expr).or_else(|| negated(expr)) {
        Some(_) => format!("`{}` takes {}", s.name, s.kind_name()),
        None => format!(
            "`{}` takes {} written out (the attribute is read while the program compiles, \
             before constants and expressions can be evaluated)",
            s.name,
            s.kind_name()
        ),
    }
}

/// Whether `expr` is the bare word `off`, which a limit that may be off takes.
fn is_off<K>(s: &Setting<K>, expr: &Expr) -> bool {
    let off_allowed = matches!(s.kind, Kind::Duration { off: true, .. } | Kind::Size { off: true, .. });
    off_allowed && matches!(expr, Expr::Path(p) if p.path.is_ident("off"))
}

/// `"30s"`, `30s`, or a whole number of seconds; `off` where the limit may be off.
fn duration<K>(s: &Setting<K>, expr: &Expr) -> Result<Value, String> {
    if is_off(s, expr) {
        return Ok(Value::Duration(Duration::ZERO));
    }
    if matches!(expr, Expr::Path(p) if p.path.is_ident("off")) {
        return Err(s.cannot_be_off());
    }
    if let Some(lit) = negated(expr) {
        if matches!(lit, Lit::Int(_) | Lit::Float(_)) {
            return Err(format!("`-{}` is negative: {}", lit_text(lit), s.rule()));
        }
    }
    match literal(expr) {
        Some(Lit::Str(text)) => s.parse_text(&text.value()),
        Some(Lit::Int(int)) if int.suffix().is_empty() => match int.base10_parse::<u64>() {
            Ok(secs) => Ok(Value::Duration(Duration::from_secs(secs))),
            Err(_) => Err(format!(
                "{} is absurdly large: {}",
                int.base10_digits(),
                s.rule()
            )),
        },
        // `30s` lexes as the integer 30 with the suffix `s`: read it as the duration it looks like.
        Some(Lit::Int(int)) => {
            parse_duration(&format!("{}{}", int.base10_digits(), int.suffix())).map(Value::Duration)
        }
        // The rule book names a fraction as one, with the same time in a smaller unit.
        Some(Lit::Float(f)) => parse_duration(&format!("{}{}", f.base10_digits(), f.suffix())).map(Value::Duration),
        _ => Err(format!(
            "{}: write `{}`",
            wrong_type_head(s, expr),
            example(s)
        )),
    }
}

/// `"512M"`, `512M` (an integer with a suffix), or a whole number of bytes.
fn size<K>(s: &Setting<K>, expr: &Expr) -> Result<Value, String> {
    if is_off(s, expr) {
        return Ok(Value::Size(0));
    }
    if let Some(lit) = negated(expr) {
        if matches!(lit, Lit::Int(_) | Lit::Float(_)) {
            return Err(format!("`-{}` is negative: {}", lit_text(lit), s.rule()));
        }
    }
    match literal(expr) {
        Some(Lit::Str(text)) => s.parse_text(&text.value()),
        Some(Lit::Int(int)) => {
            let v = s.parse_text(&format!("{}{}", int.base10_digits(), int.suffix()))?;
            s.check(&v).map(|()| v)
        }
        Some(Lit::Float(f)) => s.parse_text(&format!("{}{}", f.base10_digits(), f.suffix())),
        _ => Err(format!("{}: write `{}`", wrong_type_head(s, expr), example(s))),
    }
}

/// One of a few words, bare or as a string (`model = oneshot`, `model = "oneshot"`).
fn choice<K>(s: &Setting<K>, words: &[&str], expr: &Expr) -> Result<Value, String> {
    let word = match (expr, literal(expr)) {
        (Expr::Path(p), _) => p.path.get_ident().map(|i| i.to_string()),
        (_, Some(Lit::Str(text))) => Some(text.value()),
        _ => None,
    };
    match word {
        Some(w) => s.parse_text(&w),
        None => Err(format!("`{}` is one of {}: write `{}`", s.name, words.join(", "), example(s))),
    }
}

/// An address as a string, or `off`.
fn endpoint<K>(s: &Setting<K>, expr: &Expr) -> Result<Value, String> {
    match (expr, literal(expr)) {
        (Expr::Path(p), _) if p.path.is_ident("off") => s.parse_text("off"),
        (_, Some(Lit::Str(text))) => s.parse_text(&text.value()),
        _ => Err(format!("{}, as a string (or `off`): write `{}`", wrong_type_head(s, expr), example(s))),
    }
}

/// A path or a name, as a string.
fn text<K>(s: &Setting<K>, expr: &Expr) -> Result<Value, String> {
    match literal(expr) {
        Some(Lit::Str(text)) => s.parse_text(&text.value()),
        _ => Err(format!(
            "{}, as a string: write `{}`",
            wrong_type_head(s, expr),
            example(s)
        )),
    }
}

// ---- the signature ---------------------------------------------------------------------------

/// `fn main` if the attribute is on a function it can turn into the daemon's `main`.
pub fn signature<'a>(cx: &mut Ctxt, item: &'a Item) -> Option<&'a ItemFn> {
    let Item::Fn(main) = item else {
        let (what, tokens) = item::describe(item);
        cx.error_spanned_by(
            tokens,
            format!("#[daemon::main] goes on `fn main()`, not on {what}: move it to the program's `fn main()`"),
        );
        return None;
    };
    let mut broken = false;
    let mut error = |cx: &mut Ctxt, tokens: TokenStream, message: String| {
        cx.error_spanned_by(tokens, message);
        broken = true;
    };
    let sig = &main.sig;
    if sig.ident != "main" {
        error(
            cx,
            sig.ident.to_token_stream(),
            format!(
                "#[daemon::main] goes on `fn main()`, not on `fn {}`: rename it to `main`, or move \
                 the attribute to the program's `fn main()`",
                sig.ident
            ),
        );
    }
    if let Some(asyncness) = &sig.asyncness {
        error(
            cx,
            asyncness.to_token_stream(),
            "`fn main` cannot be async: its body runs in the manager, which forks the workers, and \
             an async runtime does not survive a fork; remove `async`, and put async code in the \
             #[daemon::on_accept] handler, which runs on each worker's own runtime"
                .to_string(),
        );
    }
    if let Some((what, tokens)) = item::qualifier(sig) {
        error(
            cx,
            tokens,
            format!("`fn main` cannot be `{what}`: remove it"),
        );
    }
    if sig.constness.is_some() {
        error(
            cx,
            sig.constness.to_token_stream(),
            "`fn main` cannot be `const`: remove it".into(),
        );
    }
    if let Some(generics) = item::generics(sig) {
        error(
            cx,
            generics,
            "`fn main` cannot be generic: remove the type parameters".into(),
        );
    }
    // At most one parameter: the program's own settings, a type that derives `clap::Args`.
    let mut inputs = sig.inputs.iter();
    if let Some(first) = inputs.next() {
        match first {
            syn::FnArg::Typed(_) => {}
            syn::FnArg::Receiver(r) => error(cx, r.to_token_stream(), "`fn main` cannot take `self`: remove it".into()),
        }
    }
    let extra: Vec<_> = inputs.collect();
    if !extra.is_empty() {
        let tokens = extra.iter().map(|a| a.to_token_stream()).collect::<TokenStream>();
        error(
            cx,
            tokens,
            "`fn main` takes one parameter at most: the program's own settings, a type that derives \
             `clap::Args` (`fn main(settings: Settings)`); the daemon reads the rest of its command line \
             itself (run the program with `--help` to see it)"
                .into(),
        );
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if !returns_nothing_or_result(ty) {
            error(
                cx,
                ty.to_token_stream(),
                "`fn main` returns nothing or `Result<(), E>` (where E: Debug): remove this return \
                 type, or return a `Result`, whose `Err` stops the daemon before it forks"
                    .into(),
            );
        }
    }
    (!broken).then_some(main)
}

/// `()`, or a path type whose last segment is `Result` (`Result<(), E>`, `io::Result<()>`,
/// `anyhow::Result<()>`). The runtime's `MainOutput` bound checks the rest, at this type.
fn returns_nothing_or_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => {
            p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Result")
        }
        Type::Paren(p) => returns_nothing_or_result(&p.elem),
        Type::Group(g) => returns_nothing_or_result(&g.elem),
        other => item::is_unit(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    /// The settings and the error messages for an attribute's arguments.
    fn check(tokens: TokenStream) -> (Vec<(Key, Value)>, Vec<String>) {
        let mut cx = Ctxt::new();
        let parsed = match crate::args::parse(tokens) {
            Ok(a) => a,
            Err(e) => return (Vec::new(), vec![e.to_string()]),
        };
        let settings = args(&mut cx, &parsed);
        (settings.values, cx.messages())
    }

    fn errors(tokens: TokenStream) -> Vec<String> {
        check(tokens).1
    }

    fn one_error(tokens: TokenStream) -> String {
        let errors = errors(tokens);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn the_signature_example_is_valid() {
        let (values, errors) = check(quote!(prefork = 4, max_spare = 3, detach));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            values,
            [
                (Key::Prefork, Value::Count(4)),
                (Key::MaxSpare, Value::Count(3)),
                (Key::Detach, Value::Flag(true)),
            ]
        );
    }

    #[test]
    fn prefork_takes_auto_as_a_word_or_a_string() {
        for tokens in [quote!(prefork = auto), quote!(prefork = "auto")] {
            let (values, errors) = check(tokens);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(values, [(Key::Prefork, Value::Text("auto".into()))]);
        }
        // auto with max_children: no relation to break (auto is at most max_children).
        let (_, errors) = check(quote!(prefork = auto, max_children = 1));
        assert!(errors.is_empty(), "{errors:?}");
        assert!(one_error(quote!(min_spare = auto)).contains("min_spare"));
    }

    #[test]
    fn every_kind_of_value_reads() {
        let (values, errors) = check(quote!(
            listen = ["127.0.0.1:1", "[::1]:2"],
            graceful_timeout = "500ms",
            requests = 0,
            foreground = false,
            pid_file = "/run/x.pid",
            user = "www-data",
            crate = "::daemon",
        ));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            values[0].1,
            Value::Addresses(vec!["127.0.0.1:1".into(), "[::1]:2".into()])
        );
        assert_eq!(values[1].1, Value::Duration(Duration::from_millis(500)));
        assert_eq!(values[3].1, Value::Flag(false));
        assert_eq!(values[4].1, Value::Text("/run/x.pid".into()));
    }

    #[test]
    fn durations_read_as_seconds_strings_or_suffixes() {
        for (tokens, ms) in [
            (quote!(graceful_timeout = 10), 10_000),
            (quote!(graceful_timeout = "2m"), 120_000),
            (quote!(graceful_timeout = 30s), 30_000),
            (quote!(graceful_timeout = 250ms), 250),
        ] {
            let (values, errors) = check(tokens);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(values[0].1, Value::Duration(Duration::from_millis(ms)));
        }
    }

    #[test]
    fn unknown_keys_suggest_the_near_one() {
        assert_eq!(
            one_error(quote!(max_spares = 3)),
            "unknown key `max_spares`; did you mean `max_spare`?"
        );
        assert_eq!(
            one_error(quote!(workers = 3)),
            "unknown key `workers`; did you mean `prefork`? (`--workers` is its command-line flag)"
        );
        assert_eq!(
            one_error(quote!(DAEMON_CLIENTS = 3)),
            "unknown key `DAEMON_CLIENTS`; did you mean `clients`? (`DAEMON_CLIENTS` is its environment variable)"
        );
        assert_eq!(
            one_error(quote!(crates = "x")),
            "unknown key `crates`; did you mean `crate`?"
        );
    }

    #[test]
    fn unknown_keys_without_a_near_one_list_the_keys() {
        let e = one_error(quote!(colour = 3));
        assert!(
            e.starts_with("unknown key `colour`: #[daemon::main] takes `prefork`"),
            "{e}"
        );
        assert!(
            e.contains("`graceful_timeout`") && e.ends_with("and `crate`"),
            "{e}"
        );
    }

    #[test]
    fn a_key_set_twice_points_at_the_second() {
        let (values, errors) = check(quote!(prefork = 4, prefork = 8));
        assert_eq!(
            errors,
            ["`prefork` is set twice: remove one of them (the first is `prefork = 4`)"]
        );
        assert_eq!(values, [(Key::Prefork, Value::Count(4))]);
    }

    #[test]
    fn counts_refuse_other_types() {
        assert!(one_error(quote!(prefork = "4"))
            .contains("is a string, not a number: remove the quotes, `prefork = 4`"));
        assert!(one_error(quote!(prefork = "many"))
            .contains("`prefork` takes a whole number, not a string"));
        assert_eq!(
            one_error(quote!(prefork = -1)),
            "`-1` is negative: prefork must be between 1 and 4096, or auto"
        );
        assert_eq!(
            one_error(quote!(prefork = 2.5)),
            "`2.5` is not a whole number: prefork must be between 1 and 4096, or auto"
        );
        assert_eq!(
            one_error(quote!(prefork = true)),
            "`true` is not a whole number: prefork must be between 1 and 4096, or auto"
        );
        assert!(one_error(quote!(prefork = WORKERS)).contains("before constants and expressions"));
        assert!(one_error(quote!(prefork = [4])).contains("not a list"));
        assert!(one_error(quote!(prefork)).contains("`prefork` needs a value: write `prefork = 4`"));
        assert!(one_error(quote!(prefork = 99999999999999999999999)).contains("absurdly large"));
    }

    #[test]
    fn bounds_come_from_the_rule_book() {
        assert_eq!(
            one_error(quote!(prefork = 0)),
            "0 is too few: prefork must be between 1 and 4096, or auto"
        );
        assert_eq!(
            one_error(quote!(max_children = 100000)),
            "100000 is absurdly large: max_children must be between 1 and 4096"
        );
        assert!(one_error(quote!(graceful_timeout = "2d")).contains("not a unit of time"));
        assert!(one_error(quote!(graceful_timeout = "48h")).contains("must be between 0s and 24h"));
        assert!(one_error(quote!(graceful_timeout = 1.5)).contains("1500ms"));
        assert!(one_error(quote!(graceful_timeout = -3)).contains("negative"));
        assert!(one_error(quote!(user = "no body")).contains("is not a user or group name"));
        assert!(one_error(quote!(pid_file = 3))
            .contains("as a string: write `pid_file = \"/run/app.pid\"`"));
    }

    #[test]
    fn flags_are_bare_or_bool() {
        assert!(errors(quote!(detach = true, foreground = false)).is_empty());
        assert_eq!(
            one_error(quote!(detach = "yes")),
            "`detach` is a flag: write `detach` to turn it on, or `detach = false`"
        );
    }

    #[test]
    fn addresses_are_checked_one_by_one() {
        assert!(one_error(quote!(listen = "localhost"))
            .contains("`localhost` is not an address to listen on: it has no port"));
        let errors = errors(quote!(
            listen = ["127.0.0.1:1", "nowhere", "1.2.3.4:99999", 5]
        ));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[1].contains("port is not a number between 0 and 65535"));
        assert!(errors[2].contains("each address is a string"));
        assert!(one_error(quote!(listen = 8080))
            .contains("`8080` is a port, not an address: write `listen = \"127.0.0.1:8080\"`"));
        assert!(one_error(quote!(listen = [])).contains("no address given"));
        assert!(one_error(quote!(listen = ADDR)).contains("or a list such as"));
    }

    #[test]
    fn relations_are_the_rule_books() {
        let e = one_error(quote!(min_spare = 5, max_spare = 3));
        assert!(
            e.starts_with("min_spare (5) is greater than max_spare (3)")
                && e.contains("make min_spare at most max_spare"),
            "{e}"
        );
        let e = one_error(quote!(prefork = 9, max_children = 8));
        assert!(e.contains("make prefork at most max_children"), "{e}");
        let e = one_error(quote!(detach, foreground));
        assert_eq!(
            e,
            "detach and foreground contradict each other: keep one of them"
        );
        // A value that breaks its own rule takes no part in the relations.
        assert_eq!(errors(quote!(prefork = 0, max_children = 8)).len(), 1);
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errors = errors(quote!(
            prefork = 0,
            max_spares = 3,
            listen = "x",
            detach = 1,
            prefork = 2
        ));
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    fn signature_errors(item: Item) -> (bool, Vec<String>) {
        let mut cx = Ctxt::new();
        let ok = signature(&mut cx, &item).is_some();
        (ok, cx.messages())
    }

    #[test]
    fn main_may_return_nothing_or_a_result() {
        for item in [
            parse_quote!(
                fn main() {}
            ),
            parse_quote!(
                fn main() -> () {}
            ),
            parse_quote!(
                pub fn main() -> Result<(), std::io::Error> {
                    Ok(())
                }
            ),
            parse_quote!(
                fn main() -> std::io::Result<()> {
                    Ok(())
                }
            ),
        ] {
            let (ok, errors) = signature_errors(item);
            assert!(ok && errors.is_empty(), "{errors:?}");
        }
        let (ok, errors) = signature_errors(parse_quote!(
            fn main() -> i32 {
                0
            }
        ));
        assert!(!ok && errors[0].contains("returns nothing or `Result<(), E>`"));
    }

    #[test]
    fn main_must_be_a_plain_fn_main() {
        let cases: [(Item, &str); 7] = [
            (
                parse_quote!(
                    fn start() {}
                ),
                "goes on `fn main()`, not on `fn start`: rename it",
            ),
            (
                parse_quote!(
                    async fn main() {}
                ),
                "`fn main` cannot be async",
            ),
            (
                parse_quote!(
                    fn main(settings: Settings, argc: i32) {}
                ),
                "`fn main` takes one parameter at most",
            ),
            (
                parse_quote!(
                    fn main<T>() {}
                ),
                "`fn main` cannot be generic",
            ),
            (
                parse_quote!(
                    unsafe fn main() {}
                ),
                "`fn main` cannot be `unsafe`",
            ),
            (
                parse_quote!(
                    struct Server;
                ),
                "goes on `fn main()`, not on a struct",
            ),
            (
                parse_quote!(
                    mod server {}
                ),
                "not on a module",
            ),
        ];
        for (item, want) in cases {
            let (ok, errors) = signature_errors(item);
            assert!(!ok, "{want}");
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains(want), "{errors:?} should contain {want}");
        }
        let (_, errors) = signature_errors(parse_quote!(
            async fn run<T>(x: T, y: T) {}
        ));
        assert_eq!(errors.len(), 4, "{errors:?}");
    }
}
