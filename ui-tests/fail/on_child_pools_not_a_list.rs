#[daemon::main]
fn main() {}

#[daemon::on_child(pools = "main")]
fn init(child: &daemon::Child) {
    let _ = child;
}
