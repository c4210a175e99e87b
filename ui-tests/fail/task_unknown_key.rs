#[daemon::main]
fn main() {}

#[daemon::task(worker = 2, modle = oneshot)]
fn digest(ctx: &daemon::Task) {
    let _ = ctx.stopping();
}
