#[daemon::main(detach = "yes")]
fn main() {}
