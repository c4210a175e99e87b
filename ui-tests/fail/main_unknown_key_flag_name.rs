// `--workers` is the binary's flag; the attribute's key is `prefork`.
#[daemon::main(workers = 8)]
fn main() {}
