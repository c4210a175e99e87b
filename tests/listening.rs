//! Where and how the daemon listens: the accept queue (`backlog`), and IPv6.

mod support;

use support::*;

#[test]
fn backlog_sizes_each_accept_queue_and_a_value_past_the_kernels_cap_is_said() {
    let d = Daemon::serve("lab", &["--workers", "1", "--backlog", "7"]);
    d.wait_for_line("pool ready", SOON);
    assert_eq!(listen_queue(d.port()), Some(7));
    drop(d);
    // The default: 1024 (nginx's is 511), unless the kernel caps it lower.
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").expect("somaxconn").trim().parse().expect("a number");
    let d = Daemon::serve("lab", &["--workers", "1"]);
    d.wait_for_line("pool ready", SOON);
    assert_eq!(listen_queue(d.port()), Some(1024.min(somaxconn)));
    drop(d);
    // Past net.core.somaxconn, the kernel holds that many, and the log says so and how to
    // raise it. (At the largest somaxconn there is no past: then nothing is said.)
    let asked = (somaxconn + 1).min(65_535);
    let d = Daemon::serve("lab", &["--workers", "1", "--backlog", &asked.to_string()]);
    d.wait_for_line("pool ready", SOON);
    assert_eq!(listen_queue(d.port()), Some(asked.min(somaxconn)));
    let said = d.lines().into_iter().find(|l| l.contains("net.core.somaxconn"));
    if asked > somaxconn {
        let said = said.expect("a warning about somaxconn");
        assert!(said.contains("WARN") && said.contains(&format!("sysctl -w net.core.somaxconn={asked}")), "{said}");
    } else {
        assert_eq!(said, None);
    }
}

#[test]
fn a_wildcard_ipv6_address_serves_ipv4_clients_too() {
    // `[::]:P` is one socket for both families, whatever net.ipv6.bindv6only says.
    let d = Daemon::start("lab", &["--workers", "1", "--listen", "[::]:0"]);
    let line = d.wait_for_line("listening addr=[::]:", SOON);
    let port: u16 = line.split("listening addr=[::]:").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).expect("the port");
    d.wait_for_line("pool ready", SOON);
    assert_eq!(http_get(port, "/").map(|(code, _)| code).ok(), Some(200), "over IPv4");
    let mut v6 = std::net::TcpStream::connect(("::1", port)).expect("connect over IPv6");
    std::io::Write::write_all(&mut v6, b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n").expect("a request");
    assert_eq!(read_response(&mut v6).map(|(code, _)| code).ok(), Some(200), "over IPv6");
}

#[test]
fn a_host_name_is_resolved_at_start_and_every_address_it_has_is_bound() {
    // `localhost` is in every /etc/hosts: 127.0.0.1, and ::1 where the machine has IPv6.
    let d = Daemon::start("lab", &["--workers", "1", "--listen", "localhost:0"]);
    d.wait_for_line("pool ready", SOON);
    let bound: Vec<std::net::SocketAddr> = d
        .lines()
        .iter()
        .filter_map(|l| l.split("listening addr=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!bound.is_empty() && bound.iter().all(|a| a.ip().is_loopback()), "{bound:?}");
    let v4 = bound.iter().find(|a| a.is_ipv4()).expect("localhost's IPv4 address");
    assert_eq!(http_get(v4.port(), "/").map(|(code, _)| code).ok(), Some(200));
}

#[test]
fn accepted_connections_have_tcp_nodelay_unless_it_is_off() {
    for (args, want) in [
        (&["--workers", "1"][..], "true"),
        (&["--workers", "1", "--tcp-nodelay=off"][..], "false"),
        // Accepted by the manager, served by the child it forks.
        (&["--postfork"][..], "true"),
    ] {
        let d = Daemon::serve("lab", args);
        // (A post-forking pool has no "pool ready": it forks for each connection.)
        d.wait_for_line("manager started", SOON);
        assert_eq!(d.get("/nodelay"), (200, format!("{want}\n")), "{args:?}");
    }
}

#[test]
fn a_host_name_that_does_not_resolve_stops_the_start_with_the_reason() {
    // `.invalid` never resolves (RFC 6761); the resolver is told not to wait long for DNS.
    let (code, _, err) = Daemon::run_to_exit(
        "lab",
        &["--workers", "1", "--listen", "no-such-host.invalid:8080"],
        &[("RES_OPTIONS", "timeout:1 attempts:1")],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot listen on no-such-host.invalid:8080") && err.contains("cannot be resolved"), "{err}");
}

/// The listener's receive and send buffers as `ss -m` shows them (`skmem:(...,rbN,...,tbN`).
fn listener_buffers(port: u16) -> Option<(u64, u64)> {
    let out = std::process::Command::new("ss").args(["-Hltnm", &format!("sport = :{port}")]).output().expect("ss (Debian's iproute2)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let skmem = text.split("skmem:(").nth(1)?.split(')').next()?.to_string();
    let field = |name: &str| skmem.split(',').find_map(|f| f.strip_prefix(name)?.parse::<u64>().ok());
    Some((field("rb")?, field("tb")?))
}

#[test]
fn rcvbuf_sndbuf_and_tcp_defer_accept_tune_the_listeners() {
    let dir = TempDir::new("listen-options");
    let pid_file = dir.path("lab.pid").display().to_string();
    let status = |pid_file: &str| -> serde_json::Value {
        let out = run_program(&example("lab"), &["status", "--json", "--pid-file", pid_file]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let d = Daemon::serve("lab", &["--workers", "1", "--rcvbuf", "128K", "--sndbuf", "64K", "--tcp-defer-accept", "30s", "--pid-file", &pid_file]);
    d.wait_for_line("pool ready", SOON);
    // The kernel doubles what is set, for its own bookkeeping (socket(7)).
    assert_eq!(listener_buffers(d.port()), Some((256 << 10, 128 << 10)));
    // A client that connects and says nothing is not handed to a worker: the one that sends a
    // request after it is served, and then no connection is in the worker.
    let mut silent = connect(d.port()).expect("connect");
    assert_eq!(http_get(d.port(), "/").map(|(code, _)| code).ok(), Some(200));
    let active = |s: &serde_json::Value| s["workers"][0]["active"].as_u64();
    wait_until(SOON, "the served connection to end", || active(&status(&pid_file)) == Some(0));
    // Once it speaks, it is accepted and served.
    std::io::Write::write_all(&mut silent, b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n").expect("a request");
    assert_eq!(read_response(&mut silent).map(|(code, _)| code).ok(), Some(200));
    drop(d);
    // Without it, the silent client holds a place in the worker.
    let d = Daemon::serve("lab", &["--workers", "1", "--pid-file", &pid_file]);
    d.wait_for_line("pool ready", SOON);
    let _silent = connect(d.port()).expect("connect");
    wait_until(SOON, "the silent client to be accepted", || active(&status(&pid_file)) == Some(1));
}
