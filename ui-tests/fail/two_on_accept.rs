// A program has one on_accept handler, even in two modules.
#[daemon::main]
fn main() {}

mod a {
    #[daemon::on_accept]
    async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
        drop(conn);
        Ok(())
    }
}

mod b {
    #[daemon::on_accept]
    async fn serve_too(conn: daemon::Connection) -> std::io::Result<()> {
        drop(conn);
        Ok(())
    }
}
