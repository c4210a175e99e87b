#[daemon::main(requests = true)]
fn main() {}
