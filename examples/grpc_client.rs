//! `grpc_client`: calls `greeter.Greeter/SayHello` with tonic's client, over TLS (`https://`,
//! trusting `--ca`) or h2c (`http://`). With `--until FILE`, it calls from `--tasks` tasks at
//! once until FILE exists, then prints how many calls succeeded and failed (and the first
//! errors); otherwise it calls once and prints the answer. It exits 1 if a call failed.
//!
//! A call the transport never sent is sent again, once, as gRPC's transparent retry does: when
//! a server stops a connection gracefully (GOAWAY), tonic's channel fails a request it had
//! queued on that connection but not written (`Cancelled`, "connection closed") instead of
//! sending it on the next connection, as hyper-util's pooled client would.

#[path = "common/greeter.rs"]
mod greeter;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use greeter::{HelloReply, HelloRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    /// The CA that signed the server's certificate (PEM), for https:// URLs.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Keep calling until this file exists.
    #[arg(long)]
    until: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    tasks: usize,
    /// How long the server takes for each call.
    #[arg(long, default_value_t = 0)]
    sleep_ms: u32,
}

async fn say_hello(channel: Channel, name: &str, sleep_ms: u32, retried: &AtomicU64) -> Result<HelloReply, tonic::Status> {
    match call(channel.clone(), name, sleep_ms).await {
        Err(status) if never_sent(&status) => {
            retried.fetch_add(1, Ordering::Relaxed);
            call(channel, name, sleep_ms).await
        }
        other => other,
    }
}

/// The transport dropped the request before writing it: its connection closed (GOAWAY) with
/// the request still queued.
fn never_sent(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    let mut source = status.source();
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            return e.is_canceled();
        }
        source = e.source();
    }
    false
}

async fn call(channel: Channel, name: &str, sleep_ms: u32) -> Result<HelloReply, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<HelloRequest, HelloReply>::default();
    let path = http::uri::PathAndQuery::from_static(greeter::SAY_HELLO);
    let request = tonic::Request::new(HelloRequest { name: name.to_string(), sleep_ms });
    grpc.unary(request, path, codec).await.map(tonic::Response::into_inner)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut endpoint = Channel::from_shared(args.url.clone())?;
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca)?;
        endpoint = endpoint.tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)).domain_name("localhost"))?;
    }
    let channel = endpoint.connect().await?;
    let Some(until) = args.until else {
        let reply = say_hello(channel, "world", args.sleep_ms, &AtomicU64::new(0)).await?;
        println!("{} (worker {})", reply.message, reply.worker);
        return Ok(());
    };
    let (ok, failed, retried) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for i in 0..args.tasks {
        let (channel, ok, failed, retried, errors, until) = (channel.clone(), ok.clone(), failed.clone(), retried.clone(), errors.clone(), until.clone());
        tasks.push(tokio::spawn(async move {
            while !until.exists() {
                match say_hello(channel.clone(), &format!("task {i}"), args.sleep_ms, &retried).await {
                    Ok(reply) if reply.message == format!("hello, task {i}") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
                        if errors.len() < 5 {
                            errors.push(format!("{other:?}"));
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let (ok, failed, retried) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), retried.load(Ordering::Relaxed));
    println!("ok={ok} failed={failed} retried_unsent={retried} errors={:?}", errors.lock().unwrap_or_else(|e| e.into_inner()));
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
