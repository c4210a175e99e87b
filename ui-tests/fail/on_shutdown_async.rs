#[daemon::main]
fn main() {}

#[daemon::on_shutdown]
async fn flush() {}
