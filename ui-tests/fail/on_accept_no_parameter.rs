#[daemon::main]
fn main() {}

#[daemon::on_accept]
fn serve() -> std::io::Result<()> {
    Ok(())
}
