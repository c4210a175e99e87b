//! Hooks may be anywhere: in nested modules, private or public, next to the code they serve.

#[daemon::main]
fn main() {
    stop_before_forking();
}

mod workers {
    pub mod setup {
        #[daemon::on_child]
        fn init(child: &daemon::Child) {
            let _ = child.generation();
        }

        #[daemon::on_shutdown]
        pub(crate) fn cleanup() {}
    }

    mod serving {
        use tokio::io::AsyncWriteExt;

        #[daemon::on_accept]
        pub async fn serve(mut conn: daemon::Connection) -> std::io::Result<()> {
            conn.write_all(b"hello\n").await
        }
    }
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
