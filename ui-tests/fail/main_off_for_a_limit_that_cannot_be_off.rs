#[daemon::main(restart_period = off, graceful_timeout = "off")]
fn main() {}
