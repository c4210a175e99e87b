const WORKERS: u64 = 4;

#[daemon::main(prefork = WORKERS)]
fn main() {
    let _ = WORKERS;
}
