#[daemon::main]
fn main() {}

#[daemon::on_child]
fn init(child: &daemon::Child, retries: u32) {
    let _ = (child, retries);
}
