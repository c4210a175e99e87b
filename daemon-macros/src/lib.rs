//! The attributes of `daemon`: `#[daemon::main]`, `#[daemon::on_child]`,
//! `#[daemon::on_accept]` and `#[daemon::on_shutdown]`. Use them through the `daemon` crate,
//! which re-exports them; this crate is its compile-time half.
//!
//! Each attribute is built in three stages, as in serde_derive: `parse` reads the tokens without
//! judging them, `check` compares them with the rule book of `daemon-config` (the same rules the
//! runtime applies to the command line) and records every problem in a context (`ctxt::Ctxt`),
//! and `emit` writes the expansion, with every path it names taken from one table
//! (`paths::Paths`). When there are problems, all of them are reported, each at its own token,
//! and the item is still emitted, so that nothing else fails because of them.

mod args;
mod ctxt;
mod hooks;
mod item;
mod main_fn;
mod paths;

use proc_macro::TokenStream;

/// Turns `fn main` into a pre-forking daemon, configured by the attribute's keys.
///
/// ```no_run
/// #[daemon::main(prefork = 4, max_spare = 3, listen = "0.0.0.0:8080", detach)]
/// fn main() {
///     // Runs once, in the manager, after the listeners are bound and before the first fork.
/// }
/// ```
///
/// The body runs once, in the manager process, before any worker is forked: load configuration
/// and preload data there; the workers inherit it. It may return `()` or `Result<(), E>` (with
/// `E: Debug`): an `Err` stops the daemon before it forks. `fn main` must be a plain,
/// synchronous `fn main()` with no parameters: an async runtime does not survive `fork`, so the
/// manager never starts one. Async code goes in the [`macro@on_accept`] handler, which runs on
/// each worker's own runtime.
///
/// # Keys
///
/// Every key is optional. Values are checked while the program compiles, by the same rules as
/// the command line, environment and config file (see the README's reference table); a mistake
/// is a compile error at the offending token.
///
/// | key | value | example |
/// |---|---|---|
/// | `prefork` | whole number, 1 to 4096: workers at start, and the pool's floor | `prefork = 4` |
/// | `min_spare` | whole number, 0 to 4096: fewer idle workers and the manager forks more | `min_spare = 1` |
/// | `max_spare` | whole number, 1 to 4096: more idle workers and the surplus is retired | `max_spare = 3` |
/// | `max_children` | whole number, 1 to 4096: the most workers alive at once | `max_children = 16` |
/// | `requests` | whole number: connections a worker serves before it is recycled (0 = no limit) | `requests = 10000` |
/// | `clients` | whole number: connections one async worker serves at once | `clients = 1000` |
/// | `listen` | `"IP:PORT"`, or a list of them | `listen = ["127.0.0.1:8080", "[::1]:8080"]` |
/// | `detach` | flag: run in the background | `detach`, or `detach = false` |
/// | `foreground` | flag: stay in the foreground even with `detach` | `foreground` |
/// | `graceful_timeout` | duration, 0s to 24h: `"500ms"`, `"30s"`, `"2m"`, `"1h"`, or a whole number of seconds (fractions are refused: `"1500ms"`, not `1.5`) | `graceful_timeout = "30s"` |
/// | `start_timeout` | duration, 1s to 24h: how long the first workers may take to become ready before the start fails | `start_timeout = "60s"` |
/// | `pid_file` | path | `pid_file = "/run/app.pid"` |
/// | `log_file` | path | `log_file = "/var/log/app.log"` |
/// | `user`, `group` | user or group name to run as | `user = "www-data"` |
/// | `crate` | where the generated code finds the `daemon` crate (default `::daemon`) | `crate = "my_deps::daemon"` |
///
/// Relations are checked too: `min_spare` may not exceed `max_spare`, `prefork` may not exceed
/// `max_children`, and `detach` and `foreground` may not both be set.
///
/// # Expansion
///
/// ```no_run
/// fn main() {
///     ::daemon::__private::run(
///         &[(::daemon::__private::Key::Prefork, ::daemon::__private::Attr::Count(4)), /* ... */],
///         ::daemon::__private::Package { name: env!("CARGO_PKG_NAME"), version: env!("CARGO_PKG_VERSION") },
///         move || { /* the body */ },
///     )
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    main_fn::expand(args.into(), item.into()).into()
}

/// Runs a function in every new worker, after `fork` and before the worker accepts connections.
///
/// ```no_run
/// #[daemon::on_child]
/// fn init(child: &daemon::Child) {
///     // Open per-worker resources: database connections, random seeds, threads.
/// }
/// ```
///
/// The function is `fn(&daemon::Child)` or `fn()`, synchronous (the worker's async runtime does
/// not exist yet), not generic, and returns nothing. A program may have any number of them, in
/// any module; they run in the order of their module path, then name. A hook that panics ends
/// the worker, and the manager forks a replacement after a pause.
///
/// The attribute takes no arguments, except `crate = "path"` (see [`macro@main`]).
#[proc_macro_attribute]
pub fn on_child(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Child, args.into(), item.into()).into()
}

/// Runs a function in a worker as it stops gracefully (QUIT, recycling, retirement), after it
/// has finished its connections.
///
/// ```no_run
/// #[daemon::on_shutdown]
/// fn flush(child: &daemon::Child) {
///     // Flush buffers, say goodbye to peers.
/// }
/// ```
///
/// The shape and rules are those of [`macro@on_child`]: `fn(&daemon::Child)` or `fn()`,
/// synchronous, returning nothing; any number of them. A worker stopped by TERM or KILL does not
/// run them.
#[proc_macro_attribute]
pub fn on_shutdown(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Shutdown, args.into(), item.into()).into()
}

/// The function of a supervised worker (App::Base::Daemon::Supervisor's): one worker runs it, and
/// is started again `respawn_delay` (5 s) after it ends, whatever the reason.
///
/// ```no_run
/// #[daemon::supervised]
/// fn run(ctx: &daemon::Supervised) {
///     // A long-lived loop: it returns when asked to stop, or when its supervisor is gone.
///     while ctx.ping_supervisor() && ctx.sleep(std::time::Duration::from_secs(1)) {
///         // one round of work
///     }
/// }
/// # fn main() {}
/// ```
///
/// Plain, `fn(&daemon::Supervised)`; or async, `async fn(daemon::Supervised)`, on the worker's
/// own runtime. It returns `()` or `Result<(), E>` (an `Err` is logged and counts as a crash).
/// `ctx.stopping()`, `ctx.sleep(d)` and `ctx.ping_supervisor()` stamp the worker's heartbeat, so
/// a plain loop that calls one of them every few seconds is alive for the manager. One per
/// program.
#[proc_macro_attribute]
pub fn supervised(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Supervised, args.into(), item.into()).into()
}

/// The work of a task group (Symphony::Daemon's): the group, named after the function, keeps
/// its workers running it.
///
/// ```no_run
/// #[daemon::task(workers = 1, max_workers = 4, model = oneshot)]
/// fn convert(ctx: &daemon::Task) {
///     // Wait for one job, say so, do it, return: the worker exits and a new one waits.
///     while !ctx.stopping() {
///         if let Some(job) = next_job() {
///             ctx.busy();
///             run(job);
///             return;
///         }
///         ctx.sleep(std::time::Duration::from_millis(100));
///     }
/// }
/// # fn next_job() -> Option<u32> { None }
/// # fn run(_: u32) {}
/// # fn main() {}
/// ```
///
/// Keys: `workers` (1; 0 stops the group), `max_workers`, `model` (`longlived`: each worker runs
/// the function for its life, the group keeps `workers`; `oneshot`: each runs it once, for one
/// job, and the group grows to `max_workers` while all its workers are busy, shrinking back when
/// they are idle, checked every `scaling_interval`), `scaling_interval` (1 s), and `run` (in a
/// config file's `[tasks.NAME]` table: another group running this function). The function is
/// `fn(&daemon::Task)` or `async fn(daemon::Task)`; it calls `ctx.busy()` and `ctx.idle()` as it
/// takes and finishes jobs. Any number of groups, in any module.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Task, args.into(), item.into()).into()
}

/// Runs in the manager once every worker of the first generation accepts (POE's daemon_parent).
/// `fn()`; synchronous, and must not block: the manager does nothing else meanwhile. A hook that
/// panics is reported, and the manager goes on. Any number.
#[proc_macro_attribute]
pub fn on_ready(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Ready, args.into(), item.into()).into()
}

/// Runs in the manager after it forks a worker: `fn(&daemon::Spawned)` (pid, pool, slot,
/// generation) or `fn()`. As [`macro@on_ready`]: synchronous, must not block.
#[proc_macro_attribute]
pub fn on_spawn(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Spawn, args.into(), item.into()).into()
}

/// Runs in the manager after it reaps a worker: `fn(&daemon::Reaped)` (pid, pool, slot, exit
/// status or signal, and how the manager reads the death) or `fn()`. As [`macro@on_ready`].
#[proc_macro_attribute]
pub fn on_reap(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Reap, args.into(), item.into()).into()
}

/// Runs in the manager after a reload is applied. `fn()`; as [`macro@on_ready`].
#[proc_macro_attribute]
pub fn on_reload(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Reload, args.into(), item.into()).into()
}

/// Runs in the manager as it exits, after its last worker is gone. `fn()`; as
/// [`macro@on_ready`].
#[proc_macro_attribute]
pub fn on_exit(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Exit, args.into(), item.into()).into()
}

/// The function that serves each connection. A program has exactly one (checked when it
/// starts).
///
/// Two shapes are accepted:
///
/// ```no_run
/// // Async: each worker runs its own current-thread tokio runtime and serves up to `clients`
/// // connections at once.
/// #[daemon::on_accept]
/// async fn serve(mut conn: daemon::Connection) -> std::io::Result<()> {
///     use tokio::io::AsyncWriteExt;
///     conn.write_all(b"hello\n").await
/// }
/// ```
///
/// ```no_run
/// // Blocking, the classic model: one connection at a time per worker.
/// #[daemon::on_accept]
/// fn serve(mut stream: std::net::TcpStream) -> std::io::Result<()> {
///     use std::io::Write;
///     stream.write_all(b"hello\n")
/// }
/// ```
///
/// `async` chooses the model. The function takes exactly one parameter, is not generic, and
/// returns `std::io::Result<()>`; an `Err` ends that connection and is logged. A wrong parameter
/// or return type is a compile error at the function's name that spells out the signature.
///
/// The attribute takes no arguments, except `crate = "path"` (see [`macro@main`]).
#[proc_macro_attribute]
pub fn on_accept(args: TokenStream, item: TokenStream) -> TokenStream {
    hooks::expand(hooks::Hook::Accept, args.into(), item.into()).into()
}
