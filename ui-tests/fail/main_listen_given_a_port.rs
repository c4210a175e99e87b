#[daemon::main(listen = 8080)]
fn main() {}
