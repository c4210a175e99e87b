#[daemon::main]
fn main() {}

#[daemon::on_accept]
async fn serve(request: String) -> std::io::Result<()> {
    let _ = request;
    Ok(())
}
