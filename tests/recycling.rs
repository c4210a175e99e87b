//! `requests = N`: a worker is recycled after at most N connections.

mod support;

use std::collections::BTreeSet;

use support::{Daemon, SOON};

#[test]
fn a_worker_is_recycled_after_its_quota_of_connections() {
    let d = Daemon::serve(
        "lab",
        &["--workers", "1", "--max-spare", "1", "--max-children", "2", "--requests", "3"],
    );
    d.wait_for_workers(1, SOON);

    // One connection per request (Connection: close), one after the other.
    let served: Vec<i32> = (0..12)
        .map(|i| {
            let (status, body) = d.get("/pid");
            assert_eq!(status, 200, "request {i}");
            body.trim().parse().unwrap_or_else(|_| panic!("/pid answered {body:?}"))
        })
        .collect();

    let distinct: BTreeSet<i32> = served.iter().copied().collect();
    assert!(
        distinct.len() >= 3,
        "12 connections with requests = 3 were served by {} workers: {served:?}",
        distinct.len()
    );
    for run in served.chunk_by(|a, b| a == b) {
        assert!(
            run.len() <= 3,
            "worker {} served {} connections in a row: {served:?}",
            run[0],
            run.len()
        );
    }
    assert!(!distinct.contains(&d.pid()), "the manager served a request: {served:?}");
}
