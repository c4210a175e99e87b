#[daemon::main(graceful_timeout = 1.5)]
fn main() {}
