#[daemon::main]
async fn main() {}
