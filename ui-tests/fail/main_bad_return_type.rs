#[daemon::main]
fn main() -> i32 {
    0
}
