struct Failure;

#[daemon::main]
fn main() -> Result<(), Failure> {
    Err(Failure)
}
