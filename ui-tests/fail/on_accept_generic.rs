#[daemon::main]
fn main() {}

#[daemon::on_accept]
fn serve<S: std::io::Write>(mut stream: S) -> std::io::Result<()> {
    stream.write_all(b"hello\n")
}
