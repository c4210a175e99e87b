#[daemon::main]
fn main() {}

#[daemon::task(workers = 3, max_workers = 2)]
fn digest(ctx: &daemon::Task) {
    let _ = ctx;
}
