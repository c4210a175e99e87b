#[daemon::main(prefork = 0)]
fn main() {}
