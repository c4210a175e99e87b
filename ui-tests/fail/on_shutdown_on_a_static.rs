#[daemon::main]
fn main() {}

#[daemon::on_shutdown]
static FLUSHED: bool = false;
