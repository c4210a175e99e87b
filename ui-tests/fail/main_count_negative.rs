#[daemon::main(max_spare = -1)]
fn main() {}
