#[daemon::main]
fn main() {}

struct Pool;

impl Pool {
    #[daemon::on_child]
    fn init(&self, child: &daemon::Child) {
        let _ = child;
    }
}
