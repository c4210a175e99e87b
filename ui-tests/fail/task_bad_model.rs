#[daemon::main]
fn main() {}

#[daemon::task(model = forever)]
fn digest(ctx: &daemon::Task) {
    let _ = ctx.stopping();
}
