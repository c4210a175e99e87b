//! `lab`: an HTTP/1.1 test-bed for the process tests and the benchmarks. Each route makes its
//! worker do something the pool must cope with.
//!
//! ```sh
//! cargo run --example lab                  # 127.0.0.1:8081
//! curl 127.0.0.1:8081/pid
//! ```
//!
//! | route            | answer                                                            |
//! |------------------|-------------------------------------------------------------------|
//! | `GET /`          | `hello`                                                           |
//! | `GET /pid`       | the pid of the worker that serves the request                     |
//! | `GET /version`   | a hash of the executable the worker runs (which binary answered)  |
//! | `GET /sleep/MS`  | `slept MS`, after waiting MS milliseconds (the worker stays free) |
//! | `GET /spin/MS`   | `spun MS`, after a busy loop of MS milliseconds (the worker blocks) |
//! | `GET /in-span`   | `logged`, after a log event inside a span of its own named like the line's keys |
//! | `GET /nodelay`   | `true` or `false`: whether the connection has TCP_NODELAY |
//! | `GET /burn/MS`   | `burned MS`, after a busy loop until the worker used MS of CPU |
//! | `GET /block/MS`  | `blocked MS`, after a blocking sleep of MS milliseconds (the worker's runtime stops) |
//! | `GET /abort`     | nothing: the worker aborts                                        |
//! | `GET /panic`     | nothing: the handler panics (the worker drops the connection, lives on) |
//! | `GET /exit/CODE` | nothing: the worker exits with status CODE                        |
//! | `GET /alloc/MB`  | allocates MB MiB, touches every page and keeps it                 |
//! | `GET /long/MS`   | marks the request long (`conn.long()`), then sleeps MS milliseconds |
//! | `GET /signals`   | the blocked and ignored signals of a `cat` the worker starts, as is and with `daemon::default_signals` |
//! | `GET /leave/S`   | the pid of a `sleep S` the worker leaves behind (started through a shell that exits) |
//! | `GET /leave-deaf/S` | the same, but the `sleep` ignores TERM                         |
//! | `GET /leave-relay/S` | a shell left behind that, on TERM, starts another like it       |
//! | anything else    | 404                                                               |
//!
//! Connections are kept alive unless the client sends `Connection: close` (or the worker is
//! stopping); a request body with a `Content-Length` is read and ignored. Every request is logged
//! at info level with its method and path, so a test can tell when a request has arrived.
//!
//! With `LAB_FOREIGN_CHILDREN=N` in its environment, `main` also starts N `sleep` processes and
//! hands them to the manager with `daemon::foreign_child`. With `LAB_ON_CHILD=panic` every
//! worker's `on_child` hook panics; with `LAB_ON_CHILD=sleep:MS` it takes MS milliseconds
//! (`LAB_ON_CHILD_FILE=PATH` reads the same words from a file as each worker starts). With
//! `LAB_ORPHANS=N`, `main` leaves N short-lived orphans behind; with `LAB_NPROC=N` the manager may
//! have at most N processes of its user.
//!
//! Beside the HTTP pool, a task group `crash_at_start` has no workers unless a config file gives
//! it some (`[tasks.crash_at_start]` with `workers = 1`): each of its workers aborts as it
//! starts, a pool in a crash loop next to a serving one.

use std::time::Duration;

#[path = "common/lab_routes.rs"]
mod routes;

#[daemon::main(listen = "127.0.0.1:8081")]
fn main() -> std::io::Result<()> {
    tracing::info!("lab: GET / /pid /version /sleep/MS /spin/MS /burn/MS /block/MS /long/MS /signals /leave/S /leave-deaf/S /leave-relay/S /abort /panic /exit/CODE /alloc/MB");
    limit_processes();
    // LAB_FOREIGN_CHILDREN=N: start N helper processes that are not workers, for the manager to
    // reap when they exit and to stop with the pool.
    if let Some(n) = std::env::var("LAB_FOREIGN_CHILDREN").ok().and_then(|n| n.parse::<u32>().ok())
    {
        for _ in 0..n {
            let helper = std::process::Command::new("sleep")
                .arg("3600")
                .stdin(std::process::Stdio::null())
                .spawn()?;
            daemon::foreign_child(helper.id());
        }
    }
    // LAB_ORPHANS=N: leave N short-lived orphans behind (a shell that starts `sleep` in the
    // background and exits). As PID 1 of a container, the manager inherits and reaps them.
    if let Some(n) = std::env::var("LAB_ORPHANS").ok().and_then(|n| n.parse::<u32>().ok()) {
        for _ in 0..n {
            std::process::Command::new("sh")
                .args(["-c", "sleep 0.5 &"])
                .stdin(std::process::Stdio::null())
                .spawn()?;
        }
    }
    // LAB_OWN_SUBSCRIBER=1: the program installs its own tracing subscriber (no timestamps, with
    // targets), which the runtime must keep for the manager and every worker.
    if std::env::var_os("LAB_OWN_SUBSCRIBER").is_some() {
        tracing_subscriber::fmt()
            .without_time()
            .with_ansi(false)
            .with_target(true)
            .with_writer(std::io::stderr)
            .init();
        tracing::info!("lab installed its own subscriber");
    }
    Ok(())
}

#[daemon::on_child]
fn up(child: &daemon::Child) {
    tracing::info!(generation = child.generation(), "lab worker up");
    // LAB_ON_CHILD=panic, or sleep:MS: a worker that cannot start, or is slow to. Or
    // LAB_ON_CHILD_FILE=PATH: the same words, read from the file as each worker starts (a test
    // changes them between generations).
    let from_file = std::env::var_os("LAB_ON_CHILD_FILE").and_then(|p| std::fs::read_to_string(p).ok());
    let what = from_file.or_else(|| std::env::var("LAB_ON_CHILD").ok()).unwrap_or_default();
    match what.trim() {
        "panic" => panic!("lab: on_child panics, as asked"),
        other => {
            if let Some(ms) = other.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()) {
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
    }
}

#[daemon::on_shutdown]
fn down(child: &daemon::Child) {
    tracing::info!(pid = child.pid(), "lab worker on_shutdown");
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    routes::serve(conn).await
}

/// LAB_NPROC=N: the manager may have at most N processes of its user (RLIMIT_NPROC), for the
/// tests of failed forks. Set in `main`'s body, after privileges are dropped: root's forks are
/// never refused.
fn limit_processes() {
    if let Some(n) = std::env::var("LAB_NPROC").ok().and_then(|n| n.parse::<u64>().ok()) {
        let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
        // SAFETY: setrlimit(2) with a valid pointer to a limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &limit) } != 0 {
            tracing::error!(error = %std::io::Error::last_os_error(), "cannot set LAB_NPROC");
        }
    }
}

/// Aborts at once: a pool that crash-loops at start (see the module's documentation).
#[daemon::task(workers = 0)]
fn crash_at_start(ctx: &daemon::Task) {
    tracing::error!(group = ctx.group(), "crash_at_start: aborting, as this group always does");
    std::process::abort();
}
