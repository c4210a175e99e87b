// Spare workers belong to the pre-forking pool; post-forking forks per connection.
#[daemon::main(postfork, max_children = 8, min_spare = 2)]
fn main() {}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    drop(conn);
    Ok(())
}
