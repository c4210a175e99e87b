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
/// `E: Debug`): an `Err` stops the daemon before it forks. `fn main` is a plain, synchronous
/// function: an async runtime does not survive `fork`, so the manager never starts one. Async
/// code goes in the [`macro@on_accept`] handler, which runs on each worker's own runtime.
///
/// `main` takes no parameter, or one: the program's own settings, a type that derives
/// `clap::Args` (`fn main(settings: Settings)`), read from the command line, the environment
/// (`DAEMON_<NAME>`) and the config file's `[app]` table beside the daemon's keys; every worker
/// reads its generation's values with `daemon::settings::<Settings>()`.
///
/// # Keys
///
/// Every key is optional. Values are checked while the program compiles, by the same rules as
/// the command line, environment and config file; a mistake is a compile error at the offending
/// token. This table is generated from the rule book (as README's is): an attribute key is the
/// first column, its value as the second says (a duration as `"30s"`, a size as `"512M"`, a
/// flag bare: `detach`).
///
#[doc = include_str!(concat!(env!("OUT_DIR"), "/keys.md"))]
///
/// Besides these, `crate = "path"` says where the generated code finds the `daemon` crate
/// (default `::daemon`), for a program that renames it. Relations are checked too:
/// `min_spare` may not exceed `max_spare`, `prefork` may not exceed `max_children`, and
/// `detach` and `foreground` may not both be set.
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

/// Runs a function in every new worker, after `fork` and before the worker is ready: in the
/// `on_accept` pool's workers, the supervised worker and every task group's workers alike, unless
/// limited to some pools.
///
/// ```no_run
/// #[daemon::on_child]
/// fn init(child: &daemon::Child) {
///     // Per-worker setup: random seeds, threads, a log line.
/// }
/// ```
///
/// The function is `fn(&daemon::Child)` or `fn()`, synchronous (the worker's async runtime does
/// not exist yet) and not generic. A program may have any number of them, in any module; they
/// run in the order of their module path, then name. A hook that panics, or returns an `Err`,
/// fails the worker's start with the reason, and the manager forks a replacement after a pause.
///
/// # The worker's state
///
/// What the hook returns is the worker's, for its life, handed back by type to its handlers,
/// tasks and later hooks: [`daemon::state::<T>()`](../daemon/fn.state.html),
/// `conn.state::<T>()`, `ctx.state::<T>()`. It returns nothing, a value (`-> Db`), or a
/// `Result` of one (`-> Result<Db, E>` with `E: Debug`; any type spelled `...Result<...>`): a
/// value that cannot be built fails the start, before the worker takes any work. A worker keeps
/// one value of each type (a second is an error naming both hooks; wrap one in a type of its
/// own). The value need not be `Send` or `Sync`: handlers run on the worker's one thread.
///
/// ```no_run
/// use std::cell::Cell;
///
/// struct Db { opened_by: u32, queries: Cell<u64> }
///
/// #[daemon::on_child(pools = ["main"])]
/// fn db(child: &daemon::Child) -> Result<Db, std::io::Error> {
///     Ok(Db { opened_by: child.pid(), queries: Cell::new(0) })
/// }
///
/// #[daemon::on_accept]
/// async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
///     let db = conn.state::<Db>().ok_or_else(|| std::io::Error::other("no database"))?;
///     db.queries.set(db.queries.get() + 1);
///     Ok(())
/// }
/// # #[daemon::main] fn main() {}
/// ```
///
/// # Arguments
///
/// `pools = ["main", "jobs"]` runs the hook only in those pools' workers: `main` is the
/// `on_accept` pool, `supervised` the supervised worker, a task group goes by its name (a
/// name the program does not have stops its start, with the names it has).
/// [`Child::pool`](../daemon/struct.Child.html#method.pool) and `Child::kind` tell a hook
/// where it runs. Besides, `crate = "path"` (see [`macro@main`]).
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
/// synchronous, but returning nothing; any number of them, each in every worker. A worker
/// stopped by TERM or KILL does not run them.
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
/// // Blocking, the classic model: one connection at a time per worker. The stream is TCP or
/// // Unix, whichever listener it came through; a handler that takes a `std::net::TcpStream`
/// // serves TCP listeners only (the daemon refuses to start with a Unix one).
/// #[daemon::on_accept]
/// fn serve(mut stream: daemon::net::Stream) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    /// `#[daemon::main]`'s documentation names every key of the rule book.
    #[test]
    fn main_documents_every_key() {
        let keys = include_str!(concat!(env!("OUT_DIR"), "/keys.md"));
        for s in daemon_config::SETTINGS {
            assert!(keys.contains(&format!("`{}`", s.name)), "{} is missing", s.name);
        }
        for s in daemon_config::GROUP_SETTINGS {
            assert!(keys.contains(&format!("`{}`", s.name)), "{} is missing", s.name);
        }
    }
}
