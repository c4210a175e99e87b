#[daemon::main(colour = "blue")]
fn main() {}
