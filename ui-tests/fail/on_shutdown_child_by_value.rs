#[daemon::main]
fn main() {}

#[daemon::on_shutdown]
fn flush(child: daemon::Child) {
    let _ = child;
}
