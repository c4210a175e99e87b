#[daemon::main(prefork = "4")]
fn main() {}
