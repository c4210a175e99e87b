// Every mistake is reported in one compile, each at its own token.
#[daemon::main(prefork = 0, max_spares = 3, listen = "localhost", detach = 1, graceful_timeout = "soon", prefork = 2)]
fn main() {}
