#[daemon::main]
fn main() {}

#[daemon::on_accept(clients = 10)]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    let _ = conn;
    Ok(())
}
