#[daemon::main(detach, foreground)]
fn main() {}
