#[daemon::main(max_children = 100000)]
fn main() {}
