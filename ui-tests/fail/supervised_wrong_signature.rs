#[daemon::main]
fn main() {}

// The supervised fn takes its context by reference (or by value, when async).
#[daemon::supervised]
fn run(ctx: daemon::Supervised, extra: u32) -> u32 {
    let _ = ctx;
    extra
}
