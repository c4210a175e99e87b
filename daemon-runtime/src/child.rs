//! What a worker knows about itself, handed to `on_child` and `on_shutdown` hooks.

/// The worker process a hook runs in.
#[derive(Debug, Clone)]
pub struct Child {
    pub(crate) slot: usize,
    pub(crate) pid: u32,
    pub(crate) generation: u32,
    pub(crate) manager_pid: u32,
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
}
