//! Write Unix pre-forking daemons with attributes.
//!
//! ```no_run
//! #[daemon::main(prefork = 4, max_spare = 3)]
//! fn main() {
//!     // Runs once, in the manager, before any fork: load and preload here.
//! }
//!
//! #[daemon::on_child]
//! fn init(child: &daemon::Child) {
//!     // Runs in every new worker, after fork, before it accepts.
//!     let _ = child.slot();
//! }
//!
//! #[daemon::on_accept]
//! async fn serve(mut conn: daemon::Connection) -> std::io::Result<()> {
//!     use tokio::io::AsyncWriteExt;
//!     conn.write_all(b"hello\n").await
//! }
//! ```
//!
//! See the README for the attributes' keys, the command line of the generated binary, and the
//! signals the manager understands.

pub use daemon_macros::{main, on_accept, on_child, on_shutdown};
pub use daemon_runtime::config;
pub use daemon_runtime::{foreign_child, Child, Connection};

#[doc(hidden)]
pub mod __private {
    pub use daemon_runtime::__private::*;
}
