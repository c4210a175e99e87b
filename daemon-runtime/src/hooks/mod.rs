//! The user's hooks, registered by the attribute macros with `inventory` wherever they are, and
//! collected once at start-up: what the workers run (`on_accept`, `supervised`, `task`), what
//! runs in each worker around it (`on_child`, `on_shutdown`), and what runs in the manager
//! (`on_ready`, `on_spawn`, `on_reap`, `on_reload`, `on_exit`).
//!
//! `signature` holds the traits the generated code calls the user's functions through.

mod signature;

use std::future::Future;
use std::io;
use std::pin::Pin;

use daemon_config::GroupKey;

use crate::child::Child;
use crate::net::Stream;
use crate::program::Attr;
use crate::worker::connection::Connection;
pub use crate::worker::work::{Run, Supervised, Task, WorkFuture};

pub use signature::*;

/// The future an async `on_accept` handler returns, boxed so the runtime holds one type.
pub type BoxFuture = Pin<Box<dyn Future<Output = io::Result<()>> + 'static>>;

/// A function registered with `#[daemon::on_child]`: runs in each new worker after fork, before
/// it is ready. An `Err` (the hook's own, or a second value of a type the worker keeps) fails
/// the worker's start with the reason.
pub struct OnChild {
    pub name: &'static str,
    pub module: &'static str,
    /// The pools whose workers run it (`#[daemon::on_child(pools = [...])]`); none: all.
    pub pools: &'static [&'static str],
    pub run: fn(&Child) -> Result<(), String>,
}

/// A function registered with `#[daemon::on_shutdown]`: runs in a worker as it stops.
pub struct OnShutdown {
    pub name: &'static str,
    pub module: &'static str,
    pub run: fn(&Child),
}

/// How an `on_accept` handler serves connections.
#[derive(Clone, Copy)]
pub enum Handler {
    /// `async fn(Connection) -> io::Result<()>`: the worker runs its own current-thread tokio
    /// runtime and serves up to `clients` connections at once.
    Async(fn(Connection) -> BoxFuture),
    /// `fn(Stream) -> io::Result<()>` (or `fn(TcpStream)`, through a wrapper): one connection
    /// at a time per worker.
    Sync(fn(Stream) -> io::Result<()>),
}

/// The function registered with `#[daemon::on_accept]`. One per program at most.
pub struct OnAccept {
    pub name: &'static str,
    pub module: &'static str,
    pub handler: Handler,
    /// Whether the handler takes a `TcpStream`, so serves TCP listeners only.
    pub tcp_only: fn() -> bool,
}


/// The function registered with `#[daemon::supervised]`: one worker runs it, and is started
/// again (after `respawn_delay`) whenever it ends. One per program at most.
pub struct OnSupervised {
    pub name: &'static str,
    pub module: &'static str,
    pub run: Run<Supervised>,
}

/// A function registered with `#[daemon::task(...)]`: the work of a task group (its name is the
/// function's), with the group's settings from the attribute.
pub struct TaskFn {
    pub name: &'static str,
    pub module: &'static str,
    pub attrs: &'static [(GroupKey, Attr)],
    pub run: Run<Task>,
}

/// A worker the manager has just forked, as `#[daemon::on_spawn]` hooks see it.
#[derive(Clone, Debug)]
pub struct Spawned {
    pub pid: u32,
    /// The pool's name: `main` for the `on_accept` pool, `supervised`, or a task group's.
    pub pool: String,
    pub slot: usize,
    pub generation: u32,
}

/// A worker the manager has just reaped, as `#[daemon::on_reap]` hooks see it.
#[derive(Clone, Debug)]
pub struct Reaped {
    pub pid: u32,
    pub pool: String,
    pub slot: usize,
    /// Its exit status, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// The manager's reading of it: `expected`, `crash` or `unexpected`.
    pub death: &'static str,
}

/// When a manager hook runs.
#[derive(Clone, Copy)]
pub enum ManagerEvent {
    /// Every worker of the first generation accepts (POE's daemon_parent).
    Ready(fn()),
    Spawn(fn(&Spawned)),
    Reap(fn(&Reaped)),
    /// A reload was applied.
    Reload(fn()),
    /// The manager is about to exit.
    Exit(fn()),
}

/// A function registered with one of the manager-side attributes. They run in the manager,
/// synchronously, and must not block: the manager does nothing else while they run.
pub struct ManagerHook {
    pub name: &'static str,
    pub module: &'static str,
    pub event: ManagerEvent,
}

impl OnChild {
    pub const fn new(
        name: &'static str,
        module: &'static str,
        pools: &'static [&'static str],
        run: fn(&Child) -> Result<(), String>,
    ) -> OnChild {
        OnChild { name, module, pools, run }
    }

    /// Whether a worker of pool `pool` runs it.
    pub(crate) fn runs_in(&self, pool: &str) -> bool {
        self.pools.is_empty() || self.pools.contains(&pool)
    }
}

impl OnShutdown {
    pub const fn new(name: &'static str, module: &'static str, run: fn(&Child)) -> OnShutdown {
        OnShutdown { name, module, run }
    }
}

impl OnAccept {
    pub const fn asynchronous(
        name: &'static str,
        module: &'static str,
        f: fn(Connection) -> BoxFuture,
    ) -> OnAccept {
        OnAccept { name, module, handler: Handler::Async(f), tcp_only: || false }
    }

    pub const fn blocking(
        name: &'static str,
        module: &'static str,
        tcp_only: fn() -> bool,
        f: fn(Stream) -> io::Result<()>,
    ) -> OnAccept {
        OnAccept { name, module, handler: Handler::Sync(f), tcp_only }
    }
}

impl OnSupervised {
    pub const fn new(name: &'static str, module: &'static str, run: Run<Supervised>) -> OnSupervised {
        OnSupervised { name, module, run }
    }
}

impl TaskFn {
    pub const fn new(
        name: &'static str,
        module: &'static str,
        attrs: &'static [(GroupKey, Attr)],
        run: Run<Task>,
    ) -> TaskFn {
        TaskFn { name, module, attrs, run }
    }
}

impl ManagerHook {
    pub const fn new(name: &'static str, module: &'static str, event: ManagerEvent) -> ManagerHook {
        ManagerHook { name, module, event }
    }
}

inventory::collect!(OnChild);
inventory::collect!(OnShutdown);
inventory::collect!(OnAccept);
inventory::collect!(OnSupervised);
inventory::collect!(TaskFn);
inventory::collect!(ManagerHook);

/// What the program registered, collected once.
pub(crate) struct Hooks {
    pub on_child: Vec<&'static OnChild>,
    pub on_shutdown: Vec<&'static OnShutdown>,
    pub on_accept: Option<&'static OnAccept>,
    pub supervised: Option<&'static OnSupervised>,
    pub tasks: Vec<&'static TaskFn>,
    pub manager: Vec<&'static ManagerHook>,
}

/// Why the registered hooks cannot make a daemon. (The attributes refuse most of these while
/// the program compiles; hooks from other crates can only be counted here.)
#[derive(Debug)]
pub enum HookError {
    TwoAcceptHandlers(Vec<String>),
    TwoSupervised(Vec<String>),
    TwoTasksNamed(String, Vec<String>),
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookError::TwoAcceptHandlers(names) => write!(
                f,
                "{} #[daemon::on_accept] handlers ({}): a program has one at most; remove all but one",
                names.len(),
                names.join(", ")
            ),
            HookError::TwoSupervised(names) => write!(
                f,
                "{} #[daemon::supervised] functions ({}): a program has one at most; remove all but one",
                names.len(),
                names.join(", ")
            ),
            HookError::TwoTasksNamed(name, places) => write!(
                f,
                "two #[daemon::task] functions are named {name} ({}): a task group is named after its \
                 function, so rename one",
                places.join(", ")
            ),
        }
    }
}

impl std::error::Error for HookError {}

fn full_names(list: &[(&str, &str)]) -> Vec<String> {
    let mut names: Vec<String> = list.iter().map(|(m, n)| format!("{m}::{n}")).collect();
    names.sort();
    names
}

impl Hooks {
    pub(crate) fn collect() -> Result<Hooks, HookError> {
        let accepts: Vec<&'static OnAccept> = inventory::iter::<OnAccept>.into_iter().collect();
        if accepts.len() > 1 {
            let names: Vec<(&str, &str)> = accepts.iter().map(|h| (h.module, h.name)).collect();
            return Err(HookError::TwoAcceptHandlers(full_names(&names)));
        }
        let supervised: Vec<&'static OnSupervised> = inventory::iter::<OnSupervised>.into_iter().collect();
        if supervised.len() > 1 {
            let names: Vec<(&str, &str)> = supervised.iter().map(|h| (h.module, h.name)).collect();
            return Err(HookError::TwoSupervised(full_names(&names)));
        }
        let mut tasks: Vec<&'static TaskFn> = inventory::iter::<TaskFn>.into_iter().collect();
        tasks.sort_by_key(|t| (t.name, t.module));
        if let Some(w) = tasks.windows(2).find(|w| w[0].name == w[1].name) {
            let names = full_names(&[(w[0].module, w[0].name), (w[1].module, w[1].name)]);
            return Err(HookError::TwoTasksNamed(w[0].name.to_string(), names));
        }
        // inventory gives no order; run hooks in a stable one (module, then name).
        let mut on_child: Vec<&'static OnChild> = inventory::iter::<OnChild>.into_iter().collect();
        on_child.sort_by_key(|h| (h.module, h.name));
        let mut on_shutdown: Vec<&'static OnShutdown> = inventory::iter::<OnShutdown>.into_iter().collect();
        on_shutdown.sort_by_key(|h| (h.module, h.name));
        let mut manager: Vec<&'static ManagerHook> = inventory::iter::<ManagerHook>.into_iter().collect();
        manager.sort_by_key(|h| (h.module, h.name));
        Ok(Hooks {
            on_child,
            on_shutdown,
            on_accept: accepts.first().copied(),
            supervised: supervised.first().copied(),
            tasks,
            manager,
        })
    }

    /// Whether the program has any work for workers; without, `main`'s body is the daemon.
    pub(crate) fn has_workers(&self) -> bool {
        self.on_accept.is_some() || self.supervised.is_some() || !self.tasks.is_empty()
    }

    /// Every pool an `on_child` hook limited to some (`pools = [...]`) names must be one the
    /// program can have: `main` for its `on_accept` handler, `supervised`, a `#[daemon::task]`
    /// or a group of the config file (`groups`, running or not). A typo would otherwise leave a
    /// worker without the state its code asks for.
    pub(crate) fn check_pools<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
        let mut known: Vec<&str> = Vec::new();
        known.extend(self.on_accept.map(|_| "main"));
        known.extend(self.supervised.map(|_| "supervised"));
        known.extend(self.tasks.iter().map(|t| t.name));
        known.extend(groups);
        known.sort_unstable();
        known.dedup();
        for hook in &self.on_child {
            if let Some(unknown) = hook.pools.iter().find(|p| !known.contains(p)) {
                let hint = match daemon_config::suggest(unknown, known.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                return Err(format!(
                    "#[daemon::on_child(pools = [...])] on {}::{} names the pool `{unknown}`, which this program does not have; {hint}its pools are {}",
                    hook.module,
                    hook.name,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ));
            }
        }
        Ok(())
    }

    /// The task function named `name`.
    pub(crate) fn task(&self, name: &str) -> Option<&'static TaskFn> {
        self.tasks.iter().copied().find(|t| t.name == name)
    }

    /// Runs every manager hook `call` picks (it returns whether it ran one), each isolated: a
    /// panic is reported, and the manager goes on.
    fn each_manager_hook(&self, call: impl Fn(ManagerEvent) -> bool) {
        for hook in &self.manager {
            let run = std::panic::AssertUnwindSafe(|| call(hook.event));
            if let Err(panic) = std::panic::catch_unwind(run) {
                tracing::error!(
                    hook = %format!("{}::{}", hook.module, hook.name),
                    panic = crate::worker::current::panic_message(panic.as_ref()),
                    "a manager hook panicked; the manager goes on"
                );
            }
        }
    }

    pub(crate) fn on_ready(&self) {
        self.each_manager_hook(|e| matches!(e, ManagerEvent::Ready(f) if { f(); true }));
    }

    pub(crate) fn on_spawn(&self, spawned: &Spawned) {
        self.each_manager_hook(|e| matches!(e, ManagerEvent::Spawn(f) if { f(spawned); true }));
    }

    pub(crate) fn on_reap(&self, reaped: &Reaped) {
        self.each_manager_hook(|e| matches!(e, ManagerEvent::Reap(f) if { f(reaped); true }));
    }

    pub(crate) fn on_reload(&self) {
        self.each_manager_hook(|e| matches!(e, ManagerEvent::Reload(f) if { f(); true }));
    }

    pub(crate) fn on_exit(&self) {
        self.each_manager_hook(|e| matches!(e, ManagerEvent::Exit(f) if { f(); true }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &Child) -> Result<(), String> {
        Ok(())
    }

    fn work(_: &Task) -> Result<(), String> {
        Ok(())
    }

    static LIMITED: OnChild = OnChild::new("db", "app::hooks", &["main", "wrok"], nothing);
    static TASK: TaskFn = TaskFn::new("work", "app", &[], Run::Sync(work));

    fn hooks(on_child: Vec<&'static OnChild>) -> Hooks {
        Hooks { on_child, on_shutdown: Vec::new(), on_accept: None, supervised: None, tasks: vec![&TASK], manager: Vec::new() }
    }

    #[test]
    fn a_hook_limited_to_a_pool_the_program_lacks_stops_the_start() {
        let e = hooks(vec![&LIMITED]).check_pools([]).unwrap_err();
        assert!(e.contains("app::hooks::db names the pool `main`"), "{e}");
        static TYPO: OnChild = OnChild::new("db", "app::hooks", &["wrok"], nothing);
        let e = hooks(vec![&TYPO]).check_pools([]).unwrap_err();
        assert!(e.contains("`wrok`") && e.contains("did you mean `work`?") && e.contains("its pools are work"), "{e}");
        // A group the config file names counts, running or not.
        assert!(hooks(vec![&TYPO]).check_pools(["wrok"]).is_ok());
        assert!(TYPO.runs_in("wrok") && !TYPO.runs_in("main"));
        static ALL: OnChild = OnChild::new("seed", "app", &[], nothing);
        assert!(ALL.runs_in("anything"));
    }
}
