#[daemon::main]
fn main() {}

#[daemon::on_reap]
fn reaped(pid: u32) {
    let _ = pid;
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    drop(conn);
    Ok(())
}
