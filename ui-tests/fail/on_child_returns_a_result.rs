#[daemon::main]
fn main() {}

#[daemon::on_child]
fn init(child: &daemon::Child) -> Result<(), String> {
    let _ = child;
    Ok(())
}
