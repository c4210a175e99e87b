//! Generated code captures, shadows and collides with none of the program's names: hooks and the
//! handler are named like the expansion's own parameters (`child`, `conn`), and one module holds
//! items named `daemon`, `Child`, `Connection` and `hooks` beside its hooks.

#[daemon::main(prefork = 4, max_spare = 3, detach)]
fn main() {
    stop_before_forking();
}

#[daemon::on_child]
fn child(_c: &daemon::Child) {}

#[daemon::on_shutdown]
fn hooks(child: &daemon::Child) {
    let _ = child.slot();
}

#[daemon::on_accept]
async fn conn(mut conn: daemon::Connection) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    conn.write_all(b"hello\n").await
}

mod lookalikes {
    #![allow(dead_code, non_upper_case_globals)]

    // A module of the program's own named `daemon`: the attributes are reached through `::daemon`,
    // and the expansion names only absolute paths, so this module is never mistaken for the crate.
    mod daemon {
        pub struct Child;
    }
    struct Child;
    struct Connection;
    fn hooks() {}
    fn inventory() {}
    const __ctor: () = ();
    const __INVENTORY: () = ();

    #[::daemon::on_child]
    fn main(child: &::daemon::Child) {
        let _ = (child.pid(), Child, Connection, hooks(), inventory(), __ctor, __INVENTORY);
    }

    #[::daemon::on_child]
    fn __ctor_like() {}

    #[::daemon::on_shutdown]
    fn child() {}
}

// trybuild runs every pass case after building it, and a daemon would serve until stopped: each
// main body calls this once the runtime has checked the configuration, bound the listeners and
// collected the hooks, so the case ends there, before the manager forks. (tests/ui.rs points
// `listen` at a free port and keeps `detach` in the foreground.)
fn stop_before_forking() {
    std::process::exit(0);
}
