// Post-forking has no pool to size: prefork goes with the pre-forking pool only.
#[daemon::main(postfork, prefork = 4)]
fn main() {}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    drop(conn);
    Ok(())
}
