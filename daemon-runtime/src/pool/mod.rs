//! A pool of workers as a value: its limits, its generation, its supervision settings and the
//! memory of its recent deaths. The decisions about it are pure: how many to fork or retire
//! (`policy`), and whom to stop, how, and when to fork again (`supervise`).

pub mod backlog;
pub mod policy;
pub mod supervise;

use daemon_config::{Config, GroupConfig, TaskModel};

use policy::Limits;
use supervise::{RestartSettings, Restarts, Settings, StartWatch, KILL_GRACE_MS};

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a pool's workers do, and how the pool keeps its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Workers accept from the shared listeners; spares between min_spare and max_spare.
    Prefork,
    /// The manager accepts, and forks a child per connection, up to max_children.
    Postfork,
    /// One worker running the supervised function, started again `respawn_delay` after it ends.
    Supervised,
    /// A task group.
    Task(GroupConfig),
}

impl Kind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Prefork => "prefork",
            Kind::Postfork => "postfork",
            Kind::Supervised => "supervised",
            Kind::Task(g) => match g.model {
                TaskModel::LongLived => "task (longlived)",
                TaskModel::OneShot => "task (oneshot)",
            },
        }
    }

    /// Whether its workers run a job that must not run twice at once (the supervised function,
    /// a task group's).
    pub(crate) fn singleton(&self) -> bool {
        matches!(self, Kind::Supervised | Kind::Task(_))
    }

    /// Whether its workers serve the listeners.
    pub(crate) fn serves(&self) -> bool {
        matches!(self, Kind::Prefork | Kind::Postfork)
    }
}

/// One pool, as the manager keeps it.
#[derive(Debug)]
pub(crate) struct Pool {
    /// Its header on the scoreboard.
    pub index: usize,
    pub name: String,
    pub kind: Kind,
    pub limits: Limits,
    pub generation: u32,
    pub last_retire_ms: Option<u64>,
    pub supervision: Settings,
    pub restart: RestartSettings,
    pub restarts: Restarts,
    /// Waiting for every worker of the current generation to be ready (at start, after HUP).
    pub waiting_for_pool: bool,
    /// While the daemon starts: how the first workers are doing, and the last one's reason for
    /// dying before it was ready.
    pub starting: Option<(StartWatch, Option<String>)>,
    /// Since when every worker is busy at max_children, if it is.
    pub saturated_since: Option<u64>,
    /// When the pool last said it was saturated.
    pub saturation_told_ms: u64,
    /// Failed forks in this episode (logged once, counted after).
    pub fork_failures_logged: bool,
    /// No new worker before this: the supervised worker's respawn delay, a task group's next
    /// scaling check.
    pub next_ms: u64,
    /// Removed from the configuration: its workers stop, then the pool goes.
    pub removed: bool,
    /// The daemon's start (and readiness) waits for this pool: the serving one if there is one,
    /// else every pool.
    pub primary: bool,
    /// How many of its workers may accept at once (0: all): an async pool's workers beyond the
    /// CPUs are warm standbys, which join when an accepting one fills up, stalls or exits.
    pub accept_cap: u32,
}

impl Pool {
    pub(crate) fn new(index: usize, name: &str, kind: Kind, config: &Config, classic: bool, now_ms: u64) -> Pool {
        let mut pool = Pool {
            index,
            name: name.to_string(),
            limits: limits(config),
            generation: 1,
            last_retire_ms: None,
            supervision: supervision(config, classic),
            restart: restart(config),
            restarts: Restarts::default(),
            waiting_for_pool: true,
            starting: Some((
                StartWatch {
                    deadline_ms: now_ms.saturating_add(ms(config.start_timeout)),
                    died_before_ready: 0,
                    any_ready: false,
                },
                None,
            )),
            saturated_since: None,
            saturation_told_ms: 0,
            fork_failures_logged: false,
            next_ms: 0,
            removed: false,
            primary: true,
            accept_cap: 0,
            kind,
        };
        pool.limits = pool.kind_limits(config);
        pool.accept_cap = pool.accept_cap_of(config);
        pool
    }

    /// A reloaded configuration: new limits and settings, the same memory of deaths.
    pub(crate) fn reconfigure(&mut self, config: &Config) {
        self.limits = self.kind_limits(config);
        self.supervision = supervision(config, self.supervision.manager_judges_requests);
        self.restart = restart(config);
        self.accept_cap = self.accept_cap_of(config);
    }

    /// Async pre-forking workers take turns by the CPUs (a classic worker serves one connection
    /// at a time, so every one of them accepts).
    fn accept_cap_of(&self, c: &Config) -> u32 {
        match (&self.kind, self.supervision.manager_judges_requests, c.cpus) {
            (Kind::Prefork, false, Some(cpus)) => cpus.max(1),
            _ => 0,
        }
    }

    /// A task group's new settings (its size; a changed model or function means a new pool).
    pub(crate) fn regroup(&mut self, group: GroupConfig, config: &Config) {
        self.kind = Kind::Task(group);
        self.limits = self.kind_limits(config);
    }

    /// How many workers the pool keeps, by its kind.
    fn kind_limits(&self, c: &Config) -> Limits {
        match &self.kind {
            Kind::Prefork => limits(c),
            // Children come one per connection; only the bound on them applies.
            Kind::Postfork => Limits { workers: 0, min_spare: 0, max_spare: 1, max_children: c.max_children },
            Kind::Supervised => Limits { workers: 1, min_spare: 0, max_spare: 1, max_children: 1 },
            Kind::Task(g) => match g.model {
                TaskModel::LongLived => {
                    Limits { workers: g.workers, min_spare: 0, max_spare: g.workers.max(1), max_children: g.workers }
                }
                // One idle worker is the spare: all busy, it grows by one; two idle, it shrinks.
                TaskModel::OneShot => Limits {
                    workers: g.workers,
                    min_spare: 1,
                    max_spare: 1,
                    max_children: g.max_workers.max(g.workers),
                },
            },
        }
    }

    /// The task group, if the pool is one.
    pub(crate) fn group(&self) -> Option<&GroupConfig> {
        match &self.kind {
            Kind::Task(g) => Some(g),
            _ => None,
        }
    }
}

fn limits(c: &Config) -> Limits {
    Limits { workers: c.workers, min_spare: c.min_spare, max_spare: c.max_spare, max_children: c.max_children }
}

fn supervision(c: &Config, classic: bool) -> Settings {
    Settings {
        heartbeat_timeout_ms: c.heartbeat_timeout.map(ms),
        request_timeout_ms: c.request_timeout.map(ms),
        long_request_timeout_ms: c.long_request_timeout.map(ms),
        start_timeout_ms: ms(c.start_timeout),
        max_rss: c.max_rss,
        max_cpu_ms: c.max_cpu.map(ms),
        graceful_ms: ms(c.graceful_timeout),
        kill_grace_ms: KILL_GRACE_MS,
        manager_judges_requests: classic,
    }
}

fn restart(c: &Config) -> RestartSettings {
    RestartSettings {
        intensity: c.restart_intensity,
        period_ms: ms(c.restart_period),
        min_lifetime_ms: ms(c.min_worker_lifetime),
    }
}
