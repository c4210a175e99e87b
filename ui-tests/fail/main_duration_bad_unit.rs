#[daemon::main(graceful_timeout = "2 days")]
fn main() {}
