#[daemon::main]
fn main() {}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection, greeting: &'static str) -> std::io::Result<()> {
    let _ = (conn, greeting);
    Ok(())
}
