#[daemon::main]
fn main() {}

#[daemon::supervised]
fn first(ctx: &daemon::Supervised) {
    let _ = ctx;
}

mod more {
    #[daemon::supervised]
    fn second(ctx: &daemon::Supervised) {
        let _ = ctx;
    }
}
