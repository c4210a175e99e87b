//! What a worker knows about itself, handed to `on_child` and `on_shutdown` hooks.

/// The worker process a hook runs in.
#[derive(Debug, Clone)]
pub struct Child {
    pub(crate) slot: usize,
    pub(crate) pid: u32,
    pub(crate) generation: u32,
    pub(crate) manager_pid: u32,
    pub(crate) pool: String,
    pub(crate) kind: PoolKind,
}

/// What a pool's workers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolKind {
    /// Pre-forked workers accepting from the shared listeners (`#[daemon::on_accept]`).
    Prefork,
    /// One worker forked per connection the manager accepted (`postfork`).
    Postfork,
    /// The one `#[daemon::supervised]` worker.
    Supervised,
    /// A `#[daemon::task]` group's workers.
    Task,
}

impl Child {
    /// The worker's slot on the scoreboard (stable while it lives; reused after it exits).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The generation of workers this one belongs to (it grows by one on each HUP).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The process id of the manager that forked this worker.
    pub fn manager_pid(&self) -> u32 {
        self.manager_pid
    }

    /// The pool this worker belongs to: `main` for the `#[daemon::on_accept]` pool,
    /// `supervised` for the supervised worker, or a task group's name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// What the pool's workers do.
    pub fn kind(&self) -> PoolKind {
        self.kind
    }

    /// The `T` an earlier `on_child` hook of this worker returned (hooks run in the order of
    /// their module path, then name), as [`daemon::state`](crate::state) gives it.
    pub fn state<T: 'static>(&self) -> Option<&'static T> {
        crate::worker::state::state::<T>()
    }
}
