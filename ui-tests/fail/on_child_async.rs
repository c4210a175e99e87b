#[daemon::main]
fn main() {}

#[daemon::on_child]
async fn init(child: &daemon::Child) {
    let _ = child;
}
