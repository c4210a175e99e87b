#[daemon::main(prefork = 16, max_children = 8)]
fn main() {}
