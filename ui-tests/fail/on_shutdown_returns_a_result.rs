#[daemon::main]
fn main() {}

#[daemon::on_shutdown]
fn flush(child: &daemon::Child) -> Result<(), String> {
    let _ = child;
    Ok(())
}
