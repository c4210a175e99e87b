#[daemon::main(clients = 2.5)]
fn main() {}
