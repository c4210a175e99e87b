#[daemon::main(prefork = 4)]
struct Server;
