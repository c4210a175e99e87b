#[daemon::main(prefork = 4, max_spares = 3)]
fn main() {}
