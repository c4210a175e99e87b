#[daemon::main(listen = "localhost")]
fn main() {}
