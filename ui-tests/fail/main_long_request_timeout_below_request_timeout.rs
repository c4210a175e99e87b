#[daemon::main(request_timeout = "1m", long_request_timeout = "30s")]
fn main() {}
