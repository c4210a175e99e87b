//! `grpc`: a gRPC service (tonic) on the framework: `daemon::http::serve` speaks HTTP/2 to gRPC
//! clients, over TLS (with `tls_alpn = "h2,http/1.1"`, set here) or in plaintext with prior
//! knowledge (h2c), and the service is one axum route.
//!
//! ```sh
//! cargo run --features http,tls --example grpc                       # h2c on 127.0.0.1:50051
//! cargo run --features http --example grpc_client -- --url http://127.0.0.1:50051
//! cargo run --features http,tls --example grpc -- --tls-cert cert.pem --tls-key key.pem
//! cargo run --features http --example grpc_client -- --url https://localhost:50051 --ca ca.pem
//! ```

#[path = "common/greeter.rs"]
mod greeter;

use axum::extract::Request;
use axum::response::Response;
use greeter::{HelloReply, HelloRequest};
use tonic::{Status, server::UnaryService};

#[daemon::main(listen = "127.0.0.1:50051", tls_alpn = "h2,http/1.1")]
fn main() {}

/// Every gRPC method is a route; tonic decodes the request and encodes the answer.
fn app() -> axum::Router {
    axum::Router::new().route(greeter::SAY_HELLO, axum::routing::post(say_hello))
}

async fn say_hello(request: Request) -> Response {
    let codec = tonic_prost::ProstCodec::<HelloReply, HelloRequest>::default();
    tonic::server::Grpc::new(codec).unary(Greeter, request).await.map(axum::body::Body::new)
}

#[derive(Clone, Copy)]
struct Greeter;

impl UnaryService<HelloRequest> for Greeter {
    type Response = HelloReply;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<HelloReply>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        Box::pin(async move {
            let request = request.into_inner();
            if request.sleep_ms > 0 {
                daemon::tokio::time::sleep(std::time::Duration::from_millis(request.sleep_ms.into())).await;
            }
            Ok(tonic::Response::new(HelloReply { message: format!("hello, {}", request.name), worker: std::process::id() }))
        })
    }
}

#[daemon::on_accept]
async fn serve(conn: daemon::Connection) -> std::io::Result<()> {
    daemon::http::serve(conn, app).await
}
