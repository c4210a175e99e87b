#[daemon::main]
fn main() {}

#[daemon::on_child]
fn init<T: Default>() {
    let _ = T::default();
}
