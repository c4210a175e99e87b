// A task group is named after its function: two in different modules would be one group.
#[daemon::main]
fn main() {}

mod a {
    #[daemon::task]
    fn digest(ctx: &daemon::Task) {
        let _ = ctx;
    }
}

mod b {
    #[daemon::task(workers = 2)]
    fn digest(ctx: &daemon::Task) {
        let _ = ctx;
    }
}
