//! `jobs`: a small job queue, built as a real service is: an HTTP API on the pre-forked pool and a
//! task group working the jobs, both reading the program's own settings, each worker with state
//! of its own built before it is ready, and the program's metrics on the manager's `/metrics`.
//!
//! - `POST /jobs` takes a JSON object (`{"name": "resize"}`) and queues it: `201 {"id": N}`.
//! - `GET /jobs/N` says where the job is: `{"state": "queued" | "working" | "done", ...}`; a done
//!   job says how long it was made to take (`delay_ms`) and which worker did it.
//! - `GET /config` shows the settings the answering worker runs with.
//! - The `work` group's workers claim jobs (a rename: no two take one), work `job_delay_ms`,
//!   and write the result. A graceful stop (`stop`, QUIT, a reload) lets each finish its job.
//!
//! The queue is a directory (`--spool`, relative to where the daemon was started, as
//! `pid_file` is): `queued/`, `working/`, `done/`. Each HTTP worker builds its router in
//! `on_child` (the spool checked there: a missing one fails the worker's start, not a
//! request), and each task worker opens the spool the same way; `daemon::state` hands them
//! back.
//!
//! ```sh
//! cargo run --features http --example jobs -- --metrics-listen 127.0.0.1:9102   # 127.0.0.1:8087
//! curl -d '{"name":"a"}' 127.0.0.1:8087/jobs; curl 127.0.0.1:8087/jobs/1
//! curl 127.0.0.1:9102/metrics | grep jobs_
//! ```
//!
//! A reload that changes `[app] job_delay_ms` in the config file reaches both pools: the HTTP
//! workers and the task workers are replaced (a task worker finishes its job first), and the
//! log says which pools got new workers and why.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use daemon::metrics::{Counter, Gauge, Histogram};
use serde_json::{json, Value};

/// The program's own settings: `--spool`, `--job-delay-ms`, or `[app]` in the config file.
#[derive(clap::Args, Clone, Debug)]
struct Settings {
    /// The queue's directory (relative: to the directory the daemon was started from).
    #[arg(long, default_value = "jobs-spool", value_parser = daemon::path_from_start_dir)]
    spool: PathBuf,
    /// How long each job takes, in milliseconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    job_delay_ms: u64,
}

static SUBMITTED: Counter = Counter::new("jobs_submitted_total", "Jobs queued through POST /jobs");
static DONE: Counter = Counter::new("jobs_done_total", "Jobs the work group finished");
static IN_HAND: Gauge = Gauge::new("jobs_in_hand", "Jobs being worked on now");
static SECONDS: Histogram = Histogram::new("job_seconds", "How long a job took to work", Histogram::DEFAULT_BUCKETS);

#[daemon::main(listen = "127.0.0.1:8087", prefork = 2)]
fn main(settings: Settings) -> Result<(), String> {
    for dir in ["queued", "working", "done"] {
        let path = settings.spool.join(dir);
        std::fs::create_dir_all(&path).map_err(|e| format!("cannot make {}: {e}", path.display()))?;
    }
    daemon::tracing::info!(spool = %settings.spool.display(), job_delay_ms = settings.job_delay_ms, "jobs: the queue is ready");
    Ok(())
}

/// The queue, as a worker holds it: checked once, when the worker starts.
#[derive(Clone, Debug)]
struct Spool {
    root: PathBuf,
}

/// Job ids: the time in microseconds, this worker's pid and its count, so no two are alike.
static NEXT: AtomicU64 = AtomicU64::new(0);

impl Spool {
    fn open() -> std::io::Result<Spool> {
        let root = daemon::settings::<Settings>().spool.clone();
        for dir in ["queued", "working", "done"] {
            let meta = std::fs::metadata(root.join(dir))?;
            if !meta.is_dir() {
                return Err(std::io::Error::other(format!("{} is not a directory", root.join(dir).display())));
            }
        }
        Ok(Spool { root })
    }

    fn dir(&self, which: &str) -> PathBuf {
        self.root.join(which)
    }

    fn submit(&self, job: &Value) -> std::io::Result<String> {
        let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        let id = format!("{micros}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        // Written aside, then moved in whole: a worker never claims half a file.
        let temp = self.dir("queued").join(format!(".{id}.tmp"));
        std::fs::write(&temp, job.to_string())?;
        std::fs::rename(&temp, self.dir("queued").join(format!("{id}.json")))?;
        Ok(id)
    }

    /// Takes the oldest queued job, if there is one: its id and its path in `working/`.
    fn claim(&self) -> Option<(String, PathBuf)> {
        let mut queued: Vec<PathBuf> = std::fs::read_dir(self.dir("queued"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        queued.sort();
        for path in queued {
            let id = path.file_stem()?.to_string_lossy().into_owned();
            let working = self.dir("working").join(format!("{id}.json"));
            // The rename is the claim: the loser of a race finds the file gone.
            if std::fs::rename(&path, &working).is_ok() {
                return Some((id, working));
            }
        }
        None
    }

    fn state_of(&self, id: &str) -> Option<Value> {
        if !id.chars().all(|c| c.is_ascii_digit() || c == '-') {
            return None;
        }
        let done = std::fs::read_to_string(self.dir("done").join(format!("{id}.json"))).ok();
        if let Some(v) = done.and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
            return Some(json!({ "id": id, "state": "done", "result": v }));
        }
        for state in ["working", "queued"] {
            if self.dir(state).join(format!("{id}.json")).exists() {
                return Some(json!({ "id": id, "state": state }));
            }
        }
        None
    }
}

// The HTTP workers: their router, built in each worker before it is ready.

#[daemon::on_child(pools = ["main"])]
fn routes(child: &daemon::Child) -> std::io::Result<Router> {
    let spool = Spool::open()?;
    daemon::tracing::debug!(pid = child.pid(), "routes built");
    Ok(Router::new()
        .route("/jobs", post(submit))
        .route("/jobs/{id}", get(status))
        .route("/config", get(config))
        .with_state(spool))
}

async fn submit(State(spool): State<Spool>, Json(job): Json<Value>) -> (StatusCode, Json<Value>) {
    match spool.submit(&job) {
        Ok(id) => {
            SUBMITTED.inc();
            (StatusCode::CREATED, Json(json!({ "id": id })))
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": e.to_string() }))),
    }
}

async fn status(State(spool): State<Spool>, UrlPath(id): UrlPath<String>) -> (StatusCode, Json<Value>) {
    match spool.state_of(&id) {
        Some(v) => (StatusCode::OK, Json(v)),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "no such job" }))),
    }
}

async fn config() -> Json<Value> {
    let s = daemon::settings::<Settings>();
    Json(json!({ "job_delay_ms": s.job_delay_ms, "pid": std::process::id() }))
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    daemon::http::serve_router(conn).await
}

// The task workers.

#[daemon::on_child(pools = ["work"])]
fn open_spool() -> std::io::Result<Spool> {
    Spool::open()
}

#[daemon::task(workers = 2)]
fn work(ctx: &daemon::Task) -> Result<(), String> {
    let spool = ctx.state::<Spool>().ok_or("the work group's worker has no spool")?;
    // The generation's value: a reload that changes it replaces this worker.
    let delay = Duration::from_millis(daemon::settings::<Settings>().job_delay_ms);
    while !ctx.stopping() {
        let Some((id, working)) = spool.claim() else {
            ctx.sleep(Duration::from_millis(20));
            continue;
        };
        // A job in hand is finished even if a stop comes meanwhile.
        IN_HAND.inc();
        let started = Instant::now();
        pause(ctx, delay);
        let result = json!({ "id": id, "delay_ms": delay.as_millis() as u64, "pid": std::process::id() });
        finish(spool, &id, &working, &result).map_err(|e| format!("job {id}: {e}"))?;
        SECONDS.observe_duration(started.elapsed());
        DONE.inc();
        IN_HAND.dec();
    }
    Ok(())
}

/// Waits `d`, with heartbeats, whatever stops are asked meanwhile.
fn pause(ctx: &daemon::Task, d: Duration) {
    let until = Instant::now() + d;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        std::thread::sleep(left.min(Duration::from_millis(100)));
        ctx.ping_supervisor();
    }
}

fn finish(spool: &Spool, id: &str, working: &Path, result: &Value) -> std::io::Result<()> {
    let temp = spool.dir("done").join(format!(".{id}.tmp"));
    std::fs::write(&temp, result.to_string())?;
    std::fs::rename(&temp, spool.dir("done").join(format!("{id}.json")))?;
    std::fs::remove_file(working)
}
