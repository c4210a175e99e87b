//! Write Unix pre-forking daemons with attributes.
//!
//! ```no_run
//! use daemon::prelude::*;
//!
//! #[daemon::main(prefork = 4, max_spare = 3)]
//! fn main() {
//!     // Runs once, in the manager, before any fork: load and preload here.
//! }
//!
//! #[daemon::on_child]
//! fn init(child: &daemon::Child) {
//!     // Runs in every new worker, after fork, before it accepts.
//!     info!(slot = child.slot(), "worker up");
//! }
//!
//! #[daemon::on_accept]
//! async fn serve(mut conn: daemon::Connection) -> std::io::Result<()> {
//!     conn.write_all(b"hello\n").await
//! }
//! ```
//!
//! `daemon` is the one dependency such a program needs: [`prelude`] brings tokio's I/O traits and
//! the tracing macros, and [`tokio`] and [`tracing`] are re-exported whole.
//!
//! Besides the pre-forked pool above, one manager runs: a child per connection
//! (`#[daemon::main(postfork, max_children = N)]`); one supervised worker
//! ([`macro@supervised`], with a [`Supervised`] context); task groups ([`macro@task`], with a
//! [`Task`] context), any number of them, beside an HTTP pool or alone; or no workers at all,
//! `main`'s body being the daemon ([`stopping`], [`wait_for_stop`], [`take_reload`]). The
//! manager's own hooks are [`macro@on_ready`], [`macro@on_spawn`], [`macro@on_reap`],
//! [`macro@on_reload`] and [`macro@on_exit`].
//!
//! See the README for the attributes' keys, the command line of the generated binary, and the
//! signals the manager understands.

pub use daemon_macros::{
    main, on_accept, on_child, on_exit, on_ready, on_reap, on_reload, on_shutdown, on_spawn, supervised, task,
};
pub use daemon_runtime::config;
pub use daemon_runtime::{settings, start_dir, try_settings, ProgramSettings};

/// The program's path settings, resolved against the directory the daemon started from:
///
/// ```
/// #[derive(clap::Args, Clone, Debug)]
/// struct Settings {
///     /// Where the jobs are kept.
///     #[arg(long, default_value = "spool", value_parser = daemon::path_from_start_dir)]
///     spool: std::path::PathBuf,
/// }
/// ```
pub use daemon_runtime::path_from_start_dir;

/// The clap crate the command line of the program's own settings is parsed with. A program
/// whose `main` takes its settings derives `clap::Args` for them, so it depends on clap itself
/// (`clap = { version = "4", features = ["derive"] }`): the derive names the crate `clap`.
pub use daemon_runtime::clap;
pub use daemon_runtime::{
    default_signals, describe_request, foreign_child, heartbeat, long, state, stopping, take_reload, wait_for_stop, Child, Connection, PoolKind, Reaped,
    Spawned, Supervised, Task, WorkContext,
};

/// HTTP in one line, with the `http` feature (off by default): `daemon::http::serve(conn, app)`
/// serves an axum `Router` (built once per worker by `app`) over hyper's HTTP/1.1 keep-alive,
/// on the daemon's graceful stops and request deadlines. The program depends on axum itself, for
/// its router: `axum = { version = "0.8", default-features = false, features = ["http1"] }`.
///
/// ```no_run
/// use axum::{routing::get, Router};
///
/// #[daemon::main(listen = "127.0.0.1:8080")]
/// fn main() {}
///
/// fn app() -> Router {
///     Router::new().route("/", get(|| async { "hello\n" }))
/// }
///
/// #[daemon::on_accept]
/// async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
///     daemon::http::serve(conn, app).await
/// }
/// ```
#[cfg(feature = "http")]
pub use daemon_runtime::http;

/// What a connection is, whatever the socket it came through (TCP, or a Unix socket from
/// `listen = "unix:/run/app/app.sock"`): [`net::Stream`], the stream a plain `on_accept`
/// handler takes; [`net::Peer`] and [`net::PeerCred`], who connected (a TCP address, or the
/// client process's credentials, `SO_PEERCRED`); [`net::AsyncStream`], what a `Connection`
/// reads and writes.
pub use daemon_runtime::net;

/// TLS on the TCP listeners, with the `tls` feature (off by default) and `tls_cert` and
/// `tls_key` set: every `Connection` of a TCP listener is then a [`tls::TlsStream`], whose
/// handshake is done in its first reads; `conn.tls().await` says what it settled
/// ([`tls::TlsInfo`]: SNI, ALPN, the client's certificate, resumption). A reload (HUP) reads the
/// files again; its new workers serve the new certificate.
#[cfg(feature = "tls")]
pub use daemon_runtime::tls;

/// The program's own metrics (counters, gauges, histograms), on the manager's `/metrics` summed
/// over every worker, surviving workers' exits and hot upgrades.
pub use daemon_runtime::metrics;

/// The tokio crate the workers run async handlers on, for a program that needs no other
/// dependency: `daemon::tokio::time::sleep(...)`, `daemon::tokio::task::spawn_local(...)`.
pub use daemon_runtime::tokio;

/// The tracing crate the daemon logs with: `daemon::tracing::info!(...)` lands in the daemon's
/// log, with the role, pid and slot of the process that wrote it.
pub use daemon_runtime::tracing;

/// What a handler needs in scope, in one line: `use daemon::prelude::*;` brings tokio's I/O
/// traits (`read`, `write_all`, `read_line`, ...), the `Connection` and `Child` types, and the
/// tracing macros.
pub mod prelude {
    pub use crate::tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    pub use crate::tracing::{debug, error, info, trace, warn};
    pub use crate::{Child, Connection};
}

#[doc(hidden)]
pub mod __private {
    pub use daemon_runtime::__private::*;
}
