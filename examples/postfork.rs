//! `postfork`: the lab's routes, served post-forking (POE's default model): the manager accepts
//! each connection itself and forks a child that serves it and exits. At `max_children` it stops
//! accepting, and the connections beyond wait in the listen queue, never refused, until a child
//! ends.
//!
//! ```sh
//! cargo run --example postfork             # 127.0.0.1:8084
//! curl 127.0.0.1:8084/pid                  # a new pid for every connection
//! ```

#[path = "common/lab_routes.rs"]
mod routes;

#[daemon::main(postfork, max_children = 8, listen = "127.0.0.1:8084")]
fn main() {
    tracing::info!("postfork: one child per connection, at most max_children at once");
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    routes::serve(conn).await
}
