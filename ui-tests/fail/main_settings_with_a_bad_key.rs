#[derive(clap::Args, Clone, Debug)]
struct Settings {
    #[arg(long, default_value = "hello")]
    greeting: String,
}

#[daemon::main(prefrok = 4)]
fn main(settings: Settings) {
    let _ = settings.greeting;
}
