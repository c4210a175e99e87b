//! The user's hooks, registered by the attribute macros with `inventory` wherever they are, and
//! collected once at start-up.
//!
//! The traits at the end exist for the generated code: each wraps the user's function in a bound
//! whose `on_unimplemented` message names the signature the attribute needs, at the user's span.

use std::future::Future;
use std::io;
use std::net::TcpStream;
use std::pin::Pin;

use crate::child::Child;
use crate::worker::connection::Connection;

/// The future an async `on_accept` handler returns, boxed so the runtime holds one type.
pub type BoxFuture = Pin<Box<dyn Future<Output = io::Result<()>> + 'static>>;

/// A function registered with `#[daemon::on_child]`: runs in each new worker after fork.
pub struct OnChild {
    pub name: &'static str,
    pub module: &'static str,
    pub run: fn(&Child),
}

/// A function registered with `#[daemon::on_shutdown]`: runs in a worker as it stops.
pub struct OnShutdown {
    pub name: &'static str,
    pub module: &'static str,
    pub run: fn(&Child),
}

/// How an `on_accept` handler serves connections.
#[derive(Clone, Copy)]
pub enum Handler {
    /// `async fn(Connection) -> io::Result<()>`: the worker runs its own current-thread tokio
    /// runtime and serves up to `clients` connections at once.
    Async(fn(Connection) -> BoxFuture),
    /// `fn(TcpStream) -> io::Result<()>`: one connection at a time per worker.
    Sync(fn(TcpStream) -> io::Result<()>),
}

/// The function registered with `#[daemon::on_accept]`. Exactly one per program.
pub struct OnAccept {
    pub name: &'static str,
    pub module: &'static str,
    pub handler: Handler,
}

impl OnChild {
    pub const fn new(name: &'static str, module: &'static str, run: fn(&Child)) -> OnChild {
        OnChild { name, module, run }
    }
}

impl OnShutdown {
    pub const fn new(name: &'static str, module: &'static str, run: fn(&Child)) -> OnShutdown {
        OnShutdown { name, module, run }
    }
}

impl OnAccept {
    pub const fn asynchronous(
        name: &'static str,
        module: &'static str,
        f: fn(Connection) -> BoxFuture,
    ) -> OnAccept {
        OnAccept { name, module, handler: Handler::Async(f) }
    }

    pub const fn blocking(
        name: &'static str,
        module: &'static str,
        f: fn(TcpStream) -> io::Result<()>,
    ) -> OnAccept {
        OnAccept { name, module, handler: Handler::Sync(f) }
    }
}

inventory::collect!(OnChild);
inventory::collect!(OnShutdown);
inventory::collect!(OnAccept);

/// What the program registered, collected once.
pub(crate) struct Hooks {
    pub on_child: Vec<&'static OnChild>,
    pub on_shutdown: Vec<&'static OnShutdown>,
    pub on_accept: &'static OnAccept,
}

/// Why the registered hooks cannot make a daemon.
#[derive(Debug)]
pub enum HookError {
    NoAcceptHandler,
    TwoAcceptHandlers(Vec<String>),
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookError::NoAcceptHandler => f.write_str(
                "no #[daemon::on_accept] handler: add one, such as \
                 `#[daemon::on_accept] async fn serve(conn: daemon::Connection) -> std::io::Result<()>`",
            ),
            HookError::TwoAcceptHandlers(names) => write!(
                f,
                "{} #[daemon::on_accept] handlers ({}): a program has exactly one; remove all but one",
                names.len(),
                names.join(", ")
            ),
        }
    }
}

impl std::error::Error for HookError {}

impl Hooks {
    pub(crate) fn collect() -> Result<Hooks, HookError> {
        let accepts: Vec<&'static OnAccept> = inventory::iter::<OnAccept>.into_iter().collect();
        let on_accept = match accepts.as_slice() {
            [] => return Err(HookError::NoAcceptHandler),
            [one] => *one,
            many => {
                let mut names: Vec<String> =
                    many.iter().map(|h| format!("{}::{}", h.module, h.name)).collect();
                names.sort();
                return Err(HookError::TwoAcceptHandlers(names));
            }
        };
        // inventory gives no order; run hooks in a stable one (module, then name).
        let mut on_child: Vec<&'static OnChild> = inventory::iter::<OnChild>.into_iter().collect();
        on_child.sort_by_key(|h| (h.module, h.name));
        let mut on_shutdown: Vec<&'static OnShutdown> =
            inventory::iter::<OnShutdown>.into_iter().collect();
        on_shutdown.sort_by_key(|h| (h.module, h.name));
        Ok(Hooks { on_child, on_shutdown, on_accept })
    }
}

// ---- signature checks for the generated code -------------------------------------------------

/// Implemented by every `async fn(daemon::Connection) -> std::io::Result<()>`.
#[diagnostic::on_unimplemented(
    message = "`#[daemon::on_accept]` on an async fn needs the signature `async fn(daemon::Connection) -> std::io::Result<()>`",
    label = "this handler does not take a `daemon::Connection` and return `std::io::Result<()>`",
    note = "a plain (non-async) handler takes a `std::net::TcpStream` instead"
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

/// Implemented by every `fn(std::net::TcpStream) -> std::io::Result<()>`.
#[diagnostic::on_unimplemented(
    message = "`#[daemon::on_accept]` on a plain fn needs the signature `fn(std::net::TcpStream) -> std::io::Result<()>`",
    label = "this handler does not take a `std::net::TcpStream` and return `std::io::Result<()>`",
    note = "an async handler takes a `daemon::Connection` instead"
)]
pub trait SyncAcceptHandler<Args> {
    fn call(self, stream: TcpStream) -> io::Result<()>;
}

impl<F> SyncAcceptHandler<(TcpStream,)> for F
where
    F: FnOnce(TcpStream) -> io::Result<()>,
{
    fn call(self, stream: TcpStream) -> io::Result<()> {
        self(stream)
    }
}

impl<F> SyncAcceptHandler<(Never,)> for F
where
    F: FnOnce(Never) -> io::Result<()>,
{
    fn call(self, _stream: TcpStream) -> io::Result<()> {
        Ok(())
    }
}

/// Implemented by `fn(&daemon::Child)` and `fn()`: the shapes of `on_child` and `on_shutdown`.
/// `Args` tells the two shapes apart.
#[diagnostic::on_unimplemented(
    message = "a `#[daemon::on_child]` or `#[daemon::on_shutdown]` hook needs the signature `fn(&daemon::Child)` or `fn()`",
    label = "this hook does not take `&daemon::Child` (or nothing) and return `()`"
)]
pub trait ChildHook<Args> {
    fn call(self, child: &Child);
}

impl<F> ChildHook<(&'static Child,)> for F
where
    F: FnOnce(&Child),
{
    fn call(self, child: &Child) {
        self(child)
    }
}

impl<F> ChildHook<()> for F
where
    F: FnOnce(),
{
    fn call(self, _child: &Child) {
        self()
    }
}

/// Calls an async accept handler through [`AsyncAcceptHandler`].
pub fn call_async_accept<Args, H: AsyncAcceptHandler<Args>>(handler: H, conn: Connection) -> BoxFuture {
    handler.call(conn)
}

/// Calls a plain accept handler through [`SyncAcceptHandler`].
pub fn call_sync_accept<Args, H: SyncAcceptHandler<Args>>(handler: H, stream: TcpStream) -> io::Result<()> {
    handler.call(stream)
}

/// Calls an `on_child` or `on_shutdown` hook through [`ChildHook`].
pub fn call_child_hook<Args, H: ChildHook<Args>>(hook: H, child: &Child) {
    hook.call(child)
}
