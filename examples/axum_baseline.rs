//! `axum_baseline`: the benchmarks' reference for `examples/axum.rs`: the same router
//! (`common/axum_app.rs`) on `axum::serve`, on tokio's multi-thread runtime, in one process.
//!
//! ```sh
//! cargo run --release --features http --example axum_baseline -- --listen 127.0.0.1:8083 --workers 2
//! ```
//!
//! `--workers N` gives the runtime N worker threads (`bench/run` gives the daemon N workers).

#[path = "common/axum_app.rs"]
mod axum_app;

use std::net::SocketAddr;

fn main() {
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8083));
    let mut threads = 2usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        let parsed = match (flag.as_str(), value.as_deref()) {
            ("--listen", Some(v)) => v.parse().map(|a| addr = a).map_err(|_| format!("--listen {v}: not an IP:PORT address")),
            ("--workers", Some(v)) => match v.parse() {
                Ok(n) if (1..=1024).contains(&n) => {
                    threads = n;
                    Ok(())
                }
                _ => Err(format!("--workers {v}: a whole number from 1 to 1024")),
            },
            _ => Err(format!("{flag}: unknown, or without its value (usage: axum_baseline [--listen IP:PORT] [--workers N])")),
        };
        if let Err(why) = parsed {
            eprintln!("axum_baseline: error: {why}");
            std::process::exit(2);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build();
    let served = runtime.and_then(|rt| {
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            axum::serve(listener, axum_app::app()).await
        })
    });
    if let Err(e) = served {
        eprintln!("axum_baseline: error: {e}");
        std::process::exit(1);
    }
}
