//! The ecosystem's own server stack on pre-forked workers: an axum `Router`, served through hyper
//! on each connection a worker accepts. A graceful stop (QUIT, recycling, retirement) lets the
//! request in hand finish, then closes the connection; every request is logged with tracing.
//!
//! ```sh
//! cargo run --example axum
//! curl 127.0.0.1:8082/ ; curl 127.0.0.1:8082/worker
//! ```

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{Path, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

/// Each worker builds its router once, after fork.
static ROUTER: OnceLock<Router> = OnceLock::new();

#[daemon::main(listen = "127.0.0.1:8082")]
fn main() {}

#[daemon::on_child]
fn build_router(child: &daemon::Child) {
    let slot = child.slot();
    let router = Router::new()
        .route("/", get(|| async { "hello from axum\n" }))
        .route("/worker", get(move || async move { format!("slot {slot}, pid {}\n", std::process::id()) }))
        .route(
            "/sleep/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tracing::info!(ms, "sleeping");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms}\n")
            }),
        )
        .layer(middleware::from_fn(log_request));
    let _ = ROUTER.set(router);
}

async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    let Some(router) = ROUTER.get() else {
        return Err(std::io::Error::other("the router was not built"));
    };
    let stopping = conn.stopping();
    let service = TowerToHyperService::new(router.clone());
    let http = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(conn), service);
    tokio::pin!(http, stopping);
    let result = tokio::select! {
        done = http.as_mut() => done,
        () = &mut stopping => {
            // Finish the request in hand, answer it with `Connection: close`, then stop.
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    result.map_err(std::io::Error::other)
}
