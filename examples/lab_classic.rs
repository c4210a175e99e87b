//! `lab_classic`: the classic model's test-bed, for the process tests. Each connection is a
//! worker's only one (a blocking handler); the client sends one command line and reads the answer.
//!
//! ```sh
//! cargo run --example lab_classic                 # 127.0.0.1:8083, pre-forked workers
//! cargo run --example lab_classic -- --postfork    # a child per connection instead
//! echo 'sleep 500' | nc 127.0.0.1 8083
//! ```
//!
//! | line        | what the worker does                                                       |
//! |-------------|----------------------------------------------------------------------------|
//! | `pid`       | answers its pid                                                            |
//! | `sleep MS`  | blocks for MS milliseconds (no heartbeat meanwhile), then answers          |
//! | `spin MS`   | a busy loop of MS milliseconds, then answers                               |
//! | `work MS`   | blocks for MS milliseconds in steps of 100, calling `daemon::heartbeat()`  |
//! | `long MS`   | marks the request long (`daemon::long()`), then blocks for MS milliseconds |
//! | `echo`      | echoes every line after it until the client closes                         |
//!
//! Every command is logged, and described to the scoreboard (`daemon::describe_request`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[daemon::main(listen = "127.0.0.1:8083")]
fn main() {
    limit_processes();
}

#[daemon::on_accept]
fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let line = line.trim();
    tracing::info!(command = line, "command");
    daemon::describe_request(line);
    let mut words = line.split_whitespace();
    let (verb, ms) = (words.next().unwrap_or(""), words.next().and_then(|n| n.parse::<u64>().ok()));
    match (verb, ms) {
        ("pid", None) => writeln!(out, "{}", std::process::id()),
        ("sleep", Some(ms)) => {
            std::thread::sleep(Duration::from_millis(ms));
            writeln!(out, "slept {ms}")
        }
        ("spin", Some(ms)) => {
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            writeln!(out, "spun {ms}")
        }
        ("work", Some(ms)) => {
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
                daemon::heartbeat();
            }
            writeln!(out, "worked {ms}")
        }
        ("long", Some(ms)) => {
            daemon::long();
            std::thread::sleep(Duration::from_millis(ms));
            writeln!(out, "long {ms}")
        }
        ("echo", None) => {
            let mut next = String::new();
            loop {
                next.clear();
                if reader.read_line(&mut next)? == 0 {
                    return Ok(());
                }
                out.write_all(next.as_bytes())?;
            }
        }
        _ => writeln!(out, "unknown command: {line}"),
    }
}

/// LAB_NPROC=N: the manager may have at most N processes of its user (RLIMIT_NPROC), for the
/// tests of failed forks. Set in `main`'s body, after privileges are dropped: root's forks are
/// never refused.
fn limit_processes() {
    if let Some(n) = std::env::var("LAB_NPROC").ok().and_then(|n| n.parse::<u64>().ok()) {
        let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
        // SAFETY: setrlimit(2) with a valid pointer to a limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &limit) } != 0 {
            tracing::error!(error = %std::io::Error::last_os_error(), "cannot set LAB_NPROC");
        }
    }
}
