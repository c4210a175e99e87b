//! Micro-benchmarks of the two things on hot paths: a scoreboard transition (a worker's stores on
//! each connection) and the spare policy's plan (the manager's work on each wake-up), over a pool
//! of 256. Run with `cargo bench -p daemon-runtime`.

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

criterion_group!(benches, baseline, scoreboard, policy);
criterion_main!(benches);
