#[daemon::main(listen = [])]
fn main() {}
