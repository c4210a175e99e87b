#[daemon::main]
fn main() {}

#[daemon::on_accept]
fn serve(mut stream: impl std::io::Write) -> std::io::Result<()> {
    stream.write_all(b"hello\n")
}
