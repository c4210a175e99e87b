//! Micro-benchmarks of the things on hot paths: a scoreboard transition (a worker's stores on
//! each connection), the spare policy's plan (the manager's work on each wake-up, over a pool of
//! 256), and the program's metrics (a handler's count). Run with `cargo bench -p daemon-runtime`.

use criterion::{criterion_group, criterion_main, Criterion};
use daemon_runtime::__bench::Board;
use daemon_runtime::policy::{plan, Limits, Phase, WorkerView};
use std::hint::black_box;

/// The baseline the transitions are read against: one cheap system call, which is what a
/// transition would cost if the scoreboard were a pipe or a socket.
fn baseline(c: &mut Criterion) {
    c.bench_function("baseline: one getppid() system call", |b| b.iter(|| black_box(nix::unistd::getppid())));
}

fn scoreboard(c: &mut Criterion) {
    let Ok(board) = Board::new(1000) else {
        eprintln!("cannot map a scoreboard here; skipping the scoreboard benchmark");
        return;
    };
    c.bench_function("scoreboard: accept + finish one connection (2 transitions)", |b| {
        b.iter(|| board.connection())
    });
}

fn policy(c: &mut Criterion) {
    let limits = Limits { workers: 128, min_spare: 16, max_spare: 64, max_children: 256 };
    let pool: Vec<WorkerView> = (0..256)
        .map(|slot| WorkerView {
            slot,
            phase: match slot % 4 {
                0 => Phase::Idle,
                1 | 2 => Phase::Busy,
                _ => Phase::Starting,
            },
            started_ms: slot as u64 * 7,
            unoccupied: slot % 4 == 0,
        })
        .collect();
    c.bench_function("policy: plan over 256 slots", |b| {
        b.iter(|| plan(black_box(&pool), black_box(&limits), black_box(100_000), black_box(Some(99_500))))
    });
}

/// A count in the shared area, against the same add on a process-local atomic: what the area's
/// lookup (its mapping, this process's row, the metric's cell) costs on top.
fn metrics(c: &mut Criterion) {
    use daemon_runtime::metrics::{Counter, Histogram};
    use std::sync::atomic::{AtomicU64, Ordering};
    static JOBS: Counter = Counter::new("bench_jobs_total", "Jobs");
    static SECONDS: Histogram = Histogram::new("bench_seconds", "Seconds", Histogram::DEFAULT_BUCKETS);
    static LOCAL: AtomicU64 = AtomicU64::new(0);
    if let Err(why) = daemon_runtime::__bench::metrics_area() {
        panic!("the metrics benchmark needs a metrics area: {why}");
    }
    c.bench_function("baseline: a relaxed fetch_add on a process-local atomic", |b| b.iter(|| LOCAL.fetch_add(black_box(1), Ordering::Relaxed)));
    c.bench_function("metrics: Counter::inc in the shared area", |b| b.iter(|| JOBS.inc()));
    c.bench_function("metrics: Histogram::observe, 11 buckets", |b| b.iter(|| SECONDS.observe(black_box(0.3))));
}

criterion_group!(benches, baseline, scoreboard, policy, metrics);
criterion_main!(benches);
