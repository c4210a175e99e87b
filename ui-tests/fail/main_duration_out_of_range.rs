#[daemon::main(graceful_timeout = "48h")]
fn main() {}
