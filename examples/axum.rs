//! An axum `Router` on pre-forked workers, in one line: `daemon::http::serve(conn, app)`. Each
//! worker builds the router once; a graceful stop (QUIT, recycling, a new generation) finishes
//! the request in hand and answers it with `Connection: close`. The router itself is an
//! ordinary axum one (`common/axum_app.rs`: `/`, `/hello`, `/worker`, `/sleep/{ms}`).
//!
//! ```sh
//! cargo run --features http --example axum
//! curl 127.0.0.1:8082/ ; curl 127.0.0.1:8082/worker ; curl 127.0.0.1:8082/sleep/500
//! ```

#[path = "common/axum_app.rs"]
mod axum_app;

#[daemon::main(listen = "127.0.0.1:8082")]
fn main() {}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    daemon::http::serve(conn, axum_app::app).await
}
