#[daemon::main(prefork = 4, max_spare = 3, prefork = 8)]
fn main() {}
