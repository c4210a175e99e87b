#[daemon::main]
fn main() {}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) {
    let _ = conn;
}
