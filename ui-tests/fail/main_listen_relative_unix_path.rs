#[daemon::main(listen = ["127.0.0.1:8080", "unix:run/app.sock"])]
fn main() {}

#[daemon::on_accept]
async fn serve(_conn: daemon::Connection) -> std::io::Result<()> {
    Ok(())
}
