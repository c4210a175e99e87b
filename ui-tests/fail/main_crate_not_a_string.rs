#[daemon::main(crate = daemon)]
fn main() {}
