#[daemon::main(listen = "unix:/run/app/app.sock", socket_mode = "0668")]
fn main() {}

#[daemon::on_accept]
async fn serve(_conn: daemon::Connection) -> std::io::Result<()> {
    Ok(())
}
