#[daemon::main]
fn main() {}

#[daemon::on_accept]
fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    let _ = conn;
    Ok(())
}
