#[daemon::main(heartbeat_interval = "30s", heartbeat_timeout = "10s")]
fn main() {}
