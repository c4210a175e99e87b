#[daemon::main(max_rss = "512 parsecs", max_cpu = -1)]
fn main() {}
