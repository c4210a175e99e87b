// A task group has no listeners: `listen` is the daemon's, in #[daemon::main].
#[daemon::main]
fn main() {}

#[daemon::task(workers = 2, listen = "127.0.0.1:9000")]
fn digest(ctx: &daemon::Task) {
    let _ = ctx.stopping();
}
