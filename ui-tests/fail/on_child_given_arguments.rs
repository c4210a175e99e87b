#[daemon::main]
fn main() {}

#[daemon::on_child(prefork = 4)]
fn init(child: &daemon::Child) {
    let _ = child;
}
