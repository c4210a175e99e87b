#[daemon::main(user = "web server")]
fn main() {}
