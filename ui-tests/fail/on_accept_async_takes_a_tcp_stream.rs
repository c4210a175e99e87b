#[daemon::main]
fn main() {}

#[daemon::on_accept]
async fn serve(stream: std::net::TcpStream) -> std::io::Result<()> {
    let _ = stream;
    Ok(())
}
