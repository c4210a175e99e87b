//! The axum application of `examples/axum.rs`, shared with `examples/axum_baseline.rs` (the
//! same router on `axum::serve`), so the benchmark compares servers, not applications.

use std::time::{Duration, Instant};

use axum::extract::{Path, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

/// The router: built once per worker under the daemon, once per process under `axum::serve`.
pub fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from axum\n" }))
        .route("/hello", get(|| async { "hello\n" }))
        .route("/worker", get(|| async { format!("pid {}\n", std::process::id()) }))
        .route("/sleep/{ms}", get(sleep))
        .layer(middleware::from_fn(log_request))
}

async fn sleep(Path(ms): Path<u64>) -> String {
    tracing::info!(ms, "sleeping");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms}\n")
}

/// One log line a request (`RUST_LOG=warn` turns them off).
async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let micros = started.elapsed().as_micros() as u64;
    tracing::info!(%method, path, status = response.status().as_u16(), micros, "request");
    response
}
