//! on_child may return the worker's state (or a `Result` of it), limited to some pools, and
//! handlers, tasks and later hooks get it back by type.

use std::cell::Cell;

#[daemon::main]
fn main() {
    stop_before_forking();
}

struct Db {
    opened_by: u32,
    queries: Cell<u64>,
}

struct Cache(Vec<u8>);

#[derive(Debug)]
struct OpenError;

#[daemon::on_child]
fn db(child: &daemon::Child) -> Result<Db, OpenError> {
    if child.pool().is_empty() {
        return Err(OpenError);
    }
    Ok(Db { opened_by: child.pid(), queries: Cell::new(0) })
}

#[daemon::on_child(pools = ["main"])]
fn cache(child: &daemon::Child) -> Cache {
    // A later hook sees what an earlier one kept (hooks run by module path, then name).
    let _ = child.state::<Db>().map(|d| d.opened_by);
    Cache(Vec::new())
}

#[daemon::on_child(pools = ["main", "sweep"])]
fn io_result() -> std::io::Result<()> {
    Ok(())
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    if let Some(db) = conn.state::<Db>() {
        db.queries.set(db.queries.get() + 1);
    }
    let _ = daemon::state::<Cache>().map(|c| c.0.len());
    Ok(())
}

#[daemon::task(workers = 1)]
fn sweep(ctx: &daemon::Task) {
    let _ = ctx.state::<Db>().map(|d| d.queries.get());
    let _ = matches!(ctx.child().kind(), daemon::PoolKind::Task);
}

// See hooks_without_arguments.rs: the case ends before the manager forks.
fn stop_before_forking() {
    std::process::exit(0);
}
