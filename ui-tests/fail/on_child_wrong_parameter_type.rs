#[daemon::main]
fn main() {}

#[daemon::on_child]
fn init(c: String) {
    let _ = c;
}
