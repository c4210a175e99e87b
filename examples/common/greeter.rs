//! The messages of a small gRPC service, `greeter.Greeter/SayHello`, written with prost's
//! derive instead of generated from a .proto file (no protoc needed):
//!
//! ```proto
//! package greeter;
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; uint32 sleep_ms = 2; }
//! message HelloReply { string message = 1; uint32 worker = 2; }
//! ```

/// The method's path, as gRPC names it on HTTP/2.
pub const SAY_HELLO: &str = "/greeter.Greeter/SayHello";

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    /// How long the server takes to answer (for tests of graceful stops).
    #[prost(uint32, tag = "2")]
    pub sleep_ms: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
    /// The pid of the worker that answered.
    #[prost(uint32, tag = "2")]
    pub worker: u32,
}
