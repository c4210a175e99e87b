#[daemon::main(min_spare = 5, max_spare = 3)]
fn main() {}
