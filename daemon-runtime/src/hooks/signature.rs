//! Signature checks for the generated code: each attribute's wrapper calls the user's function
//! through a trait whose `on_unimplemented` message names the signature to write, at the user's
//! span.

use std::future::Future;
use std::io;
use std::net::TcpStream;

use crate::net::Stream;

use super::{BoxFuture, Reaped, Spawned, WorkFuture};
use crate::child::Child;
use crate::program::MainOutput;
use crate::worker::connection::Connection;
use crate::worker::work::{Supervised, Task};


/// Implemented by every `async fn(daemon::Connection) -> std::io::Result<()>`.
#[diagnostic::on_unimplemented(
    message = "`#[daemon::on_accept]` on an async fn needs the signature `async fn(daemon::Connection) -> std::io::Result<()>`",
    label = "this handler does not take a `daemon::Connection` and return `std::io::Result<()>`",
    note = "a plain (non-async) handler takes a `daemon::net::Stream` or a `std::net::TcpStream` instead"
)]
pub trait AsyncAcceptHandler<Args> {
    fn call(self, conn: Connection) -> BoxFuture;
}

impl<F, Fut> AsyncAcceptHandler<(Connection,)> for F
where
    F: FnOnce(Connection) -> Fut,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    fn call(self, conn: Connection) -> BoxFuture {
        Box::pin(self(conn))
    }
}

/// A type no value has. The second impls below, over it, make a mismatched handler a plain
/// "trait not implemented" (which shows the messages above) instead of rustc's closure-argument
/// mismatch, which cannot carry them; no function can ever take a `Never`.
pub enum Never {}

impl<F, Fut> AsyncAcceptHandler<(Never,)> for F
where
    F: FnOnce(Never) -> Fut,
    Fut: Future<Output = io::Result<()>> + 'static,
{
    fn call(self, _conn: Connection) -> BoxFuture {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Implemented by every `fn(daemon::net::Stream) -> std::io::Result<()>` (any listener) and
/// every `fn(std::net::TcpStream) -> std::io::Result<()>` (TCP listeners only).
#[diagnostic::on_unimplemented(
    message = "`#[daemon::on_accept]` on a plain fn needs the signature `fn(daemon::net::Stream) -> std::io::Result<()>` (or `fn(std::net::TcpStream) -> std::io::Result<()>`)",
    label = "this handler does not take a `daemon::net::Stream` (or a `std::net::TcpStream`) and return `std::io::Result<()>`",
    note = "an async handler takes a `daemon::Connection` instead"
)]
pub trait SyncAcceptHandler<Args> {
    fn call(self, stream: Stream) -> io::Result<()>;
}

impl<F> SyncAcceptHandler<(Stream,)> for F
where
    F: FnOnce(Stream) -> io::Result<()>,
{
    fn call(self, stream: Stream) -> io::Result<()> {
        self(stream)
    }
}

impl<F> SyncAcceptHandler<(TcpStream,)> for F
where
    F: FnOnce(TcpStream) -> io::Result<()>,
{
    fn call(self, stream: Stream) -> io::Result<()> {
        match stream {
            Stream::Tcp(tcp) => self(tcp),
            // Refused at start (`TcpProbe`): never reached.
            other => Err(io::Error::new(io::ErrorKind::Unsupported, format!("a TcpStream handler was given {other:?}"))),
        }
    }
}

impl<F> SyncAcceptHandler<(Never,)> for F
where
    F: FnOnce(Never) -> io::Result<()>,
{
    fn call(self, _stream: Stream) -> io::Result<()> {
        Ok(())
    }
}

/// Implemented by `fn(&daemon::Child) -> R` and `fn() -> R`: the shapes of `on_child` and
/// `on_shutdown`. `Args` tells the two shapes apart; `R` is what the hook returns (`()` for
/// `on_shutdown`; for `on_child`, nothing, a value the worker keeps, or a `Result` of one).
#[diagnostic::on_unimplemented(
    message = "a `#[daemon::on_child]` or `#[daemon::on_shutdown]` hook needs the signature `fn(&daemon::Child)` or `fn()`",
    label = "this hook does not take `&daemon::Child` (or nothing)",
    note = "an on_child hook may return a value for the worker to keep (`daemon::state::<T>()` gives it back), or a `Result` of one; an on_shutdown hook returns nothing"
)]
pub trait ChildHook<Args, R> {
    fn call(self, child: &Child) -> R;
}

impl<F, R> ChildHook<(&'static Child,), R> for F
where
    F: FnOnce(&Child) -> R,
{
    fn call(self, child: &Child) -> R {
        self(child)
    }
}

impl<F, R> ChildHook<(), R> for F
where
    F: FnOnce() -> R,
{
    fn call(self, _child: &Child) -> R {
        self()
    }
}

/// Implemented by the `Result`s an `on_child` hook may return: `Ok` is the value the worker
/// keeps (`()`: none), `Err` fails its start.
#[diagnostic::on_unimplemented(
    message = "an `#[daemon::on_child]` hook returning a `Result` needs an error that is `Debug`, and a value that is `'static`",
    label = "this is not a `Result<T, E>` with `E: Debug` and `T: 'static`"
)]
pub trait ChildResult {
    fn keep(self, hook: &'static str) -> Result<(), String>;
}

impl<T: 'static, E: std::fmt::Debug> ChildResult for Result<T, E> {
    fn keep(self, hook: &'static str) -> Result<(), String> {
        match self {
            Ok(value) => crate::worker::state::keep(hook, value),
            Err(e) => Err(format!("the on_child hook {hook} failed: {e:?}")),
        }
    }
}

/// Calls an async accept handler through [`AsyncAcceptHandler`].
pub fn call_async_accept<Args, H: AsyncAcceptHandler<Args>>(handler: H, conn: Connection) -> BoxFuture {
    handler.call(conn)
}

/// Calls a plain accept handler through [`SyncAcceptHandler`].
pub fn call_sync_accept<Args, H: SyncAcceptHandler<Args>>(handler: H, stream: Stream) -> io::Result<()> {
    handler.call(stream)
}

/// Whether a plain accept handler takes a `TcpStream` (and so serves TCP only), for its
/// registration: `(&&TcpProbe(handler)).tcp_only()` with [`TakesTcp`] and [`TakesAny`] in scope
/// is true for a `fn(TcpStream)` and false for anything else. Method lookup tries the
/// reference's impl first and falls back without an error, so a handler of the wrong shape is
/// reported once, by the call.
pub struct TcpProbe<F>(pub F);

pub trait TakesTcp {
    fn tcp_only(&self) -> bool {
        true
    }
}

impl<F: FnOnce(TcpStream) -> io::Result<()>> TakesTcp for &TcpProbe<F> {}

pub trait TakesAny {
    fn tcp_only(&self) -> bool {
        false
    }
}

impl<F> TakesAny for TcpProbe<F> {}

/// Calls an `on_child` or `on_shutdown` hook that returns nothing, through [`ChildHook`].
pub fn call_child_hook<Args, H: ChildHook<Args, ()>>(hook: H, child: &Child) {
    hook.call(child)
}

/// Calls an `on_child` hook that returns nothing, for the worker: it cannot fail.
pub fn call_child_unit<Args, H: ChildHook<Args, ()>>(hook: H, child: &Child) -> Result<(), String> {
    hook.call(child);
    Ok(())
}

/// Calls an `on_child` hook that returns a value: the worker keeps it, by its type.
pub fn call_child_state<Args, T: 'static, H: ChildHook<Args, T>>(hook: H, name: &'static str, child: &Child) -> Result<(), String> {
    crate::worker::state::keep(name, hook.call(child))
}

/// Calls an `on_child` hook that returns a `Result`: `Ok`'s value the worker keeps, `Err`
/// fails its start with the reason.
pub fn call_child_result<Args, R: ChildResult, H: ChildHook<Args, R>>(hook: H, name: &'static str, child: &Child) -> Result<(), String> {
    hook.call(child).keep(name)
}

/// The two traits a supervised or task function is called through (plain: `fn(&C)`; async:
/// `async fn(C)`; each returning `()` or `Result<(), E: Debug>`), with their own diagnostics.
macro_rules! work_signatures {
    ($sync:ident, $async_:ident, $context:ty,
     sync: $sync_message:literal, $sync_label:literal, $sync_note:literal,
     async: $async_message:literal, $async_label:literal, $async_note:literal) => {
        #[doc = concat!("Implemented by `fn(&", stringify!($context), ")` returning `()` or `Result<(), E: Debug>`.")]
        #[diagnostic::on_unimplemented(message = $sync_message, label = $sync_label, note = $sync_note)]
        pub trait $sync<Args> {
            fn call(self, ctx: &$context) -> Result<(), String>;
        }

        impl<F, R> $sync<(&'static $context,)> for F
        where
            F: FnOnce(&$context) -> R,
            R: MainOutput,
        {
            fn call(self, ctx: &$context) -> Result<(), String> {
                self(ctx).into_result()
            }
        }

        impl<F, R> $sync<(Never,)> for F
        where
            F: FnOnce(Never) -> R,
        {
            fn call(self, _ctx: &$context) -> Result<(), String> {
                Ok(())
            }
        }

        #[doc = concat!("Implemented by `async fn(", stringify!($context), ")` returning `()` or `Result<(), E: Debug>`.")]
        #[diagnostic::on_unimplemented(message = $async_message, label = $async_label, note = $async_note)]
        pub trait $async_<Args> {
            fn call(self, ctx: $context) -> WorkFuture;
        }

        impl<F, Fut> $async_<($context,)> for F
        where
            F: FnOnce($context) -> Fut,
            Fut: Future + 'static,
            Fut::Output: MainOutput,
        {
            fn call(self, ctx: $context) -> WorkFuture {
                let fut = self(ctx);
                Box::pin(async move { fut.await.into_result() })
            }
        }

        impl<F, Fut> $async_<(Never,)> for F
        where
            F: FnOnce(Never) -> Fut,
        {
            fn call(self, _ctx: $context) -> WorkFuture {
                Box::pin(std::future::ready(Ok(())))
            }
        }
    };
}

work_signatures!(SyncSupervised, AsyncSupervised, Supervised,
    sync: "`#[daemon::supervised]` on a plain fn needs the signature `fn(&daemon::Supervised)` (returning `()` or `Result<(), E>`)",
        "this function does not take `&daemon::Supervised`",
        "an async supervised function takes a `daemon::Supervised` by value: `async fn run(ctx: daemon::Supervised)`",
    async: "`#[daemon::supervised]` on an async fn needs the signature `async fn(daemon::Supervised)` (returning `()` or `Result<(), E>`)",
        "this function does not take a `daemon::Supervised`",
        "a plain supervised function takes it by reference: `fn run(ctx: &daemon::Supervised)`"
);

work_signatures!(SyncTask, AsyncTask, Task,
    sync: "`#[daemon::task]` on a plain fn needs the signature `fn(&daemon::Task)` (returning `()` or `Result<(), E>`)",
        "this function does not take `&daemon::Task`",
        "an async task function takes a `daemon::Task` by value: `async fn work(ctx: daemon::Task)`",
    async: "`#[daemon::task]` on an async fn needs the signature `async fn(daemon::Task)` (returning `()` or `Result<(), E>`)",
        "this function does not take a `daemon::Task`",
        "a plain task function takes it by reference: `fn work(ctx: &daemon::Task)`"
);

/// Implemented by `fn()`: `on_ready`, `on_reload` and `on_exit` hooks.
#[diagnostic::on_unimplemented(
    message = "this manager hook needs the signature `fn()`",
    label = "this hook takes something, or returns something: it is `fn()`"
)]
pub trait ManagerHookFn<Args> {
    fn call(self);
}

impl<F: FnOnce()> ManagerHookFn<()> for F {
    fn call(self) {
        self()
    }
}

/// Implemented by `fn(&daemon::Spawned)` and `fn()`: `on_spawn` hooks.
#[diagnostic::on_unimplemented(
    message = "`#[daemon::on_spawn]` needs the signature `fn(&daemon::Spawned)` or `fn()`",
    label = "this hook does not take `&daemon::Spawned` (or nothing) and return `()`"
)]
pub trait SpawnHook<Args> {
    fn call(self, spawned: &Spawned);
}

impl<F: FnOnce(&Spawned)> SpawnHook<(&'static Spawned,)> for F {
    fn call(self, spawned: &Spawned) {
        self(spawned)
    }
}

impl<F: FnOnce()> SpawnHook<()> for F {
    fn call(self, _spawned: &Spawned) {
        self()
    }
}

/// Implemented by `fn(&daemon::Reaped)` and `fn()`: `on_reap` hooks.
#[diagnostic::on_unimplemented(
    message = "`#[daemon::on_reap]` needs the signature `fn(&daemon::Reaped)` or `fn()`",
    label = "this hook does not take `&daemon::Reaped` (or nothing) and return `()`"
)]
pub trait ReapHook<Args> {
    fn call(self, reaped: &Reaped);
}

impl<F: FnOnce(&Reaped)> ReapHook<(&'static Reaped,)> for F {
    fn call(self, reaped: &Reaped) {
        self(reaped)
    }
}

impl<F: FnOnce()> ReapHook<()> for F {
    fn call(self, _reaped: &Reaped) {
        self()
    }
}

pub fn call_sync_supervised<Args, H: SyncSupervised<Args>>(h: H, ctx: &Supervised) -> Result<(), String> {
    h.call(ctx)
}

pub fn call_async_supervised<Args, H: AsyncSupervised<Args>>(h: H, ctx: Supervised) -> WorkFuture {
    h.call(ctx)
}

pub fn call_sync_task<Args, H: SyncTask<Args>>(h: H, ctx: &Task) -> Result<(), String> {
    h.call(ctx)
}

pub fn call_async_task<Args, H: AsyncTask<Args>>(h: H, ctx: Task) -> WorkFuture {
    h.call(ctx)
}

pub fn call_manager_hook<Args, H: ManagerHookFn<Args>>(h: H) {
    h.call()
}

pub fn call_spawn_hook<Args, H: SpawnHook<Args>>(h: H, spawned: &Spawned) {
    h.call(spawned)
}

pub fn call_reap_hook<Args, H: ReapHook<Args>>(h: H, reaped: &Reaped) {
    h.call(reaped)
}
