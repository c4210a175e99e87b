#[daemon::main]
fn main() {}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> Result<(), String> {
    let _ = conn;
    Ok(())
}
