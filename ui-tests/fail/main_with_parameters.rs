#[daemon::main]
fn main(argc: i32, argv: Vec<String>) {
    let _ = (argc, argv);
}
