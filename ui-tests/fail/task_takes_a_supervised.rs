#[daemon::main]
fn main() {}

#[daemon::task]
fn digest(ctx: &daemon::Supervised) {
    let _ = ctx.stopping();
}
