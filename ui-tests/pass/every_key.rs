//! Every key of #[daemon::main] the test can use without root or files, in each accepted form.

#[daemon::main(
    prefork = 2,
    min_spare = 1,
    max_spare = 3,
    max_children = 8,
    requests = 10_000,
    clients = 64,
    listen = ["127.0.0.1:0", "127.0.0.1:0"],
    backlog = 2048,
    tcp_nodelay = false,
    rcvbuf = "256K",
    sndbuf = "1M",
    tcp_defer_accept = "10s",
    socket_mode = "0600",
    socket_user = "root",
    socket_group = "root",
    tls_alpn = "h2,http/1.1",
    detach = false,
    foreground,
    graceful_timeout = "1500ms",
    term_stop = "graceful",
    start_timeout = 2m,
    heartbeat_interval = "2s",
    heartbeat_timeout = 20s,
    request_timeout = "1m",
    long_request_timeout = "10m",
    idle_timeout = off,
    keepalive_timeout = 5,
    max_rss = "512M",
    max_cpu = "1h",
    restart_intensity = 10,
    restart_period = "30s",
    min_worker_lifetime = "500ms",
    respawn_delay = "2s",
    drain_timeout = "250ms",
    upgrade_timeout = 90s,
)]
fn main() {
    stop_before_forking();
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    drop(conn);
    Ok(())
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
