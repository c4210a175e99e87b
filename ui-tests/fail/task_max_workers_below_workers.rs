#[daemon::main]
fn main() {}

#[daemon::task(workers = 4, max_workers = 2, model = oneshot)]
fn convert(ctx: &daemon::Task) {
    let _ = ctx.stopping();
}
