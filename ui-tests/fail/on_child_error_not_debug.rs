#[daemon::main]
fn main() {}

struct Db;
struct OpenError;

#[daemon::on_child]
fn db() -> Result<Db, OpenError> {
    Ok(Db)
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    let _ = conn.state::<Db>();
    Ok(())
}
