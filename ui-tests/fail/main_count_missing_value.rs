#[daemon::main(prefork, detach)]
fn main() {}
