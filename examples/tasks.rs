//! `tasks`: two task groups (Symphony::Daemon's) beside an HTTP pool, in one daemon.
//!
//! Jobs are files in a spool directory (`TASKS_SPOOL`): `GROUP/NAME.job`, one directory per group
//! (`convert`, `digest`, and any a config file adds), each file holding how many milliseconds the
//! job takes. A worker claims a job by
//! renaming it (so no two workers take the same one), works, and writes `NAME.done` with its pid.
//!
//! - `digest` is longlived: its worker loops over the jobs for as long as it lives.
//! - `convert` is oneshot: each worker takes one job and exits; the group keeps one idle worker
//!   waiting, and grows to `max_workers` while all of its workers are busy (checked every
//!   `scaling_interval`), then shrinks back.
//! - `GET /` answers how many jobs of each group are done.
//!
//! ```sh
//! mkdir -p /tmp/spool/convert /tmp/spool/digest
//! TASKS_SPOOL=/tmp/spool cargo run --example tasks      # 127.0.0.1:8085
//! echo 2000 > /tmp/spool/convert/a.job; curl 127.0.0.1:8085/
//! ```
//!
//! A config file can resize a group, change it, add a group running either function, or stop
//! one (`[tasks.NAME]` tables, read again on HUP).

#[path = "common/answer.rs"]
mod answer;

use std::path::{Path, PathBuf};
use std::time::Duration;

#[daemon::main(listen = "127.0.0.1:8085", prefork = 1)]
fn main() -> Result<(), String> {
    let spool = spool().ok_or("set TASKS_SPOOL to the spool directory")?;
    for group in ["convert", "digest"] {
        std::fs::create_dir_all(spool.join(group)).map_err(|e| format!("{}: {e}", spool.display()))?;
    }
    tracing::info!(spool = %spool.display(), "tasks: jobs are files in the spool");
    Ok(())
}

fn spool() -> Option<PathBuf> {
    std::env::var_os("TASKS_SPOOL").map(PathBuf::from)
}

/// Takes one job of `dir` (the first it can rename), if there is one: its name and length.
fn claim(dir: &Path) -> Option<(String, u64)> {
    let mut jobs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "job"))
        .collect();
    jobs.sort();
    for job in jobs {
        let name = job.file_stem()?.to_string_lossy().into_owned();
        let claimed = dir.join(format!("{name}.claimed.{}", std::process::id()));
        // Renaming is the claim: another worker that tries the same job fails.
        if std::fs::rename(&job, &claimed).is_ok() {
            let ms = std::fs::read_to_string(&claimed).ok()?.trim().parse().unwrap_or(0);
            let _ = std::fs::remove_file(&claimed);
            return Some((name, ms));
        }
    }
    None
}

/// A group's jobs are in the spool's directory of its name (a group a config file adds gets
/// its own).
fn group_dir(ctx: &daemon::Task) -> Option<PathBuf> {
    let dir = spool()?.join(ctx.group());
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

fn finish(dir: &Path, name: &str) {
    let _ = std::fs::write(dir.join(format!("{name}.done")), format!("{}\n", std::process::id()));
}

/// A job's work: `ms` milliseconds in steps, each step a heartbeat. A stop asked meanwhile waits
/// for the job's end (the loops look at `ctx.stopping()` between jobs only).
fn work(ctx: &daemon::Task, ms: u64) {
    let mut left = ms;
    while left > 0 {
        let step = left.min(50);
        std::thread::sleep(Duration::from_millis(step));
        left -= step;
        ctx.ping_supervisor();
    }
}

/// Longlived: one worker loops over the jobs for its whole life.
#[daemon::task(workers = 1)]
fn digest(ctx: &daemon::Task) {
    let Some(dir) = group_dir(ctx) else { return };
    while !ctx.stopping() {
        match claim(&dir) {
            Some((name, ms)) => {
                ctx.busy();
                tracing::info!(job = %name, ms, "digest: working");
                work(ctx, ms);
                finish(&dir, &name);
                ctx.idle();
            }
            None => {
                ctx.sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Oneshot: each worker takes one job, does it, and exits.
#[daemon::task(workers = 1, max_workers = 4, model = oneshot, scaling_interval = "200ms")]
fn convert(ctx: &daemon::Task) {
    let Some(dir) = group_dir(ctx) else { return };
    while !ctx.stopping() {
        if let Some((name, ms)) = claim(&dir) {
            ctx.busy();
            tracing::info!(group = ctx.group(), job = %name, ms, "convert: working");
            work(ctx, ms);
            finish(&dir, &name);
            return;
        }
        ctx.sleep(Duration::from_millis(50));
    }
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    let done = |group: &str| {
        spool()
            .and_then(|s| std::fs::read_dir(s.join(group)).ok())
            .map(|d| d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "done")).count())
            .unwrap_or(0)
    };
    answer::answer_once(conn, || format!("convert: {} done, digest: {} done\n", done("convert"), done("digest"))).await
}

// The manager's hooks: they run in the manager, between its rounds, and must not block.

#[daemon::on_ready]
fn ready() {
    tracing::info!("tasks: on_ready: every pool is up");
}

#[daemon::on_spawn]
fn spawned(w: &daemon::Spawned) {
    tracing::info!(pool = %w.pool, slot = w.slot, pid = w.pid, "tasks: on_spawn");
}

#[daemon::on_reap]
fn reaped(w: &daemon::Reaped) {
    if w.death != "expected" {
        tracing::warn!(pool = %w.pool, pid = w.pid, code = ?w.code, signal = ?w.signal, death = w.death, "tasks: on_reap: a worker failed");
    }
}

#[daemon::on_reload]
fn reloaded() {
    tracing::info!("tasks: on_reload");
    // For the tests: a hook that panics is reported, and the manager goes on.
    if std::env::var_os("TASKS_PANIC_ON_RELOAD").is_some() {
        panic!("tasks: on_reload panics, as asked");
    }
}

#[daemon::on_exit]
fn exiting() {
    tracing::info!("tasks: on_exit");
}
