#[daemon::main]
fn main() {}

// An async fn's future outlives the call: it owns its context.
#[daemon::supervised]
async fn run(ctx: &daemon::Supervised) {
    let _ = ctx;
}
