#[daemon::main]
fn main() {}

// Manager hooks run in the manager, which never starts tokio.
#[daemon::on_ready]
async fn ready() {}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    drop(conn);
    Ok(())
}
