#[daemon::main]
fn main() {}

#[daemon::supervised(workers = 2)]
fn run(ctx: &daemon::Supervised) {
    let _ = ctx;
}
