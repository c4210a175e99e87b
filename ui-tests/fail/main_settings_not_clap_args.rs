// The program's settings type derives clap::Args (and Clone).
#[derive(Clone)]
struct Settings {
    port: u16,
}

#[daemon::main]
fn main(settings: Settings) {
    let _ = settings.port;
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    drop(conn);
    Ok(())
}
